// SPDX-License-Identifier: Apache-2.0
// PLACEHOLDER: replaced by the real encoder.
#include "evloader/core/error.hpp"
#include "io/detail/codecs.hpp"

namespace evloader::detail {
std::unique_ptr<EventEncoder> make_evt2_encoder() { throw Error("not implemented"); }
}  // namespace evloader::detail
