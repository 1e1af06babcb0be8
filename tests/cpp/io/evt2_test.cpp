// SPDX-License-Identifier: Apache-2.0
// Tests of the EVT 2.0 codec: hand-built words from formats.md §1.2, round trips, stream cuts, real data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/decoder.hpp"
#include "evloader/io/encoder.hpp"
#include "evloader/io/header.hpp"
#include "support/event_gen.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

constexpr std::int64_t kLoop = std::int64_t{1} << 34;
constexpr std::uint32_t kMaxTh = (1u << 28) - 1;

// Word builders written straight from the layout table of formats.md §1.2.
std::uint32_t cd_word(int p, int t_lsb, int x, int y) {
  return (static_cast<std::uint32_t>(p) << 28) | (static_cast<std::uint32_t>(t_lsb) << 22) |
         (static_cast<std::uint32_t>(x) << 11) | static_cast<std::uint32_t>(y);
}
std::uint32_t th_word(std::uint32_t value) { return (0x8u << 28) | value; }
std::uint32_t trigger_word(int t_lsb, int id, int value) {
  return (0xAu << 28) | (static_cast<std::uint32_t>(t_lsb) << 22) | (static_cast<std::uint32_t>(id) << 8) |
         static_cast<std::uint32_t>(value);
}
std::uint32_t typed_word(std::uint32_t type, std::uint32_t payload = 0) { return (type << 28) | payload; }

std::vector<std::byte> to_bytes(const std::vector<std::uint32_t>& words) {
  std::vector<std::byte> out;
  for (std::uint32_t w : words)
    for (int k = 0; k < 4; ++k) out.push_back(static_cast<std::byte>((w >> (8 * k)) & 0xFF));
  return out;
}

struct Decoded {
  std::vector<EventCD> cd;
  std::vector<EventExtTrigger> triggers;
  DecodeStats stats;
};

DecoderOptions with_geometry(int w, int h) {
  DecoderOptions o;
  o.geometry = {w, h};
  return o;
}

// Decode `bytes` split at the sorted positions `cuts` (each piece one decode() call), then finish().
Decoded decode_cut(std::span<const std::byte> bytes, const DecoderOptions& options,
                   const std::vector<std::size_t>& cuts = {}) {
  auto decoder = make_decoder(RawEncoding::evt2, options);
  EventBuffer cd;
  TriggerBuffer triggers;
  std::size_t begin = 0;
  for (std::size_t k = 0; k <= cuts.size(); ++k) {
    const std::size_t end = k < cuts.size() ? cuts[k] : bytes.size();
    decoder->decode(bytes.subspan(begin, end - begin), cd, &triggers, static_cast<std::int64_t>(begin));
    begin = end;
  }
  decoder->finish();
  return {{cd.begin(), cd.end()}, {triggers.begin(), triggers.end()}, decoder->stats()};
}

Decoded decode_words(const std::vector<std::uint32_t>& words, const DecoderOptions& options = {}) {
  const auto bytes = to_bytes(words);
  return decode_cut(bytes, options);
}

std::vector<std::byte> encode(std::span<const EventCD> cd, std::span<const EventExtTrigger> triggers = {}) {
  auto encoder = make_encoder(RawEncoding::evt2);
  std::vector<std::byte> out;
  encoder->encode(cd, triggers, out);
  encoder->finish(out);
  return out;
}

std::vector<std::uint32_t> words_of(const std::vector<std::byte>& bytes) {
  std::vector<std::uint32_t> words(bytes.size() / 4);
  for (std::size_t i = 0; i < words.size(); ++i)
    for (int k = 0; k < 4; ++k) words[i] |= std::to_integer<std::uint32_t>(bytes[4 * i + k]) << (8 * k);
  return words;
}

// Names the first differing event instead of dumping whole arrays.
::testing::AssertionResult same_events(const std::vector<EventCD>& got, const std::vector<EventCD>& want) {
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    if (!(got[i] == want[i]))
      return ::testing::AssertionFailure()
             << "event " << i << ": got (x=" << got[i].x << " y=" << got[i].y << " p=" << got[i].p
             << " t=" << got[i].t << ") want (x=" << want[i].x << " y=" << want[i].y << " p=" << want[i].p
             << " t=" << want[i].t << ")";
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "got " << got.size() << " events, want " << want.size();
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult same_triggers(const std::vector<EventExtTrigger>& got,
                                         const std::vector<EventExtTrigger>& want) {
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    if (!(got[i] == want[i]))
      return ::testing::AssertionFailure()
             << "trigger " << i << ": got (p=" << got[i].p << " t=" << got[i].t << " id=" << got[i].id
             << ") want (p=" << want[i].p << " t=" << want[i].t << " id=" << want[i].id << ")";
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "got " << got.size() << " triggers, want " << want.size();
  return ::testing::AssertionSuccess();
}

bool same_stats(const DecodeStats& a, const DecodeStats& b) {
  return a.bytes == b.bytes && a.cd_events == b.cd_events && a.trigger_events == b.trigger_events &&
         a.padding_words == b.padding_words && a.before_time_base == b.before_time_base &&
         a.out_of_bounds == b.out_of_bounds && a.time_backwards == b.time_backwards &&
         a.time_high_glitches == b.time_high_glitches && a.unknown_words == b.unknown_words &&
         a.truncated_bytes == b.truncated_bytes && a.time_loops == b.time_loops;
}

// Words of every kind in a plausible mix, with glitches, wraps, reserved types and stray coordinates, so
// that stream-cut and restore tests also cover the violation paths.
std::vector<std::uint32_t> messy_words(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pct(0, 99), lsb(0, 63), coord(0, 700), id(0, 31), bit(0, 1);
  std::vector<std::uint32_t> words;
  std::uint32_t th = kMaxTh - 40;                           // close to the wrap so that the stream crosses it
  if (seed % 2 == 0) words.push_back(cd_word(1, 3, 4, 5));  // an event before any TIME_HIGH
  words.push_back(th_word(th));
  while (words.size() < n) {
    const int r = pct(rng);
    if (r < 60) {
      words.push_back(cd_word(bit(rng), lsb(rng), coord(rng), coord(rng)));
    } else if (r < 80) {
      th = (th + 1) & kMaxTh;
      words.push_back(th_word(th));
    } else if (r < 83) {
      words.push_back(th_word(th - 1 <= kMaxTh ? th - 1 : 0));  // glitch
    } else if (r < 88) {
      words.push_back(trigger_word(lsb(rng), id(rng), bit(rng)));
    } else if (r < 93) {
      words.push_back(typed_word(0xE, 0x14));
      words.push_back(typed_word(0xF, 1234));
    } else if (r < 96) {
      words.push_back(typed_word(0x2 + static_cast<std::uint32_t>(pct(rng) % 6), 77));  // reserved
    } else {
      words.push_back(typed_word(0xD, 1));
      for (int k = 0; k < 5; ++k) words.push_back(typed_word(0xF, static_cast<std::uint32_t>(k)));
    }
  }
  return words;
}

std::int64_t expect_format_error_offset(std::span<const std::byte> bytes, DecoderOptions options,
                                        std::int64_t stream_offset) {
  options.on_violation = OnViolation::raise;
  auto decoder = make_decoder(RawEncoding::evt2, options);
  EventBuffer cd;
  TriggerBuffer triggers;
  try {
    decoder->decode(bytes, cd, &triggers, stream_offset);
  } catch (const FormatError& e) {
    const std::string what = e.what();
    const auto at = what.find("at byte ");
    if (at == std::string::npos) return -2;
    return std::stoll(what.substr(at + 8));
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------------
// Decoder against hand-built words

TEST(Evt2Decoder, ReportsItsWordFormat) {
  auto decoder = make_decoder(RawEncoding::evt2, {});
  EXPECT_EQ(decoder->encoding(), RawEncoding::evt2);
  EXPECT_EQ(decoder->word_size(), 4u);
  EXPECT_EQ(decoder->max_events_per_word(), 1u);
  EXPECT_EQ(decoder->pending_bytes(), 0u);
  EXPECT_FALSE(decoder->metavision_time_shift().has_value());
}

TEST(Evt2Decoder, DecodesCdWordsFromTheSpecLayout) {
  // 0x0ABCDEF0: type 0 (OFF), t_lsb = bits 27..22, x = bits 21..11, y = bits 10..0.
  const std::uint32_t raw = 0x0ABCDEF0u;
  const auto d = decode_words({th_word(1000), raw, cd_word(1, 63, 2047, 2047), cd_word(0, 63, 0, 0)});
  ASSERT_EQ(d.cd.size(), 3u);
  EXPECT_EQ(d.cd[0], (EventCD{static_cast<std::uint16_t>((raw >> 11) & 0x7FF),
                              static_cast<std::uint16_t>(raw & 0x7FF), 0, 1000 * 64 + ((raw >> 22) & 63)}));
  EXPECT_EQ(d.cd[0].x, 0x79B);  // 0x0ABCDEF0 = 0000 101010 11110011011 11011110000 (type t_lsb x y)
  EXPECT_EQ(d.cd[0].y, 0x6F0);
  EXPECT_EQ(d.cd[0].t, 64000 + 42);
  EXPECT_EQ(d.cd[1], (EventCD{2047, 2047, 1, 64000 + 63}));
  EXPECT_EQ(d.cd[2], (EventCD{0, 0, 0, 64000 + 63}));
  EXPECT_EQ(d.stats.cd_events, 3u);
  EXPECT_EQ(d.stats.bytes, 16u);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt2Decoder, TimeHighSetsTheBaseOfFollowingEvents) {
  const auto d = decode_words({th_word(5), cd_word(1, 1, 10, 20), th_word(6), cd_word(0, 2, 11, 21),
                               th_word(6), cd_word(1, 3, 12, 22), th_word(100), cd_word(1, 0, 13, 23)});
  ASSERT_EQ(d.cd.size(), 4u);
  EXPECT_EQ(d.cd[0].t, 5 * 64 + 1);
  EXPECT_EQ(d.cd[1].t, 6 * 64 + 2);
  EXPECT_EQ(d.cd[2].t, 6 * 64 + 3);  // a repeated TIME_HIGH is normal
  EXPECT_EQ(d.cd[3].t, 100 * 64);
  EXPECT_EQ(d.stats.violations(), 0u);
  EXPECT_EQ(d.stats.time_loops, 0u);
}

TEST(Evt2Decoder, DropsEventsBeforeTheFirstTimeHigh) {
  const auto d = decode_words({cd_word(1, 1, 1, 1), trigger_word(0, 1, 1), typed_word(0xE),
                               cd_word(0, 5, 2, 2), th_word(7), cd_word(1, 4, 3, 3), trigger_word(9, 2, 0)});
  ASSERT_EQ(d.cd.size(), 1u);
  EXPECT_EQ(d.cd[0], (EventCD{3, 3, 1, 7 * 64 + 4}));
  ASSERT_EQ(d.triggers.size(), 1u);
  EXPECT_EQ(d.triggers[0], (EventExtTrigger{0, 7 * 64 + 9, 2}));
  EXPECT_EQ(d.stats.before_time_base, 3u);
  EXPECT_EQ(d.stats.padding_words, 1u);
  EXPECT_EQ(d.stats.violations(), 3u);
}

TEST(Evt2Decoder, AddsOneLoopWhenTimeHighWraps) {
  const auto d =
      decode_words({th_word(kMaxTh), cd_word(1, 10, 1, 1), th_word(0), cd_word(0, 20, 2, 2), th_word(1),
                    cd_word(0, 21, 3, 3), th_word(kMaxTh), th_word(0), cd_word(1, 0, 4, 4)});
  ASSERT_EQ(d.cd.size(), 4u);
  EXPECT_EQ(d.cd[0].t, (std::int64_t{kMaxTh} << 6) + 10);
  EXPECT_EQ(d.cd[1].t, kLoop + 20);
  EXPECT_EQ(d.cd[2].t, kLoop + 64 + 21);
  EXPECT_EQ(d.cd[3].t, 2 * kLoop);
  EXPECT_EQ(d.stats.time_loops, 2u);
  EXPECT_EQ(d.stats.time_high_glitches, 0u);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt2Decoder, WrapDetectionToleratesAFewMillisecondsBeforeTheEnd) {
  // A drop of (max << 6) - 9984 µs is still a wrap (OpenEB's threshold is 10000 µs of slack)...
  const std::uint32_t near_end = kMaxTh - 156;  // 156 * 64 = 9984 µs before the last value
  auto d = decode_words({th_word(near_end), th_word(0), cd_word(1, 0, 0, 0)});
  ASSERT_EQ(d.cd.size(), 1u);
  EXPECT_EQ(d.cd[0].t, kLoop);
  EXPECT_EQ(d.stats.time_loops, 1u);
  // ...but a drop of half the range is a glitch, not a wrap.
  d = decode_words({th_word(1u << 27), th_word(0), cd_word(1, 0, 0, 0)});
  ASSERT_EQ(d.cd.size(), 1u);
  EXPECT_EQ(d.cd[0].t, 0);
  EXPECT_EQ(d.stats.time_loops, 0u);
  EXPECT_EQ(d.stats.time_high_glitches, 1u);
}

TEST(Evt2Decoder, CountsTimeHighGlitchAndUsesTheNewValue) {
  const auto d = decode_words({th_word(1000), cd_word(1, 5, 1, 1), th_word(990), cd_word(0, 6, 2, 2),
                               th_word(991), cd_word(0, 7, 3, 3)});
  ASSERT_EQ(d.cd.size(), 3u);
  EXPECT_EQ(d.cd[1].t, 990 * 64 + 6);
  EXPECT_EQ(d.cd[2].t, 991 * 64 + 7);
  EXPECT_EQ(d.stats.time_high_glitches, 1u);
  EXPECT_EQ(d.stats.time_loops, 0u);
  // The event after the glitch is earlier than the one before: kept, and counted.
  EXPECT_EQ(d.stats.time_backwards, 1u);
}

TEST(Evt2Decoder, CountsTimeGoingBackwardsButKeepsTheEvents) {
  const auto d = decode_words({th_word(3), cd_word(1, 40, 1, 1), cd_word(1, 30, 2, 2), cd_word(1, 30, 3, 3),
                               cd_word(1, 50, 4, 4), cd_word(0, 45, 5, 5)});
  ASSERT_EQ(d.cd.size(), 5u);
  EXPECT_EQ(d.cd[1].t, 3 * 64 + 30);
  EXPECT_EQ(d.stats.time_backwards, 2u);  // 40 -> 30 and 50 -> 45; equal times are fine
}

TEST(Evt2Decoder, DropsOutOfBoundsEventsWhenGeometryIsKnown) {
  const std::vector<std::uint32_t> words = {th_word(1),
                                            cd_word(1, 0, 639, 479),
                                            cd_word(1, 0, 640, 0),
                                            cd_word(0, 0, 0, 480),
                                            cd_word(0, 0, 2047, 2047),
                                            cd_word(0, 1, 0, 0)};
  auto d = decode_words(words, with_geometry(640, 480));
  ASSERT_EQ(d.cd.size(), 2u);
  EXPECT_EQ(d.cd[0], (EventCD{639, 479, 1, 64}));
  EXPECT_EQ(d.cd[1], (EventCD{0, 0, 0, 65}));
  EXPECT_EQ(d.stats.out_of_bounds, 3u);
  EXPECT_EQ(d.stats.cd_events, 2u);
  // Unknown geometry: everything the 11-bit fields can hold is kept.
  d = decode_words(words);
  EXPECT_EQ(d.cd.size(), 5u);
  EXPECT_EQ(d.stats.out_of_bounds, 0u);
}

TEST(Evt2Decoder, OutOfBoundsEventsDoNotCountAsTimeReference) {
  // The dropped event is later than its neighbours: it must not make the next kept event "backwards".
  const auto d =
      decode_words({th_word(1), cd_word(1, 10, 1, 1), cd_word(1, 60, 900, 1), cd_word(1, 20, 2, 2)},
                   with_geometry(640, 480));
  EXPECT_EQ(d.cd.size(), 2u);
  EXPECT_EQ(d.stats.time_backwards, 0u);
}

TEST(Evt2Decoder, CountsReservedWordTypes) {
  std::vector<std::uint32_t> words = {th_word(2)};
  for (std::uint32_t type : {0x2u, 0x3u, 0x4u, 0x5u, 0x6u, 0x7u, 0x9u, 0xBu, 0xCu})
    words.push_back(typed_word(type, 0x0123456));
  words.push_back(cd_word(1, 1, 1, 1));
  const auto d = decode_words(words);
  EXPECT_EQ(d.stats.unknown_words, 9u);
  ASSERT_EQ(d.cd.size(), 1u);
  EXPECT_EQ(d.cd[0].t, 2 * 64 + 1);
}

TEST(Evt2Decoder, SkipsMonitoringAndImuWordsAsPadding) {
  const auto d =
      decode_words({th_word(2), typed_word(0xE, 0x14), typed_word(0xF, 0x3FFFFF), cd_word(0, 1, 5, 6),
                    typed_word(0xD, 0x1FFFF), typed_word(0xF), typed_word(0xF), typed_word(0xF),
                    typed_word(0xF), typed_word(0xF), cd_word(1, 2, 7, 8)});
  ASSERT_EQ(d.cd.size(), 2u);
  EXPECT_EQ(d.cd[1], (EventCD{7, 8, 1, 2 * 64 + 2}));
  EXPECT_EQ(d.stats.padding_words, 8u);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt2Decoder, DecodesTriggerWords) {
  const std::vector<std::uint32_t> words = {th_word(9), trigger_word(3, 0, 1), cd_word(1, 4, 1, 1),
                                            trigger_word(5, 31, 0), trigger_word(63, 7, 1) | 0x003FE0FEu};
  auto d = decode_words(words);
  ASSERT_EQ(d.triggers.size(), 3u);
  EXPECT_EQ(d.triggers[0], (EventExtTrigger{1, 9 * 64 + 3, 0}));
  EXPECT_EQ(d.triggers[1], (EventExtTrigger{0, 9 * 64 + 5, 31}));
  EXPECT_EQ(d.triggers[2], (EventExtTrigger{1, 9 * 64 + 63, 7}));  // unused bits ignored
  EXPECT_EQ(d.stats.trigger_events, 3u);
  EXPECT_EQ(d.cd.size(), 1u);

  DecoderOptions off;
  off.decode_triggers = false;
  d = decode_words(words, off);
  EXPECT_TRUE(d.triggers.empty());
  EXPECT_EQ(d.stats.trigger_events, 0u);
  EXPECT_EQ(d.cd.size(), 1u);

  auto decoder = make_decoder(RawEncoding::evt2, {});
  EventBuffer cd;
  const auto bytes = to_bytes(words);
  decoder->decode(bytes, cd, nullptr);
  EXPECT_EQ(cd.size(), 1u);
  EXPECT_EQ(decoder->stats().trigger_events, 0u);
  EXPECT_EQ(decoder->stats().violations(), 0u);
}

TEST(Evt2Decoder, KeepsPartialWordsAcrossCallsAndCountsTruncatedBytes) {
  const auto bytes = to_bytes({th_word(4), cd_word(1, 2, 3, 4), cd_word(0, 5, 6, 7)});
  auto decoder = make_decoder(RawEncoding::evt2, {});
  EventBuffer cd;
  decoder->decode(std::span(bytes).first(6), cd, nullptr, 0);
  EXPECT_EQ(decoder->pending_bytes(), 2u);
  EXPECT_EQ(cd.size(), 0u);
  decoder->decode(std::span(bytes).subspan(6, 1), cd, nullptr, 6);
  EXPECT_EQ(decoder->pending_bytes(), 3u);
  decoder->decode(std::span(bytes).subspan(7, 3), cd, nullptr, 7);  // completes word 1, starts word 2
  EXPECT_EQ(decoder->pending_bytes(), 2u);
  ASSERT_EQ(cd.size(), 1u);
  EXPECT_EQ(cd[0], (EventCD{3, 4, 1, 4 * 64 + 2}));
  decoder->finish();
  EXPECT_EQ(decoder->pending_bytes(), 0u);
  EXPECT_EQ(decoder->stats().truncated_bytes, 2u);
  EXPECT_EQ(decoder->stats().bytes, 10u);
  EXPECT_EQ(cd.size(), 1u);
}

TEST(Evt2Decoder, MetavisionTimeShiftIsTheFirstTimeHighTimes64) {
  const auto bytes =
      to_bytes({cd_word(1, 1, 1, 1), th_word(14276816), cd_word(1, 5, 1, 1), th_word(14276817)});
  auto decoder = make_decoder(RawEncoding::evt2, {});
  EventBuffer cd;
  decoder->decode(std::span(bytes).first(4), cd, nullptr);
  EXPECT_FALSE(decoder->metavision_time_shift().has_value());
  decoder->decode(std::span(bytes).subspan(4), cd, nullptr);
  ASSERT_TRUE(decoder->metavision_time_shift().has_value());
  EXPECT_EQ(*decoder->metavision_time_shift(), std::int64_t{14276816} * 64);
  ASSERT_EQ(cd.size(), 1u);
  EXPECT_EQ(cd[0].t - *decoder->metavision_time_shift(), 5);
}

TEST(Evt2Decoder, RaiseThrowsFormatErrorAtTheOffendingWord) {
  const std::int64_t base = 1000;
  const auto geometry = with_geometry(640, 480);
  struct Case {
    const char* name;
    std::vector<std::uint32_t> words;
    std::int64_t bad_word;
  };
  const std::vector<Case> cases = {
      {"before time base", {typed_word(0xE), cd_word(1, 0, 1, 1), th_word(1)}, 1},
      {"trigger before time base", {trigger_word(1, 1, 1), th_word(1)}, 0},
      {"out of bounds x", {th_word(1), cd_word(1, 0, 1, 1), cd_word(1, 0, 640, 1)}, 2},
      {"out of bounds y", {th_word(1), cd_word(1, 0, 1, 480)}, 1},
      {"time backwards", {th_word(1), cd_word(1, 9, 1, 1), cd_word(1, 8, 1, 1)}, 2},
      {"glitch", {th_word(5), cd_word(1, 0, 1, 1), th_word(4)}, 2},
      {"reserved type", {th_word(5), typed_word(0xE), typed_word(0x9)}, 2},
      {"reserved type before time base", {typed_word(0xC), th_word(5)}, 0},
  };
  for (const auto& c : cases) {
    const auto bytes = to_bytes(c.words);
    EXPECT_EQ(expect_format_error_offset(bytes, geometry, base), base + 4 * c.bad_word) << c.name;
    // The same words are accepted (and counted) by the skip policy.
    EXPECT_EQ(decode_cut(bytes, geometry).stats.violations(), 1u) << c.name;
  }
  // No violation, no throw: wraps, padding and triggers are not violations.
  const auto clean = to_bytes({th_word(kMaxTh), trigger_word(1, 2, 1), typed_word(0xE), typed_word(0xF),
                               th_word(0), cd_word(1, 0, 639, 479)});
  EXPECT_EQ(expect_format_error_offset(clean, geometry, base), -1);
}

TEST(Evt2Decoder, RaiseNamesTheStartOfAWordSplitAcrossCalls) {
  DecoderOptions options = with_geometry(640, 480);
  options.on_violation = OnViolation::raise;
  const auto bytes = to_bytes({th_word(1), cd_word(1, 0, 1, 1), cd_word(1, 0, 700, 1)});
  auto decoder = make_decoder(RawEncoding::evt2, options);
  EventBuffer cd;
  decoder->decode(std::span(bytes).first(10), cd, nullptr, 5000);
  EXPECT_EQ(cd.size(), 1u);
  try {
    decoder->decode(std::span(bytes).subspan(10), cd, nullptr, 5010);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("at byte 5008"), std::string::npos) << e.what();
  }
  EXPECT_EQ(decoder->stats().out_of_bounds, 1u);
  EXPECT_EQ(cd.size(), 1u);  // events before the violation were kept
  // Without a stream offset, offsets count from the first byte fed to the decoder.
  auto fresh = make_decoder(RawEncoding::evt2, options);
  EventBuffer cd2;
  fresh->decode(std::span(bytes).first(3), cd2, nullptr);
  try {
    fresh->decode(std::span(bytes).subspan(3), cd2, nullptr);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("at byte 8"), std::string::npos) << e.what();
  }
}

TEST(Evt2Decoder, ResetForgetsTimeBaseAndPendingBytes) {
  const auto bytes = to_bytes({th_word(4), cd_word(1, 2, 3, 4)});
  auto decoder = make_decoder(RawEncoding::evt2, {});
  EventBuffer cd;
  decoder->decode(std::span(bytes).first(7), cd, nullptr);
  decoder->reset();
  EXPECT_EQ(decoder->pending_bytes(), 0u);
  EXPECT_FALSE(decoder->metavision_time_shift().has_value());
  EXPECT_EQ(decoder->state(), DecoderState{});
  decoder->decode(std::span(bytes).subspan(4), cd, nullptr);  // no time base any more
  EXPECT_EQ(cd.size(), 0u);
  EXPECT_EQ(decoder->stats().before_time_base, 1u);
  decoder->decode(bytes, cd, nullptr);
  EXPECT_EQ(cd.size(), 1u);
}

TEST(Evt2Decoder, RestoredStateResumesExactlyAtEveryWordBoundary) {
  const auto bytes = to_bytes(messy_words(300, 7));
  const auto options = with_geometry(640, 480);
  const Decoded full = decode_cut(bytes, options);
  ASSERT_GT(full.stats.time_loops, 0u);
  ASSERT_GT(full.stats.time_high_glitches, 0u);
  for (std::size_t cut = 0; cut <= bytes.size(); cut += 4) {
    auto first = make_decoder(RawEncoding::evt2, options);
    EventBuffer cd;
    TriggerBuffer triggers;
    first->decode(std::span(bytes).first(cut), cd, &triggers, 0);
    const DecoderState saved = first->state();
    auto second = make_decoder(RawEncoding::evt2, options);
    second->restore(saved);
    EXPECT_EQ(second->state(), saved);
    second->decode(std::span(bytes).subspan(cut), cd, &triggers, static_cast<std::int64_t>(cut));
    second->finish();
    ASSERT_TRUE(same_events({cd.begin(), cd.end()}, full.cd)) << "cut " << cut;
    ASSERT_TRUE(same_triggers({triggers.begin(), triggers.end()}, full.triggers)) << "cut " << cut;
    DecodeStats sum = first->stats();
    sum += second->stats();
    ASSERT_TRUE(same_stats(sum, full.stats)) << "cut " << cut;
    ASSERT_EQ(second->metavision_time_shift(), std::optional<std::int64_t>(std::int64_t{kMaxTh - 40} << 6));
  }
}

TEST(Evt2Decoder, MessyStreamCutAtEveryByteGivesTheSameResult) {
  const auto bytes = to_bytes(messy_words(400, 8));
  const auto options = with_geometry(640, 480);
  const Decoded full = decode_cut(bytes, options);
  EXPECT_GT(full.stats.before_time_base, 0u);
  EXPECT_GT(full.stats.unknown_words, 0u);
  EXPECT_GT(full.stats.padding_words, 0u);
  EXPECT_GT(full.stats.out_of_bounds, 0u);
  EXPECT_GT(full.stats.time_backwards, 0u);
  EXPECT_GT(full.triggers.size(), 0u);
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    const Decoded split = decode_cut(bytes, options, {cut});
    ASSERT_TRUE(same_events(split.cd, full.cd)) << "cut " << cut;
    ASSERT_TRUE(same_triggers(split.triggers, full.triggers)) << "cut " << cut;
    ASSERT_TRUE(same_stats(split.stats, full.stats)) << "cut " << cut;
  }
}

TEST(Evt2Decoder, EveryWordIsAccountedForInTheStats) {
  const auto words = messy_words(5000, 9);
  std::uint64_t time_highs = 0;
  for (std::uint32_t w : words) time_highs += (w >> 28) == 0x8;
  const auto d = decode_words(words, with_geometry(640, 480));
  const DecodeStats& s = d.stats;
  EXPECT_EQ(s.cd_events + s.out_of_bounds + s.before_time_base + s.trigger_events + s.padding_words +
                s.unknown_words + time_highs,
            words.size());
  EXPECT_EQ(s.cd_events, d.cd.size());
  EXPECT_EQ(s.trigger_events, d.triggers.size());
}

TEST(Evt2Decoder, GarbageInputNeverCrashes) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 40; ++round) {
    std::vector<std::byte> garbage(1 + rng() % 20000);
    for (auto& b : garbage) b = static_cast<std::byte>(rng());
    for (OnViolation policy : {OnViolation::skip, OnViolation::raise}) {
      DecoderOptions options =
          with_geometry(1 + static_cast<int>(rng() % 1000), 1 + static_cast<int>(rng() % 1000));
      options.on_violation = policy;
      auto decoder = make_decoder(RawEncoding::evt2, options);
      EventBuffer cd;
      TriggerBuffer triggers;
      std::size_t pos = 0;
      while (pos < garbage.size()) {
        const std::size_t len = std::min<std::size_t>(1 + rng() % 999, garbage.size() - pos);
        try {
          decoder->decode(std::span(garbage).subspan(pos, len), cd, &triggers,
                          static_cast<std::int64_t>(pos));
        } catch (const FormatError&) {
          decoder->reset();  // a caller that wants to continue after an error resynchronises
        }
        pos += len;
      }
      decoder->finish();
      for (const EventCD& e : cd) {
        ASSERT_LT(int{e.x}, options.geometry.width);
        ASSERT_LT(int{e.y}, options.geometry.height);
        ASSERT_TRUE(e.p == 0 || e.p == 1);
        ASSERT_GE(e.t, 0);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Encoder

TEST(Evt2Encoder, WritesTimeHighEvery16MicrosecondsLikeTheSpecSketch) {
  const std::vector<EventCD> events = {{1, 2, 1, 100}, {3, 4, 0, 140}, {5, 6, 1, 140}, {7, 8, 0, 191}};
  const auto words = words_of(encode(events));
  const std::vector<std::uint32_t> want = {
      th_word(1),                        // 100 >> 6, written before the first event
      cd_word(1, 36, 1, 2),              // 100 = 64 + 36
      th_word(1),           th_word(2),  // steps 7 and 8 (t >> 4): values 7 >> 2 and 8 >> 2
      cd_word(0, 12, 3, 4),              // 140 = 128 + 12
      cd_word(1, 12, 5, 6),              // same time: no TIME_HIGH
      th_word(2),           th_word(2),  // steps 9..11 (191 >> 4 = 11)
      th_word(2),           cd_word(0, 63, 7, 8),
  };
  EXPECT_EQ(words, want);
}

TEST(Evt2Encoder, WritesASingleTimeHighAcrossLongGaps) {
  // 1024 µs = 64 steps of 16 µs are still written one by one...
  auto words = words_of(encode(std::vector<EventCD>{{0, 0, 0, 0}, {0, 0, 0, 1024}}));
  EXPECT_EQ(words.size(), 1u + 1u + 64u + 1u);
  // ...a longer gap gets just the TIME_HIGH it needs.
  words = words_of(encode(std::vector<EventCD>{{0, 0, 0, 0}, {1, 1, 1, 10'000'000}}));
  const std::vector<std::uint32_t> want = {th_word(0), cd_word(0, 0, 0, 0), th_word(10'000'000 >> 6),
                                           cd_word(1, 10'000'000 & 63, 1, 1)};
  EXPECT_EQ(words, want);
}

TEST(Evt2Encoder, WrapsTimeHighAt34Bits) {
  const std::int64_t late = kLoop - 10;  // in the last TIME_HIGH period of the first loop
  const std::vector<EventCD> events = {{1, 1, 1, late}, {2, 2, 0, kLoop + 5'000'000}};
  const auto words = words_of(encode(events));
  const std::vector<std::uint32_t> want = {th_word(kMaxTh), cd_word(1, 54, 1, 1), th_word(0),
                                           th_word(5'000'000 >> 6), cd_word(0, 5'000'000 & 63, 2, 2)};
  EXPECT_EQ(words, want);
  const auto d = decode_words(words);
  EXPECT_TRUE(same_events(d.cd, events));
  EXPECT_EQ(d.stats.time_loops, 1u);
}

TEST(Evt2Encoder, MergesTriggersAfterCdEventsAtEqualTime) {
  const std::vector<EventCD> cd = {{1, 1, 1, 70}, {2, 2, 0, 75}};
  const std::vector<EventExtTrigger> triggers = {{1, 65, 3}, {0, 75, 4}};
  const auto words = words_of(encode(cd, triggers));
  const std::vector<std::uint32_t> want = {th_word(1), trigger_word(1, 3, 1), cd_word(1, 6, 1, 1),
                                           cd_word(0, 11, 2, 2), trigger_word(11, 4, 0)};
  EXPECT_EQ(words, want);
}

TEST(Evt2Encoder, SeveralCallsEqualOneCall) {
  const auto events = test::random_events(3000, 11);
  const auto triggers = test::random_triggers(50, 12, events.front().t, events.back().t);
  auto encoder = make_encoder(RawEncoding::evt2);
  std::vector<std::byte> pieces;
  std::size_t i = 0, j = 0;
  while (i < events.size() || j < triggers.size()) {
    // Split both lists at the same time so that each call stays after the previous one.
    const std::int64_t until = i < events.size() ? events[std::min(i + 700, events.size() - 1)].t : INT64_MAX;
    std::size_t i2 = i, j2 = j;
    while (i2 < events.size() && events[i2].t < until) ++i2;
    while (j2 < triggers.size() && triggers[j2].t < until) ++j2;
    if (i2 == i && j2 == j) i2 = events.size(), j2 = triggers.size();
    encoder->encode(std::span(events).subspan(i, i2 - i), std::span(triggers).subspan(j, j2 - j), pieces);
    i = i2;
    j = j2;
  }
  encoder->finish(pieces);
  EXPECT_EQ(pieces, encode(events, triggers));
}

TEST(Evt2Encoder, RejectsEventsTheFormatCannotHold) {
  auto rejects = [](std::vector<EventCD> cd, std::vector<EventExtTrigger> triggers = {}) {
    auto encoder = make_encoder(RawEncoding::evt2);
    std::vector<std::byte> out(3, std::byte{0x55});
    EXPECT_THROW(encoder->encode(cd, triggers, out), ConfigError);
    EXPECT_EQ(out.size(), 3u);  // nothing written by a rejected call
  };
  rejects({{1, 1, 1, 10}, {1, 1, 1, 9}});
  rejects({{1, 1, 1, -1}});
  rejects({{2048, 1, 1, 0}});
  rejects({{1, 2048, 1, 0}});
  rejects({{1, 1, 2, 0}});
  rejects({{1, 1, -1, 0}});
  rejects({}, {{1, 10, 0}, {1, 9, 0}});
  rejects({}, {{1, -5, 0}});
  rejects({}, {{1, 5, 32}});
  rejects({}, {{1, 5, -1}});
  rejects({}, {{2, 5, 0}});

  auto encoder = make_encoder(RawEncoding::evt2);
  std::vector<std::byte> out;
  encoder->encode(std::vector<EventCD>{{1, 1, 1, 100}}, {}, out);
  EXPECT_THROW(encoder->encode(std::vector<EventCD>{{1, 1, 1, 99}}, {}, out), ConfigError);
  EXPECT_THROW(encoder->encode({}, std::vector<EventExtTrigger>{{1, 99, 0}}, out), ConfigError);
  EXPECT_NO_THROW(encoder->encode(std::vector<EventCD>{{1, 1, 1, 100}}, {}, out));
}

// ---------------------------------------------------------------------------------------------------
// Round trips

TEST(Evt2RoundTrip, ShortStreamCutAtEveryPosition) {
  test::StreamShape shape;
  shape.width = 640;
  shape.height = 480;
  shape.t_start = 123'456;
  const auto events = test::random_events(250, 21, shape);
  const auto triggers = test::random_triggers(12, 22, events.front().t, events.back().t, 31);
  const auto bytes = encode(events, triggers);
  const auto options = with_geometry(640, 480);
  const Decoded full = decode_cut(bytes, options);
  ASSERT_TRUE(same_events(full.cd, events));
  ASSERT_TRUE(same_triggers(full.triggers, triggers));
  EXPECT_EQ(full.stats.violations(), 0u);
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    const Decoded split = decode_cut(bytes, options, {cut});
    ASSERT_TRUE(same_events(split.cd, events)) << "cut " << cut;
    ASSERT_TRUE(same_triggers(split.triggers, triggers)) << "cut " << cut;
    ASSERT_TRUE(same_stats(split.stats, full.stats)) << "cut " << cut;
  }
}

TEST(Evt2RoundTrip, OneByteAtATime) {
  const auto events = test::random_events(2000, 31);
  const auto triggers = test::random_triggers(40, 32, events.front().t, events.back().t);
  const auto bytes = encode(events, triggers);
  std::vector<std::size_t> cuts(bytes.size());
  for (std::size_t k = 0; k < cuts.size(); ++k) cuts[k] = k;
  DecoderOptions options = with_geometry(1280, 720);
  options.on_violation = OnViolation::raise;  // a clean stream never trips the strict policy
  const Decoded d = decode_cut(bytes, options, cuts);
  EXPECT_TRUE(same_events(d.cd, events));
  EXPECT_TRUE(same_triggers(d.triggers, triggers));
  EXPECT_EQ(d.stats.bytes, bytes.size());
  EXPECT_EQ(d.stats.cd_events, events.size());
  EXPECT_EQ(d.stats.trigger_events, triggers.size());
}

TEST(Evt2RoundTrip, LongStreamAtRandomCuts) {
  test::StreamShape shape;
  shape.max_gap_us = 400;  // mixes stepped TIME_HIGHs with the long-gap path
  const auto events = test::random_events(200'000, 41, shape);
  const auto triggers = test::random_triggers(500, 42, events.front().t, events.back().t, 31);
  const auto bytes = encode(events, triggers);
  std::mt19937 rng(43);
  for (int round = 0; round < 5; ++round) {
    std::vector<std::size_t> cuts;
    for (int k = 0; k < 60; ++k) cuts.push_back(rng() % (bytes.size() + 1));
    std::sort(cuts.begin(), cuts.end());
    const Decoded d = decode_cut(bytes, with_geometry(1280, 720), cuts);
    ASSERT_TRUE(same_events(d.cd, events)) << "round " << round;
    ASSERT_TRUE(same_triggers(d.triggers, triggers)) << "round " << round;
    EXPECT_EQ(d.stats.violations(), 0u);
  }
}

TEST(Evt2RoundTrip, StreamCrossingThe34BitWrap) {
  test::StreamShape shape;
  shape.t_start = kLoop - 3000;
  shape.max_gap_us = 40;
  const auto events = test::random_events(8000, 51, shape);
  ASSERT_LT(events.front().t, kLoop);
  ASSERT_GT(events.back().t, kLoop + 1000);
  const auto triggers = test::random_triggers(30, 52, events.front().t, events.back().t);
  const auto bytes = encode(events, triggers);
  const Decoded d = decode_cut(bytes, with_geometry(1280, 720), {bytes.size() / 3, bytes.size() / 2});
  EXPECT_TRUE(same_events(d.cd, events));
  EXPECT_TRUE(same_triggers(d.triggers, triggers));
  EXPECT_EQ(d.stats.time_loops, 1u);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt2RoundTrip, LongGapsAcrossSeveralWrapsAndAStartPastTheFirst) {
  std::vector<EventCD> events = {{1, 1, 1, 3 * kLoop + 77},
                                 {2, 2, 0, 3 * kLoop + 77},
                                 {3, 3, 1, 4 * kLoop - 1},
                                 {4, 4, 0, 6 * kLoop + (kLoop / 2)},
                                 {5, 5, 1, 6 * kLoop + (kLoop / 2) + 64},
                                 {6, 6, 0, 9 * kLoop - 64}};
  const std::vector<EventExtTrigger> triggers = {{1, 5 * kLoop, 2}};
  const auto bytes = encode(events, triggers);
  const Decoded d = decode_cut(bytes, {});
  EXPECT_TRUE(same_events(d.cd, events));
  EXPECT_TRUE(same_triggers(d.triggers, triggers));
  EXPECT_EQ(d.stats.time_loops, 8u);
  EXPECT_EQ(d.stats.violations(), 0u);
}

// ---------------------------------------------------------------------------------------------------
// The real recording (formats.md §1.2 verified facts, SOURCES.md reference numbers)

std::vector<std::byte> read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

TEST(Evt2RealFile, FaeryRecordingMatchesTheReferenceNumbers) {
  const auto dir = test::real_data_dir();
  if (dir.empty()) GTEST_SKIP() << "real recordings not found (../shared/data/real or EVLOADER_DATA_DIR)";
  const auto path = dir / "evt2_gen3_faery.raw";
  const FileHeader header = read_header(path);
  EXPECT_EQ(header.get("evt"), std::optional<std::string>("2.0"));
  EXPECT_EQ(header.data_offset, 166u);  // the first line not starting with "% " is the binary data
  const auto file = read_all(path);
  const auto body = std::span(file).subspan(header.data_offset);

  DecoderOptions options = with_geometry(640, 480);
  options.on_violation = OnViolation::raise;  // the recording is clean
  for (std::size_t chunk : {std::size_t{65536}, std::size_t{4099}, body.size()}) {
    auto decoder = make_decoder(RawEncoding::evt2, options);
    EventBuffer cd;
    TriggerBuffer triggers;
    for (std::size_t pos = 0; pos < body.size(); pos += chunk) {
      const std::size_t len = std::min(chunk, body.size() - pos);
      decoder->decode(body.subspan(pos, len), cd, &triggers,
                      static_cast<std::int64_t>(header.data_offset + pos));
    }
    decoder->finish();
    ASSERT_EQ(cd.size(), 521252u) << "chunk " << chunk;
    std::int64_t sx = 0, sy = 0, sp = 0, st = 0;
    for (const EventCD& e : cd) {
      sx += e.x;
      sy += e.y;
      sp += e.p;
      st += e.t;
    }
    EXPECT_EQ(cd[0].t, 913716224);
    EXPECT_EQ(cd[cd.size() - 1].t, 913812095);
    EXPECT_EQ(sx, 128979953);
    EXPECT_EQ(sy, 216346680);
    EXPECT_EQ(sp, 185861);
    EXPECT_EQ(st, 476298094656969);
    EXPECT_TRUE(triggers.empty());
    EXPECT_EQ(decoder->stats().violations(), 0u) << decoder->stats().summary();
    EXPECT_EQ(decoder->stats().cd_events, 521252u);
    EXPECT_EQ(decoder->stats().bytes, body.size());
    // Metavision's shift: the first word of the body is a TIME_HIGH; events then start in [0, 63].
    const std::uint32_t first_word = words_of({body.begin(), body.begin() + 4})[0];
    ASSERT_EQ(first_word >> 28, 0x8u);
    ASSERT_TRUE(decoder->metavision_time_shift().has_value());
    EXPECT_EQ(*decoder->metavision_time_shift(), std::int64_t{first_word & kMaxTh} << 6);
    EXPECT_EQ(*decoder->metavision_time_shift(), 913716224);
    EXPECT_GE(cd[0].t - *decoder->metavision_time_shift(), 0);
    EXPECT_LT(cd[0].t - *decoder->metavision_time_shift(), 64);
  }
}

TEST(Evt2RealFile, ReencodedFaeryRecordingDecodesToTheSameEvents) {
  const auto dir = test::real_data_dir();
  if (dir.empty()) GTEST_SKIP() << "real recordings not found (../shared/data/real or EVLOADER_DATA_DIR)";
  const auto path = dir / "evt2_gen3_faery.raw";
  const auto file = read_all(path);
  const auto body = std::span(file).subspan(read_header(path).data_offset);
  const Decoded original = decode_cut(body, with_geometry(640, 480));
  ASSERT_EQ(original.cd.size(), 521252u);
  const auto bytes = encode(original.cd);
  const Decoded again = decode_cut(bytes, with_geometry(640, 480));
  EXPECT_TRUE(same_events(again.cd, original.cd));
  // Like the sensor, the encoder writes one TIME_HIGH per 16 µs: the stream is no bigger than the original.
  EXPECT_LE(bytes.size(), body.size());
}

// Fuzz regressions evt2/state-max and evt2/state-min: a damaged time index can hand restore() any state;
// time_base = INT64_MAX or loops = INT32_MAX made the time arithmetic overflow (negative timestamps,
// undefined behaviour). States are clamped to what decoding can produce.
TEST(Evt2Decoder, RestoreClampsADamagedState) {
  const auto bytes =
      to_bytes({cd_word(1, 5, 3, 3), th_word(0), cd_word(0, 6, 4, 4), th_word(kMaxTh), cd_word(1, 7, 5, 5)});
  for (const bool high : {true, false}) {
    DecoderState wild;
    wild.time_base = wild.time = wild.first_time_high =
        high ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
    wild.loops = high ? std::numeric_limits<std::int32_t>::max() : std::numeric_limits<std::int32_t>::min();
    wild.has_time_base = 1;
    auto decoder = make_decoder(RawEncoding::evt2, with_geometry(640, 480));
    decoder->restore(wild);
    EventBuffer cd;
    TriggerBuffer triggers;
    decoder->decode(bytes, cd, &triggers);
    ASSERT_EQ(cd.size(), 3u);
    for (const EventCD& e : cd) {
      EXPECT_GE(e.t, 0);
      EXPECT_LT(e.t, std::int64_t{1} << 60);
    }
    if (auto shift = decoder->metavision_time_shift()) {
      EXPECT_LE(*shift, std::int64_t{kMaxTh} << 6);
    }
  }
}

// The loop count stops at 2^24 (9000 years of 2^34 us): later wraps count as glitches, so a hostile
// stream of wraps cannot push loops * 2^34 past the int64 range.
TEST(Evt2Decoder, LoopCountStopsAtItsCap) {
  constexpr std::int64_t kPeriod = std::int64_t{1} << 34;
  constexpr std::int32_t kCap = std::int32_t{1} << 24;
  for (const std::int32_t loops : {kCap - 1, kCap}) {
    DecoderState s;
    s.has_time_base = 1;
    s.first_time_high = 0;
    s.loops = loops;
    s.time_base = loops * kPeriod + (std::int64_t{kMaxTh} << 6);
    auto decoder = make_decoder(RawEncoding::evt2, {});
    decoder->restore(s);
    EventBuffer cd;
    TriggerBuffer triggers;
    decoder->decode(to_bytes({th_word(0), cd_word(1, 1, 2, 2)}), cd, &triggers);
    ASSERT_EQ(cd.size(), 1u);
    EXPECT_EQ(cd[0].t, kCap * kPeriod + 1);
    EXPECT_EQ(decoder->stats().time_loops, loops < kCap ? 1u : 0u);
    EXPECT_EQ(decoder->stats().time_high_glitches, loops < kCap ? 0u : 1u);
    EXPECT_EQ(decoder->state().loops, kCap);
  }
}

}  // namespace
}  // namespace evloader
