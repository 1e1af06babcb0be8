// SPDX-License-Identifier: Apache-2.0
// NumPy .npy files with structured dtypes (formats.md §4), and the EventBbox box files built on them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace evloader {

/// One field of a structured dtype (or the single field of a plain dtype, with an empty name).
struct NpyField {
  std::string name;                ///< empty for padding fields ('' , '|V4')
  char byte_order = '<';           ///< '<', '>', '|' or '='
  char kind = 'V';                 ///< 'b' 'i' 'u' 'f' 'c' 'V' 'S' 'U' 'M' 'm'
  std::size_t size = 0;            ///< bytes of one element of this field (without sub-array shape)
  std::size_t offset = 0;          ///< from the start of a record
  std::vector<std::size_t> shape;  ///< sub-array shape, empty for scalars
  std::vector<NpyField> children;  ///< nested struct (kind 'V'), empty otherwise

  [[nodiscard]] std::size_t total_size() const noexcept;  ///< size times the product of shape
};

struct NpyArray {
  std::vector<NpyField> fields;  ///< record layout; one unnamed field for plain dtypes
  bool structured = false;
  bool fortran_order = false;
  std::vector<std::size_t> shape;
  std::size_t itemsize = 0;
  std::vector<std::byte> data;  ///< itemsize * product(shape) bytes, as in the file

  [[nodiscard]] std::size_t count() const noexcept;  ///< product of shape
  [[nodiscard]] const NpyField* field(const std::string& name) const noexcept;
};

/// Parse a .npy file. Throws IoError, or FormatError naming the file and offset for a bad magic, an
/// unparsable header, object dtypes, or a data section shorter than the header says.
[[nodiscard]] NpyArray read_npy(const std::filesystem::path& path);
/// Parse from memory (used by the file version and by fuzzing). `origin` names the source in errors.
[[nodiscard]] NpyArray parse_npy(std::span<const std::byte> bytes, const std::string& origin);

/// Write a 1-D (or any shape) array of records described by `fields` (offsets given, itemsize given).
/// Produces a version 1.0 file whose header numpy reads back with the same dtype.
void write_npy(const std::filesystem::path& path, const std::vector<NpyField>& fields, std::size_t itemsize,
               const std::vector<std::size_t>& shape, std::span<const std::byte> data);

/// A labelled box, byte-compatible with Metavision's EventBbox / the toolbox's BBOX_DTYPE:
/// t <i8 @0, x <f4 @8, y <f4 @12, w <f4 @16, h <f4 @20, class_id <u4 @24, track_id <u4 @28,
/// class_confidence <f4 @32, itemsize 40. (x, y) is the top-left corner in sensor pixels.
struct EventBbox {
  std::int64_t t;
  float x;
  float y;
  float w;
  float h;
  std::uint32_t class_id;
  std::uint32_t track_id;
  float class_confidence;
  std::uint32_t padding_;  // keeps itemsize 40; always written as 0

  friend bool operator==(const EventBbox&, const EventBbox&) = default;
};
static_assert(sizeof(EventBbox) == 40);

/// Read a `_bbox.npy` file of any known box layout: fields found by name (legacy `ts` -> t,
/// `confidence` -> class_confidence), any integer/float width converted, missing optional fields
/// (track_id, class_confidence) set to 0 / 1. Throws FormatError when t, x, y, w, h or class_id is missing.
[[nodiscard]] std::vector<EventBbox> read_boxes_npy(const std::filesystem::path& path);
[[nodiscard]] std::vector<EventBbox> boxes_from_npy(const NpyArray& array, const std::string& origin);
/// Write boxes with the EventBbox dtype (the 4 tail bytes as an unnamed '|V4' field).
void write_boxes_npy(const std::filesystem::path& path, std::span<const EventBbox> boxes);

}  // namespace evloader
