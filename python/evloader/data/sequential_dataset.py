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
from typing import Callable, List, Optional, Sequence

import numpy as np

from .. import _core
from .scheduler import FileMetadata, Scheduler, get_original_size_file, is_precomputed

def load_labels_stub(metadata, start_time, duration, tensor):
    """The template of a label function: one empty label per time bin, no bin labelled."""
    import torch

    n = len(range(0, duration, metadata.delta_t))
    return [torch.empty(0) for _ in range(n)], np.zeros(n, dtype=bool)


def _mask_bytes(mask, num_tbins: int, where: str) -> bytes:
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    if mask.size != num_tbins:
        raise ValueError(f"{where}: load_labels returned a frame_is_labeled mask of {mask.size} values for "
                         f"{num_tbins} time bins")
    return mask.astype(np.uint8).tobytes()


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
            if not os.path.isfile(f):
                raise FileNotFoundError(f"{f}: no such recording")
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
        self.time_origin = time_origin
        self.precomputed = [is_precomputed(f) for f in files]

        self.preprocess_kwargs = dict(preprocess_kwargs or {})
        self.preprocess_kwargs.pop("preprocess_dtype", None)  # the loader always delivers float32
        self._python_kernel = None
        if not all(self.precomputed):
            self._prepare_kernel(preprocess_function_name, channels)

        # Sensor size and the downsampling factor (a power of two, the same in both directions).
        self.original_size = get_original_size_file(files[0])
        orig_h, orig_w = self.original_size
        self.downsampling_factor = 0
        if orig_h and orig_w:
            ratio_h, ratio_w = orig_h / height, orig_w / width
            ds = math.log2(ratio_w) if ratio_w > 0 else -1
            if ratio_h != ratio_w or ds != int(ds) or ds < 0:
                raise ValueError(f"{files[0]}: array_dim {height}x{width} is not the sensor size "
                                 f"{orig_h}x{orig_w} divided by a power of two")
            self.downsampling_factor = int(ds)

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
        from .. import preprocessing

        entry = preprocessing.get_preprocess_dict(name)  # ValueError for unknown names
        if entry["cin"] != channels and name not in ("event_cube", "multi_channel_timesurface"):
            raise ValueError(f"preprocessing {name!r} has {entry['cin']} channels, array_dim asks for {channels}")
        if not preprocessing.is_native_preprocessing(name):
            fn = entry["events_to_tensor"]
            kwargs = {k: v for k, v in {**entry["kwargs"], **self.preprocess_kwargs}.items()
                      if k != "preprocess_dtype"}
            ds_holder = self

            def run_python_kernel(raw_events, out, duration):
                from .._dtypes import EventCD, view_records

                fn(view_records(raw_events, EventCD), out, duration,
                   downsampling_factor=ds_holder.downsampling_factor, reset=False, **kwargs)

            self._python_kernel = run_python_kernel

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
        origin = _core.TimeOrigin.metavision if self.time_origin == "metavision" else _core.TimeOrigin.absolute
        num_tbins, channels, height, width = self.array_dim
        return _core.LoaderEngine(
            self.scheduler._schedule, self.files, self.precomputed,
            (num_tbins, self.batch_size, channels, height, width), self.preprocess_function_name,
            self.preprocess_kwargs if self._python_kernel is None else {}, self._python_kernel,
            self.downsampling_factor, self.delta_t, origin,
            self._label_hook if self._needs_label_hook() else None, num_workers, prefetch)


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
