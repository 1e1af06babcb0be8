// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the loader bindings: Python objects held by C++, kwargs dicts, schedule items as tuples.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <memory>
#include <string>

#include "evloader/core/error.hpp"
#include "evloader/loader/engine.hpp"
#include "evloader/loader/schedule.hpp"
#include "evloader/preprocess/preprocessor.hpp"

namespace evloader::python {

namespace nb = nanobind;

/// Python objects kept in C++ (labels) must be released with the GIL held, whichever thread drops them.
/// engine.next() without the GIL, checking for signals every 100 ms while the batch is not ready: Ctrl-C
/// interrupts a training loop waiting for a slow batch instead of waiting for it (the caller's finally
/// stops the workers).
inline std::shared_ptr<Batch> next_batch_interruptible(Engine& engine) {
  while (true) {
    bool ready;
    {
      nb::gil_scoped_release unlocked;
      ready = engine.wait_ready(std::chrono::milliseconds(100));
      if (ready) return engine.next();
    }
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
  }
}

inline std::shared_ptr<void> keep_python_object(nb::object obj) {
  return std::shared_ptr<void>(new nb::object(std::move(obj)), [](void* p) {
    nb::gil_scoped_acquire locked;
    delete static_cast<nb::object*>(p);
  });
}

/// A Python dict of preprocessing kwargs as the kernels' typed map.
inline Kwargs kwargs_from_dict(const nb::dict& d) {
  Kwargs out;
  for (auto [key, value] : d) {
    std::string name = nb::cast<std::string>(key);
    if (value.is_none())
      out[name] = std::monostate{};
    else if (nb::isinstance<nb::bool_>(value))
      out[name] = nb::cast<bool>(value);
    else if (nb::isinstance<nb::int_>(value))
      out[name] = nb::cast<std::int64_t>(value);
    else if (nb::isinstance<nb::float_>(value))
      out[name] = nb::cast<double>(value);
    else if (nb::isinstance<nb::str>(value))
      out[name] = nb::cast<std::string>(value);
    else
      throw ConfigError("preprocess kwarg '" + name + "' must be None, a bool, a number or a string");
  }
  return out;
}

/// (padding, entry, recording, start, duration, keep_memory)
inline nb::tuple item_tuple(const ScheduleItem& i) {
  return nb::make_tuple(i.padding, i.entry, i.recording, i.start, i.duration, i.keep_memory);
}

/// The batch tensor [T, N, C, H, W] as a torch tensor sharing the buffer (no copy); the batch (and so its
/// pooled buffer) lives as long as the tensor.
inline nb::object batch_to_torch(const std::shared_ptr<Batch>& batch) {
  const BatchShape& s = batch->shape();
  auto* owner = new std::shared_ptr<Batch>(batch);
  nb::capsule capsule(owner, [](void* p) noexcept { delete static_cast<std::shared_ptr<Batch>*>(p); });
  std::size_t dims[5] = {static_cast<std::size_t>(s.num_tbins), static_cast<std::size_t>(s.batch_size),
                         static_cast<std::size_t>(s.channels), static_cast<std::size_t>(s.height),
                         static_cast<std::size_t>(s.width)};
  return nb::cast(
      nb::ndarray<nb::pytorch, float, nb::ndim<5>, nb::c_contig>(batch->data(), 5, dims, capsule));
}

/// The Python label objects of each slot (None where a slot has none).
inline nb::list batch_labels(const Batch& batch) {
  nb::list labels;
  for (const auto& l : batch.labels) labels.append(l ? *static_cast<nb::object*>(l.get()) : nb::none());
  return labels;
}

}  // namespace evloader::python
