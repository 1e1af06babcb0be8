# SPDX-License-Identifier: Apache-2.0
"""Precomputed tensor files in Metavision's HDF5 layout (``metavision_ml`` ``HDF5Writer`` / ``generate_hdf5``).

A file holds one dataset ``data`` of shape ``[N, C, H, W]`` (gzip, one chunk per frame) whose attributes say
how the frames were made: ``events_to_tensor`` (the preprocessing name), ``delta_t``, ``mode``, ``n_events``,
``event_input_width`` / ``event_input_height``, ``shape``, the preprocessing kwargs, ``store_as_uint8``.
evloader adds ``start_ts``: the absolute time of the start of frame 0 (Metavision's files start at 0).

:class:`TensorFileReader` opens a file once and reads frames as float32 without the GIL; several threads
can share one reader (HDF5 is entered under a process-wide lock only to fetch the compressed chunks, which
are inflated, converted and resized in parallel). :class:`TensorFileWriter` writes the same layout; h5py and
Metavision read its files.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple, Union

import numpy as np

from . import _core

__all__ = ["TensorFileReader", "TensorFileWriter", "area_resize", "get_duration", "get_original_size"]

# A build without HDF5 (EVLOADER_WITH_HDF5=OFF) has no tensor files: the module imports, its classes refuse.
HAVE_TENSOR_FILES = hasattr(_core, "TensorFileReader")
_MODES = {"delta_t": _core.TensorMode.delta_t, "n_events": _core.TensorMode.n_events} if HAVE_TENSOR_FILES else {}
_MODE_NAMES = {v: k for k, v in _MODES.items()}


def _require_hdf5() -> None:
    if not HAVE_TENSOR_FILES:
        raise ImportError("this evloader was built without HDF5 (EVLOADER_WITH_HDF5=OFF): no tensor files")

AttrValue = Union[bool, int, float, str]


def _attr_value(name: str, value) -> AttrValue:
    """A kwarg as the plain Python value h5py would store it (bool, int, float or str)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (str, bytes)):
        return value.decode() if isinstance(value, bytes) else value
    raise _core.ConfigError(f"attribute {name!r}: only bool, int, float or str values can be stored, got "
                            f"{type(value).__name__}")


def area_resize(src: np.ndarray, height: int, width: int, out: Optional[np.ndarray] = None) -> np.ndarray:
    """OpenCV ``INTER_AREA`` downscaling of float32 planes ``[..., H, W]`` to ``[..., height, width]``.

    Equals ``cv2.resize(plane, (width, height), interpolation=cv2.INTER_AREA)`` per plane (block means for
    integer factors, OpenCV's area weights otherwise); upscaling is refused.
    """
    _require_hdf5()
    src = np.ascontiguousarray(src, dtype=np.float32)
    if src.ndim < 2:
        raise _core.ConfigError("area_resize needs an array of at least 2 dimensions")
    if int(height) <= 0 or int(width) <= 0:  # before numpy's "negative dimensions are not allowed"
        raise _core.ConfigError(f"area resize: sizes must be positive, got {src.shape[-2]}x{src.shape[-1]} -> "
                                f"{height}x{width}")
    shape = src.shape[:-2] + (int(height), int(width))
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise _core.ConfigError(f"out must be a C-contiguous float32 array of shape {shape}")
    _core.area_resize(src, out)
    return out


class TensorFileReader:
    """A precomputed tensor file opened for reading (opened once; thread-safe reads).

    Raises :class:`evloader.IoError` (an OSError) for missing or unreadable files and
    :class:`evloader.FormatError` (a ValueError) for files that are not tensor files, lack an attribute
    (``events_to_tensor``, ``delta_t``) or hold a corrupt chunk; messages name the file.
    """

    def __init__(self, path):
        _require_hdf5()
        self._reader = _core.TensorFileReader(os.fspath(path))
        info = self._reader.info
        self._info = info
        self._kwargs = dict(info.kwargs)

    # --- description ----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return str(self._reader.path)

    @property
    def events_to_tensor(self) -> str:
        """Name of the preprocessing that made the frames (``histo``, ``event_cube``, ...)."""
        return self._info.events_to_tensor

    @property
    def mode(self) -> str:
        """``"delta_t"`` or ``"n_events"``."""
        return _MODE_NAMES[self._info.mode]

    @property
    def delta_t(self) -> int:
        return int(self._info.delta_t)

    @property
    def n_events(self) -> int:
        return int(self._info.n_events)

    @property
    def shape(self) -> Tuple[int, int, int]:
        """Stored frame shape (C, H, W)."""
        return (self._info.channels, self._info.height, self._info.width)

    @property
    def dtype(self) -> np.dtype:
        """dtype of the stored frames (uint8 with ``store_as_uint8``); reads always return float32."""
        return np.dtype(self._info.dtype)

    @property
    def store_as_uint8(self) -> bool:
        return bool(self._info.store_as_uint8)

    @property
    def start_ts(self) -> Optional[int]:
        """Absolute time (µs) of the start of frame 0, or None for files without it (Metavision's: 0)."""
        return self._info.start_ts

    @property
    def kwargs(self) -> Dict[str, AttrValue]:
        """The preprocessing kwargs (every scalar attribute that is not part of the layout itself)."""
        return dict(self._kwargs)

    @property
    def num_frames(self) -> int:
        return self._reader.num_frames

    def __len__(self) -> int:
        return self._reader.num_frames

    def duration(self) -> int:
        """Metavision's ``get_duration``: ``num_frames * delta_t``, or the last ``last_timestamps`` entry in
        n_events mode (µs, relative to frame 0)."""
        return self._reader.duration()

    def get_size(self) -> Tuple[int, int]:
        """(height, width) of the sensor the events came from (``event_input_height/width``, else the stored
        size shifted by the legacy ``downsampling_factor`` / ``shift`` attribute)."""
        g = self._reader.sensor_size
        return (g.height, g.width)

    def last_timestamps(self) -> np.ndarray:
        """n_events mode: time of the last event of each frame (int64 [N]); empty in delta_t mode."""
        return np.asarray(self._reader.last_timestamps(), dtype=np.int64)

    def check(self, events_to_tensor: Optional[str] = None, delta_t: Optional[int] = None,
              mode: Optional[str] = None, n_events: Optional[int] = None, channels: Optional[int] = None,
              height: Optional[int] = None, width: Optional[int] = None) -> None:
        """Raise :class:`evloader.ConfigError` (a ValueError naming the file) if the file does not match:
        another preprocessing, mode, delta_t, n_events or channel count, or an output size that is not the
        sensor size divided by a power of two, or larger than the stored frames."""
        if mode is not None and mode not in _MODES:
            raise _core.ConfigError(f"mode must be 'delta_t' or 'n_events', got {mode!r}")
        if (height is None) != (width is None):
            raise _core.ConfigError("give both height and width, or neither")
        for name, v in (("delta_t", delta_t), ("n_events", n_events), ("channels", channels), ("height", height),
                        ("width", width)):
            if v is not None and int(v) <= 0:
                raise _core.ConfigError(f"{name} must be positive, got {v}")
        self._reader.check(events_to_tensor or "", _MODES[mode] if mode else None, int(delta_t or 0),
                           int(n_events or 0), int(channels or 0), int(height or 0), int(width or 0))

    # --- reading --------------------------------------------------------------------------------
    def _out(self, count: int, height: Optional[int], width: Optional[int], out: Optional[np.ndarray]):
        c, h, w = self.shape
        if (height is None) != (width is None):
            raise _core.ConfigError("give both height and width, or neither")
        hh, ww = (h, w) if height is None else (int(height), int(width))
        shape = (count, c, hh, ww)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
            raise _core.ConfigError(f"out must be a writable C-contiguous float32 array of shape {shape}, got "
                                    f"{out.dtype} {out.shape}")
        return out, hh, ww

    def read(self, first: int, count: int, height: Optional[int] = None, width: Optional[int] = None,
             out: Optional[np.ndarray] = None) -> np.ndarray:
        """Frames ``[first, first + count)`` as float32 ``[count, C, height, width]``.

        Values are divided by 255 for ``store_as_uint8`` files and INTER_AREA-downscaled when a smaller
        height/width is given. Frames at or past the end of the file are zeros. ``out`` (optional) is
        filled in place. The GIL is released while reading.
        """
        if first < 0 or count < 0:
            raise _core.ConfigError(f"first and count must be >= 0, got {first}, {count}")
        out, hh, ww = self._out(int(count), height, width, out)
        self._reader.read_frames(int(first), int(count), hh, ww, out)
        return out

    def read_window(self, t0: int, t1: int, height: Optional[int] = None, width: Optional[int] = None,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
        """delta_t mode: the frames of the time window ``[t0, t1)`` (µs from frame 0), i.e. frames
        ``[t0 // delta_t, t1 // delta_t)`` - Metavision's ``_load_hdf5`` slice. See :meth:`read`."""
        if self.mode != "delta_t":
            raise _core.ConfigError(f"{self.path}: time windows need a delta_t-mode file, this one is n_events")
        if t0 < 0 or t1 < t0:
            raise _core.ConfigError(f"invalid time window [{t0}, {t1})")
        count = int(t1) // self.delta_t - int(t0) // self.delta_t
        out, hh, ww = self._out(count, height, width, out)
        self._reader.read_window(int(t0), int(t1), hh, ww, out)
        return out

    def read_raw(self, first: int, count: int) -> np.ndarray:
        """Frames as stored (``self.dtype``, no conversion), ``[count, C, H, W]``; zeros past the end."""
        if first < 0 or count < 0:
            raise _core.ConfigError(f"first and count must be >= 0, got {first}, {count}")
        out = np.empty((int(count),) + self.shape, dtype=self.dtype)
        self._reader.read_raw(int(first), int(count), out)
        return out

    def __getitem__(self, index) -> np.ndarray:
        """``reader[i]`` or ``reader[a:b]`` (step 1): float32 frames at the stored size."""
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise IndexError("only slices with step 1 are supported")
            return self.read(start, max(0, stop - start))
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"frame {index} out of range for {len(self)} frames")
        return self.read(i, 1)[0]

    def close(self) -> None:
        """Release the file (also done when the reader is garbage-collected)."""
        self._reader = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        c, h, w = self.shape
        return (f"TensorFileReader({self.path!r}, {self.events_to_tensor}, {self.mode}, delta_t={self.delta_t}, "
                f"{len(self)} x {c}x{h}x{w} {self.dtype})")


class TensorFileWriter:
    """Writes a precomputed tensor file in Metavision's layout (which h5py and ``metavision_ml`` read).

    ``shape`` is the frame shape (C, H, W); ``event_input_size`` the sensor (height, width) the events came
    from. ``dtype`` is the dtype of the frames given to :meth:`write`; with ``store_as_uint8`` they must be
    float in [0, 1] and are stored as ``round(255 * x)`` in uint8. ``kwargs`` are the preprocessing kwargs
    stored as attributes (bool, int, float, str). ``start_ts`` (optional) is stored as the ``start_ts``
    attribute. In ``mode="n_events"``, ``delta_t`` must be 0 and :meth:`write` takes ``last_timestamps``.
    Frames are compressed outside the HDF5 lock with the GIL released: writers of different files on
    different threads run in parallel, and ``compression_threads`` > 1 also splits the frames of each
    :meth:`write` call over that many threads (gzip is most of the cost of writing).
    """

    def __init__(self, path, events_to_tensor: str, shape, delta_t: int, event_input_size,
                 dtype=np.float32, store_as_uint8: bool = False, mode: str = "delta_t", n_events: int = 0,
                 kwargs: Optional[dict] = None, start_ts: Optional[int] = None, compression_level: int = 4,
                 compression_threads: int = 1):
        _require_hdf5()
        if mode not in _MODES:
            raise _core.ConfigError(f"mode must be 'delta_t' or 'n_events', got {mode!r}")
        c, h, w = (int(v) for v in shape)
        info = _core.TensorFileInfo()
        info.events_to_tensor = str(events_to_tensor)
        info.mode = _MODES[mode]
        if int(delta_t) < 0 or int(n_events) < 0:
            raise _core.ConfigError("delta_t and n_events must be >= 0")
        info.delta_t = int(delta_t)
        info.n_events = int(n_events)
        info.channels, info.height, info.width = c, h, w
        eh, ew = (int(v) for v in event_input_size)
        info.sensor = _core.Geometry(ew, eh)
        self._dtype = np.dtype(dtype)
        info.dtype = self._dtype.name
        info.store_as_uint8 = bool(store_as_uint8)
        info.start_ts = None if start_ts is None else int(start_ts)
        info.kwargs = {str(k): _attr_value(k, v) for k, v in (kwargs or {}).items()
                       if k != "preprocess_dtype" and v is not None}
        self._mode = mode
        self._writer = _core.TensorFileWriter(os.fspath(path), info, int(compression_level), 100,
                                              int(compression_threads))

    @property
    def index(self) -> int:
        """Number of frames written (the write cursor)."""
        return self._writer.index

    @property
    def path(self) -> str:
        return str(self._writer.path)

    def write(self, frames: np.ndarray, last_timestamps=None) -> None:
        """Append frames ``[N, C, H, W]`` (or one frame ``[C, H, W]``); in n_events mode with the time of
        the last event of each frame."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != self._dtype:
            if not np.can_cast(frames.dtype, self._dtype, casting="same_kind"):
                raise _core.ConfigError(f"{self.path}: frames of dtype {frames.dtype} cannot be stored as "
                                        f"{self._dtype}")
            frames = frames.astype(self._dtype)
        frames = np.ascontiguousarray(frames)
        stamps = None
        if last_timestamps is not None:
            stamps = np.ascontiguousarray(np.asarray(last_timestamps, dtype=np.int64).reshape(-1))
        elif self._mode == "n_events":
            raise _core.ConfigError(f"{self.path}: n_events mode needs last_timestamps")
        self._writer.write(frames, stamps)

    def set_cursor(self, index: int) -> None:
        """Move the cursor back to ``index``: later writes overwrite, close() trims there."""
        self._writer.set_cursor(int(index))

    def close(self) -> None:
        """Trim ``data`` to the frames written and close the file (idempotent)."""
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get_duration(path) -> int:
    """Metavision's ``get_duration`` for a tensor file (µs)."""
    return TensorFileReader(path).duration()


def get_original_size(path) -> Tuple[int, int]:
    """Metavision's ``_get_original_size_file`` for a tensor file: the sensor (height, width)."""
    return TensorFileReader(path).get_size()
