"""``metavision_ml.data.sequential_dataset``."""
from evloader.data.sequential_dataloader import SequentialDataLoader  # noqa: F401
from evloader.data.sequential_dataset import SequentialDataset, load_labels_stub  # noqa: F401
