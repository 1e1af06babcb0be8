# SPDX-License-Identifier: Apache-2.0
"""``evloader demo``: data, batches, a recurrent detector trained with truncated BPTT, numbers and pictures.

Steps: build the simulated sample dataset if it is missing (or take ``--dataset``), measure the
SequentialDataLoader alone, evaluate the untrained detector on the validation split, train it (progress bar,
loss, the time the model waited for data), evaluate it again (AP at IoU 0.5 per class), write a preview video
and a PNG contact sheet of validation frames with ground truth and predicted boxes, and ``metrics.json``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

LABEL_MAP_FILE = "label_map_dictionary.json"
_EXTENSION_PRIORITY = (".raw", "_td.dat", ".dat", ".h5", ".hdf5", ".aedat4")


@dataclasses.dataclass
class DemoConfig:
    """Everything ``evloader demo`` can be told (the defaults finish in about 4 minutes on 2 cores)."""
    output: str = "evloader_demo"
    dataset: Optional[str] = None  #: a dataset root (train/ val/ + label map); None: the simulated sample
    device: str = "cpu"
    classes: Optional[List[str]] = None  #: default: every class of the label map except "empty"
    delta_t: int = 50_000
    num_tbins: int = 8  #: time bins per batch: the length of the truncated back-propagation
    batch_size: int = 4
    num_workers: int = 1
    input_width: int = 160  #: the sensor width is halved until it is at most this (power-of-two downsampling)
    model_width: int = 32
    steps: int = 1000
    time_budget_s: float = 170.0  #: training stops at `steps` or after this long, whichever comes first
    total_budget_s: float = 280.0  #: ...or earlier, so that the whole demo ends within this (busy machines)
    lr: float = 3e-3
    seed: int = 0
    min_box_diag: float = 8.0  #: boxes smaller than this (in input pixels) are neither trained on nor scored
    score_threshold: float = 0.3  #: boxes drawn in the pictures
    sample_recordings: int = 16
    sample_duration_s: float = 6.0
    sample_size: Tuple[int, int] = (320, 240)
    video_seconds: float = 12.0
    threads: Optional[int] = None  #: torch threads (default: the CPUs left after the loader's workers)
    progress: bool = True
    loader_benchmark_s: float = 4.0


def _log(message: str) -> None:
    print(message, flush=True)


# --- data ------------------------------------------------------------------------------------------------------
def split_files(root: str, split: str) -> List[str]:
    """The recordings of ``root/split`` in one format (RAW first, then DAT, precomputed .h5, ...)."""
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        return []
    names = sorted(os.listdir(folder))
    for ext in _EXTENSION_PRIORITY:
        chosen = [n for n in names if n.endswith(ext) and not n.startswith(".")]
        if ext == ".dat":
            chosen = [n for n in chosen if not n.endswith("_td.dat")]
        if chosen:
            return [os.path.join(folder, n) for n in chosen]
    return []


def find_label_map(root: str) -> str:
    for candidate in (os.path.join(root, LABEL_MAP_FILE), os.path.join(os.path.dirname(root), LABEL_MAP_FILE)):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"{root}: no {LABEL_MAP_FILE} (the dataset root must hold it, next to train/ and val/)")


def prepare_dataset(cfg: DemoConfig) -> str:
    """The dataset root: ``cfg.dataset``, or the simulated sample under ``cfg.output`` (built if missing)."""
    if cfg.dataset is not None:
        root = os.path.abspath(cfg.dataset)
        if not split_files(root, "train"):
            raise FileNotFoundError(f"{root}/train: no recordings (.raw, .dat, .h5, .hdf5, .aedat4)")
        if not split_files(root, "val"):
            raise FileNotFoundError(f"{root}/val: no recordings: the demo evaluates on the val split")
        return root
    from ..samples import dataset_is_complete, write_dataset

    root = os.path.abspath(os.path.join(cfg.output, "sample_dataset"))
    w, h = cfg.sample_size
    expected = dict(recordings=cfg.sample_recordings, duration_s=float(cfg.sample_duration_s), width=w, height=h,
                    seed=cfg.seed)
    if dataset_is_complete(root, **expected):
        _log(f"[1/6] sample dataset: {root} (already built)")
        return root
    _log(f"[1/6] building the sample dataset in {root}: {cfg.sample_recordings} simulated recordings of "
         f"{cfg.sample_duration_s:g} s at {w}x{h}")
    t0 = time.perf_counter()
    info = write_dataset(root, recordings=cfg.sample_recordings, duration_s=cfg.sample_duration_s, size=(w, h),
                         seed=cfg.seed, progress=cfg.progress, overwrite=True)
    _log(f"      {info['events']:,} events, {info['boxes']:,} boxes in {time.perf_counter() - t0:.1f} s")
    return root


def input_geometry(path: str, input_width: int) -> Tuple[int, int, int]:
    """(height, width, downsampling factor) of the tensors for a recording's sensor."""
    from ..data.scheduler import get_original_size_file, is_precomputed

    sensor_h, sensor_w = get_original_size_file(path)
    if not sensor_h or not sensor_w:
        raise ValueError(f"{path}: the sensor size is unknown (the demo needs it to place the boxes)")
    stored_w = sensor_w
    if is_precomputed(path):  # tensor files are read at their stored size or smaller (INTER_AREA)
        from ..tensor_file import TensorFileReader

        stored_w = TensorFileReader(path).shape[2]
    ds = 0
    while (sensor_w >> ds > input_width or sensor_w >> ds > stored_w) and sensor_h % (2 << ds) == 0 \
            and sensor_w % (2 << ds) == 0:
        ds += 1
    return sensor_h >> ds, sensor_w >> ds, ds


def class_setup(label_map_path: str, classes: Optional[Sequence[str]]):
    from ..data import box_processing

    with open(label_map_path) as f:
        names = list(json.load(f).values())
    wanted = list(classes) if classes else [n for n in names if n != "empty"]
    lookup = box_processing.create_class_lookup(label_map_path, wanted)
    return wanted, lookup


def make_loader(files, cfg: DemoConfig, array_dim, lookup, *, train: bool, batch_size: Optional[int] = None):
    from ..data import SequentialDataLoader, box_processing

    load = partial(box_processing.load_boxes, class_lookup=lookup, min_box_diag_network=cfg.min_box_diag)
    n = batch_size or min(cfg.batch_size, len(files))
    return SequentialDataLoader(files, cfg.delta_t, "histo", array_dim, load_labels=load, batch_size=n,
                                num_workers=cfg.num_workers, padding=not train, seed=cfg.seed,
                                shuffle_files=train)


def frames_of(data, labeled) -> list:
    """The labels of the (time bin, slot) pairs where ``labeled`` is True, in the order of a boolean index."""
    t_idx, n_idx = np.nonzero(labeled.cpu().numpy() if hasattr(labeled, "cpu") else labeled)
    return [data["labels"][t][n] for t, n in zip(t_idx, n_idx)]


def gt_rows(labels) -> np.ndarray:
    if labels is None or isinstance(labels, float) or not hasattr(labels, "dtype") or labels.dtype.names is None \
            or len(labels) == 0:
        return np.zeros((0, 5), np.float32)
    keep = (labels["class_id"] >= 1) & (labels["class_id"] < 1 << 31)
    lab = labels[keep]
    return np.stack([lab["x"], lab["y"], lab["w"], lab["h"], lab["class_id"].astype(np.float32)], 1) \
        if len(lab) else np.zeros((0, 5), np.float32)


# --- loader benchmark ----------------------------------------------------------------------------------------------
def benchmark_loader(loader, seconds: float, delta_t: int) -> dict:
    """Batches the loader alone delivers in ``seconds`` (or one epoch), as rates."""
    t0 = time.perf_counter()
    batches = frames = 0
    for data in loader:
        batches += 1
        frames += int(data["inputs"].shape[0] * data["inputs"].shape[1])
        if time.perf_counter() - t0 >= seconds:
            break
    elapsed = max(time.perf_counter() - t0, 1e-9)
    loader.close()
    return {"batches": batches, "seconds": elapsed, "batches_per_s": batches / elapsed,
            "frames_per_s": frames / elapsed, "realtime_factor": frames * delta_t * 1e-6 / elapsed}


# --- evaluation ------------------------------------------------------------------------------------------------
def run_validation(net, loader, device, num_classes: int, cfg: DemoConfig, keep_frames: int = 0,
                   progress_desc: Optional[str] = None):
    """AP per class on every labelled frame of the loader; with ``keep_frames``, also the first frames
    (visualisation, ground truth, detections) of every slot for the pictures."""
    import torch

    from .evaluate import average_precision
    from .model import decode

    vis = loader.get_vis_func()
    dets_all, gts_all, kept = [], [], []
    net.eval()
    net.reset(None)
    iterator = loader
    bar = None
    if progress_desc and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(loader), desc=progress_desc, unit="batch", file=sys.stderr, dynamic_ncols=True,
                   leave=False)
    with torch.no_grad():
        for data in iterator:
            net.reset(data["mask_keep_memory"])
            labeled = data["frame_is_labeled"]
            inputs = data["inputs"]
            for t in range(inputs.shape[0]):
                x = inputs[t].to(device, non_blocking=True)
                dets = decode(net(x), threshold=0.02)
                for n in range(inputs.shape[1]):
                    meta = data["video_infos"][n][0]
                    if getattr(meta, "padding", False):
                        continue
                    gt = gt_rows(data["labels"][t][n])
                    if bool(labeled[t, n]):
                        dets_all.append(dets[n])
                        gts_all.append(gt)
                    if len(kept) < keep_frames:
                        start = data["video_infos"][n][1] + t * cfg.delta_t
                        kept.append({"slot": n, "file": os.path.basename(meta.path), "t_us": int(start + cfg.delta_t),
                                     "image": np.ascontiguousarray(vis(inputs[t, n].numpy())), "gt": gt,
                                     "dets": dets[n], "labeled": bool(labeled[t, n])})
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    loader.close()
    net.train()
    ap = average_precision(dets_all, gts_all, num_classes)
    return ap, kept, len(gts_all)


# --- training --------------------------------------------------------------------------------------------------
def train(net, loader, cfg: DemoConfig, device, num_classes: int) -> dict:
    """Truncated BPTT as in the seed tutorial: reset the memory where recordings start, forward every time
    bin in order, loss only on labelled bins, backward, step. Stops after ``cfg.steps`` steps or
    ``cfg.time_budget_s`` seconds."""
    import torch

    from .model import detection_loss

    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    warmup = max(1, min(50, cfg.steps // 10))

    def set_lr(step: int, elapsed: float) -> None:
        # Linear warm-up, then a cosine decay that ends where training ends: at the last step or at the end
        # of the time budget, whichever comes first (so a slow machine still finishes with a small rate).
        if step < warmup:
            factor = (step + 1) / warmup
        else:
            done = max((step - warmup) / max(1, cfg.steps - warmup), elapsed / max(cfg.time_budget_s, 1e-9))
            factor = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * factor
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="training", unit="step", file=sys.stderr, dynamic_ncols=True)
    history: List[Tuple[int, float]] = []
    window: List[float] = []
    step = 0
    wait = compute = 0.0
    t_start = time.perf_counter()
    stop = False
    epoch = 0
    net.train()
    while not stop:
        loader.dataset.shuffle(cfg.seed + epoch)  # a new order of the recordings every epoch
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                data = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            wait += t1 - t0
            set_lr(step, t1 - t_start)
            # --- the tutorial's loop ---------------------------------------------------------------------
            net.reset(data["mask_keep_memory"])
            optimizer.zero_grad()
            predictions = [net(x.to(device, non_blocking=True)) for x in data["inputs"]]
            labeled = data["frame_is_labeled"]
            if bool(labeled.any()):
                stacked = {k: torch.stack([p[k] for p in predictions]) for k in predictions[0]}
                mask = labeled.to(stacked["heatmap"].device)
                outputs = {k: v[mask] for k, v in stacked.items()}
                losses = detection_loss(outputs, frames_of(data, labeled), num_classes)
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
                optimizer.step()
                window.append(losses["loss"].item())
            # ------------------------------------------------------------------------------------------------
            compute += time.perf_counter() - t1
            step += 1
            if window and (step % 10 == 0 or step == cfg.steps):
                history.append((step, float(np.mean(window))))
                window = []
            if bar is not None:
                bar.update(1)
                if history:
                    bar.set_postfix(loss=f"{history[-1][1]:.3f}", wait=f"{100 * wait / max(wait + compute, 1e-9):.0f}%",
                                    refresh=False)
            if step >= cfg.steps or time.perf_counter() - t_start >= cfg.time_budget_s:
                stop = True
                break
        loader.close()
        epoch += 1
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t_start
    return {"steps": step, "epochs": epoch, "seconds": elapsed, "wait_s": wait, "compute_s": compute,
            "wait_share": wait / max(wait + compute, 1e-9), "loss_history": history,
            "stopped_by": "steps" if step >= cfg.steps else "time budget",
            "frames_per_s": step * cfg.num_tbins * loader.batch_size / max(elapsed, 1e-9)}


def _fmt_ap(ap: Dict[int, float], names: Sequence[str]) -> str:
    from .evaluate import mean_ap

    parts = [f"{names[c - 1]} {v:.3f}" if not math.isnan(v) else f"{names[c - 1]} -" for c, v in sorted(ap.items())]
    return ", ".join(parts) + f" | mAP {mean_ap(ap):.3f}"


def run_demo(cfg: DemoConfig) -> dict:
    """The whole demo; returns the metrics written to ``output/metrics.json``."""
    import torch

    from .evaluate import mean_ap
    from .model import RecurrentDetector
    from .pictures import write_contact_sheet, write_video

    t_total = time.perf_counter()
    os.makedirs(cfg.output, exist_ok=True)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no CUDA device here")
    threads = cfg.threads or max(1, (os.cpu_count() or 1) - cfg.num_workers)
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)

    root = prepare_dataset(cfg)
    label_map = find_label_map(root)
    names, lookup = class_setup(label_map, cfg.classes)
    train_files, val_files = split_files(root, "train"), split_files(root, "val")
    height, width, ds = input_geometry(train_files[0], cfg.input_width)
    array_dim = [cfg.num_tbins, 2, height, width]
    kind = os.path.splitext(train_files[0])[1]
    _log(f"[2/6] data: {len(train_files)} train / {len(val_files)} val recordings ({kind}), "
         f"classes {names}; batches [T={cfg.num_tbins}, N={cfg.batch_size}, 2, {height}, {width}] of histo "
         f"{cfg.delta_t // 1000} ms bins (sensor / {2 ** ds})")

    train_loader = make_loader(train_files, cfg, array_dim, lookup, train=True)
    bench = benchmark_loader(train_loader, cfg.loader_benchmark_s, cfg.delta_t)
    _log(f"      loader alone ({cfg.num_workers} worker{'s' if cfg.num_workers != 1 else ''}): "
         f"{bench['batches_per_s']:.1f} batches/s = {bench['frames_per_s']:.0f} frames/s = "
         f"{bench['realtime_factor']:.0f}x real time")

    net = RecurrentDetector(2, len(names), cfg.model_width).to(device)
    val_batch = min(4, len(val_files))
    val_loader = make_loader(val_files, cfg, array_dim, lookup, train=False, batch_size=val_batch)
    t_eval = time.perf_counter()
    ap_before, _, _ = run_validation(net, val_loader, device, len(names), cfg, progress_desc="validation (untrained)")
    t_eval = time.perf_counter() - t_eval
    _log(f"[3/6] untrained detector, AP@0.5 on val: {_fmt_ap(ap_before, names)}")

    # Training gets its own budget, cut so that the whole demo ends within total_budget_s: what is left
    # once the final evaluation and the pictures (about twice the evaluation just done) are set aside.
    left = cfg.total_budget_s - (time.perf_counter() - t_total) - (2.5 * t_eval + 10.0)
    budget = max(min(cfg.time_budget_s, 20.0), min(cfg.time_budget_s, left))
    train_cfg = dataclasses.replace(cfg, time_budget_s=budget)
    _log(f"[4/6] training: up to {cfg.steps} steps or {budget:.0f} s on {device} ({threads} torch "
         f"thread{'s' if threads != 1 else ''}), truncated BPTT over {cfg.num_tbins} bins")
    stats = train(net, train_loader, train_cfg, device, len(names))
    hist = stats["loss_history"]
    if hist:
        marks = [hist[0]] + hist[len(hist) // 4::max(1, len(hist) // 4)][:3] + [hist[-1]]
        _log("      loss: " + " -> ".join(f"{loss:.3f} (step {s})" for s, loss in marks))
    _log(f"      {stats['steps']} steps in {stats['seconds']:.1f} s ({stats['stopped_by']}), "
         f"{stats['frames_per_s']:.0f} frames/s trained; the model waited for data "
         f"{100 * stats['wait_share']:.1f} % of the time ({stats['wait_s']:.1f} s)")

    keep = int(cfg.video_seconds * 1e6 / cfg.delta_t) * val_batch
    val_loader = make_loader(val_files, cfg, array_dim, lookup, train=False, batch_size=val_batch)
    ap_after, frames, n_eval = run_validation(net, val_loader, device, len(names), cfg, keep_frames=keep,
                                              progress_desc="validation")
    _log(f"[5/6] trained detector, AP@0.5 on val ({n_eval} labelled frames): {_fmt_ap(ap_after, names)}")

    video = os.path.join(cfg.output, "preview.mp4")
    sheet = os.path.join(cfg.output, "contact_sheet.png")
    label_names = ["background"] + list(names)
    video_ok = write_video(video, frames, val_batch, label_names, 1e6 / cfg.delta_t, cfg.score_threshold)
    write_contact_sheet(sheet, frames, label_names, cfg.score_threshold)
    torch.save(net.state_dict(), os.path.join(cfg.output, "detector.pt"))
    metrics = {
        "dataset": root, "classes": names, "array_dim": array_dim, "device": str(device),
        "loader_benchmark": bench, "training": {k: v for k, v in stats.items()},
        "ap50_before": {names[c - 1]: v for c, v in ap_before.items()}, "map50_before": mean_ap(ap_before),
        "ap50": {names[c - 1]: v for c, v in ap_after.items()}, "map50": mean_ap(ap_after),
        "video": video if video_ok else None, "contact_sheet": sheet,
        "total_seconds": time.perf_counter() - t_total,
    }
    with open(os.path.join(cfg.output, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, default=float)
    _log(f"[6/6] wrote {video if video_ok else '(no video: OpenCV could not encode mp4)'}, {sheet}, "
         f"{os.path.join(cfg.output, 'metrics.json')} ({metrics['total_seconds']:.0f} s in all)")
    return metrics
