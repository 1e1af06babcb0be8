// SPDX-License-Identifier: Apache-2.0
// PLACEHOLDER: replaced by the real decoder.
#include "evloader/core/error.hpp"
#include "io/detail/codecs.hpp"

namespace evloader::detail {
std::unique_ptr<EventDecoder> make_evt3_decoder(const DecoderOptions&) { throw Error("not implemented"); }
}  // namespace evloader::detail
