# SPDX-License-Identifier: Apache-2.0
"""Faults under the loaders and precompute: a recording truncated or deleted while it is read, a read-only
dataset folder, a full disk during ``evloader precompute``, Ctrl-C in the middle of an epoch. Each ends in a
clear error naming the file (or a warning with on_error='skip'), never in a crash, a hang or silently empty
tensors, and the loader can be iterated again and closed afterwards."""
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import evloader  # noqa: E402
from evloader.data import SequentialDataLoader  # noqa: E402
from evloader.data.cd_processor_dataset import CDProcessorDataLoader  # noqa: E402
from evloader.tensor_file import TensorFileReader, TensorFileWriter  # noqa: E402
from conftest import make_events  # noqa: E402

W, H, C, T, DELTA_T = 64, 48, 2, 4, 10_000
N_EVENTS = 250_000  # about 1.2 MB of EVT3 per recording: several 256 KiB reader blocks, 2 s, 50 batches


def threads():
    return threading.active_count(), len(os.listdir("/proc/self/task"))


def write_recordings(folder, count=4, n=N_EVENTS, kinds=("evt3", "evt2", "dat", "evt3")):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in range(count):
        events = make_events(n, W, H, seed=40 + r, t0=1_000_000 * r + 123, max_gap=40)
        kind = kinds[r % len(kinds)]
        if kind == "dat":
            path = folder / f"rec{r}_td.dat"
            with evloader.DatWriter(path, W, H) as w:
                w.write(events)
        else:
            path = folder / f"rec{r}.raw"
            with evloader.RawWriter(path, kind, W, H) as w:
                w.write(events)
        paths.append(str(path))
    return paths


def make_loader(kind, paths, **kwargs):
    kwargs.setdefault("num_workers", 2)
    if kind == "sequential":
        return SequentialDataLoader(paths, DELTA_T, "histo", [T, C, H, W], batch_size=2, padding=True,
                                    preprocess_kwargs={"max_incr_per_pixel": 1e9}, **kwargs)
    return CDProcessorDataLoader(paths, "delta_t", DELTA_T, 0, None, "histo", T, 2,
                                 preprocess_kwargs={"max_incr_per_pixel": 1e9}, **kwargs)


def epoch_events(loader):
    """Events per batch (histo counts, scaled back from max_incr_per_pixel). Summed by numpy: torch would
    start its intra-op threads (which also spin between operations, against the loader's workers)."""
    return [round(float(b["inputs"].numpy().sum(dtype=np.float64)) * 1e9) for b in loader]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Recordings never modified: each test copies them (a truncation or deletion must not leak out)."""
    return write_recordings(tmp_path_factory.mktemp("pristine"))


def copy_recordings(pristine, folder):
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in pristine:
        target = folder / os.path.basename(path)
        with open(path, "rb") as src, open(target, "wb") as dst:
            dst.write(src.read())
        out.append(str(target))
    return out


# --- a recording truncated while the loader reads it -------------------------------------------------------
@pytest.mark.parametrize("kind", ["sequential", "cd_processor"])
def test_truncated_recording_raises_naming_it_and_the_loader_recovers(kind, pristine, tmp_path):
    paths = copy_recordings(pristine, tmp_path / "data")
    originals = {p: open(p, "rb").read() for p in paths}
    base = threads()
    loader = make_loader(kind, paths)
    reference = epoch_events(loader)
    assert all(n > 0 for n in reference[:3])

    it = iter(loader)
    next(it)
    next(it)  # the first recordings are open now, a few blocks in
    for p in paths:
        os.truncate(p, os.path.getsize(p) // 3)
    with pytest.raises(evloader.IoError) as error:
        for _ in it:
            pass
    message = str(error.value)
    assert "shrank" in message and any(p in message for p in paths), message
    assert threads() == base  # the epoch's workers are gone

    # Iterating again: the same clear error (the schedule still expects the whole files), no hang.
    with pytest.raises(evloader.IoError, match="shrank"):
        for _ in loader:
            pass
    # The files come back: a whole epoch equals the one before the truncation.
    for p, data in originals.items():
        with open(p, "r+b") as f:
            f.write(data)
    assert epoch_events(loader) == reference
    loader.close()
    assert threads() == base


def test_truncated_recording_with_skip_warns_and_the_epoch_goes_on(pristine, tmp_path):
    paths = copy_recordings(pristine, tmp_path / "data")
    loader = make_loader("cd_processor", paths, on_error="skip")
    expected = len(loader)
    it = iter(loader)
    next(it)
    victim = paths[0]
    os.truncate(victim, os.path.getsize(victim) // 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rest = sum(1 for _ in it)
    assert rest + 1 == expected
    shrank = [str(w.message) for w in caught if "shrank" in str(w.message)]
    assert len(shrank) == 1 and victim in shrank[0], [str(w.message) for w in caught]
    loader.close()


@pytest.mark.parametrize("kind", ["sequential", "cd_processor"])
def test_truncated_tensor_file_raises_naming_it(kind, tmp_path):
    paths = []
    rng = np.random.default_rng(3)
    for r in range(2):
        path = tmp_path / f"rec{r}.h5"
        with TensorFileWriter(path, "histo", (C, H, W), DELTA_T, (H, W)) as w:
            w.write(rng.random((60, C, H, W), dtype=np.float32))
        paths.append(str(path))
    if kind == "sequential":
        loader = SequentialDataLoader(paths, DELTA_T, "histo", [T, C, H, W], batch_size=2, num_workers=2)
    else:
        loader = CDProcessorDataLoader(paths, "delta_t", DELTA_T, 0, None, "histo", T, 2, num_workers=2)
    base = threads()
    it = iter(loader)
    next(it)
    for p in paths:
        os.truncate(p, os.path.getsize(p) // 2)
    with pytest.raises((evloader.IoError, evloader.FormatError)) as error:
        for _ in it:
            pass
    assert any(p in str(error.value) for p in paths), str(error.value)
    with pytest.raises((evloader.IoError, evloader.FormatError)):
        for _ in loader:
            pass
    loader.close()
    assert threads() == base


# --- a recording deleted while the loader reads it ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["sequential", "cd_processor"])
def test_deleted_recordings_raise_naming_them(kind, pristine, tmp_path):
    paths = copy_recordings(pristine, tmp_path / "data")
    base = threads()
    loader = make_loader(kind, paths)
    it = iter(loader)
    next(it)
    next(it)
    for p in paths:
        os.remove(p)
    # Recordings already open are still read whole (the data is there until they are closed); the first one
    # opened afterwards is reported.
    with pytest.raises(evloader.IoError) as error:
        for _ in it:
            pass
    assert "no such file" in str(error.value) and any(p in str(error.value) for p in paths), str(error.value)
    assert threads() == base
    with pytest.raises(evloader.IoError, match="no such file"):
        for _ in loader:
            pass
    loader.close()
    del loader
    assert threads() == base


def test_deleted_recordings_with_skip_warn_and_the_epoch_ends(pristine, tmp_path):
    paths = copy_recordings(pristine, tmp_path / "data")
    loader = make_loader("cd_processor", paths, on_error="skip")
    expected = len(loader)
    it = iter(loader)
    next(it)
    next(it)
    for p in paths[2:]:  # not yet opened: their slots are padded
        os.remove(p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rest = sum(1 for _ in it)
    assert rest + 2 == expected
    messages = [str(w.message) for w in caught]
    for p in paths[2:]:
        assert any(p in m and "no such file" in m for m in messages), messages
    loader.close()


# --- an iterator left behind ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sequential", "cd_processor"])
def test_an_abandoned_iterator_neither_takes_batches_nor_stops_the_next_epoch(kind, pristine):
    """``first = next(iter(loader))`` kept around, then a training loop: the old iterator must not steal a
    batch of the new epoch, and when it is collected its clean-up must not end the new epoch half-way."""
    loader = make_loader(kind, pristine)
    reference = epoch_events(loader)
    peeks = [iter(loader) for _ in range(2)]
    for peek in peeks:
        next(peek)
    counts = []
    for i, batch in enumerate(loader):
        counts.append(round(float(batch["inputs"].numpy().sum(dtype=np.float64)) * 1e9))
        if i == 3:
            with pytest.raises(RuntimeError, match="another iteration"):
                next(peeks[0])
        if i == 5:
            del peeks[1]  # a suspended generator collected in the middle of the epoch
    assert counts == reference
    loader.close()


# --- a read-only dataset folder -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sequential", "cd_processor"])
def test_read_only_dataset_folder_indexes_into_the_user_cache(kind, pristine, tmp_path, monkeypatch):
    folder = tmp_path / "dataset"
    paths = copy_recordings(pristine, folder)
    cache = tmp_path / "cache"
    monkeypatch.setenv("EVLOADER_CACHE_DIR", str(cache))
    before = sorted(os.listdir(folder))
    os.chmod(folder, 0o555)  # root could still write there: the readers go by the permission bits
    try:
        loader = make_loader(kind, paths)
        assert epoch_events(loader) == epoch_events(make_loader(kind, pristine))  # read as from anywhere else
        loader.close()
        assert sorted(os.listdir(folder)) == before  # nothing written into the dataset
    finally:
        os.chmod(folder, 0o755)
    index = sorted(os.listdir(cache / "index"))
    assert len(index) == len(paths) and all(name.endswith(".evlidx") for name in index), index
    reader = evloader.EventReader(paths[0])
    assert reader.event_count() == N_EVENTS and reader.index_path.startswith(str(cache))


# --- a full disk during precompute --------------------------------------------------------------------------
FSIZE_LIMIT = 64 << 10  # bytes per file; every tensor file here is larger


LABEL_MAP = '{"0": "pedestrian", "1": "car"}'


@pytest.fixture(scope="module")
def precompute_input(tmp_path_factory):
    """A train/ folder of three recordings with their box labels, and the dataset's label map."""
    root = tmp_path_factory.mktemp("precompute_in")
    folder = root / "train"
    paths = write_recordings(folder, count=3, n=200_000, kinds=("evt3", "dat", "evt2"))
    for path in paths:
        boxes = np.zeros(20, dtype=evloader.EventBbox)
        boxes["t"] = evloader.open_reader(path).load_n_events(1)["t"][0] + 50_000 * np.arange(20)
        boxes["w"] = boxes["h"] = 8
        evloader.write_boxes(path.replace("_td.dat", "_bbox.npy").replace(".raw", "_bbox.npy"), boxes)
    (root / "label_map_dictionary.json").write_text(LABEL_MAP)
    return folder, paths


def precompute_cmd(folder, out):
    return [sys.executable, "-m", "evloader", "precompute", str(folder), str(out), "--delta-t", "20000", "-j", "2",
            "-q"]


def all_files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def run_precompute_on_a_full_disk(folder, out, limit=FSIZE_LIMIT):
    def limit_file_size():  # runs in the child between fork and exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(precompute_cmd(folder, out), preexec_fn=limit_file_size, capture_output=True,
                          text=True, timeout=120)


def test_full_disk_during_precompute_leaves_no_partial_output(precompute_input, tmp_path):
    folder, paths = precompute_input
    out = tmp_path / "out"
    proc = run_precompute_on_a_full_disk(folder, out)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    for p in paths:  # every recording failed, and says why
        assert any(p in line and "File too large" in line for line in proc.stderr.splitlines()), proc.stderr
    # No temporary, no tensor file nor its labels (none was complete); the small label map was copied whole.
    assert all_files(out) == ["label_map_dictionary.json"]
    assert (out / "label_map_dictionary.json").read_text() == LABEL_MAP

    done = subprocess.run(precompute_cmd(folder, out), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names = [os.path.basename(p).replace("_td.dat", "").replace(".raw", "") for p in paths]
    assert all_files(out) == sorted([f"{n}.h5" for n in names] + [f"{n}_bbox.npy" for n in names] +
                                    ["label_map_dictionary.json"])
    for n in names:
        assert len(TensorFileReader(out / f"{n}.h5")) > 0


def test_full_disk_at_the_label_map_leaves_nothing(precompute_input, tmp_path):
    folder, _ = precompute_input
    out = tmp_path / "out"
    proc = run_precompute_on_a_full_disk(folder, out, limit=16)  # not even the label map fits
    assert proc.returncode == 1, proc.stderr
    assert "label_map_dictionary.json: cannot copy the label map (File too large)" in proc.stderr, proc.stderr
    assert all_files(out) == []


def test_full_disk_during_precompute_exits_without_a_crash(precompute_input, tmp_path):
    folder, _ = precompute_input
    proc = run_precompute_on_a_full_disk(folder, tmp_path / "out")
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])


# --- Ctrl-C ---------------------------------------------------------------------------------------------
INTERRUPTED_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from evloader.data import SequentialDataLoader
    from evloader.data.cd_processor_dataset import CDProcessorDataLoader

    kind, paths = sys.argv[1], sys.argv[2:]

    def load_labels(metadata, start, duration, tensor):
        n = len(range(0, duration, metadata.delta_t))
        return [torch.zeros(2) for _ in range(n)], np.zeros(n, dtype=bool)

    if kind == "sequential":
        loader = SequentialDataLoader(paths, 10000, "histo", [4, 2, 48, 64], batch_size=2, num_workers=2,
                                      load_labels=load_labels)
    else:
        loader = CDProcessorDataLoader(paths, "delta_t", 10000, 0, None, "histo", 4, 2, num_workers=2,
                                       load_labels=load_labels)
    batches = 0
    while True:  # epochs until interrupted
        for batch in loader:
            batches += 1
            if batches == 5:
                print("running", flush=True)
""")


@pytest.mark.parametrize("kind", ["sequential", "cd_processor"])
def test_sigint_in_the_middle_of_an_epoch_exits_promptly(kind, pristine, tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(INTERRUPTED_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), kind] + pristine, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        time.sleep(0.2)
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert elapsed < 10
    # Python's own exit for an uncaught KeyboardInterrupt: killed by SIGINT, after the traceback.
    assert proc.returncode in (-signal.SIGINT, 130), (proc.returncode, err[-2000:])
    assert "KeyboardInterrupt" in err, err[-2000:]
    assert "leaked" not in err, err[-2000:]  # the engine and its hooks were freed before the interpreter


@pytest.mark.parametrize("kind", ["sequential", "cd_processor"])
def test_keyboard_interrupt_in_the_loop_body_stops_the_workers(kind, pristine):
    base = threads()
    loader = make_loader(kind, pristine)
    reference = epoch_events(loader)
    with pytest.raises(KeyboardInterrupt):
        for i, _ in enumerate(loader):
            if i == 3:
                raise KeyboardInterrupt
    assert threads() == base  # the abandoned iteration stopped its workers at once
    assert epoch_events(loader) == reference  # and the next epoch is whole
    loader.close()
    del loader
    assert threads() == base


def test_sigint_during_precompute_leaves_no_partial_file(precompute_input, tmp_path):
    folder, paths = precompute_input
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # A small delta_t makes many frames: the run lasts long enough to be interrupted in the middle.
    cmd = [sys.executable, "-m", "evloader", "precompute", str(folder), str(out), "--delta-t", "200", "-j", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the first temporary output appears
            if out.exists() and any(".tmp-" in f for f in all_files(out)):
                break
            assert proc.poll() is None, "precompute ended before it could be interrupted"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=20)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert elapsed < 10
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "interrupted" in err
    left = all_files(out)
    assert [f for f in left if ".tmp" in f or os.path.basename(f).startswith(".")] == [], left
    for f in left:
        if f.endswith(".h5"):
            assert len(TensorFileReader(out / f)) > 0
