# SPDX-License-Identifier: Apache-2.0
"""Tensor files: INTER_AREA against independent implementations, h5py interoperability both ways, parallel
reads, bad files."""
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import evloader
from evloader.tensor_file import (TensorFileReader, TensorFileWriter, area_resize, get_duration,
                                  get_original_size)

h5py = pytest.importorskip("h5py")


# --- INTER_AREA, independently ------------------------------------------------------------------------
def area_weights_opencv(src, dst):
    """OpenCV's INTER_AREA weight matrix [dst, src] of one axis, from its documented rule: output cell d
    covers [d * s, (d + 1) * s) with s = src / dst; each source pixel weighs its overlap over the cell
    width; fractional overlaps of 1e-3 or less are ignored."""
    s = src / dst
    w = np.zeros((dst, src))
    if float(s).is_integer():
        k = int(s)
        for d in range(dst):
            w[d, d * k:(d + 1) * k] = 1.0 / k
        return w
    for d in range(dst):
        a, b = d * s, d * s + s
        cell = min(s, src - a)
        lo, hi = math.ceil(a), min(math.floor(b), src - 1)
        lo = min(lo, hi)
        if lo - a > 1e-3:
            w[d, lo - 1] = (lo - a) / cell
        w[d, lo:hi] = 1.0 / cell
        if b - hi > 1e-3:
            w[d, hi] = min(min(b - hi, 1.0), cell) / cell
    return w


def area_exact(plane, h, w):
    """The mathematical definition: mean over the exact footprint (float64)."""
    def weights(src, dst):
        s = src / dst
        m = np.zeros((dst, src))
        for d in range(dst):
            a, b = d * s, min((d + 1) * s, src)
            for i in range(src):
                m[d, i] = max(0.0, min(b, i + 1) - max(a, i)) / (b - a)
        return m
    return weights(plane.shape[0], h) @ plane.astype(np.float64) @ weights(plane.shape[1], w).T


def area_reference(planes, h, w):
    wy = area_weights_opencv(planes.shape[-2], h)
    wx = area_weights_opencv(planes.shape[-1], w)
    return np.einsum("ij,...jk,lk->...il", wy, planes.astype(np.float64), wx)


@pytest.mark.parametrize("src,dst", [((64, 96), (32, 48)), ((64, 96), (16, 24)), ((72, 128), (9, 16)),
                                     ((30, 45), (10, 15)), ((10, 10), (3, 3)), ((48, 64), (20, 30)),
                                     ((7, 11), (3, 4)), ((9, 20), (9, 8))])
def test_area_resize_matches_independent_reference(src, dst):
    rng = np.random.default_rng(src[0] * 1000 + dst[1])
    planes = rng.random((3, 2) + src, dtype=np.float32)
    got = area_resize(planes, *dst)
    assert got.shape == (3, 2) + dst and got.dtype == np.float32
    np.testing.assert_allclose(got, area_reference(planes, *dst), rtol=0, atol=1e-6)
    # Away from OpenCV's 1e-3 cut-off the rule is plain area averaging.
    np.testing.assert_allclose(got[1, 0], area_exact(planes[1, 0], *dst), rtol=0, atol=1e-5)


def test_area_resize_integer_factors_are_block_means():
    rng = np.random.default_rng(1)
    plane = rng.random((720 // 4, 1280 // 4), dtype=np.float32)
    for k in (2, 4):
        got = area_resize(plane, plane.shape[0] // k, plane.shape[1] // k)
        blocks = plane.astype(np.float64).reshape(plane.shape[0] // k, k, plane.shape[1] // k, k).mean(axis=(1, 3))
        np.testing.assert_allclose(got, blocks, rtol=0, atol=1e-6)


def test_area_resize_refuses_upscaling():
    with pytest.raises(ValueError):
        area_resize(np.zeros((4, 4), np.float32), 8, 8)


@pytest.mark.parametrize("src,dst", [((64, 96), (32, 48)), ((64, 96), (16, 24)), ((30, 45), (10, 15)),
                                     ((10, 10), (3, 3)), ((48, 64), (20, 30)), ((37, 53), (11, 17))])
def test_area_resize_agrees_with_cv2(src, dst):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(7)
    plane = (rng.random(src, dtype=np.float32) * rng.integers(1, 30)).astype(np.float32)
    expect = cv2.resize(plane, (dst[1], dst[0]), interpolation=cv2.INTER_AREA)
    got = area_resize(plane, *dst)
    if src[0] == 2 * dst[0] and src[1] == 2 * dst[1]:
        # 2x2: OpenCV adds pair sums in its vector lanes and in order in the scalar tail; we always use pair
        # sums, so the tail columns may differ by an ulp.
        np.testing.assert_allclose(got, expect, rtol=2e-7, atol=0)
    else:
        np.testing.assert_array_equal(got, expect)


# --- writer -> reader ------------------------------------------------------------------------------------
def random_frames(n, c, h, w, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    frames = rng.random((n, c, h, w)).astype(dtype)
    frames[rng.random(frames.shape) < 0.6] = 0
    return frames


def test_round_trip_float32(tmp_path):
    path = tmp_path / "f.h5"
    frames = random_frames(9, 2, 12, 16)
    with TensorFileWriter(path, "histo", (2, 12, 16), 50000, (48, 64), kwargs={"max_incr_per_pixel": 5.0},
                          start_ts=913700000) as w:
        w.write(frames[:4])
        w.write(frames[4:])
        assert w.index == 9
    r = TensorFileReader(path)
    assert (r.events_to_tensor, r.mode, r.delta_t, r.n_events, r.shape) == ("histo", "delta_t", 50000, 0, (2, 12, 16))
    assert r.dtype == np.float32 and not r.store_as_uint8 and r.start_ts == 913700000
    assert len(r) == 9 and r.duration() == 9 * 50000 and r.get_size() == (48, 64)
    assert r.kwargs == {"max_incr_per_pixel": 5.0}
    np.testing.assert_array_equal(r.read(0, 9), frames)
    np.testing.assert_array_equal(r[3], frames[3])
    np.testing.assert_array_equal(r[-1], frames[-1])
    np.testing.assert_array_equal(r[2:5], frames[2:5])
    np.testing.assert_array_equal(r.read_raw(7, 2), frames[7:9])
    # Metavision's slice [t0 // dt, t1 // dt), zeros past the end.
    window = r.read_window(120000, 520000)
    assert window.shape == (8, 2, 12, 16)
    np.testing.assert_array_equal(window[:7], frames[2:9])
    assert not window[7:].any()
    # Downsampled reads are INTER_AREA of the frames.
    np.testing.assert_allclose(r.read(0, 9, 6, 8), area_reference(frames, 6, 8), atol=1e-6)
    assert get_duration(path) == 450000 and get_original_size(path) == (48, 64)


def test_round_trip_uint8_storage(tmp_path):
    path = tmp_path / "u8.h5"
    frames = random_frames(3, 2, 8, 8, seed=1)
    frames[0, 0, 0, :3] = [0.5 / 255, 1.5 / 255, 1.0]
    with TensorFileWriter(path, "histo", (2, 8, 8), 10000, (8, 8), store_as_uint8=True) as w:
        w.write(frames)
    r = TensorFileReader(path)
    assert r.store_as_uint8 and r.dtype == np.uint8
    stored = np.around(np.float32(255) * frames).astype(np.uint8)  # Metavision's HDF5Writer
    np.testing.assert_array_equal(r.read_raw(0, 3), stored)
    assert list(stored[0, 0, 0, :3]) == [0, 2, 255]
    np.testing.assert_array_equal(r.read(0, 3), stored.astype(np.float32) / 255)
    with TensorFileWriter(tmp_path / "bad.h5", "histo", (2, 8, 8), 10000, (8, 8), store_as_uint8=True) as w:
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            w.write(frames - 0.5)


def test_round_trip_n_events(tmp_path):
    path = tmp_path / "n.h5"
    frames = random_frames(4, 2, 4, 6, seed=2)
    with TensorFileWriter(path, "histo", (2, 4, 6), 0, (4, 6), mode="n_events", n_events=500) as w:
        with pytest.raises(ValueError, match="last_timestamps"):
            w.write(frames)
        w.write(frames[:2], [100, 250])
        w.write(frames[2:], [400, 777])
    r = TensorFileReader(path)
    assert r.mode == "n_events" and r.n_events == 500 and r.delta_t == 0
    np.testing.assert_array_equal(r.last_timestamps(), [100, 250, 400, 777])
    assert r.duration() == 777
    np.testing.assert_array_equal(r.read(0, 4), frames)
    with pytest.raises(ValueError, match="n_events"):
        r.read_window(0, 1000)


# --- h5py reads our files --------------------------------------------------------------------------------
def test_h5py_reads_our_files_like_metavision_files(tmp_path):
    path = tmp_path / "ours.h5"
    frames = random_frames(5, 6, 10, 12, seed=3)
    kwargs = {"preprocess_dtype": "float32", "split_polarity": True, "max_incr_per_pixel": 5.0}
    with TensorFileWriter(path, "event_cube", (6, 10, 12), 50000, (40, 48), kwargs=kwargs) as w:
        w.write(frames)
    with h5py.File(path, "r") as f:
        d = f["data"]
        assert d.shape == (5, 6, 10, 12) and d.dtype == np.float32
        assert d.chunks == (1, 6, 10, 12) and d.maxshape == (None, 6, 10, 12) and d.compression == "gzip"
        np.testing.assert_array_equal(d[...], frames)
        a = d.attrs
        assert isinstance(a["events_to_tensor"], np.bytes_) and a["events_to_tensor"].decode("utf8") == "event_cube"
        assert a["delta_t"].dtype == np.uint32 and a["delta_t"] == 50000
        assert a["event_input_width"] == 48 and a["event_input_height"] == 40
        assert a["event_input_width"].dtype == np.int64
        np.testing.assert_array_equal(a["shape"], [6, 10, 12])
        assert a["mode"] == "delta_t" and isinstance(a["mode"], str)
        assert a["n_events"] == 0
        assert a["split_polarity"] is np.True_ or a["split_polarity"] == True  # noqa: E712
        assert isinstance(a["split_polarity"], np.bool_)
        assert a["max_incr_per_pixel"] == 5.0 and a["max_incr_per_pixel"].dtype == np.float64
        assert "preprocess_dtype" not in a and "store_as_uint8" not in a and "start_ts" not in a
        # The attributes and their types, compared with what h5py makes of Metavision's attrs dict.
        ref_path = tmp_path / "ref.h5"
        with h5py.File(ref_path, "w") as g:
            ref = g.create_dataset("data", (0, 6, 10, 12), maxshape=(None, 6, 10, 12), dtype=np.float32,
                                   compression="gzip", chunks=(1, 6, 10, 12))
            for key, value in {"events_to_tensor": np.bytes_("event_cube"), "delta_t": np.uint32(50000),
                               "event_input_width": 48, "event_input_height": 40, "shape": [6, 10, 12],
                               "mode": "delta_t", "n_events": 0, "split_polarity": True,
                               "max_incr_per_pixel": 5.0}.items():
                ref.attrs[key] = value
            for key in ref.attrs:
                ours, theirs = h5py.h5a.open(d.id, key.encode()), h5py.h5a.open(ref.id, key.encode())
                assert ours.get_type().dtype == theirs.get_type().dtype, key
                assert ours.shape == theirs.shape, key
                assert type(a[key]) is type(ref.attrs[key]), key
            assert sorted(ref.attrs) == sorted(a)


def test_h5py_reads_our_uint8_and_n_events_files(tmp_path):
    path = tmp_path / "u8n.h5"
    frames = random_frames(3, 2, 4, 4, seed=4)
    with TensorFileWriter(path, "histo", (2, 4, 4), 0, (4, 4), store_as_uint8=True, mode="n_events",
                          n_events=100, start_ts=12345) as w:
        w.write(frames, [10, 20, 30])
    with h5py.File(path, "r") as f:
        assert f["data"].dtype == np.uint8 and f["data"].attrs["store_as_uint8"] == np.True_
        assert f["data"].attrs["mode"] == "n_events" and f["data"].attrs["n_events"] == 100
        assert f["data"].attrs["start_ts"] == 12345
        ts = f["last_timestamps"]
        assert ts.dtype == np.int64 and ts.chunks == (1,) and ts.compression == "gzip"
        np.testing.assert_array_equal(ts[...], [10, 20, 30])
        np.testing.assert_array_equal(f["data"][...], np.around(255 * frames).astype(np.uint8))


# --- we read h5py-written files --------------------------------------------------------------------------
def write_metavision_like(path, frames, store_as_uint8=False, mode="delta_t", last=None, **extra):
    """Metavision's HDF5Writer, paraphrased: 100-row growth, attrs dict, trim at close."""
    c, h, w = frames.shape[1:]
    with h5py.File(path, "w") as f:
        d = f.create_dataset("data", (100, c, h, w), maxshape=(None, c, h, w),
                             dtype=np.uint8 if store_as_uint8 else frames.dtype, compression="gzip",
                             chunks=(1, c, h, w))
        attrs = {"events_to_tensor": np.bytes_("histo"), "delta_t": np.uint32(0 if mode == "n_events" else 50000),
                 "event_input_width": w * 2, "event_input_height": h * 2, "shape": [c, h, w], "mode": mode,
                 "n_events": 1000 if mode == "n_events" else 0, "max_incr_per_pixel": 5.0}
        attrs.update(extra)
        for k, v in attrs.items():
            d.attrs[k] = v
        if store_as_uint8:
            d.attrs["store_as_uint8"] = True
            d[:len(frames)] = np.uint8(np.around(255 * frames))
        else:
            d[:len(frames)] = frames
        if mode == "n_events":
            ts = f.create_dataset("last_timestamps", (100,), maxshape=(None,), dtype=np.int64, compression="gzip",
                                  chunks=(1,))
            ts[:len(frames)] = last
            ts.resize((len(frames),))
        d.resize((len(frames), c, h, w))


def metavision_load(path, start, duration, array_dim):
    """SequentialDataset._load_hdf5 + _downsample_clip, paraphrased with h5py and the INTER_AREA reference."""
    with h5py.File(path, "r") as f:
        d = f["data"]
        dt = d.attrs["delta_t"]
        frames = d[start // dt:(start + duration) // dt]
        if d.attrs.get("store_as_uint8", False):
            frames = frames.astype(np.float32) / 255
    if frames.shape[-2:] != tuple(array_dim[-2:]):
        frames = area_reference(frames, *array_dim[-2:]).astype(np.float32)
    return frames


@pytest.mark.parametrize("store_as_uint8", [False, True])
def test_reads_h5py_written_files(tmp_path, store_as_uint8):
    path = tmp_path / "mv.h5"
    frames = random_frames(12, 2, 16, 24, seed=5)
    write_metavision_like(path, frames, store_as_uint8=store_as_uint8)
    r = TensorFileReader(path)
    assert len(r) == 12 and r.store_as_uint8 == store_as_uint8 and r.get_size() == (32, 48)
    assert r.start_ts is None
    for (t0, t1, h, w) in [(0, 600000, 16, 24), (100000, 400000, 8, 12), (250000, 550000, 4, 6)]:
        got = r.read_window(t0, t1, h, w)
        np.testing.assert_allclose(got, metavision_load(path, t0, t1 - t0, (h, w)), atol=1e-6)
    r.check(events_to_tensor="histo", delta_t=50000, channels=2, height=8, width=12)


def test_reads_h5py_files_in_other_layouts(tmp_path):
    frames = random_frames(4, 2, 6, 8, seed=6, dtype=np.float64)
    for name, opts in [("shuffle", dict(compression="gzip", shuffle=True, chunks=(1, 2, 6, 8))),
                       ("multi", dict(compression="gzip", chunks=(3, 1, 6, 8))),
                       ("plain", dict(chunks=(1, 2, 6, 8))),
                       ("contiguous", dict())]:
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as f:
            d = f.create_dataset("data", data=frames, **opts)
            d.attrs["events_to_tensor"] = np.bytes_("histo")
            d.attrs["delta_t"] = np.uint32(10000)
            d.attrs["shift"] = 1  # legacy: sensor = stored size << 1
        r = TensorFileReader(path)
        assert r.dtype == np.float64 and r.get_size() == (12, 16) and r.mode == "delta_t"
        np.testing.assert_array_equal(r.read(0, 5)[:4], frames.astype(np.float32), err_msg=name)
        assert not r.read(0, 5)[4].any()


def test_reads_h5py_n_events_files(tmp_path):
    path = tmp_path / "ne.h5"
    frames = random_frames(3, 2, 4, 4, seed=7)
    write_metavision_like(path, frames, mode="n_events", last=[5, 9, 15])
    r = TensorFileReader(path)
    assert r.mode == "n_events" and r.duration() == 15
    np.testing.assert_array_equal(r.read(0, 3), frames)


# --- threads ---------------------------------------------------------------------------------------------
def test_parallel_reads_share_one_reader(tmp_path):
    path = tmp_path / "par.h5"
    frames = random_frames(64, 2, 48, 64, seed=8)
    with TensorFileWriter(path, "histo", (2, 48, 64), 10000, (48, 64)) as w:
        w.write(frames)
    r = TensorFileReader(path)
    small = area_reference(frames, 12, 16)

    def job(i):
        rng = np.random.default_rng(i)
        for _ in range(20):
            first, count = int(rng.integers(0, 64)), int(rng.integers(1, 8))
            if rng.random() < 0.5:
                got, ref = r.read(first, count), frames
            else:
                got, ref = r.read(first, count, 12, 16), small
            expect = np.zeros_like(got)
            n = min(count, 64 - first)
            expect[:n] = ref[first:first + n]
            np.testing.assert_allclose(got, expect, atol=1e-6)
        return True

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(job, range(16)))


def test_parallel_writers(tmp_path):
    def job(i):
        frames = random_frames(30, 2, 16, 16, seed=100 + i)
        path = tmp_path / f"w{i}.h5"
        with TensorFileWriter(path, "histo", (2, 16, 16), 10000, (16, 16)) as w:
            for k in range(0, 30, 3):
                w.write(frames[k:k + 3])
        np.testing.assert_array_equal(TensorFileReader(path).read(0, 30), frames)
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(job, range(8)))


# --- bad input -------------------------------------------------------------------------------------------
def test_missing_attributes_and_non_tensor_files(tmp_path):
    frames = random_frames(1, 2, 4, 4)
    for missing in ("events_to_tensor", "delta_t"):
        path = tmp_path / f"no_{missing}.h5"
        with h5py.File(path, "w") as f:
            d = f.create_dataset("data", data=frames)
            if missing != "events_to_tensor":
                d.attrs["events_to_tensor"] = np.bytes_("histo")
            if missing != "delta_t":
                d.attrs["delta_t"] = np.uint32(10)
        with pytest.raises(evloader.FormatError, match=missing) as info:
            TensorFileReader(path)
        assert path.name in str(info.value) and isinstance(info.value, ValueError)
    with pytest.raises(OSError, match="no such file"):
        TensorFileReader(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        TensorFileReader(tmp_path / "text.h5")
    with h5py.File(tmp_path / "nodata.h5", "w") as f:
        f.create_dataset("other", data=frames)
    with pytest.raises(ValueError, match="'data'"):
        TensorFileReader(tmp_path / "nodata.h5")
    path = tmp_path / "badmode.h5"
    write_metavision_like(path, frames, mode="n_events", last=[1])
    with h5py.File(path, "a") as f:
        f["data"].attrs["mode"] = "weird"
    with pytest.raises(ValueError, match="mode"):
        TensorFileReader(path)


def test_check_and_read_arguments(tmp_path):
    path = tmp_path / "chk.h5"
    with TensorFileWriter(path, "histo", (2, 180, 320), 50000, (720, 1280)) as w:
        w.write(np.zeros((2, 2, 180, 320), np.float32))
    r = TensorFileReader(path)
    r.check(events_to_tensor="histo", delta_t=50000, mode="delta_t", channels=2, height=90, width=160)
    for kwargs, pattern in [({"events_to_tensor": "diff"}, "diff"), ({"delta_t": 10000}, "10000"),
                            ({"mode": "n_events"}, "n_events"), ({"channels": 1}, "channels"),
                            ({"height": 240, "width": 427}, "power of two"),
                            ({"height": 360, "width": 640}, "larger"), ({"height": 90}, "both")]:
        with pytest.raises(ValueError, match=pattern) as info:
            r.check(**kwargs)
        if "height" not in kwargs or "width" in kwargs:
            assert "chk.h5" in str(info.value)
    with pytest.raises(ValueError):
        r.read(0, 1, out=np.zeros((1, 2, 180, 320), np.float64))
    with pytest.raises(ValueError):
        r.read(-1, 1)
    with pytest.raises(ValueError, match="downscaling"):
        r.read(0, 1, 360, 640)
    with pytest.raises(ValueError):
        TensorFileWriter(tmp_path / "x.h5", "histo", (2, 4, 4), 0, (4, 4))  # delta_t 0 in delta_t mode
    with pytest.raises(ValueError):
        TensorFileWriter(tmp_path / "x.h5", "histo", (2, 4, 4), 10, (4, 4), kwargs={"k": [1, 2]})
    with TensorFileWriter(tmp_path / "y.h5", "histo", (2, 4, 4), 10, (4, 4)) as w:
        with pytest.raises(ValueError, match="shape"):
            w.write(np.zeros((1, 3, 4, 4), np.float32))


def test_corrupt_chunk_is_reported_with_the_frame(tmp_path):
    path = tmp_path / "corrupt.h5"
    frames = random_frames(3, 2, 32, 32, seed=9)
    with TensorFileWriter(path, "histo", (2, 32, 32), 10000, (32, 32)) as w:
        w.write(frames)
    with h5py.File(path, "r") as f:
        info = f["data"].id.get_chunk_info_by_coord((1, 0, 0, 0))
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + info.size // 2)
        f.write(b"\x13\x37\x00\xff\x42\x24\x99\x11")
    r = TensorFileReader(path)
    np.testing.assert_array_equal(r.read(0, 1), frames[:1])
    with pytest.raises(evloader.FormatError, match="frame 1") as err:
        r.read(0, 3)
    assert "corrupt.h5" in str(err.value)
