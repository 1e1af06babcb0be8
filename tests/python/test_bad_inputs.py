# SPDX-License-Identifier: Apache-2.0
"""The bad-input catalogue of docs/robustness.md: every row without a test elsewhere is checked here.

Each test feeds evloader one kind of damaged file, wrong parameter or inconsistent dataset and asserts what the
catalogue says: the exception type and the gist of its message (naming the file), or the counted violation,
or the warning. Known bugs are ``xfail`` with the reason; the ones that could crash or exhaust memory run in a
child process under an address-space limit so that pytest itself survives them.
"""
import os
import struct
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import evloader
from conftest import make_events

W, H = 64, 48


def _raw(path, events=None, encoding="evt3", width=W, height=H):
    events = make_events(3000, width=width, height=height, max_gap=200) if events is None else events
    with evloader.RawWriter(path, encoding, width, height) as w:
        w.write(events)
    return str(path), events


def _body(path):
    data = open(path, "rb").read()
    return data[data.index(b"% end\n") + 6:]


def _run_limited(code: str, limit_gib: int = 3, timeout: int = 120):
    """Run `code` in a child Python limited to `limit_gib` GiB of address space: a huge allocation fails
    there (MemoryError, std::bad_alloc) instead of swapping this machine, and a crash does not take pytest
    down. Returns the CompletedProcess."""
    prelude = ("import resource\n"
               f"resource.setrlimit(resource.RLIMIT_AS, ({limit_gib} << 30, {limit_gib} << 30))\n")
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


# --- RAW header ----------------------------------------------------------------------------------------------

def test_raw_header_without_encoding_asks_for_one(tmp_path):
    path = tmp_path / "nokey.raw"
    path.write_bytes(b"% system_ID 9999\n% end\n" + _body(_raw(tmp_path / "ok.raw")[0]))
    with pytest.raises(evloader.FormatError, match=r"nokey\.raw.*cannot tell the RAW encoding.*encoding"):
        evloader.open_reader(path)
    reader = evloader.open_reader(path, encoding="evt3", width=W, height=H, index="memory")  # the override rescues
    assert len(reader.load_all()) == 3000 and reader.stats().violations == 0


def test_raw_header_overlong_line_is_a_format_error(tmp_path):
    path = tmp_path / "long.raw"
    path.write_bytes(b"% " + b"x" * 100_000 + b"\n% evt 3.0\n% end\n")
    with pytest.raises(evloader.FormatError, match=r"long\.raw.*longer than 65536 bytes"):
        evloader.open_reader(path)


@pytest.mark.parametrize("geometry", [b"0x0", b"-640x480", b"abcxdef", b"99999999999999999999x480", b"640*480"])
def test_raw_header_malformed_geometry(tmp_path, geometry):
    path = tmp_path / "geom.raw"
    path.write_bytes(b"% evt 3.0\n% geometry " + geometry + b"\n% end\n")
    with pytest.raises(evloader.FormatError, match=r"geom\.raw.*malformed geometry"):
        evloader.open_reader(path)


def test_raw_header_keys_that_disagree(tmp_path):
    path = tmp_path / "disagree.raw"
    path.write_bytes(b"% format EVT3;height=480;width=640\n% geometry 1280x720\n% end\n")
    with pytest.raises(evloader.FormatError, match=r"disagree\.raw.*'format' and 'geometry'.*disagree"):
        evloader.open_reader(path)


def test_raw_header_without_end_or_geometry(tmp_path):
    source, events = _raw(tmp_path / "ok.raw")
    body = _body(source)
    no_end = tmp_path / "no_end.raw"
    no_end.write_bytes(b"% evt 3.0\n% geometry 64x48\n" + body)  # data starts at the first non-"% " line
    reader = evloader.open_reader(no_end, index="memory")
    np.testing.assert_array_equal(reader.load_all(), events)
    no_geometry = tmp_path / "no_geometry.raw"
    no_geometry.write_bytes(b"% evt 3.0\n% end\n" + body)
    reader = evloader.open_reader(no_geometry, index="memory")
    assert reader.geometry == (0, 0) and reader.get_size() == (None, None)
    np.testing.assert_array_equal(reader.load_all(), events)


def test_raw_header_geometry_smaller_than_the_events(tmp_path):
    source, events = _raw(tmp_path / "ok.raw", make_events(3000, width=640, height=480), width=640, height=480)
    path = tmp_path / "small.raw"
    path.write_bytes(b"% evt 3.0\n% geometry 64x48\n% end\n" + _body(source))
    reader = evloader.open_reader(path, index="memory")
    got = reader.load_all()
    inside = (events["x"] < 64) & (events["y"] < 48)
    assert len(got) == inside.sum() and np.all(got["x"] < 64) and np.all(got["y"] < 48)
    assert reader.stats().out_of_bounds == (~inside).sum()
    with pytest.raises(evloader.FormatError, match=r"small\.raw.*at byte \d+"):
        evloader.open_reader(path, index="memory", on_violation="raise").load_all()


def test_raw_header_absurd_sensor_size_is_refused(tmp_path):
    source, _ = _raw(tmp_path / "ok.raw")
    path = tmp_path / "huge_geometry.raw"
    path.write_bytes(b"% evt 3.0\n% geometry 99999x99999\n% end\n" + _body(source))
    with pytest.raises(evloader.FormatError, match=r"huge_geometry\.raw.*larger than RAW words can address"):
        evloader.open_reader(path)
    reader = evloader.open_reader(path, width=W, height=H, index="memory")  # an explicit size is trusted
    assert len(reader.load_all()) == 3000


def test_huge_sensor_size_in_a_loader_is_a_memory_error_not_an_abort(tmp_path):
    """A DAT header may claim up to 16383x16383 pixels; a loader sized from it needs gigabytes. Under a 3 GiB
    address-space limit that must end as a Python exception (or work), never as std::terminate."""
    events = make_events(3000, width=W, height=H)
    body = b"".join(struct.pack("<II", int(e["t"]), int(e["x"]) | int(e["y"]) << 14 | int(e["p"]) << 28)
                    for e in events)
    path = tmp_path / "huge_td.dat"
    path.write_bytes(b"% Height 16000\n% Width 16000\n% end\n" + bytes([12, 8]) + body)
    result = _run_limited(f"""
        import evloader
        from evloader.data.cd_processor_dataset import CDProcessorDataLoader
        for kw in ({{}}, {{"height": 50, "width": 50}}):
            try:
                loader = CDProcessorDataLoader([{str(path)!r}], "delta_t", 10000, 0, None, "histo", 2, 1,
                                               num_workers=1, **kw)
                for batch in loader:
                    break
                print("WORKED", kw)
            except (MemoryError, evloader.Error) as error:
                print("RAISED", kw, type(error).__name__, error)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("WORKED") + result.stdout.count("RAISED") == 2, result.stdout


# --- RAW words: EVT 2.0, EVT 2.1, EVT 3.0 (hand-built from formats.md section 1) -------------------------

def _evt2(*words):
    return struct.pack(f"<{len(words)}I", *words)


def _evt21(*words):
    return struct.pack(f"<{len(words)}Q", *words)


def _evt3(*words):
    return struct.pack(f"<{len(words)}H", *words)


EVT2_TH, EVT2_CD_ON, EVT2_RESERVED = 0x8 << 28, 0x1 << 28, 0x2 << 28
EVT21_TH, EVT21_POS, EVT21_RESERVED = 0x8 << 60, 0x1 << 60, 0x2 << 60
EVT3_TH, EVT3_ADDR_Y, EVT3_ADDR_X, EVT3_RESERVED = 0x8000, 0x0000, 0x2000, 0xC000

# (encoding, stream, offending byte, counter): a reserved word type in the middle of a clean stream.
RESERVED_WORDS = [
    ("evt2", _evt2(EVT2_TH | 5, EVT2_CD_ON | 3 << 22 | 10 << 11 | 20, EVT2_RESERVED,
                   EVT2_CD_ON | 4 << 22 | 11 << 11 | 20), 8, "unknown_words"),
    ("evt21", _evt21(EVT21_TH | 5 << 32, EVT21_POS | 3 << 54 | 10 << 43 | 20 << 32 | 1, EVT21_RESERVED,
                     EVT21_POS | 4 << 54 | 11 << 43 | 20 << 32 | 1), 16, "unknown_words"),
    ("evt3", _evt3(EVT3_TH | 1, EVT3_ADDR_Y | 20, EVT3_ADDR_X | 10, EVT3_RESERVED, EVT3_ADDR_X | 11), 6,
     "unknown_words"),
]


@pytest.mark.parametrize("encoding,stream,offset,counter", RESERVED_WORDS, ids=[r[0] for r in RESERVED_WORDS])
def test_reserved_word_types_are_counted_or_raised_at_their_byte(encoding, stream, offset, counter):
    decoder = evloader.Decoder(encoding, 640, 480)
    cd, _ = decoder.decode(stream)
    assert len(cd) == 2 and getattr(decoder.stats, counter) == 1 and decoder.stats.violations == 1
    strict = evloader.Decoder(encoding, 640, 480, on_violation="raise")
    with pytest.raises(evloader.FormatError, match=rf"at byte {offset}\b"):
        strict.decode(stream)


@pytest.mark.parametrize("encoding,stream,offset", [
    ("evt2", _evt2(EVT2_CD_ON | 10 << 11 | 20, EVT2_TH | 5, EVT2_CD_ON | 10 << 11 | 20), 0),
    ("evt21", _evt21(EVT21_POS | 10 << 43 | 20 << 32 | 1, EVT21_TH | 5 << 32,
                     EVT21_POS | 10 << 43 | 20 << 32 | 1), 0),
    ("evt3", _evt3(EVT3_ADDR_Y | 20, EVT3_ADDR_X | 10, EVT3_TH | 1, EVT3_ADDR_Y | 20, EVT3_ADDR_X | 10), 2),
])
def test_events_before_the_first_time_high_are_dropped_and_counted(encoding, stream, offset):
    decoder = evloader.Decoder(encoding, 640, 480)
    cd, _ = decoder.decode(stream)
    assert len(cd) == 1 and decoder.stats.before_time_base == 1
    with pytest.raises(evloader.FormatError, match=rf"at byte {offset}\b"):
        evloader.Decoder(encoding, 640, 480, on_violation="raise").decode(stream)


def test_evt3_vector_before_any_row_and_past_the_width():
    vect_base_x, vect_12 = 0x3000, 0x4000
    no_row = _evt3(EVT3_TH | 1, vect_base_x | 0, vect_12 | 0xFFF, EVT3_ADDR_Y | 3, EVT3_ADDR_X | 1)
    decoder = evloader.Decoder("evt3", 640, 480)
    cd, _ = decoder.decode(no_row)
    assert cd[["x", "y"]].tolist() == [(1, 3)] and decoder.stats.violations >= 1
    past = _evt3(EVT3_TH | 1, EVT3_ADDR_Y | 3, vect_base_x | 636, vect_12 | 0xFFF)
    decoder = evloader.Decoder("evt3", 640, 480)
    cd, _ = decoder.decode(past)
    assert sorted(cd["x"].tolist()) == [636, 637, 638, 639] and decoder.stats.out_of_bounds == 8


def test_evt21_vector_past_the_width_is_checked_per_pixel():
    stream = _evt21(EVT21_TH | 5 << 32, EVT21_POS | 3 << 54 | 630 << 43 | 20 << 32 | 0xFFFF)
    decoder = evloader.Decoder("evt21", 640, 480)
    cd, _ = decoder.decode(stream)
    assert cd["x"].tolist() == list(range(630, 640)) and decoder.stats.out_of_bounds == 6
    with pytest.raises(evloader.FormatError, match=r"at byte 8\b.*outside the sensor"):
        evloader.Decoder("evt21", 640, 480, on_violation="raise").decode(stream)


def test_streams_cut_mid_word_count_the_partial_word():
    cases = [("evt3", _evt3(EVT3_TH | 1, EVT3_ADDR_Y | 2, EVT3_ADDR_X | 3), 1, 2),
             ("evt21", _evt21(EVT21_TH | 5 << 32, EVT21_POS | 10 << 43 | 2 << 32 | 1), 5, 8),
             ("evt2", _evt2(EVT2_TH | 5, EVT2_CD_ON | 10 << 11 | 2), 2, 4)]
    for encoding, stream, cut, word in cases:
        decoder = evloader.Decoder(encoding, 640, 480)
        cd, _ = decoder.decode(stream[:len(stream) - cut])
        decoder.finish()
        assert decoder.stats.truncated_bytes == word - cut and len(cd) == 0


def test_wrong_encoding_forced_on_a_recording(tmp_path):
    path, _ = _raw(tmp_path / "evt3.raw", make_events(20_000, width=640, height=480), width=640, height=480)
    for wrong in ("evt2", "evt21"):
        reader = evloader.open_reader(path, encoding=wrong, index="memory")
        got = reader.load_all()  # nonsense events, but never outside the sensor and never a crash
        assert np.all(got["x"] < 640) and np.all(got["y"] < 480) and np.all(got["p"] <= 1)
        assert reader.stats().violations > 0
        with pytest.raises(evloader.FormatError, match=r"evt3\.raw.*at byte \d+"):
            evloader.open_reader(path, encoding=wrong, index="memory", on_violation="raise").load_all()


# --- DAT -------------------------------------------------------------------------------------------------------

def test_dat_partial_last_record_is_counted(tmp_path):
    path = tmp_path / "cut_td.dat"
    events = make_events(100, width=W, height=H)
    with evloader.DatWriter(path, W, H) as w:
        w.write(events)
    path.write_bytes(path.read_bytes()[:-3])
    reader = evloader.open_reader(path, index="memory")
    np.testing.assert_array_equal(reader.load_all(), events[:-1])
    assert reader.stats().truncated_bytes == 5 and reader.stats().violations == 5


@pytest.mark.parametrize("kind", ["evt2", "evt21", "evt3", "dat"])
def test_file_cut_mid_word_raises_under_the_raise_policy(tmp_path, kind):
    path = tmp_path / ("cut_td.dat" if kind == "dat" else f"cut_{kind}.raw")
    if kind == "dat":
        with evloader.DatWriter(path, W, H) as w:
            w.write(make_events(100, width=W, height=H))
    else:
        _raw(path, make_events(100, width=W, height=H), encoding=kind)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(evloader.FormatError, match=path.name):
        evloader.open_reader(path, index="memory", on_violation="raise").load_all()


@pytest.mark.parametrize("value", [b"abc", b"-5", b"99999999999"])
def test_dat_invalid_height_or_width(tmp_path, value):
    path = tmp_path / "geom_td.dat"
    path.write_bytes(b"% Height " + value + b"\n% Width 640\n% end\n" + bytes([12, 8]) + bytes(16))
    with pytest.raises(evloader.FormatError, match=r"geom_td\.dat"):
        evloader.open_reader(path)


# --- NPY box files -------------------------------------------------------------------------------------------

def _npy(path, header: str, body: bytes = b""):
    h = header.encode()
    h += b" " * ((64 - (10 + len(h) + 1) % 64) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + body)
    return path


BBOX_DESCR = ("[('t', '<i8'), ('x', '<f4'), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), ('class_id', '<u4'), "
              "('track_id', '<u4'), ('class_confidence', '<f4')]")


def test_npy_header_lying_about_its_size_or_nesting(tmp_path):
    huge = _npy(tmp_path / "huge_bbox.npy", f"{{'descr': {BBOX_DESCR}, 'fortran_order': False, "
                                            "'shape': (1000000000000,), }", bytes(40))
    with pytest.raises(evloader.FormatError, match=r"huge_bbox\.npy.*data section holds 40 bytes"):
        evloader.read_boxes(huge)  # refused before any allocation
    negative = _npy(tmp_path / "neg_bbox.npy",
                    f"{{'descr': {BBOX_DESCR}, 'fortran_order': False, 'shape': (-5,), }}")
    with pytest.raises(evloader.FormatError, match=r"neg_bbox\.npy.*non-negative"):
        evloader.read_boxes(negative)
    deep = _npy(tmp_path / "deep_bbox.npy", "{'descr': " + "[" * 5000 + "]" * 5000 +
                ", 'fortran_order': False, 'shape': (1,), }", bytes(40))
    with pytest.raises(evloader.FormatError, match=r"deep_bbox\.npy.*nesting"):
        evloader.read_boxes(deep)


def test_npy_box_array_that_is_not_one_dimensional(tmp_path):
    np.save(tmp_path / "two_bbox.npy", np.zeros((2, 2), dtype=evloader.EventBbox))
    with pytest.raises(evloader.FormatError, match=r"two_bbox\.npy.*1-D"):
        evloader.read_boxes(tmp_path / "two_bbox.npy")


# --- HDF5 event files ----------------------------------------------------------------------------------------

def test_hdf5_event_file_truncated_or_not_an_event_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    from evloader import hdf5

    path = tmp_path / "ev.hdf5"
    hdf5.write_hdf5(path, make_events(3000), width=640, height=480)
    data = path.read_bytes()
    for cut in (0, 100, len(data) // 2, len(data) - 100):
        bad = tmp_path / f"cut{cut}.hdf5"
        bad.write_bytes(data[:cut])
        with pytest.raises(evloader.FormatError, match=rf"cut{cut}\.hdf5 at byte 0: "):
            evloader.open_reader(bad).load_all()
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(evloader.FormatError, match=r"empty\.h5.*no /CD/events"):
        evloader.open_reader(tmp_path / "empty.h5")


def test_hdf5_writer_refuses_bad_arguments(tmp_path):
    from evloader import hdf5

    for kwargs, pattern in [({"chunk_events": -1}, "chunk_events"), ({"chunk_events": 0}, "chunk_events"),
                            ({"width": 640}, "width and height"), ({"width": 1 << 40, "height": 4}, "width"),
                            ({"mode": "zip"}, "ECF mode")]:
        with pytest.raises(evloader.ConfigError, match=pattern):
            hdf5.HDF5EventWriter(tmp_path / "w.hdf5", **kwargs)
    with pytest.raises(evloader.ConfigError, match="outside the sensor"):
        hdf5.write_hdf5(tmp_path / "out.hdf5", make_events(100, width=1280, height=720), width=640, height=480)


# --- HDF5 tensor files ---------------------------------------------------------------------------------------

def test_tensor_file_with_a_malformed_layout(tmp_path):
    h5py = pytest.importorskip("h5py")
    from evloader.tensor_file import TensorFileReader

    def make(name, data, **attrs):
        with h5py.File(tmp_path / name, "w") as f:
            dset = f.create_dataset("data", data=data)
            dset.attrs["events_to_tensor"] = "histo"
            for key, value in {"delta_t": 1000, **attrs}.items():
                dset.attrs[key] = value
        return tmp_path / name

    frames = np.zeros((3, 2, 4, 5), np.float32)
    cases = [(make("dim3.h5", np.zeros((3, 4, 5), np.float32)), "not 4-D"),
             (make("int64.h5", frames.astype(np.int64)), "unsupported element type"),
             (make("negdt.h5", frames, delta_t=-1000), "'delta_t' out of range"),
             (make("zerodt.h5", frames, delta_t=0), "'delta_t' is 0"),
             (make("mode.h5", frames, mode="weird"), "'mode'"),
             (make("nevents.h5", frames, delta_t=0, mode="n_events", n_events=100), "last_timestamps")]
    for path, pattern in cases:
        with pytest.raises(evloader.FormatError, match=pattern) as info:
            TensorFileReader(path)
        assert path.name in str(info.value)


def test_tensor_file_truncated(tmp_path):
    from evloader.tensor_file import TensorFileReader, TensorFileWriter

    path = tmp_path / "t.h5"
    with TensorFileWriter(path, "histo", (2, 24, 32), 1000, (48, 64)) as w:
        w.write(np.random.default_rng(0).random((5, 2, 24, 32), dtype=np.float32))
    data = path.read_bytes()
    for cut in (10, 2000, len(data) // 2, len(data) - 50):
        bad = tmp_path / f"cut{cut}.h5"
        bad.write_bytes(data[:cut])
        with pytest.raises(evloader.IoError, match=rf"cut{cut}\.h5: cannot open the HDF5 file"):
            TensorFileReader(bad)


def test_tensor_writer_and_area_resize_refuse_bad_arguments(tmp_path):
    from evloader.tensor_file import TensorFileWriter, area_resize

    for kwargs, pattern in [({"shape": (2, 0, 64)}, "frame shape must be positive"),
                            ({"delta_t": -1}, "delta_t"), ({"mode": "x"}, "mode"),
                            ({"compression_level": 20}, "compression_level"),
                            ({"compression_threads": 0}, "compression_threads"),
                            ({"kwargs": {"a": [1, 2]}}, "only bool, int, float or str")]:
        args = {"shape": (2, 48, 64), "delta_t": 1000, **kwargs}
        with pytest.raises(evloader.ConfigError, match=pattern):
            TensorFileWriter(tmp_path / "w.h5", "histo", args.pop("shape"), args.pop("delta_t"), (480, 640),
                             **args)
    with TensorFileWriter(tmp_path / "u8.h5", "histo", (2, 48, 64), 1000, (480, 640), dtype=np.uint8) as w:
        with pytest.raises(evloader.ConfigError, match="cannot be stored as uint8"):
            w.write(np.zeros((1, 2, 48, 64), np.float32))
    for h, w in [(-1, 2), (0, 2), (8, 8)]:
        with pytest.raises(evloader.ConfigError, match="area resize"):
            area_resize(np.zeros((4, 4), np.float32), h, w)


# --- AEDAT4 (hand-built with the helpers of test_aedat4.py) -------------------------------------------------

def _aedat4_events(n=300):
    rng = np.random.default_rng(4)
    events = np.zeros(n, dtype=evloader.EventCD)
    events["t"] = 1_600_000_000_000_000 + np.cumsum(rng.integers(0, 5, n))
    events["x"], events["y"], events["p"] = rng.integers(0, 64, n), rng.integers(0, 48, n), rng.integers(0, 2, n)
    return events


def test_aedat4_damaged_container(tmp_path):
    from test_aedat4 import _aedat4, _events_payload

    events = _aedat4_events()
    good = _aedat4([(1, _events_payload(events[:150])), (1, _events_payload(events[150:]))])
    packet = 18 + struct.unpack_from("<I", good, 14)[0]  # first packet header: stream id, size
    cases = {"magic.aedat4": (b"#!AER-DAT3.1\r\n" + good[14:], "magic"),
             "short.aedat4": (good[:30], "IOHeader"),
             "negative.aedat4": (good[:packet + 4] + struct.pack("<i", -8) + good[packet + 8:], "negative size")}
    for name, (data, pattern) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(evloader.FormatError, match=pattern) as info:
            evloader.open_reader(tmp_path / name, index="memory").load_all()
        assert name in str(info.value)
    # Without a file data table a size running past the end cannot be told from a cut recording: what
    # follows is counted as truncated (with a table it is a FormatError "runs past": aedat4_test.cpp).
    size = tmp_path / "size.aedat4"
    size.write_bytes(good[:packet + 4] + struct.pack("<i", 1 << 30) + good[packet + 8:])
    reader = evloader.open_reader(size, index="memory")
    assert len(reader.load_all()) == 0 and reader.stats().truncated_bytes == len(good) - packet
    with pytest.raises(evloader.FormatError, match=r"size\.aedat4"):
        evloader.open_reader(size, index="memory", on_violation="raise").load_all()


def test_aedat4_cut_inside_the_last_packet_keeps_the_first(tmp_path):
    from test_aedat4 import _aedat4, _events_payload

    events = _aedat4_events()
    path = tmp_path / "cut.aedat4"
    path.write_bytes(_aedat4([(1, _events_payload(events[:150])), (1, _events_payload(events[150:]))])[:-100])
    reader = evloader.open_reader(path, index="memory")
    np.testing.assert_array_equal(reader.load_all(), events[:150])
    assert reader.stats().truncated_bytes > 0
    with pytest.raises(evloader.FormatError, match=r"cut\.aedat4"):
        evloader.open_reader(path, index="memory", on_violation="raise").load_all()


def test_aedat4_events_outside_the_sensor_are_dropped_and_counted(tmp_path):
    from test_aedat4 import _aedat4, _events_payload

    events = _aedat4_events(100)
    events["x"][[3, 7]] = 64
    events["y"][9] = 300
    path = tmp_path / "oob.aedat4"
    path.write_bytes(_aedat4([(1, _events_payload(events))]))
    reader = evloader.open_reader(path, index="memory")
    assert len(reader.load_all()) == 97 and reader.stats().out_of_bounds == 3
    with pytest.raises(evloader.FormatError, match=r"oob\.aedat4"):
        evloader.open_reader(path, index="memory", on_violation="raise").load_all()


# --- time-index sidecar --------------------------------------------------------------------------------------

def _indexed_recording(tmp_path):
    path, events = _raw(tmp_path / "rec.raw", make_events(20_000, width=640, height=480, seed=1), width=640,
                        height=480)
    evloader.open_reader(path).build_index()
    return path, events, path + ".evlidx"


def _check_reads(path, events):
    reader = evloader.open_reader(path)
    assert reader.event_count() == len(events)
    reader.seek_event(12_345)
    assert reader.current_event_index() == 12_345
    np.testing.assert_array_equal(reader.load_n_events(10), events[12_345:12_355])


def test_sidecar_empty_truncated_random_or_of_another_recording_is_ignored(tmp_path):
    path, events, sidecar = _indexed_recording(tmp_path)
    good = open(sidecar, "rb").read()
    other, _ = _raw(tmp_path / "other.raw", make_events(20_000, width=640, height=480, seed=2), width=640,
                    height=480)
    evloader.open_reader(other).build_index()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, len(good), dtype=np.uint8).tobytes()
    for content in (b"", good[:len(good) // 2], good[:32], noise, good[:8] + b"\xff" * (len(good) - 8),
                    open(other + ".evlidx", "rb").read()):
        with open(sidecar, "wb") as f:
            f.write(content)
        _check_reads(path, events)


def test_sidecar_path_taken_by_a_directory(tmp_path):
    path, events = _raw(tmp_path / "rec.raw", make_events(5000, width=640, height=480), width=640, height=480)
    os.mkdir(path + ".evlidx")
    reader = evloader.open_reader(path)
    reader.build_index()  # cannot be saved there: kept elsewhere, the recording is read as usual
    assert reader.event_count() == 5000
    np.testing.assert_array_equal(reader.load_all(), events)


def _fnv1a(data: bytes, h: int = 1469598103934665603) -> int:
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def test_sidecar_forged_with_a_valid_checksum_never_leaves_the_sensor(tmp_path):
    """A sidecar is a cache evloader wrote, but one crafted with a correct checksum and absurd decoder states
    (row and vector base far outside the sensor, continuation counts, odd byte offsets) must not crash a
    reader nor change what it reads: such entries are refused and the index rebuilt."""
    path, events, sidecar = _indexed_recording(tmp_path)
    data = bytearray(open(sidecar, "rb").read())
    entry_size, state_at = 88, 24  # IndexEntry: byte_offset, event_index, max_t_before, DecoderState (64 bytes)
    head = next(h for h in range(8, len(data) - 8, 8)
                if (len(data) - 8 - h) % entry_size == 0
                and struct.unpack_from("<Q", data, h - 8)[0] == (len(data) - 8 - h) // entry_size)
    count = (len(data) - 8 - head) // entry_size
    assert count >= 2
    for i in range(1, count):
        entry = head + i * entry_size
        offset = struct.unpack_from("<Q", data, entry)[0]
        struct.pack_into("<Q", data, entry, offset + 1)  # not on a word boundary
        # loops, y, base_x, polarity, has_time_base, y_valid, skip_words, reserved
        struct.pack_into("<8i", data, entry + state_at + 32, 7, 100_000, 2_000_000_000, 5, 1, 1, 1 << 30, -1)
    struct.pack_into("<Q", data, len(data) - 8, _fnv1a(bytes(data[:-8])))
    open(sidecar, "wb").write(bytes(data))
    reader = evloader.open_reader(path)
    assert reader.event_count() == len(events)
    for n in (5_000, 12_345, 19_000):  # the implausible states are refused: the index is rebuilt, seeks exact
        reader.seek_event(n)
        got = reader.load_n_events(500)
        assert np.all(got["x"] < 640) and np.all(got["y"] < 480) and np.all(got["p"] <= 1)
        np.testing.assert_array_equal(got, events[n:n + 500])
    t = int(events["t"][15_000])
    reader.seek_time(t)
    got = reader.load_delta_t(10_000)
    np.testing.assert_array_equal(got, events[(events["t"] >= t) & (events["t"] < t + 10_000)])


# --- label_map_dictionary.json -------------------------------------------------------------------------------

def _label_map(tmp_path, content):
    path = tmp_path / "label_map_dictionary.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def test_label_map_malformed(tmp_path):
    from evloader.data import box_processing as bp

    for content, pattern in [('{"0": "ped"', "not a JSON label map"), ('["a", "b"]', "non-empty JSON object"),
                             ("{}", "non-empty JSON object"), ('{"zero": "ped"}', "class ids must be integers"),
                             ('{"-1": "ped"}', "class id")]:
        path = _label_map(tmp_path, content)
        with pytest.raises(ValueError, match=pattern) as info:
            bp.create_class_lookup(path)
        assert "label_map_dictionary.json" in str(info.value)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        bp.create_class_lookup(str(tmp_path / "nope.json"))


def test_label_map_wanted_keys(tmp_path):
    from evloader.data import box_processing as bp

    path = _label_map(tmp_path, '{"0": "car", "1": "empty"}')
    with pytest.raises(ValueError, match="'truck' not found"):
        bp.create_class_lookup(path, ["truck"])
    with pytest.raises(ValueError, match="other than 'empty'"):
        bp.create_class_lookup(path, ["empty"])


def test_label_map_with_an_absurd_class_id_is_refused(tmp_path):
    path = _label_map(tmp_path, '{"0": "car", "99999999999": "ped"}')
    result = _run_limited(f"""
        from evloader.data import box_processing as bp
        try:
            bp.create_class_lookup({path!r})
        except ValueError as error:
            assert "label_map_dictionary.json" in str(error), error
            print("REFUSED", error)
    """, limit_gib=2)  # a child process: a regression would ask for 745 GiB
    assert result.returncode == 0, result.stderr[-2000:]
    assert "REFUSED" in result.stdout and "class ids must be integers 0..65535" in result.stdout


def test_label_map_not_utf8_names_the_file(tmp_path):
    from evloader.data import box_processing as bp

    for content in (b"\xff\xfe{\x00", b'{"0": "caf\xe9"}'):
        path = _label_map(tmp_path, content)
        with pytest.raises(ValueError, match=r"label_map_dictionary\.json: not a JSON label map"):
            bp.create_class_lookup(path)


# --- wrong parameters: readers, decoders, writers ------------------------------------------------------------

def test_reader_options_are_checked(tmp_path):
    path, _ = _raw(tmp_path / "rec.raw")
    for kwargs, pattern in [({"time_origin": "x"}, "time_origin"), ({"on_violation": "x"}, "on_violation"),
                            ({"index": "x"}, "index must be one of"),
                            ({"width": 10}, "give both width and height"),
                            ({"width": -1, "height": 5}, "must be positive"),
                            ({"encoding": "evt5"}, "unknown RAW encoding"),
                            ({"evt21_order": "big"}, "evt21_order")]:
        with pytest.raises(evloader.ConfigError, match=pattern):
            evloader.open_reader(path, **kwargs)


def test_decoder_and_writer_options_are_checked(tmp_path):
    for kwargs, pattern in [({"evt21_order": "big"}, "evt21_order"), ({"on_violation": "bogus"}, "on_violation")]:
        with pytest.raises(evloader.ConfigError, match=pattern):
            evloader.Decoder("evt21", 640, 480, **kwargs)
    with pytest.raises(evloader.ConfigError, match="unknown RAW encoding"):
        evloader.Decoder("evt9")
    with pytest.raises(evloader.ConfigError, match="evt21_order"):
        evloader.RawWriter(tmp_path / "w.raw", "evt21", 640, 480, evt21_order="big")
    for width, height in [(0, 0), (-5, 480), (5000, 480)]:
        with pytest.raises(evloader.ConfigError, match="geometry must be between"):
            evloader.RawWriter(tmp_path / "g.raw", "evt3", width, height)
    with pytest.raises(evloader.ConfigError, match="geometry"):
        evloader.DatWriter(tmp_path / "g_td.dat", -1, 480)
    with pytest.raises(evloader.ConfigError, match="not sorted"):
        with evloader.RawWriter(tmp_path / "u.raw", "evt3", 640, 480) as w:
            w.write(make_events(100)[::-1])
    with pytest.raises(ValueError, match="events: expected a structured array"):
        with evloader.RawWriter(tmp_path / "d.raw", "evt3", 640, 480) as w:
            w.write(np.zeros(3))
    with pytest.raises(ValueError, match="boxes: expected a structured array"):
        evloader.write_boxes(tmp_path / "b_bbox.npy", np.zeros(3))


def test_reader_calls_out_of_range(tmp_path):
    path, events = _raw(tmp_path / "rec.raw")
    reader = evloader.open_reader(path)
    for call in (lambda: reader.load_delta_t(2 ** 63), lambda: reader.load_n_events(2 ** 64),
                 lambda: reader.load_mixed(10, -(2 ** 70)), lambda: reader.seek_time(2 ** 63),
                 lambda: reader.seek_event(-1), lambda: reader.load_mixed(0, 10)):
        with pytest.raises(evloader.ConfigError):
            call()
    reader.seek_time(-5)  # before the recording: the start
    np.testing.assert_array_equal(reader.load_all(), events)
    reader.seek_event(10 ** 9)  # past the end: done, nothing left
    assert reader.is_done() and len(reader.load_all()) == 0
    for kwargs, pattern in [({"mode": "x"}, "mode"), ({"max_duration": 0}, "max_duration"),
                            ({"mode": "n_events", "n_events": 0}, "n_events")]:
        with pytest.raises(ValueError, match=pattern):
            evloader.EventsIterator(path, **kwargs)
    it = evloader.EventsIterator(path)
    list(it)
    with pytest.raises(RuntimeError, match="only once"):
        list(it)


def test_unknown_preprocessing_name_lists_the_known_ones():
    from evloader import preprocessing as pp

    for call in (lambda: pp.get_preprocess_dict("histogram"),
                 lambda: pp.CDProcessor(4, 4, preprocessing="histogram")):
        with pytest.raises(evloader.ConfigError, match=r"histogram does not exist.*histo, "):
            call()


def test_viz_functions_refuse_wrong_shapes():
    from evloader import preprocessing as pp

    for fn, arg in [(pp.viz_histo, np.zeros((1, 4, 4))), (pp.viz_timesurface, np.zeros((3, 4, 4))),
                    (pp.viz_histo_binarized, np.zeros((4,))), (pp.viz_event_cube_rgb, np.zeros((4, 3, 3)))]:
        with pytest.raises(evloader.ConfigError):
            fn(arg)


# --- wrong parameters and inconsistent datasets: the loaders ------------------------------------------------

@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_inputs_recordings")
    out = {}
    for name, n, seed, w, h in [("a.raw", 20_000, 1, W, H), ("b.raw", 20_000, 2, W, H), ("empty.raw", 0, 0, W, H),
                                ("big.raw", 20_000, 3, 2 * W, 2 * H)]:
        out[name] = _raw(folder / name, make_events(n, width=w, height=h, seed=seed, max_gap=200), width=w,
                         height=h)[0]
    return out


def _sequential(files, array_dim=(4, 2, H, W), delta_t=10_000, preprocess="histo", **kwargs):
    pytest.importorskip("torch")
    from evloader.data import SequentialDataLoader

    kwargs.setdefault("batch_size", 2)
    kwargs.setdefault("num_workers", 1)
    return SequentialDataLoader(files, delta_t, preprocess, list(array_dim), **kwargs)


def test_sequential_loader_parameters(recordings):
    files = [recordings["a.raw"], recordings["b.raw"]]
    for kwargs, error, pattern in [
            ({"batch_size": 0}, evloader.ConfigError, "batch_size must be positive"),
            ({"batch_size": -1}, evloader.ConfigError, "batch_size must be positive"),
            ({"delta_t": 0}, ValueError, "delta_t must be positive"),
            ({"delta_t": -5}, ValueError, "delta_t must be positive"),
            ({"num_workers": -1}, ValueError, "num_workers"), ({"prefetch": 0}, ValueError, "prefetch"),
            ({"preprocess": "histogram"}, evloader.ConfigError, "histogram does not exist"),
            ({"array_dim": (4, 3, H, W)}, ValueError, "'histo' has 2 channels, array_dim asks for 3"),
            ({"array_dim": (4, 2, 40, W)}, ValueError, r"a\.raw: array_dim 40x64 is not the sensor size"),
            ({"array_dim": (4, 2, 2 * H, 2 * W)}, ValueError, "power of two"),
            ({"array_dim": (2, H, W)}, ValueError, "array_dim must be"),
            ({"array_dim": (0, 2, H, W)}, ValueError, "array_dim must be positive"),
            ({"max_consecutive_batch": -1}, evloader.ConfigError, "max_consecutive_batch"),
            ({"rank": 2, "world_size": 2}, evloader.ConfigError, "rank must be in"),
            ({"rank": 0, "world_size": 0}, evloader.ConfigError, "rank must be in"),
            ({"durations": [5]}, ValueError, "1 durations given for 2 files")]:
        with pytest.raises(error, match=pattern):
            _sequential(files, **kwargs)
    with pytest.raises(FileNotFoundError, match=r"missing\.raw: no such recording"):
        _sequential([files[0], os.path.join(os.path.dirname(files[0]), "missing.raw")])


def test_sequential_loader_directory_in_the_list_says_it_is_one(recordings):
    folder = os.path.dirname(recordings["a.raw"])
    with pytest.raises(IsADirectoryError, match=r"is a directory, not a recording.*list the ones in it") as caught:
        _sequential([recordings["a.raw"], folder])
    assert folder in str(caught.value)


def _cd(files, preprocess="histo", **kwargs):
    pytest.importorskip("torch")
    from evloader.data.cd_processor_dataset import CDProcessorDataLoader

    kwargs.setdefault("num_workers", 1)
    return CDProcessorDataLoader(files, "delta_t", 10_000, 0, None, preprocess, 2, 2, **kwargs)


@pytest.mark.parametrize("make", ["sequential", "cd"])
def test_loader_kernel_kwargs_are_checked_at_construction(recordings, make):
    files = [recordings["a.raw"], recordings["b.raw"]]
    build = (lambda **kw: _sequential(files, **kw)) if make == "sequential" else (lambda **kw: _cd(files, **kw))
    # The C++ registry's own messages: the loaders make the kernel once at construction, as their engines do.
    for kwargs, pattern in [({"max_incr_per_pixel": -3}, "histo: max_incr_per_pixel must be > 0"),
                            ({"bogus": 3}, "histo: unknown kwarg 'bogus'"),
                            ({"max_incr_per_pixel": "five"}, "max_incr_per_pixel"),
                            ({"max_incr_per_pixel": [5]}, "max_incr_per_pixel"),
                            ({"max_incr_per_pixel": 2 ** 70}, "max_incr_per_pixel")]:
        with pytest.raises(evloader.ConfigError, match=pattern):
            build(preprocess_kwargs=kwargs)
    with pytest.raises(evloader.ConfigError, match="keys must be strings"):
        build(preprocess_kwargs={3: 5})
    with pytest.raises(evloader.ConfigError, match="event_cube: .*split_polarity"):
        build(preprocess="event_cube", preprocess_kwargs={"split_polarity": "yes"},
              **({"array_dim": (4, 6, H, W)} if make == "sequential" else {}))
    # Valid kwargs, numpy scalars included (as the preprocessing functions take them), give batches; the
    # registry's preprocess_dtype is dropped (the loaders deliver float32).
    loader = build(preprocess_kwargs={"max_incr_per_pixel": np.int64(2), "preprocess_dtype": np.float64})
    batch = next(iter(loader))
    assert batch["inputs"].dtype.is_floating_point and float(batch["inputs"].max()) <= 1.0
    assert float(batch["inputs"].max()) > 0


def test_sequential_loader_time_origin_is_checked(recordings):
    files = [recordings["a.raw"], recordings["b.raw"]]
    for origin in ("x", "Absolute", None, 0):
        with pytest.raises(evloader.ConfigError, match="time_origin must be 'absolute' or 'metavision'"):
            _sequential(files, time_origin=origin)
        with pytest.raises(evloader.ConfigError, match="time_origin must be 'absolute' or 'metavision'"):
            _cd(files, time_origin=origin)
    for origin in ("absolute", "metavision"):
        assert len(_sequential(files, time_origin=origin)) > 0


def test_empty_recording_in_a_slot_warns_that_the_schedule_is_empty(recordings):
    a, b, empty = recordings["a.raw"], recordings["b.raw"], recordings["empty.raw"]
    with pytest.warns(RuntimeWarning, match=r"1 of 3 recordings have no data \(empty\.raw\).*schedule is EMPTY"):
        loader = _sequential([a, empty, b])  # slot 1 holds only empty.raw; no padding
    assert len(loader) == 0
    with pytest.warns(RuntimeWarning, match=r"empty\.raw") as caught:
        padded = _sequential([a, empty, b], padding=True)
    assert not any("EMPTY" in str(w.message) for w in caught)
    assert len(padded) > 0 and sum(1 for _ in padded) == len(padded)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(_sequential([a, b])) > 0  # nothing to say about a clean list


def test_cd_loader_streams_past_an_empty_recording(recordings):
    pytest.importorskip("torch")
    import torch
    from evloader.data.cd_processor_dataset import CDProcessorDataLoader

    a, b, empty = recordings["a.raw"], recordings["b.raw"], recordings["empty.raw"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with_empty = list(CDProcessorDataLoader([a, empty, b], "delta_t", 10_000, 0, None, "histo", 2, 2,
                                                num_workers=1))
    clean = list(CDProcessorDataLoader([a, b], "delta_t", 10_000, 0, None, "histo", 2, 2, num_workers=1))
    assert len(with_empty) == len(clean) > 0  # its slot moves on to the next recording at once
    assert all(torch.equal(x["inputs"], y["inputs"]) for x, y in zip(with_empty, clean))
    assert len(CDProcessorDataLoader([empty], "delta_t", 10_000, 0, None, "histo", 2, 1)) == 0


def test_sequential_loader_mixed_sensor_sizes_are_refused(recordings):
    a, b, big = recordings["a.raw"], recordings["b.raw"], recordings["big.raw"]
    # One downsampling factor for all recordings (metavision_ml's, from the first): a larger sensor would lose
    # its events outside the tensor, a smaller one would fill a corner of it.
    with pytest.raises(evloader.ConfigError,
                       match=r"big\.raw: sensor size 96x128 differs from the 48x64 of .*a\.raw.*factor 0.*"
                             r"outside the tensor.*CDProcessorDataLoader"):
        _sequential([a, b, big], batch_size=1)
    with pytest.raises(evloader.ConfigError,
                       match=r"a\.raw: sensor size 48x64 differs from the 96x128 of .*big\.raw.*factor 1.*corner"):
        _sequential([big, a])
    # One size: fine, downsampled or not.
    assert _sequential([big, big]).dataset.downsampling_factor == 1
    assert _sequential([big, big], array_dim=(4, 2, 2 * H, 2 * W)).dataset.downsampling_factor == 0


def test_cd_loader_mixed_sensor_sizes(recordings):
    pytest.importorskip("torch")
    from evloader.data.cd_processor_dataset import CDProcessorDataLoader

    a, big = recordings["a.raw"], recordings["big.raw"]
    loader = CDProcessorDataLoader([a, big], "delta_t", 10_000, 0, None, "histo", 2, 2, num_workers=1)
    assert (loader.height, loader.width) == (H, W)  # the first recording's size; big.raw is area-downscaled
    assert sum(1 for _ in loader) == len(loader)
    with pytest.raises(evloader.ConfigError, match=r"a\.raw: the sensor \(64x48\) is smaller than the requested"):
        CDProcessorDataLoader([big, a], "delta_t", 10_000, 0, None, "histo", 2, 2)
    with pytest.warns(RuntimeWarning, match=r"skipping a recording: .*a\.raw"):
        skipping = CDProcessorDataLoader([big, a, big], "delta_t", 10_000, 0, None, "histo", 2, 2, on_error="skip")
    assert skipping.dataset.stream_list == [big, big]


def test_duplicate_recordings_in_the_list_are_each_scheduled(recordings, tmp_path):
    a, b = recordings["a.raw"], recordings["b.raw"]
    loader = _sequential([a, a, b], batch_size=1)
    once = _sequential([a, b], batch_size=1)
    assert [m.path for m in loader.dataset.get_unique_files()] == [a, a, b]  # as listed, like metavision_ml
    assert len(loader) == len(once) + len(_sequential([a], batch_size=1))
    from evloader import precompute as pc

    results = pc.precompute([a, a, os.path.dirname(a)], tmp_path / "out", "histo", delta_t=10_000, progress=False)
    inputs = [r.input for r in results]
    assert sorted(inputs) == sorted(set(inputs)) and inputs.count(os.path.abspath(a)) == 1  # precompute: once


def test_recording_without_box_file_names_the_missing_file(recordings):
    pytest.importorskip("torch")
    import functools

    from evloader.data import box_processing as bp

    load = functools.partial(bp.load_boxes, class_lookup=np.array([1, 2]))
    loader = _sequential([recordings["a.raw"], recordings["b.raw"]], load_labels=load)
    with pytest.raises(OSError, match=r"a_bbox\.npy: box file not found") as info:
        next(iter(loader))
    assert "a.raw [" in str(info.value)  # the loader adds the recording and the time window


def test_box_file_without_recording_is_never_read(tmp_path):
    from evloader import precompute as pc
    from evloader.data import box_processing as bp

    folder = tmp_path / "ds"
    folder.mkdir()
    _raw(folder / "a.raw")
    (folder / "orphan_bbox.npy").write_bytes(b"not even a numpy file")
    results = pc.precompute([folder], tmp_path / "out", "histo", delta_t=10_000, progress=False)
    assert [os.path.basename(r.input) for r in results] == ["a.raw"] and results[0].status == "written"
    assert sorted(os.listdir(tmp_path / "out")) == ["a.h5"]  # the orphan is neither read nor carried over
    with pytest.raises(ValueError, match=r"orphan_bbox\.npy"):  # read only when asked for explicitly
        bp.load_box_events(str(folder / "orphan.raw"), 0, 1000)


def _boxes(n, **fields):
    boxes = np.zeros(n, evloader.EventBbox)
    boxes["t"] = np.arange(1, n + 1) * 10_000
    boxes["x"], boxes["y"], boxes["w"], boxes["h"] = 5, 5, 20, 20
    for key, value in fields.items():
        boxes[key] = value
    return boxes


class _Meta:
    def __init__(self, path):
        self.path = str(path)

    def get_original_size(self):
        return (H, W)


def test_unsorted_and_duplicate_boxes_are_sorted_by_time(tmp_path):
    from evloader.data import box_processing as bp

    boxes = _boxes(6, x=np.arange(6))
    evloader.write_boxes(tmp_path / "rec_bbox.npy", np.concatenate([boxes[::-1], boxes[:2]]))
    bp.clear_box_cache()
    got = bp.load_box_events(_Meta(tmp_path / "rec.raw"), 0, 70_000)
    assert got["t"].tolist() == [10_000, 10_000, 20_000, 20_000, 30_000, 40_000, 50_000, 60_000]
    bins, mask = bp.load_boxes(_Meta(tmp_path / "rec.raw"), 0, 40_000, np.ones((4, 2, H, W), np.float32),
                               class_lookup=np.array([1]))
    assert [len(b) for b in bins] == [1, 1, 1, 1] and mask.tolist() == [True] * 4  # duplicates merged by NMS


@pytest.mark.parametrize("fields,kept", [({"x": 1000, "y": 1000}, 0), ({"x": -30, "y": -30}, 0),
                                         ({"w": -10, "h": -10}, 0), ({"x": np.nan}, 0), ({"w": np.inf}, 0),
                                         ({"x": 50, "y": 40}, 1)])
def test_boxes_outside_the_frame_are_clipped_or_dropped(tmp_path, fields, kept):
    from evloader.data import box_processing as bp

    evloader.write_boxes(tmp_path / "rec_bbox.npy", _boxes(4, **fields))
    bp.clear_box_cache()
    bins, mask = bp.load_boxes(_Meta(tmp_path / "rec.raw"), 0, 40_000, np.ones((4, 2, H, W), np.float32),
                               class_lookup=np.array([1]))
    assert [len(b) for b in bins] == [kept] * 4 and mask.tolist() == [True] * 4
    for b in bins:
        if len(b):  # clipped into the sensor
            assert np.all(b["x"] + b["w"] <= W) and np.all(b["y"] + b["h"] <= H)


def test_box_classes_the_lookup_does_not_cover(tmp_path):
    from evloader.data import box_processing as bp
    from evloader.data.scheduler import FileMetadata

    evloader.write_boxes(tmp_path / "rec_bbox.npy", _boxes(4, class_id=7))
    bp.clear_box_cache()
    tensor = np.ones((4, 2, H, W), np.float32)
    with pytest.raises(evloader.ConfigError, match="class_id 7 has no entry in class_lookup"):
        bp.load_boxes(_Meta(tmp_path / "rec.raw"), 0, 40_000, tensor, class_lookup=np.array([1, 2, -1]))
    with pytest.raises(evloader.ConfigError, match="class_lookup is empty"):
        bp.load_boxes(_Meta(tmp_path / "rec.raw"), 0, 40_000, tensor, class_lookup=np.array([], int))
    with pytest.raises(evloader.ConfigError, match="duration 0"):
        bp.load_boxes(_Meta(tmp_path / "rec.raw"), 0, 0, tensor, class_lookup=np.array([1] * 8))
    with pytest.raises(ValueError, match="padding FileMetadata"):
        bp.load_boxes(FileMetadata(padding=True), 0, 40_000, tensor, class_lookup=np.array([1] * 8))
