# SPDX-License-Identifier: Apache-2.0
"""``evloader demo``: the whole product at work on a simulated dataset (see :mod:`evloader.demo.run`).

Needs torch and OpenCV (``pip install torch opencv-python-headless``); importing this package does not.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .run import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo", "add_demo_parser", "short_config", "main"]


def short_config(output: str, **changes) -> DemoConfig:
    """A tiny configuration that runs the whole demo in seconds (tests, smoke checks): a 3-recording dataset
    of 1.5 s at 128x96, a few training steps of a narrow model."""
    import dataclasses

    base = DemoConfig(output=output, sample_recordings=3, sample_duration_s=1.5, sample_size=(128, 96),
                      input_width=64, num_tbins=4, batch_size=2, model_width=8, steps=3, time_budget_s=30.0,
                      video_seconds=1.0, loader_benchmark_s=0.5, min_box_diag=4.0, progress=False)
    return dataclasses.replace(base, **changes)


def _parse_size(text: str):
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None


def _run(args) -> int:
    try:
        import cv2  # noqa: F401
        import torch  # noqa: F401
    except ImportError as error:
        print(f"error: the demo needs torch and OpenCV ({error}); pip install torch opencv-python-headless",
              file=sys.stderr)
        return 2
    if args.short:
        cfg = short_config(args.output, progress=not args.quiet)
    else:
        cfg = DemoConfig(output=args.output, progress=not args.quiet)
    overrides = {"dataset": args.dataset, "device": args.device, "steps": args.steps,
                 "time_budget_s": args.time_budget, "total_budget_s": args.total_budget,
                 "batch_size": args.batch_size, "num_tbins": args.num_tbins, "num_workers": args.num_workers,
                 "seed": args.seed, "classes": args.classes, "input_width": args.input_width,
                 "threads": args.threads, "sample_recordings": args.recordings, "sample_duration_s": args.duration,
                 "sample_size": args.size, "lr": args.lr}
    import dataclasses

    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    try:
        run_demo(cfg)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def add_demo_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``evloader demo`` on an argparse subparsers object (sets ``run``)."""
    p = subparsers.add_parser(
        "demo", help="train a small recurrent detector on a simulated dataset and write a video and pictures",
        description="Build the simulated sample dataset if it is missing (or use --dataset), measure the "
                    "SequentialDataLoader, train a convolutional-GRU detector with truncated BPTT (loss on labelled "
                    "time bins only), report the loader throughput and the share of time the model waited for data, "
                    "evaluate AP@0.5 per class on the val split before and after training, and write preview.mp4, "
                    "contact_sheet.png, metrics.json and detector.pt to OUTPUT. About 4 minutes on 2 CPU cores.")
    p.add_argument("--output", default="evloader_demo", help="output folder (default: ./evloader_demo)")
    p.add_argument("--dataset", default=None,
                   help="your dataset root (train/ val/ with _bbox.npy labels, label_map_dictionary.json); default: "
                        "the simulated sample in OUTPUT/sample_dataset")
    p.add_argument("--device", default=None, help="torch device: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 1000)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="training stops after this many seconds (default 170)")
    p.add_argument("--total-budget", type=float, default=None,
                   help="training is cut short so that the whole demo takes at most this many seconds (280)")
    p.add_argument("--batch-size", type=int, default=None, help="recordings per batch (4)")
    p.add_argument("--num-tbins", type=int, default=None, help="time bins per batch, the BPTT length (8)")
    p.add_argument("--num-workers", type=int, default=None, help="loader worker threads (1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: CPUs - workers)")
    p.add_argument("--input-width", type=int, default=None, help="downsample the sensor to at most this width (160)")
    p.add_argument("--classes", nargs="+", default=None, help="class names to train (default: all but 'empty')")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (3e-3)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--recordings", type=int, default=None, help="recordings of the sample dataset (16)")
    p.add_argument("--duration", type=float, default=None, help="seconds per sample recording (6)")
    p.add_argument("--size", type=_parse_size, default=None, help="sample sensor WIDTHxHEIGHT (320x240)")
    p.add_argument("--short", action="store_true", help="a tiny run in seconds (smoke test)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_run)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m evloader.demo ...``."""
    parser = argparse.ArgumentParser(prog="evloader")
    add_demo_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["demo"] + list(sys.argv[1:] if argv is None else argv))
    return args.run(args)
