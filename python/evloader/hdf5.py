# SPDX-License-Identifier: Apache-2.0
"""Metavision HDF5 event files (``/CD/events`` compressed with Prophesee's ECF codec, filter 0x8ECF).

Reading needs nothing from this module: :func:`evloader.open_reader` opens ``.hdf5`` / ``.h5`` event
files (and ``.aedat4`` files) with the same API as RAW and DAT recordings. This module adds:

* :class:`HDF5EventWriter` / :func:`write_hdf5`: write files in OpenEB's layout, which Metavision, evloader
  and (after :func:`register_ecf_filter`) h5py read;
* :func:`register_ecf_filter`: make h5py, in this process, able to read and write ECF datasets. h5py's
  wheels bundle their own copy of libhdf5, separate from the one evloader links to, so the filter has to
  be registered with h5py's copy: evloader hands h5py the address of its filter class, whose callback
  uses only malloc/free. ``import evloader`` never does this on its own (no import-time side effects):
  call it once, or use :func:`open_h5py`, which calls it for you;
* :func:`ecf_encode` / :func:`ecf_decode`: the chunk codec itself.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional

import numpy as np

from . import _core
from ._dtypes import EventCD, EventExtTrigger, as_record_bytes, view_records

__all__ = [
    "ECF_FILTER_ID", "HDF5EventWriter", "write_hdf5", "register_ecf_filter", "open_h5py", "ecf_encode",
    "ecf_decode",
]

#: HDF5 filter id of ECF (0x8ECF).
ECF_FILTER_ID = 0x8ECF

_MODES = {"masked_x": None, "pack_xp": None, "pack_yxp": None}


def _mode(mode):
    if mode is None:
        return None
    if mode not in _MODES:
        raise _core.ConfigError(f"ECF mode must be one of {sorted(_MODES)} or None, got {mode!r}")
    return getattr(_core.EcfMode, mode)


def register_ecf_filter() -> bool:
    """Register the ECF filter with h5py's libhdf5, so that h5py reads (and writes) ECF datasets.

    Idempotent: returns True once the filter is available to h5py (also when another package, e.g. an
    ``HDF5_PLUGIN_PATH`` plugin, already provided it). Raises ImportError when h5py is not installed.
    Encoding through h5py stores a time below the chunk's running maximum as that maximum (as
    Prophesee's plugin does); use :class:`HDF5EventWriter` for exact files.
    """
    import h5py  # imported here: evloader does not depend on h5py

    if h5py.h5z.filter_avail(ECF_FILTER_ID):
        return True
    h5py.h5z.register_filter(_core.ecf_filter_class_address())
    return bool(h5py.h5z.filter_avail(ECF_FILTER_ID))


def open_h5py(path, mode: str = "r", **kwargs):
    """``h5py.File(path, mode, **kwargs)`` after :func:`register_ecf_filter`."""
    import h5py

    register_ecf_filter()
    return h5py.File(os.fspath(path), mode, **kwargs)


class HDF5EventWriter:
    """Writes a Metavision HDF5 event file: ``/CD/events`` (ECF, chunks of ``chunk_events``),
    ``/CD/indexes``, ``/EXT_TRIGGER/events`` and ``/EXT_TRIGGER/indexes``, string root attributes.

    ``width``/``height`` are stored as the ``geometry`` attribute (events must then lie inside);
    ``attributes`` adds root attributes (e.g. a RAW header's ``format``, ``serial_number``, or
    ``time_shift``). Events and triggers must be sorted by t, also across :meth:`write` calls.
    ``mode`` forces one ECF mode ('masked_x', 'pack_xp', 'pack_yxp'); by default every chunk gets the
    reference encoder's choice.
    """

    def __init__(self, path, width: int = 0, height: int = 0, attributes: Optional[Mapping[str, str]] = None,
                 chunk_events: int = 16384, mode: Optional[str] = None):
        if (width == 0) != (height == 0) or not (0 <= width < 1 << 31 and 0 <= height < 1 << 31):
            raise _core.ConfigError(f"give a positive width and height, or neither (got {width}x{height})")
        if not 1 <= int(chunk_events) <= 65535:  # an ECF chunk counts its events on 16 bits
            raise _core.ConfigError(f"Hdf5EventWriter: chunk_events must be in 1..65535, got {chunk_events}")
        attrs = [(str(k), str(v)) for k, v in (attributes or {}).items()]
        self._writer = _core.Hdf5EventWriter(os.fspath(path), _core.Geometry(int(width), int(height)), attrs,
                                             int(chunk_events), _mode(mode))

    def write(self, events) -> None:
        """Append CD events (a structured array with fields x, y, p, t)."""
        self._writer.write(as_record_bytes(events, EventCD, "events"))

    def write_triggers(self, triggers) -> None:
        """Append trigger events (fields p, t, id)."""
        self._writer.write_triggers(as_record_bytes(triggers, EventExtTrigger, "triggers"))

    def set_attribute(self, key: str, value) -> None:
        self._writer.set_attribute(str(key), str(value))

    @property
    def events_written(self) -> int:
        return self._writer.events_written

    @property
    def triggers_written(self) -> int:
        return self._writer.triggers_written

    def close(self) -> None:
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_hdf5(path, events, triggers=None, width: int = 0, height: int = 0,
               attributes: Optional[Mapping[str, str]] = None, **kwargs) -> None:
    """Write `events` (and `triggers`) to a new HDF5 event file. See :class:`HDF5EventWriter`."""
    with HDF5EventWriter(path, width, height, attributes, **kwargs) as writer:
        writer.write(events)
        if triggers is not None:
            writer.write_triggers(triggers)


def ecf_encode(events, mode: Optional[str] = None) -> bytes:
    """One ECF chunk (at most 65535 events sorted by t, x and y < 2048, p in {0, 1})."""
    return _core.ecf_encode(as_record_bytes(events, EventCD, "events"), _mode(mode))


def ecf_decode(chunk: bytes) -> np.ndarray:
    """The events of one ECF chunk (raises evloader.FormatError on a malformed chunk)."""
    return view_records(_core.ecf_decode(bytes(chunk)), EventCD)
