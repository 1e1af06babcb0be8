// SPDX-License-Identifier: Apache-2.0
// PLACEHOLDER: bindings of the labels module.
#include "bindings.hpp"

namespace evloader::python {

void bind_labels(nb::module_& m) { (void)m; }

}  // namespace evloader::python
