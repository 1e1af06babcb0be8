# SPDX-License-Identifier: Apache-2.0
"""Entry point of the simulation worker processes of ``write_dataset`` (kept apart from the package's
``__init__`` imports so that ``python -m`` runs it cleanly)."""
import sys

from evloader.samples.dataset import worker_main

if __name__ == "__main__":
    sys.exit(worker_main())
