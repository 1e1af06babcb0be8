# SPDX-License-Identifier: Apache-2.0
"""Reading and writing event recordings (RAW EVT2/EVT2.1/EVT3, DAT) and box label files.

Every array returned shares memory with the buffer the C++ core decoded into: nothing is copied.
"""
from __future__ import annotations

import os
from typing import Iterator, Optional, Tuple

import numpy as np

from . import _core
from ._dtypes import EventBbox, EventCD, EventExtTrigger, as_record_bytes, view_records

__all__ = [
    "EventReader", "open_reader", "EventsIterator", "RawWriter", "DatWriter", "Decoder",
    "read_boxes", "write_boxes",
]

_ENCODINGS = {"evt2": _core.RawEncoding.evt2, "evt21": _core.RawEncoding.evt21, "evt3": _core.RawEncoding.evt3}
_INDEX = {"sidecar": _core.IndexStorage.sidecar, "cache": _core.IndexStorage.cache,
          "memory": _core.IndexStorage.memory}


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _int64(what: str, value) -> int:
    """``int(value)``, refused with ConfigError beyond int64 (which the core takes) instead of a TypeError."""
    v = int(value)
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise _core.ConfigError(f"{what} out of range: {value}")
    return v


def _evt21_order(order: str) -> "_core.Evt21Order":
    if order not in ("little", "legacy"):
        raise _core.ConfigError(f"evt21_order must be 'little' or 'legacy', got {order!r}")
    return getattr(_core.Evt21Order, order)


def _on_violation(policy: str) -> "_core.OnViolation":
    if policy not in ("skip", "raise"):
        raise _core.ConfigError(f"on_violation must be 'skip' or 'raise', got {policy!r}")
    return _core.OnViolation.raise_ if policy == "raise" else _core.OnViolation.skip


def _encoding(name) -> Optional["_core.RawEncoding"]:
    if name is None or isinstance(name, _core.RawEncoding):
        return name
    key = str(name).lower().replace(".", "").replace("_", "")
    key = {"evt20": "evt2", "evt30": "evt3", "20": "evt2", "30": "evt3", "21": "evt21"}.get(key, key)
    if key not in _ENCODINGS:
        raise _core.ConfigError(f"unknown RAW encoding {name!r} (use 'evt2', 'evt21' or 'evt3')")
    return _ENCODINGS[key]


class EventReader:
    """A recording opened for reading, with Metavision's reader contract.

    ``time_origin``: ``"absolute"`` (default) gives timestamps as the sensor counted them, identical for the
    same event in RAW, DAT and HDF5 copies of a recording; ``"metavision"`` applies the Metavision SDK's
    time shift to RAW files (first events near 0), as its ``RawReader(do_time_shifting=True)`` does.
    ``on_violation``: ``"skip"`` counts protocol violations (see :meth:`stats`), ``"raise"`` raises
    :class:`evloader.FormatError` at the first one. ``index``: where the time index used for seeking is
    kept (``"sidecar"`` next to the recording or in the user cache when the folder is read-only,
    ``"cache"``, ``"memory"``).
    """

    def __init__(self, path, *, time_origin: str = "absolute", on_violation: str = "skip",
                 encoding=None, width: Optional[int] = None, height: Optional[int] = None,
                 evt21_order: Optional[str] = None, decode_triggers: bool = True, index: str = "sidecar"):
        options = _core.ReaderOptions()
        if time_origin not in ("absolute", "metavision"):
            raise _core.ConfigError(f"time_origin must be 'absolute' or 'metavision', got {time_origin!r}")
        options.time_origin = _core.TimeOrigin.metavision if time_origin == "metavision" else _core.TimeOrigin.absolute
        options.on_violation = _on_violation(on_violation)
        options.encoding = _encoding(encoding)
        if (width is None) != (height is None):
            raise _core.ConfigError("give both width and height, or neither")
        if width is not None:
            if width <= 0 or height <= 0:
                raise _core.ConfigError(f"width and height must be positive, got {width}x{height}")
            options.geometry = _core.Geometry(int(width), int(height))
        if evt21_order is not None:
            options.evt21_order = _evt21_order(evt21_order)
        options.decode_triggers = bool(decode_triggers)
        if index not in _INDEX:
            raise _core.ConfigError(f"index must be one of {sorted(_INDEX)}, got {index!r}")
        options.index_storage = _INDEX[index]
        self._reader = _core.EventReader.open(os.fspath(path), options)

    # --- description ----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return str(self._reader.path)

    @property
    def format(self) -> str:
        """'raw', 'dat', 'hdf5' or 'aedat4'."""
        return self._reader.format.name

    @property
    def encoding(self) -> str:
        """'EVT3', 'EVT2', 'EVT21', 'DAT', 'HDF5 (ECF)' or 'AEDAT4'."""
        return self._reader.encoding_name

    @property
    def geometry(self) -> Tuple[int, int]:
        """(width, height); (0, 0) when the file does not tell."""
        g = self._reader.geometry
        return g.width, g.height

    def get_size(self) -> Tuple[Optional[int], Optional[int]]:
        """(height, width) as Metavision readers return it; (None, None) when unknown."""
        w, h = self.geometry
        return (h, w) if w > 0 else (None, None)

    @property
    def header(self) -> dict:
        return dict(self._reader.header)

    # --- reading --------------------------------------------------------------------------------
    def load_delta_t(self, delta_t: int) -> np.ndarray:
        """Events with ``current_time() <= t < current_time() + delta_t``; advances current_time by delta_t."""
        return view_records(self._reader.load_delta_t(_int64("delta_t", delta_t)), EventCD)

    def load_n_events(self, n_events: int) -> np.ndarray:
        """The next ``n_events`` events (fewer at the end)."""
        return view_records(self._reader.load_n_events(_int64("n_events", n_events)), EventCD)

    def load_mixed(self, n_events: int, delta_t: int) -> np.ndarray:
        """At most ``n_events`` events of the next ``delta_t`` microseconds."""
        return view_records(self._reader.load_mixed(_int64("n_events", n_events), _int64("delta_t", delta_t)),
                            EventCD)

    def load_all(self) -> np.ndarray:
        """All remaining events."""
        return view_records(self._reader.load_all(), EventCD)

    def get_ext_trigger_events(self) -> np.ndarray:
        """Trigger events decoded so far and not yet returned."""
        return view_records(self._reader.take_triggers(), EventExtTrigger)

    # --- position -------------------------------------------------------------------------------
    def seek_time(self, t: int) -> None:
        self._reader.seek_time(_int64("seek_time: t", t))

    def seek_event(self, n: int) -> None:
        self._reader.seek_event(_int64("seek_event: n", n))

    def reset(self) -> None:
        self._reader.reset()

    def current_time(self) -> int:
        return self._reader.current_time()

    def current_event_index(self) -> int:
        return self._reader.current_event_index()

    def is_done(self) -> bool:
        return self._reader.is_done()

    # --- summary (from the time index) ----------------------------------------------------------
    def event_count(self) -> int:
        return self._reader.event_count()

    def trigger_count(self) -> int:
        return self._reader.trigger_count()

    def first_timestamp(self) -> int:
        return self._reader.first_timestamp()

    def last_timestamp(self) -> int:
        return self._reader.last_timestamp()

    def duration(self) -> int:
        """last_timestamp() - first_timestamp(), in microseconds."""
        return self._reader.duration()

    @property
    def duration_s(self) -> float:
        return self.duration() * 1e-6

    def time_shift(self) -> int:
        return self._reader.time_shift()

    def stats(self) -> "_core.DecodeStats":
        """Violations met by what this reader decoded so far."""
        return self._reader.stats()

    def file_stats(self) -> "_core.DecodeStats":
        """Violations of the whole file (from the time index)."""
        return self._reader.file_stats()

    def build_index(self, progress=None) -> None:
        """Build or load the time index now; ``progress(done_bytes, total_bytes)`` is called while building."""
        self._reader.build_index(progress)

    @property
    def index_path(self) -> Optional[str]:
        """Where the time index was loaded from or saved to; None while it lives only in memory."""
        path = self._reader.index_path
        return str(path) if path.parts else None

    def __repr__(self) -> str:
        w, h = self.geometry
        return f"EventReader({self.path!r}, {self.encoding}, {w}x{h})"


def open_reader(path, **options) -> EventReader:
    """Open a recording (format from the extension or the content). See :class:`EventReader`."""
    return EventReader(path, **options)


class EventsIterator:
    """Metavision's ``EventsIterator``: slices of a recording by time, by count, or both.

    ``mode``: ``"delta_t"`` (slices of ``delta_t`` µs, empty arrays for gaps), ``"n_events"`` or ``"mixed"``.
    ``start_ts`` must be a multiple of ``delta_t`` in the time modes and 0 in ``n_events`` mode.
    ``max_duration`` stops at ``start_ts + max_duration``. ``relative_timestamps`` subtracts each slice's
    start. ``do_time_shifting`` (default True, as Metavision does for RAW files) starts RAW recordings near
    t = 0; DAT files are never shifted. Other keyword arguments go to :class:`EventReader`.
    """

    def __init__(self, input_path, start_ts: int = 0, mode: str = "delta_t", delta_t: int = 10000,
                 n_events: int = 10000, max_duration: Optional[int] = None, relative_timestamps: bool = False,
                 do_time_shifting: bool = True, **kwargs):
        if mode not in ("delta_t", "n_events", "mixed"):
            raise ValueError(f"mode must be 'delta_t', 'n_events' or 'mixed', got {mode!r}")
        if mode in ("delta_t", "mixed"):
            if delta_t is None or delta_t < 1:
                raise ValueError(f"delta_t must be >= 1 us, got {delta_t}")
            if start_ts % delta_t:
                raise ValueError(f"start_ts ({start_ts}) must be a multiple of delta_t ({delta_t})")
        if mode in ("n_events", "mixed") and (n_events is None or n_events < 1):
            raise ValueError(f"n_events must be >= 1, got {n_events}")
        if mode == "n_events" and start_ts != 0:
            raise ValueError("start_ts must be 0 in n_events mode")
        if max_duration is not None and max_duration <= 0:
            raise ValueError(f"max_duration must be positive, got {max_duration}")
        kwargs.setdefault("time_origin", "metavision" if do_time_shifting else "absolute")
        self.reader = EventReader(input_path, **kwargs)
        self.mode, self.delta_t, self.n_events = mode, delta_t, n_events
        self.start_ts = int(start_ts)
        self.max_duration = max_duration
        self.end_ts = None if max_duration is None else self.start_ts + int(max_duration)
        self.relative_timestamps = relative_timestamps
        self._current_time = self.start_ts
        self._started = False

    def get_size(self):
        """(height, width), or (None, None) when unknown."""
        return self.reader.get_size()

    def get_current_time(self) -> int:
        """End of the slice produced last."""
        return self._current_time

    def get_ext_trigger_events(self) -> np.ndarray:
        return self.reader.get_ext_trigger_events()

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._started:
            raise RuntimeError("EventsIterator can be iterated only once; create a new one")
        self._started = True
        reader = self.reader
        if self.start_ts:
            reader.seek_time(self.start_ts)
        while not reader.is_done():
            slice_start = reader.current_time()
            if self.end_ts is not None and slice_start >= self.end_ts:
                break
            if self.mode == "delta_t":
                events = reader.load_delta_t(self.delta_t)
            elif self.mode == "n_events":
                events = reader.load_n_events(self.n_events)
            else:
                events = reader.load_mixed(self.n_events, self.delta_t)
            self._current_time = reader.current_time()
            if self.end_ts is not None and events.size and events["t"][-1] >= self.end_ts:
                events = events[events["t"] < self.end_ts]
                self._current_time = self.end_ts
            if self.relative_timestamps:
                events = events.copy()
                events["t"] -= slice_start
            yield events


class RawWriter:
    """Writes a RAW file (``encoding`` 'evt2', 'evt21' or 'evt3') of the given sensor size."""

    def __init__(self, path, encoding="evt3", width: int = 1280, height: int = 720, extra_header=None,
                 evt21_order: str = "little"):
        self._writer = _core.RawWriter(os.fspath(path), _encoding(encoding), _core.Geometry(width, height),
                                       list((extra_header or {}).items()), _evt21_order(evt21_order))

    def write(self, events, triggers=None) -> None:
        cd = as_record_bytes(events, EventCD, "events")
        tr = None if triggers is None else as_record_bytes(triggers, EventExtTrigger, "triggers")
        self._writer.write(cd, tr)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DatWriter:
    """Writes a DAT file of CD events (or of trigger events with ``triggers=True``)."""

    def __init__(self, path, width: int, height: int, triggers: bool = False):
        kind = _core.DatEventType.ext_trigger if triggers else _core.DatEventType.cd
        self._triggers = triggers
        self._writer = _core.DatWriter(os.fspath(path), _core.Geometry(width, height), kind)

    def write(self, events) -> None:
        if self._triggers:
            self._writer.write_triggers(as_record_bytes(events, EventExtTrigger, "triggers"))
        else:
            self._writer.write_cd(as_record_bytes(events, EventCD, "events"))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Decoder:
    """A streaming RAW word decoder for bytes you read yourself; state carries across calls."""

    def __init__(self, encoding, width: int = 0, height: int = 0, evt21_order: str = "little",
                 on_violation: str = "skip"):
        options = _core.DecoderOptions()
        options.geometry = _core.Geometry(width, height)
        options.evt21_order = _evt21_order(evt21_order)
        options.on_violation = _on_violation(on_violation)
        self._decoder = _core.EventDecoder.create(_encoding(encoding), options)

    def decode(self, data: bytes):
        """Returns (cd_events, trigger_events) decoded from these bytes."""
        cd, triggers = self._decoder.decode(bytes(data))
        return view_records(cd, EventCD), view_records(triggers, EventExtTrigger)

    def finish(self) -> None:
        self._decoder.finish()

    @property
    def stats(self):
        return self._decoder.stats


def read_boxes(path) -> np.ndarray:
    """Read a ``_bbox.npy`` file of any known layout into the EventBbox dtype (legacy names converted)."""
    return view_records(_core.read_boxes_npy(os.fspath(path)), EventBbox)


def write_boxes(path, boxes) -> None:
    """Write boxes with the EventBbox dtype (numpy's ``np.load`` reads them back)."""
    _core.write_boxes_npy(os.fspath(path), as_record_bytes(boxes, EventBbox, "boxes"))
