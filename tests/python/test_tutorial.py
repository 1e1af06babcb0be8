# SPDX-License-Identifier: Apache-2.0
"""The seed tutorial's SequentialDataLoader part, cell by cell, with only its imports changed to evloader's
compat paths (the documented migration) on a small generated dataset. Two other changes, both forced:
``np.bool`` (removed in numpy 1.24) is ``bool``, and the window display (its DOC_DISPLAY=OFF path) writes the
frames to files instead."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

import evloader  # noqa: E402
from evloader.tensor_file import TensorFileWriter  # noqa: E402


@pytest.fixture
def tutorial_dir(tmp_path, monkeypatch):
    dataset = tmp_path / "dataset_precomputed"
    dataset.mkdir()
    (dataset / "label_map_dictionary.json").write_text(json.dumps(
        {"0": "pedestrian", "1": "two wheeler", "2": "car", "3": "truck", "4": "bus", "5": "traffic sign",
         "6": "traffic light"}))
    rng = np.random.default_rng(0)
    for k, n_frames in enumerate([14, 11]):
        name = f"moorea_2019-01-30_000_td_{k}"
        frames = (rng.random((n_frames, 2, 360, 640)) < 0.03).astype(np.float32) * 0.4
        with TensorFileWriter(dataset / f"{name}.h5", "histo", (2, 360, 640), 50_000, (720, 1280),
                              kwargs={"max_incr_per_pixel": 2.5}) as w:
            w.write(frames)
        boxes = np.zeros(3 * n_frames, dtype=evloader.EventBbox)
        boxes["t"] = np.repeat(np.arange(1, n_frames + 1) * 50_000, 3)
        boxes["x"], boxes["y"] = rng.uniform(0, 1000, boxes.size), rng.uniform(0, 500, boxes.size)
        boxes["w"], boxes["h"] = rng.uniform(60, 200, boxes.size), rng.uniform(60, 200, boxes.size)
        boxes["class_id"] = rng.choice([0, 1, 2, 3], boxes.size)
        boxes["class_confidence"] = 1
        evloader.write_boxes(dataset / f"{name}_bbox.npy", boxes)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOC_DISPLAY", "OFF")
    return tmp_path


def test_tutorial_sequential_dataloader_cells(tutorial_dir):
    # --- Import Libraries
    import glob
    from functools import partial

    from evloader.compat.metavision_ml.data import SequentialDataLoader
    from evloader.compat.metavision_ml.data import box_processing as box_api

    # --- Download the Data Sample (already on disk)
    dataset_path = "dataset_precomputed"
    label_map_path = os.path.join(dataset_path, 'label_map_dictionary.json')
    assert os.path.isdir(dataset_path)

    # --- Load Labels
    from evloader.compat.metavision_ml.data.sequential_dataset import load_labels_stub
    assert load_labels_stub.__doc__

    def custom_load_boxes(metadata, batch_start_time, duration, tensor, **kwargs):
        box_events = box_api.load_box_events(metadata, batch_start_time, duration)
        class_lookup = kwargs['class_lookup']
        box_events['class_id'] = class_lookup[box_events['class_id']]
        num_tbins = tensor.shape[0]
        box_events = box_api.split_boxes(box_events, batch_start_time=batch_start_time,
                                         delta_t=duration // num_tbins, num_tbins=num_tbins)
        all_frames_are_okay = np.ones((len(box_events)), dtype=bool)  # np.bool in the tutorial
        return box_events, all_frames_are_okay

    wanted_keys = ['car', 'pedestrian', 'two wheeler']
    class_lookup = box_api.create_class_lookup(label_map_path, wanted_keys)
    custom_load_boxes_fn = partial(custom_load_boxes, class_lookup=class_lookup)

    # --- Event-Based SequentialDataLoader
    files = glob.glob(os.path.join(dataset_path, "*.h5"))[:2]
    preprocess_function_name = "histo"
    delta_t = 50000
    channels = 2
    num_tbins = 3
    height, width = 360, 640
    batch_size = 2
    max_incr_per_pixel = 2.5
    array_dim = [num_tbins, channels, height, width]

    seq_dataloader = SequentialDataLoader(files, delta_t, preprocess_function_name, array_dim,
                                          load_labels=custom_load_boxes_fn,
                                          batch_size=batch_size, num_workers=0,
                                          preprocess_kwargs={"max_incr_per_pixel": max_incr_per_pixel})

    for index, batch in enumerate(seq_dataloader):
        if index == 1:
            break
        print("available keys: ", batch.keys(), "\n")
        print("input shape:", batch["inputs"].shape, "\n")
        print("metadata:", batch["video_infos"], "\n")
        print("box events: ", len(batch['labels']), "lists (corresponding to the no. of time bins), each containing "
              "a batch sized lists :", [len(labels) for labels in batch['labels']])
        assert batch["inputs"].shape == (3, 2, 2, 360, 640)
        assert [len(labels) for labels in batch['labels']] == [2, 2, 2]
    second_bin = batch['labels'][1][0]
    assert second_bin.dtype == evloader.EventBbox and len(second_bin) > 0
    assert set(np.unique(second_bin["class_id"])) <= {1, 2, 3, 2**32 - 1}  # -1 (unwanted class) as uint32

    # --- Visualization (DOC_DISPLAY=OFF: frames go to files)
    written = []
    for i, frame in enumerate(seq_dataloader.show()):
        assert frame.shape == (2 * 360, 2 * 640, 3) or frame.shape == (360, 2 * 640, 3)
        path = f"frame_{i:03d}.png"
        cv2.imwrite(path, frame[..., ::-1])
        written.append(path)
        if i == 5:
            break

    def draw_labels(frame, labels):
        return frame

    load_boxes_fn = partial(box_api.load_boxes, class_lookup=class_lookup)
    seq_dataloader = SequentialDataLoader(files, delta_t, preprocess_function_name, array_dim, load_labels=load_boxes_fn,
                                          batch_size=batch_size, num_workers=0,
                                          preprocess_kwargs={"max_incr_per_pixel": max_incr_per_pixel})

    from evloader.compat.metavision_ml.detection_tracking.display_frame import draw_box_events

    label_map = ['background'] + wanted_keys
    viz_labels = partial(draw_box_events, label_map=label_map)
    for i, frame in enumerate(seq_dataloader.show(viz_labels)):
        cv2.imwrite(f"boxes_{i:03d}.png", frame[..., ::-1])
        written.append(f"boxes_{i:03d}.png")
        if i == 5:
            break
    assert all(os.path.getsize(p) > 0 for p in written) and len(written) == 12
