# SPDX-License-Identifier: Apache-2.0
"""Soak: ten epochs of each loader with worker threads (event recordings with a Python label hook, precomputed
tensor files; the same order every epoch or a new one) leave resident memory, open file descriptors, threads
and live Python objects flat, and a loader held in a cycle through its C++ engine is freed. The longer run
with a memory curve is bench/python/soak.py."""
import gc
import os
import weakref

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import evloader  # noqa: E402
from evloader.data import SequentialDataLoader  # noqa: E402
from evloader.data.cd_processor_dataset import CDProcessorDataLoader  # noqa: E402
from evloader.tensor_file import TensorFileWriter  # noqa: E402
from conftest import make_events  # noqa: E402

W, H, C, T, DELTA_T = 64, 48, 2, 4, 10_000
EPOCHS = 10
MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")


@pytest.fixture(scope="module", autouse=True)
def steady_allocator():
    """glibc's malloc raises its mmap threshold each time a large block is freed, after which blocks of that
    size (a reader's 2 MiB of decoded events, say) stay in the heap when freed: resident memory then moves by
    a few MiB up or down between epochs with nothing leaked, and which epoch it happens in depends on thread
    timing. A fixed threshold (128 KiB, the default start) returns every large block to the system when it is
    freed, so the resident size follows what is really held. Other allocators: nothing to do."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 << 10)  # M_MMAP_THRESHOLD (setting it turns the dynamic threshold off)
        libc.mallopt(-1, 128 << 10)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass
    yield


@pytest.fixture(autouse=True)
def frozen_heap():
    """Objects alive before the test go to the collector's permanent generation: a full collection after every
    epoch then costs microseconds instead of most of a second (torch's heap), and gc.get_objects() counts
    only what the test created."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def usage():
    """(resident bytes, open fds, threads, GC-tracked Python objects) of this process."""
    gc.collect()
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * PAGE
    return rss, len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task")), len(gc.get_objects())


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Five small recordings (EVT3, EVT2, DAT): about 20 tensors of T bins each."""
    root = tmp_path_factory.mktemp("soak_events")
    paths = []
    for r, kind in enumerate(["evt3", "evt2", "dat", "evt3", "evt2"]):
        events = make_events(100_000, W, H, seed=100 + r, t0=500_000 * r + 77, max_gap=40)
        if kind == "dat":
            path = root / f"rec{r}_td.dat"
            with evloader.DatWriter(path, W, H) as w:
                w.write(events)
        else:
            path = root / f"rec{r}.raw"
            with evloader.RawWriter(path, kind, W, H) as w:
                w.write(events)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def tensor_files(tmp_path_factory):
    """Five precomputed tensor files of 30 to 62 frames."""
    root = tmp_path_factory.mktemp("soak_tensors")
    rng = np.random.default_rng(5)
    paths = []
    for r in range(5):
        path = root / f"rec{r}.h5"
        frames = rng.random((30 + 8 * r, C, H, W), dtype=np.float32)
        frames[rng.random(frames.shape) < 0.7] = 0
        with TensorFileWriter(path, "histo", (C, H, W), DELTA_T, (H, W)) as w:
            w.write(frames)
        paths.append(str(path))
    return paths


def load_labels(metadata, start, duration, tensor):
    """Fresh tensors per call: a label kept alive by mistake (in C++ or in the loader) would pile up."""
    n = len(range(0, duration, metadata.delta_t))
    return [torch.full((3,), float(start + k)) for k in range(n)], np.arange(n) % 2 == 0


def make_loader(kind, source, paths):
    if kind == "sequential":
        labels = {"load_labels": load_labels} if source == "events" else {}
        return SequentialDataLoader(paths, DELTA_T, "histo", [T, C, H, W], batch_size=2, num_workers=2,
                                    padding=True, shuffle_files=True, **labels)
    labels = {"load_labels": load_labels} if source == "events" else {}
    return CDProcessorDataLoader(paths, "delta_t", DELTA_T, 0, None, "histo", T, 2, num_workers=2, **labels)


def run_epochs(loader, reshuffle):
    """usage() after each of EPOCHS full epochs."""
    curve = []
    for _ in range(EPOCHS):
        batches = 0
        for batch in loader:
            assert batch["inputs"].shape[2:] == (C, H, W)
            batches += 1
        assert batches == len(loader) > 10
        del batch
        if reshuffle:
            loader.dataset.shuffle()  # a new order: a new batch table and a new C++ engine next epoch
        curve.append(usage())
    return curve


def check_flat(curve, where):
    rss1, fds1, threads1, objects1 = curve[0]
    # 2 % of the process (torch alone makes it a few hundred MiB), at least 2 MiB: the batch pool may take one
    # more buffer after the first epoch (when the consumer held a batch at the moment a worker wanted one;
    # 96 KiB here), and the readers hold more or fewer decoded events when an epoch ends, depending on where
    # each one stopped. Ten epochs leaking a batch buffer, a reader or a recording's events each would pass
    # it, and so would the index or the label lists of every recording.
    slack = max(0.02 * rss1, 2 * MiB)
    for epoch, (rss, fds, threads, objects) in enumerate(curve[1:], start=2):
        what = f"{where} epoch {epoch}: {curve}"
        assert abs(rss - rss1) <= slack, what
        assert fds <= fds1, what  # readers closed: no descriptor per epoch
        assert threads <= threads1, what  # workers joined at the end of every epoch
        # Python objects: labels, batch dicts and engines of past epochs must all be gone (slack for caches
        # that fill once, e.g. torch's and the warnings registry).
        assert objects - objects1 <= 500, what


@pytest.mark.parametrize("kind,source", [("sequential", "events"), ("sequential", "tensor_files"),
                                         ("cd_processor", "events"), ("cd_processor", "tensor_files")])
def test_ten_epochs_keep_memory_fds_and_threads_flat(kind, source, recordings, tensor_files):
    paths = recordings if source == "events" else tensor_files
    _, fds_before, threads_before, _ = usage()
    loader = make_loader(kind, source, paths)
    curve = run_epochs(loader, reshuffle=False)
    check_flat(curve, f"{kind}/{source}")
    # The same engine every epoch: after the first epochs nothing may climb at all (1 MiB over the last five
    # epochs; 100 KiB leaked per epoch would show).
    assert curve[-1][0] - curve[4][0] <= MiB, curve
    assert curve[0][2] <= threads_before  # no worker thread outlives its epoch

    ref = weakref.ref(loader)
    loader.close()
    del loader
    gc.collect()
    assert ref() is None  # nothing (a C++ engine holding a hook, say) keeps the loader alive
    _, fds_end, threads_end, _ = usage()
    assert threads_end <= threads_before
    assert fds_end <= fds_before


@pytest.mark.parametrize("kind", ["sequential", "cd_processor"])
def test_a_new_order_every_epoch_keeps_memory_fds_and_threads_flat(kind, recordings):
    """dataset.shuffle() after every epoch: each epoch runs on a new engine, the old one must go entirely."""
    _, fds_before, threads_before, _ = usage()
    loader = make_loader(kind, "events", recordings)
    check_flat(run_epochs(loader, reshuffle=True), f"{kind} reshuffled")
    del loader
    gc.collect()
    _, fds_end, threads_end, _ = usage()
    assert threads_end <= threads_before
    assert fds_end <= fds_before


class _Trainer:
    """A training object whose label function is one of its methods: the usual way to hold a loader, and a
    reference cycle that goes through the C++ engine (engine -> label hook -> load_labels -> trainer ->
    loader -> engine), which the garbage collector cannot see."""

    def __init__(self, kind, paths):
        if kind == "sequential":
            self.loader = SequentialDataLoader(paths, DELTA_T, "histo", [T, C, H, W], batch_size=2, num_workers=2,
                                               load_labels=self.load_labels)
        else:
            self.loader = CDProcessorDataLoader(paths, "delta_t", DELTA_T, 0, None, "histo", T, 2, num_workers=2,
                                                load_labels=self.load_labels)

    def load_labels(self, metadata, start, duration, tensor):
        return load_labels(metadata, start, duration, tensor)


@pytest.mark.parametrize("kind", ["sequential", "cd_processor"])
def test_a_loader_whose_label_function_holds_it_is_freed(kind, recordings):
    _, fds_before, threads_before, _ = usage()
    trainer = _Trainer(kind, recordings)
    it = iter(trainer.loader)
    next(it)
    next(it)
    ref = weakref.ref(trainer.loader)
    del trainer, it
    gc.collect()
    assert ref() is None
    _, fds_end, threads_end, _ = usage()
    assert threads_end <= threads_before and fds_end <= fds_before
