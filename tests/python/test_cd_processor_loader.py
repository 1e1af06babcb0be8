# SPDX-License-Identifier: Apache-2.0
"""CDProcessorDataLoader: tensors against an independent numpy model of each mode, every event seen once,
mask_keep_memory and padding, identical batches for any num_workers, area downscaling, bad input, the real
recordings, and the seed tutorial's CDProcessorDataLoader cell."""
import math
import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import evloader  # noqa: E402
from evloader import preprocessing  # noqa: E402
from evloader.data.cd_processor_dataset import CDProcessorDataLoader, CDProcessorDatasetIterator  # noqa: E402
from conftest import make_events  # noqa: E402

W, H = 160, 120
COUNT = "h10_test_count"  # a Python preprocessing that counts events per (bin, polarity, pixel)


def _count(events, out, total_tbins_delta_t, downsampling_factor=0, reset=True, **kwargs):
    if reset:
        out[...] = 0
    if len(events) == 0:
        return
    bins = out.shape[0]
    t = events["t"].astype(np.int64)
    b = np.clip(np.where(t <= 0, 0, t * bins // total_tbins_delta_t), 0, bins - 1)
    np.add.at(out, (b, events["p"].astype(np.int64), events["y"].astype(np.int64), events["x"].astype(np.int64)), 1)


if COUNT not in preprocessing.get_preprocess_function_names():
    preprocessing.register_new_preprocessing(COUNT, 2, _count, preprocessing.viz_histo, kwargs={})


def _write(path, events, width=W, height=H):
    path = str(path)
    if path.endswith(".dat"):
        with evloader.DatWriter(path, width, height) as w:
            w.write(events)
    else:
        with evloader.RawWriter(path, "evt2" if "evt2" in os.path.basename(path) else "evt3", width, height) as w:
            w.write(events)
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Four small recordings (EVT3, EVT2, DAT), one with a silent stretch, starting at various times."""
    folder = tmp_path_factory.mktemp("streams")
    out = []
    for i, (name, n, t0) in enumerate([("a_evt3.raw", 30_000, 1_234_567), ("b_td.dat", 8_000, 40_000),
                                       ("c_evt2.raw", 20_000, 9_000_001), ("d_evt3.raw", 12_000, 0)]):
        ev = make_events(n, width=W, height=H, seed=10 + i, t0=t0, max_gap=30)
        if i == 1:
            ev["t"][ev["t"] >= 70_000] += 45_000
        out.append((_write(folder / name, ev), ev))
    return out


# --- an independent model of the three modes --------------------------------------------------------
def _bins(ev, mode, delta_t, n_events, num_tbins, max_duration=None):
    """[(first, last, begin, end)] event-index ranges and spans of each time bin of a recording."""
    t = ev["t"].astype(np.int64)
    if mode == "delta_t":
        window = delta_t * num_tbins
        begin = t[0] - t[0] % window
        end = t[-1] + 1 if max_duration is None else min(t[-1] + 1, begin + max_duration)
        out = []
        for s in range(begin, end, delta_t):
            i, j = np.searchsorted(t, [s, min(s + delta_t, end)])
            out.append((i, j, s, s + delta_t))
        while len(out) % num_tbins:  # the last tensor keeps its length
            s = out[-1][3]
            out.append((out[-1][1], out[-1][1], s, s + delta_t))
        return out
    if mode == "n_events":
        end = t[-1] + 1 if max_duration is None else min(t[-1] + 1, t[0] + max_duration)
        total = int(np.searchsorted(t, end))
        return [(i, min(total, i + n_events), t[i], t[min(total, i + n_events) - 1] + 1)
                for i in range(0, total, n_events)]
    begin = t[0] - t[0] % delta_t
    end = t[-1] + 1 if max_duration is None else min(t[-1] + 1, begin + max_duration)
    out, cursor, i = [], begin, 0
    while cursor < end and i < len(t):
        limit = cursor + min(delta_t, end - cursor)
        j = min(i + n_events, int(np.searchsorted(t, limit, side="left")))
        j = max(j, i)
        if j - i == n_events:
            out.append((i, j, cursor, t[j - 1] + 1))
            cursor = t[j - 1]
        else:
            out.append((i, j, cursor, limit))
            cursor = limit
        i = j
    return out


def _tensors(ev, mode, delta_t, n_events, num_tbins, max_duration=None):
    """[(start, duration, counts [T, 2, H, W])] of a recording."""
    bins = _bins(ev, mode, delta_t, n_events, num_tbins, max_duration)
    out = []
    for k in range(0, len(bins), num_tbins):
        group = bins[k:k + num_tbins]
        counts = np.zeros((num_tbins, 2, H, W), np.float32)
        for j, (i0, i1, _, _) in enumerate(group):
            e = ev[i0:i1]
            np.add.at(counts, (j, e["p"].astype(int), e["y"].astype(int), e["x"].astype(int)), 1)
        start = group[0][2]
        end = max(g[3] for g in group if g[1] > g[0] or mode != "n_events")
        out.append((int(start), int(end - start), counts))
    return out


def _epoch(loader):
    """[(batch dict with inputs copied)] of one epoch."""
    out = []
    for batch in loader:
        batch = dict(batch)
        batch["inputs"] = batch["inputs"].clone()
        out.append(batch)
    return out


def _check_against_model(recordings, loader, mode, delta_t, n_events, num_tbins, max_duration=None, kernel=None):
    expected = {path: _tensors(ev, mode, delta_t, n_events, num_tbins, max_duration) for path, ev in recordings}
    seen = {path: 0 for path, _ in recordings}
    batches = _epoch(loader)
    assert len(batches) == len(loader)
    for batch in batches:
        assert batch["inputs"].dtype == torch.float32
        assert batch["mask_keep_memory"].shape == (loader.batch_size, 1, 1, 1)
        assert batch["frame_is_labeled"].shape == (num_tbins, loader.batch_size)
        assert len(batch["labels"]) == num_tbins and all(len(row) == loader.batch_size for row in batch["labels"])
        real = 0
        for i, (meta, start, duration) in enumerate(batch["video_infos"]):
            keep = float(batch["mask_keep_memory"][i])
            got = batch["inputs"][:, i].numpy()
            if meta.path == "":  # padding, as metavision's stream loader: zeros, memory reset
                assert keep == 0 and not got.any()
                continue
            real += 1
            k = seen[meta.path]
            want_start, want_duration, counts = expected[meta.path][k]
            assert (start, duration) == (want_start, want_duration), (meta.path, k)
            assert keep == (1.0 if k else 0.0)
            want = counts if kernel is None else kernel(counts)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"{meta.path} tensor {k}")
            seen[meta.path] = k + 1
        assert real > 0, "a batch of padding only"
    assert seen == {path: len(x) for path, x in expected.items()}
    return batches


@pytest.mark.parametrize("mode,delta_t,n_events,max_duration", [
    ("delta_t", 4000, 0, None), ("delta_t", 3000, 0, 50_000),
    ("n_events", 0, 900, None), ("n_events", 0, 700, 30_000),
    ("mixed", 2500, 250, None), ("mixed", 1000, 120, 40_000),
])
def test_every_event_once_in_every_mode(recordings, mode, delta_t, n_events, max_duration):
    files = [p for p, _ in recordings]
    loader = CDProcessorDataLoader(files, mode, delta_t, n_events, max_duration, COUNT, 3, 2, num_workers=2)
    batches = _check_against_model(recordings, loader, mode, delta_t, n_events, 3, max_duration)
    total = sum(float(b["inputs"].sum()) for b in batches)
    in_range = sum(int(sum(x[2].sum() for x in _tensors(ev, mode, delta_t, n_events, 3, max_duration)))
                   for _, ev in recordings)
    assert total == in_range == loader.events_read
    if max_duration is None:
        assert total == sum(len(ev) for _, ev in recordings)  # histo sums == event counts


def test_native_kernels_match_the_model(recordings):
    """histo (saturating increments of 1/max_incr_per_pixel) and histo_quantized (uint8 counters clamped at 15)
    in C++, n_events mode, against the counts of the model."""
    files = [p for p, _ in recordings]
    loader = CDProcessorDataLoader(files, "n_events", 0, 2000, None, "histo", 2, 3, num_workers=2)
    _check_against_model(recordings, loader, "n_events", 0, 2000, 2, kernel=lambda c: np.minimum(1, c * np.float32(0.2)))
    loader = CDProcessorDataLoader(files, "mixed", 2000, 300, None, "histo_quantized", 2, 3, num_workers=1)
    _check_against_model(recordings, loader, "mixed", 2000, 300, 2, kernel=lambda c: np.minimum(c, 15))
    loader = CDProcessorDataLoader(files, "delta_t", 5000, 0, None, "histo_quantized", 4, 2, num_workers=0)
    batches = _check_against_model(recordings, loader, "delta_t", 5000, 0, 4, kernel=lambda c: np.minimum(c, 15))
    assert sum(float(b["inputs"].sum()) for b in batches) == sum(len(ev) for _, ev in recordings)


def test_slots_chain_recordings_and_pad_with_memory_resets(recordings):
    files = [p for p, _ in recordings]
    loader = CDProcessorDataLoader(files, "delta_t", 4000, 0, None, "histo", 2, 2, num_workers=2)
    batches = _epoch(loader)
    per_slot = [[b["video_infos"][s][0].path for b in batches] for s in range(2)]
    # Slot 0 starts with file 0, slot 1 with file 1; the slot that runs out first takes file 2, then file 3.
    assert per_slot[0][0] == files[0] and per_slot[1][0] == files[1]
    order = []
    for b in range(len(batches)):
        for s in range(2):
            p = per_slot[s][b]
            if p and p not in order:
                order.append(p)
    assert order == files
    # Each slot reads its recordings in time order; the first tensor of each resets the memory.
    for s in range(2):
        previous = None
        for batch in batches:
            meta, start, duration = batch["video_infos"][s]
            keep = float(batch["mask_keep_memory"][s])
            if meta.path == "":
                assert keep == 0 and (start, duration) == (0, 4000)  # metavision's fill value
                assert meta.padding is False  # metavision's fill value is not flagged (quirk kept)
                assert all(batch["labels"][t][s].numel() == 0 for t in range(2))
            elif previous is None or previous[0] != meta.path:
                assert keep == 0
            else:
                assert keep == 1 and start == previous[1] + duration
            previous = (meta.path, start)
    # The last batch still holds data; padding appears only in the slot that ran out.
    assert any(info[0].path for info in batches[-1]["video_infos"])


def test_data_padding_restarts_recordings_instead_of_zeros(recordings):
    files = [p for p, _ in recordings]
    zeros = CDProcessorDataLoader(files, "delta_t", 4000, 0, None, COUNT, 2, 2, num_workers=1)
    data = CDProcessorDataLoader(files, "delta_t", 4000, 0, None, COUNT, 2, 2, num_workers=1, padding_mode="data")
    z, d = _epoch(zeros), _epoch(data)
    assert len(d) <= len(z)
    assert all(info[0].path for b in d for info in b["video_infos"])
    # Every tensor of every recording is delivered at least once.
    firsts = {p: set() for p in files}
    for b in d:
        for meta, start, _ in b["video_infos"]:
            firsts[meta.path].add(start)
    for path, ev in recordings:
        assert len(firsts[path]) == len(_tensors(ev, "delta_t", 4000, 0, 2))


@pytest.mark.parametrize("mode", ["delta_t", "n_events", "mixed"])
def test_batches_identical_for_any_num_workers(recordings, mode):
    files = [p for p, _ in recordings]
    runs = []
    for workers in (0, 1, 3):
        loader = CDProcessorDataLoader(files, mode, 3000, 500, None, "event_cube", 2, 3, num_workers=workers,
                                       height=60, width=80)
        runs.append(_epoch(loader))
    for other in runs[1:]:
        assert len(other) == len(runs[0])
        for a, b in zip(runs[0], other):
            assert torch.equal(a["inputs"], b["inputs"])
            assert torch.equal(a["mask_keep_memory"], b["mask_keep_memory"])
            assert [(m.path, s, d) for m, s, d in a["video_infos"]] == [(m.path, s, d) for m, s, d in b["video_infos"]]


def test_smaller_height_width_is_area_downsampling(recordings):
    cv2 = pytest.importorskip("cv2")
    files = [p for p, _ in recordings]
    full = _epoch(CDProcessorDataLoader(files, "mixed", 3000, 400, None, "histo", 2, 2, num_workers=2))
    for h, w in [(60, 80), (50, 70)]:
        small = _epoch(CDProcessorDataLoader(files, "mixed", 3000, 400, None, "histo", 2, 2, num_workers=2,
                                             height=h, width=w))
        assert len(small) == len(full)
        for a, b in zip(full, small):
            assert b["inputs"].shape == (2, 2, 2, h, w)
            planes = a["inputs"].numpy().reshape(-1, H, W)
            want = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA) for p in planes])
            np.testing.assert_allclose(b["inputs"].numpy().reshape(-1, h, w), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(evloader.ConfigError, match="smaller than the requested"):
        CDProcessorDataLoader(files, "delta_t", 3000, 0, None, "histo", 2, 2, height=2 * H, width=W)


def _corrupt(folder):
    bad = folder / "corrupt_td.dat"
    bad.write_bytes(b"% Height 120\n% Width 160\n% end\n" + bytes([99, 8]) + bytes(64))
    return str(bad)


def test_corrupt_recording_in_the_middle_raises_naming_it_or_is_skipped(recordings, tmp_path):
    files = [p for p, _ in recordings]
    bad = _corrupt(tmp_path)
    with_bad = files[:2] + [bad] + files[2:]
    with pytest.raises(evloader.FormatError, match="corrupt_td.dat"):
        CDProcessorDataLoader(with_bad, "delta_t", 4000, 0, None, COUNT, 2, 2)
    with pytest.raises(OSError, match="missing.raw"):
        CDProcessorDataLoader(files + [str(tmp_path / "missing.raw")], "delta_t", 4000, 0, None, COUNT, 2, 2)
    with pytest.warns(RuntimeWarning, match="corrupt_td.dat"):
        skipping = CDProcessorDataLoader(with_bad, "delta_t", 4000, 0, None, COUNT, 2, 2, on_error="skip")
    clean = CDProcessorDataLoader(files, "delta_t", 4000, 0, None, COUNT, 2, 2)
    assert skipping.dataset.stream_list == files
    a, b = _epoch(skipping), _epoch(clean)
    assert len(a) == len(b)
    for x, y in zip(a, b):  # the other streams are undisturbed
        assert torch.equal(x["inputs"], y["inputs"])


def test_recording_failing_mid_epoch(recordings, tmp_path):
    """A recording that breaks after the loader was built (here: truncated to its header) fails at the batch
    that reads it, naming it; with on_error='skip' it becomes padding and the others go on."""
    files = []
    for path, ev in recordings:
        copy = tmp_path / os.path.basename(path)
        copy.write_bytes(open(path, "rb").read())
        files.append(str(copy))
    loader = CDProcessorDataLoader(files, "delta_t", 4000, 0, None, COUNT, 2, 2, num_workers=2)
    skipping = CDProcessorDataLoader(files, "delta_t", 4000, 0, None, COUNT, 2, 2, num_workers=2, on_error="skip")
    clean = _epoch(loader)
    saved = open(files[2], "rb").read()
    os.remove(files[2])  # c_evt2.raw: read from batch > 0 on
    with pytest.raises(OSError, match="c_evt2.raw"):
        _epoch(loader)
    with open(files[2], "wb") as f:  # back: the same loader reads a whole epoch again
        f.write(saved)
    again = _epoch(loader)
    assert len(again) == len(clean)
    assert all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(again, clean))
    os.remove(files[2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skipped = _epoch(skipping)
    assert any("c_evt2.raw" in str(w.message) for w in caught)
    assert len(skipped) == len(clean)
    for x, y in zip(skipped, clean):
        for s in range(2):
            if y["video_infos"][s][0].path == files[2]:
                assert x["video_infos"][s][0].path == "" and not x["inputs"][:, s].any()
            else:
                assert torch.equal(x["inputs"][:, s], y["inputs"][:, s])
    loader.close()


def test_bad_arguments(recordings):
    files = [p for p, _ in recordings]
    with pytest.raises(ValueError, match="empty"):
        CDProcessorDataLoader([], "delta_t", 1000, 0, None, "histo", 2, 1)
    with pytest.raises(ValueError, match="mode"):
        CDProcessorDataLoader(files, "frames", 1000, 0, None, "histo", 2, 1)
    with pytest.raises(ValueError, match="padding_mode"):
        CDProcessorDataLoader(files, "delta_t", 1000, 0, None, "histo", 2, 1, padding_mode="none")
    with pytest.raises(ValueError, match="larger than the number of files"):
        CDProcessorDataLoader(files, "delta_t", 1000, 0, None, "histo", 2, 5)
    with pytest.raises(ValueError, match="n_events"):
        CDProcessorDataLoader(files, "n_events", 1000, 0, None, "histo", 2, 1)
    with pytest.raises(ValueError, match="delta_t"):
        CDProcessorDataLoader(files, "mixed", 0, 10, None, "histo", 2, 1)
    with pytest.raises(ValueError):
        CDProcessorDataLoader(files, "delta_t", 1000, 0, None, "no_such_kernel", 2, 1)


def test_labels_hook_and_no_global_side_effects(recordings):
    import torch.multiprocessing as mp

    strategy = mp.get_sharing_strategy()
    files = [p for p, _ in recordings]
    calls = []

    def load_labels(metadata, start, duration, tensor):
        calls.append((metadata.path, start, duration, float(tensor.sum())))
        assert tensor.shape == (3, 2, H, W)
        return [torch.full((1,), float(t)) for t in range(3)], np.array([True, False, True])

    loader = CDProcessorDataLoader(files, "n_events", 0, 800, None, COUNT, 3, 2, num_workers=2,
                                   load_labels=load_labels)
    batches = _epoch(loader)
    assert len(calls) == sum(1 for b in batches for m, _, _ in b["video_infos"] if m.path)
    for b in batches:
        for s, (meta, start, duration) in enumerate(b["video_infos"]):
            if not meta.path:
                assert not b["frame_is_labeled"][:, s].any()
                continue
            assert meta.delta_t == math.ceil(duration / 3)  # n_events mode: as metavision's iterator
            assert b["frame_is_labeled"][:, s].tolist() == [True, False, True]
            assert [float(b["labels"][t][s][0]) for t in range(3)] == [0.0, 1.0, 2.0]
            assert (meta.path, start, duration, float(b["inputs"][:, s].sum())) in calls

    def broken(metadata, start, duration, tensor):
        raise KeyError("no boxes")

    loader = CDProcessorDataLoader(files, "delta_t", 4000, 0, None, "histo", 3, 2, load_labels=broken)
    with pytest.raises(KeyError, match="(a_evt3.raw|b_td.dat)"):
        _epoch(loader)
    assert mp.get_sharing_strategy() == strategy


def test_dataset_iterator_and_shuffle(recordings):
    path, ev = recordings[0]
    it = CDProcessorDatasetIterator(path, H, W, None, "n_events", 1000, 0, 2, COUNT)
    items = list(it)
    want = _tensors(ev, "n_events", 0, 1000, 2)
    assert len(items) == len(want) == len(it)
    for k, ((tensor, labels, keep, mask, (meta, start, duration)), (s, d, counts)) in enumerate(zip(items, want)):
        assert tensor.shape == (2, 2, H, W) and keep == (1.0 if k else 0.0)
        assert (start, duration) == (s, d) and meta.path == path
        np.testing.assert_array_equal(tensor.numpy(), counts)
    files = [p for p, _ in recordings]
    loader = CDProcessorDataLoader(files, "delta_t", 4000, 0, None, "histo", 2, 2, seed=3)
    loader.dataset.shuffle(11)
    first = {b["video_infos"][s][0].path for b in _epoch(loader)[:1] for s in range(2)}
    order = loader.dataset.order
    assert sorted(order) == [0, 1, 2, 3]
    assert first == {files[order[0]], files[order[1]]}


# --- real recordings ----------------------------------------------------------------------------------
REAL = {"evt3_gen41_expelliarmus.raw": (219596, 11718656, 1280, 720), "evt2_gen3_faery.raw": (521252, 913716224, 640, 480),
        "evt2_gen3_faery_cd.dat": (521252, 913716224, 640, 480), "evt2_gen3_faery.hdf5": (521252, 913716224, 640, 480),
        "dvxplorer_sample.aedat4": (111954, 1605537493718345, 320, 240)}


@pytest.mark.parametrize("mode", ["delta_t", "n_events", "mixed"])
def test_real_recordings_every_event_once(real_dir, mode):
    files = [str(real_dir / name) for name in REAL]
    loader = CDProcessorDataLoader(files, mode, 5000, 30_000, None, COUNT, 4, 3, num_workers=2, height=120,
                                   width=160)
    assert loader.height == 120
    total = 0.0
    firsts = {}
    for batch in loader:
        total += float(batch["inputs"].double().sum())
        for s, (meta, start, duration) in enumerate(batch["video_infos"]):
            if meta.path and float(batch["mask_keep_memory"][s]) == 0:
                firsts[os.path.basename(meta.path)] = start
    counts = sum(v[0] for v in REAL.values())
    assert loader.events_read == counts
    # Area means over sensor pixels: the sum of a frame is its count divided by the area factor.
    scaled = sum(v[0] * 120 * 160 / (v[2] * v[3]) for v in REAL.values())
    assert total == pytest.approx(scaled, rel=1e-4)
    for name, (_, first_t, _, _) in REAL.items():
        if mode == "n_events":
            assert firsts[name] == first_t  # a tensor starts at its first event
        elif mode == "delta_t":
            assert firsts[name] == first_t - first_t % 20_000
        else:
            assert firsts[name] == first_t - first_t % 5000


def test_real_recording_sizes_default_to_the_first_sensor(real_dir):
    files = [str(real_dir / "evt2_gen3_faery.raw"), str(real_dir / "evt3_gen41_expelliarmus.raw")]
    with pytest.raises(evloader.ConfigError, match="evt2_gen3_faery.raw.*smaller"):
        CDProcessorDataLoader(files[::-1], "delta_t", 10_000, 0, None, "histo", 2, 1)
    loader = CDProcessorDataLoader(files, "delta_t", 10_000, 0, None, "histo", 2, 2)
    assert (loader.height, loader.width) == (480, 640)
    batch = next(iter(loader))
    assert batch["inputs"].shape == (2, 2, 2, 480, 640)
    loader.close()


# --- the seed tutorial's CDProcessorDataLoader cell ------------------------------------------------------------
def test_tutorial_cd_processor_dataloader_cell(tmp_path, monkeypatch):
    """The cell as written (compat imports; get_sample finds local files through EVLOADER_SAMPLES_DIR), with the
    window display replaced by frames written to files."""
    cv2 = pytest.importorskip("cv2")
    samples = tmp_path / "samples"
    samples.mkdir()
    for i, name in enumerate(["driving_sample.raw", "hand_spinner.raw", "spinner.raw", "80_balls.raw"]):
        events = make_events(60_000 + 25_000 * i, width=640, height=480, seed=i, max_gap=6)
        _write(samples / name, events, 640, 480)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("EVLOADER_SAMPLES_DIR", str(samples))
    monkeypatch.setenv("DOC_DISPLAY", "OFF")

    from evloader.compat.metavision_ml.data.cd_processor_dataset import CDProcessorDataLoader
    from evloader.compat.metavision_core.utils import get_sample

    # we grab a folder of .raw files
    # if the file doesn't exist, it will be downloaded from Prophesee's public sample server
    files = ["driving_sample.raw", "hand_spinner.raw", "spinner.raw", "80_balls.raw"]

    for file in files:
        get_sample(file)
        assert os.path.isfile(file)

    dataloader = CDProcessorDataLoader(
        files,
        mode='n_events',
        delta_t=0,
        n_events=10000,
        max_duration=10000000,
        preprocess_function_name="diff",
        height=240,
        width=320,
        num_tbins=5,
        batch_size=4,
        num_workers=2,
        load_labels=None,
        padding_mode='zeros')

    from evloader.compat.metavision_ml.data.sequential_dataset_common import show_dataloader

    show = show_dataloader(
        dataloader,
        dataloader.height,
        dataloader.width,
        dataloader.batch_size,
        dataloader.get_vis_func(),
        None)

    written = 0
    for frame in show:  # DOC_DISPLAY=OFF: frames to files instead of a window
        assert frame.shape == (2 * 240, 2 * 320, 3) and frame.dtype == np.uint8
        cv2.imwrite(str(tmp_path / f"stream_{written:03d}.png"), frame[..., ::-1])
        written += 1
    assert written == len(dataloader) * 5
    assert len(list(tmp_path.glob("stream_*.png"))) == written
    # The five-argument form of 4.2.1 and the loader's own show() give the same frames.
    five = show_dataloader(dataloader, dataloader.height, dataloader.width, dataloader.get_vis_func(), None)
    first = next(iter(five)).copy()
    assert np.array_equal(first, next(iter(dataloader.show())))


# --- precomputed tensor files ------------------------------------------------------------------------------
def test_tensor_files_stream_every_frame(recordings, tmp_path):
    tensor_file = pytest.importorskip("evloader.tensor_file")
    try:
        tensor_file._require_hdf5()
    except Exception:
        pytest.skip("evloader built without HDF5")
    rng = np.random.default_rng(3)
    stored = {}
    for name, n in [("p0.h5", 7), ("p1.h5", 4)]:
        frames = (rng.random((n, 2, H, W)) < 0.05).astype(np.float32) * 0.2
        path = str(tmp_path / name)
        with tensor_file.TensorFileWriter(path, "histo", (2, H, W), 4000, (H, W)) as w:
            w.write(frames)
        stored[path] = frames
    files = list(stored) + [recordings[0][0]]
    loader = CDProcessorDataLoader(files, "delta_t", 4000, 0, None, "histo", 3, 2, num_workers=2, height=60,
                                   width=80)
    assert [p.items for p in loader.plans][:2] == [3, 2]  # 7 frames: 3 tensors, the last block kept
    seen = {p: [] for p in stored}
    for batch in _epoch(loader):
        for s, (meta, start, duration) in enumerate(batch["video_infos"]):
            if meta.path in stored:
                seen[meta.path].append((start, duration, batch["inputs"][:, s].numpy()))
    for path, frames in stored.items():
        got = seen[path]
        assert [(s, d) for s, d, _ in got] == [(k * 12000, 12000) for k in range(len(got))]
        tensors = np.concatenate([g[2] for g in got])
        padded = np.zeros((len(tensors), 2, H, W), np.float32)
        padded[:len(frames)] = frames
        want = tensor_file.area_resize(padded.reshape(-1, H, W), 60, 80).reshape(len(tensors), 2, 60, 80)
        np.testing.assert_allclose(tensors, want, rtol=0, atol=1e-7)
    with pytest.raises(evloader.ConfigError, match="p0.h5"):
        CDProcessorDataLoader(files, "delta_t", 5000, 0, None, "histo", 3, 2)
    with pytest.warns(RuntimeWarning, match="p0.h5"):
        skipping = CDProcessorDataLoader(files, "delta_t", 4000, 0, None, "diff", 3, 1, on_error="skip")
    assert skipping.dataset.stream_list == [recordings[0][0]]
