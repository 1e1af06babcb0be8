// SPDX-License-Identifier: Apache-2.0
#include "evloader/io/header.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "evloader/core/error.hpp"
#include "support/test_paths.hpp"

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

// Fuzz regression raw_header/header-line-ends-at-4k: read_header() reads 4 KiB first; when a header line
// ended exactly there, the parser called the header complete and the next header lines became event data.
TEST(Header, BytesEndingRightAfterAHeaderLineAskForMore) {
  std::string text = "% evt 3.0\n% geometry 640x480\n";
  bool complete = true;
  FileHeader h = parse_header(bytes_of(text), complete);
  EXPECT_FALSE(complete);
  EXPECT_EQ(h.lines.size(), 2u);
  EXPECT_EQ(h.data_offset, text.size());
  complete = true;
  (void)parse_header(bytes_of(""), complete);
  EXPECT_FALSE(complete);
  // With the end marker, or a data byte after the last line, nothing more can belong to the header.
  (void)parse_header(bytes_of(text + "% end\n"), complete);
  EXPECT_TRUE(complete);
  (void)parse_header(bytes_of(text + "\x01"), complete);
  EXPECT_TRUE(complete);
}

TEST(Header, ReadHeaderFindsLinesAfterTheFirstFourKiB) {
  const std::string pad = "% pad " + std::string(4096 - 7, 'a') + "\n";  // ends exactly at byte 4096
  ASSERT_EQ(pad.size(), 4096u);
  const std::string head = pad + "% evt 2.0\n% geometry 640x480\n";
  const auto path = test::temp_dir() / "header_at_4k.raw";
  {
    std::ofstream out(path, std::ios::binary);
    out << head << std::string("\x12\x34\x56\x78", 4);
  }
  FileHeader h = read_header(path);
  EXPECT_EQ(h.get("evt"), "2.0");
  EXPECT_EQ(h.get("geometry"), "640x480");
  EXPECT_EQ(h.data_offset, head.size());
  // A file that is only a header, ending at a 4 KiB boundary, is all header.
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << pad;
  }
  h = read_header(path);
  EXPECT_EQ(h.lines.size(), 1u);
  EXPECT_EQ(h.data_offset, 4096u);
  std::filesystem::remove(path);
}

// OpenEB splits header lines with >>, i.e. at any isspace(): a CR or form feed inside a line separates
// tokens, and a value never keeps one at its end (format_header() would then not round-trip it).
TEST(Header, AnyBlankSeparatesTokens) {
  std::string text = "% key a\r \r\n% other\fb\vc\r\nX";
  bool complete = false;
  FileHeader h = parse_header(bytes_of(text), complete);
  EXPECT_TRUE(complete);
  EXPECT_EQ(h.get("key"), "a");
  EXPECT_EQ(h.get("other"), "b c");
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
