// SPDX-License-Identifier: Apache-2.0
#include "evloader/io/header.hpp"

#include <gtest/gtest.h>

#include <string>

#include "evloader/core/error.hpp"

namespace evloader {
namespace {

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

TEST(Header, StopsAtFirstLineWithoutPercentSpace) {
  std::string text = "% evt 2.0\n% system_ID 21\n% Date 2020-09-14 09:03:25\n\x12\x34\x56";
  bool complete = false;
  FileHeader h = parse_header(bytes_of(text), complete);
  EXPECT_TRUE(complete);
  EXPECT_FALSE(h.has_end_marker);
  EXPECT_EQ(h.data_offset, text.size() - 3);
  EXPECT_EQ(h.get("evt"), "2.0");
  EXPECT_EQ(h.get("Date"), "2020-09-14 09:03:25");
  EXPECT_FALSE(h.get("date").has_value());  // keys are case-sensitive
}

TEST(Header, StopsAtEndMarkerEvenIfDataStartsWithPercentSpace) {
  std::string text = "% format EVT3;height=720;width=1280\n% end\n% \x01\x02";
  bool complete = false;
  FileHeader h = parse_header(bytes_of(text), complete);
  EXPECT_TRUE(h.has_end_marker);
  EXPECT_EQ(h.data_offset, text.size() - 4);
  EXPECT_EQ(h.lines.size(), 1u);
}

TEST(Header, LastDuplicateWinsCrIsStrippedAndSpacesAreJoined) {
  std::string text = "% key a\r\n% key   b    c\n% flag\nX";
  bool complete = false;
  FileHeader h = parse_header(bytes_of(text), complete);
  EXPECT_EQ(h.get("key"), "b c");
  EXPECT_EQ(h.get("flag"), "");
  EXPECT_EQ(h.as_map().size(), 2u);
}

TEST(Header, ReportsIncompleteLine) {
  std::string text = "% evt 3.0\n% geometry 12";
  bool complete = true;
  FileHeader h = parse_header(bytes_of(text), complete);
  EXPECT_FALSE(complete);
  EXPECT_EQ(h.data_offset, 10u);
}

TEST(Header, PercentWithoutSpaceIsData) {
  std::string text = "%evt 3.0\n";
  bool complete = false;
  FileHeader h = parse_header(bytes_of(text), complete);
  EXPECT_TRUE(h.lines.empty());
  EXPECT_EQ(h.data_offset, 0u);
}

TEST(Header, OverlongLineIsAFormatError) {
  std::string text = "% " + std::string(100, 'a');
  bool complete = false;
  EXPECT_THROW((void)parse_header(bytes_of(text), complete, 50), FormatError);
}

TEST(Header, FormatHeaderRoundTrips) {
  std::string text = format_header({{"evt", "3.0"}, {"geometry", "640x480"}}, true);
  EXPECT_EQ(text, "% evt 3.0\n% geometry 640x480\n% end\n");
  bool complete = false;
  FileHeader h = parse_header(bytes_of(text), complete);
  EXPECT_EQ(h.data_offset, text.size());
  EXPECT_EQ(h.get("geometry"), "640x480");
}

}  // namespace
}  // namespace evloader
