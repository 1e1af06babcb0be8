# SPDX-License-Identifier: Apache-2.0
"""``python -m evloader.demo`` is ``evloader demo``."""
import sys

from . import main

sys.exit(main())
