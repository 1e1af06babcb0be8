// SPDX-License-Identifier: Apache-2.0
// Encoders that turn events back into RAW word streams (EVT 2.0, EVT 2.1, EVT 3.0). Used by the RAW
// writer and by the tests' round trips.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "evloader/core/types.hpp"
#include "evloader/io/decoder.hpp"

namespace evloader {

class EventEncoder {
 public:
  virtual ~EventEncoder() = default;

  /// Append the words for these events to `out`. CD events and triggers are each sorted by t, and
  /// every t is >= the last t encoded by a previous call (ConfigError otherwise, also for t < 0 and for
  /// coordinates the format cannot hold). The two lists are merged in time order (CD first at equal t).
  virtual void encode(std::span<const EventCD> cd, std::span<const EventExtTrigger> triggers,
                      std::vector<std::byte>& out) = 0;
  /// Flush whatever is buffered (e.g. a pending EVT3 vector) at the end of the stream.
  virtual void finish(std::vector<std::byte>& out) = 0;
};

/// EVT2.1 ignores `order` unless `encoding` is evt21.
[[nodiscard]] std::unique_ptr<EventEncoder> make_encoder(RawEncoding encoding,
                                                         Evt21Order order = Evt21Order::little);

}  // namespace evloader
