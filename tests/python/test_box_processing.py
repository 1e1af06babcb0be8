# SPDX-License-Identifier: Apache-2.0
"""evloader.data.box_processing and evloader.viz.draw_box_events against pure-Python references written from
the behaviour spec §5 / §9 (slow loops, numpy float32 scalars), on random boxes with ties, zero-area boxes,
boxes beyond the frame, legacy layouts and boxes exactly on window and bin boundaries."""
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import evloader
from evloader import EventBbox
from evloader.data import box_processing as bp

F32 = np.float32
LEGACY = np.dtype([("ts", "<u8"), ("x", "<f8"), ("y", "<f8"), ("w", "<f8"), ("h", "<f8"), ("class_id", "u1"),
                   ("confidence", "<f4"), ("track_id", "<u4")])


# ---- references (spec §5) -------------------------------------------------------------------------------

def ref_to_bbox(boxes):
    out = np.zeros(len(boxes), dtype=EventBbox)
    for name in boxes.dtype.names:
        out[{"ts": "t", "confidence": "class_confidence"}.get(name, name)] = boxes[name]
    return out


def ref_window(boxes, start, duration):
    boxes = np.sort(ref_to_bbox(boxes), order=["t"])
    return boxes[(boxes["t"] > start) & (boxes["t"] <= start + duration)]


def ref_nms(boxes, scores, iou_thresh=0.5):
    x1 = [F32(v) for v in boxes["x"]]
    y1 = [F32(v) for v in boxes["y"]]
    x2 = [F32(a + b) for a, b in zip(boxes["x"], boxes["w"])]
    y2 = [F32(a + b) for a, b in zip(boxes["y"], boxes["h"])]
    one = F32(1)
    area = [(x2[i] - x1[i] + one) * (y2[i] - y1[i] + one) for i in range(len(boxes))]
    order = list(np.argsort(np.asarray(scores), kind="stable")[::-1])
    keep = []
    with np.errstate(all="ignore"):
        while order:
            i = order[0]
            keep.append(int(i))
            rest = []
            for j in order[1:]:
                w = np.maximum(F32(0), np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j]) + one)
                h = np.maximum(F32(0), np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]) + one)
                inter = w * h
                if inter / (area[i] + area[j] - inter) <= F32(iou_thresh):
                    rest.append(j)
            order = rest
    return sorted(keep)


def ref_nms_by_class(boxes, scores, iou_thresh=0.5):
    idx = np.arange(len(boxes))
    keep = []
    for c in np.unique(boxes["class_id"]):
        mask = boxes["class_id"] == c
        keep += [int(k) for k in idx[mask][ref_nms(boxes[mask], np.asarray(scores)[mask], iou_thresh)]]
    return sorted(keep)


def ref_split(boxes, start, dt, num_tbins):
    out = []
    for k in range(num_tbins):
        sub = boxes[(boxes["t"] > start + k * dt) & (boxes["t"] <= start + (k + 1) * dt)]
        out.append(sub[ref_nms(sub, sub["t"])])
    return out


def ref_clip(boxes, width, height):
    xmax, ymax = boxes["x"] + boxes["w"], boxes["y"] + boxes["h"]
    boxes["x"] = np.clip(boxes["x"], 0, width)
    boxes["y"] = np.clip(boxes["y"], 0, height)
    boxes["w"] = np.clip(xmax, 0, width) - boxes["x"]
    boxes["h"] = np.clip(ymax, 0, height) - boxes["y"]
    return boxes[(boxes["w"] > 2) & (boxes["h"] > 2)]


def ref_rescale(boxes, wo, ho, wd, hd):
    boxes["x"] *= wd / wo
    boxes["w"] *= wd / wo
    boxes["y"] *= hd / ho
    boxes["h"] *= hd / ho
    return boxes


def ref_filter_boxes(boxes, lookup, idx, ignore):
    classes = np.asarray(lookup)[boxes["class_id"]]
    assert (classes != 0).all()
    keep = classes > 0
    for i in idx:
        if ignore:
            classes[i] = -1
        else:
            keep[i] = False
    out = boxes[keep].copy()
    out["class_id"] = classes[keep].astype(np.int64).astype(np.uint32)
    return out


def int16(v):
    with np.errstate(invalid="ignore"):
        return int(np.array([v], dtype=F32).astype(np.int16)[0])


def ref_filter_empty(array, boxes, area, shift, tpb, start, last):
    num_t, _, height, width = array.shape
    lookback = max(1, int(100000 / tpb))
    out = []
    for i, b in enumerate(boxes):
        ts = int(b["t"]) - start
        if last is not None and ts > last:
            continue
        tmax = min(int(ts / tpb) + 1, num_t)
        tmin = max(0, tmax - lookback)
        xmin, xmax = max(0, int16(b["x"]) >> shift), int16(b["x"] + b["w"]) >> shift
        ymin, ymax = max(0, int16(b["y"]) >> shift), int16(b["y"] + b["h"]) >> shift
        if ymax <= ymin or xmax <= xmin:
            out.append(i)
            continue
        region = array[:, :, ymin:ymax, xmin:xmax]
        if region.shape[2] == 0 or region.shape[3] == 0:
            out.append(i)  # nothing of the box is inside the tensor
            continue
        if tmax <= tmin:
            continue  # the box is before the tensor
        pixels = (np.abs(region[tmin:tmax]) > 0).any(axis=(0, 1)).sum()
        if pixels < area * region.shape[3] * region.shape[2]:
            out.append(i)
    return out


def ref_could_frame(start, duration, ldt, num_tbins):
    dt = duration // num_tbins
    out = np.zeros(num_tbins, dtype=bool)
    instant = (start // ldt + 1) * ldt
    while instant <= start + duration:
        k = next(k for k in range(num_tbins) if start + (k + 1) * dt >= instant)
        out[k] = True
        instant += ldt
    return out


def ref_load_boxes(all_boxes, start, duration, tensor, width, height, lookup, min_diag=0):
    num_t, _, hd, wd = tensor.shape
    dt = duration // num_t
    boxes = ref_window(all_boxes, start, duration)
    labeled = np.array([len(b) > 0 for b in ref_split(boxes, start, dt, num_t)])
    shift = int(np.log2(width / wd))
    boxes = ref_clip(boxes, width, height)
    idx = ref_filter_empty(tensor, boxes, 0.1, shift, dt, start, 500000 - start)
    boxes = ref_filter_boxes(boxes, lookup, idx, False)
    out = []
    for b in ref_split(boxes, start, dt, num_t):
        b = ref_rescale(b, width, height, wd, hd)
        keep = (b["w"] ** 2 + b["h"] ** 2) >= min_diag ** 2
        keep &= (b["w"] >= min_diag / 3) & (b["h"] >= min_diag / 3) & (b["w"] <= 0.8 * wd)
        out.append(b[keep])
    return out, labeled


# ---- data -----------------------------------------------------------------------------------------------

def random_boxes(rng, n, times, width=64, height=48):
    """Clustered boxes (so that NMS has work), on a few timestamps (ties), some beyond the frame, some
    degenerate, some exact duplicates."""
    b = np.zeros(n, dtype=EventBbox)
    b["t"] = rng.choice(times, n)
    centers = rng.uniform(-8, width + 8, size=(4, 2))
    c = centers[rng.integers(0, 4, n)]
    b["x"] = np.where(rng.random(n) < 0.4, np.round(c[:, 0]), c[:, 0] + rng.normal(0, 3, n))
    b["y"] = np.where(rng.random(n) < 0.4, np.round(c[:, 1]), c[:, 1] + rng.normal(0, 3, n))
    b["w"] = np.where(rng.random(n) < 0.2, rng.choice([0, 0.5, 2, 2.5, 3], n), rng.uniform(1, 30, n))
    b["h"] = np.where(rng.random(n) < 0.2, rng.choice([0, 0.5, 2, 2.5, 3], n), rng.uniform(1, 30, n))
    b["class_id"] = rng.integers(0, 4, n)
    b["track_id"] = rng.integers(0, 1000, n)
    b["class_confidence"] = rng.random(n)
    dup = rng.random(n) < 0.1
    b[dup] = b[rng.integers(0, n, dup.sum())]
    return b


def to_legacy(boxes):
    out = np.zeros(len(boxes), dtype=LEGACY)
    out["ts"] = boxes["t"]
    for name in ("x", "y", "w", "h", "class_id", "track_id"):
        out[name] = boxes[name]
    out["confidence"] = boxes["class_confidence"]
    return out


def same(a, b):
    assert a.dtype == EventBbox and b.dtype == EventBbox
    assert len(a) == len(b)
    # Bit-exact fields; the 4 tail padding bytes are not data.
    fields = lambda x: np.ascontiguousarray(x).view(np.uint8).reshape(-1, 40)[:, :36]  # noqa: E731
    assert np.array_equal(fields(a), fields(b)), (a, b)


class Meta:
    """The parts of FileMetadata that load_boxes uses."""

    def __init__(self, path, width, height):
        self.path, self._size = str(path), (height, width)

    def get_original_size(self):
        return self._size


@pytest.fixture(autouse=True)
def _fresh_cache():
    bp.clear_box_cache()
    yield
    bp.clear_box_cache()


# ---- files and windows ----------------------------------------------------------------------------------

def test_label_path_for():
    assert bp.label_path_for("rec_td.dat") == "rec_bbox.npy"
    assert bp.label_path_for("rec.h5") == "rec_bbox.npy"
    assert bp.label_path_for("dir/rec_3.h5") == os.path.join("dir", "rec_3_bbox.npy")
    assert bp.label_path_for("rec.raw") == "rec_bbox.npy"
    assert bp.label_path_for("rec.hdf5") == "rec_bbox.npy"
    with pytest.raises(ValueError):
        bp.label_path_for("rec.txt")


def test_load_box_events_window_order_and_legacy_files(tmp_path):
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 300, np.arange(0, 400000, 10000))
    np.save(tmp_path / "a_bbox.npy", boxes)
    np.save(tmp_path / "b_bbox.npy", to_legacy(boxes))
    for name in ("a.h5", "b_td.dat"):
        meta = Meta(tmp_path / name, 64, 48)
        for start, duration in [(0, 50000), (50000, 50000), (-10, 10), (120000, 150000), (390000, 100000)]:
            got = bp.load_box_events(meta, start, duration)
            src = boxes if name == "a.h5" else to_legacy(boxes)
            same(got, ref_window(src, start, duration))
    got = bp.load_box_events(str(tmp_path / "a.h5"), 0, 10 ** 9)  # a plain path works too
    assert len(got) == np.count_nonzero(boxes["t"] > 0)
    got["class_id"] = 7  # writable, and a copy: the cache is untouched
    assert (bp.load_box_events(str(tmp_path / "a.h5"), 0, 10 ** 9)["class_id"] != 7).any()


def test_explicit_labels_attribute(tmp_path):
    boxes = random_boxes(np.random.default_rng(2), 20, [5, 15])
    np.save(tmp_path / "custom_labels.npy", boxes)
    meta = Meta(tmp_path / "rec.h5", 64, 48)
    meta.labels = str(tmp_path / "custom_labels.npy")
    same(bp.load_box_events(meta, 0, 20), ref_window(boxes, 0, 20))


def test_box_file_is_read_once_and_again_when_changed(tmp_path):
    boxes = random_boxes(np.random.default_rng(3), 50, [10, 20, 30])
    np.save(tmp_path / "rec_bbox.npy", boxes)
    meta = Meta(tmp_path / "rec.h5", 64, 48)
    before = bp.box_cache_info()["file_reads"]
    for start in range(0, 40, 10):
        bp.load_box_events(meta, start, 10)
    assert bp.box_cache_info()["file_reads"] == before + 1
    np.save(tmp_path / "rec_bbox.npy", boxes[:10])
    assert len(bp.load_box_events(meta, 0, 100)) == np.count_nonzero(boxes[:10]["t"] > 0)
    assert bp.box_cache_info()["file_reads"] == before + 2


def test_missing_and_malformed_box_files(tmp_path):
    with pytest.raises(OSError, match="nothere_bbox.npy"):
        bp.load_box_events(Meta(tmp_path / "nothere.h5", 64, 48), 0, 100)
    (tmp_path / "bad_bbox.npy").write_bytes(b"\x93NUMPY garbage that is not a header")
    with pytest.raises(ValueError, match="bad_bbox.npy"):
        bp.load_box_events(Meta(tmp_path / "bad.h5", 64, 48), 0, 100)
    np.save(tmp_path / "plain_bbox.npy", np.arange(10))
    with pytest.raises(ValueError, match="plain_bbox.npy"):
        bp.load_box_events(Meta(tmp_path / "plain.h5", 64, 48), 0, 100)
    with pytest.raises(ValueError):
        bp.load_box_events(Meta(tmp_path / "rec.txt", 64, 48), 0, 100)


def test_labels_on_every_batch_boundary_are_all_kept(tmp_path):
    # Quirk 1: labels every delta_t, batches of num_tbins * delta_t: each label lands in exactly one bin.
    delta_t, num_tbins, n = 50000, 3, 24
    boxes = np.zeros(n, dtype=EventBbox)
    boxes["t"] = np.arange(1, n + 1) * delta_t
    boxes["x"], boxes["y"], boxes["w"], boxes["h"], boxes["class_id"] = 10, 10, 30, 20, 1
    np.save(tmp_path / "rec_bbox.npy", boxes)
    meta = Meta(tmp_path / "rec.h5", 64, 48)
    tensor = np.ones((num_tbins, 2, 48, 64), dtype=np.float32)
    seen = []
    for start in range(0, n * delta_t, num_tbins * delta_t):
        labels, labeled = bp.load_boxes(meta, start, num_tbins * delta_t, tensor,
                                        class_lookup=np.array([-1, 1]))
        assert labeled.dtype == np.bool_ and labeled.all()
        assert [len(b) for b in labels] == [1] * num_tbins
        seen += [int(b["t"][0]) for b in labels]
        window = bp.load_box_events(meta, start, num_tbins * delta_t)
        assert [len(b) for b in bp.split_boxes(window, start, delta_t, num_tbins)] == [1] * num_tbins
    assert seen == list(boxes["t"])


# ---- the functions against their references -------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_nms_matches_reference(seed):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, int(rng.integers(0, 60)), [1, 2, 3])
    for scores in (boxes["t"], boxes["class_confidence"], np.round(boxes["class_confidence"], 1)):
        for thr in (0.5, 0.3, 0.7):
            got = bp.nms(boxes, scores, thr)
            assert isinstance(got, list)
            assert got == ref_nms(boxes, scores, thr)
            assert bp.nms_by_class(boxes, scores, thr) == ref_nms_by_class(boxes, scores, thr)
    assert bp.nms(to_legacy(boxes), boxes["t"]) == ref_nms(ref_to_bbox(to_legacy(boxes)), boxes["t"])


def test_nms_small_cases():
    b = np.zeros(2, dtype=EventBbox)
    b["w"] = b["h"] = 10
    b["x"] = [0, 3.5]  # IoU 0.517 with the +1 convention, 0.48 without
    assert bp.nms(b, np.array([1, 2])) == [1]
    assert bp.nms(b, np.array([2, 2])) == [1]  # a tie: the later box wins
    assert bp.nms(b, np.array([2, 1])) == [0]
    assert bp.nms(b[:0], np.array([])) == []
    with pytest.raises(ValueError):
        bp.nms(b, np.array([1, 2, 3]))


@pytest.mark.parametrize("seed", range(8))
def test_split_boxes_matches_reference(seed):
    rng = np.random.default_rng(seed)
    start, dt = int(rng.integers(-100, 100)) * 10, int(rng.integers(1, 4)) * 10
    num_tbins = int(rng.integers(1, 6))
    # Times on, next to and between bin boundaries, before and after the batch.
    edges = np.arange(-1, num_tbins + 2) * dt
    times = start + np.concatenate([edges, edges + 1, [3]])
    boxes = random_boxes(rng, 80, times)
    got = bp.split_boxes(boxes, start, dt, num_tbins)
    assert isinstance(got, list) and len(got) == num_tbins
    for g, r in zip(got, ref_split(boxes, start, dt, num_tbins)):
        same(g, r)
    for g, r in zip(bp.split_boxes(to_legacy(boxes), start, dt, num_tbins),
                    ref_split(ref_to_bbox(to_legacy(boxes)), start, dt, num_tbins)):
        same(g, r)


@pytest.mark.parametrize("seed", range(4))
def test_clip_and_rescale_match_reference(seed):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 100, [1])
    mine, theirs = boxes.copy(), boxes.copy()
    same(bp.clip_boxes(mine, 64, 48), ref_clip(theirs, 64, 48))
    same(mine, theirs)  # the input is clipped in place
    out = bp.rescale_boxes(mine, 64, 48, 20, 7)
    assert out is mine
    same(mine, ref_rescale(theirs, 64, 48, 20, 7))
    # Strided input: still changed in place.
    mine, theirs = boxes.copy(), boxes.copy()
    bp.rescale_boxes(mine[::2], 1280, 720, 320, 180)
    ref_rescale(theirs[::2], 1280, 720, 320, 180)
    same(mine, theirs)
    # Legacy input: converted, returned as EventBbox.
    legacy = to_legacy(boxes)
    same(bp.clip_boxes(legacy, 64, 48), ref_clip(ref_to_bbox(legacy), 64, 48))


def test_clip_boxes_examples():
    b = np.zeros(3, dtype=EventBbox)
    b["x"], b["y"], b["w"], b["h"] = [-5, 95, 98.5], [-5, 10, 10], [20, 10, 10], [20, 10, 10]
    kept = bp.clip_boxes(b, 100, 100)
    assert kept[["x", "y", "w", "h"]].tolist() == [(0, 0, 15, 15), (95, 10, 5, 10)]


@pytest.mark.parametrize("seed", range(4))
def test_filter_boxes_matches_reference(seed):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 40, [1, 2])
    lookup = np.array([2, -1, 1, 3])
    idx = sorted(rng.choice(len(boxes), 5, replace=False).tolist())
    for ignore in (False, True):
        same(bp.filter_boxes(boxes, lookup, np.array(idx), ignore),
             ref_filter_boxes(boxes, lookup, idx, ignore))
    same(bp.filter_boxes(boxes, lookup, np.array([]), False), ref_filter_boxes(boxes, lookup, [], False))
    with pytest.raises(ValueError):
        bp.filter_boxes(boxes, np.array([0, 1, 2, 3]), [], False)  # 0 is the background
    with pytest.raises(ValueError):
        bp.filter_boxes(boxes, np.array([1, 2]), [], False)  # class ids beyond the lookup
    with pytest.raises(ValueError):
        bp.filter_boxes(boxes, lookup, [len(boxes)], False)


def test_create_class_lookup(tmp_path):
    path = tmp_path / "label_map_dictionary.json"
    path.write_text(json.dumps({"0": "pedestrian", "1": "two wheeler", "2": "car", "3": "truck"}))
    lookup = bp.create_class_lookup(str(path), ["car", "pedestrian"])
    assert lookup.tolist() == [2, -1, 1, -1]
    assert np.issubdtype(lookup.dtype, np.integer)
    assert bp.create_class_lookup(str(path)).tolist() == [1, 2, 3, 4]
    path.write_text(json.dumps({"0": "car", "5": "empty", "3": "bus"}))
    assert bp.create_class_lookup(str(path)).tolist() == [1, -1, -1, 2, -1, -1]
    assert bp.create_class_lookup(str(path), ["bus", "empty"]).tolist() == [-1, -1, -1, 1, -1, 2]
    with pytest.raises(ValueError, match="truck"):
        bp.create_class_lookup(str(path), ["truck"])
    with pytest.raises(ValueError):
        bp.create_class_lookup(str(path), ["empty"])
    path.write_text("{not json")
    with pytest.raises(ValueError):
        bp.create_class_lookup(str(path))


@pytest.mark.parametrize("seed", range(6))
def test_filter_empty_tensor_matches_reference(seed):
    rng = np.random.default_rng(seed)
    num_t, shift = int(rng.integers(1, 6)), int(rng.integers(0, 3))
    height, width = 48 >> shift, 64 >> shift
    shape = (num_t, 2, height, width)
    tensor = (rng.random(shape) < 0.03) * rng.normal(0, 1, shape).astype(np.float32)
    tpb = int(rng.choice([7000, 10000, 30000, 60000, 150000]))
    start = int(rng.integers(0, 5)) * 100000
    boxes = random_boxes(rng, 60, start + np.arange(-2, num_t + 2) * tpb + rng.integers(-5, 5))
    for last in (None, 20000, 10 ** 9):
        for area in (0.1, 0.01):
            got = bp.filter_empty_tensor(tensor, boxes, area, shift, tpb, start, last)
            assert got.dtype == np.int64
            assert got.tolist() == ref_filter_empty(tensor, boxes, area, shift, tpb, start, last)
    # A strided item of a batch [T, N, C, H, W], and a non-float tensor, give the same answer.
    batch = np.zeros((num_t, 3) + tensor.shape[1:], dtype=np.float32)
    batch[:, 1] = tensor
    ref = ref_filter_empty(tensor, boxes, 0.1, shift, tpb, start, None)
    assert bp.filter_empty_tensor(batch[:, 1], boxes, 0.1, shift, tpb, start).tolist() == ref
    as_uint8 = (tensor != 0).astype(np.uint8)
    assert bp.filter_empty_tensor(as_uint8, boxes, 0.1, shift, tpb, start).tolist() == ref
    flipped = tensor[:, :, ::-1, :].copy()[:, :, ::-1, :]  # negative strides, same content
    assert flipped.strides[2] < 0
    assert bp.filter_empty_tensor(flipped, boxes, 0.1, shift, tpb, start).tolist() == ref


def test_could_frame_contain_valid_gt():
    f = bp.could_frame_contain_valid_gt
    assert f(0, 250, 120, 5).tolist() == [False, False, True, False, True]
    assert f(500, 250, 120, 5).tolist() == [False, True, False, False, True]
    assert f(250, 250, 100, 5).tolist() == [True, False, True, False, True]
    assert f(0, 250, 120, 5).dtype == np.bool_
    rng = np.random.default_rng(0)
    for _ in range(200):
        num_tbins = int(rng.integers(1, 8))
        duration = num_tbins * int(rng.integers(1, 50))
        start, ldt = int(rng.integers(-300, 300)), int(rng.integers(1, 120))
        want = ref_could_frame(start, duration, ldt, num_tbins)
        assert f(start, duration, ldt, num_tbins).tolist() == want.tolist()
    with pytest.raises(ValueError):
        f(0, 251, 100, 5)
    with pytest.raises(ValueError):
        f(0, 250, 0, 5)


def test_box_vectors_round_trip():
    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, 20, [7])
    vectors = bp.bboxes_to_box_vectors(boxes)
    assert vectors.dtype == np.float32 and vectors.shape == (20, 6)
    assert (vectors[:, 2] == boxes["x"] + boxes["w"]).all()
    assert (vectors[:, 4] == boxes["class_id"]).all() and (vectors[:, 5] == boxes["track_id"]).all()
    back = bp.box_vectors_to_bboxes(vectors[:, :4], boxes["class_id"], boxes["class_confidence"],
                                    boxes["track_id"], ts=7)
    assert back.dtype == EventBbox
    assert (back["t"] == 7).all() and (back["x"] == boxes["x"]).all()
    assert (back["class_id"] == boxes["class_id"]).all()
    assert np.allclose(back["w"], boxes["w"], atol=1e-4)
    default = bp.box_vectors_to_bboxes(vectors[:, :4], np.ones(20))
    assert (default["track_id"] == np.arange(20)).all() and (default["class_confidence"] == 0).all()
    assert len(bp.box_vectors_to_bboxes(np.zeros((0, 4)), np.zeros(0))) == 0


# ---- load_boxes end to end -------------------------------------------------------------------------------

def histo(events, start, duration, num_tbins, channels, height, width, shift):
    """A small histogram tensor of the events (a generated input for the empty-box filter)."""
    tensor = np.zeros((num_tbins, channels, height, width), dtype=np.float32)
    dt = duration // num_tbins
    sel = events[(events["t"] >= start) & (events["t"] < start + duration)]
    np.add.at(tensor, ((sel["t"] - start) // dt, sel["p"], sel["y"] >> shift, sel["x"] >> shift), 1.0)
    return tensor


@pytest.mark.parametrize("seed", range(3))
def test_load_boxes_end_to_end_on_a_generated_recording(tmp_path, seed):
    rng = np.random.default_rng(seed)
    width, height, delta_t, num_tbins, shift = 128, 96, 50000, 4, 1
    n_events = 20000
    events = np.zeros(n_events, dtype=evloader.EventCD)
    events["t"] = np.sort(rng.integers(0, 2000000, n_events))
    # Events only in the left half: boxes on the right half are "empty" early in the recording.
    events["x"] = rng.integers(0, width // 2, n_events)
    events["y"] = rng.integers(0, height, n_events)
    events["p"] = rng.integers(0, 2, n_events)
    with evloader.DatWriter(tmp_path / "rec_td.dat", width, height) as w:
        w.write(events)
    # Labels every 25 ms (two per bin, some on bin boundaries) plus random times.
    times = np.concatenate([np.arange(0, 2000000, 25000), rng.integers(0, 2000000, 40)])
    boxes = random_boxes(rng, 600, times, width, height)
    boxes["class_id"] = rng.integers(0, 4, len(boxes))
    np.save(tmp_path / "rec_bbox.npy", boxes)

    meta = Meta(tmp_path / "rec_td.dat", width, height)
    lookup = np.array([1, -1, 2, 3])
    duration = num_tbins * delta_t
    for start in range(0, 2000000, duration):
        tensor = histo(events, start, duration, num_tbins, 2, height >> shift, width >> shift, shift)
        for min_diag in (0, 6.5):
            got, labeled = bp.load_boxes(meta, start, duration, tensor, class_lookup=lookup,
                                         min_box_diag_network=min_diag, num_tbins=num_tbins)
            want, want_labeled = ref_load_boxes(boxes, start, duration, tensor, width, height, lookup,
                                                min_diag)
            assert labeled.dtype == np.bool_ and labeled.tolist() == want_labeled.tolist()
            assert len(got) == num_tbins
            for g, r in zip(got, want):
                same(g, r)


def test_load_boxes_with_the_loaders_file_metadata(tmp_path):
    # The real FileMetadata reads the sensor size from the recording.
    from evloader.data import FileMetadata

    width, height = 64, 48
    events = np.zeros(100, dtype=evloader.EventCD)
    events["t"] = np.arange(100) * 1000
    with evloader.DatWriter(tmp_path / "rec_td.dat", width, height) as w:
        w.write(events)
    boxes = np.zeros(2, dtype=EventBbox)
    boxes["t"] = [600000, 700000]
    boxes["x"], boxes["y"], boxes["w"], boxes["h"], boxes["class_id"] = 4, 4, 20, 10, 0
    np.save(tmp_path / "rec_bbox.npy", boxes)
    meta = FileMetadata(str(tmp_path / "rec_td.dat"), 1000000, 50000, 2)
    labels, labeled = bp.load_boxes(meta, 600000, 100000, np.zeros((2, 2, 24, 32), np.float32),
                                    class_lookup=np.array([1]))
    assert labeled.tolist() == [False, True]
    assert [len(b) for b in labels] == [0, 1]
    assert labels[1][["x", "y", "w", "h"]].tolist() == [(2, 2, 10, 5)]


def test_load_boxes_accepts_torch_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    boxes = random_boxes(rng, 200, np.arange(0, 400000, 20000), 64, 48)
    np.save(tmp_path / "rec_bbox.npy", boxes)
    meta = Meta(tmp_path / "rec.h5", 64, 48)
    tensor = (rng.random((4, 2, 48, 64)) < 0.05).astype(np.float32)
    lookup = np.array([1, 2, 3, 4])
    want, want_labeled = bp.load_boxes(meta, 0, 200000, tensor, class_lookup=lookup)
    batch = torch.zeros((4, 3, 2, 48, 64), requires_grad=False)
    batch[:, 2] = torch.from_numpy(tensor)
    for t in (torch.from_numpy(tensor), batch[:, 2], torch.from_numpy(tensor).to(torch.float64),
              torch.from_numpy(tensor).requires_grad_()):
        got, labeled = bp.load_boxes(meta, 0, 200000, t, class_lookup=lookup)
        assert labeled.tolist() == want_labeled.tolist()
        for g, r in zip(got, want):
            same(g, r)


def test_load_boxes_from_threads(tmp_path):
    rng = np.random.default_rng(4)
    boxes = random_boxes(rng, 3000, np.arange(0, 5000000, 10000), 64, 48)
    np.save(tmp_path / "rec_bbox.npy", boxes)
    meta = Meta(tmp_path / "rec.h5", 64, 48)
    tensor = (rng.random((5, 2, 24, 32)) < 0.1).astype(np.float32)
    lookup = np.array([1, 2, 3, 4])
    starts = list(range(0, 5000000, 250000))
    serial = [bp.load_boxes(meta, s, 250000, tensor, class_lookup=lookup) for s in starts]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda s: bp.load_boxes(meta, s, 250000, tensor, class_lookup=lookup),
                                 starts * 3))
    for i, (got, labeled) in enumerate(parallel):
        want, want_labeled = serial[i % len(starts)]
        assert labeled.tolist() == want_labeled.tolist()
        for g, r in zip(got, want):
            same(g, r)
    assert bp.box_cache_info()["file_reads"] >= 1


def test_load_boxes_bad_input(tmp_path):
    np.save(tmp_path / "rec_bbox.npy", np.zeros(1, dtype=EventBbox))
    meta = Meta(tmp_path / "rec.h5", 64, 48)
    tensor = np.zeros((2, 2, 48, 64), np.float32)
    with pytest.raises(ValueError, match="class_lookup"):
        bp.load_boxes(meta, 0, 100000, tensor)
    with pytest.raises(ValueError):
        bp.load_boxes(meta, 0, 100000, np.zeros((2, 48, 64), np.float32), class_lookup=[1])
    with pytest.raises(ValueError):
        bp.load_boxes(meta, 0, 100000, np.zeros((2, 2, 48, 128), np.float32), class_lookup=[1])
    with pytest.raises(OSError, match="missing_bbox.npy"):
        bp.load_boxes(Meta(tmp_path / "missing.h5", 64, 48), 0, 100000, tensor, class_lookup=[1])


# ---- draw_box_events ------------------------------------------------------------------------------------

def test_draw_box_events():
    cv2 = pytest.importorskip("cv2")
    from evloader.viz import draw_box_events, get_palette

    palette = get_palette()
    assert palette.shape == (255, 3) and palette.dtype == np.uint8
    assert palette[0].tolist() == [0, 0, 255]  # OpenCV's HSV colormap starts at red (BGR)
    assert cv2 is not None

    frame = np.zeros((100, 120, 3), dtype=np.uint8)
    empty = np.zeros(0, dtype=EventBbox)
    assert draw_box_events(frame, empty, ["background"]) is frame and not frame.any()
    assert draw_box_events(frame, None, ["background"]) is frame and not frame.any()

    boxes = np.zeros(2, dtype=EventBbox)
    boxes["x"], boxes["y"], boxes["w"], boxes["h"] = [10, 100], [20, 90], [50, 50], [40, 50]
    boxes["class_id"], boxes["class_confidence"] = [1, 2], [0.5, 0.25]
    out = draw_box_events(frame, boxes, ["background", "car", "pedestrian"])
    assert out is frame
    color = palette[60].tolist()
    assert frame[20, 10].tolist() == color and frame[60, 60].tolist() == color  # corners (x, y), (x+w, y+h)
    assert frame[40, 10].tolist() == color and frame[20, 35].tolist() == color  # edges
    # The second box is clipped to the image: its far corner is (W-1, H-1).
    assert frame[99, 119].tolist() == palette[120].tolist()
    # Text inside the first box: pixels of the box colour away from its edges.
    inside = frame[22:59, 12:59]
    assert (inside == np.array(color, np.uint8)).all(axis=2).sum() > 20

    no_score = np.zeros_like(frame)
    draw_box_events(no_score, boxes, ["background", "car", "pedestrian"], draw_score=False)
    assert (no_score != frame).any()

    forced = np.zeros_like(frame)
    draw_box_events(forced, boxes[:1], ["background", "car"], force_color=[1, 2, 3], thickness=2)
    assert forced[20, 10].tolist() == [1, 2, 3] and forced[21, 11].tolist() == [1, 2, 3]
    with pytest.raises(ValueError):
        draw_box_events(forced, boxes, ["background"], confidence_field="nope")

    tracks = np.zeros_like(frame)
    history = {0: boxes[:1].copy(), 5: boxes[:1].copy()}
    history[0]["x"] = 0
    tb = boxes[:1].copy()
    tb["track_id"] = 0
    draw_box_events(tracks, tb, {1: "car"}, color_from="track_id", dic_history=history)
    assert tracks[40, 35].tolist() == palette[0].tolist()  # a line from the centre to the past centre
