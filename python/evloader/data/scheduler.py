# SPDX-License-Identifier: Apache-2.0
"""metavision_ml's ``scheduler`` module: ``FileMetadata``, ``Scheduler`` and duration helpers, on evloader's
C++ schedule (behaviour spec §3).

Two documented departures, both fixes of known bugs:

* a recording's span is where its data is: ``FileMetadata.start_ts`` is where reading starts (the first
  event's time floored to a multiple of ``delta_t`` for event files, the ``start_ts`` attribute or 0 for
  precomputed files) and ``duration`` is the time at which it ends, in the recording's own clock, so that
  ``get_remaining_duration() = duration - start_ts`` is the readable time (metavision_ml reads DAT files from
  0 but measures them from their first event);
* ``reschedule`` keeps the labels and the padding flag.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

from .. import _core

PRECOMPUTED_EXTENSIONS = (".h5", ".hdf5")
EVENT_EXTENSIONS = (".raw", ".dat", ".hdf5", ".h5", ".aedat4")


def is_precomputed(path: str) -> bool:
    """True for a precomputed tensor file (an HDF5 file with a ``data`` dataset, not an event file)."""
    if not str(path).lower().endswith(PRECOMPUTED_EXTENSIONS):
        return False
    from .. import FormatError
    from ..tensor_file import TensorFileReader

    try:
        TensorFileReader(path)
    except FormatError:
        return False  # an HDF5 event file (or not HDF5 at all: the event reader will say why)
    return True


def get_time_span(path: str, delta_t: Optional[int] = None) -> Tuple[int, int]:
    """(begin, end) in µs: where reading a recording starts and where it ends, in its own clock."""
    path = os.fspath(path)
    if is_precomputed(path):
        from ..tensor_file import TensorFileReader

        reader = TensorFileReader(path)
        start = reader.start_ts or 0
        return start, start + reader.duration()
    from ..io import open_reader

    reader = open_reader(path)
    if reader.event_count() == 0:
        return 0, 0
    first, last = reader.first_timestamp(), reader.last_timestamp()
    begin = first - first % delta_t if delta_t else first
    return begin, last + 1


def get_duration(path: str) -> int:
    """The time (µs) at which a recording ends, in its own clock (see the module docstring)."""
    return get_time_span(path)[1]


def get_original_size_file(path: str) -> Tuple[Optional[int], Optional[int]]:
    """(height, width) of the sensor that recorded the file."""
    path = os.fspath(path)
    if is_precomputed(path):
        from ..tensor_file import TensorFileReader

        return TensorFileReader(path).get_size()
    from ..io import open_reader

    return open_reader(path).get_size()


def _warn_about_empty_recordings(files, spans, scheduler) -> None:
    """One RuntimeWarning naming the recordings without data, and saying so when the schedule came out empty.
    Metavision's schedule (kept as is) puts recordings in slots by list position and, without padding, ends
    the epoch with the shortest slot: one slot of empty (or too short) recordings leaves the whole epoch
    without a batch, which should not pass in silence."""
    empty = [f for f, (begin, end) in zip(files, spans) if end <= begin]
    parts = []
    if empty:
        shown = ", ".join(os.path.basename(f) for f in empty[:5]) + (", ..." if len(empty) > 5 else "")
        parts.append(f"{len(empty)} of {len(files)} recordings have no data ({shown}); they add nothing to the "
                     "schedule")
    if scheduler.num_batches == 0 and len(empty) < len(files):
        parts.append("the schedule is EMPTY: without padding an epoch ends with its shortest batch slot, and a "
                     "slot holds less than one batch of data (remove the empty or short recordings, or use "
                     "padding=True or a smaller batch_size)")
    if parts:
        import warnings

        warnings.warn("; ".join(parts), RuntimeWarning, stacklevel=3)


class FileMetadata:
    """A recording (or a chunk of one) in a schedule. Padding entries carry only ``padding=True``."""

    def __init__(self, file=None, duration=None, delta_t=None, num_tbins=None, labels=None, start_ts=0,
                 padding=False):
        self.padding = bool(padding)
        if self.padding:
            return
        self.path = os.fspath(file)
        self.duration = int(duration)
        self.delta_t = int(delta_t)
        self.num_tbins = int(num_tbins)
        self.labels = labels
        self.start_ts = int(start_ts)
        self._original_size = None

    def get_original_size(self):
        if self.padding:  # it was built without a path: say so rather than fail on a missing attribute
            raise ValueError("a padding FileMetadata has no recording and no sensor size")
        if self._original_size is None:
            self._original_size = get_original_size_file(self.path)
        return self._original_size

    def get_remaining_duration(self) -> int:
        return self.duration - self.start_ts

    def get_ending(self) -> str:
        lower = self.path.lower()
        for ending in ("_td.dat", ".dat", ".h5", ".hdf5", ".raw", ".aedat4"):
            if lower.endswith(ending):
                return self.path[len(self.path) - len(ending):]
        raise ValueError(f"{self.path}: unknown recording ending")

    def is_precomputed(self) -> bool:
        return is_precomputed(self.path)

    def is_padding(self) -> bool:
        return self.padding

    def _key(self):
        return (self.path, self.start_ts, self.labels, self.delta_t, self.num_tbins)

    def __eq__(self, other):
        if not isinstance(other, FileMetadata):
            return NotImplemented
        if self.padding or other.padding:
            return self.padding == other.padding
        return self._key() == other._key()

    def __hash__(self):
        return hash(repr(self))

    def __repr__(self):
        if self.padding:
            return "FileMetadata object PADDING"
        return (f"FileMetadata object {self.path} start_ts: {self.start_ts} delta_t: {self.delta_t} "
                f"num_tbins: {self.num_tbins} duration: {self.duration} labels: {self.labels}")


PADDING = FileMetadata(padding=True)


class Scheduler:
    """Chronological schedule of batch items (metavision_ml's ``Scheduler``): index ``i`` is slot ``i % N``
    of batch ``i // N``, and ``scheduler[i]`` is ``(FileMetadata, start_us, duration_us)``.

    ``filesmetadata``: whole recordings (``start_ts`` = where each begins). ``seed`` drives the optional
    shuffling of the order, identically on every machine; ``rank``/``world_size`` give this process a
    disjoint share of the recordings with the same number of batches on every rank.
    """

    def __init__(self, filesmetadata: Sequence[FileMetadata], total_tbins_delta_t: int, batch_size: int,
                 max_consecutive_batch: Optional[int] = None, padding: bool = False, base_seed: int = 0,
                 shuffle: bool = False, rank: int = 0, world_size: int = 1):
        self.files = list(filesmetadata)
        self.total_tbins_delta_t = int(total_tbins_delta_t)
        self.requested_batch_size = int(batch_size)
        self.max_consecutive_batch = max_consecutive_batch
        self.padding = padding
        self.base_seed = int(base_seed)
        self._shuffle = shuffle
        self.rank, self.world_size = rank, world_size
        if self.files:
            f = self.files[0]
            self.delta_t, self.num_tbins = f.delta_t, f.num_tbins
            for f in self.files:
                if f.delta_t * f.num_tbins != self.total_tbins_delta_t:
                    raise ValueError(f"{f.path}: delta_t * num_tbins differs from total_tbins_delta_t")
        self._build()

    def _build(self):
        if not self.files:
            self._schedule, self._chunks, self.batch_size = None, [], 0
            return
        spans = [(f.start_ts, f.duration) for f in self.files]
        self._schedule = _core.Schedule(spans, self.delta_t, self.num_tbins, self.requested_batch_size,
                                        max_consecutive_batch=self.max_consecutive_batch or 0,
                                        padding=self.padding, shuffle=self._shuffle,
                                        seed=self.base_seed % (1 << 64), rank=self.rank,
                                        world_size=self.world_size)
        self.batch_size = self._schedule.batch_size
        self._chunks = [FileMetadata(self.files[r].path, self.files[r].duration, self.delta_t, self.num_tbins,
                                     self.files[r].labels, start_ts=start)
                        for r, start in self._schedule.entries]

    @classmethod
    def create_schedule(cls, files, durations, delta_t, num_tbins, batch_size, labels=None,
                        max_consecutive_batch=None, shuffle=True, padding=False, seed=0, starts=None,
                        rank=0, world_size=1):
        """metavision_ml's factory. ``durations`` (µs, the end of each recording) are read from the files
        when empty; ``starts`` (µs) default to where each recording's data begins."""
        files = [os.fspath(f) for f in files]
        if labels is None or len(labels) == 0:
            labels = [None] * len(files)
        if len(durations) != len(files):
            if len(durations):
                raise ValueError(f"{len(durations)} durations given for {len(files)} files")
            spans = [get_time_span(f, delta_t) for f in files]
        else:
            spans = [(0 if starts is None else starts[i], int(d)) for i, d in enumerate(durations)]
        metas = [FileMetadata(f, end, delta_t, num_tbins, labels=lab, start_ts=begin)
                 for f, (begin, end), lab in zip(files, spans, labels)]
        scheduler = cls(metas, delta_t * num_tbins, batch_size, max_consecutive_batch=max_consecutive_batch,
                        padding=padding, base_seed=seed, shuffle=shuffle, rank=rank, world_size=world_size)
        _warn_about_empty_recordings(files, spans, scheduler)
        return scheduler

    @property
    def num_batches(self) -> int:
        return self._schedule.num_batches if self._schedule is not None else 0

    def __len__(self) -> int:
        """Number of items (batches x slots), as metavision_ml's."""
        return self.num_batches * self.batch_size

    def item(self, batch: int, slot: int):
        """(FileMetadata, start, duration, keep_memory) of one slot of one batch."""
        padding, entry, _, start, duration, keep = self._schedule.at(batch, slot)
        if padding:
            return PADDING, 0, 0, True
        return self._chunks[entry], start, duration, keep

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"schedule index {index} out of range ({len(self)} items)")
        return self.item(index // self.batch_size, index % self.batch_size)[:3]

    def get_batch(self, batch: int) -> List[tuple]:
        return [self.item(batch, s)[:3] for s in range(self.batch_size)]

    def shuffle(self, seed: Optional[int] = None) -> None:
        """Shuffle the order of the recordings (chunks) with a seed; the same seed gives the same order on
        every machine. Without a seed, a new one is drawn from the previous."""
        self._shuffle = True
        self.base_seed = int(seed) if seed is not None else (self.base_seed * 6364136223846793005 + 1442695040888963407) % (1 << 63)
        self._build()

    def reschedule(self, max_consecutive_batch, num_tbins=None, delta_t=None, shuffle=True):
        """Cut recordings into chunks of at most ``max_consecutive_batch`` batches (curriculum learning).
        Unlike metavision_ml 4.2.1, labels and the padding flag are kept."""
        if num_tbins is not None or delta_t is not None:
            num_tbins = num_tbins or self.num_tbins
            delta_t = delta_t or self.delta_t
            self.files = [FileMetadata(f.path, f.duration, delta_t, num_tbins, f.labels, f.start_ts) for f in self.files]
            self.delta_t, self.num_tbins = delta_t, num_tbins
            self.total_tbins_delta_t = delta_t * num_tbins
        self.max_consecutive_batch = max_consecutive_batch
        self._shuffle = shuffle
        self._build()
