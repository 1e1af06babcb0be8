#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Train a recurrent event-based detector with evloader's SequentialDataLoader, written out in full.

This is the seed tutorial's training loop made real (``evloader demo`` runs the same thing with more
reporting): chronological batches [T, N, 2, H, W] of histograms, a convolutional-GRU detector whose memory
is reset where a recording starts (``net.reset(mask_keep_memory)``, which also detaches it: truncated
back-propagation through time), the loss only on the time bins that have labels, and AP@0.5 per class on
the validation split after every epoch.

    python examples/python/train_detector.py                       # simulated dataset, 3 epochs
    python examples/python/train_detector.py --dataset ~/gen4 --classes car pedestrian --device cuda

``--dataset`` is a folder with train/ and val/ recordings (RAW, DAT or precomputed .h5) with their
``_bbox.npy`` labels and a ``label_map_dictionary.json``. ``--fast`` makes a tiny run (seconds).
"""
import argparse
import json
import math
import os
import time
from functools import partial

import numpy as np
import torch

from evloader.data import SequentialDataLoader, box_processing
from evloader.demo.evaluate import average_precision, mean_ap
from evloader.demo.model import RecurrentDetector, decode, detection_loss
from evloader.samples import write_dataset


def recordings(root, split):
    """The recordings of a split, in one format (RAW preferred, then DAT, then precomputed .h5)."""
    folder = os.path.join(root, split)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for ext in (".raw", "_td.dat", ".h5"):
        chosen = [os.path.join(folder, n) for n in names if n.endswith(ext)]
        if chosen:
            return chosen
    raise SystemExit(f"{folder}: no recordings")


def sensor_to_input(path, max_width):
    """Tensor (height, width): the sensor size halved until the width is at most max_width."""
    from evloader.data.scheduler import get_original_size_file, is_precomputed

    h, w = get_original_size_file(path)
    if is_precomputed(path):
        return h, w
    while w > max_width and h % 2 == 0 and w % 2 == 0:
        h, w = h // 2, w // 2
    return h, w


def ground_truth(labels):
    """(x, y, w, h, class) rows of the wanted boxes of one frame (class ids 1..K)."""
    if not hasattr(labels, "dtype") or labels.dtype.names is None or len(labels) == 0:
        return np.zeros((0, 5), np.float32)
    ok = labels[(labels["class_id"] >= 1) & (labels["class_id"] < 1 << 31)]
    return np.stack([ok["x"], ok["y"], ok["w"], ok["h"], ok["class_id"].astype(np.float32)], 1)


def evaluate(net, loader, device, num_classes):
    net.eval()
    detections, truths = [], []
    with torch.no_grad():
        for data in loader:
            net.reset(data["mask_keep_memory"])
            for t, x in enumerate(data["inputs"]):
                dets = decode(net(x.to(device)))
                for n in range(x.shape[0]):
                    if bool(data["frame_is_labeled"][t, n]):
                        detections.append(dets[n])
                        truths.append(ground_truth(data["labels"][t][n]))
    net.train()
    return average_precision(detections, truths, num_classes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", help="dataset root (default: build a simulated one in ./detector_dataset)")
    parser.add_argument("--output", default="detector_run", help="where the checkpoint and metrics go")
    parser.add_argument("--classes", nargs="+", default=None, help="class names (default: all but 'empty')")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None, help="stop an epoch after this many batches")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-tbins", type=int, default=8, help="time bins per batch (the BPTT length)")
    parser.add_argument("--delta-t", type=int, default=50000, help="time bin in microseconds")
    parser.add_argument("--input-width", type=int, default=160)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-workers", type=int, default=1, help="loader threads")
    parser.add_argument("--fast", action="store_true", help="tiny dataset and model, a few steps (smoke test)")
    args = parser.parse_args()
    if args.fast:
        args.epochs, args.max_steps, args.batch_size, args.num_tbins, args.input_width = 1, 3, 2, 4, 64
    torch.manual_seed(0)
    if args.device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - args.num_workers))

    # --- data -----------------------------------------------------------------------------------------------
    root = args.dataset
    if root is None:
        root = "detector_dataset"
        if args.fast:
            write_dataset(root, recordings=3, duration_s=1.0, size=(128, 96), seed=1, jobs=1)
        else:
            write_dataset(root, recordings=16, duration_s=6.0, size=(320, 240), seed=0)
    label_map = os.path.join(root, "label_map_dictionary.json")
    with open(label_map) as f:
        names = args.classes or [n for n in json.load(f).values() if n != "empty"]
    class_lookup = box_processing.create_class_lookup(label_map, names)
    load_boxes = partial(box_processing.load_boxes, class_lookup=class_lookup, min_box_diag_network=8)

    train_files, val_files = recordings(root, "train"), recordings(root, "val")
    height, width = sensor_to_input(train_files[0], args.input_width)
    array_dim = [args.num_tbins, 2, height, width]
    train_loader = SequentialDataLoader(train_files, args.delta_t, "histo", array_dim, load_labels=load_boxes,
                                        batch_size=min(args.batch_size, len(train_files)),
                                        num_workers=args.num_workers, shuffle_files=True)
    val_loader = SequentialDataLoader(val_files, args.delta_t, "histo", array_dim, load_labels=load_boxes,
                                      batch_size=min(args.batch_size, len(val_files)), num_workers=args.num_workers,
                                      padding=True)
    print(f"{len(train_files)} train / {len(val_files)} val recordings, batches {[args.num_tbins, args.batch_size]}"
          f" + {array_dim[1:]}, classes {names}, device {args.device}")

    # --- model ----------------------------------------------------------------------------------------------
    device = torch.device(args.device)
    net = RecurrentDetector(in_channels=2, num_classes=len(names), width=8 if args.fast else 32).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    total = args.epochs * (min(len(train_loader), args.max_steps or len(train_loader)))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=max(total, 1),
                                                    pct_start=0.1)

    # --- training: the tutorial's loop -------------------------------------------------------------------------
    os.makedirs(args.output, exist_ok=True)
    history = []
    for epoch in range(args.epochs):
        train_loader.dataset.shuffle(epoch)  # another order of the recordings in every epoch
        losses, waited, start = [], 0.0, time.perf_counter()
        t_ready = time.perf_counter()
        for step, data in enumerate(train_loader):
            waited += time.perf_counter() - t_ready
            if args.max_steps and step >= args.max_steps:
                break
            # reset the memory where a recording starts, and cut the graph from the previous batch
            net.reset(data["mask_keep_memory"])
            optimizer.zero_grad()
            # forward, one time bin after the other
            predictions = [net(x.to(device, non_blocking=True)) for x in data["inputs"]]
            predictions = {k: torch.stack([p[k] for p in predictions]) for k in predictions[0]}
            # the loss only where the time bin has labels
            labeled = data["frame_is_labeled"]
            if labeled.any():
                t_idx, n_idx = torch.nonzero(labeled, as_tuple=True)
                targets = [data["labels"][t][n] for t, n in zip(t_idx.tolist(), n_idx.tolist())]
                mask = labeled.to(device)
                loss = detection_loss({k: v[mask] for k, v in predictions.items()}, targets, len(names))["loss"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
                optimizer.step()
                losses.append(loss.item())
            if scheduler.last_epoch + 1 < scheduler.total_steps:
                scheduler.step()
            t_ready = time.perf_counter()
        train_loader.close()
        elapsed = time.perf_counter() - start
        ap = evaluate(net, val_loader, device, len(names))
        val_loader.close()
        summary = ", ".join(f"{names[c - 1]} {v:.3f}" for c, v in ap.items() if not math.isnan(v))
        print(f"epoch {epoch}: loss {np.mean(losses) if losses else float('nan'):.3f}, {elapsed:.1f} s "
              f"(waiting for data {100 * waited / max(elapsed, 1e-9):.1f} %), val AP@0.5: {summary} | "
              f"mAP {mean_ap(ap):.3f}")
        history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else None,
                        "ap50": {names[c - 1]: v for c, v in ap.items()}, "map50": mean_ap(ap)})
    torch.save({"model": net.state_dict(), "classes": names, "array_dim": array_dim},
               os.path.join(args.output, "detector.pt"))
    with open(os.path.join(args.output, "history.json"), "w") as f:
        json.dump(history, f, indent=1)
    print(f"saved {os.path.join(args.output, 'detector.pt')}")


if __name__ == "__main__":
    main()
