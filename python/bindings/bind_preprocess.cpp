// SPDX-License-Identifier: Apache-2.0
// PLACEHOLDER: bindings of the preprocess module.
#include "bindings.hpp"

namespace evloader::python {

void bind_preprocess(nb::module_& m) { (void)m; }

}  // namespace evloader::python
