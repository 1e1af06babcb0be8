// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the loader bindings: Python objects held by C++, kwargs dicts, schedule items as tuples.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <memory>
#include <string>

#include "evloader/core/error.hpp"
#include "evloader/loader/schedule.hpp"
#include "evloader/preprocess/preprocessor.hpp"

namespace evloader::python {

namespace nb = nanobind;

/// Python objects kept in C++ (labels) must be released with the GIL held, whichever thread drops them.
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

}  // namespace evloader::python
