// SPDX-License-Identifier: Apache-2.0
// HDF5 C API helpers shared by the event-file reader and writer (callers hold the HDF5 lock).
#include "io/hdf5/h5_util.hpp"

#include <cstring>
#include <vector>

#include "evloader/core/types.hpp"

namespace evloader::detail::h5 {

namespace {

herr_t keep_innermost(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n == 0 && err && err->desc) *out = err->desc;
  return 0;
}

herr_t collect_attribute(hid_t location, const char* name, const H5A_info_t*, void* data) {
  auto* out = static_cast<std::map<std::string, std::string>*>(data);
  Handle attr = attribute(H5Aopen(location, name, H5P_DEFAULT));
  if (!attr) return 0;
  if (auto text = read_attribute_text(attr.get())) (*out)[name] = *text;
  return 0;
}

}  // namespace

std::string last_error() {
  std::string message;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, &keep_innermost, &message);
  return message;
}

bool path_exists(hid_t file, const std::string& path) {
  std::string prefix;
  std::size_t start = 1;
  while (start <= path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    prefix = path.substr(0, slash);
    if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    start = slash + 1;
  }
  return true;
}

Handle event_cd_type() {
  Handle t = type(H5Tcreate(H5T_COMPOUND, sizeof(EventCD)));
  H5Tinsert(t.get(), "x", offsetof(EventCD, x), H5T_STD_U16LE);
  H5Tinsert(t.get(), "y", offsetof(EventCD, y), H5T_STD_U16LE);
  H5Tinsert(t.get(), "p", offsetof(EventCD, p), H5T_STD_I16LE);
  H5Tinsert(t.get(), "t", offsetof(EventCD, t), H5T_STD_I64LE);
  return t;
}

Handle trigger_type() {
  Handle t = type(H5Tcreate(H5T_COMPOUND, sizeof(EventExtTrigger)));
  H5Tinsert(t.get(), "p", offsetof(EventExtTrigger, p), H5T_STD_I16LE);
  H5Tinsert(t.get(), "t", offsetof(EventExtTrigger, t), H5T_STD_I64LE);
  H5Tinsert(t.get(), "id", offsetof(EventExtTrigger, id), H5T_STD_I16LE);
  return t;
}

Handle index_type() {
  Handle t = type(H5Tcreate(H5T_COMPOUND, 16));
  H5Tinsert(t.get(), "id", 0, H5T_STD_U64LE);
  H5Tinsert(t.get(), "ts", 8, H5T_STD_I64LE);
  return t;
}

std::optional<std::string> read_attribute_text(hid_t attr) {
  Handle file_type = type(H5Aget_type(attr));
  Handle sp = space(H5Aget_space(attr));
  if (!file_type || !sp || H5Sget_simple_extent_npoints(sp.get()) != 1) return std::nullopt;
  switch (H5Tget_class(file_type.get())) {
    case H5T_STRING: {
      if (H5Tis_variable_str(file_type.get()) > 0) {
        Handle mem = type(H5Tcopy(H5T_C_S1));
        H5Tset_size(mem.get(), H5T_VARIABLE);
        H5Tset_cset(mem.get(), H5Tget_cset(file_type.get()));
        char* value = nullptr;
        if (H5Aread(attr, mem.get(), &value) < 0) return std::nullopt;
        std::string text = value ? value : "";
        H5free_memory(value);
        return text;
      }
      const std::size_t size = H5Tget_size(file_type.get());
      if (size == 0 || size > (1u << 20)) return std::nullopt;
      Handle mem = type(H5Tcopy(H5T_C_S1));
      H5Tset_size(mem.get(), size + 1);
      H5Tset_strpad(mem.get(), H5T_STR_NULLTERM);
      std::vector<char> buffer(size + 1, '\0');
      if (H5Aread(attr, mem.get(), buffer.data()) < 0) return std::nullopt;
      return std::string(buffer.data(), strnlen(buffer.data(), buffer.size()));
    }
    case H5T_INTEGER: {
      std::int64_t value = 0;
      if (H5Aread(attr, H5T_NATIVE_INT64, &value) < 0) return std::nullopt;
      return std::to_string(value);
    }
    case H5T_FLOAT: {
      double value = 0;
      if (H5Aread(attr, H5T_NATIVE_DOUBLE, &value) < 0) return std::nullopt;
      return std::to_string(value);
    }
    default: return std::nullopt;
  }
}

std::map<std::string, std::string> read_attributes(hid_t object) {
  std::map<std::string, std::string> out;
  hsize_t idx = 0;
  H5Aiterate2(object, H5_INDEX_NAME, H5_ITER_INC, &idx, &collect_attribute, &out);
  return out;
}

bool write_string_attribute(hid_t object, const std::string& name, const std::string& value) {
  if (H5Aexists(object, name.c_str()) > 0 && H5Adelete(object, name.c_str()) < 0) return false;
  Handle str = type(H5Tcopy(H5T_C_S1));
  if (!str || H5Tset_size(str.get(), H5T_VARIABLE) < 0) return false;
  Handle sp = space(H5Screate(H5S_SCALAR));
  Handle attr = attribute(H5Acreate2(object, name.c_str(), str.get(), sp.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!attr) return false;
  const char* text = value.c_str();
  return H5Awrite(attr.get(), str.get(), &text) >= 0;
}

}  // namespace evloader::detail::h5
