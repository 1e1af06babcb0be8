// SPDX-License-Identifier: Apache-2.0
// PLACEHOLDER: bindings of the streaming loader (CDProcessorDataLoader).
#include "bindings.hpp"

namespace evloader::python {

void bind_stream(nb::module_& m) { (void)m; }

}  // namespace evloader::python
