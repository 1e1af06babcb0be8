// SPDX-License-Identifier: Apache-2.0
// DAT files: header variants, record bit layouts, timestamp unwrapping, writer round trips, real samples.
#include "evloader/io/dat.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "support/event_gen.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

namespace fs = std::filesystem;

fs::path temp_file(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return test::temp_dir() / (std::string(info->test_suite_name()) + "_" + info->name() + "_" + name);
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// One on-disk record: u32 t then u32 packed word, both little-endian (built byte by byte, not by memcpy, so
// the test does not share the decoder's assumptions).
std::string record(std::uint32_t t, std::uint32_t w) {
  std::string r;
  for (int i = 0; i < 4; ++i) r.push_back(static_cast<char>((t >> (8 * i)) & 0xFF));
  for (int i = 0; i < 4; ++i) r.push_back(static_cast<char>((w >> (8 * i)) & 0xFF));
  return r;
}
std::string cd_record(std::uint32_t t, std::uint32_t x, std::uint32_t y, std::uint32_t p) {
  return record(t, x | (y << 14) | (p << 28));
}

std::span<const std::byte> as_span(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

struct Decoded {
  std::vector<EventCD> events;
  DecodeStats stats;
};

// Whole-file decode in small, record-aligned chunks so that the unwrapping state crosses calls.
Decoded decode_file(const fs::path& path, std::size_t chunk_records = 4096) {
  const DatInfo info = read_dat_info(path);
  const std::string bytes = read_file(path);
  Decoded d;
  EventBuffer buf;
  DatDecodeState state;
  const std::size_t body = info.record_count * 8;
  for (std::size_t pos = 0; pos < body; pos += chunk_records * 8) {
    const std::size_t n = std::min(chunk_records * 8, body - pos);
    decode_dat_cd(as_span(bytes).subspan(info.data_offset + pos, n), info.geometry, state, buf, d.stats);
  }
  d.events.assign(buf.begin(), buf.end());
  return d;
}

struct Reference {
  std::size_t count;
  std::int64_t first_t, last_t;
  std::uint64_t sum_x, sum_y, sum_p, sum_t;
};

void expect_reference(const Decoded& d, const Reference& ref) {
  ASSERT_EQ(d.events.size(), ref.count);
  EXPECT_EQ(d.events.front().t, ref.first_t);
  EXPECT_EQ(d.events.back().t, ref.last_t);
  std::uint64_t sx = 0, sy = 0, sp = 0, st = 0;
  for (const EventCD& e : d.events) {
    sx += e.x;
    sy += e.y;
    sp += static_cast<std::uint64_t>(e.p);
    st += static_cast<std::uint64_t>(e.t);
  }
  EXPECT_EQ(sx, ref.sum_x);
  EXPECT_EQ(sy, ref.sum_y);
  EXPECT_EQ(sp, ref.sum_p);
  EXPECT_EQ(st, ref.sum_t);
  EXPECT_EQ(d.stats.cd_events, ref.count);
  EXPECT_EQ(d.stats.violations(), 0u);
}

// ---- real samples (SOURCES.md) ----------------------------------------------------------------------------

TEST(DatRealData, NcarsOldHeaderWithoutGeometry) {
  const fs::path dir = test::real_data_dir();
  if (dir.empty()) GTEST_SKIP() << "real data folder not found";
  const fs::path path = dir / "ncars_sample_td.dat";
  const DatInfo info = read_dat_info(path);
  EXPECT_EQ(info.type, DatEventType::event2d);
  EXPECT_FALSE(info.geometry.known());
  EXPECT_EQ(info.geometry, Geometry{});
  EXPECT_FALSE(info.header.has_end_marker);
  ASSERT_EQ(info.header.lines.size(), 3u);
  EXPECT_EQ(info.header.lines[0].first, "Data");  // "% Data file containing N9Chronocam7Event2dE events."
  EXPECT_EQ(info.header.get("Version"), "2");
  EXPECT_EQ(info.header.get("Date"), "2017-10-31 11:29:21");
  EXPECT_EQ(info.data_offset, 0x5Du);  // header of 0x5B bytes, then type and size bytes
  EXPECT_EQ(info.record_count, 2009u);
  EXPECT_EQ(info.trailing_bytes, 0u);
  expect_reference(decode_file(path, 100), {2009, 0, 99952, 93457, 40463, 1350, 98196680});
}

TEST(DatRealData, FaerySdkHeaderMatchesReferenceNumbers) {
  const fs::path dir = test::real_data_dir();
  if (dir.empty()) GTEST_SKIP() << "real data folder not found";
  const fs::path path = dir / "evt2_gen3_faery_cd.dat";
  const DatInfo info = read_dat_info(path);
  EXPECT_EQ(info.type, DatEventType::cd);
  EXPECT_EQ(info.geometry, (Geometry{640, 480}));
  EXPECT_TRUE(info.header.has_end_marker);
  EXPECT_EQ(info.header.get("Version"), "2");
  EXPECT_EQ(info.record_count, 521252u);
  EXPECT_EQ(info.trailing_bytes, 0u);
  EXPECT_EQ(info.data_offset + info.record_count * 8, fs::file_size(path));
  expect_reference(decode_file(path),
                   {521252, 913716224, 913812095, 128979953, 216346680, 185861, 476298094656969});
}

// ---- read_dat_info ----------------------------------------------------------------------------------------

TEST(DatInfoTest, NoHeaderMeansEvent2dRecordsFromByteZero) {
  const fs::path path = temp_file("x.dat");
  write_file(path, cd_record(5, 1, 2, 1) + cd_record(7, 3, 4, 0));
  const DatInfo info = read_dat_info(path);
  EXPECT_EQ(info.type, DatEventType::event2d);
  EXPECT_EQ(info.data_offset, 0u);
  EXPECT_EQ(info.record_count, 2u);
  EXPECT_TRUE(info.header.lines.empty());
  const Decoded d = decode_file(path);
  ASSERT_EQ(d.events.size(), 2u);
  EXPECT_EQ(d.events[0], (EventCD{1, 2, 1, 5}));
  EXPECT_EQ(d.events[1], (EventCD{3, 4, 0, 7}));
}

TEST(DatInfoTest, EmptyFileHasNoEvents) {
  const fs::path path = temp_file("x.dat");
  write_file(path, "");
  const DatInfo info = read_dat_info(path);
  EXPECT_EQ(info.record_count, 0u);
  EXPECT_EQ(info.trailing_bytes, 0u);
  EXPECT_EQ(info.type, DatEventType::event2d);
}

TEST(DatInfoTest, HeaderOnlyFileHasNoEvents) {
  const fs::path path = temp_file("x.dat");
  const std::string header = "% Height 240\n% Width 304\n% end\n";
  write_file(path, header);
  const DatInfo info = read_dat_info(path);
  EXPECT_EQ(info.record_count, 0u);
  EXPECT_EQ(info.trailing_bytes, 0u);
  EXPECT_EQ(info.data_offset, header.size());
  EXPECT_EQ(info.geometry, (Geometry{304, 240}));
}

TEST(DatInfoTest, FileCutAfterTypeByte) {
  const fs::path path = temp_file("x.dat");
  write_file(path, "% end\n\x0c");
  const DatInfo info = read_dat_info(path);
  EXPECT_EQ(info.type, DatEventType::cd);
  EXPECT_EQ(info.record_count, 0u);
  write_file(path, "% end\n\x63");
  EXPECT_THROW((void)read_dat_info(path), FormatError);  // the type byte alone is still checked
}

TEST(DatInfoTest, ParsesHeightAndWidthOfLegacyPythonHeader) {
  const fs::path path = temp_file("x.dat");
  const std::string header =
      "% Data file containing Event2D events.\n% Version 2\n% Date 2019-01-01 00:00:00\n% Height 720\n"
      "% Width 1280\n";
  write_file(path, header + std::string("\x0c\x08", 2) + cd_record(1, 1279, 719, 1) + "abc");
  const DatInfo info = read_dat_info(path);
  EXPECT_EQ(info.geometry, (Geometry{1280, 720}));
  EXPECT_EQ(info.type, DatEventType::cd);
  EXPECT_EQ(info.data_offset, header.size() + 2);
  EXPECT_EQ(info.record_count, 1u);
  EXPECT_EQ(info.trailing_bytes, 3u);  // a truncated last record is reported, not an error
}

TEST(DatInfoTest, TriggerTypeAccepted) {
  const fs::path path = temp_file("x.dat");
  write_file(path, "% end\n" + std::string("\x0e\x08", 2) + record(1, 0));
  const DatInfo info = read_dat_info(path);
  EXPECT_EQ(info.type, DatEventType::ext_trigger);
  EXPECT_EQ(info.record_count, 1u);
}

TEST(DatInfoTest, RejectsRecordSizeOtherThan8) {
  const fs::path path = temp_file("x.dat");
  const std::string header = "% Version 2\n% end\n";
  write_file(path, header + std::string("\x0c\x24", 2) + std::string(72, '\0'));
  try {
    (void)read_dat_info(path);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("at byte " + std::to_string(header.size() + 1)), std::string::npos) << msg;
  }
}

TEST(DatInfoTest, RejectsUnknownEventType) {
  const fs::path path = temp_file("x.dat");
  const std::string header = "% Version 2\n";
  write_file(path, header + std::string("\x28\x24", 2) + std::string(36, '\0'));  // optical flow (40)
  try {
    (void)read_dat_info(path);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("at byte " + std::to_string(header.size())), std::string::npos) << msg;
    EXPECT_NE(msg.find("40"), std::string::npos) << msg;
  }
}

TEST(DatInfoTest, RejectsInvalidGeometryValue) {
  const fs::path path = temp_file("x.dat");
  write_file(path, "% Height abc\n% Width 640\n% end\n" + std::string("\x0c\x08", 2));
  EXPECT_THROW((void)read_dat_info(path), FormatError);
}

TEST(DatInfoTest, DirectoryAndMissingFileAreIoErrors) {
  EXPECT_THROW((void)read_dat_info(test::temp_dir()), IoError);
  EXPECT_THROW((void)read_dat_info(test::temp_dir() / "does_not_exist.dat"), IoError);
}

// ---- decoding ---------------------------------------------------------------------------------------------

TEST(DatDecode, CdBitLayout) {
  // x = bits 13..0, y = bits 27..14, p = bit 28 only (bits 29..31 are ignored).
  const std::string bytes = cd_record(100, 16383, 16383, 1) + record(101, 0xE0000000u | 5u | (9u << 14)) +
                            record(102, 0xF0000000u | (1u << 13) | (1u << 27));
  EventBuffer out;
  DatDecodeState state;
  DecodeStats stats;
  decode_dat_cd(as_span(bytes), Geometry{}, state, out, stats);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], (EventCD{16383, 16383, 1, 100}));
  EXPECT_EQ(out[1], (EventCD{5, 9, 0, 101}));
  EXPECT_EQ(out[2], (EventCD{8192, 8192, 1, 102}));
  EXPECT_EQ(stats.cd_events, 3u);
  EXPECT_EQ(stats.bytes, 24u);
  EXPECT_EQ(stats.violations(), 0u);
}

TEST(DatDecode, TriggerBitLayout) {
  // p = bits 3..0, id = bits 31..26, bits 25..4 padding.
  const std::string bytes = record(7, 1u | (63u << 26) | 0x03FFFFF0u) + record(9, 0u | (5u << 26));
  TriggerBuffer out;
  DatDecodeState state;
  DecodeStats stats;
  decode_dat_triggers(as_span(bytes), state, out, stats);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (EventExtTrigger{1, 7, 63}));
  EXPECT_EQ(out[1], (EventExtTrigger{0, 9, 5}));
  EXPECT_EQ(stats.trigger_events, 2u);
}

TEST(DatDecode, UnwrapsThirtyTwoBitTimestampsAcrossCalls) {
  const std::string a = cd_record(0xFFFFFF00u, 1, 1, 0) + cd_record(0xFFFFFFFFu, 1, 1, 0);
  const std::string b = cd_record(0x10u, 1, 1, 0) + cd_record(0x20u, 1, 1, 0);
  const std::string c = cd_record(0xFFFFFFF0u, 1, 1, 0) + cd_record(0x5u, 1, 1, 0);
  EventBuffer out;
  DatDecodeState state;
  DecodeStats stats;
  decode_dat_cd(as_span(a), Geometry{}, state, out, stats);
  decode_dat_cd(as_span(b), Geometry{}, state, out, stats);
  decode_dat_cd(as_span(c), Geometry{}, state, out, stats);
  const std::int64_t wrap = std::int64_t{1} << 32;
  ASSERT_EQ(out.size(), 6u);
  EXPECT_EQ(out[0].t, 0xFFFFFF00);
  EXPECT_EQ(out[1].t, 0xFFFFFFFF);
  EXPECT_EQ(out[2].t, wrap + 0x10);
  EXPECT_EQ(out[3].t, wrap + 0x20);
  EXPECT_EQ(out[4].t, wrap + 0xFFFFFFF0);
  EXPECT_EQ(out[5].t, 2 * wrap + 0x5);
  EXPECT_EQ(stats.time_loops, 2u);
  EXPECT_EQ(stats.time_backwards, 0u);
  EXPECT_EQ(state.high, 2 * wrap);
}

TEST(DatDecode, SmallBackwardJumpIsCountedNotUnwrapped) {
  const std::string bytes = cd_record(1000, 1, 1, 0) + cd_record(400, 1, 1, 0) +
                            cd_record(0x80000400u, 1, 1, 0) +
                            cd_record(0x400u, 1, 1, 0);  // drop of exactly 2^31: not a wrap
  EventBuffer out;
  DatDecodeState state;
  DecodeStats stats;
  decode_dat_cd(as_span(bytes), Geometry{}, state, out, stats);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[1].t, 400);
  EXPECT_EQ(out[3].t, 0x400);
  EXPECT_EQ(stats.time_backwards, 2u);
  EXPECT_EQ(stats.time_loops, 0u);
}

TEST(DatDecode, DropsOutOfBoundsOnlyWhenGeometryKnown) {
  const std::string bytes = cd_record(1, 639, 479, 1) + cd_record(2, 640, 0, 1) + cd_record(3, 0, 480, 0) +
                            cd_record(4, 16383, 16383, 0) + cd_record(5, 0, 0, 0);
  {
    EventBuffer out;
    DatDecodeState state;
    DecodeStats stats;
    decode_dat_cd(as_span(bytes), Geometry{640, 480}, state, out, stats);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0], (EventCD{639, 479, 1, 1}));
    EXPECT_EQ(out[1], (EventCD{0, 0, 0, 5}));
    EXPECT_EQ(stats.out_of_bounds, 3u);
    EXPECT_EQ(stats.cd_events, 2u);
  }
  {
    EventBuffer out;
    DatDecodeState state;
    DecodeStats stats;
    decode_dat_cd(as_span(bytes), Geometry{}, state, out, stats);
    EXPECT_EQ(out.size(), 5u);
    EXPECT_EQ(stats.out_of_bounds, 0u);
  }
}

TEST(DatDecode, PartialRecordCountedAsTruncated) {
  const std::string bytes = cd_record(1, 1, 1, 1) + "abc";
  EventBuffer out;
  DatDecodeState state;
  DecodeStats stats;
  decode_dat_cd(as_span(bytes), Geometry{}, state, out, stats);
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(stats.truncated_bytes, 3u);
}

// A plain reading of formats.md §2.2, independent of the optimised decoder.
Decoded reference_decode(const std::string& bytes, const Geometry& g) {
  Decoded d;
  std::int64_t high = 0, last_raw = -1, last_t = INT64_MIN;
  for (std::size_t pos = 0; pos + 8 <= bytes.size(); pos += 8) {
    std::uint32_t t = 0, w = 0;
    for (int i = 3; i >= 0; --i)
      t = (t << 8) | static_cast<unsigned char>(bytes[pos + static_cast<std::size_t>(i)]);
    for (int i = 3; i >= 0; --i)
      w = (w << 8) | static_cast<unsigned char>(bytes[pos + 4 + static_cast<std::size_t>(i)]);
    if (last_raw >= 0 && last_raw - std::int64_t{t} > (std::int64_t{1} << 31)) {
      high += std::int64_t{1} << 32;
      ++d.stats.time_loops;
    }
    last_raw = t;
    const EventCD e{static_cast<std::uint16_t>(w & 0x3FFF), static_cast<std::uint16_t>((w >> 14) & 0x3FFF),
                    static_cast<std::int16_t>((w >> 28) & 1), high + t};
    if (g.known() && (e.x >= g.width || e.y >= g.height)) {
      ++d.stats.out_of_bounds;
      continue;
    }
    if (e.t < last_t) ++d.stats.time_backwards;
    last_t = e.t;
    d.events.push_back(e);
  }
  return d;
}

TEST(DatDecode, MatchesReferenceDecoderOnIrregularStreams) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 40; ++round) {
    const Geometry g = round % 3 == 0
                           ? Geometry{}
                           : Geometry{1 + static_cast<int>(rng() % 2000), 1 + static_cast<int>(rng() % 2000)};
    const std::size_t n = rng() % 5000;
    std::string bytes;
    std::uint32_t t = rng();
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t r = rng() % 1000;
      if (r == 0)
        t -= rng() % 100;  // small disorder
      else if (r == 1)
        t += 0x90000000u;  // jumps that look like wraps (or not)
      else
        t += rng() % 3;
      const std::uint32_t x = rng() % 2100, y = rng() % 2100;
      bytes += record(t, x | (y << 14) | ((rng() & 0xF) << 28));
    }
    bytes.append(rng() % 8, 'z');
    const Decoded expected = reference_decode(bytes, g);
    EventBuffer out;
    out.push_back(EventCD{9, 9, 9, 9});  // decoding appends
    DatDecodeState state;
    DecodeStats stats;
    for (std::size_t pos = 0; pos < bytes.size();) {
      const std::size_t len = std::min<std::size_t>(bytes.size() - pos, 8 * (rng() % 3000));
      if (len == 0 && bytes.size() - pos < 8) {
        decode_dat_cd(as_span(bytes).subspan(pos), g, state, out, stats);
        break;
      }
      decode_dat_cd(as_span(bytes).subspan(pos, len), g, state, out, stats);
      pos += len;
    }
    ASSERT_EQ(out.size(), expected.events.size() + 1) << "round " << round;
    EXPECT_EQ(out[0], (EventCD{9, 9, 9, 9}));
    EXPECT_TRUE(std::equal(expected.events.begin(), expected.events.end(), out.begin() + 1))
        << "round " << round;
    EXPECT_EQ(stats.out_of_bounds, expected.stats.out_of_bounds) << "round " << round;
    EXPECT_EQ(stats.time_backwards, expected.stats.time_backwards) << "round " << round;
    EXPECT_EQ(stats.time_loops, expected.stats.time_loops) << "round " << round;
    EXPECT_EQ(stats.cd_events, expected.events.size());
    EXPECT_EQ(stats.bytes, bytes.size());
    EXPECT_EQ(stats.truncated_bytes, bytes.size() % 8);
  }
}

// ---- writer -----------------------------------------------------------------------------------------------

TEST(DatWriterTest, WritesSdkHeaderLayout) {
  const fs::path path = temp_file("x.dat");
  {
    DatWriter w(path, Geometry{640, 480});
    const std::vector<EventCD> ev = {{3, 4, 1, 0x1234}};
    w.write(ev);
  }
  const std::string bytes = read_file(path);
  const std::regex header(
      "% Height 480\n% Version 2\n% Width 640\n% date \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\n% end\n");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(bytes, m, header, std::regex_constants::match_continuous)) << bytes;
  const std::string rest = bytes.substr(static_cast<std::size_t>(m.length(0)));
  EXPECT_EQ(rest, std::string("\x0c\x08", 2) + cd_record(0x1234, 3, 4, 1));
}

TEST(DatWriterTest, UnknownGeometryOmitsHeightAndWidth) {
  const fs::path path = temp_file("x.dat");
  { DatWriter w(path, Geometry{}, DatEventType::event2d); }
  const DatInfo info = read_dat_info(path);
  EXPECT_FALSE(info.geometry.known());
  EXPECT_FALSE(info.header.get("Height").has_value());
  EXPECT_EQ(info.type, DatEventType::event2d);
  EXPECT_EQ(info.record_count, 0u);
}

TEST(DatWriterTest, RoundTripsRandomEvents) {
  const fs::path path = temp_file("x.dat");
  test::StreamShape shape;
  shape.width = 640;
  shape.height = 480;
  shape.t_start = 123456;
  const auto events = test::random_events(20000, 42, shape);
  {
    DatWriter w(path, Geometry{640, 480});
    w.write(std::span(events).first(7000));  // several calls, one larger than the staging block
    w.write(std::span(events).subspan(7000));
    w.close();
  }
  const Decoded d = decode_file(path, 1000);
  EXPECT_EQ(d.events, events);
  EXPECT_EQ(d.stats.violations(), 0u);
}

TEST(DatWriterTest, RoundTripsTimestampsCrossingTwoPow32) {
  const fs::path path = temp_file("x.dat");
  test::StreamShape shape;
  shape.width = 304;
  shape.height = 240;
  shape.t_start = (std::int64_t{1} << 32) - 5000;
  shape.max_gap_us = 2000;
  auto events = test::random_events(5000, 7, shape);
  // A forward jump to just below 2^33 (representable: the 32-bit value rises) so that the stream then crosses
  // a second wrap.
  const std::int64_t shift = ((std::int64_t{1} << 33) - 1000) - events[4000].t;
  for (std::size_t i = 4000; i < events.size(); ++i) events[i].t += shift;
  ASSERT_GT(events.back().t, std::int64_t{1} << 33);
  {
    DatWriter w(path, Geometry{304, 240});
    w.write(events);
  }
  const Decoded d = decode_file(path, 333);
  EXPECT_EQ(d.events, events);
  EXPECT_EQ(d.stats.time_loops, 2u);
}

TEST(DatWriterTest, RoundTripsTriggers) {
  const fs::path path = temp_file("x.dat");
  auto triggers = test::random_triggers(3000, 3, 0, (std::int64_t{1} << 32) + 1000000, 63);
  {
    DatWriter w(path, Geometry{1280, 720}, DatEventType::ext_trigger);
    w.write(triggers);
  }
  const DatInfo info = read_dat_info(path);
  ASSERT_EQ(info.type, DatEventType::ext_trigger);
  ASSERT_EQ(info.record_count, triggers.size());
  const std::string bytes = read_file(path);
  TriggerBuffer out;
  DatDecodeState state;
  DecodeStats stats;
  decode_dat_triggers(as_span(bytes).subspan(info.data_offset), state, out, stats);
  EXPECT_EQ(std::vector<EventExtTrigger>(out.begin(), out.end()), triggers);
  EXPECT_EQ(stats.time_loops, 1u);
}

TEST(DatWriterTest, RejectsInvalidEventsWithoutWriting) {
  const fs::path path = temp_file("x.dat");
  DatWriter w(path, Geometry{640, 480});
  const std::vector<std::vector<EventCD>> bad = {
      {{640, 0, 0, 1}},                  // outside the declared geometry
      {{0, 480, 0, 1}},                  //
      {{0, 0, 2, 1}},                    // p not 0/1
      {{0, 0, -1, 1}},                   //
      {{0, 0, 1, -1}},                   // negative t
      {{1, 1, 1, 1}, {16384, 0, 0, 2}},  // beyond 14 bits, after a good event
  };
  for (const auto& ev : bad) EXPECT_THROW(w.write(ev), ConfigError);
  const std::vector<EventExtTrigger> trig = {{1, 5, 0}};
  EXPECT_THROW(w.write(trig), ConfigError);  // triggers into a CD file
  w.close();
  EXPECT_EQ(read_dat_info(path).record_count, 0u);

  DatWriter unbounded(temp_file("y.dat"), Geometry{});
  const std::vector<EventCD> wide = {{16383, 16383, 1, 0}};
  EXPECT_NO_THROW(unbounded.write(wide));
  const std::vector<EventCD> too_wide = {{16384, 0, 1, 0}};
  EXPECT_THROW(unbounded.write(too_wide), ConfigError);
}

TEST(DatWriterTest, RejectsCdInTriggerFileAndBadTriggers) {
  DatWriter w(temp_file("x.dat"), Geometry{}, DatEventType::ext_trigger);
  const std::vector<EventCD> ev = {{1, 1, 1, 1}};
  EXPECT_THROW(w.write(ev), ConfigError);
  const std::vector<EventExtTrigger> bad_id = {{1, 5, 64}};
  const std::vector<EventExtTrigger> bad_p = {{2, 5, 1}};
  const std::vector<EventExtTrigger> bad_t = {{1, -5, 1}};
  EXPECT_THROW(w.write(bad_id), ConfigError);
  EXPECT_THROW(w.write(bad_p), ConfigError);
  EXPECT_THROW(w.write(bad_t), ConfigError);
}

TEST(DatWriterTest, UncreatableFileIsIoError) {
  EXPECT_THROW(DatWriter(test::temp_dir() / "no_such_dir" / "x.dat", Geometry{}), IoError);
  EXPECT_THROW(DatWriter(test::temp_dir(), Geometry{}), IoError);
}

TEST(DatWriterTest, CloseIsIdempotentAndWriteAfterCloseFails) {
  const fs::path path = temp_file("x.dat");
  DatWriter w(path, Geometry{10, 10});
  const std::vector<EventCD> ev = {{1, 2, 1, 3}};
  w.write(ev);
  w.close();
  EXPECT_NO_THROW(w.close());
  EXPECT_THROW(w.write(ev), ConfigError);
  EXPECT_EQ(read_dat_info(path).record_count, 1u);
}

TEST(DatWriterTest, RejectsOversizedGeometry) {
  EXPECT_THROW(DatWriter(temp_file("x.dat"), Geometry{16385, 10}), ConfigError);
  EXPECT_THROW(DatWriter(temp_file("x.dat"), Geometry{-1, 10}), ConfigError);
}

}  // namespace
}  // namespace evloader
