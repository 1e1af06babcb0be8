// SPDX-License-Identifier: Apache-2.0
// A growable array of trivially copyable records that never zero-fills: decoders write straight into
// its uninitialised tail, and loaders reuse one buffer across reads instead of reallocating.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <type_traits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "evloader/core/types.hpp"

namespace evloader {

namespace detail {

/// Blocks of this size and more are mapped straight from the kernel and unmapped when freed. glibc keeps
/// freed large blocks in its heaps (and raises its mmap threshold after each such free), so loaders that
/// reallocate their buffers every epoch would see resident memory drift by tens of MiB (docs/robustness.md).
inline constexpr std::size_t kMappedBlock = std::size_t{1} << 20;
inline constexpr std::size_t kHugePage = std::size_t{2} << 20;

inline std::size_t mapped_bytes(std::size_t bytes) noexcept {
  const std::size_t unit = bytes >= 2 * kHugePage ? kHugePage : 4096;
  return (bytes + unit - 1) / unit * unit;
}

/// Uninitialised memory for `bytes` (release it with release_bytes and the same size). Large blocks are
/// 2 MiB-aligned and asked for transparent huge pages (as numpy does): on these machines the page faults of
/// the first write to fresh memory cost more than decoding into it, and huge pages cut them 512-fold.
inline void* allocate_bytes(std::size_t bytes) {
#if defined(__linux__)
  if (bytes >= kMappedBlock) {
    const std::size_t size = mapped_bytes(bytes);
    const bool huge = bytes >= 2 * kHugePage;
    const std::size_t asked = huge ? size + kHugePage : size;  // room to align the start to a huge page
    void* raw = ::mmap(nullptr, asked, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    if (!huge) return raw;
    auto* base = static_cast<char*>(raw);
    const auto addr = reinterpret_cast<std::uintptr_t>(base);
    char* start = base + ((kHugePage - addr % kHugePage) % kHugePage);
    if (start > base) ::munmap(base, static_cast<std::size_t>(start - base));
    char* tail = start + size;
    if (base + asked > tail) ::munmap(tail, static_cast<std::size_t>(base + asked - tail));
#if defined(MADV_HUGEPAGE)
    ::madvise(start, size, MADV_HUGEPAGE);
#endif
    return start;
  }
#endif
  void* p = std::malloc(bytes ? bytes : 1);
  if (!p) throw std::bad_alloc();
  return p;
}

inline void release_bytes(void* p, std::size_t bytes) noexcept {
  if (!p) return;
#if defined(__linux__)
  if (bytes >= kMappedBlock) {
    ::munmap(p, mapped_bytes(bytes));
    return;
  }
#endif
  std::free(p);
}

/// Deleter of allocate_bytes blocks: remembers the size the block was allocated with.
struct BlockDeleter {
  std::size_t bytes = 0;
  void operator()(void* p) const noexcept { release_bytes(p, bytes); }
};

}  // namespace detail

template <class T>
class PodBuffer {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  PodBuffer() = default;
  explicit PodBuffer(std::size_t capacity) { reserve(capacity); }
  PodBuffer(PodBuffer&&) noexcept = default;
  PodBuffer& operator=(PodBuffer&&) noexcept = default;
  PodBuffer(const PodBuffer& other) { assign(other.view()); }
  PodBuffer& operator=(const PodBuffer& other) {
    if (this != &other) assign(other.view());
    return *this;
  }

  [[nodiscard]] T* data() noexcept { return data_.get(); }
  [[nodiscard]] const T* data() const noexcept { return data_.get(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] T& operator[](std::size_t i) noexcept { return data_.get()[i]; }
  [[nodiscard]] const T& operator[](std::size_t i) const noexcept { return data_.get()[i]; }
  [[nodiscard]] T* begin() noexcept { return data(); }
  [[nodiscard]] T* end() noexcept { return data() + size_; }
  [[nodiscard]] const T* begin() const noexcept { return data(); }
  [[nodiscard]] const T* end() const noexcept { return data() + size_; }
  [[nodiscard]] std::span<T> view() noexcept { return {data(), size_}; }
  [[nodiscard]] std::span<const T> view() const noexcept { return {data(), size_}; }

  void clear() noexcept { size_ = 0; }

  void reserve(std::size_t n) {
    if (n <= capacity_) return;
    // A count from a hostile file must not wrap the byte size into a small allocation.
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_alloc();
    std::size_t grown = std::max(n, capacity_ + capacity_ / 2);
    if (grown > std::numeric_limits<std::size_t>::max() / sizeof(T)) grown = n;
    std::unique_ptr<T, detail::BlockDeleter> fresh(static_cast<T*>(detail::allocate_bytes(grown * sizeof(T))),
                                                   detail::BlockDeleter{grown * sizeof(T)});
    if (size_ != 0) std::memcpy(fresh.get(), data_.get(), size_ * sizeof(T));
    data_ = std::move(fresh);
    capacity_ = grown;
  }

  /// Room for n more records after the current end; write them, then call commit(k) with k <= n.
  [[nodiscard]] T* prepare(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() - size_) throw std::bad_alloc();
    reserve(size_ + n);
    return data_.get() + size_;
  }
  void commit(std::size_t n) noexcept { size_ += n; }

  void push_back(const T& value) {
    *prepare(1) = value;
    ++size_;
  }

  void append(std::span<const T> values) {
    if (values.empty()) return;
    std::memcpy(prepare(values.size()), values.data(), values.size() * sizeof(T));
    size_ += values.size();
  }

  void assign(std::span<const T> values) {
    clear();
    append(values);
  }

  /// Drop the first n records, keeping the rest in order.
  void erase_front(std::size_t n) noexcept {
    n = std::min(n, size_);
    if (n == 0) return;
    if (n < size_) std::memmove(data_.get(), data_.get() + n, (size_ - n) * sizeof(T));
    size_ -= n;
  }

  void truncate(std::size_t n) noexcept { size_ = std::min(n, size_); }

 private:
  std::unique_ptr<T, detail::BlockDeleter> data_;  // never zero-filled: only written records are read
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

using EventBuffer = PodBuffer<EventCD>;
using TriggerBuffer = PodBuffer<EventExtTrigger>;

}  // namespace evloader
