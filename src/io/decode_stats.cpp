// SPDX-License-Identifier: Apache-2.0
#include "evloader/io/decode_stats.hpp"

namespace evloader {

DecodeStats& DecodeStats::operator+=(const DecodeStats& o) noexcept {
  bytes += o.bytes;
  cd_events += o.cd_events;
  trigger_events += o.trigger_events;
  padding_words += o.padding_words;
  before_time_base += o.before_time_base;
  out_of_bounds += o.out_of_bounds;
  time_backwards += o.time_backwards;
  time_high_glitches += o.time_high_glitches;
  unknown_words += o.unknown_words;
  truncated_bytes += o.truncated_bytes;
  time_loops += o.time_loops;
  return *this;
}

std::string DecodeStats::summary() const {
  std::string out;
  auto add = [&out](const char* name, std::uint64_t v) {
    if (v == 0) return;
    if (!out.empty()) out += ' ';
    out += name;
    out += '=';
    out += std::to_string(v);
  };
  add("before_time_base", before_time_base);
  add("out_of_bounds", out_of_bounds);
  add("time_backwards", time_backwards);
  add("time_high_glitches", time_high_glitches);
  add("unknown_words", unknown_words);
  add("truncated_bytes", truncated_bytes);
  return out.empty() ? "none" : out;
}

}  // namespace evloader
