# SPDX-License-Identifier: Apache-2.0
"""SequentialDataLoader on generated precomputed datasets: batches follow the schedule exactly, are the same
for every num_workers, labels reach the right bins, errors name the file, epochs resume."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import evloader  # noqa: E402
from evloader.data import SequentialDataLoader  # noqa: E402
from evloader.tensor_file import TensorFileWriter  # noqa: E402

DELTA_T = 50_000
C, H, W = 2, 24, 32
FRAMES = [13, 20, 7, 16, 11]


def frame_value(recording, frame):
    return recording * 1000 + frame


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("precomputed")
    paths = []
    for r, n in enumerate(FRAMES):
        path = root / f"rec_{r}.h5"
        frames = np.zeros((n, C, H, W), np.float32)
        for f in range(n):
            frames[f] = frame_value(r, f)
            frames[f, 1, 3, 4] = -1.0
        with TensorFileWriter(path, "histo", (C, H, W), DELTA_T, (H, W)) as w:
            w.write(frames)
        boxes = np.zeros(n, dtype=evloader.EventBbox)
        boxes["t"] = (np.arange(n) + 1) * DELTA_T  # one box at the end of every frame
        boxes["class_id"] = r
        boxes["w"] = boxes["h"] = 5
        evloader.write_boxes(root / f"rec_{r}_bbox.npy", boxes)
        paths.append(str(path))
    return paths


def expected_frames(loader, batch_index):
    """The batch computed from the schedule alone, in pure Python."""
    T = loader.dataset.num_tbins
    out = np.zeros((T, loader.batch_size, C, H, W), np.float32)
    for slot, (meta, start, duration) in enumerate(loader.dataset.get_batch_metadata(batch_index)):
        if meta.is_padding():
            continue
        r = int(os.path.basename(meta.path)[4:-3])
        for t in range(T):
            f = start // DELTA_T + t
            if f < FRAMES[r]:
                out[t, slot] = frame_value(r, f)
                out[t, slot, 1, 3, 4] = -1.0
    return out


def make_loader(paths, **kwargs):
    kwargs.setdefault("batch_size", 2)
    kwargs.setdefault("num_workers", 2)
    return SequentialDataLoader(paths, DELTA_T, "histo", [3, C, H, W], **kwargs)


@pytest.mark.parametrize("padding", [False, True])
def test_batches_follow_the_schedule(dataset, padding):
    loader = make_loader(dataset, padding=padding)
    n = 0
    for b, batch in enumerate(loader):
        assert set(batch) == {"inputs", "labels", "mask_keep_memory", "frame_is_labeled", "video_infos"}
        assert batch["inputs"].dtype == torch.float32 and batch["inputs"].shape == (3, 2, C, H, W)
        np.testing.assert_array_equal(batch["inputs"].numpy(), expected_frames(loader, b))
        assert batch["mask_keep_memory"].shape == (2, 1, 1, 1)
        assert batch["frame_is_labeled"].dtype == torch.bool and batch["frame_is_labeled"].shape == (3, 2)
        for slot, (meta, start, duration) in enumerate(batch["video_infos"]):
            keep = float(batch["mask_keep_memory"][slot])
            assert keep == (1.0 if meta.is_padding() else float(start > meta.start_ts))
        n += 1
    assert n == len(loader) > 0


def test_identical_for_any_number_of_workers(dataset):
    def epoch(workers, prefetch=2):
        return [b["inputs"].clone() for b in make_loader(dataset, num_workers=workers, prefetch=prefetch,
                                                           batch_size=3, padding=True)]
    reference = epoch(0)
    for workers, prefetch in [(1, 1), (2, 2), (4, 3)]:
        got = epoch(workers, prefetch)
        assert len(got) == len(reference)
        for a, b in zip(got, reference):
            assert torch.equal(a, b)


def test_labels_land_in_their_bins(dataset):
    calls = []

    def load_labels(metadata, start, duration, tensor):
        assert tensor.shape == (3, C, H, W)
        r = int(os.path.basename(metadata.path)[4:-3])
        # the tensor given to load_labels is the item's own frames
        assert float(tensor[0, 0, 0, 0]) == frame_value(r, start // DELTA_T)
        calls.append((metadata.path, start))
        boxes = evloader.read_boxes(metadata.path.replace(".h5", "_bbox.npy"))
        per_bin = [boxes[(boxes["t"] > start + t * DELTA_T) & (boxes["t"] <= start + (t + 1) * DELTA_T)]
                   for t in range(3)]
        return per_bin, np.array([len(b) > 0 for b in per_bin])

    loader = make_loader(dataset, load_labels=load_labels, padding=True)
    for batch in loader:
        labels = batch["labels"]
        assert len(labels) == 3 and all(len(row) == 2 for row in labels)
        for slot, (meta, start, _) in enumerate(batch["video_infos"]):
            for t in range(3):
                if meta.is_padding():
                    assert np.isnan(labels[t][slot])
                    assert not batch["frame_is_labeled"][t, slot]
                    continue
                boxes = labels[t][slot]
                r = int(os.path.basename(meta.path)[4:-3])
                frame = start // DELTA_T + t
                assert bool(batch["frame_is_labeled"][t, slot]) == (frame < FRAMES[r])
                if frame < FRAMES[r]:
                    assert list(boxes["t"]) == [(frame + 1) * DELTA_T] and boxes["class_id"][0] == r
    assert len(calls) == sum(1 for _ in calls)  # called once per real item


def test_early_stop_and_new_epoch(dataset):
    loader = make_loader(dataset)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert len(list(loader)) == len(loader)
    loader.close()
    assert len(list(loader)) == len(loader)


def test_state_dict_resumes_at_the_next_batch(dataset):
    loader = make_loader(dataset, padding=True)
    full = [b["inputs"].clone() for b in loader]
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    it.close()
    other = make_loader(dataset, padding=True)
    other.load_state_dict(state)
    rest = [b["inputs"].clone() for b in other]
    assert len(rest) == len(full) - 3
    assert all(torch.equal(a, b) for a, b in zip(rest, full[3:]))


def test_label_errors_name_the_file_and_the_loader_recovers(dataset):
    def broken(metadata, start, duration, tensor):
        if start >= 3 * DELTA_T:
            raise KeyError("no such class")
        return [np.zeros(0, evloader.EventBbox)] * 3, np.zeros(3, bool)

    loader = make_loader(dataset, load_labels=broken)
    with pytest.raises(KeyError, match=r"rec_\d\.h5 \[\d+, \d+\) us"):
        for _ in loader:
            pass
    again = iter(loader)  # the loader is usable again: the first batches come, then the same error
    assert next(again)["inputs"].shape == (3, 2, C, H, W)
    with pytest.raises(KeyError):
        for _ in again:
            pass
    wrong_length = make_loader(dataset, load_labels=lambda m, s, d, t: ([None] * 2, np.zeros(2, bool)))
    with pytest.raises(ValueError, match="2 labels for 3 time bins"):
        next(iter(wrong_length))


def test_bad_datasets_raise_clear_errors(dataset, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        make_loader([])
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        make_loader([str(tmp_path / "nope.h5")])
    with pytest.raises(ValueError, match="delta_t"):
        SequentialDataLoader(dataset, 10_000, "histo", [3, C, H, W])
    with pytest.raises(ValueError):
        SequentialDataLoader(dataset, DELTA_T, "histo", [3, 6, H, W])
    with pytest.raises(ValueError, match="power of two"):
        SequentialDataLoader(dataset, DELTA_T, "histo", [3, C, 10, 13])


def test_recordings_are_opened_once_per_slot_stream(dataset):
    loader = make_loader(dataset, padding=True)
    for batch in loader:  # each batch dropped before the next: buffers are recycled
        del batch
    assert loader._engine is not None
    assert loader._engine.opens <= len(dataset) + loader.batch_size
    assert loader._engine.buffers <= loader.prefetch + 2
