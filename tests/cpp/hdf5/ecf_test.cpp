// SPDX-License-Identifier: Apache-2.0
// ECF codec: hand-built chunks from the spec (formats.md §3.2), round trips in every mode, the
// reference encoder's mode choice, and refusal of malformed chunks (including a mutation fuzz loop).
#include "evloader/io/ecf.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "evloader/core/error.hpp"
#include "support/event_gen.hpp"

namespace evloader {
namespace {

using ecf::Mode;

// Little-endian byte builder for hand-made chunks.
struct Bytes {
  std::vector<std::byte> data;
  Bytes& u8(unsigned v) {
    data.push_back(static_cast<std::byte>(v));
    return *this;
  }
  Bytes& u16(unsigned v) { return u8(v & 0xFF).u8((v >> 8) & 0xFF); }
  Bytes& u32(std::uint32_t v) { return u16(v & 0xFFFF).u16(v >> 16); }
  Bytes& u64(std::uint64_t v) {
    return u32(static_cast<std::uint32_t>(v)).u32(static_cast<std::uint32_t>(v >> 32));
  }
};

// Decode through an exactly sized heap copy and an exactly sized output, so that ASan sees any overrun.
std::vector<EventCD> decode_exact(std::span<const std::byte> chunk) {
  auto input = std::make_unique<std::byte[]>(chunk.size());
  if (!chunk.empty()) std::memcpy(input.get(), chunk.data(), chunk.size());
  std::span<const std::byte> in(input.get(), chunk.size());
  const std::size_t n = ecf::read_header(in).event_count;
  auto out = std::make_unique<EventCD[]>(n ? n : 1);
  const std::size_t got = ecf::decode(in, out.get(), n);
  return {out.get(), out.get() + got};
}

EventCD ev(int x, int y, int p, std::int64_t t) {
  return {static_cast<std::uint16_t>(x), static_cast<std::uint16_t>(y), static_cast<std::int16_t>(p), t};
}

TEST(EcfCodec, DecodesHandBuiltMaskedXChunk) {
  Bytes b;
  b.u32(5u << 2).u64(100);
  // t: two events at 100, then a big delta of 20 (nibbles 4, 1) and three events at 120.
  b.u8(0x02).u8(0xF4).u8(0xF1).u8(0x03);
  // y: five events on row 7.
  b.u16((7 << 5) | 5);
  // x: 10 with x+1 and x+3 flagged, then 50 with x+5 flagged.
  b.u16((10 << 5) | 0b10100).u16((50 << 5) | 0b00001);
  // p: two ON, three OFF.
  b.u8(0x80 | 2).u8(3);
  const auto events = decode_exact(b.data);
  const std::vector<EventCD> expected = {ev(10, 7, 1, 100), ev(11, 7, 1, 100), ev(13, 7, 0, 120),
                                         ev(50, 7, 0, 120), ev(55, 7, 0, 120)};
  EXPECT_EQ(events, expected);
}

TEST(EcfCodec, DecodesHandBuiltPackedXpChunk) {
  Bytes b;
  b.u32((5u << 2) | 1).u64(7).u8(0x05);   // five events at t = 7
  b.u16((3 << 5) | 2).u16((4 << 5) | 3);  // rows 3, 3, 4, 4, 4
  // 12-bit values v = x << 1 | p, four per three u16 words; the fifth group is padded with zeros.
  const unsigned v[8] = {
      (100u << 1) | 1, (2047u << 1) | 0, (0u << 1) | 1, (640u << 1) | 0, (5u << 1) | 1, 0, 0, 0};
  for (int g = 0; g < 2; ++g) {
    const unsigned* w = v + 4 * g;
    b.u16((w[0] << 4) | (w[1] & 0xF)).u16(((w[1] >> 4) << 8) | (w[2] & 0xFF)).u16(((w[2] >> 8) << 12) | w[3]);
  }
  const std::vector<EventCD> expected = {ev(100, 3, 1, 7), ev(2047, 3, 0, 7), ev(0, 4, 1, 7),
                                         ev(640, 4, 0, 7), ev(5, 4, 1, 7)};
  EXPECT_EQ(decode_exact(b.data), expected);
}

TEST(EcfCodec, DecodesHandBuiltPackedYxpChunk) {
  Bytes b;
  b.u32((3u << 2) | 2).u64(1'000'000'000'000ull).u8(0x01).u8(0x11).u8(0x11);  // t0, then +1 twice
  // 24-bit values v = y << 12 | x << 1 | p; one group of four (the fourth is padding).
  const std::uint32_t v[4] = {(719u << 12) | (1279u << 1) | 1, (0u << 12) | (0u << 1) | 0,
                              (360u << 12) | (42u << 1) | 1, 0xABCDEF};
  b.u32((v[0] << 8) | (v[1] & 0xFF))
      .u32(((v[1] >> 8) << 16) | (v[2] & 0xFFFF))
      .u32(((v[2] >> 16) << 24) | v[3]);
  const std::vector<EventCD> expected = {ev(1279, 719, 1, 1'000'000'000'000), ev(0, 0, 0, 1'000'000'000'001),
                                         ev(42, 360, 1, 1'000'000'000'002)};
  EXPECT_EQ(decode_exact(b.data), expected);
}

TEST(EcfCodec, DecodesLongRunsWithSixteenBitCounts) {
  Bytes b;
  b.u32(300u << 2).u64(5);
  b.u8(0x0F).u16(300);                                           // 300 events at t = 5
  b.u16((9 << 5) | 31).u16(300);                                 // 300 events on row 9
  for (int i = 0; i < 50; ++i) b.u16(((i * 6) << 5) | 0b11111);  // x = 0..299, six per word
  b.u8(0x80 | 127).u16(200).u8(100);                             // 200 ON, 100 OFF
  const auto events = decode_exact(b.data);
  ASSERT_EQ(events.size(), 300u);
  for (int i = 0; i < 300; ++i)
    EXPECT_EQ(events[static_cast<std::size_t>(i)], ev(i, 9, i < 200 ? 1 : 0, 5)) << i;
}

TEST(EcfCodec, IgnoresMaskBitsPastTheLastEvent) {
  // The reference encoder may flag pixels past the chunk's end in its last x word: not events.
  Bytes b;
  b.u32(2u << 2).u64(0).u8(0x02).u16((1 << 5) | 2).u16((30 << 5) | 0b11111).u8(2);
  EXPECT_EQ(decode_exact(b.data), (std::vector<EventCD>{ev(30, 1, 0, 0), ev(31, 1, 0, 0)}));
}

TEST(EcfCodec, RoundTripsEveryModeAndSize) {
  for (std::size_t n : {0u, 1u, 2u, 3u, 4u, 5u, 15u, 16u, 17u, 31u, 127u, 128u, 1000u, 16384u, 65535u}) {
    test::StreamShape shape;
    shape.width = 2048;
    shape.height = 2048;
    shape.t_start = -5000;  // negative and positive times
    shape.max_gap_us = 100000;
    const auto events = test::random_events(n, static_cast<std::uint32_t>(n) + 7, shape);
    for (auto mode : {std::optional<Mode>{}, std::optional<Mode>{Mode::masked_x},
                      std::optional<Mode>{Mode::pack_xp}, std::optional<Mode>{Mode::pack_yxp}}) {
      std::vector<std::byte> chunk;
      ecf::encode(events, chunk, mode);
      ASSERT_LE(chunk.size(), ecf::max_encoded_size(n));
      const auto header = ecf::read_header(chunk);
      EXPECT_EQ(header.event_count, n);
      if (mode) {
        EXPECT_EQ(header.mode, *mode);
      }
      EXPECT_EQ(decode_exact(chunk), events) << "n=" << n << " mode=" << (mode ? int(*mode) : -1);
    }
  }
}

TEST(EcfCodec, RoundTripsHugeTimeJumps) {
  const std::vector<EventCD> events = {ev(1, 2, 0, INT64_MIN + 1), ev(3, 4, 1, -1), ev(5, 6, 0, 0),
                                       ev(7, 8, 1, INT64_MAX - 16), ev(9, 10, 0, INT64_MAX)};
  for (Mode mode : {Mode::masked_x, Mode::pack_xp, Mode::pack_yxp}) {
    std::vector<std::byte> chunk;
    ecf::encode(events, chunk, mode);
    EXPECT_EQ(decode_exact(chunk), events);
  }
}

TEST(EcfCodec, ChoosesModesLikeTheReferenceEncoder) {
  // Distinct rows: packed y/x/p.
  std::vector<EventCD> rows;
  for (int i = 0; i < 100; ++i) rows.push_back(ev(i * 7 % 640, i, i & 1, i));
  EXPECT_EQ(ecf::choose_mode(rows), Mode::pack_yxp);
  // One row, scattered x: packed x/p.
  std::vector<EventCD> scattered;
  for (int i = 0; i < 100; ++i) scattered.push_back(ev((i * 37) % 640, 5, i & 1, i));
  EXPECT_EQ(ecf::choose_mode(scattered), Mode::pack_xp);
  // One row, runs of neighbouring x: masked x.
  std::vector<EventCD> runs;
  for (int i = 0; i < 100; ++i) runs.push_back(ev(i, 5, 0, i));
  EXPECT_EQ(ecf::choose_mode(runs), Mode::masked_x);
  // The sample is the first quarter: repeated rows later do not count.
  std::vector<EventCD> late = rows;
  for (int i = 0; i < 300; ++i) late.push_back(ev(i, 3, 0, 200 + i));
  EXPECT_EQ(ecf::choose_mode(late), Mode::pack_yxp);
  EXPECT_EQ(ecf::choose_mode({}), Mode::pack_yxp);  // as the reference: nothing refutes packing
}

TEST(EcfCodec, EncoderRejectsWhatItCannotStore) {
  std::vector<std::byte> chunk;
  EXPECT_THROW(ecf::encode(std::vector<EventCD>{ev(2048, 0, 0, 0)}, chunk), ConfigError);
  EXPECT_THROW(ecf::encode(std::vector<EventCD>{ev(0, 2048, 0, 0)}, chunk), ConfigError);
  EXPECT_THROW(ecf::encode(std::vector<EventCD>{ev(0, 0, 2, 0)}, chunk), ConfigError);
  EXPECT_THROW(ecf::encode(std::vector<EventCD>{ev(0, 0, 0, 5), ev(0, 0, 0, 4)}, chunk), ConfigError);
  EXPECT_THROW(ecf::encode(std::vector<EventCD>(65536, ev(0, 0, 0, 0)), chunk), ConfigError);
}

void expect_format_error(std::span<const std::byte> chunk, const std::string& fragment) {
  try {
    decode_exact(chunk);
    ADD_FAILURE() << "no error, expected: " << fragment;
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(EcfCodec, RefusesMalformedHeaders) {
  expect_format_error(Bytes().u32(4).u32(0).data, "shorter than its 12-byte header");
  expect_format_error(Bytes().u32((1u << 2) | 3).u64(0).u8(1).data, "both packing flags");
  expect_format_error(Bytes().u32(65536u << 2).u64(0).data, "above 65535");
  // More events than the caller has room for.
  auto chunk = Bytes().u32(4u << 2).u64(0).u8(4).u16((1 << 5) | 4).u16(0).u16(0).u16(0).data;
  std::vector<EventCD> out(3);
  EXPECT_THROW(ecf::decode(chunk, out.data(), out.size()), FormatError);
}

TEST(EcfCodec, RefusesInconsistentStreams) {
  expect_format_error(Bytes().u32(3u << 2).u64(0).u8(0x05).data, "timestamp run longer");
  expect_format_error(Bytes().u32(3u << 2).u64(0).u8(0x02).data, "timestamp stream truncated");
  expect_format_error(Bytes().u32(3u << 2).u64(0).u8(0x0F).u8(3).data, "run count truncated");
  Bytes nibbles;
  nibbles.u32(1u << 2).u64(0);
  for (int i = 0; i < 17; ++i) nibbles.u8(0xF1);
  nibbles.u8(0x01);
  expect_format_error(nibbles.data, "longer than 16 nibbles");
  expect_format_error(Bytes().u32(2u << 2).u64(0).u8(0x02).u16((1 << 5) | 3).data, "y run longer");
  expect_format_error(Bytes().u32(2u << 2).u64(0).u8(0x02).u16((1 << 5) | 2).data, "x stream truncated");
  expect_format_error(
      Bytes().u32(2u << 2).u64(0).u8(0x02).u16((1 << 5) | 2).u16(5 << 5).u16(6 << 5).u8(3).data,
      "polarity run longer");
  expect_format_error(Bytes().u32((5u << 2) | 1).u64(0).u8(0x05).u16((1 << 5) | 5).u16(0).u16(0).u16(0).data,
                      "packed x/p stream truncated");
  expect_format_error(Bytes().u32((1u << 2) | 2).u64(0).u8(0x01).u32(0).u32(0).data,
                      "packed y/x/p stream truncated");
}

TEST(EcfCodec, EveryTruncationOfAChunkIsRefused) {
  const auto events = test::random_events(300, 11);
  for (Mode mode : {Mode::masked_x, Mode::pack_xp, Mode::pack_yxp}) {
    std::vector<std::byte> chunk;
    ecf::encode(events, chunk, mode);
    for (std::size_t len = 0; len < chunk.size(); ++len)
      EXPECT_THROW(decode_exact({chunk.data(), len}), FormatError) << "mode " << int(mode) << " len " << len;
  }
}

// Random byte flips, insertions, deletions, header edits: every outcome is a FormatError or a decode of
// exactly the announced number of events, never a crash or an out-of-bounds access (ASan build).
TEST(EcfCodec, SurvivesMutationFuzzing) {
  std::vector<std::vector<std::byte>> seeds;
  for (Mode mode : {Mode::masked_x, Mode::pack_xp, Mode::pack_yxp}) {
    std::vector<std::byte> chunk;
    ecf::encode(test::random_events(700, 3 + static_cast<unsigned>(mode)), chunk, mode);
    seeds.push_back(chunk);
  }
  std::mt19937 rng(2024);
  std::size_t decoded = 0, refused = 0;
  for (int iter = 0; iter < 6000; ++iter) {
    std::vector<std::byte> chunk = seeds[static_cast<std::size_t>(iter) % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      const std::size_t at = rng() % chunk.size();
      switch (rng() % 5) {
        case 0: chunk[at] = static_cast<std::byte>(rng()); break;
        case 1: chunk[at] ^= static_cast<std::byte>(1u << (rng() % 8)); break;
        case 2: chunk.resize(at); break;
        case 3:
          chunk.insert(chunk.begin() + static_cast<std::ptrdiff_t>(at), static_cast<std::byte>(rng()));
          break;
        default: {  // header: event count or mode bits
          if (chunk.size() >= 4) {
            std::uint32_t info;
            std::memcpy(&info, chunk.data(), 4);
            info = (rng() & 1) ? (info ^ (1u << (rng() % 32))) : (info & ~3u) | (rng() % 4);
            std::memcpy(chunk.data(), &info, 4);
          }
        }
      }
      if (chunk.empty()) break;
    }
    try {
      const auto events = decode_exact(chunk);
      EXPECT_EQ(events.size(), ecf::read_header(chunk).event_count);
      ++decoded;
    } catch (const FormatError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 1000u);
  EXPECT_GT(decoded, 10u);
}

}  // namespace
}  // namespace evloader
