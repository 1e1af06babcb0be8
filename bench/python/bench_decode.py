# SPDX-License-Identifier: Apache-2.0
"""Decode throughput of evloader against expelliarmus and numpy copies, on the real recordings looped to
>= 20 M events (EVT3, EVT2, DAT), all measured side by side in one run.

Each real recording's event data is repeated with its timestamps shifted forward per copy (TIME_HIGH words
for EVT3/EVT2, the 32-bit record time for DAT) and the header kept once: the looped file is the camera's own
word stream, clean and monotonic (no loop, no glitch). It is written under the system temp folder, never
into the repository, and deleted at the end.

Per format and per repetition, round-robin so that noise hits every method alike:
  evloader load_all     full read into a new array (page faults of fresh memory included)
  evloader load_n 1M    streamed load_n_events(1 M) until the end, each array dropped
  evloader Decoder      RAW only: the file read in 256 KiB pieces, each decoded by evloader.Decoder into
                        small new arrays (malloc reuses their memory): the Python path closest to a reused
                        buffer
  expelliarmus read     Wizard(encoding=...).read(path): full read into a new array
  expelliarmus chunks   Wizard(..., chunk_size=1 M).read_chunk() until the end: its streamed read
  np.copyto (touched)   byte copy of the decoded array into a preallocated, already-written array: the
                        memory floor
  ndarray.copy (fresh)  byte copy of the decoded array into new memory (numpy asks for huge pages): the
                        page-fault floor of a full read
Medians of CPU time (time.process_time: user+sys of the process) and of wall time. Rates use CPU time.

Usage: python3 bench/python/bench_decode.py [--json results.json] [--repeat 5] [--min-events 20000000]
Data: EVLOADER_DATA_DIR, else ../shared/data/real next to the repository; skipped (exit 0) when absent.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# numpy's OpenBLAS threads spin for a while after start-up and time.process_time counts every thread of the
# process: keep BLAS single-threaded (nothing here uses it) so CPU time is the decoding's alone.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# (label, real file, expelliarmus encoding, reference event count from SOURCES.md)
SOURCES = [
    ("EVT3", "evt3_gen41_expelliarmus.raw", "evt3", 219_596),
    ("EVT2", "evt2_gen3_faery.raw", "evt2", 521_252),
    ("DAT", "evt2_gen3_faery_cd.dat", "dat", 521_252),
]
# The targets: evloader at least this many times expelliarmus.
TARGET_VS_EXPELLIARMUS = {"EVT3": 5.0, "EVT2": 3.0, "DAT": 3.0}
TARGET_VS_MEMCPY = 3.0  # decode within 3x of a plain copy of the decoded array
BATCH = 1 << 20
DECODER_CHUNK = 256 * 1024  # the RAW reader's block size

METHODS = [
    ("load_all", "evloader load_all (new array)"),
    ("load_n", "evloader load_n 1M (streamed)"),
    ("decoder", "evloader Decoder 256 KiB (streamed)"),
    ("expelliarmus", "expelliarmus read (new array)"),
    ("expelliarmus_chunk", "expelliarmus read_chunk 1M (streamed)"),
    ("copyto", "np.copyto bytes (touched)"),
    ("copy_fresh", "ndarray.copy bytes (fresh)"),
]


def data_dir() -> Path | None:
    env = os.environ.get("EVLOADER_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "real"
    return path if path.is_dir() else None


def split_header(raw: bytes, dat: bool) -> int:
    """Offset of the first event byte: after the '% ' lines, plus the type and size bytes for DAT."""
    offset = 0
    while raw.startswith(b"% ", offset):
        offset = raw.index(b"\n", offset) + 1
    return offset + 2 if dat else offset


def loop_words(words: np.ndarray, is_time: np.ndarray, mask: int, copies: int) -> np.ndarray:
    """`copies` copies of `words`, copy k with k * step added to the time field of the words flagged in
    `is_time`; step is one more than the field's span, so copy k starts just after copy k-1 ends."""
    values = words[is_time] & mask
    lo, hi = int(values.min()), int(values.max())
    step = hi - lo + 1
    if hi + step * (copies - 1) > mask:
        raise RuntimeError("time field would overflow while looping")
    n = len(words)
    out = np.tile(words, copies)
    for k in range(1, copies):
        segment = out[k * n:(k + 1) * n]
        segment[is_time] += words.dtype.type(step * k)  # no carry out of the field: checked above
    return out


def make_looped(path: Path, label: str, min_events: int, ref_events: int, folder: Path) -> tuple[Path, int]:
    raw = path.read_bytes()
    offset = split_header(raw, label == "DAT")
    body = raw[offset:]
    copies = -(-min_events // ref_events)
    if label == "EVT3":
        w = np.frombuffer(body, "<u2")
        looped = loop_words(w, (w >> 12) == 0x8, 0x0FFF, copies)
    elif label == "EVT2":
        w = np.frombuffer(body, "<u4")
        looped = loop_words(w, (w >> 28) == 0x8, 0x0FFFFFFF, copies)
    else:
        records = np.frombuffer(body, "<u4").reshape(-1, 2)  # (t, packed address)
        t = np.ascontiguousarray(records[:, 0])
        looped_t = loop_words(t, np.ones(len(t), bool), 0xFFFFFFFF, copies)
        looped = np.empty((len(looped_t), 2), "<u4")
        looped[:, 0] = looped_t
        looped[:, 1] = np.tile(records[:, 1], copies)
    out = folder / path.name
    with open(out, "wb") as f:
        f.write(raw[:offset])
        f.write(looped.tobytes())
    return out, copies


def check_looped(evloader, real: Path, looped: Path, copies: int, ref_events: int) -> dict:
    """The looped file must decode to `copies` clean copies of the real events (independent of the decoder
    under test only through sums, which each copy shares)."""
    one = evloader.open_reader(real, index="memory").load_all()
    if len(one) != ref_events:
        raise RuntimeError(f"{real.name}: {len(one)} events, SOURCES.md says {ref_events}")
    reader = evloader.open_reader(looped, index="memory")
    all_ = reader.load_all()
    stats = reader.stats()
    problems = []
    if len(all_) != copies * len(one):
        problems.append(f"{len(all_)} events, expected {copies * len(one)}")
    for field in ("x", "y", "p"):
        if int(all_[field].sum(dtype=np.int64)) != copies * int(one[field].sum(dtype=np.int64)):
            problems.append(f"sum of {field} differs")
    if np.any(np.diff(all_["t"]) < 0):
        problems.append("time goes backwards")
    if stats.violations != 0 or stats.time_loops != 0:
        problems.append(f"violations: {stats.summary()}")
    if problems:
        raise RuntimeError(f"{looped.name}: " + "; ".join(problems))
    return {"events": len(all_), "first_t": int(all_["t"][0]), "last_t": int(all_["t"][-1])}


def timed(fn):
    """(cpu seconds, wall seconds, minor page faults, result)."""
    gc.collect()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    c0, w0 = time.process_time(), time.perf_counter()
    result = fn()
    c1, w1 = time.process_time(), time.perf_counter()
    f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    return c1 - c0, w1 - w0, f1 - f0, result


def compare_with_expelliarmus(label: str, ours: np.ndarray, theirs: np.ndarray) -> dict:
    same = {f: bool(np.array_equal(ours[f].astype(np.int64), theirs[f].astype(np.int64)))
            for f in ("x", "y", "p", "t")} if len(ours) == len(theirs) else {}
    note = ""
    if label == "EVT3" and same and not same["t"]:
        note = ("timestamps differ: expelliarmus adds 4096 us at each EVT3 TIME_HIGH change (its known bug, "
                "see SOURCES.md); x, y, p compared")
    return {"evloader_events": len(ours), "expelliarmus_events": len(theirs), "fields_equal": same,
            "note": note}


def machine() -> dict:
    model = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    now = datetime.datetime.now().astimezone().isoformat(" ", "seconds")
    return {"cpu": model, "cpus": os.cpu_count(), "date": now, "python": platform.python_version(),
            "numpy": np.__version__, "kernel": platform.release()}


def bench_format(evloader, Wizard, label: str, enc: str, path: Path, events: int, repeat: int) -> dict:
    # The reference array (decoded once) and a touched destination for the memory floor. The floors copy
    # bytes (uint8 views): numpy copies a structured dtype with padding field by field, ~8x slower than
    # memcpy, which would flatter the decoder.
    reference = evloader.open_reader(path, index="memory").load_all()
    reference_bytes = reference.view(np.uint8)
    touched = np.empty_like(reference_bytes)
    np.copyto(touched, reference_bytes)

    def load_all():
        return len(evloader.open_reader(path, index="memory").load_all())

    def load_n():
        reader = evloader.open_reader(path, index="memory")
        n = 0
        while True:
            batch = reader.load_n_events(BATCH)
            if len(batch) == 0:
                return n
            n += len(batch)

    def raw_decoder():
        # RAW only: file read in 256 KiB pieces, each decoded into small new arrays that malloc keeps
        # reusing: the closest Python path to decoding into a reused buffer.
        dec = evloader.Decoder(enc, width, height)
        n = 0
        with open(path, "rb", buffering=0) as f:
            f.seek(data_offset)
            while chunk := f.read(DECODER_CHUNK):
                n += len(dec.decode(chunk)[0])
        dec.finish()
        return n

    def expelliarmus():
        return len(Wizard(encoding=enc).read(str(path)))

    def expelliarmus_chunk():
        wizard = Wizard(encoding=enc, fpath=str(path), chunk_size=BATCH)
        return sum(len(chunk) for chunk in wizard.read_chunk())

    def copyto():
        np.copyto(touched, reference_bytes)
        return len(touched) // reference.itemsize

    def copy_fresh():
        return len(reference_bytes.copy()) // reference.itemsize

    width, height = evloader.open_reader(path, index="memory").geometry
    with open(path, "rb") as f:
        data_offset = split_header(f.read(1 << 16), False)
    fns = {"load_all": load_all, "load_n": load_n,
           "decoder": raw_decoder if label != "DAT" else None,  # no Python-level DAT decoder
           "expelliarmus": expelliarmus, "expelliarmus_chunk": expelliarmus_chunk,
           "copyto": copyto, "copy_fresh": copy_fresh}
    fns = {key: fn for key, fn in fns.items() if fn is not None}
    samples = {key: [] for key in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            cpu, wall, faults, n = timed(fn)
            if n != events:
                raise RuntimeError(f"{label} {key}: {n} events, expected {events}")
            samples[key].append((cpu, wall, faults))

    result = {"events": events, "file_bytes": path.stat().st_size, "methods": {}}
    for key, runs in samples.items():
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        result["methods"][key] = {
            "cpu_s": cpu, "wall_s": wall, "mev_s_cpu": events / cpu / 1e6, "mev_s_wall": events / wall / 1e6,
            "minor_faults": int(statistics.median(r[2] for r in runs)),
            "samples_cpu_s": [r[0] for r in runs], "samples_wall_s": [r[1] for r in runs]}

    theirs = Wizard(encoding=enc).read(str(path))
    result["check"] = compare_with_expelliarmus(label, reference, theirs)
    del theirs
    m = result["methods"]

    def ratio(slow: str, fast: str):
        """CPU time of `slow` over CPU time of `fast` (None when a method did not run)."""
        return m[slow]["cpu_s"] / m[fast]["cpu_s"] if slow in m and fast in m else None

    result["ratios"] = {
        "load_all_vs_expelliarmus": ratio("expelliarmus", "load_all"),
        "load_n_vs_expelliarmus_chunk": ratio("expelliarmus_chunk", "load_n"),
        "decoder_vs_expelliarmus_chunk": ratio("expelliarmus_chunk", "decoder"),
        "decoder_vs_expelliarmus": ratio("expelliarmus", "decoder"),
        "load_all_vs_copyto": ratio("load_all", "copyto"),
        "load_n_vs_copyto": ratio("load_n", "copyto"),
        "decoder_vs_copyto": ratio("decoder", "copyto"),
        "load_all_vs_copy_fresh": ratio("load_all", "copy_fresh"),
    }
    return result


RATIO_COLUMNS = [  # (key, title, suffix)
    ("load_all_vs_expelliarmus", "load_all vs read", "x"),
    ("load_n_vs_expelliarmus_chunk", "load_n vs read_chunk", "x"),
    ("decoder_vs_expelliarmus_chunk", "Decoder vs read_chunk", "x"),
    ("decoder_vs_expelliarmus", "Decoder vs read", "x"),
    ("load_all_vs_copyto", "load_all / copyto", ""),
    ("load_n_vs_copyto", "load_n / copyto", ""),
    ("decoder_vs_copyto", "Decoder / copyto", ""),
    ("load_all_vs_copy_fresh", "load_all / fresh copy", ""),
]


def markdown(results: dict) -> str:
    machine_info = results["machine"]
    lines = [f"Median CPU-time throughput in Mev/s (wall-time Mev/s in brackets); {results['repeat']} "
             f"repetitions, {machine_info['cpu']}, {machine_info['cpus']} CPUs, {machine_info['date']}.", "",
             "| format | events | " + " | ".join(title for _, title in METHODS) + " |",
             "|---|---:|" + "---:|" * len(METHODS)]
    for label, r in results["formats"].items():
        cells = []
        for key, _ in METHODS:
            m = r["methods"].get(key)
            cells.append(f"{m['mev_s_cpu']:.0f} ({m['mev_s_wall']:.0f})" if m else "n/a")
        lines.append(f"| {label} | {r['events'] / 1e6:.1f} M | " + " | ".join(cells) + " |")

    lines += ["", "Ratios of CPU time. 'vs': how many times faster evloader is, like for like (full read "
              "vs full read, streamed vs streamed). '/': how many times slower evloader is than a byte-copy "
              "floor.",
              "", "| format | " + " | ".join(title for _, title, _ in RATIO_COLUMNS) + " |",
              "|---|" + "---:|" * len(RATIO_COLUMNS)]
    for label, r in results["formats"].items():
        q = r["ratios"]
        cells = [f"{q[key]:.2f}{suffix}" if q[key] is not None else "n/a" for key, _, suffix in RATIO_COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    lines += ["", "Targets (evloader >= 5x expelliarmus for EVT3 and >= 3x for EVT2/DAT; within "
              f"{TARGET_VS_MEMCPY:.0f}x of the memory copy):"]
    for label, r in results["formats"].items():
        q, want = r["ratios"], TARGET_VS_EXPELLIARMUS[label]
        checks = [("load_all vs read", "load_all_vs_expelliarmus", "x", want, True),
                  ("load_n vs read_chunk", "load_n_vs_expelliarmus_chunk", "x", want, True),
                  ("Decoder vs read", "decoder_vs_expelliarmus", "x", want, True),
                  ("load_all / fresh copy", "load_all_vs_copy_fresh", "", TARGET_VS_MEMCPY, False),
                  ("Decoder / copyto", "decoder_vs_copyto", "", TARGET_VS_MEMCPY, False)]
        parts = []
        for text, key, suffix, bound, at_least in checks:
            if q[key] is None:
                continue
            ok = q[key] >= bound if at_least else q[key] <= bound
            parts.append(f"{text} {q[key]:.2f}{suffix} ({'met' if ok else 'NOT met'})")
        lines.append(f"- {label}: " + "; ".join(parts))

    lines += ["", "Minor page faults per pass (median):"]
    for label, r in results["formats"].items():
        lines.append(f"- {label}: " + ", ".join(f"{key} {r['methods'][key]['minor_faults']}"
                                               for key, _ in METHODS if key in r["methods"]))

    lines += ["", "Event checks against expelliarmus on the benchmark files:"]
    for label, r in results["formats"].items():
        c = r["check"]
        equal = ", ".join(f"{field} {'equal' if same else 'DIFFER'}"
                          for field, same in c["fields_equal"].items())
        note = f"; {c['note']}" if c["note"] else ""
        lines.append(f"- {label}: evloader {c['evloader_events']}, expelliarmus {c['expelliarmus_events']} "
                     f"events; {equal or 'not compared'}{note}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per method (medians reported)")
    parser.add_argument("--min-events", type=int, default=20_000_000, help="loop each recording to this many")
    parser.add_argument("--formats", default="EVT3,EVT2,DAT", help="comma-separated subset")
    args = parser.parse_args()

    folder = data_dir()
    if folder is None:
        print("bench_decode: skipped, no real recordings "
              "(set EVLOADER_DATA_DIR or provide ../shared/data/real)")
        return 0
    import evloader
    try:
        from expelliarmus import Wizard
    except ImportError:
        print("bench_decode: skipped, expelliarmus is not installed (pip install expelliarmus)")
        return 0

    wanted = {f.strip().upper() for f in args.formats.split(",")}
    results = {"machine": machine(), "repeat": args.repeat, "min_events": args.min_events,
               "evloader": evloader.__version__, "batch": BATCH, "formats": {}}
    try:
        import importlib.metadata as md
        results["expelliarmus"] = md.version("expelliarmus")
    except Exception:  # noqa: BLE001 - a missing version string must not stop the benchmark
        results["expelliarmus"] = "?"

    tmp = Path(tempfile.mkdtemp(prefix="evloader_bench_"))
    try:
        for label, name, enc, ref_events in SOURCES:
            if label not in wanted:
                continue
            real = folder / name
            if not real.exists():
                print(f"{label}: {real} missing, skipped", file=sys.stderr)
                continue
            looped, copies = make_looped(real, label, args.min_events, ref_events, tmp)
            info = check_looped(evloader, real, looped, copies, ref_events)
            size_mb = looped.stat().st_size / 1e6
            print(f"{label}: {name} x{copies} = {info['events']} events, {size_mb:.1f} MB",
                  file=sys.stderr, flush=True)
            r = bench_format(evloader, Wizard, label, enc, looped, info["events"], args.repeat)
            r.update(copies=copies, source=name)
            results["formats"][label] = r
            looped.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    table = markdown(results)
    print(table)
    results["markdown"] = table
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
