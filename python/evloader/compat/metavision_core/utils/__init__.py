"""``metavision_core.utils``: ``get_sample`` (no downloads: Prophesee's samples are looked up locally,
simulated ``sim_*`` samples are generated; see :mod:`evloader.samples`)."""
from evloader.samples.registry import get_sample, list_samples  # noqa: F401
