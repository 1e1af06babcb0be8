"""``metavision_ml.data.cd_processor_dataset``."""
from evloader.compat._reexport import reexport

reexport(globals(), "evloader.data.cd_processor_dataset")
