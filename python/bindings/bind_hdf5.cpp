// SPDX-License-Identifier: Apache-2.0
// PLACEHOLDER: bindings of the hdf5 module.
#include "bindings.hpp"

namespace evloader::python {

void bind_hdf5(nb::module_& m) { (void)m; }

}  // namespace evloader::python
