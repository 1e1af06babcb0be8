# SPDX-License-Identifier: Apache-2.0
"""The simulated samples: determinism, events inside the sensor, the refractory period, boxes where the
events are, the dataset layout in every format, `evloader sample`, and get_sample (lookups and errors)."""
import json
import os

import numpy as np
import pytest

import evloader
from evloader.samples import (LABEL_MAP, PROPHESEE_SAMPLES, SAMPLES_DIR_ENV, SimConfig, get_sample, simulate,
                              split_counts, write_dataset)

SMALL = dict(width=160, height=120, duration_us=1_500_000)


@pytest.fixture(scope="module")
def recording():
    return simulate(seed=11, **SMALL)


def test_same_seed_same_recording_other_seed_other_recording(recording):
    events, boxes = recording
    again_events, again_boxes = simulate(seed=11, **SMALL)
    assert events.dtype == evloader.EventCD and boxes.dtype == evloader.EventBbox
    assert np.array_equal(events, again_events) and np.array_equal(boxes, again_boxes)
    other, _ = simulate(seed=12, **SMALL)
    assert other.size != events.size or not np.array_equal(other, events)


def test_events_are_sorted_inside_the_sensor_and_the_duration(recording):
    events, _ = recording
    assert events.size > 5_000
    assert np.all(np.diff(events["t"]) >= 0)
    assert events["t"][0] >= 0 and events["t"][-1] < SMALL["duration_us"]
    assert events["x"].max() < SMALL["width"] and events["y"].max() < SMALL["height"]
    assert set(np.unique(events["p"])) == {0, 1}
    # Both polarities in sizeable numbers (moving edges have a leading and a trailing side).
    assert 0.3 < events["p"].mean() < 0.7


def test_refractory_period_holds_for_every_pixel(recording):
    events, _ = recording
    refractory = SimConfig().refractory_us
    pixel = events["y"].astype(np.int64) * SMALL["width"] + events["x"]
    order = np.lexsort((events["t"], pixel))
    same = pixel[order][1:] == pixel[order][:-1]
    gaps = np.diff(events["t"][order])[same]
    assert gaps.size > 100 and gaps.min() >= refractory


def test_background_activity_covers_the_sensor():
    # Noise alone (no objects drawn would still fire): pixels far from every box fire at about the set rate.
    events, _ = simulate(seed=3, width=64, height=48, duration_us=1_000_000, background_rate_hz=5.0)
    hits = np.zeros((48, 64), np.int64)
    np.add.at(hits, (events["y"], events["x"]), 1)
    assert (hits > 0).mean() > 0.9


def test_boxes_follow_the_label_rate_and_stay_inside_the_sensor(recording):
    _, boxes = recording
    period = SimConfig().label_period_us
    assert boxes.size > 0
    assert np.all(boxes["t"] % period == 0)
    assert np.all(np.diff(boxes["t"]) >= 0)
    assert np.all(boxes["x"] >= 0) and np.all(boxes["y"] >= 0)
    assert np.all(boxes["x"] + boxes["w"] <= SMALL["width"] + 1e-3)
    assert np.all(boxes["y"] + boxes["h"] <= SMALL["height"] + 1e-3)
    assert set(np.unique(boxes["class_id"])) <= {0, 1, 2, 3}
    assert np.all(boxes["class_confidence"] == 1)
    objects = boxes[boxes["class_id"] != 3]
    assert np.all(objects["w"] >= 2) and np.all(objects["h"] >= 2) and np.all(objects["track_id"] > 0)
    # A track keeps its class.
    for track in np.unique(objects["track_id"]):
        assert np.unique(objects["class_id"][objects["track_id"] == track]).size == 1


def test_unlabeled_stretches_leave_label_instants_out():
    cfg = SimConfig(width=64, height=48, duration_us=3_000_000, unlabeled_rate_hz=2.0, unlabeled_length_s=(0.2, 0.3))
    _, boxes = simulate(cfg, seed=5)
    period = cfg.label_period_us
    labelled = np.unique(boxes["t"])
    all_instants = np.arange(period, cfg.duration_us + 1, period)
    missing = np.setdiff1d(all_instants, labelled)
    assert 0 < missing.size < all_instants.size
    # Missing instants come in stretches (consecutive label periods), not one here and there.
    runs = np.split(missing, np.flatnonzero(np.diff(missing) != period) + 1)
    assert max(len(r) for r in runs) >= 3


def test_boxes_are_where_the_events_are(recording):
    events, boxes = recording
    period = SimConfig().label_period_us
    objects = boxes[(boxes["class_id"] != 3) & (boxes["w"] * boxes["h"] >= 40)]
    assert objects.size > 20
    inside_density, hit = [], 0
    outside = np.ones((SMALL["height"], SMALL["width"]), bool)
    for b in objects:
        window = events[(events["t"] >= b["t"] - period) & (events["t"] < b["t"])]
        x0, y0 = int(b["x"]), int(b["y"])
        x1, y1 = int(np.ceil(b["x"] + b["w"])), int(np.ceil(b["y"] + b["h"]))
        inside = (window["x"] >= x0) & (window["x"] < x1) & (window["y"] >= y0) & (window["y"] < y1)
        hit += inside.sum() > 0
        inside_density.append(inside.sum() / ((x1 - x0) * (y1 - y0)))
        outside[y0:y1, x0:x1] = False
    # Nearly every box has events of its last label period inside it...
    assert hit >= 0.9 * objects.size
    # ...and events are far denser inside boxes than where no box ever was.
    counts = np.zeros(outside.shape, np.int64)
    np.add.at(counts, (events["y"], events["x"]), 1)
    outside_density = counts[outside].sum() / outside.sum() / (SMALL["duration_us"] / period)
    assert np.median(inside_density) > 10 * outside_density


def test_config_is_checked():
    with pytest.raises(ValueError, match="at least 32x32"):
        simulate(width=16, height=16, duration_us=1000)
    with pytest.raises(ValueError, match="scenario"):
        simulate(scenario="moon", duration_us=1000)
    with pytest.raises(ValueError, match="duration"):
        simulate(duration_us=0)


def test_split_counts():
    assert split_counts(1) == {"train": 1, "val": 0, "test": 0}
    assert split_counts(2) == {"train": 1, "val": 1, "test": 0}
    assert split_counts(3) == {"train": 1, "val": 1, "test": 1}
    assert split_counts(16) == {"train": 12, "val": 2, "test": 2}
    with pytest.raises(ValueError):
        split_counts(0)


def _canonical(events):
    return np.sort(events, order=["t", "y", "x", "p"])


def test_dataset_layout_formats_and_contents(tmp_path):
    root = tmp_path / "ds"
    info = write_dataset(root, recordings=3, duration_s=0.6, size=(96, 64), seed=4,
                         formats=["evt3", "evt2", "dat", "h5"], jobs=1, progress=False)
    assert info["splits"] == {"train": 1, "val": 1, "test": 1}
    assert json.loads((root / "label_map_dictionary.json").read_text()) == LABEL_MAP
    assert json.loads((root / "dataset_info.json").read_text())["seed"] == 4
    for i, split in enumerate(["train", "val", "test"]):
        name = f"sim_4_{i:03d}"
        expected_events, expected_boxes = simulate(
            SimConfig(width=96, height=64, duration_us=600_000, scenario=["mixed", "traffic", "mixed"][i]), seed=[4, i])
        for path, encoding in [(root / split / f"{name}.raw", "EVT3"), (root / split / f"{name}_td.dat", "DAT"),
                               (root / "evt2" / split / f"{name}.raw", "EVT2")]:
            reader = evloader.EventReader(path)
            assert reader.encoding == encoding and reader.geometry == (96, 64)
            events = reader.load_all()
            assert reader.file_stats().violations == 0
            assert np.array_equal(_canonical(events), _canonical(expected_events))
        for labels in [root / split / f"{name}_bbox.npy", root / "evt2" / split / f"{name}_bbox.npy"]:
            assert np.array_equal(evloader.read_boxes(labels), expected_boxes)
        assert (root / "precomputed" / split / f"{name}.h5").is_file()
        assert (root / "precomputed" / split / f"{name}_bbox.npy").is_file()
    assert (root / "precomputed" / "label_map_dictionary.json").is_file()
    assert (root / "evt2" / "label_map_dictionary.json").is_file()
    assert not list(root.rglob("*.partial-*"))


def test_dataset_is_reused_refused_or_replaced(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, recordings=1, duration_s=0.3, size=(64, 48), seed=1, jobs=1, progress=False)
    raw = root / "train" / "sim_1_000.raw"
    stamp = raw.stat().st_mtime_ns
    write_dataset(root, recordings=1, duration_s=0.3, size=(64, 48), seed=1, jobs=1, progress=False)
    assert raw.stat().st_mtime_ns == stamp  # complete and identical: kept
    with pytest.raises(FileExistsError, match="overwrite"):
        write_dataset(root, recordings=1, duration_s=0.3, size=(64, 48), seed=2, jobs=1, progress=False)
    write_dataset(root, recordings=1, duration_s=0.3, size=(64, 48), seed=2, jobs=1, progress=False, overwrite=True)
    assert (root / "train" / "sim_2_000.raw").is_file() and not raw.exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a generated dataset"):
        write_dataset(other, recordings=1, duration_s=0.3, size=(64, 48), jobs=1, progress=False, overwrite=True)
    assert (other / "precious.txt").read_text() == "keep me"


def test_worker_processes_write_the_same_bytes(tmp_path):
    kwargs = dict(recordings=2, duration_s=0.4, size=(64, 48), seed=9, progress=False)
    write_dataset(tmp_path / "one", jobs=1, **kwargs)
    write_dataset(tmp_path / "two", jobs=2, **kwargs)
    # (RAW headers carry a fixed date; DAT headers the date of writing, so DAT files are compared decoded.)
    for rel in ["train/sim_9_000.raw", "train/sim_9_000_bbox.npy", "val/sim_9_001.raw"]:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()


def test_generated_dataset_feeds_the_sequential_loader(tmp_path):
    from functools import partial

    from evloader.data import SequentialDataLoader, box_processing

    root = tmp_path / "ds"
    write_dataset(root, recordings=1, duration_s=1.0, size=(128, 96), seed=3, jobs=1, progress=False)
    lookup = box_processing.create_class_lookup(str(root / "label_map_dictionary.json"),
                                                ["car", "pedestrian", "two wheeler"])
    loader = SequentialDataLoader([str(root / "train" / "sim_3_000.raw")], 50_000, "histo", [5, 2, 48, 64],
                                  load_labels=partial(box_processing.load_boxes, class_lookup=lookup),
                                  batch_size=1, num_workers=0)
    labelled = boxes = 0
    for batch in loader:
        assert batch["inputs"].shape == (5, 1, 2, 48, 64)
        assert float(batch["inputs"].sum()) > 0
        labelled += int(batch["frame_is_labeled"].sum())
        for per_bin in batch["labels"]:
            for b in per_bin:
                boxes += len(b)
                assert set(np.unique(b["class_id"])) <= {1, 2, 3}
                assert np.all(b["x"] + b["w"] <= 64 + 1e-3)
    assert labelled > 5 and boxes > 0


def test_cli_sample(tmp_path, capsys):
    from evloader.cli import main

    out = tmp_path / "cli"
    assert main(["sample", str(out), "--recordings", "2", "--duration", "0.3", "--size", "64x48", "--seed", "5",
                 "--formats", "evt3,dat", "-j", "1", "-q"]) == 0
    assert (out / "train" / "sim_5_000.raw").is_file() and (out / "train" / "sim_5_000_td.dat").is_file()
    assert (out / "val" / "sim_5_001_bbox.npy").is_file()
    assert main(["sample", str(out), "--recordings", "2", "--duration", "0.3", "--size", "64x48", "--seed", "6",
                 "-q"]) == 2
    assert "overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample", str(out), "--size", "64by48"])
    with pytest.raises(SystemExit):
        main(["sample", str(out), "--formats", "evt3,mp4"])


# --- get_sample ------------------------------------------------------------------------------------------------
def test_get_sample_explains_where_prophesee_samples_come_from(tmp_path, monkeypatch):
    monkeypatch.delenv(SAMPLES_DIR_ENV, raising=False)
    with pytest.raises(FileNotFoundError) as error:
        get_sample("driving_sample.raw", folder=tmp_path)
    message = str(error.value)
    assert "Prophesee" in message and "docs.prophesee.ai" in message
    assert SAMPLES_DIR_ENV in message and str(tmp_path) in message and "not set" in message
    assert "sim_street.raw" in message  # the simulated alternatives
    assert not list(tmp_path.iterdir())  # nothing downloaded or created


def test_get_sample_finds_files_in_the_folder_and_in_the_samples_dirs(tmp_path, monkeypatch):
    here, shelf_a, shelf_b = tmp_path / "here", tmp_path / "a", tmp_path / "b"
    for d in (here, shelf_a, shelf_b):
        d.mkdir()
    (here / "spinner.dat").write_bytes(b"local")
    (shelf_b / "80_balls.raw").write_bytes(b"balls")
    monkeypatch.setenv(SAMPLES_DIR_ENV, os.pathsep.join([str(shelf_a), str(shelf_b)]))
    assert get_sample("spinner.dat", here) == os.path.join(here, "spinner.dat")
    found = get_sample("80_balls.raw", here)
    assert found == os.path.join(here, "80_balls.raw")
    assert open(found, "rb").read() == b"balls"  # linked into the folder, as the tutorial expects
    with pytest.raises(FileNotFoundError) as error:
        get_sample("laser.raw", here)
    assert str(shelf_a) in str(error.value) and str(shelf_b) in str(error.value)


def test_get_sample_rejects_unknown_names_and_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a known sample"):
        get_sample("no_such_sample.raw", tmp_path)
    with pytest.raises(ValueError, match="file name"):
        get_sample("some/dir/driving_sample.raw", tmp_path)
    assert set(PROPHESEE_SAMPLES) >= {"driving_sample.raw", "hand_spinner.raw", "spinner.raw", "80_balls.raw"}


def test_get_sample_generates_simulated_samples_once(tmp_path):
    from evloader.compat.metavision_core.utils import get_sample as compat_get_sample

    path = compat_get_sample("sim_pedestrians.raw", folder=tmp_path)
    assert path == os.path.join(tmp_path, "sim_pedestrians.raw")
    reader = evloader.EventReader(path)
    assert reader.geometry == (320, 240) and reader.event_count() > 10_000
    boxes = evloader.read_boxes(tmp_path / "sim_pedestrians_bbox.npy")
    assert boxes.size > 0 and np.mean(boxes["class_id"][boxes["class_id"] != 3] == 0) > 0.5  # mostly pedestrians
    stamp = os.stat(path).st_mtime_ns
    assert get_sample("sim_pedestrians.raw", tmp_path) == path and os.stat(path).st_mtime_ns == stamp
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".evlidx"))  # (reader's index)
    assert written == ["sim_pedestrians.raw", "sim_pedestrians_bbox.npy"]
