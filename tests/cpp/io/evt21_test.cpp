// SPDX-License-Identifier: Apache-2.0
// Tests of the EVT 2.1 codec: hand-built words from formats.md §1.3 in both word orders, round trips,
// stream cuts, state restore, and the real EVT2 recording re-encoded as EVT 2.1.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
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
constexpr std::uint64_t kMaxTh = (std::uint64_t{1} << 28) - 1;
constexpr Evt21Order kOrders[] = {Evt21Order::little, Evt21Order::legacy};

const char* name(Evt21Order order) { return order == Evt21Order::little ? "little" : "legacy"; }

// Word builders written straight from the layout table of formats.md §1.3 (logical 64-bit words).
std::uint64_t cd_word(int p, int t_lsb, int x, int y, std::uint32_t valid) {
  return (static_cast<std::uint64_t>(p) << 60) | (static_cast<std::uint64_t>(t_lsb) << 54) |
         (static_cast<std::uint64_t>(x) << 43) | (static_cast<std::uint64_t>(y) << 32) | valid;
}
std::uint64_t th_word(std::uint64_t value) { return (std::uint64_t{0x8} << 60) | (value << 32); }
std::uint64_t trigger_word(int t_lsb, int id, int value) {
  return (std::uint64_t{0xA} << 60) | (static_cast<std::uint64_t>(t_lsb) << 54) |
         (static_cast<std::uint64_t>(id) << 40) | (static_cast<std::uint64_t>(value) << 32);
}
std::uint64_t typed_word(std::uint64_t type, std::uint64_t payload = 0) { return (type << 60) | payload; }

// `little`: one LE u64. `legacy`: two LE u32, the high half first.
std::vector<std::byte> to_bytes(const std::vector<std::uint64_t>& words, Evt21Order order) {
  std::vector<std::byte> out;
  for (std::uint64_t w : words) {
    const std::uint64_t first = order == Evt21Order::little ? w : (w >> 32);
    const std::uint64_t second = order == Evt21Order::little ? (w >> 32) : w;
    for (int k = 0; k < 4; ++k) out.push_back(static_cast<std::byte>((first >> (8 * k)) & 0xFF));
    for (int k = 0; k < 4; ++k) out.push_back(static_cast<std::byte>((second >> (8 * k)) & 0xFF));
  }
  return out;
}

std::vector<std::uint64_t> words_of(const std::vector<std::byte>& bytes, Evt21Order order) {
  std::vector<std::uint64_t> words(bytes.size() / 8);
  for (std::size_t i = 0; i < words.size(); ++i) {
    std::uint64_t a = 0, b = 0;
    for (int k = 0; k < 4; ++k) a |= std::to_integer<std::uint64_t>(bytes[8 * i + k]) << (8 * k);
    for (int k = 0; k < 4; ++k) b |= std::to_integer<std::uint64_t>(bytes[8 * i + 4 + k]) << (8 * k);
    words[i] = order == Evt21Order::little ? (b << 32) | a : (a << 32) | b;
  }
  return words;
}

struct Decoded {
  std::vector<EventCD> cd;
  std::vector<EventExtTrigger> triggers;
  DecodeStats stats;
};

DecoderOptions options_for(Evt21Order order, int width = 0, int height = 0) {
  DecoderOptions o;
  o.evt21_order = order;
  o.geometry = {width, height};
  return o;
}

// Decode `bytes` split at the sorted positions `cuts` (each piece one decode() call), then finish().
Decoded decode_cut(std::span<const std::byte> bytes, const DecoderOptions& options,
                   const std::vector<std::size_t>& cuts = {}) {
  auto decoder = make_decoder(RawEncoding::evt21, options);
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

// Decodes the words in both orders, checks that both agree, and returns the result.
Decoded decode_words(const std::vector<std::uint64_t>& words, int width = 0, int height = 0) {
  const Decoded little =
      decode_cut(to_bytes(words, Evt21Order::little), options_for(Evt21Order::little, width, height));
  const Decoded legacy =
      decode_cut(to_bytes(words, Evt21Order::legacy), options_for(Evt21Order::legacy, width, height));
  EXPECT_EQ(little.cd, legacy.cd);
  EXPECT_EQ(little.triggers, legacy.triggers);
  EXPECT_EQ(little.stats.violations(), legacy.stats.violations());
  return little;
}

std::vector<std::byte> encode(Evt21Order order, std::span<const EventCD> cd,
                              std::span<const EventExtTrigger> triggers = {}) {
  auto encoder = make_encoder(RawEncoding::evt21, order);
  std::vector<std::byte> out;
  encoder->encode(cd, triggers, out);
  encoder->finish(out);
  return out;
}

EventCD ev(int x, int y, int p, std::int64_t t) {
  return {static_cast<std::uint16_t>(x), static_cast<std::uint16_t>(y), static_cast<std::int16_t>(p), t};
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

bool same_stats(const DecodeStats& a, const DecodeStats& b) {
  return a.bytes == b.bytes && a.cd_events == b.cd_events && a.trigger_events == b.trigger_events &&
         a.padding_words == b.padding_words && a.before_time_base == b.before_time_base &&
         a.out_of_bounds == b.out_of_bounds && a.time_backwards == b.time_backwards &&
         a.time_high_glitches == b.time_high_glitches && a.unknown_words == b.unknown_words &&
         a.truncated_bytes == b.truncated_bytes && a.time_loops == b.time_loops;
}

// Words of every kind in a plausible mix, with glitches, wraps, reserved types and vectors reaching
// outside the sensor, so that stream-cut and restore tests also cover the violation paths.
std::vector<std::uint64_t> messy_words(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pct(0, 99), lsb(0, 63), coord(0, 700), id(0, 31), bit(0, 1);
  std::vector<std::uint64_t> words;
  std::uint64_t th = kMaxTh - 40;  // close to the wrap so that the stream crosses it
  if (seed % 2 == 0) words.push_back(cd_word(1, 3, 4, 5, 0xF));  // an event before any TIME_HIGH
  words.push_back(th_word(th));
  while (words.size() < n) {
    const int r = pct(rng);
    if (r < 60) {
      const std::uint32_t valid =
          r < 10 ? static_cast<std::uint32_t>(rng()) : (1u << (rng() % 32)) | (1u << (rng() % 32));
      words.push_back(cd_word(bit(rng), lsb(rng), coord(rng), coord(rng), valid));
    } else if (r < 80) {
      th = (th + 1) & kMaxTh;
      words.push_back(th_word(th));
    } else if (r < 83) {
      words.push_back(th_word(th == 0 ? 0 : th - 1));  // glitch
    } else if (r < 88) {
      words.push_back(trigger_word(lsb(rng), id(rng), bit(rng)));
    } else if (r < 93) {
      words.push_back(typed_word(0xE, (std::uint64_t{0x14} << 32) | 0xF0000123u));
      words.push_back(typed_word(0xF, 1234));
    } else {
      words.push_back(typed_word(0x2 + static_cast<std::uint64_t>(pct(rng) % 6), 77));  // reserved
    }
  }
  return words;
}

// ---------------------------------------------------------------------------------------------------
// Decoder against hand-built words

TEST(Evt21Decoder, ReportsItsWordFormat) {
  auto decoder = make_decoder(RawEncoding::evt21, {});
  EXPECT_EQ(decoder->encoding(), RawEncoding::evt21);
  EXPECT_EQ(decoder->word_size(), 8u);
  EXPECT_EQ(decoder->max_events_per_word(), 32u);
  EXPECT_FALSE(decoder->metavision_time_shift().has_value());
}

TEST(Evt21Decoder, SpecExampleBytesInLegacyAndLittleOrder) {
  // formats.md §1.3: the 64-bit word 0x0102030405060708 is sent as 04 03 02 01 08 07 06 05 (legacy) and
  // as 08 07 06 05 04 03 02 01 (little). As a CD word: type 0, t_lsb 4, x 64, y 772, valid 0x05060708.
  const auto b = [](std::initializer_list<int> v) {
    std::vector<std::byte> out;
    for (int x : v) out.push_back(static_cast<std::byte>(x));
    return out;
  };
  const std::vector<std::byte> legacy_th =
      b({0x0A, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00});  // TIME_HIGH 10
  const std::vector<std::byte> little_th = b({0x00, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x80});
  const std::vector<std::byte> legacy_cd = b({0x04, 0x03, 0x02, 0x01, 0x08, 0x07, 0x06, 0x05});
  const std::vector<std::byte> little_cd = b({0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01});
  // Bits of 0x05060708: 3 | 8 9 10 | 17 18 | 24 26.
  std::vector<EventCD> want;
  for (int i : {3, 8, 9, 10, 17, 18, 24, 26}) want.push_back(ev(64 + i, 772, 0, 10 * 64 + 4));

  auto run = [](Evt21Order order, const std::vector<std::byte>& th, const std::vector<std::byte>& cd_bytes) {
    std::vector<std::byte> bytes = th;
    bytes.insert(bytes.end(), cd_bytes.begin(), cd_bytes.end());
    return decode_cut(bytes, options_for(order));
  };
  const Decoded legacy = run(Evt21Order::legacy, legacy_th, legacy_cd);
  EXPECT_TRUE(same_events(legacy.cd, want));
  EXPECT_EQ(legacy.stats.violations(), 0u);
  const Decoded little = run(Evt21Order::little, little_th, little_cd);
  EXPECT_TRUE(same_events(little.cd, want));
  // The same bytes read in the wrong order are something else entirely.
  const Decoded wrong = run(Evt21Order::little, little_th, legacy_cd);
  EXPECT_FALSE(same_events(wrong.cd, want));
  // Our word builder and byte layout agree with the spec example.
  EXPECT_EQ(cd_word(0, 4, 64, 772, 0x05060708u), 0x0102030405060708u);
  EXPECT_EQ(to_bytes({0x0102030405060708u}, Evt21Order::legacy), legacy_cd);
  EXPECT_EQ(to_bytes({0x0102030405060708u}, Evt21Order::little), little_cd);
}

TEST(Evt21Decoder, ExpandsTheValidMaskFromTheBaseX) {
  // x is not necessarily a multiple of 32 (formats.md §1.3).
  const auto d = decode_words(
      {th_word(3), cd_word(1, 7, 100, 5, 0x8000000Bu), cd_word(0, 8, 37, 6, 0x1u), cd_word(0, 9, 0, 0, 0)});
  const std::vector<EventCD> want = {ev(100, 5, 1, 199), ev(101, 5, 1, 199), ev(103, 5, 1, 199),
                                     ev(131, 5, 1, 199), ev(37, 6, 0, 200)};
  EXPECT_TRUE(same_events(d.cd, want));
  EXPECT_EQ(d.stats.cd_events, 5u);
  EXPECT_EQ(d.stats.violations(), 0u);  // an empty mask is legal and emits nothing
}

TEST(Evt21Decoder, FullMaskGivesThirtyTwoEvents) {
  const auto d = decode_words({th_word(1), cd_word(1, 0, 256, 9, 0xFFFFFFFFu)});
  ASSERT_EQ(d.cd.size(), 32u);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(d.cd[static_cast<std::size_t>(i)], ev(256 + i, 9, 1, 64));
}

TEST(Evt21Decoder, BoundsChecksEveryPixelOfAVector) {
  const std::vector<std::uint64_t> words = {th_word(1), cd_word(1, 0, 630, 10, 0xFFFFFFFFu),
                                            cd_word(1, 1, 20, 480, 0x3u), cd_word(1, 2, 700, 10, 0x1u),
                                            cd_word(0, 3, 608, 479, 0xFFFFFFFFu)};
  const auto d = decode_words(words, 640, 480);
  ASSERT_EQ(d.cd.size(), 10u + 32u);
  EXPECT_EQ(d.cd[9], ev(639, 10, 1, 64));
  EXPECT_EQ(d.cd[41], ev(639, 479, 0, 67));
  EXPECT_EQ(d.stats.out_of_bounds, 22u + 2u + 1u);
  // Unknown geometry: only the 11-bit coordinate range limits x + i.
  const auto open = decode_words({th_word(1), cd_word(1, 0, 2040, 2047, 0xFFFFFFFFu)});
  ASSERT_EQ(open.cd.size(), 8u);
  EXPECT_EQ(open.cd.back(), ev(2047, 2047, 1, 64));
  EXPECT_EQ(open.stats.out_of_bounds, 24u);
}

TEST(Evt21Decoder, TimeLsbReplacesTheLowBitsOfTheRunningTime) {
  const auto d = decode_words({th_word(10), cd_word(1, 5, 1, 1, 1), cd_word(1, 63, 1, 1, 1), th_word(11),
                               cd_word(1, 0, 1, 1, 1), cd_word(0, 2, 1, 1, 0x7)});
  ASSERT_EQ(d.cd.size(), 6u);
  EXPECT_EQ(d.cd[0].t, 645);
  EXPECT_EQ(d.cd[1].t, 703);
  EXPECT_EQ(d.cd[2].t, 704);
  EXPECT_EQ(d.cd[5].t, 706);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt21Decoder, CountsTimeGoingBackwardsPerEventButKeepsThem) {
  const auto d = decode_words({th_word(10), cd_word(1, 40, 1, 1, 1), cd_word(1, 30, 1, 1, 0x7),
                               cd_word(1, 30, 1, 1, 0), cd_word(1, 35, 1, 1, 1)});
  EXPECT_EQ(d.cd.size(), 5u);
  EXPECT_EQ(d.stats.time_backwards, 3u);  // the three events of the second word
}

TEST(Evt21Decoder, DropsEventsBeforeTheFirstTimeHigh) {
  const auto d = decode_words({cd_word(1, 1, 1, 1, 0xFF), trigger_word(0, 1, 1), typed_word(0xE), th_word(7),
                               cd_word(1, 4, 3, 3, 1), trigger_word(9, 2, 0)});
  ASSERT_EQ(d.cd.size(), 1u);
  EXPECT_EQ(d.cd[0], ev(3, 3, 1, 7 * 64 + 4));
  ASSERT_EQ(d.triggers.size(), 1u);
  EXPECT_EQ(d.triggers[0], (EventExtTrigger{0, 7 * 64 + 9, 2}));
  EXPECT_EQ(d.stats.before_time_base, 2u);  // counted per word
  EXPECT_EQ(d.stats.padding_words, 1u);
}

TEST(Evt21Decoder, AddsOneLoopWhenTimeHighWraps) {
  const auto d = decode_words({th_word(kMaxTh), cd_word(1, 10, 1, 1, 1), th_word(0), cd_word(0, 20, 2, 2, 1),
                               th_word(kMaxTh - 100), th_word(3), cd_word(0, 0, 3, 3, 1)});
  ASSERT_EQ(d.cd.size(), 3u);
  EXPECT_EQ(d.cd[0].t, static_cast<std::int64_t>(kMaxTh << 6) + 10);
  EXPECT_EQ(d.cd[1].t, kLoop + 20);
  EXPECT_EQ(d.cd[2].t, 2 * kLoop + 3 * 64);
  EXPECT_EQ(d.stats.time_loops, 2u);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt21Decoder, CountsTimeHighGlitchAndUsesTheNewValue) {
  const auto d = decode_words(
      {th_word(1000), cd_word(1, 5, 1, 1, 1), th_word(1u << 20), th_word(900), cd_word(0, 6, 2, 2, 1)});
  ASSERT_EQ(d.cd.size(), 2u);
  EXPECT_EQ(d.cd[1].t, 900 * 64 + 6);
  EXPECT_EQ(d.stats.time_high_glitches, 1u);
  EXPECT_EQ(d.stats.time_loops, 0u);
  EXPECT_EQ(d.stats.time_backwards, 1u);
}

TEST(Evt21Decoder, CountsReservedTypesAndSkipsVendorWords) {
  std::vector<std::uint64_t> words = {th_word(2)};
  for (std::uint64_t type : {0x2u, 0x3u, 0x4u, 0x5u, 0x6u, 0x7u, 0x9u, 0xBu, 0xCu, 0xDu})
    words.push_back(typed_word(type, 5));
  words.push_back(typed_word(0xE, (std::uint64_t{0x16} << 32) | 0xF0000042u));  // OTHERS with its payload
  words.push_back(typed_word(0xF, 0xFFFFFFFFFu));                               // CONTINUED
  words.push_back(cd_word(1, 1, 1, 1, 1));
  const auto d = decode_words(words);
  EXPECT_EQ(d.stats.unknown_words, 10u);
  EXPECT_EQ(d.stats.padding_words, 2u);
  ASSERT_EQ(d.cd.size(), 1u);
  EXPECT_EQ(d.cd[0].t, 2 * 64 + 1);
}

TEST(Evt21Decoder, DecodesTriggerWords) {
  const std::vector<std::uint64_t> words = {th_word(9), trigger_word(3, 0, 1), trigger_word(5, 31, 0),
                                            trigger_word(63, 7, 1) | 0x003FE0FE00000000u | 0xFFFFFFFFu};
  const auto d = decode_words(words);
  ASSERT_EQ(d.triggers.size(), 3u);
  EXPECT_EQ(d.triggers[0], (EventExtTrigger{1, 9 * 64 + 3, 0}));
  EXPECT_EQ(d.triggers[1], (EventExtTrigger{0, 9 * 64 + 5, 31}));
  EXPECT_EQ(d.triggers[2], (EventExtTrigger{1, 9 * 64 + 63, 7}));  // unused bits ignored
  EXPECT_EQ(d.stats.trigger_events, 3u);
  DecoderOptions off;
  off.decode_triggers = false;
  const Decoded none = decode_cut(to_bytes(words, Evt21Order::little), off);
  EXPECT_TRUE(none.triggers.empty());
  EXPECT_EQ(none.stats.violations(), 0u);
}

TEST(Evt21Decoder, RaiseThrowsFormatErrorAtTheOffendingWord) {
  struct Case {
    const char* name;
    std::vector<std::uint64_t> words;
    std::int64_t bad_word;
  };
  const std::vector<Case> cases = {
      {"before time base", {typed_word(0xE), cd_word(1, 0, 1, 1, 1), th_word(1)}, 1},
      {"vector reaching outside",
       {th_word(1), cd_word(1, 0, 1, 1, 1), cd_word(1, 0, 620, 1, 0x00100001u)},
       2},
      {"row outside", {th_word(1), cd_word(1, 0, 1, 480, 1)}, 1},
      {"time backwards", {th_word(1), cd_word(1, 9, 1, 1, 1), cd_word(1, 8, 1, 1, 1)}, 2},
      {"glitch", {th_word(5), cd_word(1, 0, 1, 1, 1), th_word(4)}, 2},
      {"reserved type", {th_word(5), typed_word(0xE), typed_word(0xD)}, 2},
  };
  for (Evt21Order order : kOrders) {
    for (const auto& c : cases) {
      const auto bytes = to_bytes(c.words, order);
      DecoderOptions options = options_for(order, 640, 480);
      EXPECT_EQ(decode_cut(bytes, options).stats.violations(), 1u) << c.name;
      options.on_violation = OnViolation::raise;
      auto decoder = make_decoder(RawEncoding::evt21, options);
      EventBuffer cd;
      // Split inside the offending word: the offset names the word's first byte.
      const std::size_t split = static_cast<std::size_t>(8 * c.bad_word + 3);
      try {
        decoder->decode(std::span(bytes).first(split), cd, nullptr, 2000);
        decoder->decode(std::span(bytes).subspan(split), cd, nullptr,
                        2000 + static_cast<std::int64_t>(split));
        ADD_FAILURE() << c.name << " " << name(order) << ": no FormatError";
      } catch (const FormatError& e) {
        const std::string want = "at byte " + std::to_string(2000 + 8 * c.bad_word);
        EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << c.name << ": " << e.what();
      }
    }
  }
}

TEST(Evt21Decoder, KeepsPartialWordsAcrossCallsAndCountsTruncatedBytes) {
  for (Evt21Order order : kOrders) {
    const auto bytes = to_bytes({th_word(4), cd_word(1, 2, 3, 4, 0x5)}, order);
    auto decoder = make_decoder(RawEncoding::evt21, options_for(order));
    EventBuffer cd;
    decoder->decode(std::span(bytes).first(13), cd, nullptr);
    EXPECT_EQ(decoder->pending_bytes(), 5u);
    EXPECT_EQ(cd.size(), 0u);
    decoder->decode(std::span(bytes).subspan(13), cd, nullptr);
    EXPECT_EQ(decoder->pending_bytes(), 0u);
    ASSERT_EQ(cd.size(), 2u);
    EXPECT_EQ(cd[1], ev(5, 4, 1, 4 * 64 + 2));
    decoder->decode(std::span(bytes).first(7), cd, nullptr);
    decoder->finish();
    EXPECT_EQ(decoder->stats().truncated_bytes, 7u);
    EXPECT_EQ(decoder->pending_bytes(), 0u);
  }
}

TEST(Evt21Decoder, MetavisionTimeShiftIsTheFirstTimeHighTimes64) {
  const auto d = make_decoder(RawEncoding::evt21, {});
  const auto bytes = to_bytes({th_word(777), th_word(778), cd_word(0, 1, 2, 3, 1)}, Evt21Order::little);
  EventBuffer cd;
  d->decode(bytes, cd, nullptr);
  ASSERT_TRUE(d->metavision_time_shift().has_value());
  EXPECT_EQ(*d->metavision_time_shift(), 777 * 64);
  d->reset();
  EXPECT_FALSE(d->metavision_time_shift().has_value());
  EXPECT_EQ(d->state(), DecoderState{});
}

TEST(Evt21Decoder, RestoredStateResumesExactlyAtEveryWordBoundary) {
  for (Evt21Order order : kOrders) {
    const auto bytes = to_bytes(messy_words(250, 5), order);
    const auto options = options_for(order, 640, 480);
    const Decoded full = decode_cut(bytes, options);
    ASSERT_GT(full.stats.time_loops, 0u);
    ASSERT_GT(full.stats.time_backwards, 0u);
    for (std::size_t cut = 0; cut <= bytes.size(); cut += 8) {
      auto first = make_decoder(RawEncoding::evt21, options);
      EventBuffer cd;
      TriggerBuffer triggers;
      first->decode(std::span(bytes).first(cut), cd, &triggers, 0);
      auto second = make_decoder(RawEncoding::evt21, options);
      second->restore(first->state());
      second->decode(std::span(bytes).subspan(cut), cd, &triggers, static_cast<std::int64_t>(cut));
      second->finish();
      ASSERT_TRUE(same_events({cd.begin(), cd.end()}, full.cd)) << name(order) << " cut " << cut;
      ASSERT_EQ(std::vector<EventExtTrigger>(triggers.begin(), triggers.end()), full.triggers);
      DecodeStats sum = first->stats();
      sum += second->stats();
      ASSERT_TRUE(same_stats(sum, full.stats)) << name(order) << " cut " << cut;
    }
  }
}

TEST(Evt21Decoder, MessyStreamCutAtEveryByteGivesTheSameResult) {
  for (Evt21Order order : kOrders) {
    const auto bytes = to_bytes(messy_words(200, 6), order);
    const auto options = options_for(order, 640, 480);
    const Decoded full = decode_cut(bytes, options);
    EXPECT_GT(full.stats.before_time_base, 0u);
    EXPECT_GT(full.stats.unknown_words, 0u);
    EXPECT_GT(full.stats.out_of_bounds, 0u);
    EXPECT_GT(full.stats.time_high_glitches, 0u);
    for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
      const Decoded split = decode_cut(bytes, options, {cut});
      ASSERT_TRUE(same_events(split.cd, full.cd)) << name(order) << " cut " << cut;
      ASSERT_EQ(split.triggers, full.triggers) << name(order) << " cut " << cut;
      ASSERT_TRUE(same_stats(split.stats, full.stats)) << name(order) << " cut " << cut;
    }
  }
}

TEST(Evt21Decoder, GarbageInputNeverCrashes) {
  std::mt19937 rng(4321);
  for (int round = 0; round < 40; ++round) {
    std::vector<std::byte> garbage(1 + rng() % 20000);
    for (auto& b : garbage) b = static_cast<std::byte>(rng());
    for (OnViolation policy : {OnViolation::skip, OnViolation::raise}) {
      DecoderOptions options = options_for(kOrders[round % 2]);
      if (round % 3 != 0)
        options.geometry = {1 + static_cast<int>(rng() % 2100), 1 + static_cast<int>(rng() % 1000)};
      options.on_violation = policy;
      auto decoder = make_decoder(RawEncoding::evt21, options);
      EventBuffer cd;
      TriggerBuffer triggers;
      std::size_t pos = 0;
      while (pos < garbage.size()) {
        const std::size_t len = std::min<std::size_t>(1 + rng() % 999, garbage.size() - pos);
        try {
          decoder->decode(std::span(garbage).subspan(pos, len), cd, &triggers,
                          static_cast<std::int64_t>(pos));
        } catch (const FormatError&) {
          decoder->reset();
        }
        pos += len;
      }
      decoder->finish();
      const int width = options.geometry.known() ? options.geometry.width : 2048;
      const int height = options.geometry.known() ? options.geometry.height : 2048;
      for (const EventCD& e : cd) {
        ASSERT_LT(int{e.x}, std::min(width, 2048));
        ASSERT_LT(int{e.y}, height);
        ASSERT_TRUE(e.p == 0 || e.p == 1);
        ASSERT_GE(e.t, 0);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Encoder

TEST(Evt21Encoder, GroupsSameTimeRowAndPolarityIntoOneVector) {
  const std::vector<EventCD> events = {
      ev(10, 3, 1, 100), ev(11, 3, 1, 100),
      ev(15, 3, 1, 100), ev(41, 3, 1, 100),  // one vector: bits 0 1 5 31
      ev(42, 3, 1, 100),                     // outside the window
      ev(43, 3, 0, 100),                     // other polarity
      ev(44, 4, 0, 100),                     // other row
      ev(40, 4, 0, 100),                     // x goes back: new word
      ev(41, 4, 0, 101),                     // other time
  };
  for (Evt21Order order : kOrders) {
    const auto words = words_of(encode(order, events), order);
    const std::vector<std::uint64_t> want = {
        th_word(1),
        cd_word(1, 36, 10, 3, 0x80000023u),
        cd_word(1, 36, 42, 3, 1),
        cd_word(0, 36, 43, 3, 1),
        cd_word(0, 36, 44, 4, 1),
        cd_word(0, 36, 40, 4, 1),
        cd_word(0, 37, 41, 4, 1),
    };
    EXPECT_EQ(words, want) << name(order);
    EXPECT_TRUE(same_events(decode_cut(encode(order, events), options_for(order)).cd, events));
  }
}

TEST(Evt21Encoder, WritesTimeHighLikeTheEvt2Encoder) {
  const std::vector<EventCD> events = {ev(1, 2, 1, 100), ev(3, 4, 0, 140), ev(5, 6, 1, 10'000'140)};
  const std::vector<EventExtTrigger> triggers = {{1, 140, 3}};
  const auto words = words_of(encode(Evt21Order::little, events, triggers), Evt21Order::little);
  const std::vector<std::uint64_t> want = {th_word(1),
                                           cd_word(1, 36, 1, 2, 1),
                                           th_word(1),
                                           th_word(2),
                                           cd_word(0, 12, 3, 4, 1),
                                           trigger_word(12, 3, 1),  // after the CD event of equal t
                                           th_word(10'000'140 >> 6),
                                           cd_word(1, 10'000'140 & 63, 5, 6, 1)};
  EXPECT_EQ(words, want);
}

TEST(Evt21Encoder, RejectsEventsTheFormatCannotHold) {
  for (Evt21Order order : kOrders) {
    auto rejects = [order](std::vector<EventCD> cd, std::vector<EventExtTrigger> triggers = {}) {
      auto encoder = make_encoder(RawEncoding::evt21, order);
      std::vector<std::byte> out;
      EXPECT_THROW(encoder->encode(cd, triggers, out), ConfigError);
      EXPECT_TRUE(out.empty());
    };
    rejects({ev(1, 1, 1, 10), ev(1, 1, 1, 9)});
    rejects({ev(1, 1, 1, -3)});
    rejects({ev(2048, 1, 1, 0)});
    rejects({ev(1, 2048, 1, 0)});
    rejects({ev(1, 1, 3, 0)});
    rejects({}, {{1, 10, 0}, {1, 2, 0}});
    rejects({}, {{1, 5, 40}});
    auto encoder = make_encoder(RawEncoding::evt21, order);
    std::vector<std::byte> out;
    encoder->encode(std::vector<EventCD>{ev(1, 1, 1, 50)}, {}, out);
    EXPECT_THROW(encoder->encode(std::vector<EventCD>{ev(1, 1, 1, 49)}, {}, out), ConfigError);
  }
}

// ---------------------------------------------------------------------------------------------------
// Round trips

TEST(Evt21RoundTrip, ShortStreamCutAtEveryPosition) {
  for (Evt21Order order : kOrders) {
    test::StreamShape shape;
    shape.width = 640;
    shape.height = 480;
    shape.t_start = 5'000'000;
    const auto events = test::random_events(300, 61, shape);
    const auto triggers = test::random_triggers(10, 62, events.front().t, events.back().t, 31);
    const auto bytes = encode(order, events, triggers);
    const auto options = options_for(order, 640, 480);
    const Decoded full = decode_cut(bytes, options);
    ASSERT_TRUE(same_events(full.cd, events));
    ASSERT_EQ(full.triggers, triggers);
    EXPECT_EQ(full.stats.violations(), 0u);
    EXPECT_LT(bytes.size() / 8, events.size());  // bursts were packed into vectors
    for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
      const Decoded split = decode_cut(bytes, options, {cut});
      ASSERT_TRUE(same_events(split.cd, events)) << name(order) << " cut " << cut;
      ASSERT_EQ(split.triggers, triggers) << name(order) << " cut " << cut;
      ASSERT_TRUE(same_stats(split.stats, full.stats)) << name(order) << " cut " << cut;
    }
  }
}

TEST(Evt21RoundTrip, OneByteAtATime) {
  for (Evt21Order order : kOrders) {
    const auto events = test::random_events(2000, 71);
    const auto triggers = test::random_triggers(20, 72, events.front().t, events.back().t);
    const auto bytes = encode(order, events, triggers);
    std::vector<std::size_t> cuts(bytes.size());
    for (std::size_t k = 0; k < cuts.size(); ++k) cuts[k] = k;
    DecoderOptions options = options_for(order, 1280, 720);
    options.on_violation = OnViolation::raise;
    const Decoded d = decode_cut(bytes, options, cuts);
    EXPECT_TRUE(same_events(d.cd, events)) << name(order);
    EXPECT_EQ(d.triggers, triggers);
    EXPECT_EQ(d.stats.cd_events, events.size());
  }
}

TEST(Evt21RoundTrip, LongStreamAtRandomCuts) {
  test::StreamShape shape;
  shape.max_gap_us = 400;
  const auto events = test::random_events(200'000, 81, shape);
  const auto triggers = test::random_triggers(300, 82, events.front().t, events.back().t, 31);
  std::mt19937 rng(83);
  for (Evt21Order order : kOrders) {
    const auto bytes = encode(order, events, triggers);
    for (int round = 0; round < 3; ++round) {
      std::vector<std::size_t> cuts;
      for (int k = 0; k < 60; ++k) cuts.push_back(rng() % (bytes.size() + 1));
      std::sort(cuts.begin(), cuts.end());
      const Decoded d = decode_cut(bytes, options_for(order, 1280, 720), cuts);
      ASSERT_TRUE(same_events(d.cd, events)) << name(order) << " round " << round;
      ASSERT_EQ(d.triggers, triggers);
      EXPECT_EQ(d.stats.violations(), 0u);
    }
  }
}

TEST(Evt21RoundTrip, StreamCrossingThe34BitWrap) {
  test::StreamShape shape;
  shape.t_start = kLoop - 2500;
  shape.max_gap_us = 40;
  const auto events = test::random_events(8000, 91, shape);
  ASSERT_LT(events.front().t, kLoop);
  ASSERT_GT(events.back().t, kLoop + 1000);
  for (Evt21Order order : kOrders) {
    const auto bytes = encode(order, events);
    const Decoded d = decode_cut(bytes, options_for(order, 1280, 720), {bytes.size() / 2 + 3});
    EXPECT_TRUE(same_events(d.cd, events)) << name(order);
    EXPECT_EQ(d.stats.time_loops, 1u);
    EXPECT_EQ(d.stats.violations(), 0u);
  }
  // A stream that starts beyond the first wrap and jumps over several more.
  const std::vector<EventCD> far = {ev(1, 1, 1, 2 * kLoop + 9), ev(2, 1, 1, 2 * kLoop + 9),
                                    ev(3, 3, 0, 5 * kLoop + 12345), ev(4, 4, 1, 7 * kLoop - 1)};
  const Decoded d = decode_cut(encode(Evt21Order::legacy, far), options_for(Evt21Order::legacy));
  EXPECT_TRUE(same_events(d.cd, far));
  EXPECT_EQ(d.stats.time_loops, 6u);
}

// ---------------------------------------------------------------------------------------------------
// Real events: the EVT2 recording re-encoded as EVT 2.1 (no real EVT 2.1 file exists, SOURCES.md)

TEST(Evt21RealFile, FaeryEventsSurviveReencodingInBothOrders) {
  const auto dir = test::real_data_dir();
  if (dir.empty()) GTEST_SKIP() << "real recordings not found (../shared/data/real or EVLOADER_DATA_DIR)";
  const auto path = dir / "evt2_gen3_faery.raw";
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> file(chars.size());
  std::memcpy(file.data(), chars.data(), chars.size());
  const auto body = std::span(file).subspan(read_header(path).data_offset);
  DecoderOptions evt2_options;
  evt2_options.geometry = {640, 480};
  auto evt2 = make_decoder(RawEncoding::evt2, evt2_options);
  EventBuffer original;
  evt2->decode(body, original, nullptr, 0);
  ASSERT_EQ(original.size(), 521252u);
  const std::vector<EventCD> events(original.begin(), original.end());
  for (Evt21Order order : kOrders) {
    const auto bytes = encode(order, events);
    const Decoded d = decode_cut(bytes, options_for(order, 640, 480), {bytes.size() / 3 + 5});
    EXPECT_TRUE(same_events(d.cd, events)) << name(order);
    EXPECT_EQ(d.stats.violations(), 0u);
    // The encoder's first TIME_HIGH is the first event's t >> 6, so Metavision's shift is unchanged.
    auto decoder = make_decoder(RawEncoding::evt21, options_for(order));
    EventBuffer cd;
    decoder->decode(std::span(bytes).first(8), cd, nullptr);
    EXPECT_EQ(decoder->metavision_time_shift(), std::optional<std::int64_t>(913716224));
  }
}

// Fuzz regressions evt21/state-max and evt21/state-min: a damaged time index can hand restore() any state;
// time_base = INT64_MAX or loops = INT32_MAX made the time arithmetic overflow (negative timestamps,
// undefined behaviour). States are clamped to what decoding can produce.
TEST(Evt21Decoder, RestoreClampsADamagedState) {
  const auto bytes = to_bytes({cd_word(1, 5, 3, 3, 0x3), th_word(0), cd_word(0, 6, 4, 4, 0x1),
                               th_word(kMaxTh), trigger_word(7, 1, 1), cd_word(1, 7, 5, 5, 0x1)},
                              Evt21Order::little);
  for (const bool high : {true, false}) {
    DecoderState wild;
    wild.time_base = wild.time = wild.first_time_high =
        high ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
    wild.loops = high ? std::numeric_limits<std::int32_t>::max() : std::numeric_limits<std::int32_t>::min();
    wild.has_time_base = 1;
    auto decoder = make_decoder(RawEncoding::evt21, options_for(Evt21Order::little, 640, 480));
    decoder->restore(wild);
    EventBuffer cd;
    TriggerBuffer triggers;
    decoder->decode(bytes, cd, &triggers);
    ASSERT_EQ(cd.size(), 4u);
    ASSERT_EQ(triggers.size(), 1u);
    for (const EventCD& e : cd) {
      EXPECT_GE(e.t, 0);
      EXPECT_LT(e.t, std::int64_t{1} << 60);
    }
    EXPECT_GE(triggers[0].t, 0);
    if (auto shift = decoder->metavision_time_shift()) {
      EXPECT_LE(*shift, static_cast<std::int64_t>(kMaxTh << 6));
    }
  }
}

// The loop count stops at 2^24 (9000 years of 2^34 us): later wraps count as glitches, so a hostile
// stream of wraps cannot push loops * 2^34 past the int64 range.
TEST(Evt21Decoder, LoopCountStopsAtItsCap) {
  constexpr std::int64_t kPeriod = std::int64_t{1} << 34;
  constexpr std::int32_t kCap = std::int32_t{1} << 24;
  for (const std::int32_t loops : {kCap - 1, kCap}) {
    DecoderState s;
    s.has_time_base = 1;
    s.first_time_high = 0;
    s.loops = loops;
    s.time_base = s.time = loops * kPeriod + static_cast<std::int64_t>(kMaxTh << 6);
    auto decoder = make_decoder(RawEncoding::evt21, options_for(Evt21Order::little));
    decoder->restore(s);
    EventBuffer cd;
    TriggerBuffer triggers;
    decoder->decode(to_bytes({th_word(0), cd_word(1, 1, 2, 2, 1)}, Evt21Order::little), cd, &triggers);
    ASSERT_EQ(cd.size(), 1u);
    EXPECT_EQ(cd[0].t, kCap * kPeriod + 1);
    EXPECT_EQ(decoder->stats().time_loops, loops < kCap ? 1u : 0u);
    EXPECT_EQ(decoder->stats().time_high_glitches, loops < kCap ? 0u : 1u);
    EXPECT_EQ(decoder->state().loops, kCap);
  }
}

}  // namespace
}  // namespace evloader
