// SPDX-License-Identifier: Apache-2.0
#include "evloader/core/error.hpp"

#include <cerrno>
#include <cstring>

namespace evloader {

std::string describe_location(const std::filesystem::path& path, std::int64_t byte_offset,
                              const std::string& what) {
  std::string out = path.string();
  if (byte_offset >= 0) out += " at byte " + std::to_string(byte_offset);
  out += ": ";
  out += what;
  return out;
}

void throw_io_error(const std::filesystem::path& path, const std::string& what) {
  throw IoError(describe_location(path, -1, what));
}

void throw_format_error(const std::filesystem::path& path, std::int64_t byte_offset,
                        const std::string& what) {
  throw FormatError(describe_location(path, byte_offset, what));
}

}  // namespace evloader
