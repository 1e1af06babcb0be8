"""``metavision_ml.data.box_processing``."""
from evloader.compat._reexport import reexport

reexport(globals(), "evloader.data.box_processing")
