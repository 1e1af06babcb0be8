// SPDX-License-Identifier: Apache-2.0
// Tensor files in Metavision's HDF5 layout: HDF5 only under the global lock, (de)compression outside it.
#include "evloader/preprocess/tensor_file.hpp"

#include <hdf5.h>
#include <libdeflate.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <type_traits>
#include <utility>

#include "evloader/core/error.hpp"
#include "evloader/preprocess/area_resize.hpp"
#include "preprocess/tensor_file/hdf5_lock.hpp"

namespace evloader {

std::size_t tensor_dtype_size(TensorDtype dtype) noexcept {
  switch (dtype) {
    case TensorDtype::uint8:
    case TensorDtype::int8: return 1;
    case TensorDtype::uint16:
    case TensorDtype::int16: return 2;
    case TensorDtype::uint32:
    case TensorDtype::int32:
    case TensorDtype::float32: return 4;
    case TensorDtype::float64: return 8;
  }
  return 0;
}

std::string_view tensor_dtype_name(TensorDtype dtype) noexcept {
  switch (dtype) {
    case TensorDtype::uint8: return "uint8";
    case TensorDtype::int8: return "int8";
    case TensorDtype::uint16: return "uint16";
    case TensorDtype::int16: return "int16";
    case TensorDtype::uint32: return "uint32";
    case TensorDtype::int32: return "int32";
    case TensorDtype::float32: return "float32";
    case TensorDtype::float64: return "float64";
  }
  return "?";
}

TensorDtype tensor_dtype_from_name(std::string_view name) {
  for (auto d : {TensorDtype::uint8, TensorDtype::int8, TensorDtype::uint16, TensorDtype::int16,
                 TensorDtype::uint32, TensorDtype::int32, TensorDtype::float32, TensorDtype::float64})
    if (tensor_dtype_name(d) == name) return d;
  throw ConfigError("unsupported tensor dtype '" + std::string(name) +
                    "' (use uint8, int8, uint16, int16, uint32, int32, float32 or float64)");
}

std::string_view mode_name(TensorMode mode) noexcept {
  return mode == TensorMode::delta_t ? "delta_t" : "n_events";
}

namespace {

using detail::Hdf5Lock;

// A file never holds more than this many times its size in data: deflate's ceiling is about 1032:1.
// Extents beyond it are declared without storage (HDF5 reads fill values there): damaged or hostile.
constexpr long double kMaxCompressionRatio = 1100;
constexpr long double kStorageSlackBytes = 1 << 20;

// Attributes that belong to the layout itself; everything else scalar goes to TensorFileInfo::kwargs.
constexpr const char* kReservedAttrs[] = {"events_to_tensor",   "delta_t",        "event_input_width",
                                          "event_input_height", "shape",          "mode",
                                          "n_events",           "store_as_uint8", "start_ts"};

bool is_reserved(const std::string& name) {
  return std::any_of(std::begin(kReservedAttrs), std::end(kReservedAttrs),
                     [&](const char* r) { return name == r; });
}

// An HDF5 identifier closed on scope exit. Only ever created and destroyed while an Hdf5Lock is held.
class Hid {
 public:
  using Closer = herr_t (*)(hid_t);
  Hid() = default;
  Hid(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Hid(const Hid&) = delete;
  Hid& operator=(const Hid&) = delete;
  Hid(Hid&& o) noexcept : id_(std::exchange(o.id_, -1)), closer_(o.closer_) {}
  Hid& operator=(Hid&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, -1);
      closer_ = o.closer_;
    }
    return *this;
  }
  ~Hid() { reset(); }
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = -1;
  }
  [[nodiscard]] hid_t get() const noexcept { return id_; }
  [[nodiscard]] bool valid() const noexcept { return id_ >= 0; }
  hid_t release() noexcept { return std::exchange(id_, -1); }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// The deepest description on HDF5's error stack (the actual cause, e.g. "file signature not found"), then
// the stack is cleared. Called under the lock.
std::string hdf5_error_detail() {
  std::string detail;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
        if (e && e->desc && *e->desc) *static_cast<std::string*>(data) = e->desc;
        return 0;
      },
      &detail);
  H5Eclear2(H5E_DEFAULT);
  return detail;
}

[[noreturn]] void hdf5_format_error(const std::filesystem::path& path, const std::string& what) {
  const std::string detail = hdf5_error_detail();
  throw_format_error(path, -1, detail.empty() ? what : what + " (" + detail + ")");
}

[[noreturn]] void hdf5_io_error(const std::filesystem::path& path, const std::string& what) {
  const std::string detail = hdf5_error_detail();
  throw_io_error(path, detail.empty() ? what : what + " (" + detail + ")");
}

// libhdf5 1.10 copies whole chunks out of what it read without checking that there were that many bytes:
// an unfiltered chunk stored shorter than the chunk (a damaged or hostile file) makes H5Dread read past
// its own buffer. Before H5Dread on an unfiltered chunked dataset, every chunk the selection [start,
// start + count) touches must store exactly its bytes (unstored ones read as fill values). Returns a
// description of the first one that does not, or "". (Filtered chunks that inflate to less are libhdf5's
// problem too; they cannot be checked without inflating them.) Called under the lock.
std::string short_raw_chunk(hid_t dataset, int rank, const hsize_t* start, const hsize_t* count) {
  Hid dcpl(H5Dget_create_plist(dataset), H5Pclose);
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED || H5Pget_nfilters(dcpl.get()) != 0 || rank < 1 || rank > 8)
    return "";
  hsize_t chunk[8] = {};
  if (H5Pget_chunk(dcpl.get(), rank, chunk) != rank) return "no chunk size";
  Hid type(H5Dget_type(dataset), H5Tclose);
  hsize_t bytes = H5Tget_size(type.get());
  hsize_t first[8] = {}, last[8] = {}, at[8] = {};
  for (int k = 0; k < rank; ++k) {
    if (chunk[k] == 0) return "no chunk size";
    if (count[k] == 0) return "";
    bytes *= chunk[k];
    first[k] = at[k] = start[k] / chunk[k];
    last[k] = (start[k] + count[k] - 1) / chunk[k];
  }
  for (;;) {  // every chunk of the selection, last dimension fastest
    // The chunk index's size (H5Dget_chunk_storage_size reports the nominal size of unfiltered chunks).
    hsize_t offset[8] = {}, stored = 0;
    for (int k = 0; k < rank; ++k) offset[k] = at[k] * chunk[k];
    unsigned mask = 0;
    haddr_t addr = HADDR_UNDEF;
    if (H5Dget_chunk_info_by_coord(dataset, offset, &mask, &addr, &stored) < 0 || addr == HADDR_UNDEF) {
      H5Eclear2(H5E_DEFAULT);  // never written
      stored = 0;
    }
    if (stored != 0 && stored != bytes) {
      std::string where;
      for (int k = 0; k < rank; ++k) where += (k ? ", " : "") + std::to_string(offset[k]);
      return "the chunk at (" + where + ") stores " + std::to_string(stored) + " bytes for a chunk of " +
             std::to_string(bytes);
    }
    int k = rank - 1;
    while (k >= 0 && at[k] == last[k]) at[k] = first[k], --k;
    if (k < 0) return "";
    ++at[k];
  }
}

hid_t file_access_plist() {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  // HDF5 >= 1.10 takes an flock on open; it fails on some network file systems and blocks a reader
  // while another process writes. Readers here never share a file with a writer (precompute renames
  // finished files into place), so locking buys nothing.
  if (fapl >= 0) H5Pset_file_locking(fapl, false, true);
  return fapl;
}

// --- attribute values as read from a file -------------------------------------------------------------
struct AttrValue {
  enum Kind { none, boolean, integer, floating, string, int_array } kind = none;
  bool b = false;
  std::int64_t i = 0;
  double d = 0;
  std::string s;
  std::vector<std::int64_t> ints;
};

AttrValue read_attr(hid_t attr) {
  AttrValue v;
  Hid type(H5Aget_type(attr), H5Tclose);
  Hid space(H5Aget_space(attr), H5Sclose);
  if (!type.valid() || !space.valid()) return v;
  const hssize_t npoints = H5Sget_simple_extent_npoints(space.get());
  if (npoints < 1) return v;
  switch (H5Tget_class(type.get())) {
    case H5T_STRING: {
      if (npoints != 1) return v;
      if (H5Tis_variable_str(type.get()) > 0) {
        Hid mem(H5Tcopy(H5T_C_S1), H5Tclose);
        H5Tset_size(mem.get(), H5T_VARIABLE);
        H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
        char* p = nullptr;
        if (H5Aread(attr, mem.get(), &p) < 0) return v;
        v.s = p ? p : "";
        if (p) H5free_memory(p);
      } else {
        const std::size_t size = H5Tget_size(type.get());
        if (size == 0 || size > (1u << 20)) return v;
        std::string buf(size, '\0');
        Hid mem(H5Tcopy(type.get()), H5Tclose);
        if (H5Aread(attr, mem.get(), buf.data()) < 0) return v;
        buf.resize(std::strlen(buf.c_str()));
        if (H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD)
          while (!buf.empty() && buf.back() == ' ') buf.pop_back();
        v.s = std::move(buf);
      }
      v.kind = AttrValue::string;
      return v;
    }
    case H5T_INTEGER: {
      if (npoints == 1) {
        if (H5Aread(attr, H5T_NATIVE_INT64, &v.i) < 0) return v;
        v.kind = AttrValue::integer;
      } else {
        if (npoints > 64) return v;
        v.ints.resize(static_cast<std::size_t>(npoints));
        if (H5Aread(attr, H5T_NATIVE_INT64, v.ints.data()) < 0) return v;
        v.kind = AttrValue::int_array;
      }
      return v;
    }
    case H5T_FLOAT: {
      if (npoints != 1 || H5Aread(attr, H5T_NATIVE_DOUBLE, &v.d) < 0) return v;
      v.kind = AttrValue::floating;
      return v;
    }
    case H5T_ENUM: {
      // h5py stores numpy booleans as an int8 enum {FALSE: 0, TRUE: 1}; other enums read as their value.
      if (npoints != 1) return v;
      Hid mem(H5Tget_native_type(type.get(), H5T_DIR_ASCEND), H5Tclose);
      const std::size_t size = H5Tget_size(mem.get());
      if (!mem.valid() || size == 0 || size > 8) return v;
      unsigned char raw[8] = {};
      if (H5Aread(attr, mem.get(), raw) < 0) return v;
      std::int64_t value = 0;
      switch (size) {
        case 1: value = static_cast<std::int8_t>(raw[0]); break;
        case 2:
          value = [&] {
            std::int16_t x;
            std::memcpy(&x, raw, 2);
            return x;
          }();
          break;
        case 4:
          value = [&] {
            std::int32_t x;
            std::memcpy(&x, raw, 4);
            return x;
          }();
          break;
        default: std::memcpy(&value, raw, 8); break;
      }
      bool is_bool = H5Tget_nmembers(type.get()) == 2;
      for (int m = 0; is_bool && m < 2; ++m) {
        char* name = H5Tget_member_name(type.get(), static_cast<unsigned>(m));
        const std::string n = name ? name : "";
        if (name) H5free_memory(name);
        is_bool = n == "FALSE" || n == "TRUE";
      }
      if (is_bool) {
        v.kind = AttrValue::boolean;
        v.b = value != 0;
      } else {
        v.kind = AttrValue::integer;
        v.i = value;
      }
      return v;
    }
    default: return v;
  }
}

std::map<std::string, AttrValue> read_all_attrs(hid_t obj) {
  std::map<std::string, AttrValue> out;
  H5Aiterate2(
      obj, H5_INDEX_NAME, H5_ITER_NATIVE, nullptr,
      [](hid_t loc, const char* name, const H5A_info_t*, void* data) -> herr_t {
        Hid attr(H5Aopen(loc, name, H5P_DEFAULT), H5Aclose);
        if (attr.valid())
          (*static_cast<std::map<std::string, AttrValue>*>(data))[name] = read_attr(attr.get());
        return 0;
      },
      &out);
  H5Eclear2(H5E_DEFAULT);
  return out;
}

// --- attribute writers (h5py's types for the corresponding Python values) -----------------------------
void write_attr(const std::filesystem::path& path, hid_t obj, const char* name, hid_t file_type,
                hid_t mem_type, const void* value, hid_t space_id = -1) {
  Hid space(space_id >= 0 ? space_id : H5Screate(H5S_SCALAR), H5Sclose);
  Hid attr(H5Acreate2(obj, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.valid() || H5Awrite(attr.get(), mem_type, value) < 0)
    hdf5_io_error(path, std::string("cannot write attribute '") + name + "'");
}

void write_fixed_string_attr(const std::filesystem::path& path, hid_t obj, const char* name,
                             const std::string& s) {
  // np.string_ / np.bytes_: fixed-length, NUL-padded ASCII; h5py returns numpy.bytes_.
  Hid type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<std::size_t>(1, s.size()));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  H5Tset_cset(type.get(), H5T_CSET_ASCII);
  std::string buf = s.empty() ? std::string(1, '\0') : s;
  write_attr(path, obj, name, type.get(), type.get(), buf.data());
}

void write_vlen_string_attr(const std::filesystem::path& path, hid_t obj, const char* name,
                            const std::string& s) {
  // A Python str: variable-length UTF-8; h5py returns str.
  Hid type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const char* p = s.c_str();
  write_attr(path, obj, name, type.get(), type.get(), &p);
}

void write_bool_attr(const std::filesystem::path& path, hid_t obj, const char* name, bool b) {
  Hid type(H5Tenum_create(H5T_NATIVE_INT8), H5Tclose);
  std::int8_t f = 0, t = 1;
  H5Tenum_insert(type.get(), "FALSE", &f);
  H5Tenum_insert(type.get(), "TRUE", &t);
  std::int8_t v = b ? 1 : 0;
  write_attr(path, obj, name, type.get(), type.get(), &v);
}

void write_i64_attr(const std::filesystem::path& path, hid_t obj, const char* name, std::int64_t v) {
  write_attr(path, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

hid_t file_type_of(TensorDtype dtype) {
  switch (dtype) {
    case TensorDtype::uint8: return H5T_STD_U8LE;
    case TensorDtype::int8: return H5T_STD_I8LE;
    case TensorDtype::uint16: return H5T_STD_U16LE;
    case TensorDtype::int16: return H5T_STD_I16LE;
    case TensorDtype::uint32: return H5T_STD_U32LE;
    case TensorDtype::int32: return H5T_STD_I32LE;
    case TensorDtype::float32: return H5T_IEEE_F32LE;
    case TensorDtype::float64: return H5T_IEEE_F64LE;
  }
  return H5T_IEEE_F32LE;
}

hid_t native_type_of(TensorDtype dtype) {
  switch (dtype) {
    case TensorDtype::uint8: return H5T_NATIVE_UINT8;
    case TensorDtype::int8: return H5T_NATIVE_INT8;
    case TensorDtype::uint16: return H5T_NATIVE_UINT16;
    case TensorDtype::int16: return H5T_NATIVE_INT16;
    case TensorDtype::uint32: return H5T_NATIVE_UINT32;
    case TensorDtype::int32: return H5T_NATIVE_INT32;
    case TensorDtype::float32: return H5T_NATIVE_FLOAT;
    case TensorDtype::float64: return H5T_NATIVE_DOUBLE;
  }
  return H5T_NATIVE_FLOAT;
}

// --- element conversion -------------------------------------------------------------------------------
template <class T>
void to_float(const std::byte* raw, float* out, std::size_t n, bool div255) {
  // memcpy per element: raw chunk buffers carry no alignment guarantee for T.
  for (std::size_t k = 0; k < n; ++k) {
    T v;
    std::memcpy(&v, raw + k * sizeof(T), sizeof(T));
    out[k] = static_cast<float>(v);
  }
  // As Metavision: frames.astype(float32) / 255, a float32 division.
  if (div255)
    for (std::size_t k = 0; k < n; ++k) out[k] = out[k] / 255.f;
}

void convert_to_float(TensorDtype dtype, const std::byte* raw, float* out, std::size_t n, bool div255) {
  switch (dtype) {
    case TensorDtype::uint8: to_float<std::uint8_t>(raw, out, n, div255); break;
    case TensorDtype::int8: to_float<std::int8_t>(raw, out, n, div255); break;
    case TensorDtype::uint16: to_float<std::uint16_t>(raw, out, n, div255); break;
    case TensorDtype::int16: to_float<std::int16_t>(raw, out, n, div255); break;
    case TensorDtype::uint32: to_float<std::uint32_t>(raw, out, n, div255); break;
    case TensorDtype::int32: to_float<std::int32_t>(raw, out, n, div255); break;
    case TensorDtype::float32: to_float<float>(raw, out, n, div255); break;
    case TensorDtype::float64: to_float<double>(raw, out, n, div255); break;
  }
}

struct DecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const noexcept { libdeflate_free_decompressor(d); }
};
struct CompressorDeleter {
  void operator()(libdeflate_compressor* c) const noexcept { libdeflate_free_compressor(c); }
};

libdeflate_decompressor* thread_decompressor() {
  // One per thread: a libdeflate decompressor is not shareable, and allocating one per chunk is waste.
  thread_local std::unique_ptr<libdeflate_decompressor, DecompressorDeleter> d(
      libdeflate_alloc_decompressor());
  return d.get();
}

std::string frame_shape_text(int c, int h, int w) {
  return std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
}

bool is_power_of_two(long long v) { return v > 0 && (v & (v - 1)) == 0; }

}  // namespace

// ======================================================================================================
// Writer
// ======================================================================================================

struct TensorFileWriter::Impl {
  std::filesystem::path path;
  TensorFileInfo info;  // as the reader will see it (dtype = stored dtype)
  TensorDtype input_dtype = TensorDtype::float32;
  TensorFileWriterOptions options;
  Hid file, data, stamps;
  std::int64_t index = 0;
  std::int64_t extent = 0;
  std::int64_t stamps_extent = 0;
  std::size_t frame_elems = 0;
  std::unique_ptr<libdeflate_compressor, CompressorDeleter> compressor;
  std::vector<std::uint8_t> zero_blob;  // the compressed all-zero frame, made on first use
  bool closed = false;

  void close_handles_locked() {
    stamps.reset();
    data.reset();
    file.reset();
  }
};

TensorFileWriter::TensorFileWriter(const std::filesystem::path& path, const TensorFileInfo& info,
                                   const TensorFileWriterOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  m.options = options;
  m.info = info;
  auto config = [&](const std::string& what) { throw ConfigError(path.string() + ": " + what); };
  if (info.events_to_tensor.empty()) config("events_to_tensor (the preprocessing name) is empty");
  if (info.channels <= 0 || info.height <= 0 || info.width <= 0)
    config("frame shape must be positive, got " + frame_shape_text(info.channels, info.height, info.width));
  if (!info.sensor.known()) config("the sensor size (event_input_width/height) must be known");
  if (info.mode == TensorMode::delta_t) {
    if (info.delta_t == 0) config("delta_t must be > 0 in delta_t mode");
    if (info.n_events != 0) config("n_events must be 0 in delta_t mode");
  } else {
    if (info.delta_t != 0) config("delta_t must be 0 in n_events mode");
    if (info.n_events <= 0) config("n_events must be > 0 in n_events mode");
  }
  if (options.compression_level < 0 || options.compression_level > 12)
    config("compression_level must be in 0..12, got " + std::to_string(options.compression_level));
  if (options.grow_by < 1) config("grow_by must be >= 1");
  if (options.compression_threads < 1) config("compression_threads must be >= 1");
  for (const auto& [name, value] : info.kwargs) {
    (void)value;
    if (name.empty() || is_reserved(name)) config("attribute name '" + name + "' is reserved or empty");
  }
  m.input_dtype = info.dtype;
  if (info.store_as_uint8) {
    if (info.dtype != TensorDtype::float32 && info.dtype != TensorDtype::float64)
      config("store_as_uint8 needs float frames, got " + std::string(tensor_dtype_name(info.dtype)));
    m.info.dtype = TensorDtype::uint8;
  }
  m.frame_elems = static_cast<std::size_t>(info.channels) * info.height * info.width;
  m.compressor.reset(libdeflate_alloc_compressor(options.compression_level));
  if (!m.compressor) config("cannot allocate a gzip compressor");

  Hdf5Lock lock;
  Hid fapl(file_access_plist(), H5Pclose);
  m.file = Hid(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
  if (!m.file.valid()) hdf5_io_error(path, "cannot create the HDF5 file");
  const hsize_t dims[4] = {0, static_cast<hsize_t>(info.channels), static_cast<hsize_t>(info.height),
                           static_cast<hsize_t>(info.width)};
  const hsize_t maxdims[4] = {H5S_UNLIMITED, dims[1], dims[2], dims[3]};
  const hsize_t chunk[4] = {1, dims[1], dims[2], dims[3]};
  Hid space(H5Screate_simple(4, dims, maxdims), H5Sclose);
  Hid dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  // The deflate filter recorded in the file is what readers (h5py, ours) use to decompress; the level is
  // informational since the chunks arrive already compressed through H5Dwrite_chunk.
  const unsigned level = static_cast<unsigned>(std::clamp(options.compression_level, 1, 9));
  if (H5Pset_chunk(dcpl.get(), 4, chunk) < 0 || H5Pset_deflate(dcpl.get(), level) < 0)
    hdf5_io_error(path, "cannot set up the chunked gzip layout");
  m.data = Hid(H5Dcreate2(m.file.get(), "data", file_type_of(m.info.dtype), space.get(), H5P_DEFAULT,
                          dcpl.get(), H5P_DEFAULT),
               H5Dclose);
  if (!m.data.valid()) hdf5_io_error(path, "cannot create dataset 'data'");

  const hid_t d = m.data.get();
  write_fixed_string_attr(path, d, "events_to_tensor", info.events_to_tensor);
  const std::uint32_t dt = info.delta_t;
  write_attr(path, d, "delta_t", H5T_STD_U32LE, H5T_NATIVE_UINT32, &dt);
  write_i64_attr(path, d, "event_input_width", info.sensor.width);
  write_i64_attr(path, d, "event_input_height", info.sensor.height);
  {
    const std::int64_t shape[3] = {info.channels, info.height, info.width};
    const hsize_t n = 3;
    write_attr(path, d, "shape", H5T_STD_I64LE, H5T_NATIVE_INT64, shape, H5Screate_simple(1, &n, nullptr));
  }
  write_vlen_string_attr(path, d, "mode", std::string(mode_name(info.mode)));
  write_i64_attr(path, d, "n_events", info.n_events);
  for (const auto& [key, value] : info.kwargs) {
    // Named copy: clang before 16 cannot capture a structured binding in a lambda.
    const std::string& name = key;
    std::visit(
        [&](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, bool>) {
            write_bool_attr(path, d, name.c_str(), v);
          } else if constexpr (std::is_same_v<V, std::int64_t>) {
            write_i64_attr(path, d, name.c_str(), v);
          } else if constexpr (std::is_same_v<V, double>) {
            write_attr(path, d, name.c_str(), H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
          } else {
            write_vlen_string_attr(path, d, name.c_str(), v);
          }
        },
        value);
  }
  if (info.store_as_uint8) write_bool_attr(path, d, "store_as_uint8", true);
  if (info.start_ts) write_i64_attr(path, d, "start_ts", *info.start_ts);

  if (info.mode == TensorMode::n_events) {
    const hsize_t tdims[1] = {0}, tmax[1] = {H5S_UNLIMITED}, tchunk[1] = {1};
    Hid tspace(H5Screate_simple(1, tdims, tmax), H5Sclose);
    Hid tdcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_chunk(tdcpl.get(), 1, tchunk);
    H5Pset_deflate(tdcpl.get(), level);
    m.stamps = Hid(H5Dcreate2(m.file.get(), "last_timestamps", H5T_STD_I64LE, tspace.get(), H5P_DEFAULT,
                              tdcpl.get(), H5P_DEFAULT),
                   H5Dclose);
    if (!m.stamps.valid()) hdf5_io_error(path, "cannot create dataset 'last_timestamps'");
  }
}

TensorFileWriter::~TensorFileWriter() {
  if (!impl_) return;
  try {
    close();
  } catch (...) {
    // A destructor cannot report; close() explicitly to see the error.
    Hdf5Lock lock;
    impl_->close_handles_locked();
  }
}

TensorFileWriter::TensorFileWriter(TensorFileWriter&&) noexcept = default;
TensorFileWriter& TensorFileWriter::operator=(TensorFileWriter&& other) noexcept {
  if (this != &other) {
    if (impl_) {
      try {
        close();
      } catch (...) {
        Hdf5Lock lock;
        impl_->close_handles_locked();
      }
    }
    impl_ = std::move(other.impl_);
  }
  return *this;
}

std::int64_t TensorFileWriter::index() const noexcept { return impl_->index; }
const TensorFileInfo& TensorFileWriter::info() const noexcept { return impl_->info; }
TensorDtype TensorFileWriter::input_dtype() const noexcept { return impl_->input_dtype; }
const std::filesystem::path& TensorFileWriter::path() const noexcept { return impl_->path; }

void TensorFileWriter::set_cursor(std::int64_t index) {
  Impl& m = *impl_;
  if (index < 0 || index > m.index)
    throw ConfigError(m.path.string() + ": set_cursor(" + std::to_string(index) + ") must be in [0, " +
                      std::to_string(m.index) + "]");
  m.index = index;
}

void TensorFileWriter::write(std::span<const float> frames, std::span<const Timestamp> last_timestamps) {
  Impl& m = *impl_;
  if (m.input_dtype != TensorDtype::float32)
    throw ConfigError(m.path.string() + ": the writer takes " +
                      std::string(tensor_dtype_name(m.input_dtype)) + " frames, got float32");
  if (frames.size() % m.frame_elems != 0)
    throw ConfigError(m.path.string() + ": " + std::to_string(frames.size()) +
                      " floats are not whole frames of " +
                      frame_shape_text(m.info.channels, m.info.height, m.info.width));
  write(frames.data(), static_cast<std::int64_t>(frames.size() / m.frame_elems), last_timestamps);
}

void TensorFileWriter::write(const void* frames, std::int64_t count,
                             std::span<const Timestamp> last_timestamps) {
  Impl& m = *impl_;
  if (m.closed) throw ConfigError(m.path.string() + ": the tensor file writer is closed");
  if (count < 0) throw ConfigError(m.path.string() + ": negative frame count");
  if (m.info.mode == TensorMode::n_events && static_cast<std::int64_t>(last_timestamps.size()) != count)
    throw ConfigError(m.path.string() + ": n_events mode needs one last timestamp per frame (" +
                      std::to_string(count) + " frames, " + std::to_string(last_timestamps.size()) +
                      " timestamps)");
  if (count == 0) return;

  // Everything heavy happens here, before taking the HDF5 lock: uint8 quantisation and gzip compression.
  const std::size_t n = m.frame_elems;
  const std::size_t stored_bytes = n * tensor_dtype_size(m.info.dtype);
  std::vector<std::uint8_t> quantised;
  const std::byte* source = static_cast<const std::byte*>(frames);
  if (m.info.store_as_uint8) {
    quantised.resize(n * static_cast<std::size_t>(count));
    const std::size_t total = quantised.size();
    auto quantise = [&](auto* in) {
      for (std::size_t k = 0; k < total; ++k) {
        // Metavision: np.uint8(np.around(255 * x)) with x in [0, 1]; np.around rounds half to even, as
        // nearbyint does in the default rounding mode; 255 * x is a float32 product for float32 frames.
        const auto x = in[k];
        if (!(x >= 0 && x <= 1))
          throw ConfigError(m.path.string() + ": store_as_uint8 needs values in [0, 1], got " +
                            std::to_string(static_cast<double>(x)) + " in frame " +
                            std::to_string(m.index + static_cast<std::int64_t>(k / n)));
        quantised[k] = static_cast<std::uint8_t>(std::nearbyint(static_cast<decltype(x)>(255) * x));
      }
    };
    if (m.input_dtype == TensorDtype::float32)
      quantise(static_cast<const float*>(frames));
    else
      quantise(static_cast<const double*>(frames));
    source = reinterpret_cast<const std::byte*>(quantised.data());
  }
  // Frames of zeros (frequent in sparse recordings) reuse one compressed chunk; the others are compressed
  // by up to options.compression_threads threads, each with its own compressor.
  std::vector<std::vector<std::uint8_t>> blobs(static_cast<std::size_t>(count));
  std::vector<char> failed(static_cast<std::size_t>(count), 0);
  auto compress_range = [&](std::int64_t from, std::int64_t to, libdeflate_compressor* c) {
    std::vector<std::uint8_t> scratch;
    for (std::int64_t f = from; f < to; ++f) {
      const std::size_t fi = static_cast<std::size_t>(f);
      const std::byte* frame = source + fi * stored_bytes;
      if (std::all_of(frame, frame + stored_bytes, [](std::byte b) { return b == std::byte{0}; })) continue;
      if (!c) {
        failed[fi] = 1;
        continue;
      }
      scratch.resize(libdeflate_zlib_compress_bound(c, stored_bytes));
      const std::size_t size =
          libdeflate_zlib_compress(c, frame, stored_bytes, scratch.data(), scratch.size());
      if (size == 0) failed[fi] = 1;
      blobs[fi].assign(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(size));
    }
  };
  const int threads = static_cast<int>(std::clamp<std::int64_t>(m.options.compression_threads, 1, count));
  if (threads == 1) {
    compress_range(0, count, m.compressor.get());
  } else {
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t)
      pool.emplace_back([&, t] {
        std::unique_ptr<libdeflate_compressor, CompressorDeleter> c(
            libdeflate_alloc_compressor(m.options.compression_level));
        compress_range(count * t / threads, count * (t + 1) / threads, c.get());
      });
    compress_range(0, count / threads, m.compressor.get());
    for (auto& th : pool) th.join();
  }
  if (std::any_of(failed.begin(), failed.end(), [](char v) { return v != 0; }))
    throw IoError(m.path.string() + ": gzip compression failed");
  if (m.zero_blob.empty() &&
      std::any_of(blobs.begin(), blobs.end(), [](const auto& b) { return b.empty(); })) {
    const std::vector<std::byte> zeros(stored_bytes);
    m.zero_blob.resize(libdeflate_zlib_compress_bound(m.compressor.get(), stored_bytes));
    m.zero_blob.resize(libdeflate_zlib_compress(m.compressor.get(), zeros.data(), stored_bytes,
                                                m.zero_blob.data(), m.zero_blob.size()));
    if (m.zero_blob.empty()) throw IoError(m.path.string() + ": gzip compression failed");
  }

  Hdf5Lock lock;
  const std::int64_t end = m.index + count;
  if (end > m.extent) {
    const std::int64_t grow = std::max<std::int64_t>(end - m.extent, m.options.grow_by);
    const hsize_t dims[4] = {static_cast<hsize_t>(m.extent + grow), static_cast<hsize_t>(m.info.channels),
                             static_cast<hsize_t>(m.info.height), static_cast<hsize_t>(m.info.width)};
    if (H5Dset_extent(m.data.get(), dims) < 0) hdf5_io_error(m.path, "cannot extend dataset 'data'");
    m.extent += grow;
  }
  for (std::int64_t f = 0; f < count; ++f) {
    const auto& blob =
        blobs[static_cast<std::size_t>(f)].empty() ? m.zero_blob : blobs[static_cast<std::size_t>(f)];
    const hsize_t offset[4] = {static_cast<hsize_t>(m.index + f), 0, 0, 0};
    if (H5Dwrite_chunk(m.data.get(), H5P_DEFAULT, 0, offset, blob.size(), blob.data()) < 0)
      hdf5_io_error(m.path, "cannot write frame " + std::to_string(m.index + f));
  }
  if (m.info.mode == TensorMode::n_events) {
    if (end > m.stamps_extent) {
      const hsize_t tdims[1] = {static_cast<hsize_t>(m.extent)};
      if (H5Dset_extent(m.stamps.get(), tdims) < 0) hdf5_io_error(m.path, "cannot extend 'last_timestamps'");
      m.stamps_extent = m.extent;
    }
    Hid fspace(H5Dget_space(m.stamps.get()), H5Sclose);
    const hsize_t start[1] = {static_cast<hsize_t>(m.index)}, cnt[1] = {static_cast<hsize_t>(count)};
    Hid mspace(H5Screate_simple(1, cnt, nullptr), H5Sclose);
    if (H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, cnt, nullptr) < 0 ||
        H5Dwrite(m.stamps.get(), H5T_NATIVE_INT64, mspace.get(), fspace.get(), H5P_DEFAULT,
                 last_timestamps.data()) < 0)
      hdf5_io_error(m.path, "cannot write 'last_timestamps'");
  }
  m.index = end;
}

void TensorFileWriter::close() {
  Impl& m = *impl_;
  if (m.closed) return;
  m.closed = true;
  Hdf5Lock lock;
  const hsize_t dims[4] = {static_cast<hsize_t>(m.index), static_cast<hsize_t>(m.info.channels),
                           static_cast<hsize_t>(m.info.height), static_cast<hsize_t>(m.info.width)};
  bool ok = H5Dset_extent(m.data.get(), dims) >= 0;
  if (ok && m.stamps.valid()) {
    const hsize_t tdims[1] = {static_cast<hsize_t>(m.index)};
    ok = H5Dset_extent(m.stamps.get(), tdims) >= 0;
  }
  if (!ok) {
    const std::string detail = hdf5_error_detail();
    m.close_handles_locked();
    throw IoError(m.path.string() + ": cannot trim the datasets on close" +
                  (detail.empty() ? "" : " (" + detail + ")"));
  }
  m.stamps.reset();
  m.data.reset();
  if (H5Fclose(m.file.release()) < 0) hdf5_io_error(m.path, "cannot close the HDF5 file");
}

// ======================================================================================================
// Reader
// ======================================================================================================

struct TensorFileReader::Impl {
  std::filesystem::path path;
  TensorFileInfo info;
  std::int64_t num_frames = 0;
  std::vector<Timestamp> last_ts;
  Geometry sensor;
  Hid file, data;
  hid_t mem_type = -1;         // native type of info.dtype (a predefined id, never closed)
  bool direct_chunks = false;  // chunks (1, C, H, W), little-endian, no filter or deflate only
  bool deflate = false;
  std::size_t frame_elems = 0;
  std::size_t frame_bytes = 0;

  ~Impl() {
    if (file.valid() || data.valid()) {
      Hdf5Lock lock;
      data.reset();
      file.reset();
    }
  }

  [[noreturn]] void format_error(const std::string& what) const { throw_format_error(path, -1, what); }
  [[noreturn]] void config_error(const std::string& what) const {
    throw ConfigError(path.string() + ": " + what);
  }

  // Stored bytes of frames [first, first + count) (all < num_frames) into dst. Direct chunk reads take the
  // lock once per frame and decompress outside it; other layouts fall back to one H5Dread under the lock.
  void fetch(std::int64_t first, std::int64_t count, std::byte* dst, std::vector<std::uint8_t>& packed) const;
};

TensorFileReader::TensorFileReader(const std::filesystem::path& path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw_io_error(path, "no such file");
  if (std::filesystem::is_directory(path, ec)) throw_io_error(path, "is a directory, not a tensor file");

  std::map<std::string, AttrValue> attrs;
  hsize_t dims[4] = {};
  {
    Hdf5Lock lock;
    const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
    if (is_hdf5 < 0) hdf5_io_error(path, "cannot read the file");
    if (is_hdf5 == 0) {
      H5Eclear2(H5E_DEFAULT);
      m.format_error("not an HDF5 file");
    }
    Hid fapl(file_access_plist(), H5Pclose);
    m.file = Hid(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
    if (!m.file.valid()) hdf5_io_error(path, "cannot open the HDF5 file");
    if (H5Lexists(m.file.get(), "data", H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      m.format_error("no dataset 'data' (not a precomputed tensor file)");
    }
    m.data = Hid(H5Dopen2(m.file.get(), "data", H5P_DEFAULT), H5Dclose);
    if (!m.data.valid()) hdf5_format_error(path, "cannot open dataset 'data'");
    Hid space(H5Dget_space(m.data.get()), H5Sclose);
    if (H5Sget_simple_extent_ndims(space.get()) != 4)
      m.format_error("dataset 'data' is not 4-D [N, C, H, W]");
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);

    Hid type(H5Dget_type(m.data.get()), H5Tclose);
    const H5T_class_t cls = H5Tget_class(type.get());
    const std::size_t size = H5Tget_size(type.get());
    const bool is_signed = cls == H5T_INTEGER && H5Tget_sign(type.get()) == H5T_SGN_2;
    std::optional<TensorDtype> dtype;
    if (cls == H5T_INTEGER) {
      if (size == 1) dtype = is_signed ? TensorDtype::int8 : TensorDtype::uint8;
      if (size == 2) dtype = is_signed ? TensorDtype::int16 : TensorDtype::uint16;
      if (size == 4) dtype = is_signed ? TensorDtype::int32 : TensorDtype::uint32;
    } else if (cls == H5T_FLOAT) {
      if (size == 4) dtype = TensorDtype::float32;
      if (size == 8) dtype = TensorDtype::float64;
    }
    if (!dtype)
      m.format_error("dataset 'data' has an unsupported element type (class " + std::to_string(cls) + ", " +
                     std::to_string(size) + " bytes)");
    m.info.dtype = *dtype;
    m.mem_type = native_type_of(*dtype);
    const bool little = size == 1 || H5Tget_order(type.get()) == H5T_ORDER_LE;
    // A float type with an exotic layout (not IEEE) would need HDF5's conversion: equal to the native?
    const bool native_layout = H5Tequal(type.get(), m.mem_type) > 0 || (size == 1 && cls == H5T_INTEGER);

    Hid dcpl(H5Dget_create_plist(m.data.get()), H5Pclose);
    bool chunk_ok = false;
    if (H5Pget_layout(dcpl.get()) == H5D_CHUNKED) {
      hsize_t chunk[4] = {};
      chunk_ok = H5Pget_chunk(dcpl.get(), 4, chunk) == 4 && chunk[0] == 1 && chunk[1] == dims[1] &&
                 chunk[2] == dims[2] && chunk[3] == dims[3];
    }
    const int nfilters = H5Pget_nfilters(dcpl.get());
    bool filters_ok = nfilters == 0;
    if (nfilters == 1) {
      unsigned flags = 0;
      std::size_t nelmts = 0;
      char name[64];
      const H5Z_filter_t id =
          H5Pget_filter2(dcpl.get(), 0, &flags, &nelmts, nullptr, sizeof name, name, nullptr);
      filters_ok = id == H5Z_FILTER_DEFLATE;
      m.deflate = filters_ok;
    }
    m.direct_chunks = chunk_ok && filters_ok && little && native_layout;
    if (m.direct_chunks) {
      // Frames are then read chunk by chunk (H5Dread_chunk), never-written ones through H5Dread, which
      // returns their fill values. With a chunk cache libhdf5 (1.10) keeps such a fill chunk, and for it
      // H5Dget_chunk_storage_size reports the chunk's size, so a later read of the same frame took the
      // H5Dread_chunk path and failed ("chunk address isn't defined"). Without a cache only the chunk index
      // answers; nothing is lost, since direct reads bypass the cache anyway.
      Hid dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
      if (!dapl.valid() || H5Pset_chunk_cache(dapl.get(), 0, 0, H5D_CHUNK_CACHE_W0_DEFAULT) < 0)
        hdf5_io_error(path, "cannot set up the access to dataset 'data'");
      m.data.reset();  // an already open dataset would keep its cache
      m.data = Hid(H5Dopen2(m.file.get(), "data", dapl.get()), H5Dclose);
      if (!m.data.valid()) hdf5_format_error(path, "cannot open dataset 'data'");
    }

    attrs = read_all_attrs(m.data.get());

    const auto mode_attr = attrs.find("mode");
    const bool n_events_mode = mode_attr != attrs.end() && mode_attr->second.kind == AttrValue::string &&
                               mode_attr->second.s == "n_events";
    if (n_events_mode) {
      if (H5Lexists(m.file.get(), "last_timestamps", H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        m.format_error("n_events mode but no dataset 'last_timestamps'");
      }
      Hid ts(H5Dopen2(m.file.get(), "last_timestamps", H5P_DEFAULT), H5Dclose);
      Hid tspace(ts.valid() ? H5Dget_space(ts.get()) : -1, H5Sclose);
      if (!tspace.valid() || H5Sget_simple_extent_ndims(tspace.get()) != 1)
        hdf5_format_error(path, "dataset 'last_timestamps' is not 1-D");
      hsize_t n = 0;
      H5Sget_simple_extent_dims(tspace.get(), &n, nullptr);
      if (n < dims[0])
        m.format_error("'last_timestamps' has " + std::to_string(n) + " entries for " +
                       std::to_string(dims[0]) + " frames");
      // Only the frames' entries are read, and only as many as the file can really hold: an extent
      // declared without storage (HDF5 returns fill values for it) must not make us allocate gigabytes.
      // Bounded by the file's size first (cheap), then by the dataset's stored bytes (compressed only when
      // it has filters): a small file that declares a huge deflated extent but stores no chunk of it was
      // allowed 1100x its size. H5Dget_storage_size walks the chunk index, whose size the file bounds.
      std::error_code size_ec;
      const std::uintmax_t file_size = std::filesystem::file_size(path, size_ec);
      Hid ts_dcpl(H5Dget_create_plist(ts.get()), H5Pclose);
      const long double ratio = H5Pget_nfilters(ts_dcpl.get()) == 0 ? 1 : kMaxCompressionRatio;
      const long double needed = static_cast<long double>(dims[0]) * sizeof(Timestamp);
      const hsize_t stored = H5Dget_storage_size(ts.get());
      if (needed > static_cast<long double>(size_ec ? 0 : file_size) * ratio + kStorageSlackBytes ||
          needed > static_cast<long double>(stored) * ratio + kStorageSlackBytes)
        m.format_error("'last_timestamps' of " + std::to_string(dims[0]) +
                       " frames: more timestamps than a file of " + std::to_string(file_size) +
                       " bytes can hold (it stores " + std::to_string(stored) + " bytes of them)");
      m.last_ts.resize(static_cast<std::size_t>(dims[0]));
      if (dims[0] > 0) {
        const hsize_t start[1] = {0}, count[1] = {dims[0]};
        if (const std::string bad = short_raw_chunk(ts.get(), 1, start, count); !bad.empty())
          m.format_error("dataset 'last_timestamps': " + bad);
        Hid mspace(H5Screate_simple(1, count, nullptr), H5Sclose);
        if (H5Sselect_hyperslab(tspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr) < 0 ||
            H5Dread(ts.get(), H5T_NATIVE_INT64, mspace.get(), tspace.get(), H5P_DEFAULT, m.last_ts.data()) <
                0)
          hdf5_format_error(path, "cannot read 'last_timestamps'");
      }
    }
  }

  // --- interpret the attributes (no HDF5 calls below) ---
  TensorFileInfo& info = m.info;
  m.num_frames = static_cast<std::int64_t>(dims[0]);
  if (dims[1] == 0 || dims[2] == 0 || dims[3] == 0 || dims[1] > (1u << 16) || dims[2] > (1u << 16) ||
      dims[3] > (1u << 16))
    m.format_error("dataset 'data' has an implausible frame shape");
  info.channels = static_cast<int>(dims[1]);
  info.height = static_cast<int>(dims[2]);
  info.width = static_cast<int>(dims[3]);
  m.frame_elems = static_cast<std::size_t>(dims[1]) * dims[2] * dims[3];
  m.frame_bytes = m.frame_elems * tensor_dtype_size(info.dtype);

  auto take = [&](const char* name) -> const AttrValue* {
    auto it = attrs.find(name);
    return it == attrs.end() ? nullptr : &it->second;
  };
  auto integer = [&](const char* name, const AttrValue* v) -> std::int64_t {
    if (v->kind == AttrValue::integer) return v->i;
    // Whole floats within int64 only: converting a larger one is undefined behaviour.
    if (v->kind == AttrValue::floating && v->d == std::floor(v->d) && v->d >= -0x1p63 && v->d < 0x1p63)
      return static_cast<std::int64_t>(v->d);
    m.format_error(std::string("attribute '") + name + "' is not an integer");
  };

  const AttrValue* name = take("events_to_tensor");
  if (!name) m.format_error("missing attribute 'events_to_tensor' on 'data' (the preprocessing name)");
  if (name->kind != AttrValue::string) m.format_error("attribute 'events_to_tensor' is not a string");
  info.events_to_tensor = name->s;

  if (const AttrValue* mode = take("mode")) {
    if (mode->kind != AttrValue::string || (mode->s != "delta_t" && mode->s != "n_events"))
      m.format_error("attribute 'mode' must be 'delta_t' or 'n_events', got '" + mode->s + "'");
    info.mode = mode->s == "n_events" ? TensorMode::n_events : TensorMode::delta_t;
  }
  if (const AttrValue* dt = take("delta_t")) {
    const std::int64_t v = integer("delta_t", dt);
    if (v < 0 || v > std::numeric_limits<std::uint32_t>::max())
      m.format_error("attribute 'delta_t' out of range: " + std::to_string(v));
    info.delta_t = static_cast<std::uint32_t>(v);
  } else if (info.mode == TensorMode::delta_t) {
    m.format_error("missing attribute 'delta_t' on 'data'");
  }
  if (info.mode == TensorMode::delta_t && info.delta_t == 0)
    m.format_error("attribute 'delta_t' is 0 in delta_t mode");
  if (const AttrValue* ne = take("n_events")) {
    info.n_events = integer("n_events", ne);
    if (info.n_events < 0)
      m.format_error("attribute 'n_events' is negative: " + std::to_string(info.n_events));
  }
  // duration() = num_frames * delta_t must be a time: refuse frame counts that overflow it.
  if (dims[0] > static_cast<hsize_t>(std::numeric_limits<std::int64_t>::max() /
                                     std::max<std::uint32_t>(1, info.delta_t)))
    m.format_error("dataset 'data' declares " + std::to_string(dims[0]) +
                   " frames: their duration at delta_t " + std::to_string(info.delta_t) + " us overflows");
  if (const AttrValue* u8 = take("store_as_uint8"))
    info.store_as_uint8 =
        (u8->kind == AttrValue::boolean && u8->b) || (u8->kind == AttrValue::integer && u8->i);
  if (const AttrValue* st = take("start_ts")) info.start_ts = integer("start_ts", st);
  if (const AttrValue* shape = take("shape")) {
    const bool match = shape->kind == AttrValue::int_array && shape->ints.size() == 3 &&
                       shape->ints[0] == info.channels && shape->ints[1] == info.height &&
                       shape->ints[2] == info.width;
    if (!match)
      m.format_error("attribute 'shape' does not match dataset 'data' " +
                     frame_shape_text(info.channels, info.height, info.width));
  }
  const AttrValue* ew = take("event_input_width");
  const AttrValue* eh = take("event_input_height");
  if (ew && eh) {
    const std::int64_t w = integer("event_input_width", ew), h = integer("event_input_height", eh);
    if (w <= 0 || h <= 0 || w > (1 << 20) || h > (1 << 20))
      m.format_error("implausible event_input_width/height " + std::to_string(w) + "x" + std::to_string(h));
    info.sensor = {static_cast<int>(w), static_cast<int>(h)};
  } else {
    const AttrValue* ds = take("downsampling_factor");
    if (!ds) ds = take("shift");
    const std::int64_t shift = ds ? integer("downsampling_factor", ds) : 0;
    if (shift < 0 || shift > 16) m.format_error("implausible downsampling_factor " + std::to_string(shift));
    // Same plausibility bound as event_input_width/height (and no int overflow: 65536 << 16 = 2^32).
    const std::int64_t w = std::int64_t{info.width} << shift, h = std::int64_t{info.height} << shift;
    if (w > (1 << 20) || h > (1 << 20))
      m.format_error("implausible sensor size " + std::to_string(w) + "x" + std::to_string(h) + " (frames " +
                     std::to_string(info.width) + "x" + std::to_string(info.height) +
                     " << downsampling_factor " + std::to_string(shift) + ")");
    info.sensor = {static_cast<int>(w), static_cast<int>(h)};
  }
  for (const auto& [key, value] : attrs) {
    if (is_reserved(key)) continue;
    switch (value.kind) {
      case AttrValue::boolean: info.kwargs[key] = value.b; break;
      case AttrValue::integer: info.kwargs[key] = value.i; break;
      case AttrValue::floating: info.kwargs[key] = value.d; break;
      case AttrValue::string: info.kwargs[key] = value.s; break;
      default: break;
    }
  }
}

TensorFileReader::~TensorFileReader() = default;
TensorFileReader::TensorFileReader(TensorFileReader&&) noexcept = default;
TensorFileReader& TensorFileReader::operator=(TensorFileReader&&) noexcept = default;

const std::filesystem::path& TensorFileReader::path() const noexcept { return impl_->path; }
const TensorFileInfo& TensorFileReader::info() const noexcept { return impl_->info; }
std::int64_t TensorFileReader::num_frames() const noexcept { return impl_->num_frames; }
Geometry TensorFileReader::sensor_size() const noexcept { return impl_->info.sensor; }
const std::vector<Timestamp>& TensorFileReader::last_timestamps() const noexcept { return impl_->last_ts; }

Timestamp TensorFileReader::duration() const noexcept {
  const Impl& m = *impl_;
  if (m.info.mode == TensorMode::n_events) return m.last_ts.empty() ? 0 : m.last_ts.back();
  return m.num_frames * static_cast<Timestamp>(m.info.delta_t);
}

void TensorFileReader::check(const TensorRequest& r) const {
  const Impl& m = *impl_;
  const TensorFileInfo& info = m.info;
  if (!r.events_to_tensor.empty() && r.events_to_tensor != info.events_to_tensor)
    m.config_error("precomputed with preprocessing '" + info.events_to_tensor + "', but '" +
                   r.events_to_tensor + "' was requested");
  if (r.mode && *r.mode != info.mode)
    m.config_error("precomputed in " + std::string(mode_name(info.mode)) + " mode, but " +
                   std::string(mode_name(*r.mode)) + " mode was requested");
  if (r.delta_t && r.delta_t != info.delta_t)
    m.config_error("precomputed with delta_t " + std::to_string(info.delta_t) + " us, but delta_t " +
                   std::to_string(r.delta_t) + " us was requested");
  if (r.n_events && r.n_events != info.n_events)
    m.config_error("precomputed with n_events " + std::to_string(info.n_events) + ", but " +
                   std::to_string(r.n_events) + " was requested");
  if (r.channels && r.channels != info.channels)
    m.config_error("frames have " + std::to_string(info.channels) + " channels, but " +
                   std::to_string(r.channels) + " were requested");
  if ((r.height == 0) != (r.width == 0)) m.config_error("give both height and width, or neither");
  if (r.height) {
    const Geometry s = info.sensor;
    const bool pow2 = r.height > 0 && r.width > 0 && s.height % r.height == 0 && s.width % r.width == 0 &&
                      is_power_of_two(s.height / r.height) && is_power_of_two(s.width / r.width);
    if (!pow2)
      m.config_error("requested size " + std::to_string(r.height) + "x" + std::to_string(r.width) +
                     " is not the sensor size " + std::to_string(s.height) + "x" + std::to_string(s.width) +
                     " divided by a power of two");
    if (r.height > info.height || r.width > info.width)
      m.config_error("requested size " + std::to_string(r.height) + "x" + std::to_string(r.width) +
                     " is larger than the stored frames " + std::to_string(info.height) + "x" +
                     std::to_string(info.width));
  }
}

void TensorFileReader::Impl::fetch(std::int64_t first, std::int64_t count, std::byte* dst,
                                   std::vector<std::uint8_t>& packed) const {
  if (count <= 0) return;
  if (!direct_chunks) {
    Hdf5Lock lock;
    Hid fspace(H5Dget_space(data.get()), H5Sclose);
    const hsize_t start[4] = {static_cast<hsize_t>(first), 0, 0, 0};
    const hsize_t cnt[4] = {static_cast<hsize_t>(count), static_cast<hsize_t>(info.channels),
                            static_cast<hsize_t>(info.height), static_cast<hsize_t>(info.width)};
    Hid mspace(H5Screate_simple(4, cnt, nullptr), H5Sclose);
    if (const std::string bad = short_raw_chunk(data.get(), 4, start, cnt); !bad.empty())
      throw_format_error(path, -1, "dataset 'data': " + bad);
    if (H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, cnt, nullptr) < 0 ||
        H5Dread(data.get(), mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, dst) < 0)
      hdf5_format_error(
          path, "cannot read frames " + std::to_string(first) + ".." + std::to_string(first + count - 1));
    return;
  }
  // Deflate never grows data by more than a few bytes per 64 KiB block; anything larger is corruption.
  const std::size_t max_packed = frame_bytes + frame_bytes / 16 + 1024;
  for (std::int64_t f = 0; f < count; ++f) {
    const std::int64_t frame = first + f;
    std::byte* out = dst + static_cast<std::size_t>(f) * frame_bytes;
    hsize_t nbytes = 0;
    std::uint32_t filter_mask = 0;
    bool allocated = true;
    {
      Hdf5Lock lock;
      const hsize_t offset[4] = {static_cast<hsize_t>(frame), 0, 0, 0};
      if (H5Dget_chunk_storage_size(data.get(), offset, &nbytes) < 0 || nbytes == 0) {
        // Never written (a file closed without trimming): HDF5 returns the fill value.
        H5Eclear2(H5E_DEFAULT);
        allocated = false;
        Hid fspace(H5Dget_space(data.get()), H5Sclose);
        const hsize_t cnt[4] = {1, static_cast<hsize_t>(info.channels), static_cast<hsize_t>(info.height),
                                static_cast<hsize_t>(info.width)};
        Hid mspace(H5Screate_simple(4, cnt, nullptr), H5Sclose);
        if (H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, offset, nullptr, cnt, nullptr) < 0 ||
            H5Dread(data.get(), mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, out) < 0)
          hdf5_format_error(path, "cannot read frame " + std::to_string(frame));
      } else {
        if (nbytes > max_packed)
          throw_format_error(path, -1,
                             "corrupt chunk of frame " + std::to_string(frame) + ": " +
                                 std::to_string(nbytes) + " stored bytes for a " +
                                 std::to_string(frame_bytes) + "-byte frame");
        packed.resize(static_cast<std::size_t>(nbytes));
        if (H5Dread_chunk(data.get(), H5P_DEFAULT, offset, &filter_mask, packed.data()) < 0)
          hdf5_format_error(path, "cannot read the chunk of frame " + std::to_string(frame));
      }
    }
    if (!allocated) continue;
    // Outside the lock from here: other threads use HDF5 while this one inflates.
    const bool raw = !deflate || (filter_mask & 1u);
    if (raw) {
      if (nbytes != frame_bytes)
        throw_format_error(path, -1,
                           "corrupt chunk of frame " + std::to_string(frame) + ": " + std::to_string(nbytes) +
                               " bytes instead of " + std::to_string(frame_bytes));
      std::memcpy(out, packed.data(), frame_bytes);
      continue;
    }
    std::size_t actual = 0;
    const libdeflate_result res = libdeflate_zlib_decompress(
        thread_decompressor(), packed.data(), static_cast<std::size_t>(nbytes), out, frame_bytes, &actual);
    if (res != LIBDEFLATE_SUCCESS || actual != frame_bytes)
      throw_format_error(
          path, -1,
          "corrupt gzip chunk of frame " + std::to_string(frame) +
              (res == LIBDEFLATE_SUCCESS
                   ? " (" + std::to_string(actual) + " bytes instead of " + std::to_string(frame_bytes) + ")"
                   : std::string(" (inflate failed)")));
  }
}

void TensorFileReader::read_raw(std::int64_t first, std::int64_t count, std::span<std::byte> out) const {
  const Impl& m = *impl_;
  if (first < 0 || count < 0) m.config_error("negative frame index or count");
  if (out.size() != static_cast<std::size_t>(count) * m.frame_bytes)
    m.config_error("output buffer holds " + std::to_string(out.size()) + " bytes, " +
                   std::to_string(static_cast<std::size_t>(count) * m.frame_bytes) + " needed");
  const std::int64_t in_file = std::clamp<std::int64_t>(m.num_frames - first, 0, count);
  std::vector<std::uint8_t> packed;
  m.fetch(first, in_file, out.data(), packed);
  std::fill(out.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(in_file) * m.frame_bytes),
            out.end(), std::byte{0});
}

void TensorFileReader::read_frames(std::int64_t first, std::int64_t count, int height, int width,
                                   std::span<float> out) const {
  const Impl& m = *impl_;
  const TensorFileInfo& info = m.info;
  if (first < 0 || count < 0) m.config_error("negative frame index or count");
  if (height == 0 && width == 0) {
    height = info.height;
    width = info.width;
  }
  if (height <= 0 || width <= 0 || height > info.height || width > info.width)
    m.config_error("cannot read " + std::to_string(height) + "x" + std::to_string(width) + " frames from " +
                   std::to_string(info.height) + "x" + std::to_string(info.width) +
                   " stored frames (only downscaling is supported)");
  const std::size_t out_frame = static_cast<std::size_t>(info.channels) * height * width;
  if (out.size() != static_cast<std::size_t>(count) * out_frame)
    m.config_error("output buffer holds " + std::to_string(out.size()) + " floats, " +
                   std::to_string(static_cast<std::size_t>(count) * out_frame) + " needed for " +
                   std::to_string(count) + " frames of " + frame_shape_text(info.channels, height, width));
  const bool resize = height != info.height || width != info.width;
  std::optional<AreaResizer> resizer;
  if (resize) resizer.emplace(info.height, info.width, height, width);

  const std::int64_t in_file = std::clamp<std::int64_t>(m.num_frames - first, 0, count);
  const bool as_is = !resize && info.dtype == TensorDtype::float32 && !info.store_as_uint8;
  std::vector<std::uint8_t> packed;
  std::vector<std::byte> raw;
  std::vector<float> full;
  if (!m.direct_chunks && in_file > 0) {
    // Fallback layouts: one locked H5Dread of the whole range, then conversion frame by frame.
    raw.resize(static_cast<std::size_t>(in_file) * m.frame_bytes);
    m.fetch(first, in_file, raw.data(), packed);
  }
  for (std::int64_t f = 0; f < in_file; ++f) {
    float* dst = out.data() + static_cast<std::size_t>(f) * out_frame;
    const std::byte* src;
    if (m.direct_chunks) {
      if (as_is) {
        m.fetch(first + f, 1, reinterpret_cast<std::byte*>(dst), packed);
        continue;
      }
      if (resize && info.dtype == TensorDtype::float32 && !info.store_as_uint8) {
        // Inflate straight into the float frame that gets resized: no conversion pass.
        full.resize(m.frame_elems);
        m.fetch(first + f, 1, reinterpret_cast<std::byte*>(full.data()), packed);
        resizer->resize(full.data(), dst, static_cast<std::size_t>(info.channels));
        continue;
      }
      raw.resize(m.frame_bytes);
      m.fetch(first + f, 1, raw.data(), packed);
      src = raw.data();
    } else {
      src = raw.data() + static_cast<std::size_t>(f) * m.frame_bytes;
    }
    if (!resize) {
      convert_to_float(info.dtype, src, dst, m.frame_elems, info.store_as_uint8);
    } else {
      full.resize(m.frame_elems);
      convert_to_float(info.dtype, src, full.data(), m.frame_elems, info.store_as_uint8);
      resizer->resize(full.data(), dst, static_cast<std::size_t>(info.channels));
    }
  }
  std::fill(out.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(in_file) * out_frame),
            out.end(), 0.f);
}

std::int64_t TensorFileReader::read_window(Timestamp t0, Timestamp t1, int height, int width,
                                           std::span<float> out) const {
  const Impl& m = *impl_;
  if (m.info.mode != TensorMode::delta_t)
    m.config_error("time windows need a delta_t-mode file; this one was cut in n_events mode");
  if (t0 < 0 || t1 < t0)
    m.config_error("invalid time window [" + std::to_string(t0) + ", " + std::to_string(t1) + ")");
  const std::int64_t dt = m.info.delta_t;
  const std::int64_t first = t0 / dt, count = t1 / dt - first;
  read_frames(first, count, height, width, out);
  return count;
}

}  // namespace evloader
