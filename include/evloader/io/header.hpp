// SPDX-License-Identifier: Apache-2.0
// The "% key value" text header shared by RAW and DAT files (formats.md §1.1, §2.1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace evloader {

struct FileHeader {
  /// Lines in file order as (key, value); a line without a value has an empty value.
  std::vector<std::pair<std::string, std::string>> lines;
  /// Byte offset where binary data starts (just after the last header line's LF).
  std::size_t data_offset = 0;
  /// True when the header was closed by a "% end" line.
  bool has_end_marker = false;

  /// Value of the last line with this key (duplicates: last wins), if any. Keys are case-sensitive.
  [[nodiscard]] std::optional<std::string> get(const std::string& key) const;
  /// Sorted map view (the way OpenEB stores headers).
  [[nodiscard]] std::map<std::string, std::string> as_map() const;
};

/// Parse a header from the first bytes of a file. A header line starts with the two bytes "% " and ends
/// with LF (a trailing CR is stripped). The header ends at "% end" or at the first line not starting with
/// "% ". `is_complete` is set false when `bytes` ended in the middle of a header line (read more and retry).
/// Header lines longer than `max_line` bytes are an error (binary garbage that happens to start with "% ").
[[nodiscard]] FileHeader parse_header(std::span<const std::byte> bytes, bool& is_complete,
                                      std::size_t max_line = 64 * 1024);

/// Read and parse the header of a file. Throws IoError if unreadable, FormatError if malformed.
[[nodiscard]] FileHeader read_header(const std::filesystem::path& path);

/// Render header lines as "% key value\n" ... plus "% end\n" when `end_marker`.
[[nodiscard]] std::string format_header(const std::vector<std::pair<std::string, std::string>>& lines,
                                        bool end_marker);

}  // namespace evloader
