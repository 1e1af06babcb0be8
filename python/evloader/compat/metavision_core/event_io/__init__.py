"""``metavision_core.event_io``."""
from evloader.io import DatWriter, EventReader, EventsIterator, RawWriter  # noqa: F401


class EventDatReader(EventReader):
    """Metavision's ``EventDatReader(path)``: DAT timestamps as stored (DAT files are never shifted)."""

    def __init__(self, event_file):
        super().__init__(event_file)


class RawReader(EventReader):
    """Metavision's ``RawReader(record_base, max_events, do_time_shifting=True, ...)`` on evloader's reader.
    ``max_events`` is accepted for compatibility: evloader's buffers grow as needed."""

    def __init__(self, record_base, max_events=int(1e7), do_time_shifting=True, device=None,
                 initiate_device=True, use_external_triggers=()):
        if device is not None:
            raise NotImplementedError("evloader reads recordings, not live cameras")
        super().__init__(record_base, time_origin="metavision" if do_time_shifting else "absolute")
