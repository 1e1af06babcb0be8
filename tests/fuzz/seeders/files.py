# SPDX-License-Identifier: Apache-2.0
"""Seeds for the file-level harnesses: dat (DatWriter files behind the harness's parameter prefix), npy
(evloader.write_boxes and numpy files of every box layout and some hostile headers), time_index (the
sidecar indexes evloader writes for the harness's three recordings) and label_map (JSON label maps).
With real_dir, also pieces of the real DAT recordings (header + a few KiB), which are never committed."""
import json
import pathlib
import struct
import tempfile
from typing import Optional

import numpy as np


def _write(path: pathlib.Path, data: bytes) -> None:
    assert len(data) <= 4096, (path, len(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _events(n: int, width: int, height: int, t0: int = 0, step: int = 3, seed: int = 0) -> np.ndarray:
    import evloader

    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=evloader.EventCD)
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    ev["t"] = t0 + np.cumsum(rng.integers(0, step + 1, n))
    return ev


# ---- dat ---------------------------------------------------------------------------------------------------
# dat_fuzzer.cpp input: flags u8, width u32, height u32, seek_n u32, seek_t u32, cut count u32, cuts u32...,
# then the payload (a whole DAT file, or records only behind a generated header with flag 4).


def _dat_prefix(flags: int, width: int, height: int, seek_n: int, seek_t: int, cuts) -> bytes:
    head = struct.pack("<BIIIII", flags, width, height, seek_n, seek_t, len(cuts))
    return head + b"".join(struct.pack("<I", c) for c in cuts)


def _dat_file(tmp: pathlib.Path, width: int, height: int, events=None, triggers=None) -> bytes:
    import evloader

    path = tmp / "seed.dat"
    w = evloader.DatWriter(str(path), width, height, triggers=triggers is not None)
    w.write(triggers if triggers is not None else events)
    w.close()
    return path.read_bytes()


def _make_dat(out: pathlib.Path, tmp: pathlib.Path, real_dir: Optional[pathlib.Path]) -> None:
    import evloader

    d = out / "dat"
    ev = _events(200, 304, 240, t0=100)
    gen1 = _dat_file(tmp, 304, 240, ev)
    _write(d / "writer_gen1", _dat_prefix(0, 304, 240, 57, 400, [64, 800]) + gen1)
    _write(d / "writer_override_geometry", _dat_prefix(1, 200, 100, 3, 9000, [8]) + gen1)
    _write(d / "writer_raise", _dat_prefix(2, 0, 0, 199, 0, []) + _dat_file(tmp, 304, 240, ev[:60]))
    big = _events(120, 1280, 720, t0=4294967296 - 150, step=5, seed=1)  # the 32-bit counter wraps
    _write(d / "writer_wrap_1mpx", _dat_prefix(0, 0, 0, 100, 10, [120, 480]) + _dat_file(tmp, 1280, 720, big))
    _write(d / "writer_no_geometry", _dat_prefix(0, 0, 0, 5, 5, []) + _dat_file(tmp, 0, 0, ev[:50]))
    trig = np.zeros(40, dtype=evloader.EventExtTrigger)
    trig["p"] = np.arange(40) % 2
    trig["id"] = np.arange(40) % 64
    trig["t"] = np.arange(40) * 1000
    _write(d / "writer_triggers", _dat_prefix(0, 0, 0, 0, 0, [16]) + _dat_file(tmp, 0, 0, triggers=trig))
    body = _dat_file(tmp, 304, 240, ev[:100])
    records = body[body.index(b"% end\n") + 8:]
    _write(d / "records_cd", _dat_prefix(4 | 16, 304, 240, 10, 300, [24, 240, 512]) + records)
    _write(d / "records_event2d_truncated", _dat_prefix(4 | 16 | 32, 304, 240, 10, 300, [100]) + records[:-3])
    _write(d / "records_triggers", _dat_prefix(4 | 8, 0, 0, 0, 0, [8]) + records[:160])
    # The legacy Python writer's header (no "% end", Date key), and a file with no header at all.
    legacy = b"% Data file containing Event2D events.\n% Version 2\n% Date 2019-01-01 00:00:00\n" \
             b"% Height 240\n% Width 304\n" + bytes([0, 8]) + records[:400]
    _write(d / "legacy_header", _dat_prefix(0, 0, 0, 20, 500, [40]) + legacy)
    _write(d / "no_header", _dat_prefix(0, 0, 0, 1, 1, []) + records[:256])
    if real_dir is not None:
        for name in ("ncars_sample_td.dat", "evt2_gen3_faery_cd.dat"):
            src = real_dir / name
            if not src.is_file():
                continue
            data = src.read_bytes()
            header_end = 0
            while data.startswith(b"%", header_end):  # header lines, then the type and size bytes
                header_end = data.index(b"\n", header_end) + 1
            head = data[:header_end + 2]
            for k, offset in enumerate((header_end + 2, len(data) // 2 // 8 * 8, len(data) - 2048)):
                piece = head + data[offset:offset + 2048]
                prefix = _dat_prefix(0, 0, 0, k * 37, k * 1000, [64])
                _write(out / "dat" / f"real_{src.stem}_{k}", prefix + piece)


# ---- npy ---------------------------------------------------------------------------------------------------
# npy_fuzzer.cpp input: the whole .npy file.

def _np_save(path: pathlib.Path, array, version=None) -> bytes:
    with open(path, "wb") as f:
        if version is None:
            np.save(f, array, allow_pickle=False)
        else:
            np.lib.format.write_array(f, array, version=version, allow_pickle=False)
    return path.read_bytes()


def _boxes(dtype, n: int = 6) -> np.ndarray:
    a = np.zeros(n, dtype=dtype)
    names = a.dtype.names
    for i, name in enumerate(names):
        a[name] = (np.arange(n) * (i + 3)) % 97
    return a


def _make_npy(out: pathlib.Path, tmp: pathlib.Path) -> None:
    import evloader

    d = out / "npy"
    boxes = _boxes(evloader.EventBbox)
    boxes["class_confidence"] = 0.5
    path = tmp / "b_bbox.npy"
    evloader.write_boxes(str(path), boxes)
    _write(d / "write_boxes_eventbbox", path.read_bytes())
    evloader.write_boxes(str(path), boxes[:0])
    _write(d / "write_boxes_empty", path.read_bytes())
    gen1 = np.dtype([("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
                     ("class_id", "u1"), ("confidence", "<f4"), ("track_id", "<u4")])
    _write(d / "gen1_legacy_packed", _np_save(tmp / "a.npy", _boxes(gen1)))
    narrow = np.dtype([("t", "<i4"), ("x", "<f2"), ("y", "<f8"), ("w", "<u2"), ("h", "<i8"),
                       ("class_id", "<i2")])
    _write(d / "narrow_types_no_optional", _np_save(tmp / "a.npy", _boxes(narrow)))
    big_endian = np.dtype([("t", ">i8"), ("x", ">f4"), ("y", ">f4"), ("w", ">f4"), ("h", ">f4"),
                           ("class_id", ">u4"), ("track_id", ">u4"), ("class_confidence", ">f4")])
    _write(d / "boxes_big_endian", _np_save(tmp / "a.npy", _boxes(big_endian)))
    _write(d / "boxes_v2_header", _np_save(tmp / "a.npy", _boxes(gen1), version=(2, 0)))
    utf8 = np.dtype([("t", "<i8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
                     ("class_id", "<u4"), ("é", "u1")])
    _write(d / "boxes_v3_utf8_name", _np_save(tmp / "a.npy", _boxes(utf8), (3, 0)))
    expelliarmus = np.dtype({"names": ["t", "x", "y", "p"], "formats": ["<i8", "<i2", "<i2", "u1"],
                             "offsets": [0, 8, 10, 12], "itemsize": 16})
    _write(d / "events_expelliarmus", _np_save(tmp / "a.npy", _boxes(expelliarmus, 8)))
    _write(d / "events_evloader", _np_save(tmp / "a.npy", _boxes(evloader.EventCD, 8)))
    fortran = np.asfortranarray(np.arange(12, dtype="<f4").reshape(3, 4))
    _write(d / "plain_f4_2d_fortran", _np_save(tmp / "a.npy", fortran))
    _write(d / "plain_u1_scalar", _np_save(tmp / "a.npy", np.array(7, dtype="u1")))
    _write(d / "plain_bool", _np_save(tmp / "a.npy", np.array([True, False, True])))
    nested = np.dtype([("t", "<i8"), ("pos", [("x", "<f4"), ("y", "<f4")]), ("hist", "<u2", (2, 3)),
                       ("name", "S5"), ("u", "<U2"), ("when", "<M8[us]")])
    _write(d / "nested_subarray", _np_save(tmp / "a.npy", np.zeros(3, dtype=nested)))
    titled = np.dtype([(("T", "t"), "<i8"), ("x", "<f4")])
    _write(d / "titled_fields", _np_save(tmp / "a.npy", np.zeros(2, dtype=titled)))
    # Hostile headers: a shape far beyond the data, zero-sized records with a huge count, a 2-D box file.
    def raw_npy(header: str) -> bytes:
        text = header.encode("latin-1")
        text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text

    def header(descr: str, shape: str, fortran: bool = False) -> bytes:
        return raw_npy(f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}")

    _write(d / "hostile_huge_shape", header("'<f4'", "(4611686018427387904,)"))
    _write(d / "hostile_zero_itemsize_huge_count", header("[('t', '|V0')]", "(1152921504606846976,)"))
    _write(d / "hostile_empty_struct", header("[]", "(99999999999,)", True))
    _write(d / "hostile_2d_boxes", header("[('t', '<i8'), ('x', '<f4')]", "(2, 0)"))
    _write(d / "hostile_object", header("'|O'", "(1,)") + b"\0" * 8)


# ---- time_index --------------------------------------------------------------------------------------------
# time_index_fuzzer.cpp input: flags u8 (recording = (flags & 3) % 3: DAT, EVT3, EVT2; 4 = fix the checksum;
# 8 = read even when load_index refused; 16 = whole read), seek_n u32, seek_t u32, then the index file.
# The recordings hold the harness's formula events.

K_EVENTS = 75000
WIDTH, HEIGHT = 640, 480


def _index_events(dat: bool) -> np.ndarray:
    import evloader

    i = np.arange(K_EVENTS, dtype=np.int64)
    ev = np.zeros(K_EVENTS, dtype=evloader.EventCD)
    ev["x"] = (i * 7) % WIDTH
    ev["y"] = (i * 13) % HEIGHT
    ev["p"] = (i >> 3) & 1
    ev["t"] = 4294000000 + 20 * i if dat else 1000 + 2 * i + (i // 1000) * 5000
    return ev


def _make_time_index(out: pathlib.Path, tmp: pathlib.Path) -> None:
    import evloader

    d = out / "time_index"
    recordings = (("rec.dat", None), ("rec_evt3.raw", "evt3"), ("rec_evt2.raw", "evt2"))
    for k, (name, encoding) in enumerate(recordings):
        path = tmp / name
        ev = _index_events(encoding is None)
        if encoding is None:
            w = evloader.DatWriter(str(path), WIDTH, HEIGHT)
        else:
            w = evloader.RawWriter(str(path), encoding=encoding, width=WIDTH, height=HEIGHT)
        w.write(ev)
        w.close()
        reader = evloader.open_reader(str(path), index="sidecar")
        reader.build_index()
        index = pathlib.Path(reader.index_path).read_bytes()
        stem = path.stem
        _write(d / f"{stem}_checksum_fixed", struct.pack("<BII", k | 4, 54321, 7777) + index)
        _write(d / f"{stem}_as_written_whole_read", struct.pack("<BII", k | 16, 74999, 123456) + index)
        truncated = index[:len(index) // 2]
        _write(d / f"{stem}_truncated_rebuilt", struct.pack("<BII", k | 4 | 8, 3, 3) + truncated)


# ---- label_map ---------------------------------------------------------------------------------------------
# fuzz_label_map.py input: the bytes of label_map_dictionary.json.

def _make_label_map(out: pathlib.Path) -> None:
    d = out / "label_map"
    maps = {
        "gen1": {"0": "car", "1": "pedestrian"},
        "1mpx": {"0": "pedestrian", "1": "two wheeler", "2": "car", "3": "truck", "4": "bus",
                 "5": "traffic sign", "6": "traffic light"},
        "with_empty_sparse": {"0": "car", "5": "empty", "3": "bus"},
        "unicode_names": {"0": "voiture", "1": "piéton", "2": "自転車"},
        "repeated_name": {"0": "car", "1": "car", "2": "pedestrian"},
    }
    for name, m in maps.items():
        _write(d / name, json.dumps(m, ensure_ascii=name != "unicode_names").encode())
    _write(d / "utf16_bom", json.dumps(maps["gen1"]).encode("utf-16"))
    _write(d / "padded_ids", b'{" 0 ": "car", "007": "pedestrian"}')
    # Bad files that must end in a ValueError naming the file.
    _write(d / "bad_list", b'["car", "pedestrian"]')
    _write(d / "bad_huge_id", b'{"99999999999999": "car"}')
    _write(d / "bad_negative_id", b'{"-1": "car", "0": "bus"}')
    _write(d / "bad_name_type", b'{"0": ["car"], "1": null}')
    _write(d / "bad_duplicate_id", b'{"1": "car", "01": "bus"}')
    _write(d / "bad_latin1", '{"0": "piéton"}'.encode("latin-1"))
    _write(d / "bad_nested", b"[" * 2000)
    _write(d / "bad_empty", b"{}")
    _write(d / "bad_truncated", b'{"0": "ca')


def make(out_dir: pathlib.Path, real_dir: Optional[pathlib.Path]) -> None:
    out_dir = pathlib.Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="evloader_seeds_files_") as tmp_name:
        tmp = pathlib.Path(tmp_name)
        _make_dat(out_dir, tmp, real_dir)
        _make_npy(out_dir, tmp)
        _make_time_index(out_dir, tmp)
    _make_label_map(out_dir)
