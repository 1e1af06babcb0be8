# SPDX-License-Identifier: Apache-2.0
"""``evloader sample``: a dataset of simulated recordings in the layout of Metavision's detection datasets.

Layout (``NAME`` = ``sim_<seed>_<index>``)::

    OUT_DIR/
    ├── label_map_dictionary.json      {"0": "pedestrian", "1": "two wheeler", "2": "car", "3": "empty"}
    ├── dataset_info.json              how it was made (written last: its presence means "complete")
    ├── train/ NAME.raw (EVT3)  NAME_bbox.npy  [NAME_td.dat]
    ├── val/   ...
    ├── test/  ...
    ├── evt2/{train,val,test}/ NAME.raw (EVT2) NAME_bbox.npy      (with "evt2" in formats)
    └── precomputed/{train,val,test}/ NAME.h5 NAME_bbox.npy     (with "h5": histo, 50 ms, full size)

Recording ``i`` is simulated from the seed ``[seed, i]``, so a dataset is the same whatever the number of
processes, and a bigger dataset with the same seed starts with the same recordings.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from .simulator import LABEL_MAP, SimConfig, Recording

__all__ = ["write_dataset", "write_recording", "dataset_is_complete", "add_sample_parser", "FORMATS",
           "GENERATOR_VERSION"]

FORMATS = ("evt3", "evt2", "dat", "h5")
INFO_FILE = "dataset_info.json"
LABEL_MAP_FILE = "label_map_dictionary.json"
# Bumped whenever the simulator's output changes, so that stale generated datasets are not reused.
GENERATOR_VERSION = 3
_SCENARIO_CYCLE = ("mixed", "traffic", "mixed", "pedestrians")
_FIXED_DATE = "2024-01-01 00:00:00"


def split_counts(recordings: int) -> Dict[str, int]:
    """Train / val / test sizes: about 70 / 15 / 15 %, at least one of each from three recordings on."""
    if recordings < 1:
        raise ValueError(f"recordings must be >= 1, got {recordings}")
    if recordings < 3:
        return {"train": recordings - (recordings == 2), "val": int(recordings == 2), "test": 0}
    val = test = max(1, round(0.15 * recordings))
    return {"train": recordings - val - test, "val": val, "test": test}


def write_recording(path_base: str, config: SimConfig, seed, formats: Sequence[str] = ("evt3",),
                    evt2_base: Optional[str] = None) -> dict:
    """Simulate one recording and write, as ``formats`` asks, ``path_base.raw`` (``evt3``),
    ``path_base_td.dat`` (``dat``), both with the labels ``path_base_bbox.npy``, and ``evt2_base.raw``
    (``evt2``) with ``evt2_base_bbox.npy``. Returns a summary dict (``path``: the first file written)."""
    from ..io import DatWriter, RawWriter, write_boxes

    formats = [f for f in FORMATS if f in formats and f != "h5"]
    if not formats:
        raise ValueError("nothing to write: formats must include evt3, evt2 or dat")
    if "evt2" in formats and evt2_base is None:
        raise ValueError("evt2 needs evt2_base")
    rec = Recording(config, seed)
    w, h = config.width, config.height
    # Written under temporary names and renamed at the end: an interrupted run leaves no half file behind
    # that a later run would take for complete.
    finals, writers, label_files = [], [], []
    tag = f".partial-{os.getpid()}"

    def temp(final):
        os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
        finals.append(final)
        return final + tag

    # A fixed date in the RAW headers: the same seed gives the same bytes, whenever it runs.
    header = {"date": _FIXED_DATE}
    if "evt3" in formats:
        writers.append(RawWriter(temp(path_base + ".raw"), "evt3", w, h, extra_header=header))
    if "dat" in formats:
        writers.append(DatWriter(temp(path_base + "_td.dat"), w, h))
    if "evt3" in formats or "dat" in formats:
        label_files.append(path_base + "_bbox.npy")
    if "evt2" in formats:
        writers.append(RawWriter(temp(evt2_base + ".raw"), "evt2", w, h, extra_header=header))
        label_files.append(evt2_base + "_bbox.npy")
    first = finals[0]
    try:
        for events in rec.chunks():
            if events.size:
                for writer in writers:
                    writer.write(events)
        for writer in writers:
            writer.close()
        boxes = rec.boxes
        for path in label_files:
            write_boxes(temp(path), boxes)
        for final in finals:
            os.replace(final + tag, final)
    except BaseException:
        for writer in writers:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - cleaning up after the real error
                pass
        for final in finals:
            if os.path.exists(final + tag):
                os.remove(final + tag)
        raise
    return {"path": first, "base": path_base, "events": int(rec.event_count), "boxes": int(boxes.size),
            "duration_us": config.duration_us}


def _task_json(task) -> str:
    path_base, cfg, seed, formats, evt2_base = task
    return json.dumps([path_base, dataclasses.asdict(cfg), list(seed), list(formats), evt2_base])


def _task_from_json(text: str):
    path_base, cfg, seed, formats, evt2_base = json.loads(text)
    cfg["unlabeled_length_s"] = tuple(cfg["unlabeled_length_s"])
    return path_base, SimConfig(**cfg), seed, formats, evt2_base


def _run_tasks(tasks, jobs: int, on_done=None) -> List[dict]:
    """Run the recordings in this process (jobs == 1) or in ``jobs`` worker processes.

    Workers are fresh interpreters running ``python -m evloader.samples._worker``: unlike
    multiprocessing's fork (unsafe once torch or loader threads exist) and spawn (which re-runs the caller's
    main script), they depend on nothing of the caller."""
    if jobs == 1:
        results = []
        for task in tasks:
            results.append(write_recording(*task))
            if on_done:
                on_done()
        return results
    import queue
    import subprocess
    import threading

    shares = [tasks[i::jobs] for i in range(jobs)]
    order = {task[0]: i for i, task in enumerate(tasks)}
    done: "queue.Queue" = queue.Queue()
    procs = []
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    def pump(proc):
        for line in proc.stdout:
            if line.startswith("{"):
                done.put(json.loads(line))
        done.put(None)

    try:
        for share in shares:
            proc = subprocess.Popen([sys.executable, "-m", "evloader.samples._worker"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            proc.stdin.write("\n".join(_task_json(t) for t in share) + "\n")
            proc.stdin.close()
            procs.append(proc)
            threading.Thread(target=pump, args=(proc,), daemon=True).start()
        results, finished = [], 0
        while finished < len(procs):
            item = done.get()
            if item is None:
                finished += 1
                continue
            results.append(item)
            if on_done:
                on_done()
        failed = [p.wait() for p in procs]
        if any(failed) or len(results) != len(tasks):
            raise RuntimeError(f"simulation workers failed (exit codes {failed}); see the messages above")
    except BaseException:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        raise
    return sorted(results, key=lambda r: order[r["base"]])


def worker_main() -> int:
    """The worker loop: one task (JSON) per stdin line, one result (JSON) per stdout line."""
    for line in sys.stdin:
        if line.strip():
            task = _task_from_json(line)
            result = write_recording(*task)
            result["base"] = task[0]
            print(json.dumps(result), flush=True)
    return 0


def _info(recordings, duration_s, width, height, seed, formats, overrides) -> dict:
    defaults = SimConfig()
    # Only real changes count (a value equal to the default is no change); JSON-normal form for comparisons.
    overrides = json.loads(json.dumps({k: v for k, v in sorted(overrides.items()) if getattr(defaults, k) != v}))
    return {"generator": "evloader sample", "version": GENERATOR_VERSION, "recordings": recordings,
            "duration_s": duration_s, "width": width, "height": height, "seed": seed,
            "formats": sorted(formats), "overrides": overrides}


def dataset_is_complete(out_dir: str, **expected) -> bool:
    """True when ``out_dir`` holds a complete generated dataset whose parameters include ``expected``."""
    path = os.path.join(os.fspath(out_dir), INFO_FILE)
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    if info.get("version") != GENERATOR_VERSION:
        return False
    for key, value in expected.items():
        if key == "formats":
            if not set(value) <= set(info.get("formats", ())):
                return False
        elif info.get(key) != value:
            return False
    return True


def write_dataset(out_dir, recordings: int = 16, duration_s: float = 6.0, size: Tuple[int, int] = (320, 240),
                  seed: int = 0, formats: Sequence[str] = ("evt3",), jobs: Optional[int] = None,
                  progress: bool = True, overwrite: bool = False, **sim_overrides) -> dict:
    """Simulate ``recordings`` recordings of ``duration_s`` seconds on a ``size = (width, height)`` sensor
    into ``out_dir`` (layout in the module docstring). ``formats``: any of ``evt3`` (always written),
    ``evt2``, ``dat``, ``h5``. ``jobs``: processes (default: the number of CPUs, at most 4).
    ``sim_overrides``: fields of :class:`SimConfig` (e.g. ``label_rate_hz=10``).

    An ``out_dir`` that already holds a complete dataset made with the same parameters is kept as it is;
    any other non-empty ``out_dir`` is refused unless ``overwrite`` (which only ever deletes a folder that
    holds a generated dataset's ``dataset_info.json``). Returns the dataset's info dict."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    formats = set(formats) | {"evt3"}
    unknown = formats - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)} (use {', '.join(FORMATS)})")
    width, height = int(size[0]), int(size[1])
    config = SimConfig(width=width, height=height, duration_us=int(round(duration_s * 1e6)), **sim_overrides)
    config.checked()
    info = _info(int(recordings), float(duration_s), width, height, int(seed), formats, sim_overrides)
    counts = split_counts(int(recordings))
    if dataset_is_complete(out_dir, **{k: v for k, v in info.items() if k != "generator"}):
        with open(os.path.join(out_dir, INFO_FILE)) as f:
            return json.load(f)
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise FileExistsError(f"{out_dir} exists and does not hold this dataset: choose another folder or "
                                  "overwrite it (--overwrite)")
        if not os.path.isfile(os.path.join(out_dir, INFO_FILE)):
            raise FileExistsError(f"{out_dir} is not a generated dataset (no {INFO_FILE}): not deleting it")
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, LABEL_MAP_FILE), "w") as f:
        json.dump(LABEL_MAP, f, indent=1)

    tasks, index = [], 0
    for split in ("train", "val", "test"):
        for _ in range(counts[split]):
            name = f"sim_{seed}_{index:03d}"
            cfg = dataclasses.replace(config, scenario=sim_overrides.get("scenario",
                                                                         _SCENARIO_CYCLE[index % len(_SCENARIO_CYCLE)]))
            tasks.append((os.path.join(out_dir, split, name), cfg, [int(seed), index], sorted(formats),
                          os.path.join(out_dir, "evt2", split, name)))
            index += 1
    if "evt2" in formats:
        os.makedirs(os.path.join(out_dir, "evt2"), exist_ok=True)
        shutil.copyfile(os.path.join(out_dir, LABEL_MAP_FILE), os.path.join(out_dir, "evt2", LABEL_MAP_FILE))

    jobs = max(1, min(int(jobs or min(4, os.cpu_count() or 1)), len(tasks)))
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), unit="rec", desc="simulating recordings", file=sys.stderr, dynamic_ncols=True)
    try:
        results = _run_tasks(tasks, jobs, (lambda: bar.update(1)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()

    if "h5" in formats:
        from ..precompute import precompute

        precompute([r["path"] for r in results], os.path.join(out_dir, "precomputed"), preprocess="histo",
                   delta_t=50000, jobs=jobs, progress=progress)
    info.update(splits=counts, events=sum(r["events"] for r in results), boxes=sum(r["boxes"] for r in results),
                build_seconds=round(time.perf_counter() - start, 2),
                label_map=LABEL_MAP, files={os.path.relpath(r["path"], out_dir): r["events"] for r in results})
    with open(os.path.join(out_dir, INFO_FILE + ".tmp"), "w") as f:
        json.dump(info, f, indent=1)
    os.replace(os.path.join(out_dir, INFO_FILE + ".tmp"), os.path.join(out_dir, INFO_FILE))
    return info


# --- command line ---------------------------------------------------------------------------------------------
def _size(text: str) -> Tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x240, got {text!r}") from None


def _formats(text: str) -> List[str]:
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in FORMATS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown format(s) {bad}: use a comma list of {', '.join(FORMATS)}")
    return items


def _run(args) -> int:
    try:
        info = write_dataset(args.out_dir, recordings=args.recordings, duration_s=args.duration, size=args.size,
                             seed=args.seed, formats=args.formats, jobs=args.jobs, progress=not args.quiet,
                             overwrite=args.overwrite, label_rate_hz=args.label_rate)
    except (FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        splits = ", ".join(f"{k} {v}" for k, v in info["splits"].items())
        print(f"{args.out_dir}: {info['recordings']} recordings ({splits}) of {info['duration_s']:g} s at "
              f"{info['width']}x{info['height']}, {info['events']:,} events, {info['boxes']:,} boxes "
              f"(built in {info['build_seconds']:.1f} s)")
    return 0


def add_sample_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``evloader sample`` on an argparse subparsers object (sets ``run``)."""
    p = subparsers.add_parser(
        "sample", help="write a dataset of simulated recordings with box labels (train/ val/ test/)",
        description="Simulate an event camera watching a street (cars, pedestrians, two wheelers moving over a "
                    "textured background; contrast-threshold pixels with noise and a refractory period) and write "
                    "a detection dataset: RAW EVT3 recordings with _bbox.npy labels in train/ val/ test/, plus "
                    "label_map_dictionary.json. Deterministic for a seed.")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--recordings", type=int, default=16, help="number of recordings (default 16: 12/2/2)")
    p.add_argument("--duration", type=float, default=6.0, help="seconds per recording (default 6)")
    p.add_argument("--size", type=_size, default=(320, 240), help="sensor WIDTHxHEIGHT (default 320x240)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--formats", type=_formats, default=["evt3"],
                   help="comma list of evt3 (always), evt2, dat, h5 (precomputed histo tensors, 50 ms)")
    p.add_argument("--label-rate", type=float, default=20.0, help="labels per second (default 20)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="processes (default: CPUs, at most 4)")
    p.add_argument("--overwrite", action="store_true", help="replace a generated dataset made with other settings")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_run)
    return p


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="evloader")
    add_sample_parser(parser.add_subparsers(dest="command", required=True))
    arguments = parser.parse_args(["sample"] + sys.argv[1:])
    sys.exit(arguments.run(arguments))
