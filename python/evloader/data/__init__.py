# SPDX-License-Identifier: Apache-2.0
"""Training data: metavision_ml's ``metavision_ml.data`` (scheduler, SequentialDataLoader, box_processing)."""
from .cd_processor_dataset import CDProcessorDataLoader, CDProcessorDatasetIterator
from .scheduler import FileMetadata, Scheduler, get_duration, get_time_span
from .sequential_dataloader import SequentialDataLoader
from .sequential_dataset import SequentialDataset, load_labels_stub

__all__ = ["CDProcessorDataLoader", "CDProcessorDatasetIterator", "FileMetadata", "Scheduler", "SequentialDataLoader", "SequentialDataset", "get_duration",
           "get_time_span", "load_labels_stub"]
