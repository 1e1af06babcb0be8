# SPDX-License-Identifier: Apache-2.0
"""Throughput, latency, memory and CPU cost of evloader's SequentialDataLoader against a reference pipeline
built the way metavision_ml 4.2.1 loads precomputed HDF5 datasets, side by side in one run.

Dataset (generated once, cached; --data-dir or <tmp>/evloader_bench_loader_v1): shaped like the tutorial's
Gen4 automotive set: 8 recordings of 10-30 s, ``histo`` frames 2x360x640 float32 (sensor 720x1280, so
downsampling factor 1), delta_t 50 ms, gzip level 4 with one chunk per frame (Metavision's HDF5Writer
layout), values multiples of 0.2 in [0, 1], about 5 % of the cells non-zero (moving objects' edges plus
noise), and a ``_bbox.npy`` per recording with one box per object every 50 ms.

Pipelines (the same schedule arithmetic, so the same batches):
  reference  metavision_ml 4.2.1 re-implemented here from the behaviour spec (§3-§5): a map-style torch
             Dataset over the round-robin schedule; each item opens the HDF5 file with h5py, slices frames
             [start // dt, (start + duration) // dt), converts to float32 (cv2 INTER_AREA if sizes differed:
             they do not here), calls the label function; ``collate_fn`` stacks to [T, N, C, H, W]; a new
             torch DataLoader (num_workers worker processes, respawned every epoch) per iteration.
  evloader   evloader.data.SequentialDataLoader (C++ worker threads, files opened once per slot, reused batch
             buffers handed to torch without copies).
Label functions (Python, run once per batch item by both loaders, same code and same results):
  reference  ``load_boxes``-like: ``np.load`` of the whole _bbox.npy on every call, sort by t, window
             [start, start + duration) (4.2.1's), split into bins (t - start in (k dt, (k+1) dt]) with a numpy
             greedy NMS per bin, frame_is_labeled, clip to the sensor, class lookup, split + NMS again,
             rescale to the tensor, min-size filter (4.2.1's empty-tensor filter is left out).
  evloader   the same function with ``evloader.read_boxes`` instead of ``np.load`` (still a read per call).
A third row, ``evloader+C++ labels``, runs evloader.data.box_processing.load_boxes (the C++ path: box file read
once per process, window (start, end], empty-tensor filter included) to show the product's own label path;
its labels differ from the other two by design and are not compared.

Measured per (pipeline, T, batch, num_workers), each run in a fresh process forked from a per-pipeline
"zygote" that has done the imports (torch takes seconds to import on a busy machine; a fork takes
milliseconds), runs round-robin so that background load hits every pipeline alike:
  first batch   seconds from constructing the loader (schedule included) to the first batch in hand
                (the reference's worker processes are started in between)
  batches/s     steady rate after the first batch: (n - 1) / (t_n - t_1); the consumer touches nothing
  MB/s          batches/s x bytes of the batch's ``inputs`` tensor
  CPU/batch     user+sys of the process (all threads) and of its live worker processes between batch 1
                and batch n, divided by n - 1: the steady-state cost (contention-proof, unlike wall rates)
  all-in        user+sys from constructing the loader to its shutdown, workers reaped, divided by n:
                start-up included; evloader's count also holds up to ``prefetch`` (2) batches prepared and
                thrown away at the stop, the reference's none (its sampler ends at batch n, like an epoch)
  peak RSS      largest sum of RSS over the process tree, sampled every 20 ms from /proc/PID/smaps_rollup
                (pages shared by forked workers count in each process, as ``ps`` would show)
  peak PSS      the same with Pss (shared pages split between the processes mapping them, the zygote
                included, so the import baseline is under-counted alike for both pipelines)
  +RSS, +PSS    peak minus the process's own value after imports: what the loader itself adds
Medians of --runs runs (3). Before timing, the files are read once (page cache warm); the schedules of a
whole epoch and the first --check-batches batches of both pipelines are compared.

Usage: python3 bench/python/bench_loader.py [--data-dir DIR] [--runs 3] [--workers 2,0] [--json out.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no BLAS here; keeps idle spinning threads out of CPU time

import numpy as np  # noqa: E402
import torch  # noqa: E402  (the reference's Dataset subclasses torch's; every training script imports it)
import torch.utils.data  # noqa: E402

SENSOR_HW = (720, 1280)
C, H, W = 2, 360, 640
DELTA_T = 50_000
N_RECORDINGS = 8
DATA_VERSION = "v1"
LABEL_MAP = {"0": "pedestrian", "1": "two wheeler", "2": "car", "3": "truck", "4": "bus", "5": "traffic sign",
             "6": "traffic light"}
WANTED = ["car", "pedestrian", "truck", "two wheeler"]  # class ids 2, 0, 3, 1 -> 1..4; the others dropped
# (num_tbins, batch_size, batches measured per run)
CONFIGS = [(3, 2, 50), (10, 4, 13)]
TARGET_SPEEDUP = 5.0  # batches/s at num_workers=2, against the reference
TARGET_MEMORY = 0.5  # peak memory at most this fraction of the reference's


# ---------------------------------------------------------------------------------------------------------
# dataset


def _bounce(x0, v, f, span):
    """Position after f steps of a point bouncing between 0 and span."""
    if span <= 0:
        return 0.0
    p = (x0 + v * f) % (2 * span)
    return p if p <= span else 2 * span - p


def _recording_plan(index: int):
    rng = np.random.default_rng(1000 + index)
    duration_s = float(np.random.default_rng(77).uniform(10.0, 30.0, N_RECORDINGS)[index])
    n_frames = int(round(duration_s * 1e6 / DELTA_T))
    objects = []
    for k in range(int(rng.integers(3, 7))):
        w, h = float(rng.uniform(20, 140)), float(rng.uniform(20, 100))
        objects.append({"w": w, "h": h, "x0": float(rng.uniform(0, W - w)), "y0": float(rng.uniform(0, H - h)),
                        "vx": float(rng.uniform(-8, 8)), "vy": float(rng.uniform(-3, 3)),
                        "class_id": int(rng.integers(0, 7)), "track_id": k})
    return n_frames, objects


def _object_rect(obj, f):
    x = _bounce(obj["x0"], obj["vx"], f, W - obj["w"])
    y = _bounce(obj["y0"], obj["vy"], f, H - obj["h"])
    return x, y, obj["w"], obj["h"]


def _frames(rng, objects, first, count):
    """Histo frames [count, 2, H, W]: events histogrammed with increment 0.2, saturating at 1."""
    out = np.empty((count, C, H, W), np.float32)
    for i in range(count):
        f = first + i
        xs, ys = [], []
        for obj in objects:
            x, y, w, h = _object_rect(obj, f)
            n = int(8 * 2 * (w + h))
            u = rng.uniform(0, 2 * (w + h), n)
            px = np.where(u < w, x + u, np.where(u < w + h, x + w, np.where(u < 2 * w + h, x + (2 * w + h - u), x)))
            py = np.where(u < w, y, np.where(u < w + h, y + (u - w), np.where(u < 2 * w + h, y + h,
                                                                             y + (2 * (w + h) - u))))
            xs.append(px + rng.normal(0, 2.0, n))
            ys.append(py + rng.normal(0, 2.0, n))
        n_noise = int(rng.integers(14000, 26000))
        xs.append(rng.uniform(0, W, n_noise))
        ys.append(rng.uniform(0, H, n_noise))
        x = np.clip(np.concatenate(xs).astype(np.int64), 0, W - 1)
        y = np.clip(np.concatenate(ys).astype(np.int64), 0, H - 1)
        p = rng.integers(0, 2, x.size)
        counts = np.bincount((p * H + y) * W + x, minlength=C * H * W)
        np.minimum(counts.astype(np.float32) * np.float32(0.2), np.float32(1.0), out=out[i].reshape(-1))
    return out


def _boxes(objects, n_frames):
    import evloader

    rows = []
    scale_x, scale_y = SENSOR_HW[1] / W, SENSOR_HW[0] / H
    for f in range(n_frames):  # a label at the end of every frame: t = (f + 1) * 50 ms
        for obj in objects:
            x, y, w, h = _object_rect(obj, f)
            rows.append(((f + 1) * DELTA_T, x * scale_x, y * scale_y, w * scale_x, h * scale_y, obj["class_id"],
                         obj["track_id"], 1.0))
    boxes = np.zeros(len(rows), dtype=evloader.EventBbox)
    for name, col in zip(boxes.dtype.names, zip(*rows)):
        boxes[name] = col
    return boxes


def ensure_dataset(root: Path) -> list:
    """The dataset's .h5 paths, generating the files when the cache is missing or incomplete."""
    marker = root / f"complete_{DATA_VERSION}.json"
    paths = [root / f"rec_{i}.h5" for i in range(N_RECORDINGS)]
    if marker.exists() and all(p.exists() for p in paths):
        return [str(p) for p in paths]
    import evloader
    from evloader.tensor_file import TensorFileWriter

    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    total, nonzero = 0, 0
    for i, path in enumerate(paths):
        n_frames, objects = _recording_plan(i)
        rng = np.random.default_rng(2000 + i)
        tmp = path.with_suffix(".h5.tmp")
        with TensorFileWriter(tmp, "histo", (C, H, W), DELTA_T, SENSOR_HW, kwargs={"max_incr_per_pixel": 5},
                              compression_threads=2) as writer:
            for first in range(0, n_frames, 50):
                frames = _frames(rng, objects, first, min(50, n_frames - first))
                nonzero += int(np.count_nonzero(frames))
                total += frames.size
                writer.write(frames)
        os.replace(tmp, path)
        evloader.write_boxes(root / f"rec_{i}_bbox.npy", _boxes(objects, n_frames))
        print(f"  generated {path.name}: {n_frames} frames ({n_frames * DELTA_T / 1e6:.2f} s)", file=sys.stderr)
    (root / "label_map_dictionary.json").write_text(json.dumps(LABEL_MAP))
    marker.write_text(json.dumps({"non_zero_fraction": nonzero / total, "seconds": time.perf_counter() - t0}))
    return [str(p) for p in paths]


def dataset_summary(paths) -> dict:
    import h5py

    frames = 0
    for p in paths:
        with h5py.File(p, "r") as f:
            frames += f["data"].shape[0]
    size = sum(os.path.getsize(p) for p in paths)
    marker = json.loads((Path(paths[0]).parent / f"complete_{DATA_VERSION}.json").read_text())
    return {"recordings": len(paths), "frames": frames, "seconds": frames * DELTA_T / 1e6,
            "h5_bytes": size, "raw_bytes": frames * C * H * W * 4, "non_zero_fraction": marker["non_zero_fraction"],
            "boxes": sum(int(np.load(p[:-3] + "_bbox.npy", mmap_mode="r").shape[0]) for p in paths)}


def warm_page_cache(root: Path):
    for p in sorted(root.iterdir()):
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


# ---------------------------------------------------------------------------------------------------------
# label functions (Python, shared by both loaders)


def class_lookup() -> np.ndarray:
    lookup = -np.ones(max(int(k) for k in LABEL_MAP) + 1, dtype=np.int64)
    names = {v: int(k) for k, v in LABEL_MAP.items()}
    for pos, name in enumerate(WANTED):
        lookup[names[name]] = pos + 1
    return lookup


def _nms(boxes, scores, thresh=0.5):
    """metavision_ml's greedy NMS (numpy, "+1 pixel" convention); kept indices sorted."""
    x1, y1 = boxes["x"].astype(np.float64), boxes["y"].astype(np.float64)
    x2, y2 = x1 + boxes["w"], y1 + boxes["h"]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= thresh]
    return sorted(keep)


def _split(boxes, start, dt, num_tbins):
    rel = boxes["t"] - start
    out = []
    for k in range(num_tbins):
        b = boxes[(rel > k * dt) & (rel <= (k + 1) * dt)]
        out.append(b[_nms(b, b["t"])] if len(b) else b)
    return out


def python_load_boxes(metadata, batch_start_time, duration, tensor, class_lookup=None, reader="np.load",
                      min_box_diag_network=0, **_):
    """metavision_ml's load_boxes steps in Python/numpy (its empty-tensor filter left out)."""
    import evloader

    path = metadata.path[:-3] + "_bbox.npy"
    raw = np.load(path) if reader == "np.load" else evloader.read_boxes(path)  # the whole file, every call
    boxes = np.sort(raw.astype(evloader.EventBbox), order="t")
    boxes = boxes[(boxes["t"] >= batch_start_time) & (boxes["t"] < batch_start_time + duration)]
    num_tbins, _, hd, wd = tensor.shape
    dt = duration // num_tbins
    frame_is_labeled = np.array([len(b) > 0 for b in _split(boxes, batch_start_time, dt, num_tbins)], bool)
    height_orig, width_orig = metadata.get_original_size()
    # clip_boxes
    x2 = np.clip(boxes["x"] + boxes["w"], 0, width_orig)
    y2 = np.clip(boxes["y"] + boxes["h"], 0, height_orig)
    boxes["x"] = np.clip(boxes["x"], 0, width_orig)
    boxes["y"] = np.clip(boxes["y"], 0, height_orig)
    boxes["w"], boxes["h"] = x2 - boxes["x"], y2 - boxes["y"]
    boxes = boxes[(boxes["w"] > 2) & (boxes["h"] > 2)]
    # filter_boxes (nothing ignored)
    classes = class_lookup[boxes["class_id"]]
    boxes = boxes[classes > 0]
    boxes["class_id"] = classes[classes > 0]
    labels = []
    d = float(min_box_diag_network)
    for b in _split(boxes, batch_start_time, dt, num_tbins):
        b = b.copy()
        b["x"] *= wd / width_orig
        b["w"] *= wd / width_orig
        b["y"] *= hd / height_orig
        b["h"] *= hd / height_orig
        keep = (b["w"] ** 2 + b["h"] ** 2 >= d * d) & (b["w"] >= d / 3) & (b["h"] >= d / 3) & (b["w"] <= 0.8 * wd)
        labels.append(b[keep])
    return labels, frame_is_labeled


# ---------------------------------------------------------------------------------------------------------
# the reference pipeline (metavision_ml 4.2.1's SequentialDataLoader on precomputed files)


class RefFileMetadata:
    def __init__(self, path=None, duration=None, delta_t=None, num_tbins=None, start_ts=0, padding=False):
        self.padding = padding
        if padding:
            return
        self.path, self.duration, self.delta_t, self.num_tbins = path, duration, delta_t, num_tbins
        self.start_ts, self.labels, self._size = start_ts, None, None

    def get_original_size(self):
        if self._size is None:
            import h5py

            with h5py.File(self.path, "r") as f:
                a = f["data"].attrs
                if "event_input_height" in a:
                    self._size = (int(a["event_input_height"]), int(a["event_input_width"]))
                else:
                    shift = int(a.get("downsampling_factor", a.get("shift", 0)))
                    self._size = (f["data"].shape[-2] << shift, f["data"].shape[-1] << shift)
        return self._size

    def is_padding(self):
        return self.padding


def _rounding(duration, t_total, tolerance=1000):
    excess = duration % t_total
    return duration - excess + t_total if t_total - excess <= tolerance else duration - excess


class RefScheduler:
    """§3.5: files to slots round-robin by position, cumulative durations per slot, items by searchsorted."""

    def __init__(self, files, delta_t, num_tbins, batch_size, padding=False):
        import h5py

        self.t_total = delta_t * num_tbins
        self.batch_size, self.padding = min(batch_size, len(files)), padding
        self.files = []
        for path in files:
            with h5py.File(path, "r") as f:  # get_duration: shape[0] * delta_t
                duration = f["data"].shape[0] * int(f["data"].attrs["delta_t"])
            self.files.append(RefFileMetadata(path, duration, delta_t, num_tbins))
        n = self.batch_size
        actual = [_rounding(f.duration - f.start_ts, self.t_total) for f in self.files]
        self.cum = [np.cumsum(actual[s::n]) for s in range(n)]
        ends = [c[-1] // self.t_total for c in self.cum]
        self.n_items = (max(ends) if padding else min(ends)) * n

    def __len__(self):
        return self.n_items

    def __getitem__(self, index):
        if index >= self.n_items:
            raise IndexError(index)
        n = self.batch_size
        b, s = divmod(index, n)
        it = (b + 1) * self.t_total
        cum = self.cum[s]
        if it > cum[-1]:
            return RefFileMetadata(padding=True), 0, 0
        k = int(np.searchsorted(cum, it, side="left"))
        f = self.files[s + n * k]
        elapsed = int(cum[k - 1]) if k else 0
        start = f.start_ts + int(math.ceil(it - self.t_total - elapsed))
        return f, start, f.num_tbins * f.delta_t


def _downsample_clip(frames, array):
    assert frames.dtype == array.dtype and len(frames) == len(array)
    if frames.shape[-2:] != array.shape[-2:]:
        import cv2

        for t in range(frames.shape[0]):
            for c in range(frames.shape[1]):
                array[t, c] = cv2.resize(frames[t, c], (array.shape[-1], array.shape[-2]),
                                         interpolation=cv2.INTER_AREA)
    else:
        array[...] = frames


class RefSequentialDataset(torch.utils.data.Dataset):
    """§4.2 for .h5 inputs: the file opened per item, frames sliced with the file's delta_t."""

    def __init__(self, files, delta_t, array_dim, load_labels, batch_size, padding=False):
        import h5py

        self.array_dim, self.num_tbins, self.load_labels = list(array_dim), array_dim[0], load_labels
        self.scheduler = RefScheduler(files, delta_t, array_dim[0], batch_size, padding)
        self.batch_size = self.scheduler.batch_size
        with h5py.File(files[0], "r") as f:
            self.dtype = np.float32 if f["data"].attrs.get("store_as_uint8", False) else f["data"].dtype

    def __len__(self):
        return len(self.scheduler)

    def __getitem__(self, index):
        import h5py

        metadata, start, duration = self.scheduler[index]
        if metadata.padding:
            return (torch.from_numpy(np.zeros(self.array_dim, self.dtype)), [float("nan")] * self.num_tbins, 1.0,
                    np.zeros(self.num_tbins, bool), (metadata, 0, 0))
        assert start >= metadata.start_ts and duration % self.num_tbins == 0
        array = np.zeros(self.array_dim, dtype=self.dtype)
        with h5py.File(metadata.path, "r") as f:
            dset = f["data"]
            assert dset.attrs.get("mode", "delta_t") == "delta_t"
            dt_file = int(dset.attrs["delta_t"])
            assert dt_file > 0
            frames = dset[start // dt_file:(start + duration) // dt_file]
            if dset.attrs.get("store_as_uint8", False):
                frames = frames.astype(np.float32) / 255
        _downsample_clip(frames, array)
        keep_memory = float(start > metadata.start_ts)
        seq = torch.from_numpy(array)  # transforms=None: transform_sequence is the identity
        labels, frame_is_labeled = self.load_labels(metadata, start, duration, seq)
        return seq, labels, keep_memory, frame_is_labeled, (metadata, start, duration)


def ref_collate_fn(data_list):
    tensors, labels, keep, masks, infos = zip(*data_list)
    return {"inputs": torch.stack(tensors, 1),
            "labels": [[item[t] for item in labels] for t in range(len(labels[0]))],
            "mask_keep_memory": torch.FloatTensor(keep).view(-1, 1, 1, 1),
            "frame_is_labeled": torch.from_numpy(np.stack(masks, axis=1)),
            "video_infos": infos}


class RefSequentialDataLoader:
    """§4.4: a new torch DataLoader (workers respawned) every epoch; inputs cast to float32."""

    def __init__(self, files, delta_t, array_dim, load_labels, batch_size, num_workers, max_batches=None):
        self.dataset = RefSequentialDataset(files, delta_t, array_dim, load_labels, batch_size)
        self.num_workers = num_workers
        self.max_batches = max_batches

    def __len__(self):
        n = len(self.dataset) // self.dataset.batch_size
        return n if self.max_batches is None else min(n, self.max_batches)

    def __iter__(self):
        # max_batches: an epoch of that many batches (the sampler ends there, as at a real epoch's end, so
        # the workers prefetch nothing that is thrown away); None: metavision_ml's default sampler.
        sampler = None if self.max_batches is None else range(len(self) * self.dataset.batch_size)
        dl = torch.utils.data.DataLoader(self.dataset, batch_size=max(1, self.dataset.batch_size),
                                         num_workers=self.num_workers, shuffle=False, sampler=sampler,
                                         collate_fn=ref_collate_fn, pin_memory=False)
        it = iter(dl)
        try:
            for _ in range(len(self)):
                batch = next(it)
                batch["inputs"] = batch["inputs"].float()
                yield batch
        finally:
            shutdown = getattr(it, "_shutdown_workers", None)
            if shutdown is not None:  # what the iterator's __del__ does; here deterministically
                shutdown()
            del it


# ---------------------------------------------------------------------------------------------------------
# building either pipeline


def make_loader(pipeline: str, paths, num_tbins: int, batch_size: int, num_workers: int, max_batches=None):
    from functools import partial

    array_dim = [num_tbins, C, H, W]
    lookup = class_lookup()
    if pipeline == "reference":
        return RefSequentialDataLoader(paths, DELTA_T, array_dim, partial(python_load_boxes, class_lookup=lookup),
                                       batch_size, num_workers, max_batches)
    from evloader.data import SequentialDataLoader

    if pipeline == "evloader":
        labels = partial(python_load_boxes, class_lookup=lookup, reader="evloader")
    elif pipeline == "evloader+C++ labels":
        from evloader.data.box_processing import load_boxes

        labels = partial(load_boxes, class_lookup=lookup)
    else:
        raise ValueError(pipeline)
    return SequentialDataLoader(paths, DELTA_T, "histo", array_dim, load_labels=labels, batch_size=batch_size,
                                num_workers=num_workers)


# ---------------------------------------------------------------------------------------------------------
# one measurement: a process forked from a zygote that has imported what its pipeline needs (importing torch
# takes seconds of CPU; a fork takes milliseconds), so that every measurement runs in its own fresh process
# tree with the same imports as a training script, and peaks never mix.

ZYGOTE_IMPORTS = {"reference": ("h5py", "cv2"),  # metavision_ml's sequential_dataset imports both
                  "evloader": ("evloader.data", "evloader.data.box_processing")}


def _mem_of(path: str):
    rss = pss = 0
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def run_measurement(spec: dict) -> dict:
    """Runs in the forked process: builds the loader, takes `batches` batches, shuts it down."""
    import resource

    def cpu():  # this process (all threads) and its reaped children
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    def live_tree_cpu():  # this process (all threads) and its live worker processes
        s = resource.getrusage(resource.RUSAGE_SELF)
        ticks = 0
        for pid in _tree_pids(os.getpid())[1:]:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return s.ru_utime + s.ru_stime + ticks / os.sysconf("SC_CLK_TCK")

    n = spec["batches"]
    base_rss, base_pss = _mem_of("/proc/self/smaps_rollup")
    cpu0, t0 = cpu(), time.perf_counter()
    loader = make_loader(spec["pipeline"], spec["paths"], spec["num_tbins"], spec["batch_size"], spec["num_workers"],
                         max_batches=n)
    it = iter(loader)
    stamps, nbytes = [], 0
    for i in range(n):
        batch = next(it)  # the consumer touches nothing: the loader's cost alone
        stamps.append(time.perf_counter())
        if i == 0:
            steady0 = live_tree_cpu()
        nbytes = batch["inputs"].numel() * batch["inputs"].element_size()
    steady1 = live_tree_cpu()
    del batch
    it.close()  # stops the engine threads / joins (hence reaps) the reference's workers
    close = getattr(loader, "close", None)
    if close:
        close()
    t_end, cpu1 = time.perf_counter(), cpu()
    return {"first_batch_s": stamps[0] - t0, "batches_per_s": (n - 1) / (stamps[-1] - stamps[0]),
            "wall_s": t_end - t0, "cpu_s": cpu1 - cpu0, "cpu_per_batch_total_s": (cpu1 - cpu0) / n,
            "cpu_per_batch_s": (steady1 - steady0) / (n - 1), "batch_bytes": nbytes,
            "baseline_rss_kb": base_rss, "baseline_pss_kb": base_pss,
            "maxrss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "maxrss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}


def zygote_main(kind: str):
    """Imports once, then per request line (a JSON spec): fork, report the pid, wait for 'go' (the driver is
    sampling), run the measurement in the child, print its result."""
    import importlib

    for name in ZYGOTE_IMPORTS[kind]:
        importlib.import_module(name)
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        spec = json.loads(line)
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(go_w)
                os.read(go_r, 1)
                result = run_measurement(spec)
                print("RESULT " + json.dumps(result), flush=True)
            except BaseException as error:  # report, never fall back into the zygote's loop
                print("ERROR " + repr(error), flush=True)
                code = 1
            finally:
                os._exit(code)
        os.close(go_r)
        print(f"pid {pid}", flush=True)
        sys.stdin.readline()  # "go"
        os.write(go_w, b"g")
        os.close(go_w)
        _, status = os.waitpid(pid, 0)
        print(f"done {status}", flush=True)


class Zygote:
    def __init__(self, kind: str):
        self.proc = subprocess.Popen([sys.executable, __file__, "--zygote", kind], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {kind} zygote did not start")

    def measure(self, spec: dict) -> dict:
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline().split()[1])
        peak = {"rss": 0, "pss": 0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                rss = pss = 0
                for p in _tree_pids(pid):
                    r, q = _mem_of(f"/proc/{p}/smaps_rollup")
                    rss, pss = rss + r, pss + q
                peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
                stop.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(0.05)
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        result, error = None, None
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
            elif line.startswith("ERROR "):
                error = line[6:].strip()
            elif line.startswith("done"):
                break
        stop.set()
        sampler.join()
        if result is None:
            raise RuntimeError(f"{spec['pipeline']} T={spec['num_tbins']} N={spec['batch_size']} "
                               f"nw={spec['num_workers']} failed: {error}")
        result.update(peak_rss_kb=peak["rss"], peak_pss_kb=peak["pss"])
        result["mb_per_s"] = result["batches_per_s"] * result["batch_bytes"] / 1e6
        return result

    def close(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.proc.wait()


# ---------------------------------------------------------------------------------------------------------
# driver


def _tree_pids(root_pid: int):
    pids, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return pids


def _labels_equal(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and (math.isnan(a) and math.isnan(b) or a == b)
    return np.array_equal(np.asarray(a), np.asarray(b))


def check_same_batches(paths, num_tbins, batch_size, num_workers, count) -> str:
    """The whole epoch's schedule (file, start, duration of every item) and the first `count` batches (inputs,
    masks, labels, video_infos) of the reference and evloader (same Python label function) compared."""
    ref = make_loader("reference", paths, num_tbins, batch_size, num_workers)
    ours = make_loader("evloader", paths, num_tbins, batch_size, num_workers)
    try:
        if len(ref) != len(ours):
            return f"DIFFERENT epoch lengths: reference {len(ref)} batches, evloader {len(ours)}"
        sched = ref.dataset.scheduler
        for bi in range(len(ours)):
            for i, (om, os_, od) in enumerate(ours.dataset.get_batch_metadata(bi)):
                rm, rs, rd = sched[bi * batch_size + i]
                if (os.path.abspath(rm.path), rs, rd) != (os.path.abspath(om.path), os_, od):
                    return f"DIFFERENT schedules at batch {bi} slot {i}"
        ri, oi = iter(ref), iter(ours)
        boxes = 0
        try:
            for b in range(count):
                r, o = next(ri), next(oi)
                if r["inputs"].shape != o["inputs"].shape or not torch.equal(r["inputs"], o["inputs"]):
                    return f"DIFFERENT inputs in batch {b}"
                if not torch.equal(r["mask_keep_memory"], o["mask_keep_memory"]):
                    return f"DIFFERENT mask_keep_memory in batch {b}"
                if not torch.equal(r["frame_is_labeled"], o["frame_is_labeled"]):
                    return f"DIFFERENT frame_is_labeled in batch {b}"
                for (rm, rs, rd), (om, os_, od) in zip(r["video_infos"], o["video_infos"]):
                    if (os.path.abspath(rm.path), rs, rd) != (os.path.abspath(om.path), os_, od):
                        return f"DIFFERENT video_infos in batch {b}"
                for t in range(num_tbins):
                    for i in range(batch_size):
                        if not _labels_equal(r["labels"][t][i], o["labels"][t][i]):
                            return f"DIFFERENT labels[{t}][{i}] in batch {b}"
                        boxes += len(r["labels"][t][i])
        finally:
            ri.close()
            oi.close()
    finally:
        ours.close()
    return (f"schedules identical ({len(ours)} batches), first {count} batches identical "
            f"(inputs, masks, video_infos, {boxes} label boxes)")


def machine_info() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import h5py

    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "h5py": h5py.__version__, "numpy": np.__version__, "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def print_table(table):
    print("| T | N | workers | pipeline | batches/s (range) | MB/s | first batch (s) | CPU/batch (ms) | "
          "CPU/batch all-in (ms) | peak RSS (MB) | peak PSS (MB) | +RSS (MB) | +PSS (MB) |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in table:
        lo, hi = row["batches_per_s_range"]
        print(f"| {row['T']} | {row['N']} | {row['num_workers']} | {row['pipeline']} | {row['batches_per_s']:.2f} "
              f"({lo:.1f}-{hi:.1f}) | {row['mb_per_s']:.0f} | {row['first_batch_s']:.2f} | "
              f"{1e3 * row['cpu_per_batch_s']:.1f} | {1e3 * row['cpu_per_batch_total_s']:.1f} | "
              f"{row['peak_rss_kb'] / 1024:.0f} | "
              f"{row['peak_pss_kb'] / 1024:.0f} | {row['added_rss_kb'] / 1024:.0f} | "
              f"{row['added_pss_kb'] / 1024:.0f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "evloader_bench_loader_v1")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", default="2,0", help="num_workers values, comma-separated")
    parser.add_argument("--configs", default=",".join(f"{t}x{b}x{n}" for t, b, n in CONFIGS),
                        help="T x batch x batches-per-run, comma-separated")
    parser.add_argument("--cpp-labels-workers", default="2",
                        help="num_workers values at which the 'evloader+C++ labels' row is measured ('' for none)")
    parser.add_argument("--check-batches", type=int, default=4)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--zygote", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.zygote:
        return zygote_main(args.zygote)

    t_start = time.perf_counter()
    paths = ensure_dataset(args.data_dir)
    warm_page_cache(args.data_dir)
    info = {"machine": machine_info(), "dataset": dataset_summary(paths), "loadavg_start": _loadavg()}
    ds = info["dataset"]
    print(f"machine: {info['machine']['cpu']}, {info['machine']['cores']} cores; {info['machine']['date']}; "
          f"load average {info['loadavg_start']}")
    print(f"dataset: {ds['recordings']} recordings, {ds['frames']} frames ({ds['seconds']:.1f} s), "
          f"{ds['h5_bytes'] / 1e6:.0f} MB on disk ({ds['raw_bytes'] / 1e9:.2f} GB as float32), "
          f"{100 * ds['non_zero_fraction']:.1f} % non-zero, {ds['boxes']} boxes")
    configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    cpp_workers = {int(w) for w in args.cpp_labels_workers.split(",") if w}

    checks = {}
    for t, b, _ in configs:
        for nw in workers:
            key = f"T={t} N={b} num_workers={nw}"
            checks[key] = check_same_batches(paths, t, b, nw, args.check_batches)
            print(f"check {key}: {checks[key]}", flush=True)
    info["checks"] = checks

    zygotes = {"reference": Zygote("reference"), "evloader": Zygote("evloader")}
    plan = []
    for t, b, n in configs:
        for nw in workers:
            plan += [(t, b, n, nw, "reference"), (t, b, n, nw, "evloader")]
            if nw in cpp_workers:
                plan.append((t, b, n, nw, "evloader+C++ labels"))
    results = {}
    try:
        for run in range(args.runs):  # round-robin: every measurement once, then again, so noise hits all alike
            for t, b, n, nw, pipeline in plan:
                spec = {"pipeline": pipeline, "paths": paths, "num_tbins": t, "batch_size": b, "num_workers": nw,
                        "batches": n}
                r = zygotes["reference" if pipeline == "reference" else "evloader"].measure(spec)
                results.setdefault((t, b, nw, pipeline), []).append(r)
                print(f"  run {run + 1}: T={t} N={b} nw={nw} {pipeline:20s} {r['batches_per_s']:7.2f} b/s  first "
                      f"{r['first_batch_s']:.2f} s  cpu/batch {1e3 * r['cpu_per_batch_s']:6.1f} ms  peak RSS "
                      f"{r['peak_rss_kb'] / 1024:4.0f} MB  PSS {r['peak_pss_kb'] / 1024:4.0f} MB  "
                      f"(load {_loadavg()})", file=sys.stderr, flush=True)
    finally:
        for z in zygotes.values():
            z.close()
    info["loadavg_end"] = _loadavg()

    table = []
    for (t, b, nw, pipeline), runs in results.items():
        row = {"T": t, "N": b, "num_workers": nw, "pipeline": pipeline,
               "batches": next(c[2] for c in configs if c[:2] == (t, b)), "runs": len(runs)}
        for k in ("batches_per_s", "mb_per_s", "first_batch_s", "cpu_per_batch_s", "cpu_per_batch_total_s",
                  "peak_rss_kb", "peak_pss_kb", "batch_bytes"):
            row[k] = statistics.median(r[k] for r in runs)
        row["added_rss_kb"] = statistics.median(r["peak_rss_kb"] - r["baseline_rss_kb"] for r in runs)
        row["added_pss_kb"] = statistics.median(r["peak_pss_kb"] - r["baseline_pss_kb"] for r in runs)
        row["batches_per_s_range"] = [min(r["batches_per_s"] for r in runs), max(r["batches_per_s"] for r in runs)]
        row["all_runs"] = runs
        table.append(row)

    print()
    print(f"load average: {info['loadavg_start']} at the start, {info['loadavg_end']} at the end")
    print_table(table)
    print()
    verdicts = []
    for t, b, _ in configs:
        for nw in workers:
            by = {row["pipeline"]: row for row in table if (row["T"], row["N"], row["num_workers"]) == (t, b, nw)}
            ref = by.get("reference")
            for name, o in by.items():
                if name == "reference" or ref is None:
                    continue
                speed = o["batches_per_s"] / ref["batches_per_s"]
                cpu = ref["cpu_per_batch_s"] / o["cpu_per_batch_s"]
                rss, pss = o["peak_rss_kb"] / ref["peak_rss_kb"], o["peak_pss_kb"] / ref["peak_pss_kb"]
                line = (f"T={t} N={b} num_workers={nw} {name}: batches/s {speed:.2f}x the reference's, CPU per batch "
                        f"{cpu:.2f}x less, peak RSS {rss:.2f}x, peak PSS {pss:.2f}x")
                if nw == 2:
                    def verdict(ok):
                        return "met" if ok else "MISSED"

                    line += (f"  [targets: >= {TARGET_SPEEDUP:g}x batches/s {verdict(speed >= TARGET_SPEEDUP)}; "
                             f"<= {TARGET_MEMORY:g}x memory: RSS {verdict(rss <= TARGET_MEMORY)}, "
                             f"PSS {verdict(pss <= TARGET_MEMORY)}]")
                verdicts.append(line)
                print(line)
    info.update(table=table, verdicts=verdicts, total_s=time.perf_counter() - t_start)
    print(f"\ntotal {info['total_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
