// SPDX-License-Identifier: Apache-2.0
// Fuzzes .npy parsing (formats.md §4) from memory and from a file, the box conversion of any layout to
// EventBbox, and the writers' round trips (write what was read, read it again: equal).
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/npy.hpp"
#include "fuzz_support.hpp"

namespace {

using evloader::EventBbox;
using evloader::NpyArray;
using evloader::NpyField;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// Every field lies inside its record (or its parent struct), recursively.
bool fields_inside(const std::vector<NpyField>& fields, std::size_t record) {
  for (const NpyField& f : fields) {
    const std::size_t total = f.total_size();
    if (f.offset > record || total > record - f.offset) return false;
    if (!f.children.empty() && !fields_inside(f.children, f.size)) return false;
  }
  return true;
}

bool same_field(const NpyField& a, const NpyField& b) {
  if (a.name != b.name || a.kind != b.kind || a.byte_order != b.byte_order || a.size != b.size ||
      a.offset != b.offset || a.shape != b.shape || a.children.size() != b.children.size())
    return false;
  for (std::size_t i = 0; i < a.children.size(); ++i)
    if (!same_field(a.children[i], b.children[i])) return false;
  return true;
}

bool same_array(const NpyArray& a, const NpyArray& b) {
  if (a.structured != b.structured || a.fortran_order != b.fortran_order || a.shape != b.shape ||
      a.itemsize != b.itemsize || a.data != b.data || a.fields.size() != b.fields.size())
    return false;
  for (std::size_t i = 0; i < a.fields.size(); ++i)
    if (!same_field(a.fields[i], b.fields[i])) return false;
  return true;
}

// The parsed array's invariants: sizes agree and nothing was allocated beyond what the input holds.
void check_array(const NpyArray& a, std::size_t input_size) {
  check(a.data.size() <= input_size);
  check(fields_inside(a.fields, a.itemsize));
  std::size_t elements = 1;
  bool overflow = false;
  for (std::size_t d : a.shape) overflow |= __builtin_mul_overflow(elements, d, &elements);
  std::size_t bytes = 0;
  overflow |= __builtin_mul_overflow(elements, a.itemsize, &bytes);
  check(!overflow || a.itemsize == 0);
  if (!overflow) check(bytes == a.data.size());
  if (!a.structured) check(a.fields.size() == 1 && a.fields[0].size == a.itemsize);
}

// Written back and read again: the same records, shape and named fields; a second round trip is exact.
void check_round_trip(const NpyArray& a) {
  const std::vector<std::uint8_t> none;
  evloader::fuzz::TempFile tmp(none, ".npy");
  try {
    evloader::write_npy(tmp.path(), a.fields, a.itemsize, a.shape, a.data);
  } catch (const evloader::ConfigError&) {
    return;  // a layout the writer does not produce (no fields, unnamed typed fields...)
  }
  NpyArray b = evloader::read_npy(tmp.path());  // anything the writer wrote must read back
  check(b.shape == a.shape && b.itemsize == a.itemsize && b.data == a.data && !b.fortran_order);
  for (const NpyField& f : a.fields) {
    if (f.name.empty()) continue;
    const NpyField* g = b.field(f.name);
    check(g != nullptr && g->offset == f.offset && g->total_size() == f.total_size());
  }
  evloader::write_npy(tmp.path(), b.fields, b.itemsize, b.shape, b.data);
  check(same_array(evloader::read_npy(tmp.path()), b));
}

void check_boxes(const NpyArray& a) {
  std::vector<EventBbox> boxes;
  try {
    boxes = evloader::boxes_from_npy(a, "fuzz.npy");
  } catch (const evloader::FormatError&) {
    return;
  }
  check(a.shape.size() == 1 && boxes.size() == a.shape[0]);
  check(a.itemsize != 0 && boxes.size() <= a.data.size() / a.itemsize);
  for (const EventBbox& b : boxes) check(b.padding_ == 0);
  // Written as EventBbox and read again: the same bytes (memcmp: NaN coordinates stay NaN).
  const std::vector<std::uint8_t> none;
  evloader::fuzz::TempFile tmp(none, "_bbox.npy");
  evloader::write_boxes_npy(tmp.path(), boxes);
  const std::vector<EventBbox> again = evloader::read_boxes_npy(tmp.path());
  check(again.size() == boxes.size());
  if (!boxes.empty()) check(std::memcmp(again.data(), boxes.data(), boxes.size() * sizeof(EventBbox)) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  NpyArray from_memory;
  bool parsed = false;
  try {
    from_memory = evloader::parse_npy(std::as_bytes(input), "fuzz.npy");
    parsed = true;
  } catch (const evloader::FormatError&) {
  }
  // The file reader takes the same decisions as the memory parser.
  {
    evloader::fuzz::TempFile tmp(input, ".npy");
    try {
      const NpyArray from_file = evloader::read_npy(tmp.path());
      check(parsed && same_array(from_file, from_memory));
    } catch (const evloader::FormatError&) {
      check(!parsed);
    }
  }
  if (!parsed) return 0;
  check_array(from_memory, size);
  check_round_trip(from_memory);
  check_boxes(from_memory);
  return 0;
}
