# SPDX-License-Identifier: Apache-2.0
"""The loaders' GPU paths (device='cuda', pin_memory): batches on the GPU equal the CPU batches, also when the
copies are still queued behind slow GPU work while the workers already reuse the host buffers. Skipped without a
CUDA device (run on a lent GPU machine: tools/device_check.sh)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import evloader  # noqa: E402
from evloader.data import CDProcessorDataLoader, SequentialDataLoader  # noqa: E402
from conftest import make_events  # noqa: E402

WIDTH, HEIGHT, DELTA_T = 64, 48, 10_000


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda_events")
    paths = []
    for r, n in enumerate([60_000, 35_000, 50_000]):
        events = make_events(n, WIDTH, HEIGHT, seed=r, t0=100_000 * r, max_gap=40)
        path = root / f"rec{r}.raw"
        with evloader.RawWriter(path, "evt3", WIDTH, HEIGHT) as w:
            w.write(events)
        boxes = np.zeros(8, dtype=evloader.EventBbox)
        boxes["t"] = events["t"][0] - events["t"][0] % DELTA_T + DELTA_T * np.arange(1, 9)
        boxes["x"], boxes["y"], boxes["w"], boxes["h"] = 10, 8, 20, 16
        evloader.write_boxes(str(path).replace(".raw", "_bbox.npy"), boxes)
        paths.append(str(path))
    return paths


def _slow_stream():
    """Queue a long kernel so that the next host-to-device copies wait behind it: a loader that lets its host
    buffer go back to the pool before the copy really ran would hand out overwritten data."""
    torch.cuda._sleep(2_000_000)


def _sequential(paths, **kwargs):
    return SequentialDataLoader(paths, DELTA_T, "histo", [4, 2, HEIGHT, WIDTH], batch_size=2, num_workers=2,
                                prefetch=2, **kwargs)


@pytest.mark.parametrize("pin_memory", [False, True])
def test_sequential_batches_on_the_gpu_equal_the_cpu_batches(recordings, pin_memory):
    reference = [(b["inputs"].clone(), b["mask_keep_memory"].clone()) for b in _sequential(recordings)]
    assert len(reference) > 4
    loader = _sequential(recordings, pin_memory=pin_memory, device="cuda")
    for epoch in range(2):
        on_gpu = []
        for batch in loader:
            assert batch["inputs"].is_cuda and batch["mask_keep_memory"].is_cuda
            on_gpu.append((batch["inputs"], batch["mask_keep_memory"]))
            _slow_stream()
        torch.cuda.synchronize()
        assert len(on_gpu) == len(reference)
        for (x, keep), (x_ref, keep_ref) in zip(on_gpu, reference):
            assert torch.equal(x.cpu(), x_ref), f"epoch {epoch}: a GPU batch differs from the CPU batch"
            assert torch.equal(keep.cpu(), keep_ref)


def test_cuda_method_and_back_to_cpu(recordings):
    loader = _sequential(recordings).cuda()
    assert next(iter(loader))["inputs"].is_cuda
    assert not next(iter(loader.cpu()))["inputs"].is_cuda


@pytest.mark.parametrize("pin_memory", [False, True])
def test_stream_loader_batches_on_the_gpu_equal_the_cpu_batches(recordings, pin_memory):
    def make(**kwargs):
        return CDProcessorDataLoader(recordings, "delta_t", DELTA_T, 0, None, "histo", 5, 2, num_workers=2,
                                     **kwargs)

    reference = [b["inputs"].clone() for b in make()]
    loader = make(pin_memory=pin_memory, device="cuda")
    on_gpu = []
    for batch in loader:
        assert batch["inputs"].is_cuda
        on_gpu.append(batch["inputs"])
        _slow_stream()
    torch.cuda.synchronize()
    assert len(on_gpu) == len(reference)
    for x, x_ref in zip(on_gpu, reference):
        assert torch.equal(x.cpu(), x_ref)
