// SPDX-License-Identifier: Apache-2.0
// Declarations shared by the binding translation units, and the zero-copy hand-over of record buffers.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <utility>

#include "evloader/core/pod_buffer.hpp"

namespace evloader::python {

namespace nb = nanobind;

void bind_core(nb::module_& m);
void bind_io(nb::module_& m);
void bind_preprocess(nb::module_& m);
void bind_hdf5(nb::module_& m);         // empty when built without HDF5
void bind_tensor_file(nb::module_& m);  // empty when built without HDF5
void bind_labels(nb::module_& m);
void bind_loader(nb::module_& m);
void bind_stream(nb::module_& m);

/// Records as a numpy uint8 array of shape [n, sizeof(T)] that owns the buffer (no copy); the Python
/// layer views it with the matching structured dtype.
template <class T>
nb::ndarray<nb::numpy, std::uint8_t, nb::ndim<2>> records_to_numpy(PodBuffer<T>&& buffer) {
  auto* owned = new PodBuffer<T>(std::move(buffer));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<PodBuffer<T>*>(p); });
  // numpy refuses a null data pointer for an empty array only in some versions; point at a static byte.
  static std::uint8_t empty_storage[sizeof(T)] = {};
  auto* data = owned->size() ? reinterpret_cast<std::uint8_t*>(owned->data()) : empty_storage;
  return nb::ndarray<nb::numpy, std::uint8_t, nb::ndim<2>>(data, {owned->size(), sizeof(T)}, owner);
}

/// Bytes of a C-contiguous numpy array of records, checked against sizeof(T).
template <class T>
std::span<const T> numpy_to_records(const nb::ndarray<std::uint8_t, nb::c_contig, nb::device::cpu>& bytes) {
  if (bytes.size() % sizeof(T) != 0)
    throw nb::value_error("record array has a byte size that is not a multiple of the record size");
  return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
}

}  // namespace evloader::python
