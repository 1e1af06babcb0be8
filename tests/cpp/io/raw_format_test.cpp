// SPDX-License-Identifier: Apache-2.0
#include "evloader/io/raw_format.hpp"

#include <gtest/gtest.h>

#include "evloader/core/error.hpp"

namespace evloader {
namespace {

FileHeader header_of(std::vector<std::pair<std::string, std::string>> lines) {
  FileHeader h;
  h.lines = std::move(lines);
  return h;
}

TEST(RawFormat, FormatKeyGivesEncodingAndGeometry) {
  auto f = resolve_raw_format(header_of({{"format", "EVT3;height=720;width=1280"}}), {}, "f.raw");
  EXPECT_EQ(f.encoding, RawEncoding::evt3);
  EXPECT_EQ(f.geometry, (Geometry{1280, 720}));
}

TEST(RawFormat, LegacyEvtKeyAndSystemIdTable) {
  // The expelliarmus EVT2 sample: only `evt 2.0` and system_ID 21 -> 640x480.
  auto f = resolve_raw_format(
      header_of({{"evt", "2.0"}, {"integrator_name", "Prophesee"}, {"system_ID", "21"}}), {}, "f.raw");
  EXPECT_EQ(f.encoding, RawEncoding::evt2);
  EXPECT_EQ(f.geometry, (Geometry{640, 480}));
  auto g = resolve_raw_format(header_of({{"evt", "3.0"}, {"system_ID", "48"}}), {}, "f.raw");
  EXPECT_EQ(g.geometry, (Geometry{1280, 720}));
}

TEST(RawFormat, SystemIdAloneGivesEncoding) {
  auto f = resolve_raw_format(header_of({{"system_ID", "40"}}), {}, "f.raw");
  EXPECT_EQ(f.encoding, RawEncoding::evt3);
  EXPECT_EQ(f.geometry, (Geometry{640, 480}));
}

TEST(RawFormat, OtherIntegratorsDoNotUseTheTable) {
  EXPECT_THROW(
      (void)resolve_raw_format(header_of({{"integrator_name", "Acme"}, {"system_ID", "21"}}), {}, "f.raw"),
      FormatError);
}

TEST(RawFormat, GeometryKeyIsWidthFirst) {
  auto f = resolve_raw_format(header_of({{"evt", "3.0"}, {"geometry", "320x240"}}), {}, "f.raw");
  EXPECT_EQ(f.geometry, (Geometry{320, 240}));
}

TEST(RawFormat, ContradictionsAndUnsupportedEncodingsAreErrors) {
  EXPECT_THROW(
      (void)resolve_raw_format(header_of({{"format", "EVT3;height=720;width=1280"}, {"geometry", "640x480"}}),
                               {}, "f.raw"),
      FormatError);
  try {
    (void)resolve_raw_format(header_of({{"format", "EVT4;height=720;width=1280"}}), {}, "dir/f.raw");
    FAIL() << "EVT4 accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("dir/f.raw"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("EVT4"), std::string::npos);
  }
  EXPECT_THROW((void)resolve_raw_format(header_of({}), {}, "f.raw"), FormatError);
}

TEST(RawFormat, UserOverrideWins) {
  RawFormatOverride user;
  user.encoding = RawEncoding::evt21;
  user.geometry = Geometry{320, 320};
  auto f = resolve_raw_format(header_of({{"format", "EVT3;height=720;width=1280"}}), user, "f.raw");
  EXPECT_EQ(f.encoding, RawEncoding::evt21);
  EXPECT_EQ(f.geometry, (Geometry{320, 320}));
  // An override also rescues a header we cannot resolve.
  auto g = resolve_raw_format(header_of({}), user, "f.raw");
  EXPECT_EQ(g.encoding, RawEncoding::evt21);
}

TEST(RawFormat, Evt21WordOrder) {
  auto legacy =
      resolve_raw_format(header_of({{"format", "EVT21;endianness=legacy;height=720;width=1280"}}), {}, "f");
  EXPECT_EQ(legacy.evt21_order, Evt21Order::legacy);
  auto little = resolve_raw_format(header_of({{"evt", "2.1"}, {"endianness", "little"}}), {}, "f");
  EXPECT_EQ(little.evt21_order, Evt21Order::little);
  // OpenEB's rule: Prophesee boards before system_ID 0x37 used the legacy order.
  auto old = resolve_raw_format(header_of({{"evt", "2.1"}, {"system_ID", "49"}}), {}, "f");
  EXPECT_EQ(old.evt21_order, Evt21Order::legacy);
  auto modern = resolve_raw_format(header_of({{"evt", "2.1"}, {"system_ID", "60"}}), {}, "f");
  EXPECT_EQ(modern.evt21_order, Evt21Order::little);
}

// Fuzz regression raw_header/huge-geometry: a header claiming 2000000000x2000000000 was accepted, and
// frames sized from it would ask for exabytes. RAW words address 11 bits, so 2048 is the largest side.
TEST(RawFormat, SensorLargerThanWordsAddressIsAnError) {
  EXPECT_THROW((void)resolve_raw_format(header_of({{"format", "EVT2;height=2000000000;width=2000000000"}}),
                                        {}, "f.raw"),
               FormatError);
  EXPECT_THROW((void)resolve_raw_format(header_of({{"evt", "3.0"}, {"geometry", "4096x16"}}), {}, "f.raw"),
               FormatError);
  auto largest = resolve_raw_format(header_of({{"evt", "3.0"}, {"geometry", "2048x2048"}}), {}, "f.raw");
  EXPECT_EQ(largest.geometry, (Geometry{2048, 2048}));
  // The user's geometry replaces the header's, so a wrong header size can still be read.
  RawFormatOverride user;
  user.geometry = Geometry{640, 480};
  auto f = resolve_raw_format(header_of({{"evt", "3.0"}, {"geometry", "4096x4096"}}), user, "f.raw");
  EXPECT_EQ(f.geometry, (Geometry{640, 480}));
}

TEST(RawFormat, ParsesNames) {
  EXPECT_EQ(parse_encoding_name("evt3"), RawEncoding::evt3);
  EXPECT_EQ(parse_encoding_name("2.1"), RawEncoding::evt21);
  EXPECT_FALSE(parse_encoding_name("EVT4").has_value());
  EXPECT_FALSE(parse_geometry("640*480").has_value());
  EXPECT_FALSE(parse_geometry("0x480").has_value());
  EXPECT_EQ(parse_geometry("640x480"), (Geometry{640, 480}));
}

}  // namespace
}  // namespace evloader
