"""``metavision_ml.preprocessing``."""
from evloader.compat._reexport import reexport

reexport(globals(), "evloader.preprocessing")
