// SPDX-License-Identifier: Apache-2.0
// EVT 3.0 encoder (formats.md §1.4): turns sorted events back into the 16-bit word stream.
//
// The encoder keeps the order of the events: decoding its output gives back exactly the input sequence
// (CD events first at equal t when merged with triggers). Vectors are built from runs of consecutive
// input events with the same (t, y, p) and strictly increasing x, which is how sensor data and most
// producers order events; input in another order within a timestamp is still encoded correctly, with
// more ADDR_X words. Words emitted:
// - EVT_TIME_HIGH when bits 23..12 of t change; across gaps of 2^23 µs or more, intermediate TIME_HIGH words
//   at most 2047 steps apart, so that the decoder sees every 2^24 µs loop (its rule: a drop of >= 2048 is a
//   loop). The first TIME_HIGH starts the decoder at loop 0, so a stream starting at t >= 2^24 starts with
//   TIME_HIGH 0 and climbs (about 2 words per 16.8 s of absolute time).
// - EVT_TIME_LOW when bits 11..0 of t differ from the decoder's current time (TIME_HIGH resets them to 0).
// - EVT_ADDR_Y when y changes.
// - per run: VECT_BASE_X + VECT_12 words (a VECT_8 for a last word whose bits fit in 8) where that takes
//   fewer words than one EVT_ADDR_X per event, else EVT_ADDR_X words.
// - EXT_TRIGGER for triggers (id 11..8, value bit 0).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "io/detail/codecs.hpp"

namespace evloader::detail {
namespace {

constexpr int kCoordLimit = 2048;
constexpr std::int64_t kMaxHighStep = 2047;  // decoder sees a loop when the 12-bit high drops by >= 2048

class Evt3Encoder final : public EventEncoder {
 public:
  void encode(std::span<const EventCD> cd, std::span<const EventExtTrigger> triggers,
              std::vector<std::byte>& out) override {
    validate(cd, triggers);
    std::size_t i = 0;
    std::size_t j = 0;
    while (i < cd.size() || j < triggers.size()) {
      if (j == triggers.size() || (i < cd.size() && cd[i].t <= triggers[j].t))
        add_cd(cd[i++], out);
      else
        add_trigger(triggers[j++], out);
    }
  }

  void finish(std::vector<std::byte>& out) override { flush_run(out); }

 private:
  // Everything is checked before any word is written, so a rejected call leaves the encoder unchanged.
  void validate(std::span<const EventCD> cd, std::span<const EventExtTrigger> triggers) {
    std::int64_t previous = last_t_;
    for (const EventCD& e : cd) {
      if (e.t < 0) throw ConfigError("EVT3 encoder: negative timestamp " + std::to_string(e.t));
      if (e.t < previous)
        throw ConfigError("EVT3 encoder: CD events not sorted by t (" + std::to_string(e.t) + " after " +
                          std::to_string(previous) + ")");
      if (e.x >= kCoordLimit || e.y >= kCoordLimit)
        throw ConfigError("EVT3 encoder: coordinates (" + std::to_string(e.x) + ", " + std::to_string(e.y) +
                          ") exceed the 11-bit range");
      if (e.p != 0 && e.p != 1)
        throw ConfigError("EVT3 encoder: polarity must be 0 or 1, got " + std::to_string(e.p));
      previous = e.t;
    }
    std::int64_t last = previous;
    previous = last_t_;
    for (const EventExtTrigger& e : triggers) {
      if (e.t < 0) throw ConfigError("EVT3 encoder: negative trigger timestamp " + std::to_string(e.t));
      if (e.t < previous)
        throw ConfigError("EVT3 encoder: triggers not sorted by t (" + std::to_string(e.t) + " after " +
                          std::to_string(previous) + ")");
      if (e.id < 0 || e.id >= 16)
        throw ConfigError("EVT3 encoder: trigger id must be in [0, 15], got " + std::to_string(e.id));
      if (e.p != 0 && e.p != 1)
        throw ConfigError("EVT3 encoder: trigger value must be 0 or 1, got " + std::to_string(e.p));
      previous = e.t;
    }
    last_t_ = std::max(last, previous);
  }

  static void put(std::vector<std::byte>& out, unsigned word) {
    out.push_back(static_cast<std::byte>(word & 0xFF));
    out.push_back(static_cast<std::byte>((word >> 8) & 0xFF));
  }

  void put_time_high(std::vector<std::byte>& out, std::int64_t high) {
    put(out, 0x8000u | static_cast<unsigned>(high & 0xFFF));
    high_ = high;
    low_ = 0;  // the decoder resets time_low on every TIME_HIGH
  }

  // Brings the decoder's current time to t.
  void ensure_time(std::vector<std::byte>& out, std::int64_t t) {
    const std::int64_t high = t >> 12;
    if (high_ < 0) put_time_high(out, high < 4096 ? high : 0);
    while (high - high_ > kMaxHighStep) put_time_high(out, high_ + kMaxHighStep);
    if (high != high_) put_time_high(out, high);
    const unsigned low = static_cast<unsigned>(t & 0xFFF);
    if (low != low_) {
      put(out, 0x6000u | low);
      low_ = low;
    }
  }

  void ensure_y(std::vector<std::byte>& out, unsigned y) {
    if (static_cast<int>(y) == y_) return;
    put(out, y);  // EVT_ADDR_Y, type 0, bit 11 (slave camera) clear
    y_ = static_cast<int>(y);
  }

  void add_cd(const EventCD& e, std::vector<std::byte>& out) {
    if (!run_x_.empty() && e.t == run_t_ && e.y == run_y_ && e.p == run_p_ &&
        static_cast<unsigned>(e.x) > run_x_.back()) {
      run_x_.push_back(e.x);
      return;
    }
    flush_run(out);
    run_t_ = e.t;
    run_y_ = e.y;
    run_p_ = e.p;
    run_x_.push_back(e.x);
  }

  void add_trigger(const EventExtTrigger& e, std::vector<std::byte>& out) {
    flush_run(out);
    ensure_time(out, e.t);
    put(out, 0xA000u | (static_cast<unsigned>(e.id) << 8) | static_cast<unsigned>(e.p));
  }

  // Greedy split of the run into segments whose pixels can be covered by consecutive vector words (no
  // empty word); each segment is then written as a vector or as ADDR_X words, whichever is shorter.
  void flush_run(std::vector<std::byte>& out) {
    if (run_x_.empty()) return;
    ensure_time(out, run_t_);
    ensure_y(out, run_y_);
    const unsigned pol_bit = static_cast<unsigned>(run_p_) << 11;
    const std::size_t k = run_x_.size();
    std::size_t i = 0;
    while (i < k) {
      unsigned window = run_x_[i];
      unsigned mask = 0;
      masks_.clear();
      std::size_t j = i;
      while (j < k) {
        const unsigned d = run_x_[j] - window;
        if (d < 12) {
          mask |= 1u << d;
          ++j;
        } else if (d < 24) {
          masks_.push_back(mask);
          window += 12;
          mask = 0;
        } else {
          break;
        }
      }
      masks_.push_back(mask);
      if (1 + masks_.size() < j - i) {
        put(out, 0x3000u | pol_bit | run_x_[i]);
        for (std::size_t w = 0; w + 1 < masks_.size(); ++w) put(out, 0x4000u | masks_[w]);
        const unsigned last = masks_.back();
        put(out, last < 0x100 ? (0x5000u | last) : (0x4000u | last));
      } else {
        for (std::size_t s = i; s < j; ++s) put(out, 0x2000u | pol_bit | run_x_[s]);
      }
      i = j;
    }
    run_x_.clear();
  }

  std::int64_t last_t_ = 0;  // t must be >= this (0 also rejects nothing that t >= 0 allows)
  std::int64_t high_ = -1;   // t >> 12 as the decoder knows it, -1 before the first TIME_HIGH
  unsigned low_ = 0;
  int y_ = -1;
  // The pending run: same (t, y, p), strictly increasing x; kept across encode() calls until finish().
  std::int64_t run_t_ = 0;
  std::uint16_t run_y_ = 0;
  std::int16_t run_p_ = 0;
  std::vector<unsigned> run_x_;
  std::vector<unsigned> masks_;
};

}  // namespace

std::unique_ptr<EventEncoder> make_evt3_encoder() { return std::make_unique<Evt3Encoder>(); }

}  // namespace evloader::detail
