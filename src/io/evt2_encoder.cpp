// SPDX-License-Identifier: Apache-2.0
// EVT 2.0 encoder (formats.md §1.2): TIME_HIGH words every 16 µs like a real sensor, one word per event.
#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

#include "evloader/core/error.hpp"
#include "io/detail/codecs.hpp"

namespace evloader::detail {
namespace {

constexpr std::uint32_t kTimeHighMask = (1u << 28) - 1;
// Real sensors repeat TIME_HIGH every 16 µs; across a longer gap (about 1 ms here) only the final value
// is written, which any decoder accepts, instead of thousands of redundant words.
constexpr std::int64_t kMaxSteps = 64;
// One event may need the steps of a gap plus an event word.
constexpr std::size_t kMaxWordsPerEvent = kMaxSteps + 2;

class WordWriter {
 public:
  explicit WordWriter(std::vector<std::byte>& out) : out_(out), pos_(out.size()) {}
  ~WordWriter() { out_.resize(pos_); }
  WordWriter(const WordWriter&) = delete;
  WordWriter& operator=(const WordWriter&) = delete;

  void ensure(std::size_t words) {
    const std::size_t need = pos_ + words * 4;
    if (need > out_.size()) out_.resize(std::max(need, out_.size() * 2 + 4096));
  }
  // Callers ensure() room first, except on the rare wrap path which ensures for itself.
  void put(std::uint32_t w) {
    if constexpr (std::endian::native == std::endian::big)
      w = (w >> 24) | ((w >> 8) & 0xFF00u) | ((w << 8) & 0xFF0000u) | (w << 24);
    std::memcpy(out_.data() + pos_, &w, 4);
    pos_ += 4;
  }

 private:
  std::vector<std::byte>& out_;
  std::size_t pos_;
};

constexpr std::uint32_t time_high_word(std::int64_t value) {
  return (0x8u << 28) | (static_cast<std::uint32_t>(value) & kTimeHighMask);
}

class Evt2Encoder final : public EventEncoder {
 public:
  void encode(std::span<const EventCD> cd, std::span<const EventExtTrigger> triggers,
              std::vector<std::byte>& out) override {
    validate(cd, triggers);
    WordWriter writer(out);
    std::size_t i = 0, j = 0;
    while (i < cd.size() || j < triggers.size()) {
      writer.ensure(kMaxWordsPerEvent);
      // CD first at equal t.
      if (j == triggers.size() || (i < cd.size() && cd[i].t <= triggers[j].t)) {
        const EventCD& e = cd[i++];
        advance_to(e.t, writer);
        writer.put((static_cast<std::uint32_t>(e.p) << 28) | (static_cast<std::uint32_t>(e.t & 63) << 22) |
                   (std::uint32_t{e.x} << 11) | std::uint32_t{e.y});
      } else {
        const EventExtTrigger& e = triggers[j++];
        advance_to(e.t, writer);
        writer.put((0xAu << 28) | (static_cast<std::uint32_t>(e.t & 63) << 22) |
                   (static_cast<std::uint32_t>(e.id) << 8) | static_cast<std::uint32_t>(e.p));
      }
    }
  }

  void finish(std::vector<std::byte>&) override {}  // nothing is buffered

 private:
  [[noreturn]] static void reject(const char* what, std::size_t index, const char* why) {
    throw ConfigError(std::string("EVT2 encoder: ") + what + " " + std::to_string(index) + " " + why);
  }

  // Every check happens before any word is written, so a rejected call leaves `out` untouched.
  void validate(std::span<const EventCD> cd, std::span<const EventExtTrigger> triggers) {
    std::int64_t last = last_t_;
    for (std::size_t k = 0; k < cd.size(); ++k) {
      const EventCD& e = cd[k];
      if (e.t < 0) reject("CD event", k, "has a negative t");
      if (e.t < (k == 0 ? last_t_ : cd[k - 1].t)) reject("CD event", k, "is not sorted by t");
      if (e.x >= 2048 || e.y >= 2048) reject("CD event", k, "has a coordinate >= 2048");
      if (e.p != 0 && e.p != 1) reject("CD event", k, "has a polarity other than 0 or 1");
      last = std::max(last, e.t);
    }
    for (std::size_t k = 0; k < triggers.size(); ++k) {
      const EventExtTrigger& e = triggers[k];
      if (e.t < 0) reject("trigger", k, "has a negative t");
      if (e.t < (k == 0 ? last_t_ : triggers[k - 1].t)) reject("trigger", k, "is not sorted by t");
      if (e.id < 0 || e.id > 31) reject("trigger", k, "has an id outside 0..31");
      if (e.p != 0 && e.p != 1) reject("trigger", k, "has a value other than 0 or 1");
      last = std::max(last, e.t);
    }
    last_t_ = last;
  }

  // Emit the TIME_HIGH words that bring the stream's time base to t's 16 µs step. Values are written
  // modulo 2^28 (t modulo 2^34); each wrap shows as a drop from the maximum to 0, which the decoder
  // counts as a loop.
  void advance_to(std::int64_t t, WordWriter& writer) {
    const std::int64_t target = t >> 4;
    if (step_ < 0) {
      // The decoder starts at loop 0: a stream beginning past 2^34 first announces time 0, then wraps.
      step_ = t >> 34 == 0 ? target : 0;
      writer.put(time_high_word(step_ >> 2));
    }
    if (target == step_) return;
    if (target - step_ <= kMaxSteps) {
      for (std::int64_t s = step_ + 1; s <= target; ++s) writer.put(time_high_word(s >> 2));
      step_ = target;
      return;
    }
    // Large gap: one word per wrap crossed (max then 0), then the target value.
    std::int64_t loop = step_ >> 30;
    while (loop < (target >> 30)) {
      writer.ensure(4);  // this wrap's two words, then the target and the event word
      if (((step_ >> 2) & kTimeHighMask) != kTimeHighMask) writer.put(time_high_word(kTimeHighMask));
      writer.put(time_high_word(0));
      ++loop;
      step_ = loop << 30;
    }
    if (target != step_) writer.put(time_high_word(target >> 2));
    step_ = target;
  }

  std::int64_t last_t_ = 0;  // events of later calls may not go before this
  std::int64_t step_ = -1;   // t >> 4 of the last TIME_HIGH written, -1 before the first
};

}  // namespace

std::unique_ptr<EventEncoder> make_evt2_encoder() { return std::make_unique<Evt2Encoder>(); }

}  // namespace evloader::detail
