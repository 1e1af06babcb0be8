// SPDX-License-Identifier: Apache-2.0
// The evloader._core extension module: one bind_<module>() per C++ module.
#include "bindings.hpp"

NB_MODULE(_core, m) {
  m.doc() = "evloader C++ core (use the evloader package, not this module directly)";
  evloader::python::bind_core(m);
  evloader::python::bind_io(m);
  evloader::python::bind_preprocess(m);
  evloader::python::bind_hdf5(m);
  evloader::python::bind_tensor_file(m);
  evloader::python::bind_labels(m);
  evloader::python::bind_loader(m);
  evloader::python::bind_stream(m);
}
