// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the fuzz harnesses: a byte consumer that turns the fuzzer's input into parameters
// (buffer cuts, sizes, flags) and bytes, and a temporary file for parsers that only read from paths.
// Written for both compilers: libFuzzer's FuzzedDataProvider exists only with clang, and the replay build
// that CI runs uses g++.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <type_traits>

// The largest single allocation while one input runs, seen through the sanitizer allocator's hooks
// (ASan builds, g++ and clang; declared weak, so other builds skip the check): a hostile header must not
// make a reader allocate in proportion to what it claims rather than to what the file holds.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*)(const volatile void*, std::size_t),
                                                         void (*)(const volatile void*))
    __attribute__((weak));

namespace evloader::fuzz {

/// Reset before the code under test runs, read after it (see allocation_hooks()).
inline std::atomic<std::size_t> largest_allocation{0};

inline void on_malloc(const volatile void*, std::size_t size) {
  std::size_t seen = largest_allocation.load(std::memory_order_relaxed);
  while (size > seen && !largest_allocation.compare_exchange_weak(seen, size, std::memory_order_relaxed)) {
  }
}
inline void on_free(const volatile void*) {}

/// True when the hooks are installed (once per process): only then is largest_allocation meaningful.
inline bool allocation_hooks() {
  static const bool installed = __sanitizer_install_malloc_and_free_hooks != nullptr &&
                                __sanitizer_install_malloc_and_free_hooks(&on_malloc, &on_free) != 0;
  return installed;
}

/// Takes values from the front of the input and leaves the rest as payload. Running out yields zeros, so
/// every input is valid.
class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  template <typename T>
  T take() {
    static_assert(std::is_trivially_copyable_v<T>);
    T value{};
    const std::size_t n = sizeof(T) < size_ ? sizeof(T) : size_;
    if (n > 0) std::memcpy(&value, data_, n);
    data_ += n;
    size_ -= n;
    return value;
  }
  /// A value in [lo, hi] (inclusive).
  std::uint64_t take_in(std::uint64_t lo, std::uint64_t hi) {
    if (hi <= lo) return lo;
    const std::uint64_t span = hi - lo;
    const auto raw = take<std::uint32_t>();
    return lo + (span == UINT64_MAX ? raw : raw % (span + 1));
  }
  bool take_bool() { return (take<std::uint8_t>() & 1u) != 0; }
  /// Up to `max` bytes from the front.
  std::span<const std::uint8_t> take_bytes(std::size_t max) {
    const std::size_t n = max < size_ ? max : size_;
    std::span<const std::uint8_t> out(data_, n);
    data_ += n;
    size_ -= n;
    return out;
  }
  std::span<const std::uint8_t> rest() { return take_bytes(size_); }
  [[nodiscard]] std::size_t remaining() const { return size_; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
};

/// A file holding the given bytes, removed on destruction. One per process and name is enough: libFuzzer
/// runs inputs one after another.
class TempFile {
 public:
  explicit TempFile(std::span<const std::uint8_t> bytes, const std::string& suffix) {
    path_ = std::filesystem::temp_directory_path() / ("evloader_fuzz_" + std::to_string(::getpid()) + suffix);
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace evloader::fuzz
