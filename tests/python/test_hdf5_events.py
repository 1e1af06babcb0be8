# SPDX-License-Identifier: Apache-2.0
"""Metavision HDF5 event files from Python: the real recordings against SOURCES.md and their RAW twins,
our writer's round trips, seeking against a linear scan, damaged chunks, the ECF codec, and h5py
interoperability in both directions once evloader.hdf5.register_ecf_filter() ran."""
import json
import subprocess
import sys
import threading

import numpy as np
import pytest

import evloader
import evloader.hdf5 as eh
from evloader import cli
from conftest import make_events

REFERENCE = {
    "evt2_gen3_faery.hdf5": (521252, 913716224, 913812095, 128979953, 216346680, 185861, 476298094656969, (640, 480)),
    "evt3_gen41_expelliarmus.hdf5": (219596, 11718656, 11727457, 159113225, 85638051, 115532, 2574324900467,
                                     (1280, 720)),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_real_file_matches_reference_numbers(real_dir, name):
    n, first, last, sx, sy, sp, st, geometry = REFERENCE[name]
    reader = evloader.open_reader(real_dir / name, index="memory")
    assert reader.format == "hdf5" and reader.encoding == "HDF5 (ECF)"
    assert reader.geometry == geometry
    ev = reader.load_all()
    assert len(ev) == n
    assert (ev["t"][0], ev["t"][-1]) == (first, last)
    assert int(ev["x"].sum()) == sx and int(ev["y"].sum()) == sy
    assert int(ev["p"].sum()) == sp and int(ev["t"].sum()) == st
    assert reader.stats().violations == 0
    assert reader.event_count() == n and reader.duration() == last - first


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_real_file_equals_its_raw_twin(real_dir, name):
    hdf5 = evloader.open_reader(real_dir / name, index="memory").load_all()
    raw = evloader.open_reader(real_dir / name.replace(".hdf5", ".raw"), index="memory").load_all()
    np.testing.assert_array_equal(hdf5, raw)


def test_seek_time_equals_linear_scan(real_dir):
    path = real_dir / "evt2_gen3_faery.hdf5"
    everything = evloader.open_reader(path, index="memory").load_all()
    reader = evloader.open_reader(path, index="memory")
    rng = np.random.default_rng(1)
    for t in [0, int(everything["t"][0]), int(everything["t"][-1]) + 1,
              *rng.integers(everything["t"][0], everything["t"][-1], 25)]:
        reader.seek_time(int(t))
        first = int(np.searchsorted(everything["t"], t, side="left"))
        assert reader.current_event_index() == first
        np.testing.assert_array_equal(reader.load_n_events(64), everything[first:first + 64])


def test_events_iterator_and_cli_info(real_dir, capsys):
    path = real_dir / "evt3_gen41_expelliarmus.hdf5"
    slices = list(evloader.EventsIterator(str(path), delta_t=1000, index="memory"))
    assert sum(len(s) for s in slices) == 219596
    assert cli.main(["info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "hdf5" and info["encoding"] == "HDF5 (ECF)"
    assert info["events"] == 219596 and (info["width"], info["height"]) == (1280, 720)
    assert info["duration_us"] == 11727457 - 11718656


def test_writer_round_trips_events_and_triggers(tmp_path):
    events = make_events(70000, seed=3, t0=10_000_000)
    triggers = np.zeros(300, dtype=evloader.EventExtTrigger)
    triggers["t"] = np.sort(np.random.default_rng(4).integers(events["t"][0], events["t"][-1], 300))
    triggers["p"] = np.arange(300) % 2
    triggers["id"] = 2
    path = tmp_path / "out.hdf5"
    with eh.HDF5EventWriter(path, 640, 480, attributes={"serial_number": "42", "time_shift": 10_000_000},
                            chunk_events=5000) as writer:
        for part in np.array_split(events, 7):
            writer.write(part)
        writer.write_triggers(triggers)
        assert writer.events_written == len(events)
    reader = evloader.open_reader(path, index="memory")
    assert reader.header["serial_number"] == "42" and reader.geometry == (640, 480)
    np.testing.assert_array_equal(reader.load_all(), events)
    np.testing.assert_array_equal(reader.get_ext_trigger_events(), triggers)
    shifted = evloader.open_reader(path, index="memory", time_origin="metavision")
    assert shifted.time_shift() == 10_000_000
    assert shifted.load_n_events(1)["t"][0] == events["t"][0] - 10_000_000


def test_writer_converts_other_layouts_and_refuses_unsorted(tmp_path):
    events = make_events(1000, seed=5)
    other = np.zeros(len(events), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    for name in ("t", "x", "y", "p"):
        other[name] = events[name]
    eh.write_hdf5(tmp_path / "other.hdf5", other)
    np.testing.assert_array_equal(evloader.open_reader(tmp_path / "other.hdf5", index="memory").load_all(), events)
    with pytest.raises(evloader.ConfigError):
        eh.write_hdf5(tmp_path / "bad.hdf5", events[::-1])
    with pytest.raises(evloader.ConfigError):
        eh.HDF5EventWriter(tmp_path / "bad.hdf5", chunk_events=100000)


def test_ecf_codec_round_trips_every_mode():
    events = make_events(5003, width=1280, height=720, seed=6)
    for mode in (None, "masked_x", "pack_xp", "pack_yxp"):
        chunk = eh.ecf_encode(events, mode)
        np.testing.assert_array_equal(eh.ecf_decode(chunk), events)
    with pytest.raises(evloader.FormatError):
        eh.ecf_decode(eh.ecf_encode(events)[:-3])
    with pytest.raises(evloader.ConfigError):
        eh.ecf_encode(events, "zip")


def test_damaged_chunk_is_a_format_error_naming_file_and_chunk(tmp_path):
    events = make_events(40000, seed=7)
    path = tmp_path / "damaged.hdf5"
    eh.write_hdf5(path, events, width=640, height=480)
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "r") as f:
        info = f["CD/events"].id.get_chunk_info(1)
    data = bytearray(path.read_bytes())
    data[info.byte_offset:info.byte_offset + 4] = (3 | (16384 << 2)).to_bytes(4, "little")  # both mode bits
    path.write_bytes(bytes(data))
    reader = evloader.open_reader(path, index="memory")
    with pytest.raises(evloader.FormatError, match=r"damaged\.hdf5.*chunk 1"):
        reader.load_all()


def test_tensor_file_is_refused_with_a_clear_message(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "tensors.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros((2, 3), np.float32))
    with pytest.raises(evloader.FormatError, match="tensor file"):
        evloader.open_reader(path)


def test_threads_read_in_parallel(real_dir):
    path = real_dir / "evt2_gen3_faery.hdf5"
    expected = evloader.open_reader(path, index="memory").load_all()
    results = [None] * 4

    def work(i):
        results[i] = evloader.open_reader(path, index="memory").load_all()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)


# --- h5py, side by side in one process -----------------------------------------------------------------
def test_import_evloader_registers_nothing():
    # A fresh interpreter: importing evloader (and evloader.hdf5) must leave h5py's filter table alone.
    code = ("import h5py, evloader, evloader.hdf5; "
            "assert not h5py.h5z.filter_avail(0x8ECF); "
            "assert evloader.hdf5.register_ecf_filter(); assert h5py.h5z.filter_avail(0x8ECF); "
            "assert evloader.hdf5.register_ecf_filter()")
    pytest.importorskip("h5py")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_h5py_reads_real_and_our_files_after_registration(real_dir, tmp_path):
    h5py = pytest.importorskip("h5py")
    assert eh.register_ecf_filter()
    ours = evloader.open_reader(real_dir / "evt2_gen3_faery.hdf5", index="memory").load_all()
    with h5py.File(real_dir / "evt2_gen3_faery.hdf5", "r") as f:
        theirs = f["CD/events"][:]
        assert int(f["CD/events"].id.get_num_chunks()) == 32
    np.testing.assert_array_equal(theirs.view(evloader.EventCD), ours)
    path = tmp_path / "ours.hdf5"
    triggers = np.zeros(3, dtype=evloader.EventExtTrigger)
    triggers["t"] = [ours["t"][0], ours["t"][100], ours["t"][-1]]
    eh.write_hdf5(path, ours, triggers, width=640, height=480, attributes={"format": "EVT2;height=480;width=640"})
    with eh.open_h5py(path) as f:
        np.testing.assert_array_equal(f["CD/events"][:].view(evloader.EventCD), ours)
        np.testing.assert_array_equal(f["CD/events"][123456:123460].view(evloader.EventCD), ours[123456:123460])
        np.testing.assert_array_equal(f["EXT_TRIGGER/events"][:].view(evloader.EventExtTrigger), triggers)
        assert f.attrs["geometry"] == "640x480" and f.attrs["version"] == "1.0"
        with h5py.File(real_dir / "evt2_gen3_faery.hdf5", "r") as g:
            np.testing.assert_array_equal(f["CD/indexes"][:], g["CD/indexes"][:])
            assert f["CD/indexes"].attrs["offset"] == g["CD/indexes"].attrs["offset"]
        assert f["CD/events"]._filters.keys() == {str(eh.ECF_FILTER_ID)}


def test_h5py_writes_through_our_filter_and_we_read_it(tmp_path):
    h5py = pytest.importorskip("h5py")
    eh.register_ecf_filter()
    events = make_events(40000, seed=8)
    path = tmp_path / "by_h5py.hdf5"
    with h5py.File(path, "w") as f:
        f.create_group("CD").create_dataset("events", data=events, chunks=(16384,), compression=eh.ECF_FILTER_ID)
        f.attrs["geometry"] = "640x480"
    reader = evloader.open_reader(path, index="memory")
    assert reader.encoding == "HDF5 (ECF)" and reader.geometry == (640, 480)
    np.testing.assert_array_equal(reader.load_all(), events)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["CD/events"][:], events)
