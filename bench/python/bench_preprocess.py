# SPDX-License-Identifier: Apache-2.0
"""Preprocessing kernels: evloader (C++) side by side with the numpy reference implementation of the tests
(tests/python/test_preprocessing.py, vectorised numpy written from the spec) and, for the histogram, tonic's
ToFrame, all measured in one run.

Events: evt3_gen41_expelliarmus.raw (Gen4.1, 1280x720) repeated with its timestamps shifted per copy to
>= 1 M events (about 44 ms), relative to the window start; T = 5 bins. Geometries: 1280x720 (downsampling 0)
and 640x360 (downsampling 1; tonic: Downsample(spatial_factor=0.5) then ToFrame, both timed).

Per kernel and geometry, round-robin over the methods so that noise hits them alike: evloader writes into a
reused output with reset=True (the zero fill included), the numpy reference into a reused output too, tonic
allocates its frames (its API has no output argument). Medians of CPU time (time.process_time), rates in Mev/s
from CPU time. Every evloader output is checked against the numpy reference (float within 1e-6, integers
exact) before timing.

Usage: python3 bench/python/bench_preprocess.py [--repeat 5] [--min-events 1000000] [--kernels histo,diff]
       [--json results.json]
Data: EVLOADER_DATA_DIR, else ../shared/data/real next to the repository; skipped (exit 0) when absent.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# numpy's OpenBLAS threads spin after start-up and time.process_time counts every thread of the process.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "python"))

import evloader  # noqa: E402
from evloader import preprocessing as pp  # noqa: E402
import test_preprocessing as ref  # noqa: E402  (the numpy reference)

NUM_TBINS = 5
GEOMETRIES = [("1280x720", 0), ("640x360", 1)]
TARGET_VS_NUMPY = 10.0
TARGET_VS_TONIC = 10.0


def data_dir():
    env = os.environ.get("EVLOADER_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "real"
    return path if path.is_dir() else None


def load_window(min_events):
    reader = evloader.open_reader(str(data_dir() / "evt3_gen41_expelliarmus.raw"))
    ev = reader.load_all()
    ev["t"] -= ev["t"][0]
    span = int(ev["t"][-1]) + 1
    copies = -(-min_events // len(ev))
    # filled copy by copy: np.concatenate would give a packed dtype, not EventCD, and every kernel call
    # would then convert the events first
    events = np.empty(copies * len(ev), evloader.EventCD)
    for i in range(copies):
        part = events[i * len(ev):(i + 1) * len(ev)]
        part[...] = ev
        part["t"] += i * span
    assert events.dtype == evloader.EventCD
    return events, int(events["t"][-1]) + 1


def cpu_time(fn):
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--min-events", type=int, default=1_000_000)
    ap.add_argument("--kernels", default=",".join(pp.get_preprocess_function_names()[:8]))
    ap.add_argument("--json")
    args = ap.parse_args()
    if data_dir() is None:
        print("real recordings not found (EVLOADER_DATA_DIR or ../shared/data/real): skipped")
        return 0
    try:
        import tonic
        import tonic.transforms as tt
    except ImportError:
        tonic = None
        print("tonic is not installed (pip install tonic): its column is left empty")

    events, total = load_window(args.min_events)
    n = len(events)
    print(f"window: {n} events over {total} us (evt3_gen41_expelliarmus.raw repeated), T = {NUM_TBINS}, "
          f"{args.repeat} repetitions, CPU time; {platform.processor() or platform.machine()}, numpy {np.__version__}"
          + (f", tonic {tonic.__version__}" if tonic else ""))
    tonic_events = None
    if tonic is not None:
        tonic_events = np.zeros(n, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i2")])
        for f in "xytp":
            tonic_events[f] = events[f]

    rows = []
    for geometry, ds in GEOMETRIES:
        height, width = 720 >> ds, 1280 >> ds
        for name in args.kernels.split(","):
            entry = pp.get_preprocess_dict(name)
            kwargs = dict(entry["kwargs"])
            dtype = np.dtype(kwargs.pop("preprocess_dtype"))
            if ds and "quantized" in name:
                dtype = np.dtype("float32")
            fn = entry["events_to_tensor"]
            reference = ref.REFERENCE["event_cube" if name == "event_cube_paper" else name]
            shape = (NUM_TBINS, entry["cin"], height, width)
            out = np.zeros(shape, dtype)
            want = np.zeros(shape, dtype)
            fn(events, out, total, ds, True, **kwargs)
            reference(events, want, total, ds, True, **kwargs)
            if np.issubdtype(dtype, np.floating):
                np.testing.assert_allclose(out, want, rtol=0, atol=1e-6, err_msg=name)
            else:
                np.testing.assert_array_equal(out, want, err_msg=name)
            methods = {
                "evloader": lambda: fn(events, out, total, ds, True, **kwargs),
                "numpy": lambda: reference(events, want, total, ds, True, **kwargs),
            }
            if tonic is not None and name == "histo":
                to_frame = tt.ToFrame(sensor_size=(width, height, 2), n_time_bins=NUM_TBINS)
                transform = to_frame if ds == 0 else tt.Compose([tt.Downsample(spatial_factor=0.5), to_frame])
                methods["tonic"] = lambda: transform(tonic_events)
            times = {m: [] for m in methods}
            for _ in range(args.repeat):
                for m, call in methods.items():
                    times[m].append(cpu_time(call))
            med = {m: statistics.median(v) for m, v in times.items()}
            row = {"kernel": name, "geometry": geometry, "events": n, "dtype": dtype.name,
                   **{f"{m}_s": med[m] for m in med}, **{f"{m}_mev_s": n / med[m] / 1e6 for m in med if med[m] > 0}}
            row["vs_numpy"] = med["numpy"] / med["evloader"] if med["evloader"] > 0 else float("inf")
            if "tonic" in med:
                row["vs_tonic"] = med["tonic"] / med["evloader"] if med["evloader"] > 0 else float("inf")
            rows.append(row)
            tonic_txt = (f"  tonic {row['tonic_mev_s']:7.1f} Mev/s  x{row['vs_tonic']:6.1f}" if "tonic" in med else "")
            print(f"{geometry:9s} {name:26s} {dtype.name:8s} evloader {row['evloader_mev_s']:8.1f} Mev/s   "
                  f"numpy {row['numpy_mev_s']:7.2f} Mev/s  x{row['vs_numpy']:6.1f}{tonic_txt}", flush=True)

    print()
    print("| kernel | geometry | dtype | evloader Mev/s | numpy ref Mev/s | x numpy | tonic ToFrame Mev/s | x tonic |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        tonic_cols = (f"{r['tonic_mev_s']:.1f} | {r['vs_tonic']:.1f}" if "vs_tonic" in r else " | ")
        print(f"| {r['kernel']} | {r['geometry']} | {r['dtype']} | {r['evloader_mev_s']:.0f} | {r['numpy_mev_s']:.2f} | "
              f"{r['vs_numpy']:.1f} | {tonic_cols} |")
    misses = [r for r in rows if r["vs_numpy"] < TARGET_VS_NUMPY]
    misses += [r for r in rows if r.get("vs_tonic", TARGET_VS_TONIC) < TARGET_VS_TONIC]
    print()
    print(f"targets: every kernel >= {TARGET_VS_NUMPY:g}x the numpy reference, histo >= {TARGET_VS_TONIC:g}x tonic: "
          + ("all met" if not misses else "missed by " + ", ".join(f"{r['kernel']}@{r['geometry']}" for r in misses)))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
