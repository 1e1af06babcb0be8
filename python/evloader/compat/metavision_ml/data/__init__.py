"""``metavision_ml.data``."""
from evloader.data import FileMetadata, Scheduler, SequentialDataLoader, SequentialDataset, load_labels_stub  # noqa: F401
from evloader.data import CDProcessorDataLoader, CDProcessorDatasetIterator  # noqa: F401
from evloader.data import box_processing  # noqa: F401
