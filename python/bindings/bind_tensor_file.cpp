// SPDX-License-Identifier: Apache-2.0
// PLACEHOLDER: bindings of the tensor_file module.
#include "bindings.hpp"

namespace evloader::python {

void bind_tensor_file(nb::module_& m) { (void)m; }

}  // namespace evloader::python
