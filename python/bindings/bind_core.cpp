// SPDX-License-Identifier: Apache-2.0
// Bindings of the core module: exceptions, Geometry, record sizes.
#include <nanobind/operators.h>
#include <nanobind/stl/string.h>

#include "bindings.hpp"
#include "evloader/core/error.hpp"
#include "evloader/core/types.hpp"

namespace evloader::python {

void bind_core(nb::module_& m) {
  // Registered base first: nanobind tries the most recently registered translator first.
  nb::exception<Error>(m, "Error", PyExc_RuntimeError);
  nb::exception<IoError>(m, "IoError", PyExc_OSError);
  nb::exception<FormatError>(m, "FormatError", PyExc_ValueError);
  nb::exception<ConfigError>(m, "ConfigError", PyExc_ValueError);

  nb::class_<Geometry>(m, "Geometry")
      .def(nb::init<>())
      .def(nb::init<int, int>(), nb::arg("width"), nb::arg("height"))
      .def_rw("width", &Geometry::width)
      .def_rw("height", &Geometry::height)
      .def("known", &Geometry::known)
      .def(nb::self == nb::self)
      .def("__repr__", [](const Geometry& g) {
        return "Geometry(width=" + std::to_string(g.width) + ", height=" + std::to_string(g.height) + ")";
      });

  m.attr("EVENT_CD_SIZE") = sizeof(EventCD);
  m.attr("EVENT_EXT_TRIGGER_SIZE") = sizeof(EventExtTrigger);
}

}  // namespace evloader::python
