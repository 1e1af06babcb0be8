# SPDX-License-Identifier: Apache-2.0
"""HDF5 event file (ECF) reading throughput with 1 and 2 threads, beside RAW EVT3 decoding of the same
events, measured side by side in one run.

Data: the real EVT3 recording looped to >= 20 M events exactly as bench_decode.py does (the camera's own
word stream repeated, TIME_HIGH shifted per copy, checked to decode to clean copies of SOURCES.md's
events), then written once with evloader's HDF5EventWriter (OpenEB layout, chunks of 16384 events, each
chunk in the mode the reference ECF encoder would choose). Both files live under the system temp folder
and are deleted at the end; their time indexes are built before timing.

Per repetition, round-robin:
  RAW EVT3, 1 thread     one reader, load_n_events(1 M) until the end, each array dropped
  HDF5, 1 thread         the same on the HDF5 copy
  RAW EVT3, 2 threads    two readers, one per half (seek_event to the middle), in two Python threads
  HDF5, 2 threads        the same on the HDF5 copy: chunk reads serialise on the HDF5 lock, ECF decoding
                         runs in parallel
  h5py + ECF filter      h5py's f["CD/events"][:] after evloader.hdf5.register_ecf_filter(): decoding
                         happens inside h5py's libhdf5 (its global lock), one thread (if h5py is installed)
Medians of CPU time (time.process_time, all threads of the process) and of wall time; Mev/s are given for
both. With 2 threads, wall time is what shrinks; CPU time stays about the same.

Usage: python3 bench/python/bench_hdf5.py [--json results.json] [--repeat 5] [--min-events 20000000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench_decode.py: CPU time must be the decoding's

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decode import check_looped, data_dir, machine, make_looped, timed  # noqa: E402

BATCH = 1 << 20
EVT3_FILE, EVT3_EVENTS = "evt3_gen41_expelliarmus.raw", 219_596


def read_range(evloader, path: Path, start: int, stop: int) -> int:
    """Events [start, stop) through load_n_events(1 M) batches; returns how many were read."""
    reader = evloader.open_reader(path)
    if start:
        reader.seek_event(start)
    done = 0
    while done < stop - start:
        batch = reader.load_n_events(min(BATCH, stop - start - done))
        if len(batch) == 0:
            break
        done += len(batch)
    return done


def in_threads(evloader, path: Path, total: int, threads: int) -> int:
    bounds = [total * i // threads for i in range(threads + 1)]
    counts = [0] * threads

    def work(i):
        counts[i] = read_range(evloader, path, bounds[i], bounds[i + 1])

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--min-events", type=int, default=20_000_000)
    args = parser.parse_args()
    real = data_dir()
    if real is None:
        print("real recordings not found (EVLOADER_DATA_DIR or ../shared/data/real): nothing to do")
        return 0
    import evloader
    import evloader.hdf5 as eh
    try:
        import h5py
    except ImportError:
        h5py = None

    folder = Path(tempfile.mkdtemp(prefix="evloader_bench_hdf5_"))
    try:
        raw, copies = make_looped(real / EVT3_FILE, "EVT3", args.min_events, EVT3_EVENTS, folder)
        check = check_looped(evloader, real / EVT3_FILE, raw, copies, EVT3_EVENTS)
        events = evloader.open_reader(raw, index="memory").load_all()
        hdf5 = folder / "looped_evt3.hdf5"
        eh.write_hdf5(hdf5, events, width=1280, height=720)
        total = len(events)
        if not np.array_equal(evloader.open_reader(hdf5, index="memory").load_all(), events):
            raise RuntimeError("the HDF5 copy does not read back to the RAW events")
        del events
        for path in (raw, hdf5):
            evloader.open_reader(path).build_index()  # sidecar in the temp folder, before timing

        methods = {
            "raw_1": ("RAW EVT3, 1 thread", lambda: in_threads(evloader, raw, total, 1)),
            "hdf5_1": ("HDF5 ECF, 1 thread", lambda: in_threads(evloader, hdf5, total, 1)),
            "raw_2": ("RAW EVT3, 2 threads", lambda: in_threads(evloader, raw, total, 2)),
            "hdf5_2": ("HDF5 ECF, 2 threads", lambda: in_threads(evloader, hdf5, total, 2)),
        }
        if h5py is not None:
            eh.register_ecf_filter()

            def with_h5py():
                with h5py.File(hdf5, "r") as f:
                    return len(f["CD/events"][:])

            methods["h5py_1"] = ("h5py + ECF filter, 1 thread", with_h5py)

        samples = {key: {"cpu": [], "wall": []} for key in methods}
        for _ in range(args.repeat):
            for key, (_, fn) in methods.items():
                cpu, wall, _faults, n = timed(fn)
                if n != total:
                    raise RuntimeError(f"{key}: read {n} events, expected {total}")
                samples[key]["cpu"].append(cpu)
                samples[key]["wall"].append(wall)

        results = {"machine": machine(), "events": total, "copies": copies, "check": check,
                   "bytes_per_event": {"raw": raw.stat().st_size / total, "hdf5": hdf5.stat().st_size / total},
                   "methods": {}}
        for key, (label, _) in methods.items():
            cpu = statistics.median(samples[key]["cpu"])
            wall = statistics.median(samples[key]["wall"])
            results["methods"][key] = {"label": label, "cpu_s": cpu, "wall_s": wall,
                                       "mev_s_cpu": total / cpu / 1e6, "mev_s_wall": total / wall / 1e6}
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    m = results["machine"]
    print(f"{total:,} events ({copies} copies of {EVT3_FILE}); {m['cpu']}, {m['cpus']} CPUs; "
          f"median of {args.repeat}")
    print(f"file size: RAW EVT3 {results['bytes_per_event']['raw']:.2f} B/event, "
          f"HDF5 ECF {results['bytes_per_event']['hdf5']:.2f} B/event")
    print(f"| {'method':<28} | {'CPU s':>7} | {'wall s':>7} | {'Mev/s (CPU)':>11} | {'Mev/s (wall)':>12} |")
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 9}|{'-' * 13}|{'-' * 14}|")
    for r in results["methods"].values():
        print(f"| {r['label']:<28} | {r['cpu_s']:7.3f} | {r['wall_s']:7.3f} | {r['mev_s_cpu']:11.1f} | "
              f"{r['mev_s_wall']:12.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
