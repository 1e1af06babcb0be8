# SPDX-License-Identifier: Apache-2.0
"""evloader.preprocessing against an independent numpy implementation of the spec (metavision_ml 4.2.1,
shared/specs/metavision_behaviour §6), on random and real events; registry API, bad parameters, threads,
visualisations.

The numpy reference below (``ref_*``) is written from the spec's rules, not from the C++ code: the running
time bin of §6.2 (plus a vectorised equivalent checked against it), sequential per-pixel updates done in
"rounds" (round r applies every pixel's r-th event, so saturation and rounding happen in event order),
float64 arithmetic stored into the output dtype as numba does. Events the reference would write out of
bounds are dropped, the documented evloader choice (docs/preprocessing.md).
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import evloader
from evloader import preprocessing as pp

# ---------------------------------------------------------------------------------------------------------
# numpy reference


def ref_bins_loop(t, num_tbins, total):
    """§6.2 literally: running bin, moved to t // dt when t reaches ceil((bin + 1) * dt) and bin + 1 < T."""
    dt = float(total) / num_tbins
    ti, threshold = 0, math.ceil(dt)
    out = np.empty(len(t), np.int64)
    for i, tv in enumerate(np.asarray(t).tolist()):
        if tv >= threshold and ti + 1 < num_tbins:
            ti = int(tv // dt)
            threshold = math.ceil((ti + 1) * dt)
        out[i] = ti
    return out


def ref_bins(t, num_tbins, total):
    """Vectorised §6.2: the running maximum of max(0, t // dt), frozen once it reaches T - 1 (the bin only
    moves while it is below T - 1, and when it moves it goes to t // dt)."""
    if len(t) == 0:
        return np.zeros(0, np.int64)
    dt = float(total) / num_tbins
    c = np.floor_divide(np.asarray(t, np.float64), dt)
    m = np.maximum.accumulate(np.r_[0.0, c])  # the bin before the first event is 0
    late = m >= num_tbins - 1
    if late.any():
        first = int(np.argmax(late))
        m[first:] = m[first]
    return np.minimum(m[1:], 2.0 ** 62).astype(np.int64)


def _sequential(flat, cells, fn, *args):
    """flat[cells[i]] = fn(flat[cells[i]], args[i]) for i in order, vectorised over distinct cells."""
    if len(cells) == 0:
        return
    order = np.argsort(cells, kind="stable")
    sc = cells[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    rank = np.arange(len(sc)) - np.repeat(starts, np.diff(np.r_[starts, len(sc)]))
    by_rank = order[np.argsort(rank, kind="stable")]
    pos = 0
    for n in np.bincount(rank):
        idx = by_rank[pos:pos + n]
        pos += n
        c = cells[idx]
        flat[c] = fn(flat[c].astype(np.float64), *(a[idx] for a in args))


def _cast(values, dtype):
    """float64 -> dtype as numba stores it (round for floats, truncation for integers)."""
    return np.asarray(values, np.float64).astype(dtype)


def _fields(events):
    return (events["x"].astype(np.int64), events["y"].astype(np.int64), events["p"].astype(np.int64),
            events["t"].astype(np.int64))


def _k(max_incr_per_pixel, ds):
    return 1.0 if max_incr_per_pixel is None else 1.0 / (max_incr_per_pixel * 4 ** ds)


def _binned_cells(events, out_shape, total, ds, channels_from_p=True, full_res=False):
    """(cells, p, t, bins, valid) for the bin-based kernels on a [T, C, H, W] output."""
    num_tbins, c, h, w = out_shape
    x, y, p, t = _fields(events)
    b = ref_bins(t, num_tbins, total)
    if not full_res:
        x, y = x >> ds, y >> ds
    else:
        h, w = h << ds, w << ds
    valid = (b < num_tbins) & (x < w) & (y < h)
    ch = p if channels_from_p else np.zeros_like(p)
    if channels_from_p:
        valid &= (p == 0) | (p == 1)
    cells = ((np.minimum(b, num_tbins - 1) * c + np.where(valid, ch, 0)) * h + np.where(valid, y, 0)) * w + \
        np.where(valid, x, 0)
    return cells, p, t, b, valid


def _saturating_table(k, dtype, upper=1.0):
    """Values after n increments of k from 0: f(n+1) = dtype(min(upper, f(n) + k)) (histo with reset)."""
    vals = [0.0]
    while True:
        v = float(_cast(vals[-1] + k, dtype)) if vals[-1] + k <= upper else float(_cast(upper, dtype))
        if v == vals[-1] or len(vals) > 100000:
            break
        vals.append(v)
    return np.array(vals, dtype=np.float64)


def ref_histo(events, out, total, ds=0, reset=True, max_incr_per_pixel=5, **_):
    if reset:
        out[...] = 0
    k = _k(max_incr_per_pixel, ds)
    cells, p, t, b, valid = _binned_cells(events, out.shape, total, ds)
    cells = cells[valid]
    flat = out.reshape(-1)
    if reset:  # fast path: the value after n events is the n-th step of the saturating sequence
        table = _saturating_table(k, out.dtype)
        counts = np.bincount(cells, minlength=flat.size)
        flat[:] = _cast(table[np.minimum(counts, len(table) - 1)], out.dtype)
        return
    _sequential(flat, cells, lambda v: np.where(v + k <= 1, v + k, 1.0))


def ref_diff(events, out, total, ds=0, reset=True, max_incr_per_pixel=5, **_):
    if reset:
        out[...] = 0
    k = _k(max_incr_per_pixel, ds)
    cells, p, t, b, valid = _binned_cells(events, out.shape, total, ds, channels_from_p=False)

    def step(v, on):
        return np.where(on, np.where(v + k <= 1, v + k, 1.0), np.where(v - k >= -1, v - k, -1.0))

    _sequential(out.reshape(-1), cells[valid], step, p[valid] != 0)


def ref_timesurface(events, out, total, ds=0, reset=True, normed=True, **_):
    if reset:
        out[...] = 0
    num_tbins, c, h, w = out.shape
    view = out.reshape(num_tbins * c // 2, 2, h, w)
    cells, p, t, b, valid = _binned_cells(events, view.shape, total, ds)
    dt = float(total) / view.shape[0]
    value = t.astype(np.float64) - b * dt
    valid &= (value >= 0) & (value < dt)
    cells, value = cells[valid], value[valid]
    if normed:
        value = value / dt
    # the latest event of each pixel wins
    _, last_rev = np.unique(cells[::-1], return_index=True)
    last = len(cells) - 1 - last_rev
    view.reshape(-1)[cells[last]] = _cast(value[last], out.dtype)


def ref_multi_channel_timesurface(events, out, total, ds=0, reset=True, **_):
    ref_timesurface(events, out, total, ds, reset, normed=True)


def ref_event_cube(events, out, total, ds=0, reset=True, split_polarity=True, max_incr_per_pixel=5, **_):
    if reset:
        out[...] = 0
    num_tbins, c, h, w = out.shape
    npol = 2 if split_polarity else 1
    n = num_tbins * c // npol
    k = _k(max_incr_per_pixel, ds)
    x, y, p, t = _fields(events)
    x, y = x >> ds, y >> ds
    s = (t * n) / total - 0.5
    left = np.floor(s).astype(np.int64)
    wl = np.maximum(0, 1 - np.abs(left - s))
    wr = 1 - wl
    if split_polarity:
        ch = p
        ok = (p == 0) | (p == 1)
    else:
        sign = np.where(p != 0, 1.0, -1.0)
        wl, wr, ch = wl * sign, wr * sign, np.zeros_like(p)
        ok = np.ones(len(p), bool)
    ok &= (x < w) & (y < h)
    # updates in event order: left then right of each event (2 cells per event, never the same one)
    cell_l = ((left * npol + ch) * h + y) * w + x
    cell_r = (((left + 1) * npol + ch) * h + y) * w + x
    cells = np.stack([cell_l, cell_r], 1).reshape(-1)
    weights = np.stack([wl, wr], 1).reshape(-1)
    valid = np.stack([ok & (left >= 0) & (left < n), ok & (left + 1 >= 0) & (left + 1 < n)], 1).reshape(-1)
    _sequential(out.reshape(-1), cells[valid], lambda v, wt: np.maximum(-1.0, np.minimum(v + wt * k, 1.0)),
                weights[valid])


def _pool(origin, out, ds):
    s = 2 ** ds
    for r in range(s):
        for c in range(s):
            out += origin[:, :, r::s, c::s]
    out /= s * s


def ref_diff_quantized(events, out, total, ds=0, reset=True, negative_bit_length=8, normalization=False, **_):
    if reset:
        out[...] = 0
    neg = 2 ** (negative_bit_length - 1)
    pos = neg - 1
    target = out if ds == 0 else np.zeros(out.shape[:2] + (out.shape[2] << ds, out.shape[3] << ds), out.dtype)
    cells, p, t, b, valid = _binned_cells(events, out.shape, total, ds, channels_from_p=False, full_res=True)

    def step(v, on):
        return np.where(on, np.where(v + 1 <= pos, v + 1, v), np.where(v - 1 >= -neg, v - 1, v))

    _sequential(target.reshape(-1), cells[valid], step, p[valid] != 0)
    if ds:
        _pool(target, out, ds)
    if normalization:
        out /= neg


def ref_histo_quantized(events, out, total, ds=0, reset=True, negative_bit_length=4, total_bit_length=8,
                        normalization=False, **_):
    if reset:
        out[...] = 0
    clamps = np.array([2 ** negative_bit_length - 1, 2 ** (total_bit_length - negative_bit_length) - 1])
    target = out if ds == 0 else np.zeros(out.shape[:2] + (out.shape[2] << ds, out.shape[3] << ds), out.dtype)
    cells, p, t, b, valid = _binned_cells(events, out.shape, total, ds, full_res=True)
    flat = target.reshape(-1)
    if reset or ds:  # counters start at 0: saturating increments are min(count, clamp)
        counts = np.bincount(cells[valid], minlength=flat.size).reshape(target.shape)
        flat[:] = np.minimum(counts, clamps[None, :, None, None]).reshape(-1)
    else:
        _sequential(flat, cells[valid], lambda v, cl: np.where(v + 1 <= cl, v + 1, v), clamps[p[valid]])
    if ds:
        _pool(target, out, ds)
    if normalization:
        out /= clamps.max()


REFERENCE = {
    "histo": ref_histo, "diff": ref_diff, "timesurface": ref_timesurface, "event_cube": ref_event_cube,
    "multi_channel_timesurface": ref_multi_channel_timesurface, "diff_quantized": ref_diff_quantized,
    "histo_quantized": ref_histo_quantized,
}
KERNEL = {
    "histo": pp.histo, "diff": pp.diff, "timesurface": pp.timesurface, "event_cube": pp.event_cube,
    "multi_channel_timesurface": pp.multi_channel_timesurface, "diff_quantized": pp.diff_quantized,
    "histo_quantized": pp.histo_quantized,
}

# ---------------------------------------------------------------------------------------------------------
# events


def make_events(rng, n, width, height, total, num_tbins, sort=True, edges=True, beyond=0, t_range=None):
    """Random events over a full-resolution width x height, with the edge cases of the spec appended:
    t = 0, t = total - 1, every bin edge ceil(k dt) and the microsecond before, border pixels, and `beyond`
    events just outside the geometry."""
    lo, hi = t_range if t_range is not None else (0, total)
    ev = np.zeros(n, evloader.EventCD)
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    ev["t"] = rng.integers(lo, hi, n)
    parts = [ev]
    if edges:
        dt = total / num_tbins
        ts = [0, total - 1] + [math.ceil(k * dt) for k in range(1, num_tbins)] + \
             [math.ceil(k * dt) - 1 for k in range(1, num_tbins)]
        for tv in ts:
            e = np.zeros(4, evloader.EventCD)
            e["x"] = [0, width - 1, 0, width - 1]
            e["y"] = [0, 0, height - 1, height - 1]
            e["p"] = rng.integers(0, 2, 4)
            e["t"] = min(max(tv, 0), total - 1)
            parts.append(e)
    if beyond:
        e = np.zeros(beyond, evloader.EventCD)
        e["x"] = rng.integers(width, width + 8, beyond)
        e["y"] = rng.integers(0, height + 8, beyond)
        e["p"] = rng.integers(0, 2, beyond)
        e["t"] = rng.integers(0, total, beyond)
        parts.append(e)
    ev = np.concatenate(parts)
    if sort:
        ev = ev[np.argsort(ev["t"], kind="stable")]
    else:
        ev = ev[rng.permutation(len(ev))]
    return ev


# name, extra kwargs, output dtype, channels, downsampling factors
CASES = [
    ("histo", {}, np.float32, 2, (0, 1, 2)),
    ("histo", {"max_incr_per_pixel": 3}, np.float64, 2, (0, 1)),
    ("histo", {"max_incr_per_pixel": None}, np.uint8, 2, (0,)),
    ("histo", {"max_incr_per_pixel": 0.25}, np.int16, 2, (0, 1)),
    ("diff", {}, np.float32, 1, (0, 1, 2)),
    ("diff", {"max_incr_per_pixel": 1}, np.int8, 1, (0,)),
    ("diff", {"max_incr_per_pixel": 2.5}, np.float64, 1, (0, 2)),
    ("timesurface", {}, np.float32, 2, (0, 1, 2)),
    ("timesurface", {"normed": False}, np.int32, 2, (0, 1)),
    ("timesurface", {"normed": False}, np.float64, 2, (0,)),
    ("timesurface", {"normed": True}, np.int64, 2, (0,)),
    ("event_cube", {}, np.float32, 6, (0, 1, 2)),
    ("event_cube", {"max_incr_per_pixel": 255 / 4}, np.float32, 10, (0, 1)),
    ("event_cube", {"split_polarity": False}, np.float64, 3, (0, 1)),
    ("event_cube", {"max_incr_per_pixel": None}, np.float32, 4, (0,)),
    ("multi_channel_timesurface", {}, np.float32, 6, (0, 1, 2)),
    ("multi_channel_timesurface", {}, np.float64, 4, (0,)),
    ("diff_quantized", {}, np.int8, 1, (0,)),
    ("diff_quantized", {"negative_bit_length": 3}, np.int8, 1, (0,)),
    ("diff_quantized", {}, np.float32, 1, (1, 2)),
    ("diff_quantized", {"normalization": True, "negative_bit_length": 4}, np.float32, 1, (0, 1, 2)),
    ("histo_quantized", {}, np.uint8, 2, (0,)),
    ("histo_quantized", {"negative_bit_length": 2, "total_bit_length": 5}, np.uint8, 2, (0,)),
    ("histo_quantized", {}, np.float32, 2, (1, 2)),
    ("histo_quantized", {"normalization": True, "negative_bit_length": 3}, np.float64, 2, (0, 1)),
    ("histo_quantized", {"normalization": True, "negative_bit_length": 0}, np.float32, 2, (0, 2)),
]


def _compare(name, got, want):
    if np.issubdtype(got.dtype, np.floating):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


def _check(name, kwargs, dtype, channels, ds, events, num_tbins, height, width, total, reset=True, fill=0):
    got = np.full((num_tbins, channels, height, width), fill, dtype)
    want = got.copy()
    KERNEL[name](events, got, total, ds, reset, **kwargs)
    REFERENCE[name](events, want, total, ds, reset, **kwargs)
    _compare(f"{name} {kwargs} {np.dtype(dtype)} ds={ds}", got, want)
    return got


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{np.dtype(c[2]).name}-{c[3]}-{sorted(c[1])}")
@pytest.mark.parametrize("sort", [True, False], ids=["sorted", "unsorted"])
def test_kernels_match_numpy_reference_on_random_events(case, sort):
    name, kwargs, dtype, channels, dss = case
    rng = np.random.default_rng(hash((name, str(kwargs), sort)) % 2 ** 32)
    for ds in dss:
        for num_tbins in (1, 2, 3, 4, 5):
            height, width = 12, 20
            total = int(rng.choice([1000, 997, 50001, 7]))
            events = make_events(rng, 3000, width << ds, height << ds, total, num_tbins, sort=sort, beyond=20)
            out = _check(name, kwargs, dtype, channels, ds, events, num_tbins, height, width, total)
            # integer time surfaces truncate: normalised times, or times below 1 µs with a tiny window
            int_ts = name == "timesurface" and dtype in (np.int32, np.int64)
            assert np.count_nonzero(out) > 0 or (int_ts and (kwargs.get("normed", True) or total < 10))


@pytest.mark.parametrize("case", [c for c in CASES if c[2] in (np.float32, np.float64)],
                         ids=lambda c: f"{c[0]}-{np.dtype(c[2]).name}-{c[3]}-{sorted(c[1])}")
def test_reset_false_accumulates_like_the_reference(case):
    name, kwargs, dtype, channels, dss = case
    rng = np.random.default_rng(5)
    for ds in dss:
        events = make_events(rng, 2000, 16 << ds, 10 << ds, 3000, 3)
        fill = 0.25 if "quantized" not in name else 1.0
        _check(name, kwargs, dtype, channels, ds, events, 3, 10, 16, 3000, reset=False, fill=fill)


@pytest.mark.parametrize("name", sorted(KERNEL))
def test_out_of_range_events_are_dropped(name):
    """Late events (t >= total: kept only when the running bin is already T-1), negative t, coordinates
    beyond the geometry, p outside {0, 1}: the result equals the reference with such events dropped, and
    nothing outside the output is touched."""
    case = next(c for c in CASES if c[0] == name)
    _, kwargs, dtype, channels, _ = case
    rng = np.random.default_rng(11)
    for ds in (0, 1):
        for trial in range(6):
            total, num_tbins = 1000, 4
            events = make_events(rng, 500, 16 << ds, 8 << ds, total, num_tbins, sort=trial % 2 == 0, beyond=30,
                                 t_range=(-400, 2600))
            events["p"][::37] = 2
            dtype_ds = np.float32 if ("quantized" in name and ds) else dtype
            big = np.full((num_tbins + 2, channels, 8, 16), 7, dtype_ds)  # guard bins around the output
            out = big[1:-1]
            assert out.flags.c_contiguous
            want = np.zeros_like(out)
            KERNEL[name](events, out, total, ds, **kwargs)
            REFERENCE[name](events, want, total, ds, **kwargs)
            _compare(name, out, want)
            assert (big[0] == 7).all() and (big[-1] == 7).all()


def test_vectorised_bins_equal_the_literal_rule():
    rng = np.random.default_rng(3)
    for trial in range(300):
        num_tbins = int(rng.integers(1, 8))
        total = int(rng.choice([1, 3, 7, 10, 97, 1000, 50000, 123457]))
        t = rng.integers(-total, 2 * total + 2, int(rng.integers(0, 60)))
        if trial % 3:
            t = np.sort(t)
        np.testing.assert_array_equal(ref_bins(t, num_tbins, total), ref_bins_loop(t, num_tbins, total))
    # t // dt is Python's floor division: 1 // 0.1 == 9 (total 1, T 10 puts t 1 in bin 9, not 10).
    assert ref_bins_loop(np.array([1]), 10, 1)[0] == 9


def test_bin_rule_examples():
    out = np.zeros((3, 2, 1, 4), np.float32)
    ev = np.zeros(4, evloader.EventCD)
    ev["x"] = [0, 1, 2, 3]
    ev["p"] = 1
    ev["t"] = [3, 4, 6, 7]  # total 10, T 3: thresholds ceil(10/3) = 4 and ceil(20/3) = 7
    pp.histo(ev, out, 10, max_incr_per_pixel=1)
    assert out[0, 1, 0, 0] == 1 and out[1, 1, 0, 1] == 1 and out[1, 1, 0, 2] == 1 and out[2, 1, 0, 3] == 1
    # unsorted: once in bin 2, an earlier t stays in bin 2
    ev["t"] = [8, 1, 2, 9]
    pp.histo(ev, out, 10, max_incr_per_pixel=1)
    assert out[2, 1, 0].tolist() == [1, 1, 1, 1]


@pytest.fixture(scope="module")
def real_events(real_dir):
    d = real_dir
    out = {}
    for fname in ("evt3_gen41_expelliarmus.raw", "evt2_gen3_faery.raw"):
        path = d / fname
        if path.exists():
            reader = evloader.open_reader(str(path))
            ev = reader.load_all()
            ev["t"] -= ev["t"][0]
            out[fname] = (ev, reader.geometry)
    if not out:
        pytest.skip("real recordings not found")
    return out


@pytest.mark.parametrize("case", [c for c in CASES if not c[1] or c[0] == "event_cube"],
                         ids=lambda c: f"{c[0]}-{np.dtype(c[2]).name}-{c[3]}-{sorted(c[1])}")
def test_kernels_match_numpy_reference_on_real_recordings(real_events, case):
    name, kwargs, dtype, channels, dss = case
    for fname, (events, (width, height)) in real_events.items():
        total = int(events["t"][-1]) + 1
        for ds in dss:
            for num_tbins in ((1, 5) if ds == 0 else (3,)):
                got = _check(name, kwargs, dtype, channels, ds, events, num_tbins, height >> ds, width >> ds, total)
                assert np.count_nonzero(got) > 1000, (fname, name)
        # a window shorter than the recording: the later events are dropped (histo-style) or lose weight
        _check(name, kwargs, dtype, channels, dss[-1], events, 3, height >> dss[-1], width >> dss[-1], total // 2)


def test_threads_give_the_serial_results():
    rng = np.random.default_rng(9)
    events = make_events(rng, 200000, 640, 480, 50000, 5)
    jobs = [("histo", np.float32, 2, {}), ("event_cube", np.float32, 6, {}), ("timesurface", np.float32, 2, {}),
            ("diff_quantized", np.float32, 1, {"normalization": True}), ("histo_quantized", np.uint8, 2, {})]

    def compute(name, dtype, c, kw, ds):
        out = np.zeros((5, c, 480 >> ds, 640 >> ds), dtype)
        KERNEL[name](events, out, 50000, ds, **kw)
        return out

    expected = {(j[0], ds): compute(*j, ds) for j in jobs for ds in (0, 1) if not (j[0] == "histo_quantized" and ds)}
    errors = []

    def worker(seed):
        order = list(expected)
        np.random.default_rng(seed).shuffle(order)
        for name, ds in order * 2:
            j = next(j for j in jobs if j[0] == name)
            got = compute(*j, ds)
            if not np.array_equal(got, expected[(name, ds)]):
                errors.append((name, ds))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


def test_kernels_release_the_gil():
    # While one thread is inside a long kernel call, this thread keeps running Python code.
    rng = np.random.default_rng(2)
    events = make_events(rng, 3_000_000, 256, 256, 10_000_000, 5, edges=False)
    out = np.zeros((5, 6, 256, 256), np.float32)
    done = threading.Event()

    def worker():
        pp.event_cube(events, out, 10_000_000)
        done.set()

    t0 = time.perf_counter()
    pp.event_cube(events, out, 10_000_000)
    solo = time.perf_counter() - t0
    th = threading.Thread(target=worker)
    last = time.perf_counter()
    longest_stall = 0.0
    th.start()
    while not done.is_set():
        now = time.perf_counter()
        longest_stall = max(longest_stall, now - last)
        last = now
    th.join()
    # holding the GIL would stall this loop for the whole call
    assert longest_stall < solo / 2, (longest_stall, solo)


def test_writes_in_place_without_copies():
    ev = np.zeros(3, evloader.EventCD)
    ev["x"], ev["y"], ev["p"], ev["t"] = [1, 2, 3], [0, 1, 2], [1, 0, 1], [0, 10, 20]
    out = np.zeros((2, 2, 4, 4), np.float32)
    ptr = out.__array_interface__["data"][0]
    pp.histo(ev, out, 40)
    assert out.__array_interface__["data"][0] == ptr
    assert out.sum() == pytest.approx(0.6)
    # a view into a larger array is written through
    big = np.zeros((4, 2, 4, 4), np.float32)
    pp.histo(ev, big[1:3], 40)
    np.testing.assert_array_equal(big[1:3], out)
    # a large output (zeroed with streaming stores) at an address that is not 16-byte aligned, guarded
    guard = np.full(5 * 6 * 720 * 1280 + 3, 7, np.float32)
    cube = guard[1:-2].reshape(5, 6, 720, 1280)
    cube_events = np.zeros(1, evloader.EventCD)
    cube_events["t"] = 10
    pp.event_cube(cube_events, cube, 100)
    assert guard[0] == 7 and (guard[-2:] == 7).all() and np.count_nonzero(cube) == 1
    # events given with another field layout are converted
    other = np.zeros(3, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i2")])
    for f in "txyp":
        other[f] = ev[f]
    out2 = np.zeros_like(out)
    pp.histo(other, out2, 40)
    np.testing.assert_array_equal(out2, out)


BAD_CALLS = [
    ("histo", np.zeros((1, 3, 4, 4), np.float32), {}, {}),                          # channels
    ("diff", np.zeros((1, 2, 4, 4), np.float32), {}, {}),
    ("timesurface", np.zeros((1, 1, 4, 4), np.float32), {}, {}),
    ("multi_channel_timesurface", np.zeros((1, 5, 4, 4), np.float32), {}, {}),      # odd C
    ("event_cube", np.zeros((2, 3, 4, 4), np.float32), {}, {}),                     # odd C, split
    ("diff", np.zeros((1, 1, 4, 4), np.uint8), {}, {}),                             # dtypes
    ("event_cube", np.zeros((1, 6, 4, 4), np.int32), {}, {}),
    ("timesurface", np.zeros((1, 2, 4, 4), np.int16), {}, {}),
    ("multi_channel_timesurface", np.zeros((1, 6, 4, 4), np.int64), {}, {}),
    ("histo", np.zeros((1, 2, 4, 4), np.float16), {}, {}),
    ("histo", np.zeros((1, 2, 4, 4), ">f4"), {}, {}),
    ("diff_quantized", np.zeros((1, 1, 4, 4), np.float32), {}, {}),                 # ds 0, no normalisation
    ("diff_quantized", np.zeros((1, 1, 4, 4), np.int8), {}, {"downsampling_factor": 1}),
    ("diff_quantized", np.zeros((1, 1, 4, 4), np.int8), {"normalization": True}, {}),
    ("histo_quantized", np.zeros((1, 2, 4, 4), np.int8), {}, {}),
    ("histo_quantized", np.zeros((1, 2, 4, 4), np.uint8), {}, {"downsampling_factor": 2}),
    ("histo", np.zeros((1, 2, 4, 4), np.float32), {"max_incr_per_pixel": 0}, {}),   # kwargs
    ("histo", np.zeros((1, 2, 4, 4), np.float32), {"max_incr_per_pixel": -2.0}, {}),
    ("diff", np.zeros((1, 1, 4, 4), np.float32), {"max_incr_per_pixel": "5"}, {}),
    ("event_cube", np.zeros((1, 6, 4, 4), np.float32), {"max_incr_per_pixel": 0.0}, {}),
    ("histo", np.zeros((1, 2, 4, 4), np.float32), {"foo": 1}, {}),
    ("diff_quantized", np.zeros((1, 1, 4, 4), np.int8), {"negative_bit_length": 1}, {}),
    ("diff_quantized", np.zeros((1, 1, 4, 4), np.int8), {"negative_bit_length": 9}, {}),
    ("histo_quantized", np.zeros((1, 2, 4, 4), np.uint8), {"negative_bit_length": -1}, {}),
    ("histo_quantized", np.zeros((1, 2, 4, 4), np.uint8), {"total_bit_length": 9}, {}),
    ("histo_quantized", np.zeros((1, 2, 4, 4), np.uint8), {"total_bit_length": 0}, {}),
    ("histo_quantized", np.zeros((1, 2, 4, 4), np.uint8), {"negative_bit_length": 5, "total_bit_length": 4}, {}),
    ("histo", np.zeros((1, 2, 4, 4), np.float32), {}, {"downsampling_factor": -1}),   # arguments
    ("histo", np.zeros((1, 2, 4, 4), np.float32), {}, {"downsampling_factor": 1.5}),
    ("histo", np.zeros((1, 2, 4, 4), np.float32), {}, {"total_tbins_delta_t": 0}),
    ("histo", np.zeros((1, 2, 4, 4), np.float32), {}, {"total_tbins_delta_t": 10.5}),
    ("event_cube", np.zeros((1, 6, 4, 4), np.float32), {}, {"total_tbins_delta_t": -3}),
    ("histo", np.zeros((2, 4, 4), np.float32), {}, {}),                              # shapes and layouts
    ("histo", np.zeros((0, 2, 4, 4), np.float32), {}, {}),
    ("histo", np.zeros((1, 2, 4, 8), np.float32)[..., ::2], {}, {}),
    ("histo", np.zeros((1, 2, 4, 4), np.float32).tolist(), {}, {}),
]


@pytest.mark.parametrize("name,out,kwargs,args", BAD_CALLS,
                         ids=[f"{i}-{c[0]}" for i, c in enumerate(BAD_CALLS)])
def test_bad_parameters_raise_value_error(name, out, kwargs, args):
    ev = np.zeros(2, evloader.EventCD)
    ev["t"] = [0, 5]
    ev["p"] = 1
    call = dict(total_tbins_delta_t=100, downsampling_factor=0)
    call.update(args)
    before = np.array(out, copy=True) if isinstance(out, np.ndarray) else None
    with pytest.raises(ValueError):
        KERNEL[name](ev, out, call["total_tbins_delta_t"], call["downsampling_factor"], **kwargs)
    if before is not None:
        np.testing.assert_array_equal(out, before)


def test_bad_inputs_raise_value_error():
    out = np.zeros((1, 2, 4, 4), np.float32)
    ro = out.copy()
    ro.flags.writeable = False
    ev = np.zeros(1, evloader.EventCD)
    with pytest.raises(ValueError):
        pp.histo(ev, ro, 100)
    with pytest.raises(ValueError):
        pp.histo(np.zeros(3, dtype=[("x", "<u2"), ("y", "<u2")]), out, 100)
    with pytest.raises(ValueError):
        pp.get_preprocess_dict("nope")
    with pytest.raises(ValueError):
        pp.get_preprocess_kwargs_keys("nope")
    with pytest.raises(ValueError):
        pp.CDProcessor(4, 4, preprocessing="nope")
    with pytest.raises(ValueError):
        pp.register_new_preprocessing("histo", 2, pp.histo, pp.viz_histo)
    with pytest.raises(ValueError):
        pp.viz_event_cube_rgb(np.zeros((4, 3, 3), np.float32))
    # empty events and a zero window are fine (CDProcessor's delta_t of an empty slice is 0)
    pp.histo(np.zeros(0, evloader.EventCD), out, 0)


# ---------------------------------------------------------------------------------------------------------
# registry and CDProcessor


def test_registry_matches_metavision():
    names = pp.get_preprocess_function_names()
    assert names[:8] == ["diff", "diff_quantized", "histo", "histo_quantized", "timesurface", "event_cube",
                         "event_cube_paper", "multi_channel_timesurface"]
    expected = {
        "diff": (1, {"preprocess_dtype": np.dtype("float32"), "max_incr_per_pixel": 5}, pp.viz_diff_binarized),
        "diff_quantized": (1, {"preprocess_dtype": np.dtype("int8"), "negative_bit_length": 8, "normalization": False},
                           pp.viz_diff_binarized),
        "histo": (2, {"preprocess_dtype": np.dtype("float32"), "max_incr_per_pixel": 5}, pp.viz_histo_binarized),
        "histo_quantized": (2, {"preprocess_dtype": np.dtype("uint8"), "negative_bit_length": 4,
                                "total_bit_length": 8, "normalization": False}, pp.viz_histo_binarized),
        "timesurface": (2, {"preprocess_dtype": np.dtype("float32")}, pp.viz_timesurface),
        "event_cube": (6, {"preprocess_dtype": np.dtype("float32"), "split_polarity": True, "max_incr_per_pixel": 5},
                       pp.viz_event_cube_rgb),
        "event_cube_paper": (10, {"preprocess_dtype": np.dtype("float32"), "split_polarity": True,
                                  "max_incr_per_pixel": 255. / 4}, pp.viz_event_cube_rgb),
        "multi_channel_timesurface": (6, {"preprocess_dtype": np.dtype("float32")}, pp.viz_multichannel_timesurface),
    }
    for name, (cin, kwargs, viz) in expected.items():
        d = pp.get_preprocess_dict(name)
        assert set(d) == {"cin", "events_to_tensor", "kwargs", "viz"}
        assert d["cin"] == cin and d["kwargs"] == kwargs and d["viz"] is viz, name
        assert list(pp.get_preprocess_kwargs_keys(name)) == list(kwargs)  # the reference's order
        assert pp.is_native_preprocessing(name)
    assert pp.get_preprocess_dict("event_cube_paper")["events_to_tensor"] is pp.event_cube
    # a deep copy: editing it leaves the registry alone
    d = pp.get_preprocess_dict("histo")
    d["kwargs"]["max_incr_per_pixel"] = 99
    assert pp.get_preprocess_dict("histo")["kwargs"]["max_incr_per_pixel"] == 5


def test_register_new_preprocessing_with_a_python_function():
    calls = []

    def ones(events, output_array, total_tbins_delta_t, downsampling_factor=0, reset=True, value=1, **kw):
        calls.append((len(events), total_tbins_delta_t, downsampling_factor, reset, kw))
        if reset:
            output_array[...] = 0
        output_array[:, :, events["y"] >> downsampling_factor, events["x"] >> downsampling_factor] += value

    try:
        pp.register_new_preprocessing("ones_test", 3, ones, pp.viz_event_cube_rgb, kwargs={"value": 2})
        assert "ones_test" in pp.get_preprocess_function_names()
        assert not pp.is_native_preprocessing("ones_test")
        assert list(pp.get_preprocess_kwargs_keys("ones_test")) == ["value"]
        proc = pp.CDProcessor(4, 5, num_tbins=2, preprocessing="ones_test")
        assert proc.get_array_dim() == (2, 3, 4, 5)
        assert proc.get_preprocess_dtype() == np.uint8  # no preprocess_dtype: the reference's uint8 default
        ev = np.zeros(2, evloader.EventCD)
        ev["x"], ev["y"], ev["t"] = [1, 4], [0, 3], [10, 30]
        arr = proc(ev)
        assert calls[-1] == (2, 20, 0, False, {})
        assert arr[0, 0, 0, 1] == 2 and arr[1, 2, 3, 4] == 2 and arr.sum() == 2 * 2 * 3 * 2
        with pytest.raises(ValueError):
            pp.register_new_preprocessing("ones_test", 3, ones, None)
    finally:
        pp.PREPROCESSING_DICT.pop("ones_test", None)


def test_cdprocessor():
    proc = pp.CDProcessor(8, 10, num_tbins=3, preprocessing="histo_quantized", downsampling_factor=1)
    assert proc.get_preprocess_dtype() == np.float32  # quantized + downsampling: float32
    assert proc.get_array_dim() == (3, 2, 8, 10)
    rng = np.random.default_rng(1)
    ev = make_events(rng, 500, 20, 16, 3000, 3)
    ev["t"] += 100
    arr = proc(ev)
    assert arr is proc.array
    want = np.zeros_like(arr)
    ref_histo_quantized(ev, want, int(ev["t"][-1] - ev["t"][0]), 1)
    _compare("cdprocessor", arr, want)
    again = proc(ev[:10], delta_t=3000)
    assert again is arr
    want[...] = 0
    ref_histo_quantized(ev[:10], want, 3000, 1)
    _compare("cdprocessor", arr, want)
    assert proc(ev[:0]).sum() == 0
    img = proc.show(arr[0])
    assert img.shape == (8, 10, 3) and img.dtype == np.uint8
    p2 = pp.CDProcessor(4, 4, preprocessing="event_cube_paper", preprocess_kwargs={"max_incr_per_pixel": 1})
    assert p2.get_array_dim() == (5, 10, 4, 4) and p2.get_preprocess_dtype() == np.float32
    assert p2.preprocess_kwargs == {"split_polarity": True, "max_incr_per_pixel": 1}


def test_import_has_no_side_effects():
    code = "import sys, evloader.preprocessing; print(int('torch' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


# ---------------------------------------------------------------------------------------------------------
# visualisations, against numpy implementations of the spec (§6.5)

BG, POS, NEG = (30, 37, 52), (216, 223, 236), (64, 126, 201)


def ref_viz_diff(im):
    im = im.astype(np.float32)
    r = 3 * im.std()
    im = np.clip(im, im.mean() - r, im.mean() + r)
    low, high = im.min(), im.max()
    with np.errstate(invalid="ignore"):
        im = np.uint8((im - low) / (high - low + 1e-6) * 255)
    if im.max() == 0:
        im[...] = 127
    return im


def ref_viz_histo(im):
    im = im.astype(np.float32)
    return ref_viz_diff(im[1] - im[0])


def _close_u8(a, b, tol=1):
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= tol


def test_viz_binarized_colours():
    im = np.zeros((2, 3, 4), np.float32)
    im[0, 0, 1] = 0.2
    im[1, 1, 2] = 0.4
    im[0, 2, 3] = im[1, 2, 3] = 1
    img = pp.viz_histo_binarized(im)
    assert img.shape == (3, 4, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == BG and tuple(img[0, 1]) == POS and tuple(img[1, 2]) == NEG and tuple(img[2, 3]) == NEG
    d = np.zeros((1, 2, 2), np.int8)
    d[0, 0, 0], d[0, 1, 1] = 2, -3
    img = pp.viz_diff_binarized(d)
    assert tuple(img[0, 0]) == POS and tuple(img[1, 1]) == NEG and tuple(img[0, 1]) == BG
    # registry viz of the quantized histogram (uint8 tensors)
    q = np.zeros((2, 2, 2), np.uint8)
    q[1, 0, 0] = 3
    assert tuple(pp.get_preprocess_dict("histo_quantized")["viz"](q)[0, 0]) == NEG


def test_viz_diff_and_histo_match_numpy():
    rng = np.random.default_rng(4)
    for _ in range(20):
        im = (rng.standard_normal((2, 30, 40)) * rng.choice([0.1, 1, 10])).astype(np.float32)
        im[:, rng.random((30, 40)) < 0.5] = 0
        _close_u8(pp.viz_diff(im[0]), ref_viz_diff(im[0]))
        _close_u8(pp.viz_histo(im), ref_viz_histo(im))
        _close_u8(pp.viz_histo_rgb(im), np.repeat(ref_viz_histo(im)[..., None], 3, 2))
        f = np.clip(im[1] - im[0], -0.5, 0.5)
        want = ((f + 0.5) / 1.0 * 255).astype(np.uint8)
        np.testing.assert_array_equal(pp.viz_histo_filtered(im), np.repeat(want[..., None], 3, 2))
    assert (pp.viz_diff(np.zeros((3, 3))) == 127).all()
    assert pp.viz_diff(np.zeros((2, 3, 3))).shape == (2, 3, 3)


def _jet_rgb():
    return pp._core.jet_colormap()


def test_viz_timesurface_jet_rgb():
    jet = _jet_rgb()
    assert jet.shape == (256, 3)
    assert tuple(jet[0]) == (0, 0, 128) and tuple(jet[255]) == (128, 0, 0)
    rng = np.random.default_rng(2)
    im = rng.random((2, 20, 30)).astype(np.float32)
    img = pp.viz_timesurface(im)
    np.testing.assert_array_equal(img, jet[(np.maximum(im[0], im[1]) * 255).astype(np.uint8)])
    np.testing.assert_array_equal(pp.viz_timesurface(im[0]), jet[(im[0] * 255).astype(np.uint8)])
    try:
        import cv2
    except ImportError:
        return
    ref = cv2.applyColorMap((np.maximum(im[0], im[1]) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    np.testing.assert_array_equal(img, ref[..., ::-1])  # OpenCV gives BGR, we give RGB
    np.testing.assert_array_equal(jet, cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None],
                                                         cv2.COLORMAP_JET)[:, 0, ::-1])


def test_viz_event_cube_and_multichannel():
    rng = np.random.default_rng(6)
    cube = np.zeros((1, 6, 24, 32), np.float32)
    ev = make_events(rng, 3000, 32, 24, 1000, 1)
    pp.event_cube(ev, cube, 1000)
    img = pp.viz_event_cube_rgb(cube[0])
    want = np.stack([ref_viz_histo(cube[0, 2 * i:2 * i + 2]) for i in range(3)], 2)
    _close_u8(img, want)
    img = pp.viz_event_cube_rgb(cube[0], split_polarity=False)
    _close_u8(img, np.stack([ref_viz_diff(cube[0, i]) for i in range(3)], 2))
    np.testing.assert_array_equal(pp.viz_multichannel_timesurface(cube[0]), pp.viz_event_cube_rgb(cube[0]))
    # blend mode: the reference's arithmetic, then uint8 as numpy casts it, then JET
    ts = np.zeros((1, 6, 24, 32), np.float32)
    pp.multi_channel_timesurface(ev, ts, 1000)
    t = ts[0]
    n = t.shape[0] // 2
    im = (1. / n) * t
    im[::2] = im[::2] + np.arange(0, n)[:, None, None]
    im[1::2] = im[::2] + np.arange(0, n)[:, None, None]
    im = np.maximum(im[::2].sum(axis=0), im[1::2].sum(axis=0))
    with np.errstate(invalid="ignore"):
        idx = (im * 255).astype(np.uint8)
    np.testing.assert_array_equal(pp.viz_multichannel_timesurface(t, blend=True), _jet_rgb()[idx])
