# SPDX-License-Identifier: Apache-2.0
"""metavision_ml's ``box_processing`` (behaviour spec §5): loading box labels per batch and time bin,
with the work done by evloader's C++ core.

Same signatures and return types as metavision_ml 4.2.1 (numpy ``EventBbox`` arrays, lists of arrays per
time bin, ``bool`` numpy masks), same float32 arithmetic, with these deliberate differences (docs/labels.md):

* **Window convention.** A batch ``(start, duration)`` owns the boxes with ``start < t <= start + duration``
  and time bin ``k`` those with ``start + k*dt < t <= start + (k+1)*dt`` (the older Metavision SDK's
  convention). 4.2.1 loads ``[start, start + duration)`` but bins ``(.., ..]``, so a box lying exactly on a
  batch boundary was dropped by both batches; here every box belongs to exactly one batch.
* A box file is read once per process (a bounded LRU cache keyed by path, modification time and size),
  not on every call.
* ``nms_by_class`` honours ``iou_thresh`` (4.2.1 always uses 0.5).
* ``filter_empty_tensor`` looks at least at the box's own time bin (4.2.1 fails with bins longer than
  100 ms), judges boxes that lie outside the tensor instead of failing, and returns an ``int64`` index array.
* Boxes in legacy layouts (``ts``, ``confidence``, narrower integers) are accepted everywhere and returned
  as ``EventBbox``.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import _core
from .._dtypes import EventBbox, view_records

__all__ = [
    "load_boxes", "load_box_events", "split_boxes", "create_class_lookup", "load_label_map", "nms",
    "nms_by_class", "clip_boxes", "rescale_boxes", "filter_boxes", "bboxes_to_box_vectors",
    "box_vectors_to_bboxes", "filter_empty_tensor", "could_frame_contain_valid_gt", "label_path_for",
    "box_store", "clear_box_cache", "box_cache_info", "EventBbox",
]

_labels = _core.labels

# metavision_ml's load_boxes constants (hard-coded there; keyword arguments here).
_AREA_BOX_FILTER = 0.1
_FILTER_EMPTY_UNTIL = 500000
_RENAMES = {"ts": "t", "confidence": "class_confidence"}
_REQUIRED = ("t", "x", "y", "w", "h", "class_id")


# ---- conversions --------------------------------------------------------------------------------------

def _as_bbox(box_events, what: str = "box_events") -> np.ndarray:
    """A C-contiguous 1-D EventBbox array: `box_events` itself when it already is one, else a converted
    copy (legacy ``ts``/``confidence`` names renamed, other fields cast, missing optional fields 0)."""
    arr = np.asarray(box_events)
    if arr.dtype == EventBbox:
        return np.ascontiguousarray(arr.reshape(-1))
    if arr.dtype.names is None:
        if arr.size == 0:
            return np.zeros(0, dtype=EventBbox)
        raise ValueError(f"{what}: expected a structured array of boxes (EventBbox), got dtype {arr.dtype}")
    arr = arr.reshape(-1)
    present = {_RENAMES.get(name, name) for name in arr.dtype.names}
    missing = [name for name in _REQUIRED if name not in present]
    if missing:
        raise ValueError(f"{what}: the box array lacks the fields {missing} (dtype {arr.dtype})")
    out = np.zeros(len(arr), dtype=EventBbox)
    for name in arr.dtype.names:
        target = _RENAMES.get(name, name)
        if target in EventBbox.names:
            out[target] = arr[name]
    return out


def _bytes(boxes: np.ndarray) -> np.ndarray:
    return boxes.view(np.uint8)


def _records(raw) -> np.ndarray:
    return view_records(raw, EventBbox)


def _int64_vector(values, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == np.bool_:
        arr = np.flatnonzero(arr)
    return np.ascontiguousarray(arr.reshape(-1).astype(np.int64, copy=False))


def _float32_tensor(tensor, what: str = "tensor") -> np.ndarray:
    """A float32 numpy view of a [T, C, H, W] tensor (torch or numpy). float32 data is used in place
    (any strides); other dtypes become a 0/1 float32 "has input" mask, which is all the filter looks at."""
    if type(tensor).__module__.split(".")[0] == "torch":
        t = tensor.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if str(t.dtype) == "torch.float32":
            arr = t.numpy()
        else:
            nonzero = t != 0
            if t.is_floating_point():
                nonzero &= ~t.isnan()
            arr = nonzero.numpy().astype(np.float32)
    else:
        arr = np.asarray(tensor)
        if arr.dtype != np.float32:
            nonzero = arr != 0
            if arr.dtype.kind in "fc":
                nonzero &= ~np.isnan(arr)
            arr = nonzero.astype(np.float32)
    if arr.ndim != 4:
        raise ValueError(f"{what}: expected a [T, C, H, W] tensor, got shape {tuple(arr.shape)}")
    if any(s < 0 for s in arr.strides) or any(s % arr.itemsize for s in arr.strides):
        arr = np.ascontiguousarray(arr)
    return arr


# ---- files and the store cache ------------------------------------------------------------------------

def label_path_for(recording_path) -> str:
    """The ``_bbox.npy`` file of a recording: its ending ``_td.dat``, ``.dat``, ``.h5``, ``.hdf5``, ``.raw``
    or ``.aedat4`` replaced by ``_bbox.npy`` (``rec_td.dat`` -> ``rec_bbox.npy``, ``rec_3.h5`` ->
    ``rec_3_bbox.npy``). Raises ValueError for another ending."""
    return _labels.label_path_for(os.fspath(recording_path))


def _label_path(metadata) -> str:
    if isinstance(metadata, (str, os.PathLike)):
        return label_path_for(metadata)
    explicit = getattr(metadata, "labels", None)
    if isinstance(explicit, (str, os.PathLike)):
        return os.fspath(explicit)
    is_padding = getattr(metadata, "is_padding", None)
    if getattr(metadata, "padding", False) is True or (callable(is_padding) and is_padding()):
        raise ValueError("a padding FileMetadata has no recording and no labels")
    path = getattr(metadata, "path", None)
    if path is None:
        raise TypeError("expected a FileMetadata (with a .path) or a recording path, got "
                        f"{type(metadata).__name__}")
    return label_path_for(path)


def box_store(path):
    """The cached C++ store of a box file (sorted by time; read once per process, again when it changes)."""
    return _labels.box_store(os.fspath(path))


def clear_box_cache() -> None:
    """Forget every cached box file."""
    _labels.cache_clear()


def box_cache_info() -> dict:
    """``{"size", "capacity", "file_reads"}`` of the per-process box file cache."""
    return dict(_labels.cache_info())


# ---- metavision_ml's functions ------------------------------------------------------------------------

def load_box_events(metadata, batch_start_time, duration) -> np.ndarray:
    """Boxes of the batch that starts at ``batch_start_time`` and lasts ``duration`` µs:
    ``batch_start_time < t <= batch_start_time + duration``, sorted like ``np.sort(boxes, order="t")``.

    ``metadata``: a ``FileMetadata`` (its ``.path`` gives the box file by :func:`label_path_for`, or its
    ``.labels`` when that is a path), or a recording path. Returns a new writable EventBbox array.
    A missing box file raises OSError naming it; a malformed one ValueError."""
    store = _labels.box_store(_label_path(metadata))
    return _records(store.window(int(batch_start_time), int(duration)))


def split_boxes(box_events, batch_start_time, delta_t=None, num_tbins=None) -> List[np.ndarray]:
    """``num_tbins`` arrays: bin ``k`` holds the boxes with ``start + k*delta_t < t <= start + (k+1)*delta_t``
    in input order, reduced by :func:`nms` with the box time as score (among overlapping boxes of a bin the
    most recent one wins; ties: the later box)."""
    if delta_t is None or num_tbins is None:
        raise ValueError("split_boxes needs delta_t and num_tbins")
    boxes = _as_bbox(box_events)
    bins = _labels.split_boxes(_bytes(boxes), int(batch_start_time), int(delta_t), int(num_tbins))
    return [_records(b) for b in bins]


def _visit_order(boxes: np.ndarray, scores, what: str) -> np.ndarray:
    scores = np.asarray(scores).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"{what}: {len(scores)} scores for {len(boxes)} boxes")
    # numpy's argsort reversed, with a stable sort: ties are visited from the last box to the first.
    return np.ascontiguousarray(np.argsort(scores, kind="stable")[::-1].astype(np.int64))


def nms(box_events, scores, iou_thresh=0.5) -> List[int]:
    """Greedy NMS with the "+1 pixel" convention: boxes visited by decreasing score; each kept box removes
    the later ones with IoU > ``iou_thresh``. Returns the kept indices, sorted."""
    boxes = _as_bbox(box_events)
    order = _visit_order(boxes, scores, "nms")
    return _labels.nms(_bytes(boxes), order, float(iou_thresh)).tolist()


def nms_by_class(box_events, scores, iou_thresh=0.5) -> List[int]:
    """:func:`nms` run separately for each ``class_id``; the kept indices of all classes, sorted."""
    boxes = _as_bbox(box_events)
    order = _visit_order(boxes, scores, "nms_by_class")
    return _labels.nms_by_class(_bytes(boxes), order, float(iou_thresh)).tolist()


def _in_place(box_events, fn):
    """Run fn(contiguous EventBbox array) so that an EventBbox input sees the changes, as numpy code does.
    Returns (array the changes went to, fn's result)."""
    if isinstance(box_events, np.ndarray) and box_events.dtype == EventBbox and box_events.ndim == 1:
        if box_events.flags.c_contiguous and box_events.flags.writeable:
            return box_events, fn(box_events)
        work = np.ascontiguousarray(box_events)
        result = fn(work)
        box_events[...] = work
        return box_events, result
    work = _as_bbox(box_events)
    if work is box_events or (isinstance(box_events, np.ndarray) and np.shares_memory(work, box_events)):
        work = work.copy()
    return work, fn(work)


def clip_boxes(box_events, width_orig, height_orig) -> np.ndarray:
    """Clip the boxes into [0, width_orig] x [0, height_orig] (in place for EventBbox arrays) and return the
    ones with ``w > 2`` and ``h > 2``."""
    _, kept = _in_place(box_events,
                        lambda b: _labels.clip_boxes(_bytes(b), float(width_orig), float(height_orig)))
    return _records(kept)


def rescale_boxes(box_events, width_orig, height_orig, width_dst, height_dst) -> np.ndarray:
    """Scale x, w by ``width_dst / width_orig`` and y, h by ``height_dst / height_orig`` (in place for
    EventBbox arrays, which are returned)."""
    target, _ = _in_place(box_events, lambda b: _labels.rescale_boxes(
        _bytes(b), float(width_orig), float(height_orig), float(width_dst), float(height_dst)))
    return target


def filter_boxes(box_events, class_lookup, idx_to_filter, ignore_filtered) -> np.ndarray:
    """Boxes with ``class_id`` replaced by ``class_lookup[class_id]``; lookup values -1 (unwanted classes) are
    dropped, 0 is an error (the background). The boxes at ``idx_to_filter`` are dropped, or kept with class
    -1 (as uint32) when ``ignore_filtered``. Returns a new array."""
    boxes = _as_bbox(box_events)
    lookup = _int64_vector(class_lookup, "class_lookup")
    idx = _int64_vector(idx_to_filter if idx_to_filter is not None else [], "idx_to_filter")
    return _records(_labels.filter_boxes(_bytes(boxes), lookup, idx, bool(ignore_filtered)))


# Class ids index the lookup array: a bound keeps a damaged label map from asking for gigabytes.
MAX_CLASS_ID = 65535


def load_label_map(labelmap_path) -> Dict[int, str]:
    """The class names of a ``label_map_dictionary.json``: ``{class id: name}``, in file order. The file must
    be a non-empty JSON object mapping class ids (decimal strings, 0..65535) to names (strings); anything
    else raises ValueError naming the file (a missing file raises the usual OSError)."""
    with open(labelmap_path, "rb") as f:
        data = f.read()

    def fail(what: str):
        return ValueError(f"{labelmap_path}: {what}")

    class Pairs(list):
        """A JSON object as its (key, value) pairs: duplicate keys stay visible (a dict keeps the last)."""

    try:
        raw = json.loads(data, object_pairs_hook=Pairs)
    except UnicodeDecodeError as e:
        raise fail(f"not a JSON label map: not UTF-8/16/32 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise fail(f"not a JSON label map: {e}") from None
    except RecursionError:
        raise fail("not a JSON label map: nested too deeply") from None
    if not isinstance(raw, Pairs) or not raw:
        raise fail("expected a non-empty JSON object mapping class ids to names, e.g. {\"0\": \"car\"}")
    label_map: Dict[int, str] = {}
    for key, value in raw:
        text = key.strip()
        digits = text.lstrip("0") or "0"  # bounded before int(): huge digit strings are slow or refused
        if not (text.isascii() and text.isdigit()) or len(digits) > 5 or int(digits) > MAX_CLASS_ID:
            raise fail(f"class ids must be integers 0..{MAX_CLASS_ID} written as strings, got {key!r:.80}")
        class_id = int(digits)
        if class_id in label_map:
            raise fail(f"class id {class_id} appears more than once")
        if not isinstance(value, str):
            raise fail(f"the name of class {class_id} must be a string, got {value!r:.80}")
        label_map[class_id] = value
    return label_map


def create_class_lookup(labelmap_path, wanted_keys=[]) -> np.ndarray:  # noqa: B006 (metavision's signature)
    """Lookup array from the dataset's class ids (``label_map_dictionary.json``: ``{"0": "pedestrian", ...}``)
    to 1-based network classes in the order of ``wanted_keys`` (default: every name except ``"empty"``);
    -1 for the others. Example: ids {0: pedestrian, 1: two wheeler, 2: car, 3: truck}, wanted
    ``["car", "pedestrian"]`` -> ``[2, -1, 1, -1]``. A malformed file raises ValueError naming it
    (see :func:`load_label_map`)."""
    label_dic = load_label_map(labelmap_path)
    size = max(label_dic) + 1
    names = list(label_dic.values())
    if wanted_keys:
        wanted_keys = list(wanted_keys)
        if all(key == "empty" for key in wanted_keys):
            raise ValueError(f"{labelmap_path}: wanted_keys must name at least one class other than 'empty'")
        for key in wanted_keys:
            if key not in names:
                raise ValueError(f"{labelmap_path}: key '{key}' not found in the dataset (classes: {names})")
    else:
        wanted_keys = [name for name in names if name != "empty"]
    position = {name: i for i, name in enumerate(wanted_keys)}  # a repeated name takes its last position
    lookup = np.full(size, -1)
    for src_id in range(size):
        name = label_dic.get(src_id)
        if name is not None and name in position:
            lookup[src_id] = position[name] + 1
    return lookup


def filter_empty_tensor(array, box_events, area_box_filter: float = 0.1, shift: int = 0,
                        time_per_bin: int = 10000, batch_start_time: int = 0,
                        last_time_to_filter: Optional[int] = None) -> np.ndarray:
    """Indices of the boxes with input under less than ``area_box_filter`` of their area in ``array``
    ([T, C, H, W]) over the 100 ms of bins up to the box's bin (box coordinates ``int16 >> shift``). Boxes
    with ``t - batch_start_time > last_time_to_filter`` are never filtered; zero-area boxes always are."""
    boxes = _as_bbox(box_events)
    tensor = _float32_tensor(array, "array")
    last = None if last_time_to_filter is None else float(last_time_to_filter)
    return _labels.filter_empty_tensor(tensor, _bytes(boxes), float(area_box_filter), int(shift),
                                       float(time_per_bin), int(batch_start_time), last)


def could_frame_contain_valid_gt(batch_start_time, duration, labelling_delta_t, num_tbins) -> np.ndarray:
    """``num_tbins`` bools: bin ``k`` is True when a multiple of ``labelling_delta_t`` lies in
    ``(start + k*dt, start + (k+1)*dt]`` with ``dt = duration / num_tbins``."""
    return _labels.could_frame_contain_valid_gt(int(batch_start_time), int(duration), int(labelling_delta_t),
                                                int(num_tbins))


def bboxes_to_box_vectors(bbox) -> np.ndarray:
    """float32 ``[N, 6]``: x1, y1, x2, y2, class_id, track_id."""
    boxes = _as_bbox(bbox, "bbox")
    out = np.zeros((len(boxes), 6), dtype=np.float32)
    x, y = boxes["x"], boxes["y"]
    out[:, 0] = x
    out[:, 1] = y
    out[:, 2] = x + boxes["w"]
    out[:, 3] = y + boxes["h"]
    out[:, 4] = boxes["class_id"].astype(np.float32)
    out[:, 5] = boxes["track_id"].astype(np.float32)
    return out


def box_vectors_to_bboxes(boxes, labels, scores=None, track_ids=None, ts=0) -> np.ndarray:
    """EventBbox array from box vectors ``[N, >=4]`` (x1, y1, x2, y2) and class ``labels``; ``scores`` default
    to 0, ``track_ids`` to ``arange(N)``, every box gets time ``ts``."""
    boxes = np.asarray(boxes)
    n = len(boxes)
    out = np.zeros((n,), dtype=EventBbox)
    if scores is None:
        scores = np.zeros((n,), dtype=np.float32)
    if track_ids is None:
        track_ids = np.arange(n, dtype=np.uint32)
    out["t"] = ts
    if n:
        out["x"] = boxes[:, 0]
        out["y"] = boxes[:, 1]
        out["w"] = boxes[:, 2] - boxes[:, 0]
        out["h"] = boxes[:, 3] - boxes[:, 1]
    out["class_confidence"] = np.asarray(scores)
    out["class_id"] = np.asarray(labels)
    out["track_id"] = np.asarray(track_ids)
    return out


def load_boxes(metadata, batch_start_time, duration, tensor, **kwargs):
    """metavision_ml's label loader for the SequentialDataLoader (use it through ``functools.partial``)::

        load_boxes_fn = partial(load_boxes, class_lookup=create_class_lookup(label_map_path, wanted_keys))

    Keyword arguments: ``class_lookup`` (required), ``min_box_diag_network`` (default 0, in tensor
    pixels); evloader additions: ``area_box_filter`` (0.1; 0 disables the empty-box filter) and
    ``filter_empty_until`` (500000 µs: boxes later than this are never dropped for lack of input). Other
    keywords are ignored.

    Steps: the boxes of the batch (:func:`load_box_events`); ``frame_is_labeled[k]`` = bin k holds any box
    (before class filtering, so an ``"empty"``-class box marks a labelled frame); clip to the sensor; drop
    boxes without input under them (first 0.5 s only); class lookup; split into the tensor's T bins with
    NMS; rescale to the tensor's size; drop boxes below ``min_box_diag_network`` or wider than 80 % of it.

    ``tensor``: the [T, C, H, W] input of the batch item (torch or numpy). Returns (list of T EventBbox
    arrays in tensor pixels, bool numpy array [T])."""
    if "class_lookup" not in kwargs:
        raise ValueError("load_boxes needs class_lookup= (e.g. functools.partial(load_boxes, "
                         "class_lookup=create_class_lookup(label_map_path, wanted_keys)))")
    lookup = _int64_vector(kwargs["class_lookup"], "class_lookup")
    height_orig, width_orig = metadata.get_original_size()
    if height_orig is None or width_orig is None:
        raise ValueError(f"{getattr(metadata, 'path', metadata)}: the sensor size is unknown, "
                         "cannot place the boxes")
    array = _float32_tensor(tensor)
    store = _labels.box_store(_label_path(metadata))
    bins, frame_is_labeled = _labels.load_boxes(
        store, int(batch_start_time), int(duration), array, [], int(width_orig), int(height_orig), lookup,
        float(kwargs.get("min_box_diag_network", 0)), float(kwargs.get("area_box_filter", _AREA_BOX_FILTER)),
        int(kwargs.get("filter_empty_until", _FILTER_EMPTY_UNTIL)))
    return [_records(b) for b in bins], frame_is_labeled
