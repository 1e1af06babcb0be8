# SPDX-License-Identifier: Apache-2.0
"""Batches/s of evloader's CDProcessorDataLoader against a baseline streaming pipeline built the way
metavision_core_ml 4.2.1 streams recordings, side by side in one run, at the same num_workers.

Dataset (generated once, cached; --data-dir or <tmp>/evloader_bench_stream_v1): 8 RAW EVT2 recordings of a
640x480 sensor, 2.0-3.4 s each at about 1.2 M events/s (16 M events in all, moving edges plus noise).
EVT2 because expelliarmus decodes it exactly (its EVT3 timestamps are off, see SOURCES.md).

Configurations:
  tutorial   the seed tutorial's cell: mode n_events, n_events 10000, num_tbins 5, 'diff', 240x320 (from the
             640x480 sensor), batch 4
  delta_t    mode delta_t, delta_t 10 ms, num_tbins 5, 'histo', 480x640 (no resize), batch 4

Pipelines:
  baseline   metavision_core_ml's StreamDataset / StreamDataLoader re-implemented from the behaviour spec
             (§8.1: contiguous file groups per worker, one iterator per slot, padding, the round-robin fusion
             of worker outputs in the main process), torch DataLoader worker processes (num_workers), each
             recording decoded with expelliarmus (Wizard.read_chunk, 1 M events per chunk), tensors made with
             numpy (np.bincount over flat [bin, channel, y, x] indices, then the kernel's clamp), resized with
             torch bilinear (align_corners=True) as the 4.2.1 stream loader does, collated to [T, N, C, H, W].
  evloader   evloader.data.cd_processor_dataset.CDProcessorDataLoader (C++ worker threads, C++ decoding and
             kernels, INTER_AREA downscaling, batch buffers reused and handed to torch without copies).
Both cut recordings the same way (windows on the num_tbins * delta_t grid from the first event, or
n_events * num_tbins events), so both make the same tensors (their number is checked).

Measured per (configuration, pipeline, num_workers), --runs times, alternating pipelines:
  first batch   seconds from constructing the loader to the first batch in hand
  batches/s     steady rate after the first batch over a whole epoch: (n - 1) / (t_n - t_1); the consumer
                touches nothing (a consumer reading each batch would add the same cost to both)
  epoch s       seconds for the whole epoch, start-up included (evloader: planning the recordings too)
  CPU/tensor    user+sys CPU of the process, its threads and its worker processes over the epoch, start-up
                included, per tensor delivered: the cost, which the background load of a shared machine does
                not distort the way it distorts wall-clock rates
Medians are printed; the files are read once before timing (page cache warm). In the delta_t configuration
one more, untimed epoch of each pipeline compares the sums of all inputs (the same windows and the same
'histo' clamp: the same work).

Usage: python3 bench/python/bench_stream_loader.py [--data-dir DIR] [--runs 3] [--workers 1,2] [--json out.json]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections import deque
from itertools import chain

import numpy as np

WIDTH, HEIGHT = 640, 480
DURATIONS_S = [2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.2, 3.4]
RATE = 1.2e6  # events per second

CONFIGS = {
    "tutorial": dict(mode="n_events", delta_t=0, n_events=10000, num_tbins=5, preprocess="diff", height=240,
                     width=320, batch_size=4),
    "delta_t": dict(mode="delta_t", delta_t=10000, n_events=0, num_tbins=5, preprocess="histo", height=480,
                    width=640, batch_size=4),
}


# --- dataset ----------------------------------------------------------------------------------------
def _chunk_events(rng, n, t0, t1, objects):
    """n events in [t0, t1): 70 % on the edges of moving squares, 30 % uniform noise, sorted by t."""
    import evloader

    t = np.sort(rng.integers(t0, t1, n))
    ev = np.zeros(n, dtype=evloader.EventCD)
    ev["t"] = t
    on_edge = rng.random(n) < 0.7
    k = rng.integers(0, len(objects), n)
    cx = (objects[k, 0] + objects[k, 2] * t * 1e-6) % WIDTH
    cy = (objects[k, 1] + objects[k, 3] * t * 1e-6) % HEIGHT
    side = rng.integers(0, 4, n)
    along = rng.uniform(-40, 40, n)
    ex = np.where(side < 2, cx + np.where(side == 0, -40, 40), cx + along)
    ey = np.where(side < 2, cy + along, cy + np.where(side == 2, -40, 40))
    x = np.where(on_edge, ex, rng.uniform(0, WIDTH, n))
    y = np.where(on_edge, ey, rng.uniform(0, HEIGHT, n))
    ev["x"] = np.clip(x, 0, WIDTH - 1).astype(np.uint16)
    ev["y"] = np.clip(y, 0, HEIGHT - 1).astype(np.uint16)
    ev["p"] = (rng.random(n) < np.where(on_edge, 0.5 + 0.4 * (side % 2), 0.5)).astype(np.int16)
    return ev


def make_dataset(folder):
    import evloader

    os.makedirs(folder, exist_ok=True)
    files = []
    for i, seconds in enumerate(DURATIONS_S):
        path = os.path.join(folder, f"rec_{i}.raw")
        files.append(path)
        if os.path.exists(path):
            continue
        rng = np.random.default_rng(100 + i)
        objects = np.column_stack([rng.uniform(0, WIDTH, 12), rng.uniform(0, HEIGHT, 12),
                                   rng.uniform(-300, 300, 12), rng.uniform(-200, 200, 12)])
        t0 = int(rng.integers(0, 5_000_000))  # recordings start at various times, as real ones do
        step = 250_000
        tmp = path + ".tmp"
        with evloader.RawWriter(tmp, "evt2", WIDTH, HEIGHT) as w:
            for start in range(t0, t0 + int(seconds * 1e6), step):
                w.write(_chunk_events(rng, int(RATE * step * 1e-6), start, start + step, objects))
        os.replace(tmp, path)
    return files


# --- baseline: metavision_core_ml's streaming stack, from the behaviour spec ------------------------
def split_batch_size(batch_size, num_workers):
    w = min(num_workers, batch_size)
    sizes = [batch_size // w] * w
    for i in range(batch_size % w):
        sizes[i] += 1
    return sizes


def split_dataset_sizes(streams, split_sizes):
    ends = np.round(np.cumsum(np.array(split_sizes, float) * len(streams) / sum(split_sizes))).astype(int)
    out, start = [], 0
    for end in ends:
        out.append(streams[start:end])
        start = end
    return out


def _tensor(ev, bins_of, cfg, k):
    """numpy histogram of one window: counts per [bin, channel, y, x], then the kernel's clamp."""
    T, H, W = cfg["num_tbins"], HEIGHT, WIDTH
    if cfg["preprocess"] == "diff":
        idx = (bins_of * H + ev["y"].astype(np.int64)) * W + ev["x"]
        sign = np.where(ev["p"] > 0, 1.0, -1.0)
        frames = np.bincount(idx, weights=sign, minlength=T * H * W).reshape(T, 1, H, W) * k
        return np.clip(frames, -1, 1).astype(np.float32)
    idx = ((bins_of * 2 + ev["p"].astype(np.int64)) * H + ev["y"]) * W + ev["x"]
    frames = np.bincount(idx, minlength=T * 2 * H * W).reshape(T, 2, H, W) * k
    return np.minimum(frames, 1).astype(np.float32)


def baseline_streamer(path, cfg):
    """One recording as (tensor, labels, keep_memory, frame_is_labeled, video_info), decoded by expelliarmus."""
    import torch
    from expelliarmus import Wizard

    T = cfg["num_tbins"]
    k = 1.0 / 5  # max_incr_per_pixel = 5, the registry default of both kernels
    wizard = Wizard(encoding="evt2", fpath=path, chunk_size=1_000_000)
    pending = []
    keep = 0.0
    window_start = None

    def emit(ev, start, duration, bins_of):
        nonlocal keep
        tensor = torch.from_numpy(_tensor(ev, bins_of, cfg, k))
        if (cfg["height"], cfg["width"]) != (HEIGHT, WIDTH):
            tensor = torch.nn.functional.interpolate(tensor, size=(cfg["height"], cfg["width"]), mode="bilinear",
                                                     align_corners=True)
        out = (tensor, [torch.empty(0)] * T, keep, np.zeros(T, bool), (path, start, duration))
        keep = 1.0
        return out

    buf = np.zeros(0, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    for chunk in chain(wizard.read_chunk(), [None]):
        if chunk is not None:
            buf = np.concatenate([buf, chunk]) if len(buf) else chunk
        if cfg["mode"] == "n_events":
            n = cfg["n_events"] * T
            while len(buf) >= n or (chunk is None and len(buf)):
                ev, buf = buf[:n], buf[n:]
                bins_of = np.arange(len(ev)) // cfg["n_events"]
                start = int(ev["t"][0])
                yield emit(ev, start, int(ev["t"][-1]) + 1 - start, bins_of)
        else:
            window = cfg["delta_t"] * T
            if window_start is None and len(buf):
                window_start = int(buf["t"][0]) - int(buf["t"][0]) % window
            while len(buf) and (chunk is None or int(buf["t"][-1]) >= window_start + window):
                cut = int(np.searchsorted(buf["t"], window_start + window))
                ev, buf = buf[:cut], buf[cut:]
                bins_of = (ev["t"] - window_start) // cfg["delta_t"]
                yield emit(ev, window_start, window, bins_of)
                window_start += window


class BaselineStreamDataset:
    """StreamDataset.__iter__ of the spec (§8.1) for 'zeros' padding, as a torch IterableDataset."""

    def __new__(cls, *args, **kwargs):
        import torch.utils.data

        class _Dataset(torch.utils.data.IterableDataset):
            def __init__(self, files, cfg, fill_value):
                self.files, self.cfg, self.fill_value = list(files), cfg, fill_value
                self.batch_size = cfg["batch_size"]

            def __iter__(self):
                info = torch.utils.data.get_worker_info()
                worker_id = info.id if info else 0
                num_workers = info.num_workers if info else 1
                sizes = split_batch_size(self.batch_size, num_workers)
                groups = split_dataset_sizes(self.files, sizes)
                slots, group = sizes[worker_id], groups[worker_id]  # not shuffled: the same order every run
                iterators = [baseline_streamer(group[i], self.cfg) for i in range(slots)]
                active = [True] * slots
                pos = slots - 1
                while any(active):
                    values = []
                    for i in range(slots):
                        try:
                            value = next(iterators[i])
                        except StopIteration:
                            pos += 1
                            active[i] = pos < len(group)
                            if active[i]:
                                iterators[i] = baseline_streamer(group[pos], self.cfg)
                                value = next(iterators[i])
                            else:
                                value = self.fill_value
                        values.append(value)
                    if any(active):
                        yield tuple(values), worker_id
                yield None, worker_id

        return _Dataset(*args, **kwargs)


def collate_fn(items):
    import torch

    tensors, labels, keep, masks, infos = zip(*items)
    return {"inputs": torch.stack(tensors, 1), "labels": [list(row) for row in zip(*labels)],
            "mask_keep_memory": torch.tensor(keep, dtype=torch.float32).view(-1, 1, 1, 1),
            "frame_is_labeled": torch.from_numpy(np.stack(masks, 1)), "video_infos": infos}


def baseline_loader(files, cfg, num_workers):
    """StreamDataLoader.__iter__ of the spec: fuse one item per active worker into a batch."""
    import torch
    from torch.utils.data import DataLoader

    T, C = cfg["num_tbins"], 1 if cfg["preprocess"] == "diff" else 2
    fill = (torch.zeros(T, C, cfg["height"], cfg["width"]), [torch.empty(0)] * T, 0.0, np.zeros(T, bool),
            ("", 0, cfg["delta_t"]))
    dataset = BaselineStreamDataset(files, cfg, fill)
    workers = min(cfg["batch_size"], num_workers)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=lambda x: x)
    n_workers = max(1, workers)
    sizes = split_batch_size(cfg["batch_size"], n_workers)
    cache = [deque() for _ in range(n_workers)]
    active = [True] * n_workers
    for data, w in loader:
        if sum(active) == sum(len(c) for c in cache):
            parts = [[fill] * sizes[i] if not active[i] else cache[i].popleft() for i in range(n_workers)]
            yield collate_fn(list(chain(*parts)))
        if data is None:
            active[w] = False
        else:
            cache[w].append(data)


def evloader_loader(files, cfg, num_workers):
    from evloader.data.cd_processor_dataset import CDProcessorDataLoader

    return CDProcessorDataLoader(files, cfg["mode"], cfg["delta_t"], cfg["n_events"], None, cfg["preprocess"],
                                 cfg["num_tbins"], cfg["batch_size"], num_workers=num_workers,
                                 height=cfg["height"], width=cfg["width"])


# --- measuring -------------------------------------------------------------------------------------------
def _cpu():
    """CPU seconds (user + sys) of this process's threads and of its reaped children (the baseline's worker
    processes are reaped when its DataLoader iterator ends, so an epoch's workers are counted after it)."""
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


def measure(make, files, cfg, num_workers):
    """One timed epoch; the consumer touches nothing but the batch's metadata."""
    gc.collect()
    cpu0, t0 = _cpu(), time.perf_counter()
    stamps = []
    tensors = 0
    for batch in make(files, cfg, num_workers):
        stamps.append(time.perf_counter())
        tensors += sum(1 for info in batch["video_infos"] if (info[0] if isinstance(info[0], str) else info[0].path))
        del batch
    cpu = _cpu() - cpu0
    n = len(stamps)
    return {"batches": n, "tensors": tensors, "first_batch_s": stamps[0] - t0,
            "batches_per_s": (n - 1) / (stamps[-1] - stamps[0]) if n > 1 else float("nan"),
            "epoch_s": stamps[-1] - t0, "cpu_ms_per_tensor": 1e3 * cpu / tensors}


def epoch_sum(make, files, cfg, num_workers):
    """The sum of every batch's inputs over an epoch (untimed): both pipelines must do the same work."""
    import torch

    return sum(float(b["inputs"].sum(dtype=torch.float64)) for b in make(files, cfg, num_workers))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "evloader_bench_stream_v1"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--configs", default="tutorial,delta_t")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # the baseline's torch ops in the main process; workers are processes anyway
    files = make_dataset(args.data_dir)
    for f in files:  # page cache warm
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    print(f"dataset: {len(files)} EVT2 recordings, {sum(os.path.getsize(f) for f in files) / 1e6:.0f} MB, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    results = []
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        for workers in [int(w) for w in args.workers.split(",")]:
            runs = {"baseline": [], "evloader": []}
            for _ in range(args.runs):
                for label, make in (("baseline", baseline_loader), ("evloader", evloader_loader)):
                    runs[label].append(measure(make, files, cfg, workers))
            row = {"config": name, "num_workers": workers}
            for label, rs in runs.items():
                row[label] = {key: statistics.median(r[key] for r in rs) for key in rs[0]}
            b, e = row["baseline"], row["evloader"]
            row["speedup_batches_per_s"] = e["batches_per_s"] / b["batches_per_s"]
            row["speedup_epoch"] = b["epoch_s"] / e["epoch_s"]
            row["speedup_cpu"] = b["cpu_ms_per_tensor"] / e["cpu_ms_per_tensor"]
            results.append(row)
            print(f"{name:8s} workers={workers}  baseline {b['batches_per_s']:7.2f} b/s, first {b['first_batch_s']:.2f} s, "
                  f"epoch {b['epoch_s']:.1f} s, {b['cpu_ms_per_tensor']:.2f} CPU ms/tensor ({b['batches']:.0f} batches, "
                  f"{b['tensors']:.0f} tensors) | evloader {e['batches_per_s']:7.2f} b/s, first {e['first_batch_s']:.2f} s, "
                  f"epoch {e['epoch_s']:.1f} s, {e['cpu_ms_per_tensor']:.2f} CPU ms/tensor ({e['batches']:.0f} batches, "
                  f"{e['tensors']:.0f} tensors) | batches/s x{row['speedup_batches_per_s']:.1f}, epoch "
                  f"x{row['speedup_epoch']:.1f}, CPU x{row['speedup_cpu']:.1f}", flush=True)
        if name == "delta_t":  # same windows, same kernel: the same epoch sum
            sums = [epoch_sum(make, files, cfg, 2) for make in (baseline_loader, evloader_loader)]
            same = abs(sums[0] - sums[1]) <= 1e-5 * max(1.0, sums[0])
            print(f"{name:8s} check: epoch sums baseline {sums[0]:.3f}, evloader {sums[1]:.3f}: "
                  f"{'same work' if same else 'DIFFERENT'}", flush=True)
            results.append({"config": name, "check_sums": sums, "same_work": same})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
