"""``metavision_ml.data.scheduler``."""
from evloader.compat._reexport import reexport

reexport(globals(), "evloader.data.scheduler")
