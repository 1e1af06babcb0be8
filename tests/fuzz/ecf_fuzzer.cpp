// SPDX-License-Identifier: Apache-2.0
// Fuzz harness of the ECF chunk codec (formats.md §3.2): arbitrary chunks decode to exactly the announced
// events or a FormatError, never touching memory past the output they were given; fuzz-chosen events
// survive encode -> decode in every mode; the HDF5 filter callback keeps the same promises.
//
// Input: byte 0 picks the operation (% 3), the rest is its payload:
//   0 decode:     u8 capacity choice, chunk bytes
//   1 round trip: u8 flags (bits 0-1 mode, 3 = the encoder's choice; 0x40 long runs; 0x80 invalid events),
//                 u32 cut, u32 event count, u64 t0, per event: u8 kind, u32 x | y << 16 (+ u16/u64 step)
//   2 filter:     u8 direction (bit 0: decode), chunk bytes or 16-byte records
#include <hdf5.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/core/pod_buffer.hpp"
#include "evloader/io/ecf.hpp"
#include "fuzz_support.hpp"

namespace {

using evloader::EventCD;
using evloader::fuzz::FuzzInput;
namespace ecf = evloader::ecf;

#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

// A value no decoder writes by chance: the decoder must leave every record past n exactly so.
constexpr EventCD kSentinel{0xDEAD, 0xBEEF, 0x5A5A, 0x0123456789ABCDEF};

bool same_record(const EventCD& a, const EventCD& b) { return std::memcmp(&a, &b, sizeof(EventCD)) == 0; }

std::vector<EventCD> decode_exact(std::span<const std::byte> chunk) {
  auto copy = std::make_unique<std::byte[]>(chunk.size() ? chunk.size() : 1);
  if (!chunk.empty()) std::memcpy(copy.get(), chunk.data(), chunk.size());
  std::span<const std::byte> in(copy.get(), chunk.size());
  const std::size_t n = ecf::read_header(in).event_count;
  auto out = std::make_unique<EventCD[]>(n ? n : 1);
  const std::size_t got = ecf::decode(in, out.get(), n);
  FUZZ_CHECK(got == n);
  return {out.get(), out.get() + got};
}

// Invariants of any successful decode: the header's count, coordinates the 11-bit fields (plus the
// masked mode's 5-pixel reach) can express, binary polarities.
void check_decoded(const std::vector<EventCD>& events, ecf::Mode mode) {
  const unsigned max_x = mode == ecf::Mode::masked_x ? 2047 + 5 : 2047;
  for (const EventCD& e : events) {
    FUZZ_CHECK(e.x <= max_x);
    FUZZ_CHECK(e.y <= 2047);
    FUZZ_CHECK(e.p == 0 || e.p == 1);
  }
}

void fuzz_decode(FuzzInput& in) {
  const auto capacity_choice = in.take<std::uint8_t>();
  const auto payload = in.rest();
  const std::span<const std::byte> chunk(reinterpret_cast<const std::byte*>(payload.data()), payload.size());

  std::optional<ecf::ChunkHeader> header;
  try {
    header = ecf::read_header(chunk);
  } catch (const evloader::FormatError&) {
    // Whatever read_header refuses, decode refuses too.
    EventCD dummy{};
    bool threw = false;
    try {
      (void)ecf::decode(chunk, &dummy, 1);
    } catch (const evloader::FormatError&) {
      threw = true;
    }
    FUZZ_CHECK(threw);
    return;
  }
  const std::size_t n = header->event_count;
  FUZZ_CHECK(n <= ecf::kMaxChunkEvents);

  // 1. Into an exact heap copy and an output of exactly n records (ASan sees any overrun).
  std::vector<EventCD> events;
  bool ok = true;
  try {
    events = decode_exact(chunk);
  } catch (const evloader::FormatError&) {
    ok = false;
  }
  if (ok) {
    FUZZ_CHECK(events.size() == n);
    check_decoded(events, header->mode);
  }

  // 2. Into a larger output: records past n stay untouched, the result is the same.
  const std::size_t extra = 1 + capacity_choice % 8;
  std::vector<EventCD> big(n + extra, kSentinel);
  bool ok_big = true;
  try {
    FUZZ_CHECK(ecf::decode(chunk, big.data(), big.size()) == n);
  } catch (const evloader::FormatError&) {
    ok_big = false;
  }
  FUZZ_CHECK(ok_big == ok);
  for (std::size_t i = n; i < big.size(); ++i) FUZZ_CHECK(same_record(big[i], kSentinel));
  if (ok)
    for (std::size_t i = 0; i < n; ++i) FUZZ_CHECK(big[i] == events[i]);

  // 3. Into too small an output: always refused, nothing written.
  if (n > 0) {
    const std::size_t small = capacity_choice % n;
    std::vector<EventCD> tiny(small + 1, kSentinel);
    bool threw = false;
    try {
      (void)ecf::decode(chunk, tiny.data(), small);
    } catch (const evloader::FormatError&) {
      threw = true;
    }
    FUZZ_CHECK(threw);
    for (const EventCD& e : tiny) FUZZ_CHECK(same_record(e, kSentinel));
  }

  // 4. The appending overload: same events after what the buffer held.
  evloader::EventBuffer buffer;
  buffer.push_back(kSentinel);
  bool ok_buffer = true;
  try {
    ecf::decode(chunk, buffer);
  } catch (const evloader::FormatError&) {
    ok_buffer = false;
  }
  FUZZ_CHECK(ok_buffer == ok);
  if (!ok) {
    FUZZ_CHECK(buffer.size() == 1);
    return;
  }
  FUZZ_CHECK(buffer.size() == n + 1 && same_record(buffer[0], kSentinel));
  for (std::size_t i = 0; i < n; ++i) FUZZ_CHECK(buffer[i + 1] == events[i]);

  // 5. What decoded re-encodes (when ECF can store it) to a chunk that decodes to the same events.
  const bool storable =
      std::all_of(events.begin(), events.end(), [](const EventCD& e) { return e.x < 2048; }) &&
      std::is_sorted(events.begin(), events.end(),
                     [](const EventCD& a, const EventCD& b) { return a.t < b.t; });
  if (storable) {
    std::vector<std::byte> again;
    ecf::encode(events, again, header->mode);
    FUZZ_CHECK(decode_exact(again) == events);
  }
}

// t + step, saturated at the largest time (the stream must stay sorted, and signed overflow is UB).
std::int64_t advance(std::int64_t t, std::uint64_t step) {
  const auto room = static_cast<std::uint64_t>(INT64_MAX) - static_cast<std::uint64_t>(t);
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(t) + std::min(step, room));
}

// Events from the input: coordinates, polarity and time steps (0, small or any 64-bit jump). With
// `valid` false, some events may be out of ECF's range, which the encoder must refuse.
std::vector<EventCD> make_events(FuzzInput& in, bool valid, bool long_runs) {
  std::size_t n = static_cast<std::size_t>(in.take_in(0, valid ? ecf::kMaxChunkEvents : 70000));
  // Runs of a few thousand reach every 16-bit count; full chunks of 65535 events (the limit) and more
  // only when asked for exactly: tens of thousands of events per input slow the fuzzer down tenfold.
  if (long_runs && n > 4096 && n < ecf::kMaxChunkEvents) n = 4096 + n % 256;
  std::vector<EventCD> events;
  events.reserve(std::min<std::size_t>(n, in.remaining() + 1));
  std::int64_t t = static_cast<std::int64_t>(in.take<std::uint64_t>());
  for (std::size_t i = 0; i < n; ++i) {
    // An exhausted input ends the events, or (long_runs) repeats the last one: the encoder's 16-bit run
    // counts. Only on request: tens of thousands of events per input would slow the fuzzer down.
    if (in.remaining() == 0) {
      if (!long_runs) break;
      if (events.empty())
        events.push_back(EventCD{0, 0, 0, t});
      else
        events.push_back(events.back());
      continue;
    }
    const auto kind = in.take<std::uint8_t>();
    EventCD e{};
    const auto xy = in.take<std::uint32_t>();
    e.x = static_cast<std::uint16_t>(xy & (valid ? 0x7FF : 0xFFFF));
    e.y = static_cast<std::uint16_t>((xy >> 16) & (valid ? 0x7FF : 0xFFFF));
    if (kind & 0x80 && !events.empty()) e.y = events.back().y;  // rows repeat
    if (kind & 0x40 && !events.empty())
      e.x = static_cast<std::uint16_t>(std::min(  // x neighbours
          2047, events.back().x + 1 + (kind & 3)));
    e.p = static_cast<std::int16_t>(valid ? (kind >> 2) & 1 : static_cast<std::int8_t>(kind) >> 2);
    switch ((kind >> 3) & 3) {
      case 0: break;
      case 1: t = advance(t, (kind >> 5) & 1 ? 15 : (kind & 15)); break;
      case 2: t = advance(t, in.take<std::uint16_t>()); break;
      default: t = advance(t, in.take<std::uint64_t>() >> (kind & 63)); break;  // any jump, big deltas
    }
    if (!valid && (kind & 0x20) && (kind & 0x10) && t > INT64_MIN) t -= 1;  // a step back
    e.t = t;
    events.push_back(e);
  }
  return events;
}

void fuzz_round_trip(FuzzInput& in) {
  const auto flags = in.take<std::uint8_t>();
  const auto cut_choice = in.take<std::uint32_t>();
  const bool valid = (flags & 0x80) == 0;
  std::optional<ecf::Mode> mode;
  if ((flags & 3) != 3) mode = static_cast<ecf::Mode>(flags & 3);
  const std::vector<EventCD> events = make_events(in, valid, flags & 0x40);

  const bool storable =
      events.size() <= ecf::kMaxChunkEvents &&
      std::all_of(events.begin(), events.end(),
                  [](const EventCD& e) { return e.x < 2048 && e.y < 2048 && (e.p == 0 || e.p == 1); }) &&
      std::is_sorted(events.begin(), events.end(),
                     [](const EventCD& a, const EventCD& b) { return a.t < b.t; });

  // Into exactly max_encoded_size bytes: the bound holds for every mode and input.
  std::vector<std::byte> chunk(ecf::max_encoded_size(events.size()));
  std::size_t size = 0;
  try {
    size = ecf::encode(events, chunk.data(), mode);
  } catch (const evloader::ConfigError&) {
    FUZZ_CHECK(!storable);
    return;
  }
  FUZZ_CHECK(storable);
  FUZZ_CHECK(size <= chunk.size());
  chunk.resize(size);
  const ecf::ChunkHeader header = ecf::read_header(chunk);
  FUZZ_CHECK(header.event_count == events.size());
  FUZZ_CHECK(header.mode == mode.value_or(ecf::choose_mode(events)));
  FUZZ_CHECK(decode_exact(chunk) == events);

  // The encoder writes nothing a decoder does not need: every cut of the chunk is refused.
  if (size > 0) {
    const std::size_t cut = cut_choice % size;
    bool threw = false;
    try {
      (void)decode_exact({chunk.data(), cut});
    } catch (const evloader::FormatError&) {
      threw = true;
    }
    FUZZ_CHECK(threw);
  }
}

// The H5Z_class2_t callback, called as HDF5 calls it: a malloc'd buffer it may replace.
void fuzz_filter(FuzzInput& in) {
  const auto* cls = static_cast<const H5Z_class2_t*>(ecf::h5z_filter_class());
  FUZZ_CHECK(cls && cls->filter && cls->id == static_cast<H5Z_filter_t>(ecf::kFilterId));
  const bool reverse = in.take_bool();
  const auto payload = in.rest();
  std::size_t buf_size = payload.size() ? payload.size() : 1;
  void* buf = std::malloc(buf_size);
  FUZZ_CHECK(buf != nullptr);
  if (!payload.empty()) std::memcpy(buf, payload.data(), payload.size());
  const std::size_t got =
      cls->filter(reverse ? H5Z_FLAG_REVERSE : 0u, 0, nullptr, payload.size(), &buf_size, &buf);
  if (got == 0) {  // refused: the input buffer is left as it was
    if (!payload.empty()) FUZZ_CHECK(std::memcmp(buf, payload.data(), payload.size()) == 0);
    std::free(buf);
    return;
  }
  FUZZ_CHECK(got <= buf_size);
  std::vector<std::uint8_t> result(static_cast<std::uint8_t*>(buf), static_cast<std::uint8_t*>(buf) + got);
  std::free(buf);
  const std::span<const std::byte> chunk_in(reinterpret_cast<const std::byte*>(payload.data()),
                                            payload.size());
  if (reverse) {
    // Decoding: the events the public decoder returns, as bytes.
    const auto events = decode_exact(chunk_in);
    FUZZ_CHECK(got == events.size() * sizeof(EventCD));
    for (std::size_t i = 0; i < events.size(); ++i) {
      EventCD e;  // field by field: the 2 padding bytes of a record are not part of it
      std::memcpy(&e, result.data() + i * sizeof(EventCD), sizeof(EventCD));
      FUZZ_CHECK(e == events[i]);
    }
    return;
  }
  // Encoding whole records: decodes back to them, with times below the running maximum raised to it.
  FUZZ_CHECK(payload.size() % sizeof(EventCD) == 0);
  std::vector<EventCD> events(payload.size() / sizeof(EventCD));
  if (!events.empty()) std::memcpy(events.data(), payload.data(), payload.size());
  for (std::size_t i = 1; i < events.size(); ++i) events[i].t = std::max(events[i].t, events[i - 1].t);
  const auto decoded = decode_exact({reinterpret_cast<const std::byte*>(result.data()), result.size()});
  FUZZ_CHECK(decoded.size() == events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    FUZZ_CHECK(decoded[i].x == events[i].x && decoded[i].y == events[i].y && decoded[i].p == events[i].p &&
               decoded[i].t == events[i].t);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  switch (in.take<std::uint8_t>() % 3) {
    case 0: fuzz_decode(in); break;
    case 1: fuzz_round_trip(in); break;
    default: fuzz_filter(in); break;
  }
  return 0;
}
