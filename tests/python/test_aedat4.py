# SPDX-License-Identifier: Apache-2.0
"""AEDAT4 from Python: the DVXplorer sample against SOURCES.md, seeking against a linear scan, `evloader
info`, a hand-built uncompressed file with triggers, and damaged packets (FormatError, never a crash)."""
import json
import struct

import numpy as np
import pytest

import evloader
from evloader import cli

SAMPLE = "dvxplorer_sample.aedat4"


def test_real_sample_matches_reference_numbers(real_dir):
    reader = evloader.open_reader(real_dir / SAMPLE, index="memory")
    assert reader.format == "aedat4" and reader.encoding == "AEDAT4"
    assert reader.geometry == (320, 240)
    ev = reader.load_all()
    assert len(ev) == 111954
    assert (int(ev["t"][0]), int(ev["t"][-1])) == (1605537493718345, 1605537494308262)
    assert int(ev["p"].sum()) == 55023
    assert ev["x"].max() < 320 and ev["y"].max() < 240
    assert reader.stats().violations == 0
    assert reader.event_count() == 111954


def test_seek_equals_linear_scan(real_dir):
    everything = evloader.open_reader(real_dir / SAMPLE, index="memory").load_all()
    reader = evloader.open_reader(real_dir / SAMPLE, index="memory")
    rng = np.random.default_rng(2)
    for t in rng.integers(everything["t"][0] - 10, everything["t"][-1] + 10, 20):
        reader.seek_time(int(t))
        first = int(np.searchsorted(everything["t"], t, side="left"))
        np.testing.assert_array_equal(reader.load_n_events(50), everything[first:first + 50])
    reader.seek_event(77777)
    np.testing.assert_array_equal(reader.load_n_events(3), everything[77777:77780])


def test_cli_info(real_dir, capsys):
    assert cli.main(["info", "--json", str(real_dir / SAMPLE)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["encoding"], info["events"]) == ("aedat4", "AEDAT4", 111954)
    assert (info["width"], info["height"]) == (320, 240)


def test_damaged_packets_raise_format_errors(real_dir, tmp_path):
    original = (real_dir / SAMPLE).read_bytes()
    header_end = 18 + struct.unpack_from("<I", original, 14)[0]
    rng = np.random.default_rng(3)
    refused = 0
    for i in range(25):
        data = bytearray(original)
        for at in rng.integers(header_end, len(data), 1 + i % 6):
            data[at] ^= 1 << int(rng.integers(0, 8))
        path = tmp_path / f"damaged{i}.aedat4"
        path.write_bytes(bytes(data))
        try:
            evloader.open_reader(path, index="memory").load_all()
        except evloader.FormatError as error:
            assert path.name in str(error)
            refused += 1
    assert refused > 5
    # A packet size pointing past the data, and a bad magic.
    data = bytearray(original)
    data[header_end + 4:header_end + 8] = struct.pack("<i", 1 << 30)
    (tmp_path / "size.aedat4").write_bytes(bytes(data))
    with pytest.raises(evloader.FormatError, match="runs past"):
        evloader.open_reader(tmp_path / "size.aedat4", index="memory").load_all()
    (tmp_path / "magic.aedat4").write_bytes(b"#!AER-DAT3.1\r\n" + original[14:])
    with pytest.raises(evloader.FormatError, match="magic"):
        evloader.open_reader(tmp_path / "magic.aedat4")


# --- A hand-built, uncompressed file ---------------------------------------------------------------------
def _table_with_vector(ident: bytes, count: int, elements: bytes) -> bytes:
    # root uoffset | identifier | vtable (6, 8, 4) | pad | table: soffset, uoffset -> vector | pad | vector
    buf = bytearray(struct.pack("<I", 16) + ident + struct.pack("<HHH", 6, 8, 4) + b"\0\0")
    buf += struct.pack("<iI", 8, 8) + b"\0\0\0\0" + struct.pack("<I", count) + elements
    return bytes(buf)


def _events_payload(events) -> bytes:
    raw = b"".join(struct.pack("<qhhB3x", int(e["t"]), int(e["x"]), int(e["y"]), int(e["p"])) for e in events)
    return _table_with_vector(b"EVTS", len(events), raw)


def _triggers_payload(triggers) -> bytes:
    # A vector of offsets to Trigger tables {t: i64 at +4, type: i8 at +12}, vtable (8, 16, 4, 12).
    n = len(triggers)
    head = bytearray(struct.pack("<I", 0) + b"TRIG" + struct.pack("<HHH", 6, 8, 4) + struct.pack("<HHHH", 8, 16, 4, 12))
    head += b"\0" * (-len(head) % 4)
    table = len(head)
    head += struct.pack("<iI", table - 8, 4) + struct.pack("<I", n)
    slots = len(head)
    head += b"\0" * (4 * n)
    for i, (t, kind) in enumerate(triggers):
        head += b"\0" * (-len(head) % 8) + b"\0\0\0\0"
        pos = len(head)
        head += struct.pack("<iqb3x", pos - 14, t, kind)
        struct.pack_into("<I", head, slots + 4 * i, pos - (slots + 4 * i))
    struct.pack_into("<I", head, 0, table)
    return bytes(head)


def _aedat4(packets) -> bytes:
    desc = ('<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
            '<node name="1" path="/mainloop/Recorder/outInfo/1/"><attr key="typeIdentifier" type="string">EVTS</attr>'
            '<node name="info" path="/mainloop/Recorder/outInfo/1/info/"><attr key="sizeX" type="int">64</attr>'
            '<attr key="sizeY" type="int">48</attr></node></node>'
            '<node name="4" path="/mainloop/Recorder/outInfo/4/"><attr key="typeIdentifier" type="string">TRIG</attr>'
            '</node></node></dv>').encode()
    # IOHeader table: vtable (10, 20, compression @8, file_data_position @12, description @4).
    hdr = bytearray(struct.pack("<I", 20) + b"IOHE" + struct.pack("<HHHHH", 10, 20, 8, 12, 4) + b"\0\0")
    hdr += struct.pack("<iIiq", 12, 16, 0, -1) + struct.pack("<I", len(desc)) + desc + b"\0"
    body = b"".join(struct.pack("<ii", stream, len(p) + 4) + struct.pack("<I", len(p)) + p for stream, p in packets)
    return b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(hdr)) + bytes(hdr) + body


def test_hand_built_uncompressed_file_with_triggers(tmp_path):
    rng = np.random.default_rng(4)
    events = np.zeros(500, dtype=evloader.EventCD)
    events["t"] = 1_600_000_000_000_000 + np.cumsum(rng.integers(0, 5, 500))
    events["x"] = rng.integers(0, 64, 500)
    events["y"] = rng.integers(0, 48, 500)
    events["p"] = rng.integers(0, 2, 500)
    triggers = [(int(events["t"][5]), 1), (int(events["t"][300]), 2)]
    path = tmp_path / "built.aedat4"
    path.write_bytes(_aedat4([(1, _events_payload(events[:200])), (4, _triggers_payload(triggers)),
                              (1, _events_payload(events[200:]))]))
    reader = evloader.open_reader(path, index="memory")
    assert reader.geometry == (64, 48)
    np.testing.assert_array_equal(reader.load_all(), events)
    got = reader.get_ext_trigger_events()
    assert got["t"].tolist() == [t for t, _ in triggers]
    assert got["id"].tolist() == [1, 2] and got["p"].tolist() == [1, 0]
    # A packet naming a stream the description lacks.
    path.write_bytes(_aedat4([(9, _events_payload(events[:10]))]))
    with pytest.raises(evloader.FormatError, match="stream 9"):
        evloader.open_reader(path, index="memory").load_all()
