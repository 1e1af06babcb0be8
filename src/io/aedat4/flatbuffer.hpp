// SPDX-License-Identifier: Apache-2.0
// A tiny read-only FlatBuffers walker for the few AEDAT4 tables evloader needs (IOHeader, EventPacket,
// TriggerPacket). Every access is checked against the buffer: malformed data yields "absent"/false,
// never an out-of-bounds read, so callers turn it into a FormatError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

namespace evloader::detail::fb {

class Table {
 public:
  Table() = default;
  Table(std::span<const std::uint8_t> buffer, std::size_t position) : buf_(buffer), pos_(position) {}

  /// The root table of a buffer (uoffset at byte 0), checking the 4-byte file identifier when given.
  static std::optional<Table> root(std::span<const std::uint8_t> buffer, const char* identifier = nullptr) {
    std::uint32_t offset = 0;
    if (!read(buffer, 0, offset)) return std::nullopt;
    if (identifier && (buffer.size() < 8 || std::memcmp(buffer.data() + 4, identifier, 4) != 0))
      return std::nullopt;
    Table t(buffer, offset);
    if (!t.valid()) return std::nullopt;
    return t;
  }

  /// The table's vtable lies inside the buffer and is well formed.
  [[nodiscard]] bool valid() const {
    std::int32_t soffset = 0;
    if (!read(buf_, pos_, soffset)) return false;
    const std::int64_t vt = static_cast<std::int64_t>(pos_) - soffset;
    std::uint16_t vt_size = 0;
    if (vt < 0 || !read(buf_, static_cast<std::size_t>(vt), vt_size) || vt_size < 4 || vt_size % 2)
      return false;
    if (static_cast<std::uint64_t>(vt) + vt_size > buf_.size()) return false;
    vtable_ = static_cast<std::size_t>(vt);
    vtable_size_ = vt_size;
    return true;
  }

  /// Absolute position of field `index`, or nullopt when absent (or the table is malformed).
  [[nodiscard]] std::optional<std::size_t> field(unsigned index) const {
    if (vtable_size_ == 0 && !valid()) return std::nullopt;
    const std::size_t entry = 4 + 2 * static_cast<std::size_t>(index);
    if (entry + 2 > vtable_size_) return std::nullopt;
    std::uint16_t off = 0;
    read(buf_, vtable_ + entry, off);
    if (off == 0) return std::nullopt;
    return pos_ + off;
  }

  template <class T>
  [[nodiscard]] std::optional<T> scalar(unsigned index) const {
    auto at = field(index);
    T v{};
    if (!at || !read(buf_, *at, v)) return std::nullopt;
    return v;
  }

  /// A vector field: its element count and the position of its first element, checked to hold
  /// count * element_size bytes.
  struct Vector {
    std::size_t count = 0;
    std::size_t data = 0;
  };
  [[nodiscard]] std::optional<Vector> vector(unsigned index, std::size_t element_size) const {
    auto target = follow(index);
    std::uint32_t count = 0;
    if (!target || !read(buf_, *target, count)) return std::nullopt;
    const std::size_t data = *target + 4;
    if (element_size && count > (buf_.size() - data) / element_size) return std::nullopt;
    return Vector{count, data};
  }

  [[nodiscard]] std::optional<std::string_view> string(unsigned index) const {
    auto v = vector(index, 1);
    if (!v) return std::nullopt;
    return std::string_view(reinterpret_cast<const char*>(buf_.data() + v->data), v->count);
  }

  /// The i-th table of a vector of tables.
  [[nodiscard]] std::optional<Table> table_at(const Vector& v, std::size_t i) const {
    const std::size_t slot = v.data + 4 * i;
    std::uint32_t off = 0;
    if (i >= v.count || !read(buf_, slot, off)) return std::nullopt;
    Table t(buf_, slot + off);
    if (!t.valid()) return std::nullopt;
    return t;
  }

  [[nodiscard]] std::span<const std::uint8_t> buffer() const { return buf_; }

  template <class T>
  static bool read(std::span<const std::uint8_t> buf, std::size_t at, T& out) {
    if (at > buf.size() || buf.size() - at < sizeof(T)) return false;
    std::memcpy(&out, buf.data() + at, sizeof(T));
    return true;
  }

 private:
  // A uoffset field: the absolute position it points to.
  [[nodiscard]] std::optional<std::size_t> follow(unsigned index) const {
    auto at = field(index);
    std::uint32_t off = 0;
    if (!at || !read(buf_, *at, off)) return std::nullopt;
    const std::uint64_t target = static_cast<std::uint64_t>(*at) + off;
    if (target >= buf_.size()) return std::nullopt;
    return static_cast<std::size_t>(target);
  }

  std::span<const std::uint8_t> buf_;
  std::size_t pos_ = 0;
  mutable std::size_t vtable_ = 0;
  mutable std::uint16_t vtable_size_ = 0;
};

}  // namespace evloader::detail::fb
