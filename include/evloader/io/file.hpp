// SPDX-License-Identifier: Apache-2.0
// A read-only file opened once and read at explicit offsets (pread), safe to share across threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

namespace evloader {

class File {
 public:
  /// Throws IoError naming the path when it is missing, a directory, or unreadable.
  explicit File(const std::filesystem::path& path);
  ~File();
  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  /// Reads up to out.size() bytes at `offset`; returns how many (fewer only at end of file).
  /// Throws IoError on an OS error.
  std::size_t read_at(std::uint64_t offset, std::span<std::byte> out) const;

  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  /// Modification time in nanoseconds since the epoch (used to notice that a recording changed).
  [[nodiscard]] std::int64_t mtime_ns() const noexcept { return mtime_ns_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::int64_t mtime_ns_ = 0;
};

}  // namespace evloader
