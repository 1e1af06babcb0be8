"""``metavision_core.event_io``."""
from evloader.io import DatWriter, EventsIterator, RawWriter  # noqa: F401
from evloader.io import EventReader as EventDatReader  # noqa: F401  (one reader for every format)
from evloader.io import EventReader as RawReader  # noqa: F401
