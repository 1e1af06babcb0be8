# SPDX-License-Identifier: Apache-2.0
"""SequentialDataLoader on event recordings (RAW and DAT) turned into tensors on the fly: every item equals the
preprocessing run directly on the events of its window, for any num_workers, with downsampling."""
import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import evloader  # noqa: E402
from evloader import preprocessing  # noqa: E402
from evloader.data import SequentialDataLoader  # noqa: E402
from evloader.data import box_processing as box_api  # noqa: E402
from conftest import make_events  # noqa: E402

WIDTH, HEIGHT, DELTA_T = 64, 48, 10_000


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("events")
    out = []
    for r, (kind, n) in enumerate([("evt3", 30_000), ("dat", 18_000), ("evt2", 40_000), ("evt3", 9_000)]):
        events = make_events(n, WIDTH, HEIGHT, seed=r, t0=1_000_000 * (r + 1) + 1234, max_gap=40)
        if kind == "dat":
            path = root / f"rec{r}_td.dat"
            with evloader.DatWriter(path, WIDTH, HEIGHT) as w:
                w.write(events)
        else:
            path = root / f"rec{r}.raw"
            with evloader.RawWriter(path, kind, WIDTH, HEIGHT) as w:
                w.write(events)
        boxes = np.zeros(12, dtype=evloader.EventBbox)
        boxes["t"] = events["t"][0] - events["t"][0] % DELTA_T + DELTA_T * np.arange(1, 13)
        boxes["x"], boxes["y"], boxes["w"], boxes["h"] = 10, 8, 20, 16
        boxes["class_id"] = r % 2
        evloader.write_boxes(str(path).replace("_td.dat", "_bbox.npy").replace(".raw", "_bbox.npy"), boxes)
        out.append((str(path), evloader.open_reader(path).load_all()))
    return out


def expected_item(events, start, duration, num_tbins, ds, name="histo"):
    window = events[(events["t"] >= start) & (events["t"] < start + duration)].copy()
    window["t"] -= start
    entry = preprocessing.get_preprocess_dict(name)
    out = np.zeros((num_tbins, entry["cin"], HEIGHT >> ds, WIDTH >> ds), np.float32)
    entry["events_to_tensor"](window, out, duration, downsampling_factor=ds, reset=True,
                              **{k: v for k, v in entry["kwargs"].items() if k != "preprocess_dtype"})
    return out


@pytest.mark.parametrize("ds", [0, 1])
def test_items_equal_the_kernel_on_each_window(recordings, ds):
    paths = [p for p, _ in recordings]
    events = dict(recordings)
    loader = SequentialDataLoader(paths, DELTA_T, "histo", [4, 2, HEIGHT >> ds, WIDTH >> ds], batch_size=2,
                                  num_workers=2, padding=True)
    assert loader.dataset.downsampling_factor == ds
    batches = 0
    for batch in loader:
        for slot, (meta, start, duration) in enumerate(batch["video_infos"]):
            got = batch["inputs"][:, slot].numpy()
            if meta.is_padding():
                assert not got.any()
                continue
            np.testing.assert_allclose(got, expected_item(events[meta.path], start, duration, 4, ds), atol=1e-6)
        batches += 1
    assert batches == len(loader)


def test_every_event_is_seen_once_per_epoch(recordings):
    paths = [p for p, _ in recordings]
    loader = SequentialDataLoader(paths, DELTA_T, "histo", [5, 2, HEIGHT, WIDTH], batch_size=2, num_workers=1,
                                  padding=True, preprocess_kwargs={"max_incr_per_pixel": 1e9})
    seen = {p: 0.0 for p in paths}
    for batch in loader:
        for slot, (meta, _, _) in enumerate(batch["video_infos"]):
            if not meta.is_padding():
                seen[meta.path] += float(batch["inputs"][:, slot].double().sum()) * 1e9
    for path, events in recordings:
        # The schedule covers whole windows (metavision_ml's rounding): the tail shorter than a window is left out.
        begin, end = evloader.data.get_time_span(path, DELTA_T)
        scheduled_end = begin + evloader._core.round_duration(end - begin, 5 * DELTA_T)
        n_in_schedule = int(((events["t"] >= begin) & (events["t"] < scheduled_end)).sum())
        assert begin <= events["t"][0] and n_in_schedule > 0
        assert round(seen[path]) == n_in_schedule


def test_workers_give_identical_batches(recordings):
    paths = [p for p, _ in recordings]

    def epoch(workers):
        return [b["inputs"].clone() for b in SequentialDataLoader(paths, DELTA_T, "event_cube", [2, 6, HEIGHT, WIDTH],
                                                                   batch_size=3, num_workers=workers, padding=True)]
    ref = epoch(0)
    for workers in (1, 2, 4):
        assert all(torch.equal(a, b) for a, b in zip(epoch(workers), ref))


def test_load_boxes_through_the_loader(recordings, tmp_path):
    import json

    label_map = tmp_path / "label_map_dictionary.json"
    label_map.write_text(json.dumps({"0": "car", "1": "pedestrian"}))
    lookup = box_api.create_class_lookup(str(label_map), ["car", "pedestrian"])
    paths = [p for p, _ in recordings]
    loader = SequentialDataLoader(paths, DELTA_T, "histo", [3, 2, HEIGHT, WIDTH], batch_size=2, num_workers=2,
                                  load_labels=functools.partial(box_api.load_boxes, class_lookup=lookup))
    labelled = 0
    for batch in loader:
        for t in range(3):
            for slot in range(2):
                boxes = batch["labels"][t][slot]
                if batch["frame_is_labeled"][t, slot]:
                    labelled += 1
                    assert len(boxes) >= 1
    assert labelled > 0


def test_python_registered_preprocessing_runs_in_the_loader(recordings):
    def count(events, output_array, total_tbins_delta_t, downsampling_factor=0, reset=True, **kwargs):
        if reset:
            output_array[...] = 0
        output_array[:, 0, 0, 0] += len(events)

    if "event_count" not in preprocessing.get_preprocess_function_names():
        preprocessing.register_new_preprocessing("event_count", 1, count, preprocessing.viz_diff_binarized)
    paths = [p for p, _ in recordings]
    loader = SequentialDataLoader(paths, DELTA_T, "event_count", [2, 1, HEIGHT, WIDTH], batch_size=2, num_workers=2)
    events = dict(recordings)
    for batch in loader:
        for slot, (meta, start, duration) in enumerate(batch["video_infos"]):
            ev = events[meta.path]
            n = int(((ev["t"] >= start) & (ev["t"] < start + duration)).sum())
            assert float(batch["inputs"][0, slot, 0, 0, 0]) == n
