# SPDX-License-Identifier: Apache-2.0
"""Seeds of the ecf, aedat4 and hdf5_attributes harnesses, in each harness's input format (see the comments
at the top of tests/fuzz/<name>_fuzzer.cpp). Writer-made: ECF chunks from evloader's encoder, HDF5 event and
tensor files from evloader's writers turned into hdf5_attributes recipes, AEDAT4 files built by hand (evloader
has no AEDAT4 writer). With `real_dir`, also pieces of the real recordings (never committed): ECF chunks of
the real .hdf5 files, their attributes and first chunk as recipes, and the head of the real .aedat4 file."""
from __future__ import annotations

import pathlib
import struct
import tempfile
from typing import List, Optional

import numpy as np

MAX_SEED = 4096  # committed seeds stay small

# --- shared helpers ---------------------------------------------------------------------------------


def _events(n: int, seed: int, width: int = 640, height: int = 480, t0: int = 1000, rows: bool = False):
    from evloader._dtypes import EventCD

    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=EventCD)
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = np.sort(rng.integers(0, height, n)) if rows else rng.integers(0, height, n)
    if rows:  # neighbours along rows: the masked-x and pack-xp modes
        ev["x"] = (np.arange(n) % 7 + rng.integers(0, width - 8)) % width
    ev["p"] = rng.integers(0, 2, n)
    ev["t"] = t0 + np.cumsum(rng.choice([0, 0, 1, 3, 20, 5000], n))
    return ev


def _write(out: pathlib.Path, name: str, data: bytes, limit: Optional[int] = MAX_SEED) -> None:
    if limit is not None and len(data) > limit:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(data)


def _cut(data: bytes, limit: int = MAX_SEED) -> bytes:
    return data[:limit]


# --- ecf ------------------------------------------------------------------------------------------------


def _ecf_seeds(out: pathlib.Path, real_dir: Optional[pathlib.Path]) -> None:
    from evloader import hdf5 as eh

    d = out / "ecf"
    modes = [("masked_x", 0), ("pack_xp", 1), ("pack_yxp", 2)]
    for name, _ in modes:
        for n, seed, rows in ((0, 1, False), (1, 2, False), (5, 3, False), (90, 4, True), (200, 5, False)):
            chunk = eh.ecf_encode(_events(n, seed, rows=rows), mode=name)
            _write(d, f"decode_{name}_{n}", bytes([0, 3]) + chunk)
            _write(d, f"filter_reverse_{name}_{n}", bytes([2, 1]) + chunk)
    # Long runs: 16-bit counts of every stream.
    ev = _events(300, 6)
    ev["y"], ev["p"], ev["t"] = 7, 1, 42
    _write(d, "decode_runs", bytes([0, 0]) + eh.ecf_encode(ev, mode="masked_x"))
    # Round trips: flags (mode, valid, long runs), cut, event count, t0, then per event kind + x/y (+ step).
    for mode in range(4):
        body = bytearray([1, mode]) + struct.pack("<IIQ", 1000 + mode, 40, 1 << 40)
        rng = np.random.default_rng(mode)
        for i in range(40):
            kind = int(rng.integers(0, 256)) & ~0x18 | (0x08 if i % 3 else 0x18)
            body += bytes([kind]) + struct.pack("<I", int(rng.integers(0, 1 << 32)))
            if (kind >> 3) & 3 == 3:
                body += struct.pack("<Q", int(rng.integers(0, 1 << 63)))
        _write(d, f"round_trip_mode{mode}", bytes(body))
    _write(d, "round_trip_invalid", bytes([1, 0x83]) + struct.pack("<IIQ", 9, 3, 5) + bytes(range(40)))
    _write(d, "round_trip_long_runs", bytes([1, 0x40]) + struct.pack("<IIQ", 5, 20000, 77) + bytes(5))
    # The filter encoding whole records (time going back: stored as the running maximum).
    recs = _events(20, 7)
    recs["t"][5] = 0
    _write(d, "filter_forward", bytes([2, 0]) + recs.tobytes())

    if real_dir is None:
        return
    import h5py

    for f in sorted(real_dir.glob("*.hdf5")):
        with h5py.File(f, "r") as h:
            ds = h["/CD/events"]
            for k in range(min(3, ds.id.get_num_chunks())):
                info = ds.id.get_chunk_info(k)
                _, chunk = ds.id.read_direct_chunk(info.chunk_offset)
                _write(d, f"real_{f.stem}_chunk{k}", bytes([0, 1]) + bytes(chunk), limit=None)
            # The first real events, re-encoded small, in every mode.
            events = eh.ecf_decode(ds.id.read_direct_chunk((0,))[1])[:150]
            for name, _ in modes:
                _write(d, f"real_{f.stem}_{name}", bytes([0, 2]) + eh.ecf_encode(events, mode=name), limit=None)


# --- aedat4 ---------------------------------------------------------------------------------------------


def _aedat4_recipe(compression: int, flags: int, size: tuple, events_per_packet: List[int], seed: int,
                   triggers: int = 0, other: int = 0, cut: Optional[int] = None) -> bytes:
    """The harness's built-file shape: it lays out (and compresses) the file itself."""
    rng = np.random.default_rng(seed)
    b = bytearray([1, compression, flags]) + struct.pack("<hhBB", size[0], size[1], 0, 3)
    b += struct.pack("<q", 1_605_537_493_718_345 << 8)
    packets = [("e", n) for n in events_per_packet] + [("t", triggers)] * (triggers > 0) + [("o", other)] * (other > 0)
    b += struct.pack("<I", len(packets))
    for kind, n in packets:
        if kind == "e":
            b += bytes([0]) + struct.pack("<I", n)
            for _ in range(n):
                step = int(rng.integers(0, 40)) & ~0x80 | 3  # forward, inside 512x256
                b += bytes([step]) + struct.pack("<hhB", int(rng.integers(0, size[0] or 320)),
                                                 int(rng.integers(0, size[1] or 240)), int(rng.integers(0, 2)))
        elif kind == "t":
            b += bytes([1]) + struct.pack("<I", n)
            for i in range(n):
                b += bytes([i * 3, 1 + i % 2])
        else:
            b += bytes([2]) + struct.pack("<I", n) + bytes(rng.integers(0, 256, n, dtype=np.uint8))
    if cut is not None:  # flags bit 5: the file is cut after `cut` bytes
        b += struct.pack("<I", cut)
    return bytes(b + struct.pack("<II", 5, 3))  # reading: load_n_events step, seek_event index


def _fb_vector_table(ident: bytes, elements: bytes, count: int) -> bytes:
    # root uoffset, identifier, vtable (6, 8, 4), table (soffset, field), pad, vector
    b = bytearray(struct.pack("<I", 0)) + ident
    vtable = len(b)
    b += struct.pack("<HHH", 6, 8, 4)
    while len(b) % 4:
        b += b"\0"
    table = len(b)
    b += struct.pack("<i", table - vtable)
    field = len(b)
    b += struct.pack("<II", 0, 0)
    vec = len(b)
    b += struct.pack("<I", count) + elements
    struct.pack_into("<I", b, field, vec - field)
    struct.pack_into("<I", b, 0, table)
    return bytes(b)


def _aedat4_plain_file(events, width: int, height: int) -> bytes:
    """A whole uncompressed AEDAT4 file (the harness's raw-file shape), laid out as formats.md §5 says."""
    desc = ('<dv version="2.0">\n <node name="outInfo" path="/mainloop/Recorder/outInfo/">\n'
            '  <node name="0" path="/mainloop/Recorder/outInfo/0/">\n'
            '   <attr key="typeIdentifier" type="string">EVTS</attr>\n'
            '   <node name="info" path="/mainloop/Recorder/outInfo/0/info/">\n'
            f'    <attr key="sizeX" type="int">{width}</attr>\n    <attr key="sizeY" type="int">{height}</attr>\n'
            '   </node>\n  </node>\n </node>\n</dv>\n').encode()
    h = bytearray(struct.pack("<I", 0)) + b"IOHE"
    vtable = len(h)
    h += struct.pack("<HHHHH", 10, 20, 8, 12, 4)
    while len(h) % 4:
        h += b"\0"
    tbl = len(h)
    h += struct.pack("<i", tbl - vtable)
    desc_field = len(h)
    h += struct.pack("<Iiq", 0, 0, -1)
    s = len(h)
    h += struct.pack("<I", len(desc)) + desc + b"\0"
    struct.pack_into("<I", h, desc_field, s - desc_field)
    struct.pack_into("<I", h, 0, tbl)
    body = bytearray()
    for part in np.array_split(events, 2):
        raw = bytearray()
        for e in part:
            raw += struct.pack("<qhhB3x", int(e["t"]), int(e["x"]), int(e["y"]), int(e["p"]))
        payload = _fb_vector_table(b"EVTS", bytes(raw), len(part))
        payload = struct.pack("<I", len(payload)) + payload
        body += struct.pack("<ii", 0, len(payload)) + payload
    return b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(h)) + bytes(h) + bytes(body)


def _aedat4_seeds(out: pathlib.Path, real_dir: Optional[pathlib.Path]) -> None:
    d = out / "aedat4"
    for compression in range(5):
        _write(d, f"built_c{compression}", _aedat4_recipe(compression, 0, (320, 240), [20, 0, 30], compression,
                                                          triggers=3, other=10))
    _write(d, "built_lz4_table_raise", _aedat4_recipe(1, 1 | 8, (320, 240), [25], 10))
    _write(d, "built_zstd_cache", _aedat4_recipe(3, 64, (640, 480), [40, 10], 11, triggers=2))
    _write(d, "built_no_geometry", _aedat4_recipe(0, 0, (0, 0), [30], 12))
    _write(d, "built_cut", _aedat4_recipe(1, 32, (320, 240), [30, 30], 13, cut=300))
    # Raw-file shape: byte 0 even (bit 1 raise, bit 2 no triggers, bit 3 cache index), then the file.
    ev = _events(60, 14, 320, 240, t0=1_605_537_493_718_345)
    plain = _aedat4_plain_file(ev, 320, 240)
    _write(d, "file_plain", bytes([0]) + plain)
    _write(d, "file_plain_raise", bytes([2]) + plain)
    _write(d, "file_plain_cut", bytes([8]) + plain[: len(plain) - 100])
    if real_dir is None:
        return
    for f in sorted(real_dir.glob("*.aedat4")):
        data = f.read_bytes()
        (length,) = struct.unpack_from("<I", data, 14)
        start = 18 + length
        # Header + the first packets, cut at packet boundaries, and header + a packet from further on.
        pos, ends = start, []
        while pos + 8 <= len(data) and len(ends) < 12:
            _, size = struct.unpack_from("<ii", data, pos)
            pos += 8 + size
            ends.append(pos)
        for k in (1, 3, 12):
            if k <= len(ends):
                _write(d, f"real_{f.stem}_{k}packets", bytes([0]) + data[: ends[k - 1]], limit=None)
        if len(ends) > 6:
            _write(d, f"real_{f.stem}_later", bytes([0]) + data[:start] + data[ends[5]: ends[6]], limit=None)


# --- hdf5_attributes ------------------------------------------------------------------------------------

NAMES = ["events_to_tensor", "delta_t", "mode", "n_events", "shape", "store_as_uint8", "start_ts",
         "event_input_width", "event_input_height", "downsampling_factor", "shift", "max_incr_per_pixel",
         "split_polarity", "preprocess_dtype", "version", "geometry", "format", "time_shift", "serial_number",
         "date", "system_ID", "offset", "evt", "plugin_name"]
WHICH = {"/data": 0, "/last_timestamps": 1, "/CD/events": 2, "/EXT_TRIGGER/events": 3, "/CD/indexes": 4}


def _type_code(tid) -> Optional[int]:
    """The harness's type code of an HDF5 type (h5py low-level TypeID), None when it has none."""
    import h5py

    cls = tid.get_class()
    if cls == h5py.h5t.INTEGER:
        size, signed = tid.get_size(), tid.get_sign() == h5py.h5t.SGN_2
        big = tid.get_order() == h5py.h5t.ORDER_BE
        if big:
            return {(4, True): 17, (2, False): 20}.get((size, signed))
        return {1: 0, 2: 2, 4: 4, 8: 6}[size] + (0 if signed else 1) if size in (1, 2, 4, 8) else None
    if cls == h5py.h5t.FLOAT:
        big = tid.get_order() == h5py.h5t.ORDER_BE
        return {(4, False): 8, (8, False): 9, (4, True): 19, (8, True): 18}.get((tid.get_size(), big))
    if cls == h5py.h5t.STRING:
        if tid.is_variable_str():
            return 14 if tid.get_cset() == h5py.h5t.CSET_UTF8 else 13
        return {h5py.h5t.STR_NULLTERM: 10, h5py.h5t.STR_NULLPAD: 11}.get(tid.get_strpad(), 12)
    if cls == h5py.h5t.ENUM:
        return 15 if tid.get_nmembers() == 2 else 16
    if cls == h5py.h5t.COMPOUND:
        names = [tid.get_member_name(i) for i in range(tid.get_nmembers())]
        if names == [b"x", b"y", b"p", b"t"]:
            return 22
        if names == [b"p", b"t", b"id"]:
            return 26
        if names == [b"id", b"ts"]:
            return 29
    return None


def _name_bytes(name: str) -> bytes:
    if name in NAMES:
        return bytes([NAMES.index(name)])
    raw = name.encode()[:31]
    return bytes([255, len(raw)]) + raw


def _attr_records(obj, object_code: int) -> bytes:
    import h5py

    out = bytearray()
    for name in obj.attrs:
        aid = h5py.h5a.open(obj.id, name.encode())
        code = _type_code(aid.get_type())
        if code is None:
            continue
        space = aid.get_space()
        n = space.get_simple_extent_npoints()
        if space.get_simple_extent_type() == h5py.h5s.SCALAR:
            shape = 0
        elif n <= 50 and space.get_simple_extent_ndims() == 1:
            shape = 3 + 5 * n
        else:
            continue
        value = obj.attrs[name]
        if code in (13, 14):
            raw = (value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")).encode()
        elif code in (10, 11, 12):
            raw = bytes(np.asarray(value).tobytes()).rstrip(b"\0") or b"\0"
        else:
            # The file's byte order, as stored: the harness writes these bytes with the file type.
            arr = np.asarray(value)
            dt = aid.dtype
            raw = arr.astype(dt.newbyteorder("<") if code in range(10) or code in (15, 16) else dt).tobytes()
        raw = raw[:255]
        out += b"A" + bytes([object_code]) + _name_bytes(name) + bytes([code, shape, len(raw)]) + raw
    return bytes(out)


def _dataset_record(ds, which: int, rows: Optional[int] = None) -> bytes:
    import h5py

    code = _type_code(ds.id.get_type())
    if code is None:
        return b""
    dcpl = ds.id.get_create_plist()
    chunked = dcpl.get_layout() == h5py.h5d.CHUNKED
    layout = 0x10 if chunked else 1  # explicit chunks, or contiguous
    if ds.maxshape and ds.maxshape[0] is None:
        layout |= 0x80
    filters = 0
    for i in range(dcpl.get_nfilters()):
        fid = dcpl.get_filter(i)[0]
        filters |= {h5py.h5z.FILTER_DEFLATE: 1, h5py.h5z.FILTER_SHUFFLE: 2, h5py.h5z.FILTER_FLETCHER32: 4,
                    0x8ECF: 8}.get(fid, 0)
    rank = len(ds.shape)
    b = bytearray(b"D") + bytes([which, code, rank])
    shape = list(ds.shape)
    if rows is not None and shape:  # only the rows the recipe writes
        shape[0] = min(shape[0], rows)
    b += b"".join(struct.pack("<I", d) for d in shape)
    b += bytes([layout, filters])
    chunks = ds.chunks or (1,) * rank
    b += b"".join(struct.pack("<I", c) for c in chunks)
    return bytes(b)


def _rows_record(ds, which: int, rows: int) -> bytes:
    rows = min(rows, ds.shape[0] if ds.shape else 0)
    if rows == 0:
        return b""
    data = ds[:rows]
    raw = data.tobytes()
    return b"W" + bytes([which]) + struct.pack("<IH", 0, rows) + raw


def _chunk_records(ds, which: int, limit: int, max_chunks: int = 4) -> bytes:
    out = bytearray()
    for k in range(min(max_chunks, ds.id.get_num_chunks())):
        info = ds.id.get_chunk_info(k)
        mask, chunk = ds.id.read_direct_chunk(info.chunk_offset)
        if len(chunk) > min(limit, 65535):
            break
        index = info.chunk_offset[0] // ds.chunks[0]
        out += b"C" + bytes([which]) + struct.pack("<IIH", index, mask, len(chunk)) + bytes(chunk)
    return bytes(out)


def _event_file_recipe(path: pathlib.Path, flags: int, limit: int, max_chunks: int = 4,
                       trim: bool = False) -> bytes:
    import h5py

    import evloader.hdf5 as eh

    eh.register_ecf_filter()
    recipe = bytearray([1 | flags]) + bytes(range(24))
    with h5py.File(path, "r") as h:
        recipe += _attr_records(h, 0)
        for name in ("/CD/events", "/EXT_TRIGGER/events", "/CD/indexes"):
            if name in h:
                ds = h[name]
                rows = max_chunks * ds.chunks[0] if trim and ds.chunks else None
                recipe += _dataset_record(ds, WHICH[name], rows)
        if "/CD/events" in h:
            recipe += _chunk_records(h["/CD/events"], 2, limit - len(recipe), max_chunks)
        if "/EXT_TRIGGER/events" in h:
            recipe += _rows_record(h["/EXT_TRIGGER/events"], 3, 4)
    return bytes(recipe)


def _tensor_file_recipe(path: pathlib.Path, flags: int, frames: int) -> bytes:
    import h5py

    recipe = bytearray([flags & ~1]) + bytes(range(24))
    with h5py.File(path, "r") as h:
        for name in ("/data", "/last_timestamps"):
            if name in h:
                recipe += _dataset_record(h[name], WHICH[name])
        recipe += _attr_records(h["data"], 1)
        recipe += _rows_record(h["data"], 0, frames)
        if "/last_timestamps" in h:
            recipe += _rows_record(h["/last_timestamps"], 1, 64)
    return bytes(recipe)


def _hdf5_attribute_seeds(out: pathlib.Path, real_dir: Optional[pathlib.Path]) -> None:
    import evloader.hdf5 as eh
    from evloader.tensor_file import TensorFileWriter

    from evloader._dtypes import EventExtTrigger

    d = out / "hdf5_attributes"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        # Event files from evloader's writer: small chunks so that the ECF chunks fit a seed.
        cases = [
            ("events_geometry", dict(width=640, height=480), 0),
            ("events_format", dict(attributes={"format": "EVT3;height=720;width=1280", "serial_number": "00ca0009",
                                               "time_shift": "1000"}), 0),
            ("events_raise_metavision", dict(width=320, height=240, attributes={"time_shift": "1000"}), 4 | 16),
            ("events_latest_pack_yxp", dict(width=640, height=480, mode="pack_yxp"), 2),
        ]
        for name, kwargs, flags in cases:
            path = tmp / f"{name}.hdf5"
            trig = np.zeros(3, dtype=EventExtTrigger)
            trig["t"] = [1000, 1500, 2000]
            trig["p"] = [1, 0, 1]
            eh.write_hdf5(path, _events(60, len(name), 320, 240), trig, chunk_events=16, **kwargs)
            _write(d, name, _event_file_recipe(path, flags, MAX_SEED))
        # Tensor files from evloader's writer: delta_t and n_events modes, uint8 storage, kwargs.
        tcases = [
            ("tensor_histo_f32", dict(events_to_tensor="histo", shape=(2, 4, 6), delta_t=50000,
                                      event_input_size=(8, 12), kwargs={"max_incr_per_pixel": 5.0}), 0),
            ("tensor_uint8", dict(events_to_tensor="event_cube", shape=(3, 4, 4), delta_t=10000,
                                  event_input_size=(16, 16), store_as_uint8=True,
                                  kwargs={"split_polarity": True, "preprocess_dtype": "float32"}), 2),
            ("tensor_n_events", dict(events_to_tensor="diff", shape=(1, 5, 5), delta_t=0, mode="n_events",
                                     n_events=1000, event_input_size=(5, 5), start_ts=123456), 0),
            ("tensor_int16", dict(events_to_tensor="timesurface", shape=(2, 3, 3), delta_t=2000,
                                  event_input_size=(6, 6), dtype=np.int16), 0),
        ]
        for name, kwargs, flags in tcases:
            path = tmp / f"{name}.h5"
            w = TensorFileWriter(path, **kwargs)
            c, hh, ww = kwargs["shape"]
            rng = np.random.default_rng(len(name))
            frames = rng.random((3, c, hh, ww)).astype(kwargs.get("dtype", np.float32))
            if kwargs.get("mode") == "n_events":
                w.write(frames, last_timestamps=[100, 200, 300])
            else:
                w.write(frames)
            w.close()
            _write(d, name, _tensor_file_recipe(path, flags, 2))
        # Hand-made recipes for what no writer produces: Metavision's legacy attributes, wrong types.
        t = bytearray([0]) + bytes(24)
        t += b"D" + bytes([0, 8, 4]) + struct.pack("<IIII", 2, 1, 4, 4) + bytes([0, 1]) + struct.pack("<IIII", 1, 1, 4, 4)
        t += b"A\x01" + bytes([0, 10, 0, 5]) + b"histo"
        t += b"A\x01" + bytes([1, 18, 0, 8]) + struct.pack(">d", 50000.0)
        t += b"A\x01" + bytes([9, 6, 0, 8]) + struct.pack("<q", 2)
        t += b"A\x01" + bytes([4, 6, 18, 24]) + struct.pack("<qqq", 1, 4, 4)
        _write(d, "tensor_legacy_downsampling", bytes(t))
        # Event files whose /CD/events chunks the harness encodes itself ('E' records): the reader must
        # give back exactly these events (the last chunk holds only the remaining ones, as OpenEB's).
        for name, flags, attrs, sizes in (
                ("events_ecf_exact", 0, {"geometry": "640x480"}, (16, 16, 8)),
                ("events_ecf_exact_raise_shift", 4 | 16, {"format": "EVT3;height=480;width=640",
                                                          "time_shift": "100"}, (16, 5)),
                ("events_ecf_geometry_drops", 0, {"geometry": "320x240"}, (16, 16))):
            n = sum(sizes)
            r = bytearray([1 | flags]) + bytes(24)
            for k, v in attrs.items():
                raw = v.encode()
                r += b"A" + bytes([0]) + _name_bytes(k) + bytes([13, 0, len(raw)]) + raw
            r += b"D" + bytes([2, 22, 1]) + struct.pack("<I", n) + bytes([0x90, 8]) + struct.pack("<I", 16)
            ev = _events(n, n, 640, 480)
            for k, size in enumerate(sizes):
                part = ev[16 * k: 16 * k + size]
                r += b"E" + bytes([2]) + struct.pack("<IBHi", k, k % 4, size, int(part["t"][0]))
                prev = int(part["t"][0])
                for e in part:
                    step = min(int(e["t"]) - prev, 127)
                    prev += step
                    r += struct.pack("<HHB", int(e["x"]), int(e["y"]), (step << 1) | int(e["p"]))
            _write(d, name, bytes(r))
    if real_dir is None:
        return
    for f in sorted(real_dir.glob("*.hdf5")):
        _write(d, f"real_{f.stem}", _event_file_recipe(f, 0, 1 << 20, max_chunks=1, trim=True), limit=None)


def make(out_dir: pathlib.Path, real_dir: Optional[pathlib.Path]) -> None:
    _ecf_seeds(out_dir, real_dir)
    _aedat4_seeds(out_dir, real_dir)
    _hdf5_attribute_seeds(out_dir, real_dir)
