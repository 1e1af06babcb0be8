# SPDX-License-Identifier: Apache-2.0
"""``SequentialDataLoader``: metavision_ml's loader API, iterating batches produced by the C++ engine."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from .device import DeviceMixin
from .sequential_dataset import SequentialDataset, _check_generation, load_labels_stub


def _distributed_defaults(rank, world_size):
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:
        pass
    return 0, 1


class SequentialDataLoader(DeviceMixin):
    """Chronological batches for truncated back-propagation through time.

    Each iteration yields ``{'inputs': float32 [T, N, C, H, W], 'labels': T lists of N, 'mask_keep_memory':
    [N, 1, 1, 1], 'frame_is_labeled': bool [T, N], 'video_infos': N (FileMetadata, start_us, duration_us)}``.

    metavision_ml's arguments, plus: ``seed`` (shuffling of the recording order with ``shuffle_files`` or
    ``dataset.shuffle()``), ``prefetch`` (batches prepared ahead), ``pin_memory``, ``device``, ``rank`` and
    ``world_size`` (default: from an initialised ``torch.distributed``), ``max_consecutive_batch``,
    ``time_origin``. ``shuffle=True`` (metavision_ml's sample shuffling, which breaks temporal continuity) is
    served as a seeded shuffle of the recording order instead, which keeps every sequence intact.
    """

    def __init__(self, files: Sequence[str], delta_t: int, preprocess_function_name: str, array_dim,
                 load_labels: Callable = load_labels_stub, durations=(), batch_size: int = 8, num_workers: int = 2,
                 preprocess_kwargs: Optional[dict] = None, shuffle: bool = False, padding: bool = False,
                 transforms=None, *, seed: int = 0, prefetch: int = 2, pin_memory: bool = False, device=None,
                 rank: Optional[int] = None, world_size: Optional[int] = None, shuffle_files: bool = False,
                 max_consecutive_batch: Optional[int] = None, time_origin: str = "absolute"):
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        rank, world_size = _distributed_defaults(rank, world_size)
        self.dataset = SequentialDataset(files, delta_t, preprocess_function_name, array_dim, load_labels=load_labels,
                                         durations=durations, batch_size=batch_size,
                                         preprocess_kwargs=preprocess_kwargs, padding=padding, transforms=transforms,
                                         seed=seed, shuffle_files=shuffle_files or shuffle, rank=rank,
                                         world_size=world_size, max_consecutive_batch=max_consecutive_batch,
                                         time_origin=time_origin)
        self.num_workers = int(num_workers)
        self.prefetch = int(prefetch)
        self.shuffle = shuffle
        self.pin_memory = pin_memory
        self.device = device
        self._engine = None
        self._engine_key = None
        self._resume_batch = 0
        self._next_batch = 0
        self.epoch = 0
        self._generation = 0

    # --- metavision_ml's API ----------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.dataset.batch_size

    def __len__(self) -> int:
        return self.dataset.scheduler.num_batches

    def get_vis_func(self):
        from .. import preprocessing

        return preprocessing.get_preprocess_dict(self.dataset.preprocess_function_name)["viz"]

    # --- resuming ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Where the current epoch stands: loading it makes the next iteration resume at the next batch."""
        s = self.dataset.scheduler
        return {"epoch": self.epoch, "next_batch": self._next_batch, "base_seed": s.base_seed,
                "shuffled": s._shuffle, "max_consecutive_batch": s.max_consecutive_batch}

    def load_state_dict(self, state: dict) -> None:
        s = self.dataset.scheduler
        if (state["base_seed"], state["shuffled"], state["max_consecutive_batch"]) != \
                (s.base_seed, s._shuffle, s.max_consecutive_batch):
            s.base_seed, s._shuffle, s.max_consecutive_batch = state["base_seed"], state["shuffled"], \
                state["max_consecutive_batch"]
            s._build()
            self.dataset.batch_size = s.batch_size
        self.epoch = int(state["epoch"])
        self._resume_batch = int(state["next_batch"])

    # --- iteration --------------------------------------------------------------------------------
    def _engine_for_schedule(self):
        key = (id(self.dataset.scheduler._schedule), self.num_workers, self.prefetch)
        if self._engine is None or self._engine_key != key:
            self.close()
            self._engine = self.dataset.make_engine(self.num_workers, self.prefetch)
            self._engine_key = key
        return self._engine

    def __iter__(self):
        import torch

        engine = self._engine_for_schedule()
        first, self._resume_batch = self._resume_batch, 0
        n_slots, num_tbins = self.dataset.batch_size, self.dataset.num_tbins
        # One engine per loader: a new iteration restarts it. An older iterator still open must neither take
        # the new one's batches nor, when it is closed or collected, stop the new one's epoch half-way.
        self._generation += 1
        generation = self._generation
        engine.start(first)
        self._next_batch = first
        try:
            while True:
                _check_generation(self, generation)
                produced = engine.next()
                _check_generation(self, generation)
                if produced is None:
                    break
                inputs, index, mask, labels = produced
                batch = self._assemble(torch, inputs, index, mask, labels, n_slots, num_tbins)
                self._next_batch = index + 1
                yield batch
            self.epoch += 1
            self._next_batch = 0
        finally:
            if generation == self._generation:
                engine.stop()

    def _assemble(self, torch, inputs, index, mask, labels, n_slots, num_tbins):
        items = [self.dataset.scheduler.item(index, s) for s in range(n_slots)]
        # A recording truncated under the loader reads as empty bins: say so rather than train on them.
        self.dataset.check_unchanged(dict.fromkeys(it[0].path for it in items if not it[0].is_padding()))
        keep = torch.tensor([1.0 if it[3] else 0.0 for it in items], dtype=torch.float32).view(n_slots, 1, 1, 1)
        frame_is_labeled = torch.from_numpy(np.frombuffer(mask, dtype=np.uint8).astype(bool).reshape(num_tbins, n_slots))
        if all(label is None for label in labels):  # load_labels_stub: nothing ran per item
            empty = torch.empty(0)
            per_slot = [[float("nan")] * num_tbins if it[0].is_padding() else [empty] * num_tbins for it in items]
        else:
            per_slot = labels
        labels_tn = [[per_slot[i][t] for i in range(n_slots)] for t in range(num_tbins)]
        if self._on_device():
            inputs = self._inputs_to_device(inputs)
            keep = keep.to(self.device)
        return {"inputs": inputs, "labels": labels_tn, "mask_keep_memory": keep,
                "frame_is_labeled": frame_is_labeled, "video_infos": tuple(it[:3] for it in items)}

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

    # --- visualisation ----------------------------------------------------------------------------
    def show(self, viz_labels=None):
        """Frames (RGB uint8) of the batches as a grid, one per time bin; see evloader.data.show."""
        from .show import show_batches

        return show_batches(self, self.get_vis_func(), viz_labels)
