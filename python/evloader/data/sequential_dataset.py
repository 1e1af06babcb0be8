# SPDX-License-Identifier: Apache-2.0
"""metavision_ml's ``SequentialDataset`` / ``SequentialDataLoader`` on evloader's C++ engine.

Batches are chronological: slot ``i`` of batch ``b+1`` continues where slot ``i`` of batch ``b`` stopped, so a
recurrent network keeps its memory across batches (``mask_keep_memory`` says when to reset it). The C++
engine reads recordings (each opened once per slot), runs the preprocessing kernels or reads precomputed
frames, and fills batch buffers that are reused and handed to torch without copies. The batches are the same
for every ``num_workers`` and every run with the same seed.
"""
from __future__ import annotations

import math
import os
import weakref
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .. import _core
from .scheduler import FileMetadata, Scheduler, get_original_size_file, is_precomputed


def load_labels_stub(metadata, start_time, duration, tensor):
    """The template of a label function: one empty label per time bin, no bin labelled."""
    import torch

    n = len(range(0, duration, metadata.delta_t))
    return [torch.empty(0) for _ in range(n)], np.zeros(n, dtype=bool)


TIME_ORIGINS = ("absolute", "metavision")


def time_origin_value(name) -> "_core.TimeOrigin":
    """The engine's clock for a loader's ``time_origin``. Anything else is a ConfigError (a ValueError), as in
    open_reader: a typo must not read on the default clock in silence."""
    if not isinstance(name, str) or name not in TIME_ORIGINS:
        raise _core.ConfigError(f"time_origin must be 'absolute' or 'metavision', got {name!r}")
    return _core.TimeOrigin.metavision if name == "metavision" else _core.TimeOrigin.absolute


def native_kernel_kwargs(name: str, kwargs: dict) -> dict:
    """``kwargs`` of a C++ preprocessing as the engines take them (plain Python values), checked now by making
    the kernel once, as the engines do when they start: a bad kwarg (out of range, unknown, wrong type) raises
    its ConfigError at construction instead of at the first batch, and the rules stay in the C++ registry."""
    from ..preprocessing import _kwarg_value

    for key in kwargs:
        if not isinstance(key, str):
            raise _core.ConfigError(f"{name}: preprocess_kwargs keys must be strings, got {key!r}")
    plain = {key: _kwarg_value(key, value) for key, value in kwargs.items()}
    _core.make_preprocessor(name, plain)
    return plain


def _recording_path(path: str) -> str:
    """``path`` if it is a file; otherwise an OSError saying what it is (a folder is not a missing file)."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory, not a recording; the loader takes recording files: "
                                "list the ones in it (e.g. sorted(glob.glob(os.path.join(folder, '*.raw'))))")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such recording")
    return path


def _mask_bytes(mask, num_tbins: int, where: str) -> bytes:
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    if mask.size != num_tbins:
        raise ValueError(f"{where}: load_labels returned a frame_is_labeled mask of {mask.size} values for "
                         f"{num_tbins} time bins")
    return mask.astype(np.uint8).tobytes()


def _file_sizes(paths) -> Dict[str, int]:
    """The size of each file now (missing ones left out): what the loader planned its batches with."""
    sizes = {}
    for path in paths:
        try:
            sizes[path] = os.stat(path).st_size
        except OSError:
            pass
    return sizes


def _shrunk(path: str, sizes: Dict[str, int]) -> Optional[str]:
    """Why ``path`` can no longer deliver what was planned, or None. A recording truncated (or being rewritten)
    while the loader uses it would otherwise read as empty time bins from its new end on, without a word: the
    readers take a short file for the end of the data. A deleted file is not reported here: readers that have
    it open still read it whole, and opening it again raises an IoError naming it."""
    planned = sizes.get(path)
    if planned is None:
        return None
    try:
        now = os.stat(path).st_size
    except OSError:
        return None
    if now >= planned:
        return None
    return (f"{path}: the recording shrank from {planned} to {now} bytes since the loader planned its batches "
            "(truncated or being rewritten)")


def _check_generation(loader, generation: int) -> None:
    """A loader's iterator whose iteration is no longer the latest one stops (see the loaders' __iter__)."""
    if generation != loader._generation:
        raise RuntimeError(f"another iteration of this {type(loader).__name__} started; this one is over")


def _weak_hook(owner, what: str):
    """``owner._label_hook`` without a strong reference to ``owner``: the C++ engine holds the hook, and a cycle
    through C++ (engine -> hook -> owner -> user's load_labels -> an object holding the loader -> engine) is
    invisible to the garbage collector, so the loader, its engine and its buffers would never be freed."""
    ref = weakref.ref(owner)

    def hook(item, tensor):
        target = ref()
        if target is None:
            raise RuntimeError(f"the {what} was deleted during an iteration")
        return target._label_hook(item, tensor)

    return hook


def _python_kernel(fn, kwargs: dict, downsampling_factor: int):
    """A registered Python preprocessing, called by the C++ workers with (events, frames, duration). It holds
    no reference to the dataset (see _weak_hook)."""

    def run_python_kernel(raw_events, out, duration):
        from .._dtypes import EventCD, view_records

        fn(view_records(raw_events, EventCD), out, duration, downsampling_factor=downsampling_factor, reset=False,
           **kwargs)

    return run_python_kernel


class SequentialDataset:
    """The schedule, the preprocessing and the label function of a SequentialDataLoader."""

    def __init__(self, files: Sequence[str], delta_t: int, preprocess_function_name: str, array_dim,
                 load_labels: Callable = load_labels_stub, durations=(), batch_size: int = 8,
                 preprocess_kwargs: Optional[dict] = None, padding: bool = False, transforms=None, *,
                 seed: int = 0, shuffle_files: bool = False, rank: int = 0, world_size: int = 1,
                 max_consecutive_batch: Optional[int] = None, time_origin: str = "absolute"):
        files = [os.fspath(f) for f in files]
        if not files:
            raise ValueError("SequentialDataLoader: the list of files is empty")
        for f in files:
            _recording_path(f)
        self._sizes = _file_sizes(files)
        if len(array_dim) != 4:
            raise ValueError(f"array_dim must be [num_tbins, channels, height, width], got {array_dim}")
        self.array_dim = [int(v) for v in array_dim]
        num_tbins, channels, height, width = self.array_dim
        if min(self.array_dim) <= 0:
            raise ValueError(f"array_dim must be positive, got {array_dim}")
        if delta_t <= 0:
            raise ValueError(f"delta_t must be positive, got {delta_t}")
        self.files, self.delta_t, self.num_tbins = files, int(delta_t), num_tbins
        self.preprocess_function_name = preprocess_function_name
        self.load_labels = load_labels
        self.transforms = transforms
        time_origin_value(time_origin)  # checked now, not when the engine starts
        self.time_origin = time_origin
        self.precomputed = [is_precomputed(f) for f in files]

        self.preprocess_kwargs = dict(preprocess_kwargs or {})
        self.preprocess_kwargs.pop("preprocess_dtype", None)  # the loader always delivers float32
        self._python_kernel = None
        # Checked even when every file is precomputed: the engine makes the kernel anyway (and metavision_ml
        # looks the name up in every case).
        python_kernel = self._prepare_kernel(preprocess_function_name, channels)

        self.original_size, self.downsampling_factor = self._downsampling(files, height, width)
        if python_kernel is not None:
            self._python_kernel = _python_kernel(*python_kernel, self.downsampling_factor)

        for path, precomputed in zip(files, self.precomputed):
            if precomputed:  # fail now, naming the file, rather than at the first batch
                from ..tensor_file import TensorFileReader

                TensorFileReader(path).check(delta_t=self.delta_t, mode="delta_t", channels=channels,
                                             height=height, width=width)

        self.scheduler = Scheduler.create_schedule(files, list(durations), self.delta_t, num_tbins, batch_size,
                                                   max_consecutive_batch=max_consecutive_batch,
                                                   shuffle=shuffle_files, padding=padding, seed=seed,
                                                   rank=rank, world_size=world_size)
        self.batch_size = self.scheduler.batch_size
        self._path_index = {f: i for i, f in enumerate(files)}

    def _prepare_kernel(self, name: str, channels: int):
        """Checks the preprocessing and its kwargs; (function, kwargs) of a Python one, None for a C++ one."""
        from .. import preprocessing

        entry = preprocessing.get_preprocess_dict(name)  # ValueError for unknown names
        if entry["cin"] != channels and name not in ("event_cube", "multi_channel_timesurface"):
            raise ValueError(f"preprocessing {name!r} has {entry['cin']} channels, array_dim asks for {channels}")
        if preprocessing.is_native_preprocessing(name):
            self.preprocess_kwargs = native_kernel_kwargs(name, self.preprocess_kwargs)
            return None
        kwargs = {k: v for k, v in {**entry["kwargs"], **self.preprocess_kwargs}.items() if k != "preprocess_dtype"}
        return entry["events_to_tensor"], kwargs

    def _downsampling(self, files, height: int, width: int):
        """(sensor size, downsampling factor) for array_dim's height and width.

        As in metavision_ml, the factor is that of the first recording (a power of two, the same in both
        directions), and the engine applies it to every event recording (x >> ds, y >> ds). A recording of
        another sensor size would come out wrong without a word: the events of a larger sensor outside the
        tensor dropped, those of a smaller one in a corner of it. So every event recording that tells its size
        must have the first one's (precomputed tensor files are resized per file, and checked on their own)."""
        sizes = {}

        def size_of(path):
            if path not in sizes:
                sizes[path] = get_original_size_file(path)
            return sizes[path]

        # The first recording that tells its size sets the factor (a DAT file without header does not).
        reference = next((f for f in files if all(size_of(f))), None)
        if reference is None:
            return size_of(files[0]), 0
        orig_h, orig_w = size_of(reference)
        ratio_h, ratio_w = orig_h / height, orig_w / width
        ds = math.log2(ratio_w) if ratio_w > 0 else -1
        if ratio_h != ratio_w or ds != int(ds) or ds < 0:
            raise ValueError(f"{reference}: array_dim {height}x{width} is not the sensor size "
                             f"{orig_h}x{orig_w} divided by a power of two")
        ds = int(ds)
        for path, precomputed in zip(files, self.precomputed):
            h, w = (None, None) if precomputed else size_of(path)
            if h and w and (h, w) != (orig_h, orig_w):
                raise _core.ConfigError(
                    f"{path}: sensor size {h}x{w} differs from the {orig_h}x{orig_w} of {reference}, whose "
                    f"downsampling factor {ds} (to array_dim {height}x{width}) applies to every recording: the "
                    f"events of {os.path.basename(path)} would "
                    + ("fall outside the tensor and be dropped" if h > orig_h or w > orig_w
                       else "fill only a corner of the tensor")
                    + ". Give recordings of one sensor size (one loader per size), or use the "
                    "CDProcessorDataLoader, which area-downscales larger sensors to its height and width")
        return (orig_h, orig_w), ds

    # --- metavision_ml's dataset API -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.scheduler)

    def get_size(self):
        return self.array_dim[-2:]

    def get_size_original(self):
        return self.original_size

    def get_unique_files(self) -> List[FileMetadata]:
        return list(self.scheduler.files)

    def get_batch_metadata(self, batch_idx: int):
        return self.scheduler.get_batch(batch_idx)

    def shuffle(self, seed: Optional[int] = None):
        self.scheduler.shuffle(seed)

    def reschedule(self, max_consecutive_batch, shuffle: bool = True):
        self.scheduler.reschedule(max_consecutive_batch, shuffle=shuffle)
        self.batch_size = self.scheduler.batch_size

    # --- engine ---------------------------------------------------------------------------------
    def _needs_label_hook(self) -> bool:
        return self.load_labels is not load_labels_stub or self.transforms is not None

    def check_unchanged(self, paths) -> None:
        """IoError naming the first of ``paths`` that shrank since the schedule was planned."""
        for path in paths:
            message = _shrunk(path, self._sizes)
            if message is not None:
                raise _core.IoError(message + "; its remaining time bins would come out empty")

    def _label_hook(self, item, tensor):
        """Runs on a worker thread with the GIL: transforms, then the user's load_labels, for one item."""
        import torch

        padding, entry, _, start, duration, _ = item
        if padding:
            return [float("nan")] * self.num_tbins, bytes(self.num_tbins)
        metadata = self.scheduler._chunks[entry]
        where = f"{metadata.path} [{start}, {start + duration}) us"
        seq = torch.from_numpy(tensor)
        try:
            if self.transforms is not None:
                seq = _transform_sequence(seq, metadata, self.transforms, self.scheduler.base_seed)
            labels, mask = self.load_labels(metadata, start, duration, seq)
        except Exception as error:  # name the recording and the time in the message, keep the type
            error.args = (f"{where}: {error}",) + tuple(error.args[1:])
            raise
        if len(labels) != self.num_tbins:
            raise ValueError(f"{where}: load_labels returned {len(labels)} labels for {self.num_tbins} time bins")
        return labels, _mask_bytes(mask, self.num_tbins, where)

    def make_engine(self, num_workers: int, prefetch: int):
        origin = time_origin_value(self.time_origin)
        num_tbins, channels, height, width = self.array_dim
        return _core.LoaderEngine(
            self.scheduler._schedule, self.files, self.precomputed,
            (num_tbins, self.batch_size, channels, height, width), self.preprocess_function_name,
            self.preprocess_kwargs if self._python_kernel is None else {}, self._python_kernel,
            self.downsampling_factor, self.delta_t, origin,
            _weak_hook(self, "SequentialDataset") if self._needs_label_hook() else None, num_workers, prefetch)


def _transform_sequence(sequence, metadata, transforms, base_seed=0):
    """metavision_ml's transform_sequence: the same random draw for every plane of a chunk in an epoch."""
    import random

    import torch
    from PIL import Image

    seed = hash(hash(metadata) + base_seed)
    out = sequence.clone()
    for t in range(sequence.shape[0]):
        for c in range(sequence.shape[1]):
            random.seed(seed)
            torch.manual_seed(seed)
            plane = Image.fromarray(sequence[t, c].numpy().astype(np.float32), mode="F")
            result = np.asarray(transforms(plane), dtype=np.float32)
            if result.shape != tuple(sequence.shape[2:]):
                raise ValueError(f"transforms must keep the frame shape {tuple(sequence.shape[2:])}, got {result.shape}")
            out[t, c] = torch.from_numpy(result)
    sequence.copy_(out)
    return sequence
