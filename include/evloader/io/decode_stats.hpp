// SPDX-License-Identifier: Apache-2.0
// Counters of protocol violations met while decoding, and the policy that decides what to do with them.
#pragma once

#include <cstdint>
#include <string>

namespace evloader {

/// What a decoder does when the stream breaks the protocol (bad coordinates, time going backwards...).
/// `skip`: drop the offending event (or keep it, for time going backwards) and count it.
/// `raise`: throw FormatError naming the byte offset of the first violation.
enum class OnViolation { skip, raise };

/// Counters filled by every decoder. Violations are counted, never thrown per event.
struct DecodeStats {
  std::uint64_t bytes = 0;           ///< bytes fed to the decoder
  std::uint64_t cd_events = 0;       ///< CD events emitted
  std::uint64_t trigger_events = 0;  ///< trigger events emitted
  std::uint64_t padding_words = 0;   ///< vendor padding / monitoring / IMU words skipped (not violations)
  // Violations:
  std::uint64_t before_time_base = 0;    ///< event words dropped because no TIME_HIGH was seen yet
  std::uint64_t out_of_bounds = 0;       ///< CD events dropped because x >= width or y >= height
  std::uint64_t time_backwards = 0;      ///< events kept although their t is below the previous event's t
  std::uint64_t time_high_glitches = 0;  ///< TIME_HIGH values that went backwards without a counter loop
  std::uint64_t unknown_words = 0;       ///< words of a reserved type, skipped
  std::uint64_t truncated_bytes = 0;     ///< bytes of an incomplete word at the end of the stream
  std::uint64_t time_loops = 0;          ///< counter wrap-arounds handled (informational, not a violation)

  [[nodiscard]] std::uint64_t violations() const noexcept {
    return before_time_base + out_of_bounds + time_backwards + time_high_glitches + unknown_words +
           truncated_bytes;
  }

  DecodeStats& operator+=(const DecodeStats& o) noexcept;
  /// One line, for logs and the CLI: "out_of_bounds=3 time_backwards=1".
  [[nodiscard]] std::string summary() const;
};

}  // namespace evloader
