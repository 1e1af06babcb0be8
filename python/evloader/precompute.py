# SPDX-License-Identifier: Apache-2.0
"""``evloader precompute``: event recordings -> precomputed tensor files (Metavision's ``generate_hdf5``).

Each recording (RAW, DAT, HDF5 event file, AEDAT4) becomes one ``.h5`` tensor file (one per ``max_duration``
piece) in the output folder, at the same place relative to the dataset root (``train/``, ``val/``, ``test/``
are kept), with its ``_bbox.npy`` labels and the dataset's ``label_map_dictionary.json`` carried over.

Time base. Frame i covers ``[origin + i * delta_t, origin + (i + 1) * delta_t)`` of the recording's own
clock, where ``origin`` is the first event's timestamp rounded down to a multiple of delta_t; the file
stores it as the ``start_ts`` attribute. Metavision starts at 0 instead, which for a RAW file whose events
start at 913 s (absolute sensor time) would write 18 000 empty frames first. Labels are re-timed the same
way (``t - origin``), so frame k and the boxes with ``k * delta_t <= t < (k + 1) * delta_t`` still belong
together, exactly as in Metavision's files. Every event is kept: the last frame is the one holding the last
event (Metavision drops an event lying exactly on the last frame boundary).

Parallelism. Recordings are processed on a thread pool: decoding, the preprocessing kernels and the gzip
compression of the frames all run in C++ with the GIL released, and the HDF5 library is entered (under
evloader's process-wide lock) only to store already-compressed chunks. Threads share the one HDF5 library
and need no pickling; processes would gain nothing but start-up cost and a second copy of every buffer.

Safety. Files are written under a hidden temporary name in the output folder and renamed when complete
(labels first, then the tensor files, the first piece last), so an existing output is always complete and
is skipped on the next run (its settings are checked). An exception or Ctrl-C removes the temporaries.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import _core
from .io import open_reader, read_boxes, write_boxes
from .tensor_file import TensorFileReader, TensorFileWriter

__all__ = ["precompute", "PrecomputeResult", "add_precompute_parser", "output_basename"]

# Extensions picked up when a folder is given (".h5" is left out: it is the tensor files' own extension).
EVENT_EXTENSIONS = (".raw", ".dat", ".hdf5", ".aedat4")
LABEL_MAP = "label_map_dictionary.json"
_BATCH = 16  # frames compressed and written per call


class _Cancelled(Exception):
    """Raised inside a worker when the run is being interrupted."""


@dataclasses.dataclass
class PrecomputeResult:
    """What happened to one recording."""
    input: str
    outputs: List[str]
    status: str  # "written", "skipped" or "failed"
    frames: int = 0
    error: Optional[BaseException] = None


# --- naming -----------------------------------------------------------------------------------------------
def output_basename(path: str) -> str:
    """Metavision's output name: the file name up to its first dot, without a trailing ``_td`` / ``_cd``."""
    base = os.path.basename(path).split(".")[0]
    if base.endswith("_td") or base.endswith("_cd"):
        base = base[:-3]
    return base


def _find_boxes(path: str) -> Optional[str]:
    """The label file of a recording: ``rec_td.dat -> rec_bbox.npy`` (§2.4), also ``rec.raw -> rec_bbox.npy``."""
    folder = os.path.dirname(path)
    stem = os.path.basename(path).split(".")[0]
    candidates = [stem[:-3] + "_bbox.npy"] if stem.endswith(("_td", "_cd")) else []
    candidates.append(stem + "_bbox.npy")
    for name in candidates:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _collect_inputs(inputs: Sequence[str]) -> Tuple[List[str], str]:
    """(recordings, dataset root): folders are searched recursively; the root is the common folder."""
    files, anchors = [], []
    for item in inputs:
        item = os.path.abspath(os.fspath(item))
        if os.path.isdir(item):
            anchors.append(item)
            for dirpath, dirnames, filenames in os.walk(item):
                dirnames.sort()
                for name in sorted(filenames):
                    if name.lower().endswith(EVENT_EXTENSIONS) and not name.startswith("."):
                        files.append(os.path.join(dirpath, name))
        elif os.path.isfile(item):
            files.append(item)
            anchors.append(os.path.dirname(item))
        else:
            raise _core.IoError(f"{item}: no such file or folder")
    if not files:
        raise _core.ConfigError("no recordings found in " + ", ".join(map(str, inputs)))
    seen, unique = set(), []
    for f in files:
        if f not in seen:
            seen.add(f)
            unique.append(f)
    return unique, os.path.commonpath(anchors)


# --- preprocessing ----------------------------------------------------------------------------------------
def _resolve_preprocessing(name: str):
    """(channels, kernel, default kwargs) from the evloader.preprocessing registry."""
    from . import preprocessing

    entry = preprocessing.get_preprocess_dict(name)
    return int(entry["cin"]), entry["events_to_tensor"], dict(entry["kwargs"])


@dataclasses.dataclass
class _Config:
    preprocess: str
    channels: int
    kernel: object
    kwargs: dict  # kernel kwargs (without preprocess_dtype)
    stored_kwargs: dict  # what goes into the attributes
    dtype: np.dtype
    mode: str
    delta_t: int
    n_events: int
    height: Optional[int]
    width: Optional[int]
    max_duration: Optional[int]
    store_as_uint8: bool
    reader_options: dict
    overwrite: bool
    compression_threads: int = 1


def _downsampling(cfg: _Config, sensor: Tuple[int, int], path: str) -> Tuple[int, int, int]:
    """(ds, height, width) of the frames for a recording whose sensor is (height, width)."""
    sh, sw = sensor
    if cfg.height is None:
        return 0, sh, sw
    h, w = cfg.height, cfg.width
    fh, fw = sh / h, sw / w
    ok = fh.is_integer() and fw.is_integer() and fh == fw and int(fh) & (int(fh) - 1) == 0
    if not ok:
        raise _core.ConfigError(f"{path}: --height/--width {h}x{w} must be the sensor size {sh}x{sw} divided by "
                                "the same power of two")
    return int(math.log2(fh)), h, w


# --- one recording ----------------------------------------------------------------------------------------
class _Job:
    def __init__(self, path: str, root: str, output_dir: str, cfg: _Config, cancel: threading.Event):
        self.path, self.cfg, self.cancel = path, cfg, cancel
        rel = os.path.relpath(os.path.dirname(path), root)
        self.out_dir = os.path.normpath(os.path.join(output_dir, rel))
        self.base = output_basename(path)
        self.temps: List[str] = []
        self.renames: List[Tuple[str, str]] = []  # (temporary, final), in rename order

    def final(self, piece: Optional[int], suffix: str = ".h5") -> str:
        name = self.base if piece is None else f"{self.base}_{piece}"
        return os.path.join(self.out_dir, name + suffix)

    def first_output(self) -> str:
        return self.final(None if self.cfg.max_duration is None else 0)

    def temp_for(self, final: str) -> str:
        temp = os.path.join(self.out_dir, f".{os.path.basename(final)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.temps.append(temp)
        return temp

    # --- skip-if-complete ---
    def complete(self) -> bool:
        target = self.first_output()
        if not os.path.exists(target) or self.cfg.overwrite:
            return False
        try:
            reader = TensorFileReader(target)
        except (OSError, ValueError):
            return False  # not ours or damaged: compute it again
        cfg = self.cfg
        same = (reader.events_to_tensor == cfg.preprocess and reader.mode == cfg.mode
                and reader.delta_t == cfg.delta_t and reader.n_events == cfg.n_events
                and reader.shape[0] == cfg.channels and reader.store_as_uint8 == cfg.store_as_uint8
                and (cfg.height is None or reader.shape[1:] == (cfg.height, cfg.width))
                and all(_same_value(reader.kwargs.get(k), v) for k, v in cfg.stored_kwargs.items()))
        if not same:
            raise _core.ConfigError(f"{target} exists but was made with other settings ({reader!r}); remove it "
                                    "or pass --overwrite")
        return True

    # --- the work ---
    def run(self) -> PrecomputeResult:
        if self.complete():
            return PrecomputeResult(self.path, [self.first_output()], "skipped")
        os.makedirs(self.out_dir, exist_ok=True)
        try:
            frames = self._compute()
            self._commit()
        except BaseException as error:
            for temp in self.temps:
                try:
                    os.remove(temp)
                except FileNotFoundError:
                    pass
            if isinstance(error, Exception) and self.path not in str(error) and hasattr(error, "add_note"):
                error.add_note(f"while precomputing {self.path}")
            raise
        return PrecomputeResult(self.path, [final for _, final in self.renames if final.endswith(".h5")],
                                "written", frames)

    def _commit(self) -> None:
        # Labels first, then tensor pieces, the first piece last: its presence means "all done".
        order = sorted(self.renames, key=lambda r: (r[1].endswith(".h5"), r[1] == self.first_output()))
        for temp, final in order:
            os.replace(temp, final)
            self.temps.remove(temp)
        self.renames = order

    def _open_writer(self, piece: Optional[int], start_ts: int, shape, sensor) -> TensorFileWriter:
        cfg = self.cfg
        final = self.final(piece)
        temp = self.temp_for(final)
        self.renames.append((temp, final))
        return TensorFileWriter(temp, cfg.preprocess, shape, cfg.delta_t, sensor, dtype=cfg.dtype,
                                store_as_uint8=cfg.store_as_uint8, mode=cfg.mode, n_events=cfg.n_events,
                                kwargs=cfg.stored_kwargs, start_ts=start_ts,
                                compression_threads=cfg.compression_threads)

    def _compute(self) -> int:
        cfg = self.cfg
        reader = open_reader(self.path, **cfg.reader_options)
        sensor = reader.get_size()
        if sensor[0] is None:
            raise _core.ConfigError(f"{self.path}: the sensor size is unknown; pass --sensor-width and "
                                    "--sensor-height")
        ds, h, w = _downsampling(cfg, sensor, self.path)
        shape = (cfg.channels, h, w)
        first = reader.load_n_events(1)
        if cfg.mode == "delta_t":
            origin = (int(first["t"][0]) // cfg.delta_t) * cfg.delta_t if first.size else 0
        else:
            origin = int(first["t"][0]) if first.size else 0
        reader.reset()
        if cfg.mode == "delta_t":
            pieces = self._delta_t_frames(reader, origin, shape, sensor, ds)
        else:
            pieces = self._n_events_frames(reader, origin, shape, sensor, ds)
        self._labels(pieces)
        return sum(p["frames"] for p in pieces)

    def _kernel(self, events: np.ndarray, t0: int, total: int, out: np.ndarray, ds: int) -> None:
        """The C++ kernel on events re-timed to the window start (one time bin)."""
        rel = events.copy()
        rel["t"] -= t0
        self.cfg.kernel(rel, out, total, ds, True, **self.cfg.kwargs)

    def _open_piece(self, pieces: List[dict], index: Optional[int], start: int, shape, sensor):
        pieces.append({"index": index, "start": start, "frames": 0})
        return self._open_writer(index, start, shape, sensor)

    @staticmethod
    def _close_piece(pieces: List[dict], writer) -> None:
        writer.close()
        pieces[-1]["frames"] = writer.index

    def _delta_t_frames(self, reader, origin, shape, sensor, ds) -> List[dict]:
        """Frames of delta_t; piece k (with max_duration M) holds frames [k * M / dt, (k + 1) * M / dt)."""
        cfg = self.cfg
        dt = cfg.delta_t
        per_piece = None if cfg.max_duration is None else cfg.max_duration // dt
        if origin:
            reader.load_delta_t(origin)  # events before origin cannot exist; this aligns current_time
        batch = np.zeros((_BATCH,) + shape, dtype=cfg.dtype)
        pieces: List[dict] = []
        writer, piece, filled, frame = None, None, 0, 0
        try:
            while not reader.is_done():
                if self.cancel.is_set():
                    raise _Cancelled()
                t0 = origin + frame * dt
                events = reader.load_delta_t(dt)
                this_piece = None if per_piece is None else frame // per_piece
                if writer is None or this_piece != piece:
                    if writer is not None:
                        writer.write(batch[:filled])
                        filled = 0
                        self._close_piece(pieces, writer)
                    piece = this_piece
                    start = origin + (0 if piece is None else piece * cfg.max_duration)
                    writer = self._open_piece(pieces, piece, start, shape, sensor)
                self._kernel(events, t0, dt, batch[filled:filled + 1], ds)
                filled += 1
                frame += 1
                if filled == _BATCH:
                    writer.write(batch)
                    filled = 0
            if writer is None:  # no events at all: an empty file
                writer = self._open_piece(pieces, None if per_piece is None else 0, origin, shape, sensor)
            writer.write(batch[:filled])
            self._close_piece(pieces, writer)
        finally:
            if writer is not None:
                writer.close()
        for k, p in enumerate(pieces):
            p["end"] = None if cfg.max_duration is None else p["start"] + cfg.max_duration
        return pieces

    def _n_events_frames(self, reader, origin, shape, sensor, ds) -> List[dict]:
        """Frames of n_events events; the last, incomplete slice is dropped, as Metavision does. With
        max_duration M a new piece starts when a slice ends M or more after the piece's start, and it starts
        where the previous piece's last slice ended (Metavision's cumulated time)."""
        cfg = self.cfg
        pieces: List[dict] = []
        out = np.zeros((1,) + shape, dtype=cfg.dtype)
        writer, prev_last = None, origin
        try:
            while not reader.is_done():
                if self.cancel.is_set():
                    raise _Cancelled()
                events = reader.load_n_events(cfg.n_events)
                if events.size < cfg.n_events:
                    break
                t_first, t_last = int(events["t"][0]), int(events["t"][-1])
                if writer is None:
                    writer = self._open_piece(pieces, None if cfg.max_duration is None else 0, origin, shape,
                                              sensor)
                elif cfg.max_duration is not None and t_last - pieces[-1]["start"] >= cfg.max_duration \
                        and writer.index > 0:
                    self._close_piece(pieces, writer)
                    writer = self._open_piece(pieces, len(pieces), prev_last, shape, sensor)
                # The window [t_first, t_last + 1) holds every event of the slice.
                self._kernel(events, t_first, t_last - t_first + 1, out, ds)
                writer.write(out, [t_last - pieces[-1]["start"]])
                prev_last = t_last
            if writer is None:
                writer = self._open_piece(pieces, None if cfg.max_duration is None else 0, origin, shape, sensor)
            self._close_piece(pieces, writer)
        finally:
            if writer is not None:
                writer.close()
        for k, p in enumerate(pieces):
            if cfg.max_duration is None:
                p["end"] = None
            else:
                p["end"] = pieces[k + 1]["start"] if k + 1 < len(pieces) else p["start"] + cfg.max_duration
        return pieces

    def _labels(self, pieces: List[dict]) -> None:
        """Boxes re-timed to each piece's start_ts (Metavision's split_label, on our time base): piece k gets
        the boxes with start_k <= t < end_k (no end without max_duration), minus start_k."""
        source = _find_boxes(self.path)
        if source is None:
            return
        boxes = read_boxes(source)
        boxes = boxes[np.argsort(boxes["t"], kind="stable")]
        for p in pieces:
            lo = np.searchsorted(boxes["t"], p["start"], side="left")
            hi = len(boxes) if p["end"] is None else np.searchsorted(boxes["t"], p["end"], side="left")
            part = boxes[lo:hi].copy()
            part["t"] -= p["start"]
            final = self.final(p["index"], "_bbox.npy")
            temp = self.temp_for(final)
            write_boxes(temp, part)
            self.renames.append((temp, final))


def _same_value(a, b) -> bool:
    if isinstance(b, float) or isinstance(a, float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return a == b


def _copy_label_maps(root: str, recordings: Iterable[str], output_dir: str) -> List[str]:
    """label_map_dictionary.json of the dataset root (or of its parent, when a split folder was given) and of
    every folder between the root and the recordings, to the same place under the output folder."""
    copied = []
    folders = {root}
    for path in recordings:
        d = os.path.dirname(path)
        while d not in folders and os.path.commonpath([d, root]) == root:
            folders.add(d)
            d = os.path.dirname(d)
    sources = [(os.path.join(f, LABEL_MAP), os.path.join(output_dir, os.path.relpath(f, root), LABEL_MAP))
               for f in sorted(folders)]
    if not os.path.isfile(sources[0][0]):
        parent = os.path.join(os.path.dirname(root), LABEL_MAP)
        if os.path.isfile(parent):
            sources.append((parent, os.path.join(output_dir, LABEL_MAP)))
    for src, dst in sources:
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            temp = dst + f".tmp-{os.getpid()}"
            try:
                shutil.copyfile(src, temp)
                os.replace(temp, os.path.normpath(dst))
            except OSError as error:  # e.g. a full disk: no half-written copy left behind
                try:
                    os.remove(temp)
                except OSError:
                    pass
                raise _core.IoError(f"{os.path.normpath(dst)}: cannot copy the label map "
                                    f"({error.strerror or error})") from error
            copied.append(os.path.normpath(dst))
    return copied


# --- the public function ----------------------------------------------------------------------------------
def precompute(inputs: Sequence[str], output_dir: str, preprocess: str = "histo", delta_t: int = 50000,
               height: Optional[int] = None, width: Optional[int] = None,
               preprocess_kwargs: Optional[dict] = None, store_as_uint8: bool = False, jobs: int = 2,
               mode: str = "delta_t", n_events: int = 0, max_duration: Optional[int] = None,
               time_origin: str = "absolute", sensor_size: Optional[Tuple[int, int]] = None,
               overwrite: bool = False, progress: bool = True, raise_errors: bool = True
               ) -> List[PrecomputeResult]:
    """Turn recordings (files or folders) into tensor files under ``output_dir``. See the module docstring.

    ``max_duration`` (µs) cuts each recording into pieces ``name_{k}.h5``; ``sensor_size`` (height, width)
    gives the size of recordings whose header does not; ``time_origin`` is passed to the readers (``"metavision"``
    for labels made in the Metavision SDK's shifted RAW time). Errors of single recordings are collected; with
    ``raise_errors`` the first one is raised once every recording has been tried.
    """
    if mode not in ("delta_t", "n_events"):
        raise _core.ConfigError(f"mode must be 'delta_t' or 'n_events', got {mode!r}")
    if mode == "delta_t":
        if delta_t is None or int(delta_t) <= 0:
            raise _core.ConfigError(f"delta_t must be > 0 in delta_t mode, got {delta_t}")
        delta_t, n_events = int(delta_t), 0
    else:
        if n_events is None or int(n_events) <= 0:
            raise _core.ConfigError(f"n_events must be > 0 in n_events mode, got {n_events}")
        delta_t, n_events = 0, int(n_events)
    if max_duration is not None:
        max_duration = int(max_duration)
        if max_duration <= 0:
            raise _core.ConfigError(f"max_duration must be positive, got {max_duration}")
        if mode == "delta_t" and max_duration % delta_t:
            raise _core.ConfigError(f"max_duration ({max_duration}) must be a multiple of delta_t ({delta_t})")
    if (height is None) != (width is None):
        raise _core.ConfigError("give both height and width, or neither")
    if height is not None and (int(height) <= 0 or int(width) <= 0):
        raise _core.ConfigError(f"height and width must be positive, got {height}x{width}")
    if int(jobs) < 1:
        raise _core.ConfigError(f"jobs must be >= 1, got {jobs}")

    channels, kernel, defaults = _resolve_preprocessing(preprocess)
    user = dict(preprocess_kwargs or {})
    unknown = sorted(set(user) - set(defaults))
    if unknown:
        raise _core.ConfigError(f"{', '.join(unknown)}: not a parameter of {preprocess!r} (it takes "
                                f"{', '.join(sorted(defaults))})")
    merged = {**defaults, **user}
    if "max_incr_per_pixel" in merged and merged["max_incr_per_pixel"] is not None \
            and not float(merged["max_incr_per_pixel"]) > 0:
        raise _core.ConfigError(f"max_incr_per_pixel must be > 0, got {merged['max_incr_per_pixel']}")
    dtype = np.dtype(merged.pop("preprocess_dtype", np.float32))
    if preprocess.endswith("quantized") and height is not None:
        dtype = np.dtype(np.float32)  # average pooling needs floats (CDProcessor's rule)
    if store_as_uint8:
        if preprocess == "diff" or preprocess.endswith("_quantized") or \
                (preprocess == "event_cube" and not merged.get("split_polarity", True)):
            raise _core.ConfigError(f"store_as_uint8 needs values in [0, 1]; {preprocess!r} makes signed values")
        if dtype.kind != "f":
            raise _core.ConfigError(f"store_as_uint8 needs float frames; {preprocess!r} makes {dtype}")
    stored = {k: v for k, v in merged.items() if v is not None}

    reader_options = {"time_origin": time_origin, "index": "memory"}
    if sensor_size is not None:
        reader_options.update(height=int(sensor_size[0]), width=int(sensor_size[1]))
    cfg = _Config(preprocess, channels, kernel, merged, stored, dtype, mode, delta_t, n_events,
                  None if height is None else int(height), None if width is None else int(width), max_duration,
                  bool(store_as_uint8), reader_options, bool(overwrite))

    recordings, root = _collect_inputs(inputs)
    # gzip dominates; cores left over when there are fewer recordings than jobs compress frames in parallel.
    workers = min(int(jobs), len(recordings))
    cfg.compression_threads = max(1, min(int(jobs), os.cpu_count() or 1) // workers)
    output_dir = os.path.abspath(os.fspath(output_dir))
    cancel = threading.Event()
    jobs_list = [_Job(p, root, output_dir, cfg, cancel) for p in recordings]
    targets: Dict[str, str] = {}
    for job in jobs_list:
        if os.path.normpath(job.out_dir) == os.path.dirname(job.path):
            # Outputs and re-timed labels would replace files of the dataset itself.
            raise _core.ConfigError(f"{job.path}: the output folder must not be the recording's own folder")
        target = job.first_output()
        if target in targets:
            raise _core.ConfigError(f"{targets[target]} and {job.path} would both be written to {target}")
        targets[target] = job.path
    os.makedirs(output_dir, exist_ok=True)
    _copy_label_maps(root, recordings, output_dir)

    results: Dict[int, PrecomputeResult] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs_list), unit="file", desc="precompute", file=sys.stderr, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evloader-precompute")
    futures = {pool.submit(job.run): i for i, job in enumerate(jobs_list)}
    try:
        pending = set(futures)
        while pending:
            # A timeout keeps the main thread responsive to Ctrl-C while the workers run.
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                i = futures[future]
                try:
                    results[i] = future.result()
                except Exception as error:  # noqa: BLE001 - reported per recording
                    results[i] = PrecomputeResult(jobs_list[i].path, [], "failed", error=error)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(os.path.basename(jobs_list[i].path), refresh=False)
    except BaseException:
        cancel.set()  # workers stop at their next frame and delete their temporaries
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        if bar is not None:
            bar.close()
    ordered = [results[i] for i in range(len(jobs_list))]
    failures = [r for r in ordered if r.status == "failed"]
    if failures and raise_errors:
        raise failures[0].error
    return ordered


# --- command line -----------------------------------------------------------------------------------------
def _parse_kwarg(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    low = value.strip().lower()
    if low in ("true", "false"):
        return key.strip(), low == "true"
    if low == "none":
        return key.strip(), None
    for cast in (int, float):
        try:
            return key.strip(), cast(value)
        except ValueError:
            pass
    return key.strip(), value


def _run(args) -> int:
    kwargs = dict(args.kwarg or [])
    if args.max_incr_per_pixel is not None:
        kwargs["max_incr_per_pixel"] = args.max_incr_per_pixel
    sensor = None
    if args.sensor_width or args.sensor_height:
        if not (args.sensor_width and args.sensor_height):
            print("error: give both --sensor-width and --sensor-height", file=sys.stderr)
            return 2
        sensor = (args.sensor_height, args.sensor_width)
    try:
        results = precompute(
            args.inputs, args.output_dir, preprocess=args.preprocess, delta_t=args.delta_t, height=args.height,
            width=args.width, preprocess_kwargs=kwargs, store_as_uint8=args.store_as_uint8, jobs=args.jobs,
            mode=args.mode, n_events=args.n_events,
            max_duration=None if args.max_duration_ms is None else int(round(args.max_duration_ms * 1000)),
            time_origin=args.time_origin, sensor_size=sensor, overwrite=args.overwrite,
            progress=not args.quiet and sys.stderr.isatty(), raise_errors=False)
    except KeyboardInterrupt:
        print("interrupted: no partial output left behind", file=sys.stderr)
        return 130
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    failed = 0
    for r in results:
        if r.status == "failed":
            failed += 1
            print(f"error: {r.input}: {r.error}", file=sys.stderr)
        elif not args.quiet:
            what = f"{r.frames} frames" if r.status == "written" else "already complete"
            print(f"{r.status}: {', '.join(r.outputs)} ({what})")
    return 1 if failed else 0


def add_precompute_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``evloader precompute`` on an argparse subparsers object (sets ``run``)."""
    p = subparsers.add_parser(
        "precompute", help="turn recordings into precomputed tensor files (.h5, Metavision's layout)",
        description="Turn event recordings (RAW, DAT, HDF5, AEDAT4; files or folders) into precomputed tensor "
                    "files in OUTPUT_DIR, keeping the train/val/test layout and carrying _bbox.npy labels and "
                    "label_map_dictionary.json over. Complete outputs are skipped; interrupted runs leave no "
                    "partial file.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="recordings or folders of recordings")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="where the .h5 files go")
    p.add_argument("--preprocess", default="histo", help="preprocessing name (default: histo)")
    p.add_argument("--delta-t", type=int, default=50000, help="frame duration in µs (delta_t mode; default 50000)")
    p.add_argument("--mode", choices=("delta_t", "n_events"), default="delta_t")
    p.add_argument("--n-events", type=int, default=0, help="events per frame (n_events mode)")
    p.add_argument("--height", type=int, default=None, help="frame height: sensor height / 2^k")
    p.add_argument("--width", type=int, default=None, help="frame width: sensor width / 2^k")
    p.add_argument("--max-incr-per-pixel", type=float, default=None,
                   help="normaliser of the histogram-like preprocessings (default: the preprocessing's own)")
    p.add_argument("--kwarg", action="append", type=_parse_kwarg, metavar="KEY=VALUE",
                   help="another preprocessing parameter (repeatable), e.g. split_polarity=false")
    p.add_argument("--store-as-uint8", action="store_true", help="store round(255 x) as uint8 (values in [0, 1])")
    p.add_argument("--max-duration-ms", type=float, default=None,
                   help="cut each recording into pieces name_{k}.h5 of this duration")
    p.add_argument("-j", "--jobs", type=int, default=min(4, os.cpu_count() or 1),
                   help="recordings processed at once (threads)")
    p.add_argument("--time-origin", choices=("absolute", "metavision"), default="absolute",
                   help="time base of the recordings and their labels (metavision: the SDK's shifted RAW time)")
    p.add_argument("--sensor-width", type=int, default=None, help="sensor width for files that do not tell")
    p.add_argument("--sensor-height", type=int, default=None, help="sensor height for files that do not tell")
    p.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no per-file lines")
    p.set_defaults(run=_run)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m evloader.precompute ...`` (the same as ``evloader precompute ...``)."""
    parser = argparse.ArgumentParser(prog="evloader")
    add_precompute_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["precompute"] + list(sys.argv[1:] if argv is None else argv))
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
