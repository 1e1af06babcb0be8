// SPDX-License-Identifier: Apache-2.0
// ECF chunk decoder and encoder (formats.md §3.2), written from the format description: the decoder
// checks every read against the chunk's end and every run against the event count.
#include <algorithm>
#include <cstring>
#include <string>

#include "evloader/core/error.hpp"
#include "evloader/io/ecf.hpp"
#include "io/hdf5/ecf_internal.hpp"

namespace evloader::ecf {

namespace detail {

namespace {

inline std::uint16_t load_u16(const std::uint8_t* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline std::uint32_t load_u32(const std::uint8_t* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline std::uint64_t load_u64(const std::uint8_t* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// One stream decoder per section; each returns nullptr after setting `error` on malformed input.
struct Cursor {
  const std::uint8_t* begin;
  const std::uint8_t* p;
  const std::uint8_t* end;
  DecodeError* error;

  [[nodiscard]] std::size_t left() const noexcept { return static_cast<std::size_t>(end - p); }
  bool fail(const char* what) noexcept {
    error->what = what;
    error->offset = static_cast<std::size_t>(p - begin);
    return false;
  }
};

bool decode_timestamps(Cursor& c, EventCD* out, std::size_t n, std::uint64_t t0) noexcept {
  std::uint64_t cur = t0;
  std::size_t i = 0;
  while (i < n) {
    if (c.p >= c.end) return c.fail("timestamp stream truncated");
    unsigned b = *c.p;
    if ((b >> 4) == 15) {
      // Big delta: 4 bits per byte, least significant first, ended by the first normal byte.
      std::uint64_t dt = 0;
      unsigned shift = 0;
      do {
        if (shift >= 64) return c.fail("timestamp delta longer than 16 nibbles");
        dt |= static_cast<std::uint64_t>(b & 15) << shift;
        shift += 4;
        ++c.p;
        if (c.p >= c.end) return c.fail("timestamp stream truncated after a time delta");
        b = *c.p;
      } while ((b >> 4) == 15);
      cur += dt;
    }
    cur += b >> 4;
    ++c.p;
    std::size_t count = b & 15;
    if (count == 15) {
      if (c.left() < 2) return c.fail("timestamp run count truncated");
      count = load_u16(c.p);
      c.p += 2;
    }
    if (count > n - i) return c.fail("timestamp run longer than the events left in the chunk");
    const auto t = static_cast<std::int64_t>(cur);
    for (std::size_t k = 0; k < count; ++k) out[i + k].t = t;
    i += count;
  }
  return true;
}

bool decode_ys(Cursor& c, EventCD* out, std::size_t n) noexcept {
  std::size_t i = 0;
  while (i < n) {
    if (c.left() < 2) return c.fail("y stream truncated");
    const unsigned w = load_u16(c.p);
    c.p += 2;
    const auto y = static_cast<std::uint16_t>(w >> 5);
    std::size_t count = w & 31;
    if (count == 31) {
      if (c.left() < 2) return c.fail("y run count truncated");
      count = load_u16(c.p);
      c.p += 2;
    }
    if (count > n - i) return c.fail("y run longer than the events left in the chunk");
    for (std::size_t k = 0; k < count; ++k) out[i + k].y = y;
    i += count;
  }
  return true;
}

// For each 5-bit mask, the offsets (1..5) of the flagged neighbours in increasing x, and their count.
struct MaskTable {
  std::uint8_t offsets[32][5] = {};
  std::uint8_t count[32] = {};
  constexpr MaskTable() {
    for (unsigned m = 0; m < 32; ++m)
      for (unsigned j = 0; j < 5; ++j)
        if (m & (16u >> j)) offsets[m][count[m]++] = static_cast<std::uint8_t>(j + 1);
  }
};
constexpr MaskTable kMasks;

bool decode_xs_masked(Cursor& c, EventCD* out, std::size_t n) noexcept {
  std::size_t i = 0;
  // Fast path while a word's 6 possible values fit: store all 6 without branches; the ones past the
  // word's own count are overwritten by the next word.
  while (n - i >= 6) {
    if (c.left() < 2) return c.fail("x stream truncated");
    const unsigned w = load_u16(c.p);
    c.p += 2;
    const unsigned x = w >> 5;
    const unsigned mask = w & 31;
    const std::uint8_t* off = kMasks.offsets[mask];
    EventCD* e = out + i;
    e[0].x = static_cast<std::uint16_t>(x);
    e[1].x = static_cast<std::uint16_t>(x + off[0]);
    e[2].x = static_cast<std::uint16_t>(x + off[1]);
    e[3].x = static_cast<std::uint16_t>(x + off[2]);
    e[4].x = static_cast<std::uint16_t>(x + off[3]);
    e[5].x = static_cast<std::uint16_t>(x + off[4]);
    i += 1u + kMasks.count[mask];
  }
  while (i < n) {
    if (c.left() < 2) return c.fail("x stream truncated");
    const unsigned w = load_u16(c.p);
    c.p += 2;
    const unsigned x = w >> 5;
    const unsigned mask = w & 31;
    // The last word may flag pixels past the chunk's end (the reference encoder reads beyond its
    // events there): they are not events, drop them.
    out[i++].x = static_cast<std::uint16_t>(x);
    for (unsigned k = 0; k < kMasks.count[mask] && i < n; ++k)
      out[i++].x = static_cast<std::uint16_t>(x + kMasks.offsets[mask][k]);
  }
  return true;
}

bool decode_ps(Cursor& c, EventCD* out, std::size_t n) noexcept {
  std::size_t i = 0;
  while (i < n) {
    if (c.p >= c.end) return c.fail("polarity stream truncated");
    const unsigned b = *c.p++;
    const auto p = static_cast<std::int16_t>(b >> 7);
    std::size_t count = b & 127;
    if (count == 127) {
      if (c.left() < 2) return c.fail("polarity run count truncated");
      count = load_u16(c.p);
      c.p += 2;
    }
    if (count > n - i) return c.fail("polarity run longer than the events left in the chunk");
    for (std::size_t k = 0; k < count; ++k) out[i + k].p = p;
    i += count;
  }
  return true;
}

bool decode_pack_xp(Cursor& c, EventCD* out, std::size_t n) noexcept {
  const std::size_t groups = (n + 3) / 4;
  if (c.left() / 6 < groups) return c.fail("packed x/p stream truncated");
  const std::uint8_t* p = c.p;
  std::size_t i = 0;
  for (std::size_t g = 0; g < groups; ++g, p += 6) {
    const unsigned w0 = load_u16(p), w1 = load_u16(p + 2), w2 = load_u16(p + 4);
    const unsigned v[4] = {w0 >> 4, (w0 & 0xF) | ((w1 >> 8) << 4), (w1 & 0xFF) | ((w2 >> 12) << 8),
                           w2 & 0xFFF};
    const std::size_t m = std::min<std::size_t>(4, n - i);
    for (std::size_t k = 0; k < m; ++k, ++i) {
      out[i].x = static_cast<std::uint16_t>(v[k] >> 1);
      out[i].p = static_cast<std::int16_t>(v[k] & 1);
    }
  }
  c.p = p;
  return true;
}

bool decode_pack_yxp(Cursor& c, EventCD* out, std::size_t n) noexcept {
  const std::size_t groups = (n + 3) / 4;
  if (c.left() / 12 < groups) return c.fail("packed y/x/p stream truncated");
  const std::uint8_t* p = c.p;
  std::size_t i = 0;
  for (std::size_t g = 0; g < groups; ++g, p += 12) {
    const std::uint32_t w0 = load_u32(p), w1 = load_u32(p + 4), w2 = load_u32(p + 8);
    const std::uint32_t v[4] = {w0 >> 8, (w0 & 0xFF) | ((w1 >> 16) << 8), (w1 & 0xFFFF) | ((w2 >> 24) << 16),
                                w2 & 0xFFFFFF};
    const std::size_t m = std::min<std::size_t>(4, n - i);
    for (std::size_t k = 0; k < m; ++k, ++i) {
      out[i].y = static_cast<std::uint16_t>((v[k] >> 12) & 0x7FF);
      out[i].x = static_cast<std::uint16_t>((v[k] >> 1) & 0x7FF);
      out[i].p = static_cast<std::int16_t>(v[k] & 1);
    }
  }
  c.p = p;
  return true;
}

}  // namespace

bool parse_header(const std::uint8_t* data, std::size_t size, ChunkHeader& header,
                  DecodeError& error) noexcept {
  if (size < kHeaderBytes) {
    error = {"chunk shorter than its 12-byte header", 0};
    return false;
  }
  const std::uint32_t info = load_u32(data);
  if ((info & 3u) == 3u) {
    error = {"invalid mode bits (both packing flags set)", 0};
    return false;
  }
  header.event_count = info >> 2;
  if (header.event_count > kMaxChunkEvents) {
    error = {"event count above 65535", 0};
    return false;
  }
  header.mode = (info & 2u) ? Mode::pack_yxp : (info & 1u) ? Mode::pack_xp : Mode::masked_x;
  header.t0 = static_cast<std::int64_t>(load_u64(data + 4));
  return true;
}

bool try_decode(const std::uint8_t* data, std::size_t size, EventCD* out, std::size_t capacity,
                std::size_t& n_out, DecodeError& error) noexcept {
  ChunkHeader h;
  if (!parse_header(data, size, h, error)) return false;
  const std::size_t n = h.event_count;
  if (n > capacity) {
    error = {"more events than the chunk can hold", 0};
    return false;
  }
  Cursor c{data, data + kHeaderBytes, data + size, &error};
  if (!decode_timestamps(c, out, n, static_cast<std::uint64_t>(h.t0))) return false;
  bool ok = false;
  switch (h.mode) {
    case Mode::pack_yxp: ok = decode_pack_yxp(c, out, n); break;
    case Mode::pack_xp: ok = decode_ys(c, out, n) && decode_pack_xp(c, out, n); break;
    case Mode::masked_x:
      ok = decode_ys(c, out, n) && decode_xs_masked(c, out, n) && decode_ps(c, out, n);
      break;
  }
  if (!ok) return false;
  n_out = n;
  return true;
}

// --- Encoder -------------------------------------------------------------------------------------

const char* validate(std::span<const EventCD> events, bool require_sorted) noexcept {
  if (events.size() > kMaxChunkEvents) return "more than 65535 events in one ECF chunk";
  for (std::size_t i = 0; i < events.size(); ++i) {
    const EventCD& e = events[i];
    if (e.x >= 2048 || e.y >= 2048) return "ECF stores x and y below 2048";
    if (e.p != 0 && e.p != 1) return "ECF stores polarities 0 and 1 only";
    if (require_sorted && i && e.t < events[i - 1].t) return "ECF needs events sorted by t inside a chunk";
  }
  return nullptr;
}

namespace {

// The reference looks at the first quarter of a chunk (all of it below 16 events).
std::size_t sample_size(std::size_t n) noexcept {
  return n < 16 ? n : static_cast<std::size_t>(0.25 * static_cast<double>(n) + 0.5);
}

bool should_pack_yxp(std::span<const EventCD> ev) noexcept {
  const std::size_t m = sample_size(ev.size());
  const auto threshold = static_cast<std::size_t>(static_cast<double>(m) * 20.0 / 100 + 0.5);
  std::size_t count = 0;
  int prev_y = m ? ev[0].y : 0;
  for (std::size_t i = 1; i < m; ++i) {
    if (ev[i].y == prev_y) {
      if (++count > threshold) return false;
    } else {
      prev_y = ev[i].y;
    }
  }
  return true;
}

bool should_pack_xp(std::span<const EventCD> ev) noexcept {
  const std::size_t m = sample_size(ev.size());
  const auto threshold = static_cast<std::size_t>(static_cast<double>(m) * 8.0 / 100 + 0.5);
  std::size_t count = 0;
  int run_x = m ? ev[0].x : 0, prev_x = run_x;
  for (std::size_t i = 1; i < m; ++i) {
    const int x = ev[i].x;
    if (x > prev_x && x <= run_x + 5) {
      if (++count > threshold) return false;
    } else {
      run_x = x;
    }
    prev_x = x;
  }
  return true;
}

inline void store_u16(std::uint8_t*& p, unsigned v) noexcept {
  const auto w = static_cast<std::uint16_t>(v);
  std::memcpy(p, &w, 2);
  p += 2;
}
inline void store_u32(std::uint8_t*& p, std::uint32_t v) noexcept {
  std::memcpy(p, &v, 4);
  p += 4;
}

std::uint8_t* encode_timestamps(std::span<const EventCD> ev, std::uint8_t* p) noexcept {
  const std::size_t n = ev.size();
  std::uint64_t cur = n ? static_cast<std::uint64_t>(ev[0].t) : 0;
  std::memcpy(p, &cur, 8);
  p += 8;
  // A time below the running maximum cannot be stored: like the reference encoder, store the maximum
  // (only the HDF5 filter path allows this, for the fill values past a dataset's end).
  auto at = [&](std::size_t k) { return std::max(static_cast<std::int64_t>(cur), ev[k].t); };
  for (std::size_t i = 0; i < n;) {
    const std::int64_t t_i = at(i);
    const auto t = static_cast<std::uint64_t>(t_i);
    std::uint64_t delta = t - cur;  // t >= cur: the true non-negative delta
    if (delta >= 15) {
      for (std::uint64_t dt = delta; dt > 0; dt >>= 4) *p++ = static_cast<std::uint8_t>(0xF0 | (dt & 15));
      delta = 0;
    }
    cur = t;
    std::size_t count = 1;
    while (count < n - i && at(i + count) == t_i) ++count;
    if (count >= 15) {
      *p++ = static_cast<std::uint8_t>((delta << 4) | 15);
      *p++ = static_cast<std::uint8_t>(count & 0xFF);
      *p++ = static_cast<std::uint8_t>(count >> 8);
    } else {
      *p++ = static_cast<std::uint8_t>((delta << 4) | count);
    }
    i += count;
  }
  return p;
}

std::uint8_t* encode_ys(std::span<const EventCD> ev, std::uint8_t* p) noexcept {
  const std::size_t n = ev.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned y = ev[i].y;
    std::size_t count = 1;
    while (count < n - i && ev[i + count].y == y) ++count;
    if (count >= 31) {
      store_u16(p, (y << 5) | 31);
      store_u16(p, static_cast<unsigned>(count));
    } else {
      store_u16(p, (y << 5) | static_cast<unsigned>(count));
    }
    i += count;
  }
  return p;
}

std::uint8_t* encode_ps(std::span<const EventCD> ev, std::uint8_t* p) noexcept {
  const std::size_t n = ev.size();
  for (std::size_t i = 0; i < n;) {
    const auto pol = static_cast<unsigned>(ev[i].p);
    std::size_t count = 1;
    while (count < n - i && ev[i + count].p == ev[i].p) ++count;
    if (count >= 127) {
      *p++ = static_cast<std::uint8_t>((pol << 7) | 127);
      *p++ = static_cast<std::uint8_t>(count & 0xFF);
      *p++ = static_cast<std::uint8_t>(count >> 8);
    } else {
      *p++ = static_cast<std::uint8_t>((pol << 7) | count);
    }
    i += count;
  }
  return p;
}

std::uint8_t* encode_xs_masked(std::span<const EventCD> ev, std::uint8_t* p) noexcept {
  const std::size_t n = ev.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned x = ev[i++].x;
    unsigned word = x << 5;
    for (unsigned j = 0; j < 5; ++j) {
      if (i < n && ev[i].x == x + j + 1) {
        word |= 16u >> j;
        ++i;
      }
    }
    store_u16(p, word);
  }
  return p;
}

// Packed modes work on groups of 4; the values past the end of the chunk are zero (ignored by decoders).
template <class Value>
void group_values(std::span<const EventCD> ev, std::size_t i, Value (&v)[4], Value (*pack)(const EventCD&)) {
  for (std::size_t k = 0; k < 4; ++k) v[k] = i + k < ev.size() ? pack(ev[i + k]) : 0;
}

std::uint8_t* encode_pack_xp(std::span<const EventCD> ev, std::uint8_t* p) noexcept {
  for (std::size_t i = 0; i < ev.size(); i += 4) {
    unsigned v[4];
    group_values<unsigned>(ev, i, v, [](const EventCD& e) { return (unsigned{e.x} << 1) | unsigned(e.p); });
    store_u16(p, (v[0] << 4) | (v[1] & 0xF));
    store_u16(p, ((v[1] >> 4) << 8) | (v[2] & 0xFF));
    store_u16(p, ((v[2] >> 8) << 12) | (v[3] & 0xFFF));
  }
  return p;
}

std::uint8_t* encode_pack_yxp(std::span<const EventCD> ev, std::uint8_t* p) noexcept {
  for (std::size_t i = 0; i < ev.size(); i += 4) {
    std::uint32_t v[4];
    group_values<std::uint32_t>(ev, i, v, [](const EventCD& e) {
      return (std::uint32_t{e.y} << 12) | (std::uint32_t{e.x} << 1) | static_cast<std::uint32_t>(e.p);
    });
    store_u32(p, (v[0] << 8) | (v[1] & 0xFF));
    store_u32(p, ((v[1] >> 8) << 16) | (v[2] & 0xFFFF));
    store_u32(p, ((v[2] >> 16) << 24) | (v[3] & 0xFFFFFF));
  }
  return p;
}

}  // namespace

Mode choose(std::span<const EventCD> events) noexcept {
  if (should_pack_yxp(events)) return Mode::pack_yxp;
  if (should_pack_xp(events)) return Mode::pack_xp;
  return Mode::masked_x;
}

std::size_t encode_unchecked(std::span<const EventCD> events, std::uint8_t* out, Mode mode) noexcept {
  const std::uint32_t info = (static_cast<std::uint32_t>(events.size()) << 2) |
                             (mode == Mode::pack_yxp ? 2u : 0u) | (mode == Mode::pack_xp ? 1u : 0u);
  std::uint8_t* p = out;
  store_u32(p, info);
  p = encode_timestamps(events, p);
  switch (mode) {
    case Mode::pack_yxp: p = encode_pack_yxp(events, p); break;
    case Mode::pack_xp: p = encode_pack_xp(events, encode_ys(events, p)); break;
    case Mode::masked_x: p = encode_ps(events, encode_xs_masked(events, encode_ys(events, p))); break;
  }
  return static_cast<std::size_t>(p - out);
}

}  // namespace detail

namespace {

[[noreturn]] void throw_decode_error(const detail::DecodeError& error, std::size_t size) {
  throw FormatError("ECF chunk: " + std::string(error.what) + " (at byte " + std::to_string(error.offset) +
                    " of " + std::to_string(size) + ")");
}

}  // namespace

ChunkHeader read_header(std::span<const std::byte> chunk) {
  ChunkHeader h;
  detail::DecodeError error;
  if (!detail::parse_header(reinterpret_cast<const std::uint8_t*>(chunk.data()), chunk.size(), h, error))
    throw_decode_error(error, chunk.size());
  return h;
}

std::size_t decode(std::span<const std::byte> chunk, EventCD* out, std::size_t capacity) {
  std::size_t n = 0;
  detail::DecodeError error;
  if (!detail::try_decode(reinterpret_cast<const std::uint8_t*>(chunk.data()), chunk.size(), out, capacity, n,
                          error))
    throw_decode_error(error, chunk.size());
  return n;
}

void decode(std::span<const std::byte> chunk, EventBuffer& out) {
  const std::size_t n = read_header(chunk).event_count;
  decode(chunk, out.prepare(n), n);
  out.commit(n);
}

Mode choose_mode(std::span<const EventCD> events) noexcept { return detail::choose(events); }

std::size_t max_encoded_size(std::size_t n) noexcept {
  // Per event at worst: 16 delta nibbles + 1 run byte of t, 2 bytes of y, 2 of x, 1 of p (or 3 packed),
  // plus the header and one padded group.
  return kHeaderBytes + 16 + n * 22;
}

std::size_t encode(std::span<const EventCD> events, std::byte* out, std::optional<Mode> mode) {
  if (const char* bad = detail::validate(events, true)) throw ConfigError(std::string("ECF encoder: ") + bad);
  return detail::encode_unchecked(events, reinterpret_cast<std::uint8_t*>(out),
                                  mode.value_or(choose_mode(events)));
}

void encode(std::span<const EventCD> events, std::vector<std::byte>& out, std::optional<Mode> mode) {
  out.resize(max_encoded_size(events.size()));
  out.resize(encode(events, out.data(), mode));
}

}  // namespace evloader::ecf
