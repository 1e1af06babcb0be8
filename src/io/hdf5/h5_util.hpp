// SPDX-License-Identifier: Apache-2.0
// Small RAII and attribute helpers over the HDF5 C API for the event-file reader and writer. Every
// function here must be called while holding detail::Hdf5Lock (HDF5 is not thread-safe).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>

namespace evloader::detail::h5 {

/// Owns an HDF5 identifier; closes it with the matching H5*close. Destroy it under the HDF5 lock.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) noexcept : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), closer_(o.closer_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      closer_ = o.closer_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  void reset() noexcept {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = H5I_INVALID_HID;
  }
  [[nodiscard]] hid_t get() const noexcept { return id_; }
  [[nodiscard]] bool valid() const noexcept { return id_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

inline Handle file(hid_t id) { return {id, &H5Fclose}; }
inline Handle dataset(hid_t id) { return {id, &H5Dclose}; }
inline Handle group(hid_t id) { return {id, &H5Gclose}; }
inline Handle space(hid_t id) { return {id, &H5Sclose}; }
inline Handle type(hid_t id) { return {id, &H5Tclose}; }
inline Handle plist(hid_t id) { return {id, &H5Pclose}; }
inline Handle attribute(hid_t id) { return {id, &H5Aclose}; }

/// The innermost message of HDF5's error stack (what went wrong, in HDF5's words), or "".
std::string last_error();

/// True when `path` (absolute, e.g. "/CD/events") names an existing link, checking each component.
bool path_exists(hid_t file, const std::string& path);

/// Metavision's EventCD / EventExtTrigger / index record as HDF5 compound types (native = little-endian
/// on every platform evloader supports).
Handle event_cd_type();
Handle trigger_type();
Handle index_type();

/// A scalar attribute as text: strings as they are, integers and floats in decimal; nullopt for other
/// types or when it cannot be read.
std::optional<std::string> read_attribute_text(hid_t attribute);
/// Every attribute of an object that read_attribute_text() understands.
std::map<std::string, std::string> read_attributes(hid_t object);
/// Write (or replace) a scalar variable-length string attribute, as OpenEB does. False on failure.
bool write_string_attribute(hid_t object, const std::string& name, const std::string& value);

}  // namespace evloader::detail::h5
