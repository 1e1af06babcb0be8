# SPDX-License-Identifier: Apache-2.0
"""Seeds of the RAW fuzz harnesses (raw_header, evt2, evt21, evt3): files written by evloader's RawWriter
(all three encodings, both EVT 2.1 word orders, with triggers), word streams cut from them, and hand-built
word sequences for the paths real files rarely take (counter loops, TIME_HIGH glitches, vendor padding,
reserved types, words before the first TIME_HIGH). With `real_dir`, also pieces of the real recordings
(header plus a few KiB at several offsets), which are never committed.

Decoder harness inputs start with a small option block (see tests/fuzz/evt3_fuzzer.cpp):
[flags u8][width u16, height u16 when flags bits 4-5 are 3][cut count u8][cuts u16...][restore point u16].
raw_header inputs start with [flags u8][seek u16][count u16] (see tests/fuzz/raw_header_fuzzer.cpp)."""
from __future__ import annotations

import pathlib
import struct
import tempfile
from typing import Iterable, List, Optional, Sequence

import numpy as np

MAX_SEED = 4096
ENCODINGS = ("evt2", "evt21", "evt3")


# ---- option blocks ------------------------------------------------------------------------------
def decoder_state(time_base=0, time=0, last_event_t=-(1 << 63), first_time_high=-1, loops=0, y=0, base_x=0,
                  polarity=0, has_time_base=0, y_valid=0, skip_words=0, reserved=0) -> bytes:
    """A DecoderState as the harnesses read it (include/evloader/io/decoder.hpp, 64 bytes)."""
    return struct.pack("<qqqqiiiiiiii", time_base, time, last_event_t, first_time_high, loops, y, base_x,
                       polarity, has_time_base, y_valid, skip_words, reserved)


HOSTILE_STATES = {
    "max": decoder_state((1 << 63) - 1, (1 << 63) - 1, -(1 << 63), (1 << 63) - 1, (1 << 31) - 1, -1,
                         (1 << 31) - 1, -1, 1, 1, 7, 9),
    "min": decoder_state(-(1 << 63), -1, (1 << 63) - 1, -5, -(1 << 31), -(1 << 31), -(1 << 31), 2, 1, 1),
    "many_loops": decoder_state((1 << 62), (1 << 62) + 5, 0, (1 << 28) - 1, (1 << 28), 719, 1270, 1, 1, 1),
}


def decoder_prefix(triggers: bool = True, offsets: bool = True, legacy: bool = False, geometry=(1280, 720),
                   cuts: Sequence[int] = (), restore: int = 0, state: Optional[bytes] = None) -> bytes:
    """The option block of the decoder harnesses. geometry: None (unknown), (1280, 720), (640, 480) or any
    (w, h) (sent explicitly). state: also decode from this DecoderState."""
    flags = (1 if triggers else 0) | (2 if offsets else 0) | (4 if legacy else 0) | (8 if state else 0)
    extra = b""
    if geometry is None:
        mode = 0
    elif tuple(geometry) == (1280, 720):
        mode = 1
    elif tuple(geometry) == (640, 480):
        mode = 2
    else:
        mode = 3
        extra = struct.pack("<HH", *geometry)
    out = bytes([flags | (mode << 4)]) + extra + bytes([len(cuts)])
    out += b"".join(struct.pack("<H", c) for c in cuts)
    return out + struct.pack("<H", restore) + (state or b"")


def header_prefix(flags: int = 0, seek: int = 0, count: int = 1) -> bytes:
    return bytes([flags]) + struct.pack("<HH", seek, count)


# ---- writer-made streams ------------------------------------------------------------------------
def random_events(rng: np.random.Generator, n: int, width: int, height: int, t0: int, span: int) -> np.ndarray:
    from evloader.io import EventCD

    ev = np.zeros(n, dtype=EventCD)
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    ev["t"] = np.sort(rng.integers(t0, t0 + span, n))
    return ev


def row_bursts(rng: np.random.Generator, width: int, height: int, t0: int) -> np.ndarray:
    """Runs of neighbouring pixels on one row at one time: what makes EVT3 vectors and dense EVT2.1 masks."""
    from evloader.io import EventCD

    chunks = []
    t = t0
    for _ in range(12):
        y = int(rng.integers(0, height))
        x0 = int(rng.integers(0, max(1, width - 40)))
        xs = np.unique(x0 + rng.integers(0, 40, int(rng.integers(3, 30))))
        xs = xs[xs < width]
        ev = np.zeros(len(xs), dtype=EventCD)
        ev["x"], ev["y"], ev["p"], ev["t"] = xs, y, int(rng.integers(0, 2)), t
        chunks.append(ev)
        t += int(rng.integers(0, 3000))
    return np.concatenate(chunks)


def random_triggers(rng: np.random.Generator, n: int, t0: int, span: int) -> np.ndarray:
    from evloader.io import EventExtTrigger

    tr = np.zeros(n, dtype=EventExtTrigger)
    tr["p"] = rng.integers(0, 2, n)
    tr["t"] = np.sort(rng.integers(t0, t0 + span, n))
    tr["id"] = rng.integers(0, 4, n)
    return tr


def write_raw(encoding: str, width: int, height: int, events, triggers=None, legacy: bool = False,
              extra_header=None) -> bytes:
    from evloader.io import RawWriter

    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "seed.raw"
        with RawWriter(path, encoding, width, height, extra_header=extra_header,
                       evt21_order="legacy" if legacy else "little") as writer:
            writer.write(events, triggers)
        return path.read_bytes()


def split_header(raw: bytes) -> tuple[bytes, bytes]:
    end = raw.index(b"% end\n") + len(b"% end\n")
    return raw[:end], raw[end:]


# ---- hand-built word streams (formats.md §1.2-1.4) ------------------------------------------------
def u16s(words: Iterable[int]) -> bytes:
    return b"".join(struct.pack("<H", w & 0xFFFF) for w in words)


def u32s(words: Iterable[int]) -> bytes:
    return b"".join(struct.pack("<I", w & 0xFFFFFFFF) for w in words)


def u64s(words: Iterable[int], legacy: bool = False) -> bytes:
    if legacy:
        return b"".join(struct.pack("<II", (w >> 32) & 0xFFFFFFFF, w & 0xFFFFFFFF) for w in words)
    return b"".join(struct.pack("<Q", w & 0xFFFFFFFFFFFFFFFF) for w in words)


def evt3_hand() -> dict:
    th = lambda v: 0x8000 | v
    tl = lambda v: 0x6000 | v
    y = lambda v, slave=0: (slave << 11) | v
    x = lambda v, p: 0x2000 | (p << 11) | v
    base = lambda v, p: 0x3000 | (p << 11) | v
    v12 = lambda m: 0x4000 | m
    v8 = lambda m: 0x5000 | m
    trig = lambda ident, value: 0xA000 | (ident << 8) | value
    return {
        "hand_basic": u16s([th(5), tl(0), y(10), x(3, 1), x(4, 0), tl(7), x(1279, 1), y(719), x(0, 0)]),
        "hand_vector_group": u16s([th(1), tl(1), y(5), base(100, 1), v12(0xFFF), v12(0x0F0), v8(0x81),
                                   base(1270, 0), v12(0xFFF), v8(0xFF)]),
        "hand_loop_and_glitch": u16s([th(4095), tl(4095), y(1), x(1, 1), th(0), tl(3), x(2, 1), th(2),
                                      th(1), x(3, 0), th(3000), th(900)]),
        "hand_before_time_base": u16s([y(3), x(5, 1), v12(3), v8(1), trig(1, 1), th(9), x(6, 1), y(3), x(6, 1)]),
        "hand_triggers_padding": u16s([th(2), trig(0, 1), tl(50), trig(15, 0), 0x9999, 0xE014, 0xF123, 0xF456,
                                       0x7008, 0xD000, 0x1005, 0xB000, 0xC123, y(2), x(2, 0)]),
        "hand_slave_and_bounds": u16s([th(7), y(3, slave=1), x(5, 1), y(2047), x(2047, 0), y(719), x(1280, 1),
                                       base(2040, 1), v12(0xFFF), v8(0xFF), v12(0xFFF)]),
        "hand_time_backwards": u16s([th(10), tl(100), y(1), x(1, 1), tl(50), x(2, 1), x(3, 1), tl(60), x(4, 0)]),
        # Edges of a 1280x720 sensor: a 32-pixel group ending on the last column, one ending a column past
        # it, single events on and past the last row/column; TIME_HIGH drops of exactly 2048 (a loop) and
        # 2047 (a glitch).
        "hand_edges": u16s([th(2048), tl(1), y(5), base(1248, 1), v12(0xFFF), v12(0xFFF), v8(0xFF),
                            base(1249, 0), v12(0xFFF), v12(0xFFF), v8(0xFF), base(1268, 1), v12(0xFFF),
                            v12(0x801), x(1279, 1), x(1280, 0), y(719), x(0, 1), y(720), x(0, 0), th(0),
                            x(7, 1), th(2047), th(0), x(8, 0)]),
    }


def evt2_hand() -> dict:
    th = lambda v: 0x80000000 | v
    cd = lambda p, lsb, x, y: (p << 28) | (lsb << 22) | (x << 11) | y
    trig = lambda lsb, ident, value: 0xA0000000 | (lsb << 22) | (ident << 8) | value
    return {
        "hand_basic": u32s([th(100), cd(1, 3, 10, 20), cd(0, 63, 639, 479), th(101), cd(1, 0, 0, 0)]),
        "hand_loop_and_glitch": u32s([th((1 << 28) - 1), cd(1, 63, 1, 1), th(0), cd(0, 1, 2, 2), th(5),
                                      th(3), cd(1, 0, 3, 3)]),
        "hand_before_time_base": u32s([cd(1, 1, 1, 1), trig(0, 1, 1), 0xE0000014, th(7), cd(1, 2, 2, 2)]),
        "hand_triggers_padding": u32s([th(1), trig(5, 31, 1), 0xD0001234, 0xF0000001, 0xE0000016, 0xF0000005,
                                       0x20000000, 0x90000000, 0xB0000000, cd(0, 4, 700, 500),
                                       cd(1, 4, 2047, 2047)]),
        "hand_time_backwards": u32s([th(50), cd(1, 40, 1, 1), cd(1, 20, 2, 2), th(49), cd(0, 0, 3, 3)]),
        # Edges of a 1280x720 sensor, and TIME_HIGH drops at OpenEB's loop threshold: from the largest
        # value, 156 (a loop) and 157 (a glitch).
        "hand_edges": u32s([th((1 << 28) - 1), cd(1, 0, 1279, 719), cd(0, 1, 1280, 0), cd(1, 2, 0, 720),
                            th(156), cd(1, 3, 5, 5), th((1 << 28) - 1), th(157), cd(0, 4, 6, 6)]),
    }


def evt21_hand(legacy: bool) -> dict:
    th = lambda v: (0x8 << 60) | (v << 32)
    cd = lambda p, lsb, x, y, mask: (p << 60) | (lsb << 54) | (x << 43) | (y << 32) | mask
    trig = lambda lsb, ident, value: (0xA << 60) | (lsb << 54) | (ident << 40) | (value << 32)
    others = lambda lsb, sub: (0xE << 60) | (lsb << 54) | (sub << 32)
    return {
        "hand_basic": u64s([th(100), cd(1, 3, 32, 20, 0x80000001), cd(0, 63, 1248, 719, 0xFFFFFFFF),
                            th(101), cd(1, 0, 0, 0, 1)], legacy),
        "hand_loop_and_glitch": u64s([th((1 << 28) - 1), cd(1, 63, 1, 1, 3), th(0), cd(0, 1, 2, 2, 5), th(5),
                                      th(3), cd(1, 0, 3, 3, 7)], legacy),
        "hand_before_time_base": u64s([cd(1, 1, 1, 1, 1), trig(0, 1, 1), others(0, 0x14), th(7),
                                       cd(1, 2, 2, 2, 0xF0)], legacy),
        "hand_triggers_padding": u64s([th(1), trig(5, 31, 1), others(9, 0x16), (0xF << 60) | 5, (0x2 << 60),
                                       (0xB << 60), cd(0, 4, 2040, 700, 0xFFFFFFFF),
                                       cd(1, 4, 2047, 2047, 1)], legacy),
        "hand_time_backwards": u64s([th(50), cd(1, 40, 1, 1, 1), cd(1, 20, 2, 2, 0x11), th(49),
                                     cd(0, 0, 3, 3, 1)], legacy),
        "hand_edges": u64s([th((1 << 28) - 1), cd(1, 0, 1248, 719, 0xFFFFFFFF), cd(0, 1, 1249, 5, 0xFFFFFFFF),
                            cd(1, 2, 1279, 6, 3), cd(1, 2, 2047, 7, 0xFFFFFFFF), cd(0, 3, 0, 720, 1), th(156),
                            cd(1, 3, 5, 5, 1), th((1 << 28) - 1), th(157), cd(0, 4, 6, 6, 1)], legacy),
    }


# ---- writers of the four corpora ----------------------------------------------------------------
def _put(folder: pathlib.Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data[:MAX_SEED])


def _writer_streams(rng: np.random.Generator, encoding: str, legacy: bool = False) -> List[tuple]:
    """(name, geometry, header, body) of writer-made recordings, bodies trimmed to fit the seed size."""
    out = []
    for name, (w, h) in (("hd", (1280, 720)), ("vga", (640, 480)), ("small", (32, 24))):
        ev = random_events(rng, 120, w, h, int(rng.integers(0, 1 << 30)), 5000)
        tr = random_triggers(rng, 6, int(ev["t"][0]), 5000)
        out.append((f"writer_{name}", (w, h), *split_header(write_raw(encoding, w, h, ev, tr, legacy))))
    ev = row_bursts(rng, 1280, 720, 1000)
    out.append(("writer_bursts", (1280, 720), *split_header(write_raw(encoding, 1280, 720, ev, None, legacy))))
    # Across a counter loop (EVT3: 2^24 us, EVT2/2.1: 2^34 us).
    period = (1 << 24) if encoding == "evt3" else (1 << 34)
    ev = random_events(rng, 60, 640, 480, period - 2000, 4000)
    out.append(("writer_loop", (640, 480), *split_header(write_raw(encoding, 640, 480, ev, None, legacy))))
    return out


def make(out_dir: pathlib.Path, real_dir: Optional[pathlib.Path]) -> None:
    rng = np.random.default_rng(8)
    hand = {"evt2": evt2_hand(), "evt3": evt3_hand()}
    for enc in ENCODINGS:
        folder = out_dir / enc
        variants = [False, True] if enc == "evt21" else [False]
        for legacy in variants:
            tag = "_legacy" if legacy else ""
            for name, geometry, _, body in _writer_streams(rng, enc, legacy):
                size = min(len(body), MAX_SEED - 16)
                cuts = sorted(int(c) for c in rng.integers(0, size + 1, 3))
                restore = int(rng.integers(0, 65536))
                _put(folder, f"{name}{tag}", decoder_prefix(True, True, legacy, geometry, cuts, restore) + body)
            streams = evt21_hand(legacy) if enc == "evt21" else hand[enc]
            for name, body in streams.items():
                _put(folder, f"{name}{tag}", decoder_prefix(True, True, legacy, (1280, 720), [3, 9], 3) + body)
                if not legacy:  # (keeps each corpus within 40 files)
                    _put(folder, f"{name}_nogeom_notriggers",
                         decoder_prefix(False, False, legacy, None, [1, 2, len(body) // 2], 1) + body)
        # Hostile states, as a damaged time index could hand to restore().
        edges = (evt21_hand(False) if enc == "evt21" else hand[enc])["hand_edges"]
        for name, state in HOSTILE_STATES.items():
            _put(folder, f"state_{name}", decoder_prefix(True, True, False, (1280, 720), [5], 2, state) + edges)
        # The same stream with odd geometries (one side 0 = unknown, sides beyond the 11-bit range).
        body = _writer_streams(rng, enc)[0][3][:2000]
        for w, h in ((0, 720), (4099, 3000), (1, 1), (2048, 2048)):
            _put(folder, f"writer_geometry_{w}x{h}", decoder_prefix(True, True, False, (w, h), [7], 5) + body)

    # raw_header: whole small files from the writer, headers in the shapes found in the wild.
    folder = out_dir / "raw_header"
    for enc in ENCODINGS:
        ev = random_events(rng, 80, 640, 480, 5000, 3000)
        tr = random_triggers(rng, 4, 5000, 3000)
        raw = write_raw(enc, 640, 480, ev, tr)
        _put(folder, f"writer_{enc}", header_prefix(0b100, 3, 10) + raw)
        _put(folder, f"writer_{enc}_raise_metavision", header_prefix(0b011, 40, 3) + raw)
        _put(folder, f"writer_{enc}_repeated_past_a_block", header_prefix(0b100, 77, 0xC000 | 33) + raw)
        if enc == "evt21":
            raw = write_raw(enc, 640, 480, ev, tr, legacy=True)
            _put(folder, "writer_evt21_legacy", header_prefix(0b100, 7, 5) + raw)
    _, body3 = split_header(write_raw("evt3", 1280, 720, random_events(rng, 60, 1280, 720, 0, 999)))
    _, body2 = split_header(write_raw("evt2", 640, 480, random_events(rng, 60, 640, 480, 0, 999)))
    headers = {
        "old_gen3_no_end": (b"% Date 2020-09-14 09:03:25\n% firmware_version 2.0.2\n% integrator_name Prophesee\n"
                            b"% plugin_name hal_plugin_gen3_fx3\n% serial_number 30384338\n% system_ID 21\n"
                            b"% evt 2.0\n", body2),
        "evk4_full": (b"% camera_integrator_name Prophesee\n% date 2023-03-29 16:37:46\n% evt 3.0\n"
                      b"% format EVT3;height=720;width=1280\n% generation 4.2\n% geometry 1280x720\n"
                      b"% integrator_name Prophesee\n% plugin_integrator_name Prophesee\n"
                      b"% plugin_name hal_plugin_imx636_evk4\n% sensor_generation 4.2\n% serial_number 00ca0009\n"
                      b"% system_ID 49\n% end\n", body3),
        "system_id_only": (b"% system_ID 48\n% integrator_name Prophesee\n", body3),
        "evt21_legacy_key": (b"% format EVT21;height=720;width=1280;endianness=legacy\n% end\n", body3),
        "crlf_and_spaces": (b"% evt   3.0\r\n% geometry 640x480\r\n% key  a   b  \r\n% end\r\n", body3),
        "conflicting_geometry": (b"% format EVT3;height=720;width=1280\n% geometry 640x480\n% end\n", body3),
        "unsupported_evt4": (b"% format EVT4;height=720;width=1280\n% end\n", body3),
        "huge_geometry": (b"% format EVT2;height=2000000000;width=2000000000\n% end\n", body2),
        "no_header": (b"", body3),
        "percent_in_data": (b"% evt 3.0\n", b"%\x00% " + body3),
        "header_only": (b"% evt 2.0\n% geometry 640x480\n", b""),
    }
    for name, (header, body) in headers.items():
        _put(folder, f"hand_{name}", header_prefix(0b100, 1, 7) + header + body)
    # bit 7: the harness pads the header so that a header line ends exactly at the reader's first 4 KiB.
    _put(folder, "hand_line_at_4k", header_prefix(0x80) + b"% evt 2.0\n% geometry 640x480\n" + body2)

    if real_dir is None:
        return
    for enc, name in (("evt3", "evt3_gen41_expelliarmus.raw"), ("evt2", "evt2_gen3_faery.raw")):
        path = real_dir / name
        if not path.is_file():
            continue
        raw = path.read_bytes()
        data_at = raw.index(b"\n% system_ID")  # both real files end their header with system_ID
        data_at = raw.index(b"\n", data_at + 1) + 1
        if enc == "evt2":  # the evt line follows system_ID in the Gen3 file
            while raw[data_at:data_at + 2] == b"% ":
                data_at = raw.index(b"\n", data_at) + 1
        header, body = raw[:data_at], raw[data_at:]
        _put(out_dir / "raw_header", f"real_{enc}_start", header_prefix(0b100, 2, 9) + header + body)
        geometry = (1280, 720) if enc == "evt3" else (640, 480)
        for k, frac in enumerate((0.0, 0.1, 0.37, 0.5, 0.81, 0.99)):
            start = int(len(body) * frac) & ~7
            start += k % 2 if enc == "evt3" else 0  # some pieces start mid-word
            piece = body[start:start + 3500]
            _put(out_dir / enc, f"real_{k}", decoder_prefix(True, True, False, geometry, [100, 1001], k * 97) + piece)
