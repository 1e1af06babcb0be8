# SPDX-License-Identifier: Apache-2.0
"""The Python reader/writer contract on generated recordings: dtypes, zero copy, round trips, iterators,
the time index, bad input and threads."""
import json
import os
import threading

import numpy as np
import pytest

import evloader
from evloader import cli
from conftest import canonical, make_events


@pytest.fixture(params=["evt3", "evt2", "evt21", "dat"])
def recording(request, tmp_path):
    """(path, events) of a generated recording in each writable format."""
    events = make_events(60_000, seed=7, t0=1_000_000)
    if request.param == "dat":
        path = tmp_path / "rec_td.dat"
        with evloader.DatWriter(path, 640, 480) as w:
            w.write(events)
    else:
        path = tmp_path / f"rec_{request.param}.raw"
        with evloader.RawWriter(path, request.param, 640, 480) as w:
            w.write(events[:25_000])
            w.write(events[25_000:])
    return path, events


def test_event_dtype_is_metavision_layout():
    d = evloader.EventCD
    assert d.itemsize == 16
    assert [d.fields[n][1] for n in ("x", "y", "p", "t")] == [0, 2, 4, 8]
    assert [str(d.fields[n][0]) for n in ("x", "y", "p", "t")] == ["uint16", "uint16", "int16", "int64"]
    trig = evloader.EventExtTrigger
    assert trig.itemsize == 24 and [trig.fields[n][1] for n in ("p", "t", "id")] == [0, 8, 16]
    assert evloader.EventBbox.itemsize == 40


def test_round_trip_every_format(recording):
    path, events = recording
    reader = evloader.open_reader(path)
    got = reader.load_all()
    assert got.dtype == evloader.EventCD
    assert not got.flags.owndata  # a view of the C++ buffer, not a copy
    np.testing.assert_array_equal(canonical(got), canonical(events))
    assert reader.geometry == (640, 480)
    assert reader.event_count() == len(events)
    assert reader.first_timestamp() == events["t"][0] and reader.last_timestamp() == events["t"][-1]


def test_load_delta_t_slices_partition_the_stream(recording):
    path, events = recording
    reader = evloader.open_reader(path)
    reader.seek_time(1_000_000)
    pieces, start = [], 1_000_000
    while not reader.is_done():
        s = reader.load_delta_t(777)
        assert np.all((s["t"] >= start) & (s["t"] < start + 777))
        start += 777
        assert reader.current_time() == start
        pieces.append(s)
    np.testing.assert_array_equal(canonical(np.concatenate(pieces)), canonical(events))


def test_load_n_events_and_mixed(recording):
    path, events = recording
    reader = evloader.open_reader(path)
    first = reader.load_n_events(1000)
    assert len(first) == 1000 and reader.current_time() == first["t"][-1]
    reader.reset()
    reader.seek_time(int(events["t"][0]))
    mixed = reader.load_mixed(50, 1_000_000)  # the count limit is hit first
    assert len(mixed) == 50 and reader.current_time() == mixed["t"][-1]
    t = reader.current_time()
    mixed = reader.load_mixed(10_000_000, 10)  # the time limit is hit first
    assert np.all(mixed["t"] < t + 10) and reader.current_time() == t + 10


@pytest.mark.parametrize("bad", [0, -5])
def test_invalid_parameters_raise_value_error(recording, bad):
    reader = evloader.open_reader(recording[0])
    with pytest.raises(ValueError):
        reader.load_delta_t(bad)
    with pytest.raises(ValueError):
        reader.load_n_events(bad)
    with pytest.raises(ValueError):
        evloader.EventsIterator(str(recording[0]), delta_t=bad)


def test_events_iterator_modes(recording):
    path, events = recording
    t0 = 1_000_000
    by_time = list(evloader.EventsIterator(str(path), start_ts=t0, delta_t=1000, do_time_shifting=False))
    np.testing.assert_array_equal(canonical(np.concatenate(by_time)), canonical(events))
    by_count = list(evloader.EventsIterator(str(path), mode="n_events", n_events=7000, do_time_shifting=False))
    assert [len(s) for s in by_count[:-1]] == [7000] * (len(by_count) - 1)
    assert sum(len(s) for s in by_count) == len(events)
    mixed = list(evloader.EventsIterator(str(path), mode="mixed", start_ts=t0, delta_t=2000, n_events=300,
                                         do_time_shifting=False))
    assert max(len(s) for s in mixed) == 300
    assert sum(len(s) for s in mixed) == len(events)
    limited = evloader.EventsIterator(str(path), start_ts=t0, delta_t=1000, max_duration=5000,
                                      relative_timestamps=True, do_time_shifting=False)
    slices = list(limited)
    assert len(slices) == 5 and all(np.all((s["t"] >= 0) & (s["t"] < 1000)) for s in slices)
    assert limited.get_current_time() == t0 + 5000
    with pytest.raises(ValueError):
        evloader.EventsIterator(str(path), start_ts=1500, delta_t=1000)
    with pytest.raises(ValueError):
        evloader.EventsIterator(str(path), mode="n_events", start_ts=1000)


def test_triggers_round_trip(tmp_path):
    events = make_events(5000, seed=3)
    triggers = np.zeros(6, dtype=evloader.EventExtTrigger)
    triggers["t"] = np.linspace(events["t"][0], events["t"][-1], 6).astype(np.int64)
    triggers["p"] = [1, 0, 1, 0, 1, 0]
    triggers["id"] = [0, 0, 1, 1, 2, 2]
    for encoding in ("evt3", "evt2", "evt21"):
        path = tmp_path / f"trig_{encoding}.raw"
        with evloader.RawWriter(path, encoding, 640, 480) as w:
            w.write(events, triggers)
        reader = evloader.open_reader(path)
        reader.load_all()
        np.testing.assert_array_equal(reader.get_ext_trigger_events(), triggers)
        assert reader.trigger_count() == 6


def test_index_sidecar_is_reused_and_rebuilt_when_the_file_changes(tmp_path):
    path = tmp_path / "rec.raw"
    with evloader.RawWriter(path, "evt3", 640, 480) as w:
        w.write(make_events(20_000, seed=1))
    reader = evloader.open_reader(path)
    assert reader.event_count() == 20_000
    sidecar = str(path) + ".evlidx"
    assert reader.index_path == sidecar and os.path.exists(sidecar)
    again = evloader.open_reader(path)
    again.build_index()
    assert again.index_path == sidecar and again.event_count() == 20_000
    with evloader.RawWriter(path, "evt3", 640, 480) as w:  # same path, other content
        w.write(make_events(30_000, seed=2))
    os.utime(path, ns=(1, 1))  # even if the mtime were to collide, the size differs
    assert evloader.open_reader(path).event_count() == 30_000


def test_corrupt_sidecar_is_ignored(tmp_path):
    path = tmp_path / "rec.raw"
    with evloader.RawWriter(path, "evt3", 640, 480) as w:
        w.write(make_events(20_000, seed=1))
    evloader.open_reader(path).build_index()
    sidecar = str(path) + ".evlidx"
    data = bytearray(open(sidecar, "rb").read())
    data[200] ^= 0xFF
    open(sidecar, "wb").write(bytes(data))
    reader = evloader.open_reader(path)
    assert reader.event_count() == 20_000
    reader.seek_event(12_345)
    assert reader.current_event_index() == 12_345


def test_read_only_folder_puts_index_in_cache(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "rec.raw"
    with evloader.RawWriter(path, "evt3", 640, 480) as w:
        w.write(make_events(1000))
    folder.chmod(0o555)
    try:
        reader = evloader.open_reader(path)
        reader.build_index()
        assert reader.index_path.startswith(os.environ["EVLOADER_CACHE_DIR"])
        assert os.listdir(folder) == ["rec.raw"]
        again = evloader.open_reader(path)
        again.build_index()  # found in the cache, not rebuilt
        assert again.index_path == reader.index_path
    finally:
        folder.chmod(0o755)


def test_cache_storage_never_writes_next_to_the_recording(tmp_path):
    path = tmp_path / "rec.raw"
    with evloader.RawWriter(path, "evt3", 640, 480) as w:
        w.write(make_events(1000))
    reader = evloader.open_reader(path, index="cache")
    reader.build_index()
    assert not os.path.exists(str(path) + ".evlidx")
    assert reader.index_path.startswith(os.environ["EVLOADER_CACHE_DIR"])
    memory = evloader.open_reader(path, index="memory")
    memory.build_index()
    assert memory.index_path is None


def test_missing_and_directory_paths_raise_os_error(tmp_path):
    with pytest.raises(OSError, match="no such file") as info:
        evloader.open_reader(tmp_path / "missing.raw")
    assert "missing.raw" in str(info.value)
    assert isinstance(info.value, evloader.IoError)
    with pytest.raises(OSError, match="directory"):
        evloader.open_reader(tmp_path)


def test_empty_and_unknown_files_raise_format_error(tmp_path):
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.raw") as info:
        evloader.open_reader(empty)
    assert isinstance(info.value, evloader.FormatError)
    unknown = tmp_path / "notes.txt"
    unknown.write_bytes(b"hello world\n" * 10)
    with pytest.raises(evloader.FormatError, match="unknown recording format"):
        evloader.open_reader(unknown)
    evt4 = tmp_path / "evt4.raw"
    evt4.write_bytes(b"% format EVT4;height=720;width=1280\n% end\n" + bytes(64))
    with pytest.raises(evloader.FormatError, match="EVT4"):
        evloader.open_reader(evt4)


def test_header_only_recordings_are_empty(tmp_path):
    path = tmp_path / "header_only.raw"
    path.write_bytes(b"% evt 3.0\n% geometry 640x480\n% end\n")
    reader = evloader.open_reader(path)
    assert reader.is_done() and len(reader.load_all()) == 0 and reader.event_count() == 0
    assert reader.duration() == 0


def test_garbage_after_header_is_counted_or_raised(tmp_path):
    path = tmp_path / "garbage.raw"
    rng = np.random.default_rng(5)
    path.write_bytes(b"% evt 3.0\n% geometry 640x480\n% end\n" + rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    reader = evloader.open_reader(path)
    events = reader.load_all()
    assert np.all(events["x"] < 640) and np.all(events["y"] < 480)
    assert reader.stats().violations > 0
    strict = evloader.open_reader(path, on_violation="raise")
    with pytest.raises(evloader.FormatError, match=r"garbage\.raw: .* at byte \d+"):
        strict.load_all()


def test_truncated_file_counts_the_partial_word(tmp_path):
    path = tmp_path / "cut.raw"
    with evloader.RawWriter(path, "evt2", 640, 480) as w:
        w.write(make_events(1000))
    data = path.read_bytes()
    path.write_bytes(data[:-2])  # half a 32-bit word
    reader = evloader.open_reader(path)
    events = reader.load_all()
    assert 990 <= len(events) <= 1000
    assert reader.stats().truncated_bytes == 2


def test_coordinates_beyond_geometry_are_dropped_and_counted(tmp_path):
    path = tmp_path / "wide.raw"
    events = make_events(10_000, width=1280, height=720)
    with evloader.RawWriter(path, "evt3", 1280, 720) as w:
        w.write(events)
    reader = evloader.open_reader(path, width=640, height=480)
    got = reader.load_all()
    inside = (events["x"] < 640) & (events["y"] < 480)
    np.testing.assert_array_equal(canonical(got), canonical(events[inside]))
    assert reader.stats().out_of_bounds == int((~inside).sum())


def test_writer_rejects_bad_events(tmp_path):
    events = make_events(100)
    unsorted = events.copy()
    unsorted["t"] = unsorted["t"][::-1]
    unsorted["t"][0] += 1000
    with pytest.raises(ValueError):
        with evloader.RawWriter(tmp_path / "a.raw", "evt3", 640, 480) as w:
            w.write(unsorted)
    outside = events.copy()
    outside["x"][5] = 700
    with pytest.raises(ValueError, match="outside"):
        with evloader.RawWriter(tmp_path / "b.raw", "evt3", 640, 480) as w:
            w.write(outside)


def test_writer_accepts_other_field_orders(tmp_path):
    # expelliarmus-style arrays (t, x, y, p) are converted field by field.
    events = make_events(2000)
    other = np.zeros(len(events), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    for name in ("t", "x", "y", "p"):
        other[name] = events[name]
    with evloader.RawWriter(tmp_path / "c.raw", "evt2", 640, 480) as w:
        w.write(other)
    got = evloader.open_reader(tmp_path / "c.raw").load_all()
    np.testing.assert_array_equal(canonical(got), canonical(events))


def test_streaming_decoder_matches_file_reader(tmp_path):
    path = tmp_path / "s.raw"
    events = make_events(5000)
    with evloader.RawWriter(path, "evt3", 640, 480) as w:
        w.write(events)
    data = path.read_bytes()
    body = data[data.index(b"% end\n") + 6:]
    decoder = evloader.Decoder("evt3", 640, 480)
    parts = [decoder.decode(body[i:i + 777])[0] for i in range(0, len(body), 777)]
    np.testing.assert_array_equal(canonical(np.concatenate(parts)), canonical(events))


def test_boxes_round_trip_and_legacy_layout(tmp_path):
    boxes = np.zeros(3, dtype=evloader.EventBbox)
    boxes["t"] = [10, 20, 20]
    boxes["x"], boxes["w"], boxes["class_id"] = [1.5, 2, 3], [10, 20, 30], [0, 1, 2]
    boxes["class_confidence"] = [0.5, 1, 1]
    evloader.write_boxes(tmp_path / "a_bbox.npy", boxes)
    np.testing.assert_array_equal(np.load(tmp_path / "a_bbox.npy"), boxes)
    np.testing.assert_array_equal(evloader.read_boxes(tmp_path / "a_bbox.npy"), boxes)
    legacy = np.zeros(2, dtype=[("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
                                ("class_id", "u1"), ("confidence", "<f4"), ("track_id", "<u4")])
    legacy["ts"], legacy["class_id"], legacy["confidence"], legacy["track_id"] = [5, 6], [1, 0], [0.25, 0.75], [7, 8]
    np.save(tmp_path / "legacy_bbox.npy", legacy)
    got = evloader.read_boxes(tmp_path / "legacy_bbox.npy")
    assert got.dtype == evloader.EventBbox
    np.testing.assert_array_equal(got["t"], [5, 6])
    np.testing.assert_array_equal(got["class_confidence"], np.float32([0.25, 0.75]))
    np.testing.assert_array_equal(got["track_id"], [7, 8])


def test_readers_run_in_parallel_threads(tmp_path):
    path = tmp_path / "par.raw"
    events = make_events(200_000)
    with evloader.RawWriter(path, "evt3", 640, 480) as w:
        w.write(events)
    expected = len(events)
    results = []

    def work():
        r = evloader.open_reader(path, index="memory")
        n = 0
        while not r.is_done():
            n += len(r.load_n_events(10_000))
        results.append(n)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


def test_cli_info_json(tmp_path, capsys):
    assert cli.main(["synth", str(tmp_path), "--events", "5000"]) == 0
    capsys.readouterr()
    path = tmp_path / "synthetic_evt3.raw"
    assert cli.main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["events"] == 5000 and info["encoding"] == "EVT3"
    assert (info["width"], info["height"]) == (640, 480)
    assert info["triggers"] == 4 and info["violations"] == 0
    assert cli.main(["info", str(tmp_path / "nope.raw")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_import_has_no_side_effects():
    import subprocess
    import sys
    code = "import sys, evloader; assert 'torch' not in sys.modules; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"
