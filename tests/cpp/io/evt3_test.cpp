// SPDX-License-Identifier: Apache-2.0
// Tests of the EVT 3.0 decoder and encoder: hand-built word sequences from formats.md §1.4, round trips
// cut at every byte, state save/restore, violations, garbage, and the real Gen4.1 recording.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/decoder.hpp"
#include "evloader/io/encoder.hpp"
#include "evloader/io/header.hpp"
#include "io/detail/codecs.hpp"
#include "support/event_gen.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

// ---- word builders (formats.md §1.4) ----
constexpr std::uint16_t addr_y(unsigned y, unsigned slave = 0) {
  return static_cast<std::uint16_t>((slave << 11) | y);
}
constexpr std::uint16_t em_addr_y(unsigned y) { return static_cast<std::uint16_t>(0x1000 | y); }
constexpr std::uint16_t addr_x(unsigned x, unsigned p) {
  return static_cast<std::uint16_t>(0x2000 | (p << 11) | x);
}
constexpr std::uint16_t vect_base_x(unsigned x, unsigned p) {
  return static_cast<std::uint16_t>(0x3000 | (p << 11) | x);
}
constexpr std::uint16_t vect_12(unsigned mask) { return static_cast<std::uint16_t>(0x4000 | mask); }
constexpr std::uint16_t vect_8(unsigned mask) { return static_cast<std::uint16_t>(0x5000 | mask); }
constexpr std::uint16_t time_low(unsigned v) { return static_cast<std::uint16_t>(0x6000 | v); }
constexpr std::uint16_t continued_4(unsigned v) { return static_cast<std::uint16_t>(0x7000 | v); }
constexpr std::uint16_t time_high(unsigned v) { return static_cast<std::uint16_t>(0x8000 | v); }
constexpr std::uint16_t ext_trigger(unsigned id, unsigned value) {
  return static_cast<std::uint16_t>(0xA000 | (id << 8) | value);
}
constexpr std::uint16_t others(unsigned subtype) { return static_cast<std::uint16_t>(0xE000 | subtype); }
constexpr std::uint16_t continued_12(unsigned v) { return static_cast<std::uint16_t>(0xF000 | v); }
constexpr std::uint16_t kLucidPadding = 0x9999;

std::vector<std::byte> to_bytes(const std::vector<std::uint16_t>& words) {
  std::vector<std::byte> out;
  for (std::uint16_t w : words) {
    out.push_back(static_cast<std::byte>(w & 0xFF));
    out.push_back(static_cast<std::byte>(w >> 8));
  }
  return out;
}

EventCD ev(int x, int y, int p, std::int64_t t) {
  return {static_cast<std::uint16_t>(x), static_cast<std::uint16_t>(y), static_cast<std::int16_t>(p), t};
}

DecoderOptions opts(int width = 1280, int height = 720, OnViolation on = OnViolation::skip) {
  DecoderOptions o;
  o.geometry = {width, height};
  o.on_violation = on;
  return o;
}

struct Decoded {
  std::vector<EventCD> cd;
  std::vector<EventExtTrigger> triggers;
  DecodeStats stats;
};

// Decodes `bytes` cut at the given positions (sorted, within [0, size]), then finish().
Decoded decode_cut(std::span<const std::byte> bytes, const std::vector<std::size_t>& cuts,
                   const DecoderOptions& o = opts()) {
  auto dec = detail::make_evt3_decoder(o);
  EventBuffer cd;
  TriggerBuffer tr;
  std::size_t pos = 0;
  for (std::size_t c : cuts) {
    dec->decode(bytes.subspan(pos, c - pos), cd, &tr, static_cast<std::int64_t>(pos));
    pos = c;
  }
  dec->decode(bytes.subspan(pos), cd, &tr, static_cast<std::int64_t>(pos));
  dec->finish();
  return {{cd.begin(), cd.end()}, {tr.begin(), tr.end()}, dec->stats()};
}

Decoded decode_words(const std::vector<std::uint16_t>& words, const DecoderOptions& o = opts()) {
  auto bytes = to_bytes(words);
  return decode_cut(bytes, {}, o);
}

std::vector<std::byte> encode(std::span<const EventCD> cd, std::span<const EventExtTrigger> tr = {}) {
  auto enc = detail::make_evt3_encoder();
  std::vector<std::byte> out;
  enc->encode(cd, tr, out);
  enc->finish(out);
  return out;
}

std::vector<std::uint16_t> to_words(const std::vector<std::byte>& bytes) {
  std::vector<std::uint16_t> out;
  for (std::size_t i = 0; i + 1 < bytes.size(); i += 2)
    out.push_back(static_cast<std::uint16_t>(std::to_integer<unsigned>(bytes[i]) |
                                             (std::to_integer<unsigned>(bytes[i + 1]) << 8)));
  return out;
}

// The FormatError message must name this byte offset.
void expect_raise_at(const std::vector<std::uint16_t>& words, std::int64_t stream_offset, std::int64_t byte,
                     const DecoderOptions& base = opts()) {
  DecoderOptions o = base;
  o.on_violation = OnViolation::raise;
  auto dec = detail::make_evt3_decoder(o);
  EventBuffer cd;
  TriggerBuffer tr;
  auto bytes = to_bytes(words);
  try {
    dec->decode(bytes, cd, &tr, stream_offset);
    FAIL() << "no FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("at byte " + std::to_string(byte) + ":"), std::string::npos)
        << e.what();
  }
}

// ---- single word types ----

TEST(Evt3Decoder, ReportsItsShape) {
  auto dec = detail::make_evt3_decoder(opts());
  EXPECT_EQ(dec->encoding(), RawEncoding::evt3);
  EXPECT_EQ(dec->word_size(), 2u);
  EXPECT_EQ(dec->max_events_per_word(), 12u);
  EXPECT_EQ(make_decoder(RawEncoding::evt3, opts())->encoding(), RawEncoding::evt3);
}

TEST(Evt3Decoder, DecodesTheFirstWordsOfTheRealFile) {
  // TIME_HIGH 2861, TIME_LOW 0, ADDR_Y 200, ADDR_X 874 p0 (SOURCES.md).
  auto d = decode_words({0x8b2d, 0x6000, 0x00c8, 0x236a});
  ASSERT_EQ(d.cd.size(), 1u);
  EXPECT_EQ(d.cd[0], ev(874, 200, 0, std::int64_t{2861} << 12));
  EXPECT_EQ(d.stats.violations(), 0u);
  EXPECT_EQ(d.stats.cd_events, 1u);
  EXPECT_EQ(d.stats.bytes, 8u);
}

TEST(Evt3Decoder, AddrXUsesCurrentRowTimeAndItsOwnPolarity) {
  auto d = decode_words({time_high(3), time_low(7), addr_y(12), addr_x(5, 1), addr_x(6, 0), time_low(9),
                         addr_y(13), addr_x(7, 1)});
  std::vector<EventCD> want = {ev(5, 12, 1, 3 * 4096 + 7), ev(6, 12, 0, 3 * 4096 + 7),
                               ev(7, 13, 1, 3 * 4096 + 9)};
  EXPECT_EQ(d.cd, want);
}

TEST(Evt3Decoder, AddrXDoesNotChangeVectorState) {
  auto d = decode_words({time_high(0), addr_y(1), vect_base_x(100, 1), addr_x(5, 0), vect_12(0x1)});
  std::vector<EventCD> want = {ev(5, 1, 0, 0), ev(100, 1, 1, 0)};
  EXPECT_EQ(d.cd, want);
}

TEST(Evt3Decoder, ExpandsVect12AndVect8AndAdvancesBaseX) {
  auto d = decode_words({time_high(1), time_low(2), addr_y(40), vect_base_x(100, 1), vect_12(0b100000000101),
                         vect_8(0x81), vect_12(0x1), vect_12(0x0), vect_8(0x2)});
  const std::int64_t t = 4096 + 2;
  std::vector<EventCD> want = {ev(100, 40, 1, t), ev(102, 40, 1, t), ev(111, 40, 1, t), ev(112, 40, 1, t),
                               ev(119, 40, 1, t), ev(120, 40, 1, t), ev(145, 40, 1, t)};
  EXPECT_EQ(d.cd, want);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt3Decoder, DecodesThirtyTwoPixelVectorGroupsAtEveryCut) {
  // VECT_BASE_X + VECT_12 + VECT_12 + VECT_8, the IMX636 pattern, with 15, 0, 6 and 32 pixels, a group
  // that runs past the width (checked per pixel) and base_x continuing after a group.
  std::vector<std::uint16_t> words = {
      time_high(0),         time_low(3),    addr_y(7),      vect_base_x(100, 1),
      vect_12(0xFFF),       vect_12(0x801), vect_8(0x80),   vect_base_x(200, 0),
      vect_12(0),           vect_12(0),     vect_8(0),      vect_12(0x1),
      vect_base_x(300, 1),  vect_12(0x421), vect_12(0x100), vect_8(0x81),
      vect_base_x(400, 0),  vect_12(0xFFF), vect_12(0xFFF), vect_8(0xFF),
      vect_base_x(1250, 1), vect_12(0x1),   vect_12(0),     vect_8(0x80),
      addr_x(5, 0)};
  std::vector<EventCD> want;
  for (int x = 100; x < 112; ++x) want.push_back(ev(x, 7, 1, 3));
  for (int x : {112, 123, 131}) want.push_back(ev(x, 7, 1, 3));
  want.push_back(ev(232, 7, 0, 3));
  for (int x : {300, 305, 310, 320, 324, 331}) want.push_back(ev(x, 7, 1, 3));
  for (int x = 400; x < 432; ++x) want.push_back(ev(x, 7, 0, 3));
  want.push_back(ev(1250, 7, 1, 3));  // 1250 + 31 = 1281 is past the width
  want.push_back(ev(5, 7, 0, 3));
  auto bytes = to_bytes(words);
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    auto d = decode_cut(bytes, {cut});
    ASSERT_EQ(d.cd, want) << "cut at " << cut;
    EXPECT_EQ(d.stats.out_of_bounds, 1u);
  }
  auto dec = detail::make_evt3_decoder(opts());
  EventBuffer cd;
  dec->decode(std::span(bytes).first(2 * 11), cd, nullptr);
  EXPECT_EQ(dec->state().base_x, 232);
}

TEST(Evt3Decoder, Vect8IgnoresItsUnusedHighBits) {
  auto d = decode_words({time_high(0), addr_y(0), vect_base_x(10, 0), vect_8(0xF01), vect_12(0x1)});
  std::vector<EventCD> want = {ev(10, 0, 0, 0), ev(18, 0, 0, 0)};
  EXPECT_EQ(d.cd, want);
}

TEST(Evt3Decoder, VectorBaseXAndPolarityPersistAcrossRowAndTimeChanges) {
  auto d = decode_words(
      {time_high(0), addr_y(3), vect_base_x(20, 1), vect_12(0x1), addr_y(4), time_low(5), vect_12(0x2)});
  std::vector<EventCD> want = {ev(20, 3, 1, 0), ev(33, 4, 1, 5)};
  EXPECT_EQ(d.cd, want);
}

TEST(Evt3Decoder, VectorsRunningPastTheWidthAreCheckedPerPixel) {
  auto d = decode_words({time_high(0), addr_y(5), vect_base_x(1270, 0), vect_12(0xFFF), vect_8(0xFF),
                         vect_base_x(1276, 1), vect_8(0x0F)});
  ASSERT_EQ(d.cd.size(), 14u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(d.cd[i], ev(1270 + i, 5, 0, 0));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(d.cd[10 + i], ev(1276 + i, 5, 1, 0));
  EXPECT_EQ(d.stats.out_of_bounds, 2u + 8u);
}

TEST(Evt3Decoder, UnknownGeometryLimitsVectorsToTheElevenBitRange) {
  auto d = decode_words({time_high(0), addr_y(2047), vect_base_x(2040, 1), vect_12(0xFFF)}, opts(0, 0));
  ASSERT_EQ(d.cd.size(), 8u);
  EXPECT_EQ(d.cd.back(), ev(2047, 2047, 1, 0));
  EXPECT_EQ(d.stats.out_of_bounds, 4u);
}

TEST(Evt3Decoder, LongRunsOfEmptyVectorsStayOutOfBounds) {
  std::vector<std::uint16_t> words = {time_high(0), addr_y(1), vect_base_x(0, 0)};
  words.insert(words.end(), 1000, vect_12(0));
  words.push_back(vect_12(0x1));
  auto d = decode_words(words, opts(0, 0));
  EXPECT_TRUE(d.cd.empty());
  EXPECT_EQ(d.stats.out_of_bounds, 1u);
}

TEST(Evt3Decoder, DropsCoordinatesOutsideTheGeometry) {
  auto d = decode_words({time_high(0), addr_y(719), addr_x(1279, 1), addr_x(1280, 1), addr_y(720),
                         addr_x(0, 0), vect_base_x(0, 0), vect_12(0x3)});
  std::vector<EventCD> want = {ev(1279, 719, 1, 0)};
  EXPECT_EQ(d.cd, want);
  EXPECT_EQ(d.stats.out_of_bounds, 4u);
}

TEST(Evt3Decoder, SlaveCameraRowsAreOutOfBounds) {
  for (int w : {1280, 0}) {
    auto d = decode_words({time_high(0), addr_y(100, 1), addr_x(10, 0), vect_base_x(0, 0), vect_12(0x7),
                           addr_y(100), addr_x(10, 0)},
                          opts(w, w == 0 ? 0 : 720));
    std::vector<EventCD> want = {ev(10, 100, 0, 0)};
    EXPECT_EQ(d.cd, want);
    EXPECT_EQ(d.stats.out_of_bounds, 4u);
  }
}

TEST(Evt3Decoder, TimeLowAndTimeHighBuildTheTimestamp) {
  auto d = decode_words({time_high(0xABC), addr_y(0), addr_x(1, 0), time_low(0xFFF), addr_x(2, 0),
                         time_high(0xABD), addr_x(3, 0), time_low(1), addr_x(4, 0)});
  const std::int64_t base = std::int64_t{0xABC} << 12;
  std::vector<EventCD> want = {ev(1, 0, 0, base), ev(2, 0, 0, base + 0xFFF), ev(3, 0, 0, base + 4096),
                               ev(4, 0, 0, base + 4097)};
  EXPECT_EQ(d.cd, want);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt3Decoder, RepeatedTimeHighResetsTimeLow) {
  // Gen4.1 sensors repeat TIME_HIGH every 16 µs: the time falls back to the base until the next TIME_LOW.
  auto d = decode_words({time_high(5), time_low(100), addr_y(0), addr_x(1, 0), time_high(5), addr_x(2, 0),
                         addr_x(3, 0), time_low(101), addr_x(4, 0)});
  std::vector<EventCD> want = {ev(1, 0, 0, 5 * 4096 + 100), ev(2, 0, 0, 5 * 4096), ev(3, 0, 0, 5 * 4096),
                               ev(4, 0, 0, 5 * 4096 + 101)};
  EXPECT_EQ(d.cd, want);
  EXPECT_EQ(d.stats.time_backwards, 1u);  // once for the jump, not per event
  EXPECT_EQ(d.stats.time_high_glitches, 0u);
}

TEST(Evt3Decoder, CountsTwentyFourBitLoops) {
  auto d =
      decode_words({time_high(4094), addr_y(0), addr_x(1, 0), time_high(4095), time_low(4095), addr_x(2, 0),
                    time_high(0), addr_x(3, 0), time_high(2047), time_high(4095), time_high(2047),
                    addr_x(4, 0), time_high(4000), time_high(1), time_low(3), addr_x(5, 0)});
  const std::int64_t loop = std::int64_t{1} << 24;
  std::vector<EventCD> want = {ev(1, 0, 0, 4094 * 4096), ev(2, 0, 0, loop - 1), ev(3, 0, 0, loop),
                               ev(4, 0, 0, 2 * loop + 2047 * 4096), ev(5, 0, 0, 3 * loop + 4096 + 3)};
  EXPECT_EQ(d.cd, want);
  EXPECT_EQ(d.stats.time_loops, 3u);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt3Decoder, SmallTimeHighDropIsAGlitchThatUsesTheNewValue) {
  auto d = decode_words(
      {time_high(100), addr_y(0), addr_x(1, 0), time_high(90), addr_x(2, 0), time_high(91), addr_x(3, 0)});
  std::vector<EventCD> want = {ev(1, 0, 0, 100 * 4096), ev(2, 0, 0, 90 * 4096), ev(3, 0, 0, 91 * 4096)};
  EXPECT_EQ(d.cd, want);
  EXPECT_EQ(d.stats.time_high_glitches, 1u);
  EXPECT_EQ(d.stats.time_backwards, 1u);
  EXPECT_EQ(d.stats.time_loops, 0u);

  // A drop of 2047 is still a glitch, 2048 is a loop (OpenEB HAL rule).
  auto edge = decode_words({time_high(4095), time_high(2048), time_high(4095), time_high(2047)});
  EXPECT_EQ(edge.stats.time_high_glitches, 1u);
  EXPECT_EQ(edge.stats.time_loops, 1u);
}

TEST(Evt3Decoder, TimeBackwardsComparesWithThePreviousEvent) {
  // 10 -> 5 (counted) -> 7 (above the previous event: not counted), and a time change without events
  // in between does not count.
  auto d = decode_words({time_high(0), addr_y(0), time_low(10), addr_x(1, 0), time_low(5), addr_x(2, 0),
                         time_low(7), addr_x(3, 0), time_low(1), time_low(8), addr_x(4, 0)});
  EXPECT_EQ(d.cd.size(), 4u);
  EXPECT_EQ(d.stats.time_backwards, 1u);
}

TEST(Evt3Decoder, IgnoresWordsBeforeTheFirstTimeHigh) {
  DecoderOptions o = opts();
  auto d = decode_words(
      {addr_y(3), addr_x(1, 0), vect_base_x(0, 0), vect_12(0x3), vect_8(0), time_low(5), ext_trigger(1, 1),
       kLucidPadding, others(0x14), time_high(7), addr_x(2, 0), addr_y(4), addr_x(3, 1)},
      o);
  std::vector<EventCD> want = {ev(3, 4, 1, 7 * 4096)};  // TIME_LOW and ADDR_Y before TIME_HIGH are ignored
  EXPECT_EQ(d.cd, want);
  EXPECT_TRUE(d.triggers.empty());
  // ADDR_X, VECT_12, VECT_8 and EXT_TRIGGER words before TIME_HIGH, then one ADDR_X before ADDR_Y.
  EXPECT_EQ(d.stats.before_time_base, 4u + 1u);
}

TEST(Evt3Decoder, DropsCdEventsBeforeTheFirstAddrY) {
  auto d = decode_words({time_high(1), addr_x(1, 0), vect_base_x(10, 1), vect_12(0b111), vect_8(0x1),
                         ext_trigger(2, 1), addr_y(9), addr_x(4, 0), vect_12(0x1)});
  std::vector<EventCD> want = {ev(4, 9, 0, 4096), ev(30, 9, 1, 4096)};
  EXPECT_EQ(d.cd, want);
  EXPECT_EQ(d.stats.before_time_base, 5u);
  EXPECT_EQ(d.stats.out_of_bounds, 0u);
  ASSERT_EQ(d.triggers.size(), 1u);  // triggers need no row
}

TEST(Evt3Decoder, DecodesExternalTriggers) {
  std::vector<std::uint16_t> words = {time_high(2), time_low(3),        ext_trigger(5, 1),
                                      time_low(4),  ext_trigger(15, 0), 0xA0FE /* unused bits 7..1 set */};
  auto d = decode_words(words);
  std::vector<EventExtTrigger> want = {{1, 2 * 4096 + 3, 5}, {0, 2 * 4096 + 4, 15}, {0, 2 * 4096 + 4, 0}};
  EXPECT_EQ(d.triggers, want);
  EXPECT_EQ(d.stats.trigger_events, 3u);

  DecoderOptions no = opts();
  no.decode_triggers = false;
  auto off = decode_words(words, no);
  EXPECT_TRUE(off.triggers.empty());
  EXPECT_EQ(off.stats.trigger_events, 0u);

  auto dec = detail::make_evt3_decoder(opts());
  EventBuffer cd;
  auto bytes = to_bytes(words);
  dec->decode(bytes, cd, nullptr);  // no trigger buffer: skipped
  EXPECT_EQ(dec->stats().trigger_events, 0u);
  EXPECT_EQ(dec->stats().violations(), 0u);
}

TEST(Evt3Decoder, SkipsLucidPaddingSilently) {
  auto d = decode_words({kLucidPadding, time_high(0), kLucidPadding, addr_y(1), kLucidPadding, addr_x(2, 1),
                         kLucidPadding, kLucidPadding, vect_base_x(10, 0), kLucidPadding, vect_12(1)});
  std::vector<EventCD> want = {ev(2, 1, 1, 0), ev(10, 1, 0, 0)};
  EXPECT_EQ(d.cd, want);
  EXPECT_EQ(d.stats.padding_words, 5u);  // the one before TIME_HIGH is simply ignored
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt3Decoder, SkipsImuLegacyAddrYAndOthers) {
  auto d = decode_words({time_high(0), addr_y(1), 0xD123, em_addr_y(5), others(0x016), continued_12(0xABC),
                         continued_12(0x123), continued_4(0x5), addr_x(2, 0)});
  std::vector<EventCD> want = {ev(2, 1, 0, 0)};
  EXPECT_EQ(d.cd, want);
  EXPECT_EQ(d.stats.padding_words, 6u);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt3Decoder, SkipsOthersSequenceSplitAcrossCallsAtEveryByte) {
  std::vector<std::uint16_t> words = {time_high(1),        addr_y(2),         addr_x(3, 0),     others(0x014),
                                      continued_12(0xFFF), continued_12(0x0), continued_4(0xF), addr_x(4, 1),
                                      vect_base_x(6, 1),   vect_12(0x3)};
  auto bytes = to_bytes(words);
  auto whole = decode_cut(bytes, {});
  ASSERT_EQ(whole.cd.size(), 4u);
  for (std::size_t a = 0; a <= bytes.size(); ++a) {
    for (std::size_t b = a; b <= bytes.size(); b += 3) {
      auto d = decode_cut(bytes, {a, b});
      EXPECT_EQ(d.cd, whole.cd) << a << " " << b;
      EXPECT_EQ(d.stats.padding_words, 4u);
      EXPECT_EQ(d.stats.violations(), 0u);
    }
  }
}

TEST(Evt3Decoder, CountsReservedWordTypes) {
  auto d = decode_words({time_high(0), addr_y(0), 0xB000, addr_x(1, 0), 0xCFFF});
  EXPECT_EQ(d.cd.size(), 1u);
  EXPECT_EQ(d.stats.unknown_words, 2u);
}

TEST(Evt3Decoder, KeepsAnOddByteForTheNextCall) {
  auto bytes = to_bytes({time_high(1), addr_y(2), addr_x(3, 1)});
  auto dec = detail::make_evt3_decoder(opts());
  EventBuffer cd;
  dec->decode(std::span(bytes).first(5), cd, nullptr, 0);
  EXPECT_EQ(dec->pending_bytes(), 1u);
  EXPECT_EQ(cd.size(), 0u);
  dec->decode(std::span(bytes).subspan(5), cd, nullptr, 5);
  EXPECT_EQ(dec->pending_bytes(), 0u);
  ASSERT_EQ(cd.size(), 1u);
  EXPECT_EQ(cd[0], ev(3, 2, 1, 4096));
}

TEST(Evt3Decoder, FinishCountsATruncatedByte) {
  auto bytes = to_bytes({time_high(1), addr_y(2), addr_x(3, 1)});
  auto dec = detail::make_evt3_decoder(opts());
  EventBuffer cd;
  dec->decode(std::span(bytes).first(5), cd, nullptr);
  dec->finish();
  EXPECT_EQ(dec->pending_bytes(), 0u);
  EXPECT_EQ(dec->stats().truncated_bytes, 1u);
  dec->finish();
  EXPECT_EQ(dec->stats().truncated_bytes, 1u);
}

TEST(Evt3Decoder, MetavisionTimeShift) {
  auto dec = detail::make_evt3_decoder(opts());
  EventBuffer cd;
  EXPECT_FALSE(dec->metavision_time_shift().has_value());
  auto bytes = to_bytes({addr_y(1), time_high(2861), time_high(2862)});
  dec->decode(bytes, cd, nullptr);
  EXPECT_EQ(dec->metavision_time_shift(), std::optional<std::int64_t>(std::int64_t{2860} << 12));
  EXPECT_EQ(dec->state().first_time_high, 2861);

  dec->reset();
  EXPECT_FALSE(dec->metavision_time_shift().has_value());
  auto zero = to_bytes({time_high(0)});
  dec->decode(zero, cd, nullptr);
  EXPECT_EQ(dec->metavision_time_shift(), std::optional<std::int64_t>(0));
}

TEST(Evt3Decoder, ResetReturnsToTheStartOfStreamButKeepsStats) {
  auto bytes = to_bytes({time_high(1), addr_y(2), addr_x(3, 1)});
  auto dec = detail::make_evt3_decoder(opts());
  EventBuffer cd;
  dec->decode(std::span(bytes).first(5), cd, nullptr);
  dec->reset();
  EXPECT_EQ(dec->pending_bytes(), 0u);
  EXPECT_EQ(dec->state(), DecoderState{});
  auto more = to_bytes({addr_x(3, 1)});  // no time base any more: dropped
  dec->decode(more, cd, nullptr);
  EXPECT_EQ(cd.size(), 0u);
  EXPECT_EQ(dec->stats().before_time_base, 1u);
  EXPECT_EQ(dec->stats().bytes, 7u);
}

TEST(Evt3Decoder, StateHoldsTheDocumentedFields) {
  auto bytes = to_bytes({time_high(4095), time_high(3), time_low(9), addr_y(17), vect_base_x(30, 1),
                         vect_12(0x1), addr_x(5, 0)});
  auto dec = detail::make_evt3_decoder(opts());
  EventBuffer cd;
  dec->decode(bytes, cd, nullptr);
  const DecoderState s = dec->state();
  EXPECT_EQ(s.loops, 1);
  EXPECT_EQ(s.time_base, (std::int64_t{1} << 24) + 3 * 4096);
  EXPECT_EQ(s.time, s.time_base + 9);
  EXPECT_EQ(s.last_event_t, s.time);
  EXPECT_EQ(s.first_time_high, 4095);
  EXPECT_EQ(s.y, 17);
  EXPECT_EQ(s.base_x, 42);
  EXPECT_EQ(s.polarity, 1);
  EXPECT_EQ(s.has_time_base, 1);
  EXPECT_EQ(s.y_valid, 1);
  EXPECT_EQ(s.skip_words, 0);
}

// ---- violations with OnViolation::raise ----

TEST(Evt3Decoder, RaiseNamesTheByteOffsetOfTheOffendingWord) {
  // Word indices of the offending word: offset = stream_offset + 2 * index.
  expect_raise_at({addr_y(0), addr_x(1, 0), time_high(0)}, 1000, 1002);                   // before time base
  expect_raise_at({time_high(0), addr_x(1, 0)}, 0, 2);                                    // before ADDR_Y
  expect_raise_at({time_high(0), addr_y(0), addr_x(1, 0), addr_x(1280, 0)}, 10, 16);      // x out of bounds
  expect_raise_at({time_high(0), addr_y(720), addr_x(1, 0)}, 0, 4);                       // y out of bounds
  expect_raise_at({time_high(0), addr_y(5, 1), addr_x(1, 0)}, 0, 4);                      // slave row
  expect_raise_at({time_high(0), addr_y(0), vect_base_x(1275, 0), vect_12(0xFF)}, 0, 6);  // vector past width
  expect_raise_at({time_high(0), addr_y(0), 0xC000}, 4, 8);                               // reserved type
  expect_raise_at({time_high(9), time_high(8)}, 0, 2);                                    // glitch
  expect_raise_at(
      {time_high(0), addr_y(0), time_low(9), addr_x(1, 0), time_low(8), vect_base_x(0, 0), vect_12(0x1)}, 0,
      12);  // time backwards: the first event word at the lower time
  expect_raise_at({time_high(0), addr_y(0), time_low(9), addr_x(1, 0), time_low(8), vect_base_x(0, 0),
                   vect_12(0), vect_12(0x2), vect_8(0x1)},
                  0, 14);  // the same inside a 32-pixel group
  expect_raise_at({time_high(0), addr_y(0), vect_base_x(1270, 0), vect_12(0), vect_12(0x1), vect_8(0)}, 0,
                  8);  // a group past the width
}

TEST(Evt3Decoder, RaiseOffsetOfAWordSplitAcrossCalls) {
  DecoderOptions o = opts();
  o.on_violation = OnViolation::raise;
  auto dec = detail::make_evt3_decoder(o);
  EventBuffer cd;
  auto bytes = to_bytes({time_high(0), addr_y(0), addr_x(1300, 0)});
  dec->decode(std::span(bytes).first(5), cd, nullptr, 100);
  try {
    dec->decode(std::span(bytes).subspan(5), cd, nullptr, 105);
    FAIL() << "no FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("at byte 104:"), std::string::npos) << e.what();
  }
  EXPECT_EQ(dec->stats().out_of_bounds, 1u);
}

TEST(Evt3Decoder, RaiseAcceptsCleanStreamsAndPadding) {
  DecoderOptions o = opts();
  o.on_violation = OnViolation::raise;
  auto d = decode_words({kLucidPadding, time_high(0), addr_y(1), addr_x(2, 1), others(1), continued_12(0),
                         continued_12(0), continued_4(0), time_high(4095), time_high(0), addr_x(3, 0)},
                        o);
  EXPECT_EQ(d.cd.size(), 2u);
  EXPECT_EQ(d.stats.time_loops, 1u);
}

TEST(Evt3Decoder, RaiseAndSkipDecodeCleanStreamsIdentically) {
  auto events = test::random_events(5000, 11);
  auto bytes = encode(events);
  DecoderOptions o = opts();
  o.on_violation = OnViolation::raise;
  auto raised = decode_cut(bytes, {bytes.size() / 3}, o);
  auto skipped = decode_cut(bytes, {bytes.size() / 3});
  EXPECT_EQ(raised.cd, events);
  EXPECT_EQ(skipped.cd, events);
}

// ---- random garbage ----

TEST(Evt3Decoder, RandomGarbageNeverCrashes) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::byte> bytes(1 + rng() % 3000);
    for (auto& b : bytes) b = static_cast<std::byte>(rng());
    // Bias some rounds towards the word types that emit events.
    if (round % 2 == 0)
      for (std::size_t i = 1; i < bytes.size(); i += 2)
        bytes[i] = static_cast<std::byte>((std::to_integer<unsigned>(bytes[i]) & 0x0F) | ((rng() % 9) << 4));
    for (OnViolation on : {OnViolation::skip, OnViolation::raise}) {
      for (int geometry : {0, 1}) {
        auto dec = detail::make_evt3_decoder(geometry ? opts(640, 480, on) : opts(0, 0, on));
        EventBuffer cd;
        TriggerBuffer tr;
        std::size_t pos = 0;
        try {
          while (pos < bytes.size()) {
            const std::size_t len = std::min<std::size_t>(bytes.size() - pos, 1 + rng() % 257);
            dec->decode(std::span(bytes).subspan(pos, len), cd, &tr, static_cast<std::int64_t>(pos));
            pos += len;
          }
          dec->finish();
        } catch (const FormatError&) {
          EXPECT_EQ(on, OnViolation::raise);
        }
        const int w = geometry ? 640 : 2048, h = geometry ? 480 : 2048;
        for (const EventCD& e : cd) {
          ASSERT_LT(e.x, w);
          ASSERT_LT(e.y, h);
          ASSERT_TRUE(e.p == 0 || e.p == 1);
          ASSERT_GE(e.t, 0);
        }
        EXPECT_EQ(dec->stats().cd_events, cd.size());
      }
    }
  }
}

// ---- state save / restore ----

TEST(Evt3Decoder, RestoredDecoderContinuesExactlyLikeTheOriginal) {
  test::StreamShape shape;
  shape.max_gap_us = 3000;  // several TIME_HIGH changes
  auto events = test::random_events(3000, 5, shape);
  auto triggers = test::random_triggers(50, 6, events.front().t, events.back().t);
  auto bytes = encode(events, triggers);
  // Sprinkle OTHERS sequences and padding so that cuts also fall inside them.
  auto words = to_words(bytes);
  std::vector<std::uint16_t> mixed;
  for (std::size_t i = 0; i < words.size(); ++i) {
    mixed.push_back(words[i]);
    if (i % 97 == 50)
      mixed.insert(mixed.end(), {others(0x14), continued_12(1), continued_12(2), continued_4(3)});
    if (i % 89 == 7) mixed.push_back(kLucidPadding);
  }
  bytes = to_bytes(mixed);
  auto whole = decode_cut(bytes, {});
  ASSERT_EQ(whole.cd, events);

  for (std::size_t cut = 0; cut <= bytes.size(); cut += 2 * 37) {
    auto first = detail::make_evt3_decoder(opts());
    EventBuffer cd_a;
    TriggerBuffer tr_a;
    first->decode(std::span(bytes).first(cut), cd_a, &tr_a, 0);
    ASSERT_EQ(first->pending_bytes(), 0u);
    const DecoderState saved = first->state();

    auto second = detail::make_evt3_decoder(opts());
    second->restore(saved);
    EXPECT_EQ(second->state(), saved);
    EventBuffer cd_b;
    TriggerBuffer tr_b;
    second->decode(std::span(bytes).subspan(cut), cd_b, &tr_b, static_cast<std::int64_t>(cut));
    EventBuffer cd_c;
    TriggerBuffer tr_c;
    first->decode(std::span(bytes).subspan(cut), cd_c, &tr_c, static_cast<std::int64_t>(cut));
    ASSERT_EQ(std::vector<EventCD>(cd_b.begin(), cd_b.end()), std::vector<EventCD>(cd_c.begin(), cd_c.end()))
        << cut;
    ASSERT_EQ(std::vector<EventExtTrigger>(tr_b.begin(), tr_b.end()),
              std::vector<EventExtTrigger>(tr_c.begin(), tr_c.end()));
    EXPECT_EQ(second->state(), first->state());
    EXPECT_EQ(second->metavision_time_shift(), first->metavision_time_shift());
  }
}

TEST(Evt3Decoder, RestoreDropsAPendingByteAndToleratesWildState) {
  auto dec = detail::make_evt3_decoder(opts());
  EventBuffer cd;
  auto bytes = to_bytes({time_high(1), addr_y(2)});
  dec->decode(std::span(bytes).first(3), cd, nullptr);
  EXPECT_EQ(dec->pending_bytes(), 1u);
  DecoderState wild;
  wild.has_time_base = 1;
  wild.y_valid = 1;
  wild.y = -5;
  wild.base_x = -100;
  wild.polarity = 7;
  dec->restore(wild);
  EXPECT_EQ(dec->pending_bytes(), 0u);
  auto more = to_bytes({addr_x(1, 0), vect_12(0xFFF), vect_base_x(0, 0), addr_y(3), vect_12(0x1)});
  dec->decode(more, cd, nullptr);
  ASSERT_EQ(cd.size(), 1u);
  EXPECT_EQ(cd[0], ev(0, 3, 0, 0));
}

// ---- encoder ----

TEST(Evt3Encoder, WritesTheExpectedWords) {
  std::vector<EventCD> events = {ev(874, 200, 0, 2861 * 4096),    ev(10, 201, 1, 2861 * 4096 + 5),
                                 ev(11, 201, 1, 2861 * 4096 + 5), ev(13, 201, 1, 2861 * 4096 + 5),
                                 ev(30, 201, 1, 2861 * 4096 + 5), ev(7, 201, 0, 2861 * 4096 + 5),
                                 ev(8, 201, 0, 2861 * 4096 + 5)};
  std::vector<EventExtTrigger> triggers = {{1, 2862 * 4096, 3}};
  auto words = to_words(encode(events, triggers));
  std::vector<std::uint16_t> want = {time_high(2861), addr_y(200), addr_x(874, 0), time_low(5), addr_y(201),
                                     // run x = 10, 11, 13, 30 at p1: base 10, masks 0b1011 and bit 8 of 22
                                     // (30 - 22 = 8 needs bit 8: the last word is a VECT_12)
                                     vect_base_x(10, 1), vect_12(0b1011), vect_12(1 << 8),
                                     // a pair of OFF pixels: two ADDR_X are as short as a vector
                                     addr_x(7, 0), addr_x(8, 0), time_high(2862), ext_trigger(3, 1)};
  EXPECT_EQ(words, want);
  auto d = decode_words(words);
  EXPECT_EQ(d.cd, events);
  std::vector<EventExtTrigger> tr_want = {{1, 2862 * 4096, 3}};
  EXPECT_EQ(d.triggers, tr_want);
}

TEST(Evt3Encoder, UsesVect8ForAShortLastWordAndAddrXForPairs) {
  std::vector<EventCD> events;
  for (int x = 100; x < 132; ++x) events.push_back(ev(x, 9, 1, 0));  // 32 pixels: 12 + 12 + 8
  events.push_back(ev(500, 9, 1, 0));
  events.push_back(ev(501, 9, 1, 0));  // a pair: cheaper as two ADDR_X
  auto words = to_words(encode(events));
  std::vector<std::uint16_t> want = {time_high(0),   addr_y(9),    vect_base_x(100, 1), vect_12(0xFFF),
                                     vect_12(0xFFF), vect_8(0xFF), addr_x(500, 1),      addr_x(501, 1)};
  EXPECT_EQ(words, want);
  EXPECT_EQ(decode_words(words).cd, events);
}

TEST(Evt3Encoder, RejectsBadInput) {
  auto bad = [](std::vector<EventCD> cd, std::vector<EventExtTrigger> tr = {}) {
    auto enc = detail::make_evt3_encoder();
    std::vector<std::byte> out;
    EXPECT_THROW(enc->encode(cd, tr, out), ConfigError);
    EXPECT_TRUE(out.empty());
  };
  bad({ev(0, 0, 0, 5), ev(0, 0, 0, 4)});
  bad({ev(0, 0, 0, -1)});
  bad({ev(2048, 0, 0, 1)});
  bad({ev(0, 2048, 0, 1)});
  bad({ev(0, 0, 2, 1)});
  bad({ev(0, 0, -1, 1)});
  bad({}, {{1, 5, 16}});
  bad({}, {{1, 5, -1}});
  bad({}, {{2, 5, 0}});
  bad({}, {{1, 5, 0}, {1, 4, 0}});
  bad({}, {{1, -5, 0}});

  auto enc = detail::make_evt3_encoder();
  std::vector<std::byte> out;
  std::vector<EventCD> first = {ev(1, 1, 1, 100)};
  enc->encode(first, {}, out);
  std::vector<EventCD> earlier = {ev(1, 1, 1, 99)};
  EXPECT_THROW(enc->encode(earlier, {}, out), ConfigError);
  std::vector<EventExtTrigger> earlier_trigger = {{1, 99, 0}};
  EXPECT_THROW(enc->encode({}, earlier_trigger, out), ConfigError);
  std::vector<EventCD> same = {ev(2, 1, 1, 100)};
  EXPECT_NO_THROW(enc->encode(same, {}, out));
  enc->finish(out);
  std::vector<EventCD> want = {ev(1, 1, 1, 100), ev(2, 1, 1, 100)};
  EXPECT_EQ(decode_words(to_words(out)).cd, want);
}

TEST(Evt3Encoder, VectorsSaveWordsOnBurstyStreams) {
  auto events = test::random_events(20000, 3);
  auto bytes = encode(events);
  auto d = decode_cut(bytes, {});
  EXPECT_EQ(d.cd, events);
  // Fewer words than events: vectors and shared ADDR_Y/TIME words pay off on this shape.
  EXPECT_LT(bytes.size() / 2, events.size());
}

// ---- round trips ----

TEST(Evt3RoundTrip, ShortStreamCutAtEveryBytePosition) {
  test::StreamShape shape;
  shape.max_gap_us = 5000;
  auto events = test::random_events(400, 21, shape);
  auto triggers = test::random_triggers(20, 22, events.front().t, events.back().t);
  auto bytes = encode(events, triggers);
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    auto d = decode_cut(bytes, {cut});
    ASSERT_EQ(d.cd, events) << "cut at " << cut;
    ASSERT_EQ(d.triggers, triggers) << "cut at " << cut;
    ASSERT_EQ(d.stats.violations(), 0u);
  }
}

TEST(Evt3RoundTrip, ShortStreamOneByteAtATime) {
  auto events = test::random_events(500, 31);
  auto triggers = test::random_triggers(10, 32, events.front().t, events.back().t);
  auto bytes = encode(events, triggers);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < bytes.size(); ++i) cuts.push_back(i);
  auto d = decode_cut(bytes, cuts);
  EXPECT_EQ(d.cd, events);
  EXPECT_EQ(d.triggers, triggers);
  EXPECT_EQ(d.stats.violations(), 0u);
  EXPECT_EQ(d.stats.bytes, bytes.size());
}

TEST(Evt3RoundTrip, LongStreamRandomCuts) {
  test::StreamShape shape;
  shape.max_gap_us = 200;
  auto events = test::random_events(200000, 41, shape);
  auto triggers = test::random_triggers(300, 42, events.front().t, events.back().t);
  auto bytes = encode(events, triggers);
  std::mt19937 rng(43);
  for (int round = 0; round < 3; ++round) {
    std::vector<std::size_t> cuts;
    for (std::size_t pos = 0; pos < bytes.size();) {
      pos += 1 + rng() % (round == 0 ? 7 : 100000);
      if (pos < bytes.size()) cuts.push_back(pos);
    }
    auto d = decode_cut(bytes, cuts);
    ASSERT_EQ(d.cd, events);
    ASSERT_EQ(d.triggers, triggers);
    EXPECT_EQ(d.stats.violations(), 0u);
  }
}

TEST(Evt3RoundTrip, EncoderCallsMaySplitRunsAnywhere) {
  auto events = test::random_events(3000, 51);
  auto triggers = test::random_triggers(30, 52, events.front().t, events.back().t);
  auto enc = detail::make_evt3_encoder();
  std::vector<std::byte> out;
  std::mt19937 rng(53);
  std::size_t i = 0, j = 0;
  while (i < events.size() || j < triggers.size()) {
    std::size_t ni = std::min(events.size(), i + rng() % 50);
    // Triggers up to the last CD t of this piece (a trigger at that same t goes after the piece's CD events).
    const std::int64_t t_end = ni < events.size() ? events[ni].t : INT64_MAX;
    std::size_t nj = j;
    while (nj < triggers.size() && triggers[nj].t < t_end) ++nj;
    enc->encode(std::span(events).subspan(i, ni - i), std::span(triggers).subspan(j, nj - j), out);
    i = ni;
    j = nj;
  }
  enc->finish(out);
  auto d = decode_cut(out, {});
  EXPECT_EQ(d.cd, events);
  EXPECT_EQ(d.triggers, triggers);
  EXPECT_EQ(out, encode(events, triggers));  // same words as one call
}

TEST(Evt3RoundTrip, CrossesTheTwentyFourBitLoopManyTimes) {
  const std::int64_t loop = std::int64_t{1} << 24;
  std::vector<EventCD> events;
  std::mt19937_64 rng(61);
  std::int64_t t = loop - 100;
  for (int i = 0; i < 4000; ++i) {
    events.push_back(
        ev(static_cast<int>(rng() % 1280), static_cast<int>(rng() % 720), static_cast<int>(rng() % 2), t));
    // Mostly small steps, sometimes a multi-second gap or a gap of several whole loops.
    const auto r = rng() % 100;
    t += r < 90   ? static_cast<std::int64_t>(rng() % 3000)
         : r < 98 ? static_cast<std::int64_t>(rng() % (loop / 2))
                  : 3 * loop + static_cast<std::int64_t>(rng() % loop);
  }
  auto triggers = test::random_triggers(100, 62, events.front().t, events.back().t);
  auto bytes = encode(events, triggers);
  auto d = decode_cut(bytes, {bytes.size() / 2 + 1});
  EXPECT_EQ(d.cd, events);
  EXPECT_EQ(d.triggers, triggers);
  EXPECT_EQ(d.stats.violations(), 0u);
  EXPECT_GE(d.stats.time_loops, static_cast<std::uint64_t>((events.back().t >> 24)));
}

TEST(Evt3RoundTrip, StreamStartingLateAndExactlyAtLoopBoundaries) {
  const std::int64_t loop = std::int64_t{1} << 24;
  std::vector<EventCD> events = {ev(1, 1, 0, 5 * loop + 123), ev(2, 2, 1, 6 * loop - 1),
                                 ev(3, 3, 0, 6 * loop), ev(4, 4, 1, 6 * loop + (loop / 2)),
                                 ev(5, 5, 0, 7 * loop + (loop / 2))};
  auto d = decode_cut(encode(events), {});
  EXPECT_EQ(d.cd, events);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(Evt3RoundTrip, DuplicateAndUnorderedEventsWithinATimestamp) {
  std::vector<EventCD> events = {ev(5, 1, 1, 10), ev(5, 1, 1, 10), ev(4, 1, 1, 10), ev(6, 1, 1, 10),
                                 ev(7, 1, 1, 10), ev(8, 1, 1, 10), ev(3, 0, 0, 10), ev(700, 1, 1, 10)};
  auto d = decode_cut(encode(events), {});
  EXPECT_EQ(d.cd, events);
}

// ---- the real recording ----

TEST(Evt3RealData, ExpelliarmusSampleMatchesTheReferenceNumbers) {
  const auto dir = test::real_data_dir();
  if (dir.empty()) GTEST_SKIP() << "shared/data/real not found";
  const auto path = dir / "evt3_gen41_expelliarmus.raw";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
  const FileHeader header = read_header(path);
  std::ifstream in(path, std::ios::binary);
  std::vector<char> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(file.size(), header.data_offset);
  std::span<const std::byte> body(reinterpret_cast<const std::byte*>(file.data()) + header.data_offset,
                                  file.size() - header.data_offset);

  auto check = [&](const Decoded& d) {
    ASSERT_EQ(d.cd.size(), 219596u);
    EXPECT_EQ(d.cd.front(), ev(874, 200, 0, std::int64_t{2861} << 12));
    EXPECT_EQ(d.cd.front().t, 11718656);
    EXPECT_EQ(d.cd.back().t, 11727457);
    std::int64_t sx = 0, sy = 0, sp = 0, st = 0;
    for (const EventCD& e : d.cd) {
      sx += e.x;
      sy += e.y;
      sp += e.p;
      st += e.t;
    }
    EXPECT_EQ(sx, 159113225);
    EXPECT_EQ(sy, 85638051);
    EXPECT_EQ(sp, 115532);
    EXPECT_EQ(st, 2574324900467);
    EXPECT_EQ(d.stats.violations(), 0u) << d.stats.summary();
    EXPECT_EQ(d.stats.time_loops, 0u);
  };
  auto whole = decode_cut(body, {});
  check(whole);

  std::mt19937 rng(71);
  std::vector<std::size_t> cuts;
  for (std::size_t pos = 0; pos < body.size();) {
    pos += 1 + rng() % 5000;
    if (pos < body.size()) cuts.push_back(pos);
  }
  auto cut = decode_cut(body, cuts);
  check(cut);
  EXPECT_EQ(cut.cd, whole.cd);

  auto dec = detail::make_evt3_decoder(opts());
  EventBuffer cd;
  dec->decode(body.first(64), cd, nullptr, static_cast<std::int64_t>(header.data_offset));
  EXPECT_EQ(dec->metavision_time_shift(), std::optional<std::int64_t>(std::int64_t{2860} << 12));

  // Re-encoding keeps every event and its order.
  auto again = decode_cut(encode(whole.cd), {});
  EXPECT_EQ(again.cd, whole.cd);
}

// Fuzz regressions evt3/state-max and evt3/state-min: a damaged time index can hand restore() any state;
// time_base = INT64_MAX made TIME_LOW's addition overflow (negative timestamps, undefined behaviour).
// States are clamped to what decoding can produce.
TEST(Evt3Decoder, RestoreClampsADamagedState) {
  const auto bytes = to_bytes({time_low(5), addr_y(2), addr_x(1, 1), ext_trigger(1, 1), time_high(0),
                               addr_x(2, 0), time_high(4095), time_low(7), addr_x(3, 1)});
  for (const bool high : {true, false}) {
    DecoderState wild;
    wild.time_base = wild.time = wild.first_time_high =
        high ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
    wild.loops = high ? std::numeric_limits<std::int32_t>::max() : std::numeric_limits<std::int32_t>::min();
    wild.has_time_base = 1;
    auto decoder = detail::make_evt3_decoder(opts());
    decoder->restore(wild);
    EventBuffer cd;
    TriggerBuffer triggers;
    decoder->decode(bytes, cd, &triggers);
    ASSERT_EQ(cd.size(), 3u);
    ASSERT_EQ(triggers.size(), 1u);
    for (const EventCD& e : cd) {
      EXPECT_GE(e.t, 0);
      EXPECT_LT(e.t, std::int64_t{1} << 56);
    }
    EXPECT_GE(triggers[0].t, 0);
    if (auto shift = decoder->metavision_time_shift()) {
      EXPECT_LE(*shift, std::int64_t{4094} << 12);
    }
  }
}

// The loop count is saved as an int32 and stops at INT32_MAX: one more wrap counts as a glitch instead of
// wrapping the saved count to a negative number (timestamps going back by 2^55 us after a resume).
TEST(Evt3Decoder, LoopCountStopsAtItsCap) {
  constexpr std::int32_t kCap = std::numeric_limits<std::int32_t>::max();
  for (const std::int32_t loops : {kCap - 1, kCap}) {
    DecoderState s;
    s.has_time_base = 1;
    s.first_time_high = 0;
    s.loops = loops;
    s.time_base = s.time = (std::int64_t{loops} << 24) + (std::int64_t{4095} << 12);
    auto decoder = detail::make_evt3_decoder(opts());
    decoder->restore(s);
    EventBuffer cd;
    decoder->decode(to_bytes({time_high(0), addr_y(1), addr_x(1, 1)}), cd, nullptr);
    ASSERT_EQ(cd.size(), 1u);
    EXPECT_EQ(cd[0].t, std::int64_t{kCap} << 24);
    EXPECT_EQ(decoder->stats().time_loops, loops < kCap ? 1u : 0u);
    EXPECT_EQ(decoder->stats().time_high_glitches, loops < kCap ? 0u : 1u);
    EXPECT_EQ(decoder->state().loops, kCap);
  }
}

}  // namespace
}  // namespace evloader
