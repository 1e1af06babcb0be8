"""``metavision_ml.data.sequential_dataset_common``."""
from evloader.data.sequential_dataset import load_labels_stub  # noqa: F401
from evloader.data.show import show_dataloader  # noqa: F401
