// SPDX-License-Identifier: Apache-2.0
#include "evloader/core/error.hpp"
#include "io/detail/codecs.hpp"

namespace evloader {

std::unique_ptr<EventDecoder> make_decoder(RawEncoding encoding, const DecoderOptions& options) {
  switch (encoding) {
    case RawEncoding::evt2: return detail::make_evt2_decoder(options);
    case RawEncoding::evt21: return detail::make_evt21_decoder(options);
    case RawEncoding::evt3: return detail::make_evt3_decoder(options);
  }
  throw ConfigError("unknown RAW encoding");
}

std::unique_ptr<EventEncoder> make_encoder(RawEncoding encoding, Evt21Order order) {
  switch (encoding) {
    case RawEncoding::evt2: return detail::make_evt2_encoder();
    case RawEncoding::evt21: return detail::make_evt21_encoder(order);
    case RawEncoding::evt3: return detail::make_evt3_encoder();
  }
  throw ConfigError("unknown RAW encoding");
}

std::string to_string(RawEncoding encoding) {
  switch (encoding) {
    case RawEncoding::evt2: return "EVT2";
    case RawEncoding::evt21: return "EVT21";
    case RawEncoding::evt3: return "EVT3";
  }
  return "unknown";
}

}  // namespace evloader
