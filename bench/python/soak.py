# SPDX-License-Identifier: Apache-2.0
"""Soak run: many epochs of each loader with worker threads, recording after every epoch the resident memory,
open file descriptors and threads of the process, printed as markdown tables (docs/robustness.md).

Dataset (generated once, reused; --data-dir or <tmp>/evloader_soak_v1): ``evloader sample`` with 16 simulated
recordings of 6 s on a 320x240 sensor (12 in train/), as EVT3 RAW files with their box labels, plus their
precomputed tensor files (histo, 50 ms frames).

Configurations, each in a fresh process (so that one does not inherit another's heap), train split, batch 4,
num_workers 2, prefetch 2, a new recording order every epoch (dataset.shuffle(): a new C++ engine per epoch),
box labels (the _bbox.npy next to each file) through evloader.data.box_processing.load_boxes:
  sequential/raw   SequentialDataLoader, histo, delta_t 50 ms, 5 bins, 240x320
  sequential/h5    SequentialDataLoader on the precomputed tensor files, same shape
  stream/raw       CDProcessorDataLoader, mode delta_t, same bins and size
  stream/h5        CDProcessorDataLoader on the precomputed tensor files

Measured after each epoch (after gc.collect()): VmRSS (/proc/self/status), open descriptors (/proc/self/fd),
threads (/proc/self/task); row 0 is the process before the loader was made. Each configuration runs twice:
with glibc's default malloc settings (what a training run sees) and with a fixed mmap threshold
(MALLOC_MMAP_THRESHOLD_=131072). By default glibc raises its mmap threshold when a large block is freed, so
that later blocks of that size (the batch buffers of the previous epoch's engine, 12 MiB here; the readers'
decode buffers) are carved from the heap and stay resident, fragmented, once freed: the default curve moves
by tens of MiB from epoch to epoch (without a trend over 30 epochs) with nothing leaked. With the fixed
threshold every large block goes back to the system when it is freed, and the curve shows what is really
held: flat but for one batch buffer more or less in the engine's pool.

Usage: python3 bench/python/soak.py [--epochs 10] [--data-dir DIR] [--configs sequential/raw,...] [--out FILE]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

CONFIGS = ("sequential/raw", "sequential/h5", "stream/raw", "stream/h5")
DELTA_T, NUM_TBINS, BATCH, WORKERS = 50_000, 5, 4, 2
HEIGHT, WIDTH = 240, 320


def usage() -> dict:
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    kib = lambda key: int(status[key].split()[0])  # noqa: E731
    return {"rss_mib": kib("VmRSS") / 1024, "anon_mib": kib("RssAnon") / 1024,
            "fds": len(os.listdir("/proc/self/fd")), "threads": len(os.listdir("/proc/self/task"))}


def make_dataset(data_dir: str, recordings: int, duration: float) -> None:
    from evloader.samples.dataset import write_dataset

    write_dataset(data_dir, recordings=recordings, duration_s=duration, size=(WIDTH, HEIGHT), seed=0,
                  formats=["evt3", "h5"], progress=sys.stderr.isatty())


def make_loader(config: str, data_dir: str):
    from functools import partial

    from evloader.data import SequentialDataLoader, box_processing
    from evloader.data.cd_processor_dataset import CDProcessorDataLoader

    kind, source = config.split("/")
    folder = os.path.join(data_dir, "train") if source == "raw" else os.path.join(data_dir, "precomputed", "train")
    ext = ".raw" if source == "raw" else ".h5"
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(ext))
    lookup = box_processing.create_class_lookup(os.path.join(data_dir, "label_map_dictionary.json"))
    labels = {"load_labels": partial(box_processing.load_boxes, class_lookup=lookup)}
    if kind == "sequential":
        return SequentialDataLoader(files, DELTA_T, "histo", [NUM_TBINS, 2, HEIGHT, WIDTH], batch_size=BATCH,
                                    num_workers=WORKERS, shuffle_files=True, padding=True, **labels), len(files)
    return CDProcessorDataLoader(files, "delta_t", DELTA_T, 0, None, "histo", NUM_TBINS, BATCH, num_workers=WORKERS,
                                 height=HEIGHT, width=WIDTH, **labels), len(files)


def run_config(config: str, data_dir: str, epochs: int) -> None:
    """One configuration in this process: JSON lines on stdout, one per epoch (0: before the loader)."""
    import torch  # noqa: F401 (imported before the baseline, as a training script would have)

    gc.collect()
    print(json.dumps({"epoch": 0, **usage()}), flush=True)
    loader, files = make_loader(config, data_dir)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        batches = 0
        for batch in loader:
            batches += 1
        del batch
        seconds = time.perf_counter() - start
        loader.dataset.shuffle()
        gc.collect()
        print(json.dumps({"epoch": epoch, "batches": batches, "seconds": seconds, "files": files, **usage()}),
              flush=True)


def table(config: str, runs: dict) -> str:
    """One markdown table: the default run's rows, and the RSS of the fixed-threshold run beside them."""
    rows, fixed = runs["default"], {r["epoch"]: r for r in runs.get("fixed", [])}
    first = next(r for r in rows if r["epoch"] == 1)
    fixed_first = fixed.get(1)
    lines = [f"**{config}** ({first['files']} recordings, {first['batches']} batches of {BATCH} per epoch)", "",
             "| epoch | RSS MiB | vs epoch 1 | fds | threads | s/epoch | RSS MiB, fixed mmap threshold | vs epoch 1 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        e = r["epoch"]
        label = "0 (before)" if e == 0 else str(e)
        delta = "" if e == 0 else f"{r['rss_mib'] - first['rss_mib']:+.1f}"
        seconds = f"{r['seconds']:.2f}" if "seconds" in r else ""
        f_rss = f_delta = ""
        if e in fixed:
            f_rss = f"{fixed[e]['rss_mib']:.1f}"
            f_delta = "" if e == 0 else f"{fixed[e]['rss_mib'] - fixed_first['rss_mib']:+.1f}"
        lines.append(f"| {label} | {r['rss_mib']:.1f} | {delta} | {r['fds']} | {r['threads']} | {seconds} | {f_rss} "
                     f"| {f_delta} |")
    lines.append("")
    for name, series in (("default", rows), ("fixed threshold", runs.get("fixed", []))):
        later = [r for r in series if r["epoch"] >= 2]
        if not later:
            continue
        base = next(r for r in series if r["epoch"] == 1)
        worst = max(later, key=lambda r: abs(r["rss_mib"] - base["rss_mib"]))
        drift = worst["rss_mib"] - base["rss_mib"]
        lines.append(f"{name}: largest RSS change after epoch 1 {drift:+.1f} MiB ({100 * drift / base['rss_mib']:+.2f} %, "
                     f"epoch {worst['epoch']}); fds {min(r['fds'] for r in later)}-{max(r['fds'] for r in later)} "
                     f"and threads {min(r['threads'] for r in later)}-{max(r['threads'] for r in later)} "
                     f"(epoch 1: {base['fds']} and {base['threads']}).  ")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "evloader_soak_v1"))
    parser.add_argument("--recordings", type=int, default=16)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per recording")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", help="also write the markdown here")
    parser.add_argument("--json", help="also write the raw rows here")
    parser.add_argument("--run-config", help=argparse.SUPPRESS)  # internal: one configuration in this process
    args = parser.parse_args()
    if args.run_config:
        run_config(args.run_config, args.data_dir, args.epochs)
        return 0

    make_dataset(args.data_dir, args.recordings, args.duration)
    results, sections = {}, []
    for config in args.configs.split(","):
        if config not in CONFIGS:
            parser.error(f"unknown configuration {config!r}; choose from {', '.join(CONFIGS)}")
        runs = {}
        for allocator, extra in (("default", {}), ("fixed", {"MALLOC_MMAP_THRESHOLD_": "131072"})):
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
            env.update(extra)
            proc = subprocess.run([sys.executable, __file__, "--run-config", config, "--data-dir", args.data_dir,
                                   "--epochs", str(args.epochs)], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            runs[allocator] = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        results[config] = runs
        sections.append(table(config, runs))
        print(sections[-1] + "\n", flush=True)
    import platform

    header = (f"Soak: {args.epochs} epochs per loader, {platform.machine()} with {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}, dataset {args.data_dir} ({args.recordings} recordings of "
              f"{args.duration:g} s, 320x240).\n\n")
    if args.out:
        with open(args.out, "w") as f:
            f.write(header + "\n\n".join(sections) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
