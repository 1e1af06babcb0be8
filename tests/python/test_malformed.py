# SPDX-License-Identifier: Apache-2.0
"""Damaged and hostile files: a clear exception or counted violations, never a crash or wrong data."""
import struct

import numpy as np
import pytest

import evloader
from conftest import make_events

WIDTH, HEIGHT = 640, 480


def _write(tmp_path, kind, events):
    if kind == "dat":
        path = tmp_path / "rec_td.dat"
        with evloader.DatWriter(path, WIDTH, HEIGHT) as w:
            w.write(events)
    else:
        path = tmp_path / f"rec_{kind}.raw"
        with evloader.RawWriter(path, kind, WIDTH, HEIGHT) as w:
            w.write(events)
    return path


def _read_everything(path):
    """Exercise every entry point; return the events, or the evloader exception raised."""
    try:
        reader = evloader.open_reader(path, index="memory")
        events = reader.load_all()
        count = reader.event_count()
        if count:
            reader.seek_time(int(events["t"][len(events) // 2]) if len(events) else 0)
            reader.load_n_events(100)
            reader.seek_event(count // 3)
            reader.load_delta_t(1000)
        return events, reader
    except (evloader.FormatError, evloader.IoError) as error:
        return error, None


@pytest.mark.parametrize("kind", ["evt3", "evt2", "evt21", "dat"])
def test_random_corruptions_never_crash_nor_leave_the_geometry(tmp_path, kind):
    path = _write(tmp_path, kind, make_events(20_000, seed=4))
    original = path.read_bytes()
    header_end = original.index(b"% end\n") + 6
    rng = np.random.default_rng(99)
    for trial in range(40):
        data = bytearray(original)
        action = trial % 4
        if action == 0:  # flip random bytes of the body
            for pos in rng.integers(header_end, len(data), size=50):
                data[pos] = int(rng.integers(0, 256))
        elif action == 1:  # truncate anywhere, header included
            data = data[: int(rng.integers(0, len(data)))]
        elif action == 2:  # garbage block in the middle
            pos = int(rng.integers(header_end, len(data)))
            data[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
        else:  # body replaced by random bytes
            data = data[:header_end] + rng.integers(0, 256, size=30_000, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
        result, reader = _read_everything(path)
        if isinstance(result, Exception):
            assert str(path.name) in str(result)
            continue
        assert np.all(result["x"] < WIDTH) and np.all(result["y"] < HEIGHT)
        assert np.all((result["p"] == 0) | (result["p"] == 1))


def test_dat_with_bad_record_size_or_type(tmp_path):
    header = b"% Height 480\n% Version 2\n% Width 640\n% end\n"
    bad_size = tmp_path / "size_td.dat"
    bad_size.write_bytes(header + bytes([12, 16]) + bytes(32))
    with pytest.raises(evloader.FormatError, match="size_td.dat"):
        evloader.open_reader(bad_size)
    bad_type = tmp_path / "type_td.dat"
    bad_type.write_bytes(header + bytes([99, 8]) + bytes(32))
    with pytest.raises(evloader.FormatError, match="type_td.dat"):
        evloader.open_reader(bad_type)


def test_dat_time_going_backwards_is_counted(tmp_path):
    path = tmp_path / "back_td.dat"
    records = [(100, 1, 1), (200, 2, 2), (150, 3, 3), (300, 4, 4)]
    body = b"".join(struct.pack("<II", t, x | (y << 14)) for t, x, y in records)
    path.write_bytes(b"% Height 480\n% Width 640\n% end\n" + bytes([12, 8]) + body)
    reader = evloader.open_reader(path)
    events = reader.load_all()
    np.testing.assert_array_equal(events["t"], [100, 200, 150, 300])  # kept, in file order
    assert reader.stats().time_backwards == 1
    strict = evloader.open_reader(path, on_violation="raise")
    with pytest.raises(evloader.FormatError, match="back_td.dat"):
        strict.load_all()


def test_dat_without_geometry_takes_an_override(tmp_path):
    path = tmp_path / "nosize_td.dat"
    body = b"".join(struct.pack("<II", t, 700 | (10 << 14)) for t in (1, 2, 3))
    path.write_bytes(b"% Data file containing Event2D events.\n% Version 2\n" + bytes([0, 8]) + body)
    reader = evloader.open_reader(path)
    assert reader.geometry == (0, 0) and reader.get_size() == (None, None)
    assert len(reader.load_all()) == 3
    clipped = evloader.open_reader(path, width=640, height=480, index="memory")
    assert len(clipped.load_all()) == 0 and clipped.stats().out_of_bounds == 3


def test_npy_damage_raises_format_error(tmp_path):
    boxes = np.zeros(4, dtype=evloader.EventBbox)
    evloader.write_boxes(tmp_path / "ok_bbox.npy", boxes)
    data = (tmp_path / "ok_bbox.npy").read_bytes()
    cases = {
        "truncated_bbox.npy": data[:-10],
        "magic_bbox.npy": b"\x93NUMPX" + data[6:],
        "header_bbox.npy": data[:20] + b"{{{{" + data[24:],
        "empty_bbox.npy": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(evloader.FormatError, match=name):
            evloader.read_boxes(tmp_path / name)
    np.save(tmp_path / "objects_bbox.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(evloader.FormatError):
        evloader.read_boxes(tmp_path / "objects_bbox.npy")
    np.save(tmp_path / "nofields_bbox.npy", np.zeros(3, dtype=[("t", "<i8")]))
    with pytest.raises(evloader.FormatError, match="x"):
        evloader.read_boxes(tmp_path / "nofields_bbox.npy")
