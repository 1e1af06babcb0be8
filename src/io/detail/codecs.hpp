// SPDX-License-Identifier: Apache-2.0
// Constructors of the concrete codecs, one per source file; make_decoder/make_encoder dispatch to them.
#pragma once

#include <memory>

#include "evloader/io/decoder.hpp"
#include "evloader/io/encoder.hpp"

namespace evloader::detail {

std::unique_ptr<EventDecoder> make_evt2_decoder(const DecoderOptions& options);
std::unique_ptr<EventDecoder> make_evt21_decoder(const DecoderOptions& options);
std::unique_ptr<EventDecoder> make_evt3_decoder(const DecoderOptions& options);

std::unique_ptr<EventEncoder> make_evt2_encoder();
std::unique_ptr<EventEncoder> make_evt21_encoder(Evt21Order order);
std::unique_ptr<EventEncoder> make_evt3_encoder();

}  // namespace evloader::detail
