// SPDX-License-Identifier: Apache-2.0
#include "evloader/io/header.hpp"

#include <fstream>

#include "evloader/core/error.hpp"

namespace evloader {

std::optional<std::string> FileHeader::get(const std::string& key) const {
  for (auto it = lines.rbegin(); it != lines.rend(); ++it)
    if (it->first == key) return it->second;
  return std::nullopt;
}

std::map<std::string, std::string> FileHeader::as_map() const {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : lines) out[k] = v;
  return out;
}

namespace {

// Split "key value with spaces" at the first run of blanks; OpenEB re-joins the remaining tokens with
// single spaces, which we reproduce. Blanks are C isspace() (OpenEB reads tokens with >>), so a CR, VT or
// FF inside a line separates tokens too and no key or value ever starts or ends with one.
std::pair<std::string, std::string> split_key_value(std::string_view text) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
  std::vector<std::string_view> tokens;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    std::size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > start) tokens.push_back(text.substr(start, i - start));
  }
  if (tokens.empty()) return {};
  std::string value;
  for (std::size_t k = 1; k < tokens.size(); ++k) {
    if (k > 1) value += ' ';
    value += tokens[k];
  }
  return {std::string(tokens[0]), value};
}

}  // namespace

FileHeader parse_header(std::span<const std::byte> bytes, bool& is_complete, std::size_t max_line) {
  FileHeader header;
  is_complete = true;
  std::size_t pos = 0;
  const char* text = reinterpret_cast<const char*>(bytes.data());
  while (pos + 1 < bytes.size() && text[pos] == '%' && text[pos + 1] == ' ') {
    std::size_t end = pos;
    while (end < bytes.size() && text[end] != '\n') {
      if (end - pos > max_line)
        throw FormatError("header line at byte " + std::to_string(pos) + " is longer than " +
                          std::to_string(max_line) + " bytes (not a text header?)");
      ++end;
    }
    if (end == bytes.size()) {  // line not finished within the bytes we have
      is_complete = false;
      header.data_offset = pos;
      return header;
    }
    std::string_view line(text + pos + 2, end - pos - 2);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = end + 1;
    auto kv = split_key_value(line);
    if (kv.first == "end" && kv.second.empty()) {
      header.has_end_marker = true;
      break;
    }
    if (!kv.first.empty()) header.lines.push_back(std::move(kv));
  }
  // Bytes that end right after a header line, or with a lone '%', may go on with more header lines: ask for
  // more bytes (read_header() reads in chunks; stopping at a chunk boundary would take the rest of the
  // header for event data).
  if (!header.has_end_marker && (pos == bytes.size() || (pos + 1 == bytes.size() && text[pos] == '%')))
    is_complete = false;
  header.data_offset = pos;
  return header;
}

FileHeader read_header(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_io_error(path, "cannot open file");
  std::vector<std::byte> buffer;
  std::size_t chunk = 4096;
  const std::size_t limit = 16 * 1024 * 1024;  // no real header comes close; stops reading garbage forever
  while (true) {
    std::size_t old = buffer.size();
    buffer.resize(old + chunk);
    in.read(reinterpret_cast<char*>(buffer.data() + old), static_cast<std::streamsize>(chunk));
    buffer.resize(old + static_cast<std::size_t>(in.gcount()));
    bool complete = false;
    FileHeader header;
    try {
      header = parse_header(buffer, complete);
    } catch (const FormatError& e) {
      throw_format_error(path, 0, e.what());
    }
    if (complete || !in) return header;  // at EOF a half line is part of the data
    if (buffer.size() >= limit) throw_format_error(path, 0, "header larger than 16 MiB");
    chunk *= 2;
  }
}

std::string format_header(const std::vector<std::pair<std::string, std::string>>& lines, bool end_marker) {
  std::string out;
  for (const auto& [k, v] : lines) {
    out += "% ";
    out += k;
    if (!v.empty()) {
      out += ' ';
      out += v;
    }
    out += '\n';
  }
  if (end_marker) out += "% end\n";
  return out;
}

}  // namespace evloader
