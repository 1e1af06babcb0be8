// SPDX-License-Identifier: Apache-2.0
// The common interface of the RAW word-stream decoders (EVT 2.0, EVT 2.1, EVT 3.0).
//
// A decoder is pure: bytes in, events out, state carried across calls so that a stream may be cut at
// any byte (partial words and multi-word events are kept for the next call). It never throws per event:
// protocol violations are counted in DecodeStats; with OnViolation::raise the first violation of a
// decode() call throws FormatError naming the absolute byte offset of the offending word.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "evloader/core/pod_buffer.hpp"
#include "evloader/core/types.hpp"
#include "evloader/io/decode_stats.hpp"

namespace evloader {

enum class RawEncoding { evt2, evt21, evt3 };

/// Word order of EVT 2.1 64-bit words: `little` (one LE u64) or `legacy` (two LE u32, high half first).
enum class Evt21Order { little, legacy };

struct DecoderOptions {
  /// Events with x >= width or y >= height are dropped and counted. Unknown geometry (0) disables the check
  /// (coordinates are still limited by the word format: 11 bits).
  Geometry geometry{};
  OnViolation on_violation = OnViolation::skip;
  Evt21Order evt21_order = Evt21Order::little;
  /// Also decode external trigger events (into the trigger buffer passed to decode()).
  bool decode_triggers = true;
};

/// Everything a decoder needs to resume at a word boundary: stored in the time index so that seeking
/// does not decode from the start. Each decoder uses the fields it needs; the others stay 0.
struct DecoderState {
  std::int64_t time_base = 0;  ///< EVT2/2.1: (t_high << 6) + loops; EVT3: (time_high << 12) + loops
  std::int64_t time = 0;       ///< current full timestamp (EVT2.1/EVT3 keep a running time)
  std::int64_t last_event_t = INT64_MIN;  ///< t of the last event emitted (for the time_backwards count)
  std::int64_t first_time_high = -1;      ///< raw value of the first TIME_HIGH seen, -1 before it
  std::int32_t loops = 0;                 ///< counter wrap-arounds so far
  std::int32_t y = 0;                     ///< EVT3 current row
  std::int32_t base_x = 0;                ///< EVT3 vector base
  std::int32_t polarity = 0;              ///< EVT3 vector polarity
  std::int32_t has_time_base = 0;         ///< 1 once a TIME_HIGH was seen
  std::int32_t y_valid = 0;               ///< EVT3: 1 once an ADDR_Y was seen (and the row is a CD row)
  std::int32_t skip_words = 0;            ///< continuation words still to skip (multi-word events)
  std::int32_t reserved = 0;

  friend bool operator==(const DecoderState&, const DecoderState&) = default;
};
static_assert(sizeof(DecoderState) == 64);

class EventDecoder {
 public:
  virtual ~EventDecoder() = default;

  [[nodiscard]] virtual RawEncoding encoding() const noexcept = 0;
  /// Size of one word in bytes: 4 (EVT2), 8 (EVT2.1), 2 (EVT3).
  [[nodiscard]] virtual std::size_t word_size() const noexcept = 0;
  /// Largest number of CD events one word can produce (for sizing output buffers).
  [[nodiscard]] virtual std::size_t max_events_per_word() const noexcept = 0;

  /// Decode a piece of the word stream, appending CD events to `cd` and, when `triggers` is not null and
  /// the options ask for it, trigger events to `triggers`. `stream_offset` is the absolute byte offset of
  /// `bytes[0]` in the file (used in error messages). A trailing partial word is kept for the next call.
  virtual void decode(std::span<const std::byte> bytes, EventBuffer& cd, TriggerBuffer* triggers,
                      std::int64_t stream_offset = -1) = 0;

  /// End of stream: counts a kept partial word as truncated_bytes and drops it.
  virtual void finish() = 0;

  /// The state at the current position. Only meaningful when no partial word is pending
  /// (pending_bytes() == 0), which is the case after decoding a whole number of words.
  [[nodiscard]] virtual DecoderState state() const = 0;
  /// Resume from a state saved by state(); drops any pending partial word.
  virtual void restore(const DecoderState& state) = 0;
  /// Back to the start-of-stream state (stats are kept; call reset_stats() to clear them).
  virtual void reset() = 0;

  [[nodiscard]] virtual std::size_t pending_bytes() const noexcept = 0;

  /// The Metavision SDK's time shift (formats.md §1.5) once the first TIME_HIGH was seen:
  /// EVT2/2.1 `first << 6`, EVT3 `(first - 1) << 12` (0 when first is 0).
  [[nodiscard]] virtual std::optional<std::int64_t> metavision_time_shift() const = 0;

  [[nodiscard]] const DecodeStats& stats() const noexcept { return stats_; }
  void reset_stats() noexcept { stats_ = {}; }
  [[nodiscard]] const DecoderOptions& options() const noexcept { return options_; }

 protected:
  explicit EventDecoder(const DecoderOptions& options) : options_(options) {}
  DecoderOptions options_;
  DecodeStats stats_;
};

[[nodiscard]] std::unique_ptr<EventDecoder> make_decoder(RawEncoding encoding, const DecoderOptions& options);

[[nodiscard]] std::string to_string(RawEncoding encoding);

}  // namespace evloader
