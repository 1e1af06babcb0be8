// SPDX-License-Identifier: Apache-2.0
// Prophesee DAT files (formats.md §2): header and type/size bytes, 8-byte record decoding, writer.
#include "evloader/io/dat.hpp"

#include <array>
#include <bit>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>
#include <limits>
#include <system_error>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "evloader/core/error.hpp"

namespace evloader {

namespace {

static_assert(std::endian::native == std::endian::little, "DAT records are decoded with native LE loads");

constexpr std::uint64_t kRecordSize = 8;
constexpr std::int64_t kWrap = std::int64_t{1} << 32;
constexpr std::int64_t kHalfWrap = std::int64_t{1} << 31;
constexpr std::uint32_t kCoordMask = 0x3FFF;  // 14-bit x and y

bool is_known_type(unsigned type) { return type == 0 || type == 12 || type == 14; }

// Height/Width values are decimal integers; anything else is a broken header, not "unknown".
int parse_dimension(const std::filesystem::path& path, const std::string& key, const std::string& value) {
  long long v = 0;
  const char* first = value.data();
  const char* last = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec != std::errc{} || ptr != last || v < 0 || v > std::numeric_limits<int>::max())
    throw_format_error(path, 0, "header key " + key + " has an invalid value '" + value + "'");
  return static_cast<int>(v);
}

std::uint64_t load_u64(const std::byte* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Advances the unwrapping state for one on-disk 32-bit timestamp and returns the 64-bit time. A drop of more
// than half the range is a counter wrap (files are time-sorted); smaller drops are genuine disorder.
inline std::int64_t unwrap(std::int64_t raw, std::int64_t& high, std::int64_t& last_raw,
                           std::uint64_t& loops) noexcept {
  if (raw < last_raw && last_raw - raw > kHalfWrap) [[unlikely]] {
    high += kWrap;
    ++loops;
  }
  last_raw = raw;
  return high + raw;
}

// The careful per-record loop: unwraps, drops out-of-bounds events (compacting the output), counts.
template <bool kCheckBounds>
std::size_t decode_cd_careful(const std::byte* in, std::size_t count, std::uint32_t width,
                              std::uint32_t height, DatDecodeState& state, EventCD* out, DecodeStats& stats) {
  std::int64_t high = state.high;
  std::int64_t last_raw = state.last_raw_t;
  std::int64_t last_t = state.last_event_t;
  std::uint64_t loops = 0, backwards = 0, dropped = 0;
  std::size_t n = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t rec = load_u64(in + i * kRecordSize);
    const std::int64_t t = unwrap(static_cast<std::int64_t>(rec & 0xFFFFFFFFu), high, last_raw, loops);
    const auto w = static_cast<std::uint32_t>(rec >> 32);
    const std::uint32_t x = w & kCoordMask;
    const std::uint32_t y = (w >> 14) & kCoordMask;
    // Written unconditionally and kept only when valid: no unpredictable branch per event.
    out[n] = EventCD{static_cast<std::uint16_t>(x), static_cast<std::uint16_t>(y),
                     static_cast<std::int16_t>((w >> 28) & 1u), t};
    bool keep = true;
    if constexpr (kCheckBounds) {
      keep = (x < width) & (y < height);
      dropped += !keep;
    }
    backwards += keep & (t < last_t);
    last_t = keep ? t : last_t;
    n += keep;
  }
  state.high = high;
  state.last_raw_t = last_raw;
  state.last_event_t = last_t;
  stats.time_loops += loops;
  stats.time_backwards += backwards;
  stats.out_of_bounds += dropped;
  return n;
}

// The common case, fast: a block of time-sorted records with no counter wrap and no out-of-bounds event.
// Every record becomes out[i] (no compaction, so the stores are independent) and the rare conditions are only
// OR-reduced. Returns false, having written garbage to out[0..count), when the block needs decode_cd_careful.
template <bool kCheckBounds>
bool decode_cd_fast(const std::byte* in, std::size_t count, std::uint32_t width, std::uint32_t height,
                    DatDecodeState& state, EventCD* out) {
  const std::int64_t high = state.high;
  std::uint32_t prev = state.last_raw_t < 0 ? 0u : static_cast<std::uint32_t>(state.last_raw_t);
  std::uint32_t unusual = 0;
  auto* dst = reinterpret_cast<unsigned char*>(out);
  std::size_t i = 0;
#if defined(__SSE2__)
  // Four records per step. The high half of t is the same for the whole block (high is a multiple of 2^32),
  // so each event is assembled from 32-bit lanes [x | y << 16, p, raw t, high >> 32] by shuffles.
  if ((high & 0xFFFFFFFF) == 0) {
    const __m128i hi = _mm_set1_epi32(static_cast<int>(static_cast<std::uint64_t>(high) >> 32));
    const __m128i mask14 = _mm_set1_epi32(static_cast<int>(kCoordMask));
    const __m128i one = _mm_set1_epi32(1);
    const __m128i bias = _mm_set1_epi32(INT32_MIN);  // unsigned compare through signed compare
    const __m128i x_max = _mm_set1_epi32(static_cast<int>(width) - 1);
    const __m128i y_max = _mm_set1_epi32(static_cast<int>(height) - 1);
    __m128i prev_t = _mm_set1_epi32(static_cast<int>(prev ^ 0x80000000u));
    __m128i bad = _mm_setzero_si128();
    for (; i + 4 <= count; i += 4) {
      const __m128 a =
          _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i * kRecordSize)));
      const __m128 b =
          _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i * kRecordSize + 16)));
      const __m128i t = _mm_castps_si128(_mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
      const __m128i w = _mm_castps_si128(_mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
      const __m128i x = _mm_and_si128(w, mask14);
      const __m128i y = _mm_and_si128(_mm_srli_epi32(w, 14), mask14);
      const __m128i xy = _mm_or_si128(x, _mm_slli_epi32(y, 16));
      const __m128i p = _mm_and_si128(_mm_srli_epi32(w, 28), one);
      const __m128i tb = _mm_xor_si128(t, bias);
      const __m128i before = _mm_or_si128(_mm_slli_si128(tb, 4), _mm_srli_si128(prev_t, 12));
      bad = _mm_or_si128(bad, _mm_cmplt_epi32(tb, before));
      prev_t = tb;
      if constexpr (kCheckBounds)
        bad = _mm_or_si128(bad, _mm_or_si128(_mm_cmpgt_epi32(x, x_max), _mm_cmpgt_epi32(y, y_max)));
      const __m128i xyp_lo = _mm_unpacklo_epi32(xy, p);
      const __m128i xyp_hi = _mm_unpackhi_epi32(xy, p);
      const __m128i th_lo = _mm_unpacklo_epi32(t, hi);
      const __m128i th_hi = _mm_unpackhi_epi32(t, hi);
      auto* o = reinterpret_cast<__m128i*>(dst + i * sizeof(EventCD));
      _mm_storeu_si128(o, _mm_unpacklo_epi64(xyp_lo, th_lo));
      _mm_storeu_si128(o + 1, _mm_unpackhi_epi64(xyp_lo, th_lo));
      _mm_storeu_si128(o + 2, _mm_unpacklo_epi64(xyp_hi, th_hi));
      _mm_storeu_si128(o + 3, _mm_unpackhi_epi64(xyp_hi, th_hi));
    }
    unusual = static_cast<std::uint32_t>(_mm_movemask_epi8(bad));
    prev = static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm_srli_si128(prev_t, 12))) ^ 0x80000000u;
  }
#endif
  // Scalar tail (and the whole block where SSE2 is not available).
  for (; i < count; ++i) {
    const std::uint64_t rec = load_u64(in + i * kRecordSize);
    const auto raw = static_cast<std::uint32_t>(rec);
    const auto w = static_cast<std::uint32_t>(rec >> 32);
    const std::uint32_t x = w & kCoordMask;
    const std::uint32_t y = (w >> 14) & kCoordMask;
    // x, y, p and the two padding bytes of EventCD as one 64-bit store, then t.
    const std::uint64_t xyp =
        std::uint64_t{x} | (std::uint64_t{y} << 16) | (std::uint64_t{(w >> 28) & 1u} << 32);
    const std::int64_t t = high + raw;
    std::memcpy(dst + i * sizeof(EventCD), &xyp, 8);
    std::memcpy(dst + i * sizeof(EventCD) + 8, &t, 8);
    if constexpr (kCheckBounds) unusual |= static_cast<std::uint32_t>((x >= width) | (y >= height));
    unusual |= static_cast<std::uint32_t>(raw < prev);  // any drop: a wrap or disorder, both rare
    prev = raw;
  }
  if (unusual != 0 || out[0].t < state.last_event_t) return false;
  state.last_raw_t = prev;
  state.last_event_t = high + prev;
  return true;
}

template <bool kCheckBounds>
std::size_t decode_cd_records(const std::byte* in, std::size_t count, std::uint32_t width,
                              std::uint32_t height, DatDecodeState& state, EventCD* out, DecodeStats& stats) {
  constexpr std::size_t kBlock = 1024;  // small enough that a fallback redoes little work
  std::size_t n = 0;
  for (std::size_t start = 0; start < count; start += kBlock) {
    const std::size_t len = std::min(kBlock, count - start);
    const std::byte* block = in + start * kRecordSize;
    if (decode_cd_fast<kCheckBounds>(block, len, width, height, state, out + n))
      n += len;
    else
      n += decode_cd_careful<kCheckBounds>(block, len, width, height, state, out + n, stats);
  }
  return n;
}

}  // namespace

DatInfo read_dat_info(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw_io_error(path, "no such file");
  if (std::filesystem::is_directory(status)) throw_io_error(path, "is a directory, not a DAT file");
  const std::uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw_io_error(path, "cannot get the file size: " + ec.message());

  DatInfo info;
  info.header = read_header(path);
  if (auto h = info.header.get("Height")) info.geometry.height = parse_dimension(path, "Height", *h);
  if (auto w = info.header.get("Width")) info.geometry.width = parse_dimension(path, "Width", *w);

  const std::uint64_t header_end = info.header.data_offset;
  if (header_end == 0) {
    // No header at all: the Python loader assumes Event2D records from byte 0, with no type/size bytes.
    info.type = DatEventType::event2d;
    info.data_offset = 0;
  } else if (file_size <= header_end) {
    info.data_offset = file_size;  // header only: a recording with no events
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw_io_error(path, "cannot open file");
    in.seekg(static_cast<std::streamoff>(header_end));
    std::array<unsigned char, 2> ts{};
    const std::uint64_t avail = std::min<std::uint64_t>(2, file_size - header_end);
    in.read(reinterpret_cast<char*>(ts.data()), static_cast<std::streamsize>(avail));
    if (static_cast<std::uint64_t>(in.gcount()) != avail) throw_io_error(path, "read failed");
    if (!is_known_type(ts[0]))
      throw_format_error(path, static_cast<std::int64_t>(header_end),
                         "unsupported DAT event type " + std::to_string(ts[0]) +
                             " (expected 0 or 12 for CD, 14 for triggers)");
    info.type = static_cast<DatEventType>(ts[0]);
    if (avail < 2) {
      // Cut between the type and size bytes: like any truncated tail, not worth refusing the file.
      info.data_offset = file_size;
      return info;
    }
    if (ts[1] != kRecordSize)
      throw_format_error(path, static_cast<std::int64_t>(header_end + 1),
                         "DAT event size is " + std::to_string(ts[1]) + ", expected 8");
    info.data_offset = header_end + 2;
  }
  const std::uint64_t body = file_size - info.data_offset;
  info.record_count = body / kRecordSize;
  info.trailing_bytes = body % kRecordSize;
  return info;
}

void decode_dat_cd(std::span<const std::byte> records, const Geometry& geometry, DatDecodeState& state,
                   EventBuffer& out, DecodeStats& stats) {
  const std::size_t count = records.size() / kRecordSize;
  stats.bytes += records.size();
  stats.truncated_bytes += records.size() % kRecordSize;
  if (count == 0) return;
  EventCD* dst = out.prepare(count);
  std::size_t n = 0;
  // Coordinates are 14-bit, so a geometry of 16384 or more can never reject anything.
  if (geometry.known() &&
      (geometry.width <= static_cast<int>(kCoordMask) || geometry.height <= static_cast<int>(kCoordMask)))
    n = decode_cd_records<true>(records.data(), count, static_cast<std::uint32_t>(geometry.width),
                                static_cast<std::uint32_t>(geometry.height), state, dst, stats);
  else
    n = decode_cd_records<false>(records.data(), count, 0, 0, state, dst, stats);
  out.commit(n);
  stats.cd_events += n;
}

void decode_dat_triggers(std::span<const std::byte> records, DatDecodeState& state, TriggerBuffer& out,
                         DecodeStats& stats) {
  const std::size_t count = records.size() / kRecordSize;
  stats.bytes += records.size();
  stats.truncated_bytes += records.size() % kRecordSize;
  if (count == 0) return;
  EventExtTrigger* dst = out.prepare(count);
  std::int64_t high = state.high;
  std::int64_t last_raw = state.last_raw_t;
  std::int64_t last_t = state.last_event_t;
  std::uint64_t loops = 0, backwards = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t rec = load_u64(records.data() + i * kRecordSize);
    const std::int64_t t = unwrap(static_cast<std::int64_t>(rec & 0xFFFFFFFFu), high, last_raw, loops);
    const auto w = static_cast<std::uint32_t>(rec >> 32);
    dst[i] = EventExtTrigger{static_cast<std::int16_t>(w & 0xFu), t, static_cast<std::int16_t>(w >> 26)};
    backwards += t < last_t;
    last_t = t;
  }
  state.high = high;
  state.last_raw_t = last_raw;
  state.last_event_t = last_t;
  stats.time_loops += loops;
  stats.time_backwards += backwards;
  out.commit(count);
  stats.trigger_events += count;
}

// ---------------------------------------------------------------------------------------------------------

namespace {

std::string current_date() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&now, &tm);
  std::array<char, 32> buf{};
  std::strftime(buf.data(), buf.size(), "%Y-%m-%d %H:%M:%S", &tm);
  return buf.data();
}

// Records are staged in blocks so that one write() call costs one ofstream call per block.
constexpr std::size_t kWriteBlock = 4096;

}  // namespace

DatWriter::DatWriter(const std::filesystem::path& path, Geometry geometry, DatEventType type)
    : path_(path), type_(type), geometry_(geometry) {
  if (!is_known_type(static_cast<unsigned>(type)))
    throw ConfigError("DatWriter: unsupported event type " + std::to_string(static_cast<unsigned>(type)));
  if (geometry.width < 0 || geometry.height < 0 || geometry.width > static_cast<int>(kCoordMask) + 1 ||
      geometry.height > static_cast<int>(kCoordMask) + 1)
    throw ConfigError("DatWriter: geometry " + std::to_string(geometry.width) + "x" +
                      std::to_string(geometry.height) + " is outside 0..16384 (14-bit coordinates)");
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw_io_error(path, "is a directory");
  out_.open(path, std::ios::binary | std::ios::trunc);
  if (!out_) throw_io_error(path, "cannot create file");
  // The C++ SDK's layout: keys in sorted order, then "% end". Height/Width only when the size is known, so
  // readers report "unknown" instead of a bogus 0x0 sensor.
  std::vector<std::pair<std::string, std::string>> lines;
  if (geometry.known()) lines.emplace_back("Height", std::to_string(geometry.height));
  lines.emplace_back("Version", "2");
  if (geometry.known()) lines.emplace_back("Width", std::to_string(geometry.width));
  lines.emplace_back("date", current_date());
  std::string head = format_header(lines, true);
  head.push_back(static_cast<char>(type));
  head.push_back(static_cast<char>(kRecordSize));
  out_.write(head.data(), static_cast<std::streamsize>(head.size()));
  if (!out_) throw_io_error(path, "write failed");
}

DatWriter::~DatWriter() {
  try {
    close();
  } catch (...) {  // NOLINT(bugprone-empty-catch): destructors must not throw; call close() to see errors
  }
}

void DatWriter::write(std::span<const EventCD> events) {
  if (type_ == DatEventType::ext_trigger)
    throw ConfigError("DatWriter: cannot write CD events to a trigger file: " + path_.string());
  if (!out_.is_open()) throw ConfigError("DatWriter: file already closed: " + path_.string());
  // Validate everything first so that a rejected call leaves the file unchanged.
  const bool bounded = geometry_.known();
  for (std::size_t i = 0; i < events.size(); ++i) {
    const EventCD& e = events[i];
    const bool bad_coord = e.x > kCoordMask || e.y > kCoordMask ||
                           (bounded && (e.x >= geometry_.width || e.y >= geometry_.height));
    if (bad_coord || (e.p != 0 && e.p != 1) || e.t < 0)
      throw ConfigError("DatWriter: event " + std::to_string(i) + " (x=" + std::to_string(e.x) + " y=" +
                        std::to_string(e.y) + " p=" + std::to_string(e.p) + " t=" + std::to_string(e.t) +
                        ") cannot be written: needs x, y within the geometry and < 16384, p 0/1, t >= 0");
  }
  std::array<std::uint64_t, kWriteBlock> block;
  for (std::size_t start = 0; start < events.size(); start += kWriteBlock) {
    const std::size_t n = std::min(kWriteBlock, events.size() - start);
    for (std::size_t i = 0; i < n; ++i) {
      const EventCD& e = events[start + i];
      const std::uint32_t w =
          std::uint32_t{e.x} | (std::uint32_t{e.y} << 14) | (static_cast<std::uint32_t>(e.p) << 28);
      block[i] = (static_cast<std::uint64_t>(e.t) & 0xFFFFFFFFu) | (std::uint64_t{w} << 32);
    }
    out_.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(n * kRecordSize));
    if (!out_) throw_io_error(path_, "write failed");
  }
}

void DatWriter::write(std::span<const EventExtTrigger> triggers) {
  if (type_ != DatEventType::ext_trigger)
    throw ConfigError("DatWriter: cannot write trigger events to a CD file: " + path_.string());
  if (!out_.is_open()) throw ConfigError("DatWriter: file already closed: " + path_.string());
  for (std::size_t i = 0; i < triggers.size(); ++i) {
    const EventExtTrigger& e = triggers[i];
    if ((e.p != 0 && e.p != 1) || e.id < 0 || e.id > 63 || e.t < 0)
      throw ConfigError("DatWriter: trigger " + std::to_string(i) + " (p=" + std::to_string(e.p) +
                        " id=" + std::to_string(e.id) + " t=" + std::to_string(e.t) +
                        ") cannot be written: needs p 0/1, id 0..63, t >= 0");
  }
  std::array<std::uint64_t, kWriteBlock> block;
  for (std::size_t start = 0; start < triggers.size(); start += kWriteBlock) {
    const std::size_t n = std::min(kWriteBlock, triggers.size() - start);
    for (std::size_t i = 0; i < n; ++i) {
      const EventExtTrigger& e = triggers[start + i];
      const std::uint32_t w = static_cast<std::uint32_t>(e.p) | (static_cast<std::uint32_t>(e.id) << 26);
      block[i] = (static_cast<std::uint64_t>(e.t) & 0xFFFFFFFFu) | (std::uint64_t{w} << 32);
    }
    out_.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(n * kRecordSize));
    if (!out_) throw_io_error(path_, "write failed");
  }
}

void DatWriter::close() {
  if (!out_.is_open()) return;
  out_.flush();
  const bool ok = static_cast<bool>(out_);
  out_.close();
  if (!ok || out_.fail()) throw_io_error(path_, "write failed while closing");
}

}  // namespace evloader
