// SPDX-License-Identifier: Apache-2.0
// Fuzz harness of evloader's reading of HDF5 metadata: tensor files (shape, dtype, layout, delta_t, mode,
// events_to_tensor, Metavision's attributes, last_timestamps) and HDF5 event files (root attributes,
// /CD/events type/shape/layout/chunks, /EXT_TRIGGER/events). libhdf5's own file parser is NOT the target
// (it is not robust against damaged files, and its bugs are not ours): the input is a recipe that this
// harness turns into a VALID file with libhdf5 - which attributes and datasets exist, their HDF5 types,
// ranks, shapes, layouts, filters, values and chunks - and evloader's readers then open it.
// Properties: a clean evloader error (FormatError, ConfigError, IoError), or a consistent result: positive
// shapes, reads in bounds that return what was written, events inside the geometry, index == reads;
// no allocation above 64 MiB (ASan builds).
// Known libhdf5 1.10 flaw kept out of reach: a FILTERED chunk that inflates to fewer bytes than the chunk
// makes H5Dread copy a whole chunk out of the shorter buffer (heap over-read inside libhdf5). evloader
// avoids H5Dread where it can (ECF and deflated frames are read raw and checked) and checks the stored
// size of unfiltered chunks before H5Dread; the other filtered layouts (shuffle, fletcher32, deflate in
// foreign layouts) still go through H5Dread, so the recipe writes no raw chunks there.
//
// Recipe (little-endian), see tests/fuzz/seeders/hdf5.py which writes the same format:
//   u8 target: bit 0 event file (else tensor file), bit 1 latest file format, bit 2 OnViolation::raise,
//              bit 3 no triggers, bit 4 TimeOrigin::metavision
//   then records until the input ends, each starting with a tag byte:
//   'A' attribute: u8 object, u8 name id (255: u8 length + name), u8 type, u8 shape, u8 length + value bytes
//   'D' dataset:   u8 which, u8 type, u8 rank, rank x (u32 dim), u8 layout, u8 filters, rank x (u32 chunk)
//   'W' write:     u8 which, u32 first element (along dim 0), u16 rows, then rows x row bytes
//   'C' raw chunk: u8 which, u32 chunk index, u32 filter mask, u16 length + bytes (H5Dwrite_chunk)
//   'E' ECF chunk: u8 which, u32 chunk index, u8 mode, u16 events, then events (x u16, y u16, p/dt u8)
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/ecf.hpp"
#include "evloader/io/event_reader.hpp"
#include "evloader/preprocess/tensor_file.hpp"
#include "fuzz_support.hpp"
#include "preprocess/tensor_file/hdf5_lock.hpp"

using evloader::fuzz::allocation_hooks;
using evloader::fuzz::largest_allocation;

namespace {

using evloader::EventCD;
using evloader::fuzz::FuzzInput;

#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

// Largest storage the harness lets one dataset allocate (contiguous/compact layouts, one chunk): the file
// is built in memory, and big files only slow the fuzzer down.
constexpr std::uint64_t kMaxAllocatedBytes = 1 << 20;

constexpr const char* kNames[] = {
    // tensor files (attributes of `data`)
    "events_to_tensor", "delta_t", "mode", "n_events", "shape", "store_as_uint8", "start_ts",
    "event_input_width", "event_input_height", "downsampling_factor", "shift", "max_incr_per_pixel",
    "split_polarity", "preprocess_dtype",
    // event files (root attributes)
    "version", "geometry", "format", "time_shift", "serial_number", "date", "system_ID", "offset", "evt",
    "plugin_name"};
constexpr std::size_t kNameCount = sizeof(kNames) / sizeof(kNames[0]);

// Objects and datasets the recipe refers to by number.
enum Which : std::uint8_t { data, last_timestamps, cd_events, trigger_events, cd_indexes, kWhichCount };
constexpr const char* kDatasetPaths[kWhichCount] = {"/data", "/last_timestamps", "/CD/events",
                                                    "/EXT_TRIGGER/events", "/CD/indexes"};

struct H5 {
  hid_t id = -1;
  herr_t (*close)(hid_t) = nullptr;
  H5() = default;
  H5(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
  H5(const H5&) = delete;
  H5& operator=(const H5&) = delete;
  H5(H5&& o) noexcept : id(std::exchange(o.id, -1)), close(o.close) {}
  H5& operator=(H5&& o) noexcept {
    if (this != &o) {
      reset();
      id = std::exchange(o.id, -1);
      close = o.close;
    }
    return *this;
  }
  ~H5() { reset(); }
  void reset() {
    if (id >= 0 && close) close(id);
    id = -1;
  }
  [[nodiscard]] bool ok() const { return id >= 0; }
};

// --- HDF5 types the recipe can name ------------------------------------------------------------------
hid_t compound_event_type(int variant) {
  hid_t t = H5Tcreate(H5T_COMPOUND, 16);
  switch (variant) {
    case 0:  // Metavision's layout
      H5Tinsert(t, "x", 0, H5T_STD_U16LE);
      H5Tinsert(t, "y", 2, H5T_STD_U16LE);
      H5Tinsert(t, "p", 4, H5T_STD_I16LE);
      H5Tinsert(t, "t", 8, H5T_STD_I64LE);
      break;
    case 1:  // the same fields in another order and other sizes
      H5Tinsert(t, "t", 0, H5T_STD_I64LE);
      H5Tinsert(t, "p", 8, H5T_STD_U8LE);
      H5Tinsert(t, "y", 10, H5T_STD_I16BE);
      H5Tinsert(t, "x", 12, H5T_STD_U32LE);
      break;
    case 2:  // a missing field
      H5Tinsert(t, "x", 0, H5T_STD_U16LE);
      H5Tinsert(t, "y", 2, H5T_STD_U16LE);
      H5Tinsert(t, "t", 8, H5T_STD_I64LE);
      break;
    default:  // floats where integers belong
      H5Tinsert(t, "x", 0, H5T_IEEE_F32LE);
      H5Tinsert(t, "y", 4, H5T_STD_U16LE);
      H5Tinsert(t, "p", 6, H5T_STD_I16LE);
      H5Tinsert(t, "t", 8, H5T_IEEE_F64LE);
      break;
  }
  return t;
}

hid_t compound_trigger_type(int variant) {
  hid_t t = H5Tcreate(H5T_COMPOUND, 24);
  H5Tinsert(t, "p", 0, variant == 1 ? H5T_STD_U8LE : H5T_STD_I16LE);
  H5Tinsert(t, "t", 8, variant == 1 ? H5T_IEEE_F64LE : H5T_STD_I64LE);
  if (variant != 2) H5Tinsert(t, "id", 16, H5T_STD_I16LE);
  return t;
}

hid_t enum_type(bool boolean) {
  hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
  std::int8_t a = 0, b = 1, c = -3;
  H5Tenum_insert(t, boolean ? "FALSE" : "A", &a);
  H5Tenum_insert(t, boolean ? "TRUE" : "B", &b);
  if (!boolean) H5Tenum_insert(t, "C", &c);
  return t;
}

hid_t string_type(std::size_t size, H5T_str_t pad, H5T_cset_t cset) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, size);
  if (size != H5T_VARIABLE) H5Tset_strpad(t, pad);
  H5Tset_cset(t, cset);
  return t;
}

// A new type id for a recipe type code (closed by the caller), and the fixed string size when it is one.
hid_t make_type(std::uint8_t code, std::size_t string_size) {
  switch (code % 32) {
    case 0: return H5Tcopy(H5T_STD_I8LE);
    case 1: return H5Tcopy(H5T_STD_U8LE);
    case 2: return H5Tcopy(H5T_STD_I16LE);
    case 3: return H5Tcopy(H5T_STD_U16LE);
    case 4: return H5Tcopy(H5T_STD_I32LE);
    case 5: return H5Tcopy(H5T_STD_U32LE);
    case 6: return H5Tcopy(H5T_STD_I64LE);
    case 7: return H5Tcopy(H5T_STD_U64LE);
    case 8: return H5Tcopy(H5T_IEEE_F32LE);
    case 9: return H5Tcopy(H5T_IEEE_F64LE);
    case 10: return string_type(std::max<std::size_t>(1, string_size), H5T_STR_NULLTERM, H5T_CSET_ASCII);
    case 11: return string_type(std::max<std::size_t>(1, string_size), H5T_STR_NULLPAD, H5T_CSET_ASCII);
    case 12: return string_type(std::max<std::size_t>(1, string_size), H5T_STR_SPACEPAD, H5T_CSET_UTF8);
    case 13: return string_type(H5T_VARIABLE, H5T_STR_NULLTERM, H5T_CSET_ASCII);
    case 14: return string_type(H5T_VARIABLE, H5T_STR_NULLTERM, H5T_CSET_UTF8);
    case 15: return enum_type(true);
    case 16: return enum_type(false);
    case 17: return H5Tcopy(H5T_STD_I32BE);
    case 18: return H5Tcopy(H5T_IEEE_F64BE);
    case 19: return H5Tcopy(H5T_IEEE_F32BE);
    case 20: return H5Tcopy(H5T_STD_U16BE);
    case 21: {
      hid_t t = H5Tcopy(H5T_IEEE_F32LE);  // a 16-bit float (not IEEE single): needs HDF5's conversion
      H5Tset_fields(t, 15, 10, 5, 0, 10);
      H5Tset_size(t, 2);
      H5Tset_ebias(t, 15);
      return t;
    }
    case 22: return compound_event_type(0);
    case 23: return compound_event_type(1);
    case 24: return compound_event_type(2);
    case 25: return compound_event_type(3);
    case 26: return compound_trigger_type(0);
    case 27: return compound_trigger_type(1);
    case 28: return compound_trigger_type(2);
    case 29: {
      hid_t t = H5Tcreate(H5T_COMPOUND, 16);
      H5Tinsert(t, "id", 0, H5T_STD_U64LE);
      H5Tinsert(t, "ts", 8, H5T_STD_I64LE);
      return t;
    }
    case 30: {
      const hsize_t dims[1] = {3};
      return H5Tarray_create2(H5T_STD_I64LE, 1, dims);
    }
    default: return H5Tcreate(H5T_OPAQUE, 4);
  }
}

bool is_vlen_string(hid_t type) { return H5Tget_class(type) == H5T_STRING && H5Tis_variable_str(type) > 0; }

// --- The recipe, applied ------------------------------------------------------------------------------
struct Shadow {  // what was written into a dataset, as the memory type sees it (0 = fill value)
  std::vector<hsize_t> dims;
  std::size_t row_bytes = 0;  // bytes of one index along dim 0
  std::vector<std::uint8_t> bytes;
  bool tracked = false;  // small enough to shadow
};

struct Recipe {
  bool event_file = false;
  bool latest = false;
  evloader::ReaderOptions options;
  std::array<H5, kWhichCount> datasets;
  std::array<Shadow, kWhichCount> shadows;
  std::array<std::uint8_t, kWhichCount> type_codes{};
  std::array<bool, kWhichCount> ecf{};
  std::array<hsize_t, kWhichCount> chunk0{};
  std::array<std::uint8_t, kWhichCount> filters{};
  std::array<bool, kWhichCount> frame_chunks{};  // chunks of one row along dim 0 (a tensor frame)
  std::span<const std::uint8_t> read_params;     // choices of the reading phase
  // /CD/events written only as whole ECF chunks from our encoder: the events of each chunk, by index.
  std::map<std::uint64_t, std::vector<EventCD>> ecf_chunks;
  bool cd_other_writes = false;
};

H5 ensure_group(hid_t file, const char* path) {
  if (H5Lexists(file, path, H5P_DEFAULT) > 0) return {H5Gopen2(file, path, H5P_DEFAULT), H5Gclose};
  return {H5Gcreate2(file, path, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose};
}

void add_attribute(hid_t file, Recipe& r, FuzzInput& in) {
  const auto object = in.take<std::uint8_t>();
  const auto name_id = in.take<std::uint8_t>();
  std::string name;
  if (name_id == 255) {
    const auto bytes = in.take_bytes(in.take<std::uint8_t>() % 32);
    name.assign(bytes.begin(), bytes.end());
    name.erase(std::find(name.begin(), name.end(), '\0'), name.end());
    if (name.empty() || name == ".") name = "x";
  } else {
    name = kNames[name_id % kNameCount];
  }
  const auto type_code = in.take<std::uint8_t>();
  const auto shape = in.take<std::uint8_t>();
  const auto value = in.take_bytes(in.take<std::uint8_t>());

  hid_t target = -1;
  H5 group;
  switch (object % 4) {
    case 0: target = file; break;
    case 1: target = r.datasets[data].id; break;
    case 2: target = r.datasets[cd_events].id; break;
    default:
      group = ensure_group(file, "/CD");
      target = group.id;
      break;
  }
  if (target < 0) target = file;

  H5 type(make_type(type_code, std::max<std::size_t>(1, value.size())), H5Tclose);
  if (!type.ok()) return;
  H5 space;
  hsize_t n = 1;
  switch (shape % 5) {
    case 0:
    case 1: space = H5(H5Screate(H5S_SCALAR), H5Sclose); break;
    case 2:
      space = H5(H5Screate(H5S_NULL), H5Sclose);
      n = 0;
      break;
    case 3: {
      n = shape / 5 % 80;  // 0..79 elements: empty, 3 (a shape), > 64 (too many)
      const hsize_t dims[1] = {n};
      space = H5(H5Screate_simple(1, dims, nullptr), H5Sclose);
      break;
    }
    default: {
      const hsize_t dims[2] = {1, 3};
      n = 3;
      space = H5(H5Screate_simple(2, dims, nullptr), H5Sclose);
      break;
    }
  }
  if (!space.ok()) return;
  if (H5Aexists(target, name.c_str()) > 0) H5Adelete(target, name.c_str());
  H5 attr(H5Acreate2(target, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.ok() || n == 0) return;
  if (is_vlen_string(type.id)) {
    // Each element is the value (NUL-terminated by construction).
    std::string text(value.begin(), value.end());
    std::vector<const char*> ptrs(static_cast<std::size_t>(n), text.c_str());
    H5Awrite(attr.id, type.id, ptrs.data());
    return;
  }
  // Other types: the value bytes repeated over n elements of the type's size (as stored, file order).
  const std::size_t size = H5Tget_size(type.id);
  std::vector<std::uint8_t> buffer(static_cast<std::size_t>(n) * size, 0);
  for (std::size_t i = 0; i < buffer.size() && !value.empty(); ++i) buffer[i] = value[i % value.size()];
  H5Awrite(attr.id, type.id, buffer.data());
}

hsize_t take_dim(FuzzInput& in) {
  const auto raw = in.take<std::uint32_t>();
  // The top bit scales: the few huge extents (never allocated) a hostile file may declare.
  return (raw & 0x80000000u) ? static_cast<hsize_t>(raw & 0x7FFFFFFFu) << 24 : raw;
}

void add_dataset(hid_t file, Recipe& r, FuzzInput& in) {
  const Which which = static_cast<Which>(in.take<std::uint8_t>() % kWhichCount);
  const auto type_code = in.take<std::uint8_t>();
  const int rank = static_cast<int>(in.take<std::uint8_t>() % 6);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  for (auto& d : dims) d = take_dim(in);
  const auto layout = in.take<std::uint8_t>();
  const auto filters = in.take<std::uint8_t>();
  std::vector<hsize_t> chunk(static_cast<std::size_t>(rank));
  for (auto& c : chunk) c = std::max<hsize_t>(1, in.take<std::uint32_t>() % 100000);
  if (r.datasets[which].ok()) return;  // one per name

  H5 type(make_type(type_code, 8), H5Tclose);
  if (!type.ok()) return;
  const std::size_t elem = H5Tget_size(type.id);
  const bool unlimited = layout & 0x80;
  std::vector<hsize_t> maxdims = dims;
  if (unlimited && rank > 0) maxdims[0] = H5S_UNLIMITED;
  H5 space(rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims.data(), maxdims.data()), H5Sclose);
  if (!space.ok()) return;
  H5 dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);

  // Storage bytes, saturated: only small datasets get contiguous/compact storage or a shadow.
  long double total = static_cast<long double>(elem);
  for (hsize_t d : dims) total *= static_cast<long double>(d);
  const int kind = (layout % 4 == 3 || unlimited) ? 0 : layout % 4;  // 0, 3 chunked; 1 contiguous; 2 compact
  if (kind != 0 && total > kMaxAllocatedBytes) return;
  if (kind == 2 && total > 60000) return;
  if (kind == 1) H5Pset_layout(dcpl.id, H5D_CONTIGUOUS);
  if (kind == 2) H5Pset_layout(dcpl.id, H5D_COMPACT);
  if (kind == 0) {
    if (rank == 0) return;
    if ((layout & 0x10) == 0) {  // the layout's natural chunks: one frame / 16 Ki events / a few rows
      if (which == data) {
        chunk[0] = 1;
        for (int k = 1; k < rank; ++k)
          chunk[static_cast<std::size_t>(k)] = std::max<hsize_t>(1, dims[static_cast<std::size_t>(k)]);
      } else if (rank == 1) {
        chunk[0] = 1 + (layout >> 5) * 9;  // 1..64 events
      }
    }
    long double chunk_bytes = static_cast<long double>(elem);
    for (hsize_t c : chunk) chunk_bytes *= static_cast<long double>(c);
    if (chunk_bytes > kMaxAllocatedBytes) return;
    // Fixed extents get a chunk index sized for every chunk up front (the fixed array of the latest
    // format): a few KiB of recipe must not build a file of gigabytes. Unlimited ones index lazily.
    long double chunks = 1;
    for (std::size_t k = 0; k < dims.size(); ++k)
      chunks *= std::ceil(static_cast<long double>(dims[k]) / static_cast<long double>(chunk[k]));
    if (!unlimited && chunks > (1 << 16)) return;
    if (H5Pset_chunk(dcpl.id, rank, chunk.data()) < 0) return;
    if (filters & 2) H5Pset_shuffle(dcpl.id);
    if (filters & 1) H5Pset_deflate(dcpl.id, 1);
    if (filters & 4) H5Pset_fletcher32(dcpl.id);
    if (filters & 8) {
      // Through H5Dwrite, the ECF filter keeps only what it can store (time clamped to be sorted, records'
      // padding lost): no exact expectation of what reads back.
      H5Pset_filter(dcpl.id, static_cast<H5Z_filter_t>(evloader::ecf::kFilterId), H5Z_FLAG_OPTIONAL, 0,
                    nullptr);
      r.ecf[which] = true;
    }
    r.chunk0[which] = chunk[0];
    r.filters[which] = filters & 15;
    r.frame_chunks[which] = chunk[0] == 1;
    for (std::size_t k = 1; k < dims.size(); ++k) r.frame_chunks[which] &= chunk[k] == dims[k];
  }
  const std::string path = kDatasetPaths[which];
  if (which == cd_events || which == cd_indexes) ensure_group(file, "/CD");
  if (which == trigger_events) ensure_group(file, "/EXT_TRIGGER");
  // No chunk cache while building: libhdf5 1.10 flushes a cached chunk (rows written earlier) from the
  // shorter buffer of a raw chunk written over it later, reading past that buffer (found by this harness;
  // a flaw of the builder's libhdf5 calls, not of evloader's readers).
  H5 dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  H5Pset_chunk_cache(dapl.id, 0, 0, H5D_CHUNK_CACHE_W0_DEFAULT);
  H5 ds(H5Dcreate2(file, path.c_str(), type.id, space.id, H5P_DEFAULT, dcpl.id, dapl.id), H5Dclose);
  H5Eclear2(H5E_DEFAULT);
  if (!ds.ok()) return;
  r.datasets[which] = std::move(ds);
  r.type_codes[which] = type_code;
  Shadow& s = r.shadows[which];
  s.dims = dims;
  s.row_bytes = elem;
  for (std::size_t k = 1; k < dims.size(); ++k) s.row_bytes *= dims[k];
  s.tracked = rank > 0 && total <= kMaxAllocatedBytes && !is_vlen_string(type.id) &&
              H5Tget_class(type.id) != H5T_OPAQUE && !r.ecf[which];
  if (s.tracked) s.bytes.assign(static_cast<std::size_t>(total), 0);
}

// Rows [first, first + rows) along dim 0, bytes straight from the input in the file type's layout.
void write_rows(Recipe& r, FuzzInput& in) {
  const Which which = static_cast<Which>(in.take<std::uint8_t>() % kWhichCount);
  if (which == cd_events) r.cd_other_writes = true;
  const std::uint64_t first = in.take<std::uint32_t>();
  const std::uint64_t rows = in.take<std::uint16_t>() % 64;
  Shadow& s = r.shadows[which];
  if (!r.datasets[which].ok() || s.dims.empty() || rows == 0 || s.row_bytes == 0) return;
  if (s.row_bytes * rows > kMaxAllocatedBytes || first + rows > s.dims[0]) return;
  std::vector<std::uint8_t> buffer(static_cast<std::size_t>(s.row_bytes * rows), 0);
  const auto bytes = in.take_bytes(buffer.size());
  if (!bytes.empty()) std::memcpy(buffer.data(), bytes.data(), bytes.size());
  H5 type(H5Dget_type(r.datasets[which].id), H5Tclose);
  H5 fspace(H5Dget_space(r.datasets[which].id), H5Sclose);
  std::vector<hsize_t> start(s.dims.size(), 0), count = s.dims;
  start[0] = first;
  count[0] = rows;
  H5 mspace(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
  if (H5Sselect_hyperslab(fspace.id, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0)
    return;
  // Written in the file's own type (no conversion): what a reader converting to native types sees is
  // the same value. Through the ECF filter, HDF5 encodes (or refuses) the chunk.
  if (H5Dwrite(r.datasets[which].id, type.id, mspace.id, fspace.id, H5P_DEFAULT, buffer.data()) < 0) {
    H5Eclear2(H5E_DEFAULT);
    s.tracked = false;  // a partly written chunk: no exact expectation
    return;
  }
  if (s.tracked) std::memcpy(s.bytes.data() + first * s.row_bytes, buffer.data(), buffer.size());
}

bool write_chunk(Recipe& r, std::span<const std::uint8_t> bytes, Which which, std::uint64_t chunk_index,
                 std::uint32_t mask) {
  Shadow& s = r.shadows[which];
  if (!r.datasets[which].ok() || s.dims.empty() || r.chunk0[which] == 0) return false;
  std::vector<hsize_t> offset(s.dims.size(), 0);
  offset[0] = chunk_index * r.chunk0[which];
  if (offset[0] >= s.dims[0]) return false;
  // libhdf5 1.10 does not check the offset against empty extents and crashes in its chunk index.
  if (std::find(s.dims.begin(), s.dims.end(), hsize_t{0}) != s.dims.end()) return false;
  // Filtered chunks that inflate to less than a chunk make libhdf5 1.10's H5Dread read past its buffer:
  // a known libhdf5 flaw evloader cannot check for (tests/fuzz/hdf5_attributes_fuzzer.cpp's header), so
  // raw chunks go only where evloader reads them itself (ECF events, deflated tensor frames) or where
  // it checks them before H5Dread (no filter).
  const std::uint8_t f = r.filters[which];
  const auto code = r.type_codes[which] % 32;
  const bool native_frames = r.frame_chunks[which] && (code <= 5 || code == 8 || code == 9);
  if (!(f == 0 || (which == cd_events && f == 8) || (which == data && f == 1 && native_frames))) return false;
  // Sized once (HDF5 wants at least one byte): GCC 12 warns falsely about push_back on an empty vector.
  std::vector<std::uint8_t> copy(std::max<std::size_t>(1, bytes.size()), 0);
  if (!bytes.empty()) std::memcpy(copy.data(), bytes.data(), bytes.size());
  s.tracked = false;  // raw chunk bytes: the readers' business to decode (or refuse)
  if (H5Dwrite_chunk(r.datasets[which].id, H5P_DEFAULT, mask, offset.data(), copy.size(), copy.data()) < 0) {
    H5Eclear2(H5E_DEFAULT);
    if (which == cd_events) r.cd_other_writes = true;  // what HDF5 kept of it is unknown
    return false;
  }
  return true;
}

void raw_chunk(Recipe& r, FuzzInput& in) {
  const Which which = static_cast<Which>(in.take<std::uint8_t>() % kWhichCount);
  const std::uint64_t index = in.take<std::uint32_t>();
  const auto mask = in.take<std::uint32_t>();
  const auto bytes = in.take_bytes(in.take<std::uint16_t>());
  if (which == cd_events) r.cd_other_writes = true;
  write_chunk(r, bytes, which, index, mask);
}

void ecf_chunk(Recipe& r, FuzzInput& in) {
  const Which which = static_cast<Which>(in.take<std::uint8_t>() % kWhichCount);
  const std::uint64_t index = in.take<std::uint32_t>();
  const auto mode = in.take<std::uint8_t>();
  const std::size_t n = in.take<std::uint16_t>() % 2048;
  std::vector<EventCD> events(n);
  std::int64_t t = in.take<std::int32_t>();
  for (EventCD& e : events) {
    e.x = static_cast<std::uint16_t>(in.take<std::uint16_t>() & 0x7FF);
    e.y = static_cast<std::uint16_t>(in.take<std::uint16_t>() & 0x7FF);
    const auto pt = in.take<std::uint8_t>();
    e.p = static_cast<std::int16_t>(pt & 1);
    t += pt >> 1;
    e.t = t;
  }
  std::vector<std::byte> chunk;
  std::optional<evloader::ecf::Mode> m;
  if (mode % 4 != 3) m = static_cast<evloader::ecf::Mode>(mode % 4);
  evloader::ecf::encode(events, chunk, m);
  if (write_chunk(r, {reinterpret_cast<const std::uint8_t*>(chunk.data()), chunk.size()}, which, index, 0) &&
      which == cd_events)
    r.ecf_chunks[index] = std::move(events);
}

// What evloader must read from /CD/events when it holds Metavision's records in ECF chunks our encoder
// wrote, every chunk present with the events the dataset needs from it (OpenEB's reader contract: a
// chunk holds at least min(chunk size, events left) events, the extra ones are dropped). Before the
// geometry filter and the time shift; nullopt when there is no such exact expectation.
std::optional<std::vector<EventCD>> expected_events(const Recipe& r) {
  const Shadow& s = r.shadows[cd_events];
  if (r.cd_other_writes || r.type_codes[cd_events] % 32 != 22 || s.dims.size() != 1 ||
      r.filters[cd_events] != 8 || r.chunk0[cd_events] == 0)
    return std::nullopt;
  const std::uint64_t n = s.dims[0], chunk = r.chunk0[cd_events];
  std::vector<EventCD> out;
  for (std::uint64_t first = 0; first < n; first += chunk) {
    const auto it = r.ecf_chunks.find(first / chunk);
    const std::uint64_t needed = std::min(chunk, n - first);
    if (it == r.ecf_chunks.end() || it->second.size() < needed || it->second.size() > chunk)
      return std::nullopt;
    out.insert(out.end(), it->second.begin(), it->second.begin() + static_cast<std::ptrdiff_t>(needed));
  }
  return out;
}

std::filesystem::path scratch_path(bool event_file) {
  const std::filesystem::path dir =
      std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
  return dir / ("evloader_fuzz_h5_" + std::to_string(::getpid()) + (event_file ? ".hdf5" : ".h5"));
}

// Builds the file in memory (core driver) and writes it to `path` when closed.
std::optional<Recipe> build(FuzzInput& in, const std::filesystem::path& path) {
  Recipe r;
  const auto target = in.take<std::uint8_t>();
  r.event_file = target & 1;
  r.latest = target & 2;
  r.options.on_violation = (target & 4) ? evloader::OnViolation::raise : evloader::OnViolation::skip;
  r.options.decode_triggers = (target & 8) == 0;
  r.options.time_origin = (target & 16) ? evloader::TimeOrigin::metavision : evloader::TimeOrigin::absolute;
  r.options.index_storage = evloader::IndexStorage::memory;
  r.read_params = in.take_bytes(24);

  evloader::detail::Hdf5Lock lock;
  H5 fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // In memory, written to `path` in one go on close (much faster than the sec2 driver's many writes).
  H5Pset_fapl_core(fapl.id, 4 << 20,
                   true);  // large steps: growing a big dataset by 64 KiB reallocs was quadratic
  if (r.latest) H5Pset_libver_bounds(fapl.id, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  H5 file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id), H5Fclose);
  FUZZ_CHECK(file.ok());
  for (int records = 0; in.remaining() > 0 && records < 64; ++records) {
    switch (in.take<std::uint8_t>()) {
      case 'A': add_attribute(file.id, r, in); break;
      case 'D': add_dataset(file.id, r, in); break;
      case 'W': write_rows(r, in); break;
      case 'C': raw_chunk(r, in); break;
      case 'E': ecf_chunk(r, in); break;
      default: break;
    }
    H5Eclear2(H5E_DEFAULT);
  }
  for (auto& d : r.datasets) d.reset();  // ids must not outlive the file nor the lock
  FUZZ_CHECK(H5Fclose(file.id) >= 0);
  file.id = -1;
  return r;
}

// EVLOADER_FUZZ_VERBOSE=1: say why each input was refused (to see what a corpus reaches).
void note(const char* what) {
  static const bool verbose = std::getenv("EVLOADER_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "refused: %s\n", what);
}

// --- Tensor files -------------------------------------------------------------------------------------
void check_tensor_file(const std::filesystem::path& path, const Recipe& r, FuzzInput& in) {
  std::optional<evloader::TensorFileReader> reader;
  try {
    reader.emplace(path);
  } catch (const evloader::Error& e) {
    note(e.what());
    return;
  }
  const evloader::TensorFileInfo& info = reader->info();
  // The shape is the dataset's, positive and plausible; the sensor is known.
  const Shadow& s = r.shadows[data];
  FUZZ_CHECK(s.dims.size() == 4);
  FUZZ_CHECK(info.channels > 0 && info.height > 0 && info.width > 0);
  FUZZ_CHECK(static_cast<hsize_t>(info.channels) == s.dims[1] &&
             static_cast<hsize_t>(info.height) == s.dims[2] && static_cast<hsize_t>(info.width) == s.dims[3]);
  FUZZ_CHECK(reader->num_frames() >= 0 && static_cast<hsize_t>(reader->num_frames()) == s.dims[0]);
  FUZZ_CHECK(info.sensor.known() && reader->sensor_size() == info.sensor);
  if (info.mode == evloader::TensorMode::delta_t) {
    FUZZ_CHECK(info.delta_t > 0);
    FUZZ_CHECK(reader->last_timestamps().empty());
  } else {
    FUZZ_CHECK(static_cast<std::int64_t>(reader->last_timestamps().size()) == reader->num_frames());
    FUZZ_CHECK(info.n_events >= 0);
  }
  FUZZ_CHECK(reader->duration() >= 0 || info.mode == evloader::TensorMode::n_events);

  // check(): only ConfigError, whatever is asked.
  evloader::TensorRequest request;
  request.events_to_tensor = in.take_bool() ? info.events_to_tensor : "histo";
  request.delta_t = in.take<std::uint8_t>() & 1 ? info.delta_t : in.take<std::uint32_t>();
  request.channels = in.take<std::uint8_t>() % 4;
  request.height = static_cast<int>(in.take<std::int16_t>());
  request.width = static_cast<int>(in.take<std::int16_t>());
  if (in.take_bool()) request.mode = info.mode;
  try {
    reader->check(request);
  } catch (const evloader::ConfigError&) {
  }

  // Reads: a few frames (and some past the end), bytes as written, zeros past the end.
  const std::size_t frame_elems = static_cast<std::size_t>(info.channels) * info.height * info.width;
  const std::size_t elem = evloader::tensor_dtype_size(info.dtype);
  if (frame_elems * elem > (std::size_t{1} << 18)) return;
  const std::int64_t first = static_cast<std::int64_t>(in.take_in(0, 4));
  const std::int64_t count = static_cast<std::int64_t>(in.take_in(0, 3));
  std::vector<std::byte> raw(static_cast<std::size_t>(count) * frame_elems * elem);
  try {
    reader->read_raw(first, count, raw);
  } catch (const evloader::FormatError& e) {
    note(e.what());
    return;  // a chunk the reader refuses (e.g. raw chunk bytes)
  }
  for (std::int64_t f = 0; f < count; ++f) {
    const std::int64_t frame = first + f;
    const std::byte* got = raw.data() + static_cast<std::size_t>(f) * frame_elems * elem;
    if (frame >= reader->num_frames()) {
      FUZZ_CHECK(std::all_of(got, got + frame_elems * elem, [](std::byte b) { return b == std::byte{0}; }));
      continue;
    }
    // Shadowed bytes are in the file's byte order; the reader returns native (little-endian) values.
    const auto code = r.type_codes[data] % 32;
    const bool little = code <= 9;
    if (s.tracked && little && s.row_bytes == frame_elems * elem)
      FUZZ_CHECK(
          std::memcmp(got, s.bytes.data() + static_cast<std::size_t>(frame) * s.row_bytes, s.row_bytes) == 0);
  }
  std::vector<float> floats(static_cast<std::size_t>(count) * frame_elems);
  try {
    reader->read_frames(first, count, 0, 0, floats);
  } catch (const evloader::FormatError& e) {
    note(e.what());
    FUZZ_CHECK(false);  // read_raw of the same frames succeeded
  }
  if (info.dtype == evloader::TensorDtype::float32 && !info.store_as_uint8 && !raw.empty())
    FUZZ_CHECK(std::memcmp(floats.data(), raw.data(), raw.size()) == 0);
  // Downscaled reads of any size up to the stored one: ConfigError for larger sizes only.
  const int h = static_cast<int>(in.take_in(0, static_cast<std::uint64_t>(info.height) + 1));
  const int w = static_cast<int>(in.take_in(0, static_cast<std::uint64_t>(info.width) + 1));
  if (h > 0 && w > 0) {
    std::vector<float> small(static_cast<std::size_t>(count) * info.channels * h * w);
    try {
      reader->read_frames(first, count, h, w, small);
      FUZZ_CHECK(h <= info.height && w <= info.width);
    } catch (const evloader::ConfigError&) {
      FUZZ_CHECK(h > info.height || w > info.width);
    }
  }
  if (info.mode == evloader::TensorMode::delta_t) {
    const evloader::Timestamp t0 = static_cast<evloader::Timestamp>(in.take_in(0, 4)) * info.delta_t;
    const evloader::Timestamp t1 = t0 + static_cast<evloader::Timestamp>(in.take_in(0, 2)) * info.delta_t;
    const std::int64_t frames = t1 / info.delta_t - t0 / info.delta_t;
    std::vector<float> window(static_cast<std::size_t>(frames) * frame_elems);
    FUZZ_CHECK(reader->read_window(t0, t1, 0, 0, window) == frames);
  }
}

// --- Event files ----------------------------------------------------------------------------------------
void check_event_file(const std::filesystem::path& path, const Recipe& r, FuzzInput& in) {
  std::unique_ptr<evloader::EventReader> reader;
  evloader::EventBuffer all;
  try {
    reader = evloader::EventReader::open(path, r.options);
    const evloader::Geometry g = reader->geometry();
    // A few reads from the start, then everything (bounded by what the file can hold).
    const std::uint64_t step = 1 + in.take_in(0, 5000);
    for (int k = 0; k < 3 && !reader->is_done(); ++k) {
      evloader::EventBuffer part = reader->load_n_events(step);
      FUZZ_CHECK(part.size() <= step);
      for (const EventCD& e : part)
        if (g.known()) FUZZ_CHECK(e.x < g.width && e.y < g.height);
    }
    reader->reset();
    all = reader->load_all();
    for (const EventCD& e : all)
      if (g.known()) FUZZ_CHECK(e.x < g.width && e.y < g.height);
    (void)reader->take_triggers();
  } catch (const evloader::Error& e) {
    note(e.what());
    return;
  } catch (const evloader::ConfigError& e) {
    note(e.what());
    return;
  }
  // Exactly the events written, inside the geometry, shifted by the (Metavision) time shift.
  if (const auto written = expected_events(r)) {
    const evloader::Geometry g = reader->geometry();
    std::vector<EventCD> expected;
    bool violation = false;
    evloader::Timestamp prev = std::numeric_limits<evloader::Timestamp>::min();
    for (EventCD e : *written) {
      if (g.known() && (e.x >= g.width || e.y >= g.height)) {
        violation = true;
        continue;
      }
      violation |= e.t < prev;
      prev = e.t;
      // The reader saturates (a hostile time_shift attribute must not overflow the times).
      const evloader::Timestamp shift = reader->time_shift();
      if (__builtin_sub_overflow(e.t, shift, &e.t))
        e.t = shift < 0 ? std::numeric_limits<evloader::Timestamp>::max()
                        : std::numeric_limits<evloader::Timestamp>::min();
      expected.push_back(e);
    }
    FUZZ_CHECK(!(violation && r.options.on_violation == evloader::OnViolation::raise));
    FUZZ_CHECK(all.size() == expected.size() && std::equal(expected.begin(), expected.end(), all.begin()));
  }
  // The index decodes the same chunks again: it must agree.
  FUZZ_CHECK(reader->event_count() == all.size());
  if (!all.empty()) {
    FUZZ_CHECK(reader->first_timestamp() == all[0].t);
    const std::uint64_t i = in.take_in(0, all.size() - 1);
    reader->seek_event(i);
    const auto one = reader->load_n_events(1);
    FUZZ_CHECK(one.size() == 1 && one[0] == all[i]);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data_in, std::size_t size) {
  static const bool ecf_registered = evloader::ecf::register_filter();
  FUZZ_CHECK(ecf_registered);
  FuzzInput in(data_in, size);
  const auto peek = size ? data_in[0] : 0;
  const std::filesystem::path path = scratch_path(peek & 1);
  std::optional<Recipe> recipe = build(in, path);
  if (!recipe) return 0;
  largest_allocation = 0;  // the readers' allocations only (the builder's libhdf5 may grow big files)
  FuzzInput params(recipe->read_params.data(), recipe->read_params.size());
  if (recipe->event_file) {
    check_event_file(path, *recipe, params);
  } else {
    check_tensor_file(path, *recipe, params);
  }
  // Recipes build files of a few MiB at most and the readers must not allocate for extents the file does
  // not store (1 MiB of records beyond the stored bytes' worth at most): 64 MiB is far above both.
  if (allocation_hooks()) FUZZ_CHECK(largest_allocation <= (std::size_t{64} << 20));
  std::error_code ec;
  std::filesystem::remove(path, ec);
  return 0;
}
