# SPDX-License-Identifier: Apache-2.0
"""The ``evloader`` command line: ``info``, ``precompute``, ``sample``, ``demo`` (and ``synth``, tiny
synthetic recordings for smoke tests)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

import numpy as np

from . import _core
from ._dtypes import EventCD, EventExtTrigger
from .io import DatWriter, EventReader, RawWriter

# Indexing a file smaller than this is instant: no progress bar.
_PROGRESS_MIN_BYTES = 64 << 20


def _index_with_progress(reader: EventReader, show: bool) -> None:
    size = os.path.getsize(reader.path)
    if not show or size < _PROGRESS_MIN_BYTES:
        reader.build_index()
        return
    from tqdm import tqdm

    with tqdm(total=size, unit="B", unit_scale=True, desc=os.path.basename(reader.path), leave=False,
              file=sys.stderr) as bar:
        def progress(done, total):
            bar.update(done - bar.n)

        reader.build_index(progress)


def describe(path: str, show_progress: bool = True, **reader_options) -> dict:
    """Everything ``evloader info`` reports about one recording, as a dict."""
    reader = EventReader(path, **reader_options)
    _index_with_progress(reader, show_progress)
    count = reader.event_count()
    duration = reader.duration()
    stats = reader.file_stats()
    width, height = reader.geometry
    return {
        "path": reader.path,
        "format": reader.format,
        "encoding": reader.encoding,
        "width": width or None,
        "height": height or None,
        "events": count,
        "first_t_us": reader.first_timestamp() if count else None,
        "last_t_us": reader.last_timestamp() if count else None,
        "duration_us": duration,
        "event_rate_mev_s": (count / duration) if duration > 0 else None,
        "triggers": reader.trigger_count(),
        "time_shift_us": reader.time_shift(),
        "violations": stats.violations,
        "violation_details": stats.summary(),
        "index": reader.index_path or None,
    }


def _print_info(info: dict, out) -> None:
    geometry = f"{info['width']}x{info['height']}" if info["width"] else "unknown"
    rate = f"{info['event_rate_mev_s']:.3f} Mev/s" if info["event_rate_mev_s"] else "-"
    first = info["first_t_us"] if info["first_t_us"] is not None else "-"
    last = info["last_t_us"] if info["last_t_us"] is not None else "-"
    print(info["path"], file=out)
    rows = [
        ("format", f"{info['format']} ({info['encoding']})"),
        ("geometry", geometry),
        ("events", f"{info['events']:,}"),
        ("duration", f"{info['duration_us'] / 1e6:.6f} s ({info['duration_us']} us)"),
        ("event rate", rate),
        ("first / last t", f"{first} / {last} us"),
        ("triggers", f"{info['triggers']:,}"),
        ("violations", f"{info['violations']} ({info['violation_details']})"),
    ]
    for name, value in rows:
        print(f"  {name:<15} {value}", file=out)


def _cmd_info(args) -> int:
    options = {"time_origin": "metavision" if args.metavision_time else "absolute"}
    if args.width or args.height:
        options.update(width=args.width, height=args.height)
    results, failed = [], 0
    for path in args.files:
        try:
            results.append(describe(path, show_progress=not args.json and sys.stderr.isatty(), **options))
        except (OSError, ValueError) as error:
            failed += 1
            results.append({"path": path, "error": str(error)})
            if not args.json:
                print(f"{path}\n  error: {error}", file=sys.stderr)
            continue
        if not args.json:
            _print_info(results[-1], sys.stdout)
    if args.json:
        json.dump(results if len(results) != 1 else results[0], sys.stdout, indent=2)
        print()
    return 1 if failed else 0


def synthesize_events(n: int, width: int, height: int, seed: int = 0, t0: int = 0) -> np.ndarray:
    """A moving edge plus background noise: sorted CD events for demos and smoke tests."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, max(1, n // 2), size=n)).astype(np.int64) + t0
    phase = (t - t0) / max(1, n // 2)
    edge_x = (phase * width).astype(np.int64) % width
    on_edge = rng.random(n) < 0.8
    x = np.where(on_edge, (edge_x + rng.integers(-3, 4, size=n)) % width, rng.integers(0, width, size=n))
    y = rng.integers(0, height, size=n)
    events = np.zeros(n, dtype=EventCD)
    events["x"], events["y"], events["t"] = x, y, t
    events["p"] = rng.integers(0, 2, size=n)
    return events


def _cmd_synth(args) -> int:
    os.makedirs(args.out_dir, exist_ok=True)
    events = synthesize_events(args.events, args.width, args.height, args.seed)
    triggers = np.zeros(4, dtype=EventExtTrigger)
    triggers["t"] = np.linspace(events["t"][0], events["t"][-1], 4).astype(np.int64)
    triggers["p"] = [1, 0, 1, 0]
    written = []
    for encoding in ("evt3", "evt2"):
        path = os.path.join(args.out_dir, f"synthetic_{encoding}.raw")
        with RawWriter(path, encoding, args.width, args.height) as writer:
            writer.write(events, triggers)
        written.append(path)
    path = os.path.join(args.out_dir, "synthetic_td.dat")
    with DatWriter(path, args.width, args.height) as writer:
        writer.write(events)
    written.append(path)
    for p in written:
        print(p)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evloader", description="Event-camera data loading tools.")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="describe recordings (format, size, events, duration, rate)")
    info.add_argument("files", nargs="+", help="RAW or DAT recordings")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--metavision-time", action="store_true",
                      help="report RAW times with the Metavision SDK's time shift (default: absolute sensor time)")
    info.add_argument("--width", type=int, default=None, help="sensor width when the file does not tell")
    info.add_argument("--height", type=int, default=None, help="sensor height when the file does not tell")
    info.set_defaults(run=_cmd_info)

    synth = commands.add_parser("synth", help="write small synthetic EVT3, EVT2 and DAT recordings")
    synth.add_argument("out_dir")
    synth.add_argument("--events", type=int, default=200_000)
    synth.add_argument("--width", type=int, default=640)
    synth.add_argument("--height", type=int, default=480)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=_cmd_synth)

    from .precompute import add_precompute_parser

    add_precompute_parser(commands)
    from .samples.dataset import add_sample_parser; add_sample_parser(commands)  # noqa: E402,E702
    from .demo import add_demo_parser; add_demo_parser(commands)  # noqa: E402,E702
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
