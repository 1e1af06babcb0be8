# SPDX-License-Identifier: Apache-2.0
"""Training data: metavision_ml's ``metavision_ml.data`` (scheduler, SequentialDataLoader, box_processing)."""
from .scheduler import FileMetadata, Scheduler, get_duration, get_time_span

__all__ = ["FileMetadata", "Scheduler", "get_duration", "get_time_span"]
