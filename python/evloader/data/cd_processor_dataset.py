# SPDX-License-Identifier: Apache-2.0
"""metavision_ml's ``cd_processor_dataset``: ``CDProcessorDataLoader`` streams event recordings (RAW, DAT,
HDF5 event files, AEDAT4) straight into training batches, and ``CDProcessorDatasetIterator`` streams one.
Precomputed tensor files (``.h5``) are streamed too, frame by frame (metavision_ml's ``HDF5Iterator``),
when their preprocessing, mode, delta_t or n_events and channels match.

Each slot of a batch streams recordings one after the other, as metavision_core_ml's ``StreamDataset`` does;
when a recording ends its slot continues with the next one not yet started (``mask_keep_memory`` is 0 there),
and when none is left the slot is padded (``padding_mode='zeros'``) or restarts recordings from the head of
the list (``'data'``, the epoch then ends when no slot has a fresh recording left). C++ threads decode and
build the tensors; the batch table is computed before the first batch, so batches are the same for every
``num_workers``.

A recording is cut into time bins, ``num_tbins`` per tensor:

* ``mode='delta_t'``: bins of ``delta_t`` µs, on the grid of ``num_tbins * delta_t`` windows;
* ``mode='n_events'``: bins of ``n_events`` events (the time bins come from the event counts; the last tensor
  of a recording may end with empty bins);
* ``mode='mixed'``: a bin ends after ``n_events`` events or ``delta_t`` µs, whichever comes first.

``video_infos`` gives each tensor's real start and duration. Frames are computed at the sensor's size and
area-downscaled (OpenCV's ``INTER_AREA`` arithmetic) when ``height``/``width`` are smaller.
"""
from __future__ import annotations

import math
import os
import warnings
import weakref
from typing import Callable, Optional, Sequence

import numpy as np

from .. import _core
from .device import DeviceMixin
from .scheduler import FileMetadata, is_precomputed
from .sequential_dataset import (_check_generation, _file_sizes, _mask_bytes, _shrunk, _transform_sequence,
                                 load_labels_stub, native_kernel_kwargs, time_origin_value)

MODES = ("delta_t", "n_events", "mixed")
PADDING_MODES = ("zeros", "data")

_ERRORS = {"io": _core.IoError, "format": _core.FormatError, "config": _core.ConfigError}


class RecordingPlan:
    """What a recording yields: reading starts at ``begin`` and stops before ``end`` (µs, its own clock);
    ``events`` read in all, in ``bins`` time bins making ``items`` tensors; ``height``/``width`` of the sensor
    (None when the file does not tell). For a precomputed tensor file (``precomputed``): its frames are the
    bins, ``events`` is 0 and the size is the stored one."""

    __slots__ = ("path", "begin", "end", "events", "bins", "items", "height", "width", "precomputed")

    def __init__(self, path, plan, precomputed=False):
        self.path = path
        self.precomputed = precomputed
        self.begin, self.end, self.events, self.bins, self.items, width, height = plan
        self.height, self.width = (height, width) if width > 0 and height > 0 else (None, None)

    def __repr__(self):
        return (f"RecordingPlan({self.path!r}, begin={self.begin}, end={self.end}, events={self.events}, "
                f"bins={self.bins}, items={self.items}, size={self.height}x{self.width})")


class StreamDataset:
    """The streams of a ``CDProcessorDataLoader`` (metavision_core_ml's ``StreamDataset`` surface): the
    recordings (``stream_list``), their plans, and the table saying what each slot of each batch reads."""

    def __init__(self, files, plans, batch_size, padding_mode, fill_value, seed=0):
        self.stream_list = list(files)
        self.plans = list(plans)
        self.batch_size = int(batch_size)
        self.padding_mode = padding_mode
        self.fill_value = fill_value
        self.seed = int(seed)
        self._shuffles = 0
        self.order = list(range(len(self.stream_list)))
        self._build()

    def _build(self):
        self.table = _core.StreamSchedule([p.items for p in self.plans], self.batch_size, self.padding_mode,
                                          self.order)

    def shuffle(self, seed: Optional[int] = None) -> None:
        """Shuffle the order in which slots take the recordings (seeded: the same order on every run; without
        a seed, the loader's seed and the number of shuffles so far)."""
        if seed is None:
            seed = self.seed + self._shuffles
            self._shuffles += 1
        self.order = [int(i) for i in np.random.default_rng(seed).permutation(len(self.stream_list))]
        self._build()

    @property
    def num_batches(self) -> int:
        return self.table.num_batches

    def item(self, batch: int, slot: int):
        """(recording index, tensor index) read by slot ``slot`` of batch ``batch``; recording -1 for padding."""
        return self.table.at(batch, slot)


class CDProcessorDataLoader(DeviceMixin):
    """Streams recordings into chronological batches for truncated back-propagation through time.

    Each iteration yields ``{'inputs': float32 [T, N, C, H, W], 'labels': T lists of N, 'mask_keep_memory':
    [N, 1, 1, 1], 'frame_is_labeled': bool [T, N], 'video_infos': N (FileMetadata, start_us, duration_us)}``,
    as the SequentialDataLoader.

    metavision_ml's arguments (all three ``mode`` values work; ``max_duration`` in µs from where reading
    starts, None for whole recordings; ``height``/``width`` default to the sensor size of the first
    recording, or its stored size for a precomputed tensor file), plus, by keyword:

    * ``on_error``: ``'raise'`` (default) raises, naming the recording, when a recording cannot be read;
      ``'skip'`` leaves it out with a warning (or, when it fails in the middle of an epoch, pads the rest of it
      in its slot) and the other streams go on undisturbed;
    * ``time_origin``: ``'absolute'`` (default, the sensor's clock, as the SequentialDataLoader) or
      ``'metavision'`` (the Metavision SDK's time shift of RAW files);
    * ``seed`` (``dataset.shuffle()``), ``prefetch`` (batches prepared ahead), ``pin_memory``, ``device``.

    Differences from metavision_ml 4.2.1, all fixes: ``n_events`` and ``mixed`` modes run; no global change of
    torch's sharing strategy; no RuntimeError from a StopIteration raised inside a generator; the last block
    of a tensor file is not dropped; no batch made of padding only; batches do not depend on
    ``num_workers``, whose threads are not processes.
    """

    def __init__(self, files: Sequence[str], mode: str, delta_t: int, n_events: int, max_duration: Optional[int],
                 preprocess_function_name: str, num_tbins: int, batch_size: int, num_workers: int = 2,
                 height: Optional[int] = None, width: Optional[int] = None, preprocess_kwargs: Optional[dict] = None,
                 load_labels: Optional[Callable] = None, padding_mode: str = "zeros", transforms=None, *,
                 on_error: str = "raise", time_origin: str = "absolute", seed: int = 0, prefetch: int = 2,
                 pin_memory: bool = False, device=None):
        files = [os.fspath(f) for f in files]
        if not files:
            raise ValueError("CDProcessorDataLoader: the list of files is empty")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if int(num_tbins) < 1:
            raise ValueError(f"num_tbins must be >= 1, got {num_tbins}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(batch_size) > len(files):
            raise ValueError(f"batch_size {batch_size} is larger than the number of files {len(files)}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        if mode in ("delta_t", "mixed") and (delta_t is None or int(delta_t) < 1):
            raise ValueError(f"delta_t must be >= 1 us in {mode} mode, got {delta_t}")
        if mode in ("n_events", "mixed") and (n_events is None or int(n_events) < 1):
            raise ValueError(f"n_events must be >= 1 in {mode} mode, got {n_events}")
        if max_duration is not None and int(max_duration) <= 0:
            raise ValueError(f"max_duration must be positive or None, got {max_duration}")
        if (height is None) != (width is None):
            raise ValueError("give both height and width, or neither")

        self.files = files
        self.mode = mode
        self.delta_t = int(delta_t or 0)
        self.n_events = int(n_events or 0)
        self.max_duration = None if max_duration is None else int(max_duration)
        self.num_tbins = int(num_tbins)
        self.preprocess_function_name = preprocess_function_name
        self.load_labels = load_labels
        self.transforms = transforms
        self.padding_mode = padding_mode
        self.on_error = on_error
        self.time_origin = time_origin
        self.num_workers = int(num_workers)
        self.prefetch = int(prefetch)
        self.pin_memory = pin_memory
        self.device = device
        self._origin = time_origin_value(time_origin)

        from .. import preprocessing

        entry = preprocessing.get_preprocess_dict(preprocess_function_name)  # ConfigError for unknown names
        self.channels = int(entry["cin"])
        self.preprocess_kwargs = dict(preprocess_kwargs or {})
        self.preprocess_kwargs.pop("preprocess_dtype", None)  # the loader always delivers float32
        self._python_kernel = None
        if preprocessing.is_native_preprocessing(preprocess_function_name):
            self.preprocess_kwargs = native_kernel_kwargs(preprocess_function_name, self.preprocess_kwargs)
        else:
            self._python_kernel = _python_kernel(entry, self.preprocess_kwargs)

        self._sizes = _file_sizes(files)  # before planning: a file cut afterwards is caught (see _check_files)
        self._shrunk_warned = set()
        plans = self._plan(files)
        if not plans:
            raise ValueError("CDProcessorDataLoader: no readable recording in the list")
        first = plans[0]
        if height is None:
            if first.height is None:
                raise ValueError(f"{first.path}: the file does not tell its sensor size; give height and width")
            height, width = first.height, first.width
        self.height, self.width = int(height), int(width)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"height and width must be positive, got {height}x{width}")
        plans = self._check_sizes(plans)
        if not plans:
            raise ValueError("CDProcessorDataLoader: no readable recording in the list")

        self._metadata = [FileMetadata(p.path, p.end, self.delta_t, self.num_tbins, start_ts=p.begin) for p in plans]
        self._padding_info = (FileMetadata("", 0, self.delta_t, self.num_tbins), 0, self.delta_t)
        fill_value = None
        if padding_mode == "zeros":
            fill_value = self._padding_info
        self.dataset = StreamDataset([p.path for p in plans], plans, int(batch_size), padding_mode, fill_value,
                                     seed=seed)
        self._engine = None
        self._engine_key = None
        self.epoch = 0
        self._generation = 0

    # --- construction ---------------------------------------------------------------------------
    def _plan(self, files):
        """RecordingPlans in list order: event recordings planned in C++ on threads; precomputed tensor files
        opened for their stored size (planned in _check_sizes, once the output size is known)."""
        precomputed = [_is_tensor_file(f) for f in files]
        events = [f for f, p in zip(files, precomputed) if not p]
        results = iter(_core.plan_streams(events, self.mode, self.delta_t, self.n_events, self.num_tbins,
                                          self.max_duration or 0, self._origin, max(1, self.num_workers)))
        plans = []
        for path, tensor_file in zip(files, precomputed):
            if tensor_file:
                from ..tensor_file import TensorFileReader

                try:
                    _, h, w = TensorFileReader(path).shape
                except (_core.IoError, _core.FormatError) as error:
                    self._fail(type(error), str(error))
                    continue
                plans.append(RecordingPlan(path, (0, 0, 0, 0, 0, w, h), precomputed=True))
                continue
            error, kind, plan = next(results)
            if error:
                self._fail(_ERRORS.get(kind, _core.Error), error)
                continue
            plans.append(RecordingPlan(path, plan))
        return plans

    def _check_sizes(self, plans):
        kept = []
        for p in plans:
            if p.precomputed:  # its delta_t / n_events, preprocessing, channels and size must match
                try:
                    plan = _core.plan_tensor_stream(p.path, self.mode, self.delta_t, self.n_events, self.num_tbins,
                                                    self.max_duration or 0, self.preprocess_function_name,
                                                    self.channels, self.height, self.width)
                except (_core.IoError, _core.FormatError, _core.ConfigError) as error:
                    self._fail(type(error), str(error))
                    continue
                kept.append(RecordingPlan(p.path, plan, precomputed=True))
                continue
            if p.height is not None and (p.height < self.height or p.width < self.width):
                self._fail(_core.ConfigError, f"{p.path}: the sensor ({p.width}x{p.height}) is smaller than the "
                                              f"requested {self.width}x{self.height} (area interpolation only "
                                              "downscales)")
                continue
            kept.append(p)
        return kept

    def _fail(self, error_type, message):
        if self.on_error == "raise":
            raise error_type(message)
        warnings.warn(f"skipping a recording: {message}", RuntimeWarning, stacklevel=4)

    # --- metavision_ml's API ----------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.dataset.batch_size

    def __len__(self) -> int:
        """Batches per epoch (known in advance: the tensors of every recording are counted when it opens)."""
        return self.dataset.num_batches

    def get_vis_func(self):
        from .. import preprocessing

        return preprocessing.get_preprocess_dict(self.preprocess_function_name)["viz"]

    def show(self, viz_labels=None):
        """Frames (RGB uint8) of the batches as a grid, one per time bin; see evloader.data.show."""
        from .show import show_dataloader

        return show_dataloader(self, self.height, self.width, self.get_vis_func(), viz_labels)

    @property
    def plans(self):
        """The RecordingPlan of each recording streamed (skipped ones excluded)."""
        return list(self.dataset.plans)

    # --- iteration --------------------------------------------------------------------------------
    def _needs_label_hook(self) -> bool:
        return (self.load_labels is not None and self.load_labels is not load_labels_stub) or \
            self.transforms is not None

    def _info(self, recording: int, start: int, duration: int):
        if self.mode == "delta_t":
            return self._metadata[recording], start, duration
        # Bins of varying length: as metavision_ml's iterator, the metadata carries ceil(duration / T).
        base = self._metadata[recording]
        meta = FileMetadata(base.path, base.duration, max(1, math.ceil(duration / self.num_tbins)), self.num_tbins,
                            start_ts=base.start_ts)
        return meta, start, duration

    def _label_hook(self, item, tensor):
        """Runs on a worker thread with the GIL: transforms, then the user's load_labels, for one tensor."""
        import torch

        _, _, recording, start, duration, _ = item
        metadata, start, duration = self._info(recording, start, duration)
        where = f"{metadata.path} [{start}, {start + duration}) us"
        seq = torch.from_numpy(tensor)
        try:
            if self.transforms is not None:
                seq = _transform_sequence(seq, metadata, self.transforms, self.dataset.seed)
            if self.load_labels is None or self.load_labels is load_labels_stub:
                return [torch.empty(0) for _ in range(self.num_tbins)], bytes(self.num_tbins)
            labels, mask = self.load_labels(metadata, start, duration, seq)
        except Exception as error:  # name the recording and the time in the message, keep the type
            error.args = (f"{where}: {error}",) + tuple(error.args[1:])
            raise
        if len(labels) != self.num_tbins:
            raise ValueError(f"{where}: load_labels returned {len(labels)} labels for {self.num_tbins} time bins")
        return labels, _mask_bytes(mask, self.num_tbins, where)

    def _engine_for_table(self):
        key = (id(self.dataset.table), self.num_workers, self.prefetch)
        if self._engine is None or self._engine_key != key:
            self.close()
            plans = [(p.begin, p.end, p.events, p.bins, p.items, p.width or 0, p.height or 0)
                     for p in self.dataset.plans]
            self._engine = _core.StreamEngine(
                self.dataset.table, self.dataset.stream_list, plans, [p.precomputed for p in self.dataset.plans],
                self.mode, max(self.delta_t, 0),
                max(self.n_events, 0), self.max_duration or 0,
                (self.num_tbins, self.batch_size, self.channels, self.height, self.width),
                self.preprocess_function_name, self.preprocess_kwargs if self._python_kernel is None else {},
                self._python_kernel, self._origin, _weak_hook(self) if self._needs_label_hook() else None,
                self.on_error, self.num_workers, self.prefetch)
            self._engine_key = key
        return self._engine

    def __iter__(self):
        import torch

        engine = self._engine_for_table()
        # One engine per loader: a new iteration restarts it, and an older iterator still open must not go on
        # reading (nor stop the new one when it is closed).
        self._generation += 1
        generation = self._generation
        self._shrunk_warned = set()  # one warning per recording and epoch, as for the recordings skipped in C++
        engine.start(0)
        try:
            while True:
                # Checked before asking the engine too: a stale iterator must not take a batch of the new one.
                _check_generation(self, generation)
                produced = engine.next()
                _check_generation(self, generation)
                for message in engine.take_warnings():
                    warnings.warn(message, RuntimeWarning, stacklevel=2)
                if produced is None:
                    break
                self._check_files(produced[4])
                yield self._assemble(torch, *produced)
            self.epoch += 1
        finally:
            if generation == self._generation:
                engine.stop()

    def _check_files(self, items) -> None:
        """A recording truncated under the loader reads as empty bins from its new end on (the readers take a
        short file for the end of the data): raise naming it, or with on_error='skip' warn once and go on."""
        paths = dict.fromkeys(self.dataset.stream_list[it[2]] for it in items if not it[0])
        for path in paths:
            message = _shrunk(path, self._sizes)
            if message is None:
                continue
            if self.on_error == "raise":
                raise _core.IoError(message + "; its remaining tensors would come out empty")
            if path not in self._shrunk_warned:
                self._shrunk_warned.add(path)
                warnings.warn(f"{message}; the rest of it comes out as empty tensors", RuntimeWarning, stacklevel=3)

    def _assemble(self, torch, inputs, index, mask, labels, items):
        n, num_tbins = self.batch_size, self.num_tbins
        keep = torch.tensor([1.0 if it[5] else 0.0 for it in items], dtype=torch.float32).view(n, 1, 1, 1)
        frame_is_labeled = torch.from_numpy(np.frombuffer(mask, dtype=np.uint8).astype(bool).reshape(num_tbins, n))
        empty = None
        per_slot = []
        infos = []
        for it, lab in zip(items, labels):
            padding, _, recording, start, duration, _ = it
            if padding:
                infos.append(self._padding_info)
            else:
                infos.append(self._info(recording, start, duration))
            if lab is None:  # padding, or no load_labels: one empty label per time bin
                if empty is None:
                    empty = torch.empty(0)
                lab = [empty] * num_tbins
            per_slot.append(lab)
        labels_tn = [[per_slot[i][t] for i in range(n)] for t in range(num_tbins)]
        if self._on_device():
            inputs = self._inputs_to_device(inputs)
            keep = keep.to(self.device)
            frame_is_labeled = frame_is_labeled.to(self.device)
            labels_tn = [[lab.to(self.device) if hasattr(lab, "to") else lab for lab in row] for row in labels_tn]
        return {"inputs": inputs, "labels": labels_tn, "mask_keep_memory": keep,
                "frame_is_labeled": frame_is_labeled, "video_infos": tuple(infos)}

    @property
    def events_read(self) -> int:
        """Events read by the engine so far (all epochs)."""
        return 0 if self._engine is None else self._engine.events_read

    def close(self) -> None:
        """Stop the worker threads (also done when an iteration ends or the loader is deleted)."""
        if self._engine is not None:
            self._engine.stop()
            self._engine = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _is_tensor_file(path) -> bool:
    try:
        return is_precomputed(path)
    except _core.IoError:  # missing or unreadable: the event reader's planning reports it (or skips it)
        return False


def _weak_hook(loader):
    """The label hook without a strong reference to the loader: the C++ engine holds the hook, the loader holds
    the engine, and a cycle through C++ would keep both alive forever."""
    ref = weakref.ref(loader)

    def hook(item, tensor):
        owner = ref()
        if owner is None:
            raise RuntimeError("the CDProcessorDataLoader was deleted during an iteration")
        return owner._label_hook(item, tensor)

    return hook


def _python_kernel(entry, preprocess_kwargs):
    """A registered Python preprocessing, called by the C++ streams with (events, frames, duration)."""
    fn = entry["events_to_tensor"]
    kwargs = {k: v for k, v in {**entry["kwargs"], **preprocess_kwargs}.items() if k != "preprocess_dtype"}

    def run_python_kernel(raw_events, out, duration):
        from .._dtypes import EventCD, view_records

        fn(view_records(raw_events, EventCD), out, duration, downsampling_factor=0, reset=False, **kwargs)

    return run_python_kernel


class CDProcessorDatasetIterator:
    """One recording as a stream of ``(tensor [T, C, H, W], labels, keep_memory, frame_is_labeled,
    (FileMetadata, start_us, duration_us))`` (metavision_ml's ``CDProcessorDatasetIterator``), on the same C++
    engine as the loader. Tensors starting before ``start_ts`` are skipped."""

    def __init__(self, path, height_out, width_out, load_labels, mode, n_events, delta_t, num_tbins,
                 preprocess_function_name, preprocess_kwargs=None, start_ts=0, max_duration=None, transforms=None,
                 base_seed=None, **kwargs):
        self.path = os.fspath(path)
        self.start_ts = int(start_ts or 0)
        self._loader = CDProcessorDataLoader([self.path], mode, delta_t, n_events, max_duration,
                                             preprocess_function_name, num_tbins, 1, num_workers=1,
                                             height=height_out, width=width_out, preprocess_kwargs=preprocess_kwargs,
                                             load_labels=load_labels, transforms=transforms,
                                             seed=0 if base_seed is None else int(base_seed), **kwargs)
        self.height, self.width = self._loader.height, self._loader.width

    def __len__(self) -> int:
        return len(self._loader)

    def get_vis_func(self):
        return self._loader.get_vis_func()

    def __iter__(self):
        for batch in self._loader:
            metadata, start, duration = batch["video_infos"][0]
            if start < self.start_ts:
                continue
            keep = float(batch["mask_keep_memory"].reshape(-1)[0])
            yield (batch["inputs"][:, 0], [row[0] for row in batch["labels"]], keep, batch["frame_is_labeled"][:, 0],
                   (metadata, start, duration))


__all__ = ["CDProcessorDataLoader", "CDProcessorDatasetIterator", "RecordingPlan", "StreamDataset"]
