// SPDX-License-Identifier: Apache-2.0
// Fuzzes the EVT 2.1 streaming decoder (both word orders) against a plain pixel-by-pixel reference written
// from formats.md §1.3 (and the decoder's documented semantics), and checks that cutting, state()/restore()
// and the raise mode never change what comes out.
//
// Input layout: [flags u8][geometry 2 x u16 when flags ask][cut count u8][cuts u16...][restore point u16]
// [a 64-byte DecoderState when flags ask] then the word stream. flags: bit 0 decode triggers, bit 1 pass
// stream offsets, bit 2 EVT 2.1 legacy order, bit 3 also decode from the given state, bits 4-5 geometry
// (unknown, 1280x720, 640x480, explicit).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/decoder.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace evloader;

constexpr RawEncoding kEncoding = RawEncoding::evt21;
constexpr std::size_t kWordSize = 8;

[[noreturn]] void property_failed(const char* what, int line) {
  std::fprintf(stderr, "evt21_fuzzer: property failed at line %d: %s\n", line, what);
  std::fflush(stderr);
  __builtin_trap();
}
#define FUZZ_CHECK(cond)                           \
  do {                                             \
    if (!(cond)) property_failed(#cond, __LINE__); \
  } while (0)

struct Decoded {
  std::vector<EventCD> cd;
  std::vector<EventExtTrigger> triggers;
  DecodeStats stats;
  std::optional<std::int64_t> shift;  // metavision_time_shift() at the end
  std::int64_t violation = -1;        // raise mode: the offset the FormatError named; reference: first one
};

bool same_stats(const DecodeStats& a, const DecodeStats& b) {
  return a.bytes == b.bytes && a.cd_events == b.cd_events && a.trigger_events == b.trigger_events &&
         a.padding_words == b.padding_words && a.before_time_base == b.before_time_base &&
         a.out_of_bounds == b.out_of_bounds && a.time_backwards == b.time_backwards &&
         a.time_high_glitches == b.time_high_glitches && a.unknown_words == b.unknown_words &&
         a.truncated_bytes == b.truncated_bytes && a.time_loops == b.time_loops;
}

template <class T>
bool is_prefix(const std::vector<T>& head, const std::vector<T>& all) {
  return head.size() <= all.size() && std::equal(head.begin(), head.end(), all.begin());
}

// "EVT 2.1 stream at byte N: ..." -> N; -1 when the message names no offset.
std::int64_t offset_in_message(const char* what) {
  const char* at = std::strstr(what, " at byte ");
  if (at == nullptr) return -1;
  return std::strtoll(at + 9, nullptr, 10);
}

// Feeds data[0, cuts[0]), [cuts[0], cuts[1]) ... then the rest and finish(). A FormatError (raise mode
// only) stops the decode and records the offset it names.
Decoded decode_pieces(const DecoderOptions& options, std::span<const std::byte> data,
                      const std::vector<std::size_t>& cuts, bool pass_offsets,
                      const DecoderState* start = nullptr) {
  auto decoder = make_decoder(kEncoding, options);
  if (start != nullptr) decoder->restore(*start);
  EventBuffer cd;
  TriggerBuffer triggers;
  Decoded out;
  std::size_t pos = 0;
  try {
    for (std::size_t i = 0; i <= cuts.size(); ++i) {
      const std::size_t end = i < cuts.size() ? cuts[i] : data.size();
      decoder->decode(data.subspan(pos, end - pos), cd, &triggers,
                      pass_offsets ? static_cast<std::int64_t>(pos) : -1);
      pos = end;
    }
    decoder->finish();
  } catch (const FormatError& e) {
    FUZZ_CHECK(options.on_violation == OnViolation::raise);
    out.violation = offset_in_message(e.what());
    FUZZ_CHECK(out.violation >= 0);
  }
  out.cd.assign(cd.begin(), cd.end());
  out.triggers.assign(triggers.begin(), triggers.end());
  out.stats = decoder->stats();
  out.shift = decoder->metavision_time_shift();
  return out;
}

// Word-by-word EVT 2.1 decoding as the spec table reads (each set bit i of the mask is pixel x + i), with
// the decoder's documented choices (EVT 2.0's loop threshold, glitches counted and used). Pixel by pixel.
Decoded reference(const DecoderOptions& options, std::span<const std::byte> data) {
  constexpr std::int64_t kPeriod = std::int64_t{1} << 34;
  constexpr std::int64_t kThreshold = (((std::int64_t{1} << 28) - 1) << 6) - 10000;
  // A base x near 2047 plus the bit index leaves the 11-bit address range: no sensor has such pixels, so
  // the decoder keeps the width limit at 2048 even for wider geometries.
  const std::int64_t lx = options.geometry.known() ? std::min(options.geometry.width, 2048) : 2048;
  const std::int64_t ly = options.geometry.known() ? options.geometry.height : 2048;
  const bool legacy = options.evt21_order == Evt21Order::legacy;
  Decoded r;
  DecodeStats& s = r.stats;
  s.bytes = data.size();
  s.truncated_bytes = data.size() % kWordSize;
  bool has_time_base = false;
  std::int64_t time_base = 0, loops = 0, last = INT64_MIN, first_high = -1;
  std::size_t i = 0;
  auto violation = [&] {
    if (r.violation < 0) r.violation = static_cast<std::int64_t>(i * kWordSize);
  };
  auto time_high = [&](std::uint64_t w) {
    const std::int64_t value = static_cast<std::int64_t>((w >> 32) & 0xFFFFFFF);
    const std::int64_t fresh = value << 6;
    if (!has_time_base) {
      has_time_base = true;
      first_high = value;
    } else {
      const std::int64_t previous = time_base - loops * kPeriod;
      if (previous - fresh >= kThreshold) {
        ++loops;
        ++s.time_loops;
      } else if (fresh < previous) {
        ++s.time_high_glitches;
        violation();
      }
    }
    time_base = fresh + loops * kPeriod;
  };
  auto u32_at = [&](std::size_t at) {
    std::uint64_t v = 0;
    for (int b = 3; b >= 0; --b)
      v = (v << 8) | std::to_integer<std::uint64_t>(data[at + static_cast<std::size_t>(b)]);
    return v;
  };
  for (; i < data.size() / kWordSize; ++i) {
    const std::uint64_t first = u32_at(i * kWordSize), second = u32_at(i * kWordSize + 4);
    const std::uint64_t w = legacy ? (first << 32) | second : (second << 32) | first;
    const auto type = static_cast<std::uint32_t>(w >> 60);
    if (!has_time_base) {
      if (type == 0x8) {
        time_high(w);
      } else if (type == 0x0 || type == 0x1 || type == 0xA) {
        ++s.before_time_base;
        violation();
      } else if (type == 0xE || type == 0xF) {
        ++s.padding_words;
      } else {
        ++s.unknown_words;
        violation();
      }
      continue;
    }
    const std::int64_t t = time_base + static_cast<std::int64_t>((w >> 54) & 63);
    if (type == 0x0 || type == 0x1) {
      const std::int64_t x = static_cast<std::int64_t>((w >> 43) & 0x7FF);
      const std::int64_t y = static_cast<std::int64_t>((w >> 32) & 0x7FF);
      std::size_t kept = 0;
      for (int k = 0; k < 32; ++k) {
        if (((w >> k) & 1) == 0) continue;
        if (y >= ly || x + k >= lx) {
          ++s.out_of_bounds;
          violation();
          continue;
        }
        r.cd.push_back({static_cast<std::uint16_t>(x + k), static_cast<std::uint16_t>(y),
                        static_cast<std::int16_t>(type), t});
        ++kept;
      }
      s.cd_events += kept;
      if (kept != 0) {
        if (t < last) {  // every pixel of the vector counts
          s.time_backwards += kept;
          violation();
        }
        last = t;
      }
    } else if (type == 0x8) {
      time_high(w);
    } else if (type == 0xA) {
      if (options.decode_triggers) {
        r.triggers.push_back(
            {static_cast<std::int16_t>((w >> 32) & 1), t, static_cast<std::int16_t>((w >> 40) & 31)});
        ++s.trigger_events;
      }
    } else if (type == 0xE || type == 0xF) {
      ++s.padding_words;
    } else {
      ++s.unknown_words;
      violation();
    }
  }
  if (first_high >= 0) r.shift = first_high << 6;
  return r;
}

// What holds whatever state the decoder starts from: events inside the sensor and the word range, p in
// {0, 1}, no more events than the words can carry.
void check_events(const DecoderOptions& options, std::size_t bytes, const Decoded& d) {
  const std::uint32_t lx =
      options.geometry.known() ? static_cast<std::uint32_t>(options.geometry.width) : 2048;
  const std::uint32_t ly =
      options.geometry.known() ? static_cast<std::uint32_t>(options.geometry.height) : 2048;
  auto decoder = make_decoder(kEncoding, options);
  FUZZ_CHECK(d.cd.size() <= (bytes / kWordSize) * decoder->max_events_per_word());
  for (const EventCD& e : d.cd) FUZZ_CHECK(e.x < lx && e.y < ly && (e.p == 0 || e.p == 1));
  for (const EventExtTrigger& e : d.triggers) FUZZ_CHECK(e.p == 0 || e.p == 1);
}

void check_invariants(const DecoderOptions& options, std::size_t bytes, const Decoded& d) {
  check_events(options, bytes, d);
  std::uint64_t descents = 0;
  std::int64_t last = INT64_MIN;
  for (const EventCD& e : d.cd) {
    FUZZ_CHECK(e.t >= 0);
    descents += e.t < last;
    last = e.t;
  }
  // The decoder promises no order, only that each step back in time is counted: every pixel of a vector
  // word dated below the previous event counts, so between the number of descents and the event count.
  FUZZ_CHECK(descents <= d.stats.time_backwards && d.stats.time_backwards <= d.cd.size());
  if (d.stats.time_backwards == 0) FUZZ_CHECK(descents == 0);
  for (const EventExtTrigger& e : d.triggers)
    FUZZ_CHECK((e.p == 0 || e.p == 1) && e.id >= 0 && e.id < 32 && e.t >= 0);
  FUZZ_CHECK(d.stats.cd_events == d.cd.size() && d.stats.trigger_events == d.triggers.size());
  FUZZ_CHECK(d.stats.bytes == bytes && d.stats.truncated_bytes == bytes % kWordSize);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* raw, std::size_t size) {
  evloader::fuzz::FuzzInput in(raw, size);
  const auto flags = in.take<std::uint8_t>();
  DecoderOptions skip;
  skip.decode_triggers = (flags & 1) != 0;
  const bool pass_offsets = (flags & 2) != 0;
  skip.evt21_order = (flags & 4) != 0 ? Evt21Order::legacy : Evt21Order::little;
  switch ((flags >> 4) & 3) {
    case 0: skip.geometry = {}; break;
    case 1: skip.geometry = {1280, 720}; break;
    case 2: skip.geometry = {640, 480}; break;
    default: {  // anything, including one side 0 (unknown) and sides above the 11-bit address range
      const int w = in.take<std::uint16_t>() % 4100;
      const int h = in.take<std::uint16_t>() % 4100;
      skip.geometry = {w, h};
    }
  }
  const std::size_t n_cuts = in.take<std::uint8_t>() % 9;
  std::vector<std::uint16_t> raw_cuts(n_cuts);
  for (auto& c : raw_cuts) c = in.take<std::uint16_t>();
  const auto restore_point = in.take<std::uint16_t>();
  // flags bit 3: also start a decoder from an arbitrary state (what a damaged time index could restore).
  std::optional<DecoderState> any_state;
  if ((flags & 8) != 0) any_state = in.take<DecoderState>();
  const auto payload = in.rest();
  const std::span<const std::byte> data(reinterpret_cast<const std::byte*>(payload.data()), payload.size());
  std::vector<std::size_t> cuts;
  for (auto c : raw_cuts) cuts.push_back(c % (data.size() + 1));
  std::sort(cuts.begin(), cuts.end());

  // (0) the optimised decoder agrees with the word-by-word reference, events and every counter.
  const Decoded whole = decode_pieces(skip, data, {}, true);
  const Decoded ref = reference(skip, data);
  FUZZ_CHECK(whole.cd == ref.cd);
  FUZZ_CHECK(whole.triggers == ref.triggers);
  FUZZ_CHECK(same_stats(whole.stats, ref.stats));
  FUZZ_CHECK(whole.shift == ref.shift);
  // (2), (3) and the time_backwards count.
  check_invariants(skip, data.size(), whole);

  // (1) any cuts give the same result as one call.
  const Decoded pieces = decode_pieces(skip, data, cuts, pass_offsets);
  FUZZ_CHECK(pieces.cd == whole.cd && pieces.triggers == whole.triggers);
  FUZZ_CHECK(same_stats(pieces.stats, whole.stats));

  // (4) state() at a word boundary, restore() into a decoder that holds a pending partial word and other
  // state, then the rest: the same events, and the counters add up.
  {
    const std::size_t split = (restore_point % (data.size() / kWordSize + 1)) * kWordSize;
    auto first = make_decoder(kEncoding, skip);
    EventBuffer cd;
    TriggerBuffer triggers;
    std::size_t pos = 0;
    for (std::size_t c : cuts) {  // the cuts below the split, then the split itself
      if (c >= split) break;
      first->decode(data.subspan(pos, c - pos), cd, &triggers, -1);
      pos = c;
    }
    first->decode(data.subspan(pos, split - pos), cd, &triggers, -1);
    FUZZ_CHECK(first->pending_bytes() == 0);
    const DecoderState state = first->state();
    // The second decoder first eats some junk that leaves a partial word pending; restore() drops it.
    auto second = make_decoder(kEncoding, skip);
    EventBuffer junk;
    TriggerBuffer junk_triggers;
    const std::size_t junk_size = data.size() - (data.size() % kWordSize == 0 && !data.empty() ? 1 : 0);
    second->decode(data.first(junk_size), junk, &junk_triggers, -1);
    second->reset_stats();
    second->restore(state);
    FUZZ_CHECK(second->pending_bytes() == 0 && second->state() == state);
    second->decode(data.subspan(split), cd, &triggers, -1);
    second->finish();
    FUZZ_CHECK(std::equal(cd.begin(), cd.end(), whole.cd.begin(), whole.cd.end()));
    FUZZ_CHECK(std::equal(triggers.begin(), triggers.end(), whole.triggers.begin(), whole.triggers.end()));
    DecodeStats sum = first->stats();
    sum += second->stats();
    FUZZ_CHECK(same_stats(sum, whole.stats));

    // reset() brings a used decoder back to the start-of-stream state.
    second->reset();
    second->reset_stats();
    EventBuffer again;
    TriggerBuffer again_triggers;
    second->decode(data, again, &again_triggers, -1);
    second->finish();
    FUZZ_CHECK(std::equal(again.begin(), again.end(), whole.cd.begin(), whole.cd.end()));
    FUZZ_CHECK(same_stats(second->stats(), whole.stats));
  }

  // (5) raise mode: only FormatError escapes (anything else propagates out of this function), at the
  // first violation the reference found; without violations it is the skip decode.
  DecoderOptions raise = skip;
  raise.on_violation = OnViolation::raise;
  const Decoded raised = decode_pieces(raise, data, cuts, pass_offsets);
  FUZZ_CHECK(raised.violation == ref.violation);
  if (ref.violation < 0) {
    FUZZ_CHECK(raised.cd == whole.cd && raised.triggers == whole.triggers);
    FUZZ_CHECK(same_stats(raised.stats, whole.stats));
  } else {
    FUZZ_CHECK(is_prefix(raised.cd, whole.cd) && is_prefix(raised.triggers, whole.triggers));
  }

  // (6) from any state: no undefined behaviour (UBSan), events still inside the sensor, cuts still
  // invisible, and only FormatError in raise mode.
  if (any_state) {
    const Decoded from_any = decode_pieces(skip, data, {}, true, &*any_state);
    check_events(skip, data.size(), from_any);
    const Decoded from_any_cut = decode_pieces(skip, data, cuts, pass_offsets, &*any_state);
    FUZZ_CHECK(from_any_cut.cd == from_any.cd && from_any_cut.triggers == from_any.triggers);
    FUZZ_CHECK(same_stats(from_any_cut.stats, from_any.stats));
    (void)decode_pieces(raise, data, cuts, pass_offsets, &*any_state);
  }
  return 0;
}
