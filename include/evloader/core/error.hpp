// SPDX-License-Identifier: Apache-2.0
// The exception hierarchy thrown at API boundaries (never per event).
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace evloader {

/// Base of every evloader runtime error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A file is missing, unreadable, a directory, or an OS call failed. Python: `evloader.IoError` (an OSError).
class IoError : public Error {
 public:
  using Error::Error;
};

/// A file's content is malformed or unsupported. Python: `evloader.FormatError` (a ValueError).
/// The message names the file and, when known, the byte offset.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// A parameter is invalid. Python: `evloader.ConfigError` (a ValueError).
class ConfigError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// "path: what" or "path at byte N: what", the uniform way messages name their origin.
[[nodiscard]] std::string describe_location(const std::filesystem::path& path, std::int64_t byte_offset,
                                            const std::string& what);

[[noreturn]] void throw_io_error(const std::filesystem::path& path, const std::string& what);
[[noreturn]] void throw_format_error(const std::filesystem::path& path, std::int64_t byte_offset,
                                     const std::string& what);

}  // namespace evloader
