// SPDX-License-Identifier: Apache-2.0
// EVT 2.1 decoder (formats.md §1.3): 64-bit words, each CD word a 32-pixel valid mask on one row.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <string>

#include "evloader/core/error.hpp"
#include "io/detail/codecs.hpp"

namespace evloader::detail {
namespace {

constexpr std::int64_t kLoopPeriod = std::int64_t{1} << 34;  // the 34-bit counter's wrap
// 2^24 loops of 2^34 us are 9000 years: only a hostile stream gets there, and stopping the count keeps
// every timestamp below 2^59 (no overflow in loops * kLoopPeriod, whatever the file).
constexpr std::int32_t kMaxLoops = std::int32_t{1} << 24;
constexpr std::int64_t kMaxTime = (std::int64_t{kMaxLoops} + 1) * kLoopPeriod;
constexpr std::uint64_t kTimeHighMask = (std::uint64_t{1} << 28) - 1;
constexpr std::int64_t kMaxTimeHighBase = std::int64_t{kTimeHighMask} << 6;
// Same threshold as EVT2 (OpenEB HAL): a drop of nearly the whole range is a wrap, smaller is a glitch.
// OpenEB's EVT2.1 decoder demands the exact full drop; accepting 10 ms of slack is a superset.
constexpr std::int64_t kLoopThreshold = kMaxTimeHighBase - 10000;
constexpr std::size_t kWordSize = 8;
// 1 Ki words per output reservation: a word may expand to 32 events, so this reserves at most 512 KiB.
constexpr std::size_t kBlockWords = 1024;
constexpr std::size_t kMaxEventsPerWord = 32;

enum WordType : std::uint32_t {
  kCdOff = 0x0,
  kCdOn = 0x1,
  kTimeHigh = 0x8,
  kExtTrigger = 0xA,
  kOthers = 0xE,
  kContinued = 0xF,
};

inline std::uint32_t load_u32(const std::byte* p) noexcept {
  std::uint32_t w;
  std::memcpy(&w, p, sizeof w);
  if constexpr (std::endian::native == std::endian::big)
    w = (w >> 24) | ((w >> 8) & 0xFF00u) | ((w << 8) & 0xFF0000u) | (w << 24);
  return w;
}

// The `legacy` order sends the two 32-bit halves high half first (formats.md §1.3); both orders yield
// the same logical 64-bit word.
template <bool kLegacy>
inline std::uint64_t load_word(const std::byte* p) noexcept {
  const std::uint64_t a = load_u32(p), b = load_u32(p + 4);
  return kLegacy ? (a << 32) | b : (b << 32) | a;
}

// Writes x, y, p (packed as the first 8 bytes of EventCD: x | y << 16 | p << 32) and t with two plain
// 8-byte stores instead of four field stores.
inline void store_event(EventCD* out, std::uint64_t xyp, std::int64_t t) noexcept {
  static_assert(offsetof(EventCD, x) == 0 && offsetof(EventCD, y) == 2 && offsetof(EventCD, p) == 4);
  static_assert(std::endian::native == std::endian::little, "packed store assumes a little-endian host");
  std::memcpy(reinterpret_cast<unsigned char*>(out), &xyp, 8);
  std::memcpy(reinterpret_cast<unsigned char*>(out) + 8, &t, 8);
}

class Evt21Decoder final : public EventDecoder {
 public:
  explicit Evt21Decoder(const DecoderOptions& options) : EventDecoder(options) {
    // Without geometry, x + i may still exceed the 11-bit coordinate range (base x near 2047): such
    // pixels cannot exist on any sensor, so the limit stays at 2048.
    width_limit_ = options.geometry.known() ? static_cast<std::uint32_t>(options.geometry.width) : 2048u;
    height_limit_ = options.geometry.known() ? static_cast<std::uint32_t>(options.geometry.height) : 2048u;
    width_limit_ = std::min(width_limit_, 2048u);
  }

  RawEncoding encoding() const noexcept override { return RawEncoding::evt21; }
  std::size_t word_size() const noexcept override { return kWordSize; }
  std::size_t max_events_per_word() const noexcept override { return kMaxEventsPerWord; }

  void decode(std::span<const std::byte> bytes, EventBuffer& cd, TriggerBuffer* triggers,
              std::int64_t stream_offset) override {
    const bool raise = options_.on_violation == OnViolation::raise;
    const bool legacy = options_.evt21_order == Evt21Order::legacy;
    if (raise) {
      if (legacy)
        decode_impl<true, true>(bytes, cd, triggers, stream_offset);
      else
        decode_impl<true, false>(bytes, cd, triggers, stream_offset);
    } else {
      if (legacy)
        decode_impl<false, true>(bytes, cd, triggers, stream_offset);
      else
        decode_impl<false, false>(bytes, cd, triggers, stream_offset);
    }
  }

  void finish() override {
    // A trailing partial word is normal at the end of a recording (formats.md §1): counted, not thrown.
    stats_.truncated_bytes += pending_n_;
    pending_n_ = 0;
  }

  DecoderState state() const override {
    DecoderState s;
    s.time_base = time_base_;
    s.time = time_;
    s.last_event_t = last_event_t_;
    s.first_time_high = first_time_high_;
    s.loops = loops_;
    s.has_time_base = has_time_base_ ? 1 : 0;
    return s;
  }

  void restore(const DecoderState& s) override {
    // States come from time indexes on disk: clamp to what decoding can produce, so that a damaged one
    // cannot make the time arithmetic overflow (a no-op for any state this decoder saved).
    time_base_ = std::clamp<std::int64_t>(s.time_base, 0, kMaxTime);
    time_ = std::clamp<std::int64_t>(s.time, 0, kMaxTime);
    last_event_t_ = s.last_event_t;
    first_time_high_ =
        std::clamp<std::int64_t>(s.first_time_high, -1, static_cast<std::int64_t>(kTimeHighMask));
    loops_ = std::clamp(s.loops, 0, kMaxLoops);
    has_time_base_ = s.has_time_base != 0;
    pending_n_ = 0;
    position_ = 0;
  }

  void reset() override { restore(DecoderState{}); }

  std::size_t pending_bytes() const noexcept override { return pending_n_; }

  std::optional<std::int64_t> metavision_time_shift() const override {
    if (first_time_high_ < 0) return std::nullopt;
    return first_time_high_ << 6;
  }

 private:
  template <bool kRaise, bool kLegacy>
  void decode_impl(std::span<const std::byte> bytes, EventBuffer& cd, TriggerBuffer* triggers,
                   std::int64_t stream_offset) {
    // Without a caller offset, report offsets from the start of what this decoder was fed.
    const std::int64_t origin = stream_offset >= 0 ? stream_offset : position_;
    position_ += static_cast<std::int64_t>(bytes.size());
    stats_.bytes += bytes.size();
    if (!options_.decode_triggers) triggers = nullptr;

    std::size_t pos = 0;
    if (pending_n_ != 0) {
      const std::size_t had = pending_n_;
      const std::size_t take = std::min(kWordSize - had, bytes.size());
      std::memcpy(pending_ + had, bytes.data(), take);
      pending_n_ += take;
      pos = take;
      if (pending_n_ < kWordSize) return;
      pending_n_ = 0;
      run<kRaise, kLegacy>(pending_, 1, origin - static_cast<std::int64_t>(had), cd, triggers);
    }
    const std::size_t nwords = (bytes.size() - pos) / kWordSize;
    run<kRaise, kLegacy>(bytes.data() + pos, nwords, origin + static_cast<std::int64_t>(pos), cd, triggers);
    pos += nwords * kWordSize;
    pending_n_ = bytes.size() - pos;
    if (pending_n_ != 0) std::memcpy(pending_, bytes.data() + pos, pending_n_);
  }

  [[noreturn]] static void fail(std::int64_t offset, const std::string& what) {
    throw FormatError(describe_location("EVT 2.1 stream", offset, what));
  }

  // Applies a TIME_HIGH word; returns false for a glitch (a backward jump that is not a wrap).
  bool apply_time_high(std::uint64_t w) noexcept {
    const std::uint64_t value = (w >> 32) & kTimeHighMask;
    const std::int64_t fresh = static_cast<std::int64_t>(value) << 6;
    bool ok = true;
    if (!has_time_base_) {
      first_time_high_ = static_cast<std::int64_t>(value);
      has_time_base_ = true;
    } else {
      const std::int64_t previous = time_base_ - std::int64_t{loops_} * kLoopPeriod;
      if (previous - fresh >= kLoopThreshold && loops_ < kMaxLoops) {
        ++loops_;
        ++stats_.time_loops;
      } else if (fresh < previous) {
        ++stats_.time_high_glitches;
        ok = false;
      }
    }
    time_base_ = fresh + std::int64_t{loops_} * kLoopPeriod;
    // TIME_HIGH replaces bits 33..6 of the running time; its 6 LSBs stay until the next event word.
    time_ = time_base_ | (time_ & 63);
    return ok;
  }

  // Any word but CD and TIME_HIGH once a time base exists. Returns false on a violation.
  bool other_word(std::uint64_t w, TriggerBuffer* triggers) {
    const auto type = static_cast<std::uint32_t>(w >> 60);
    if (type == kExtTrigger) {
      time_ = time_base_ | static_cast<std::int64_t>((w >> 54) & 63u);
      if (triggers != nullptr) {
        triggers->push_back(
            {static_cast<std::int16_t>((w >> 32) & 1u), time_, static_cast<std::int16_t>((w >> 40) & 31u)});
        ++stats_.trigger_events;
      }
      return true;
    }
    if (type == kOthers) {
      time_ = time_base_ | static_cast<std::int64_t>((w >> 54) & 63u);
      ++stats_.padding_words;
      return true;
    }
    if (type == kContinued) {
      ++stats_.padding_words;
      return true;
    }
    ++stats_.unknown_words;
    return false;
  }

  // Words seen before the first TIME_HIGH: events are dropped (no time base to date them).
  template <bool kRaise>
  void prefix_word(std::uint64_t w, std::int64_t offset) {
    const auto type = static_cast<std::uint32_t>(w >> 60);
    if (type == kTimeHigh) {
      apply_time_high(w);
    } else if (type == kCdOff || type == kCdOn || type == kExtTrigger) {
      ++stats_.before_time_base;
      if constexpr (kRaise) fail(offset, "event word before the first TIME_HIGH");
    } else if (type == kOthers || type == kContinued) {
      ++stats_.padding_words;
    } else {
      ++stats_.unknown_words;
      if constexpr (kRaise) fail(offset, "reserved word type " + std::to_string(type));
    }
  }

  template <bool kRaise, bool kLegacy>
  void run(const std::byte* data, std::size_t nwords, std::int64_t offset, EventBuffer& cd,
           TriggerBuffer* triggers) {
    std::size_t i = 0;
    for (; i < nwords && !has_time_base_; ++i)
      prefix_word<kRaise>(load_word<kLegacy>(data + i * kWordSize),
                          offset + static_cast<std::int64_t>(i * kWordSize));

    const std::uint32_t wl = width_limit_, hl = height_limit_;
    while (i < nwords) {
      const std::size_t end = std::min(nwords, i + kBlockWords);
      EventCD* out = cd.prepare((end - i) * kMaxEventsPerWord);
      std::size_t n = 0;
      std::int64_t base = time_base_;
      std::int64_t t = time_;
      std::int64_t last = last_event_t_;
      std::uint64_t oob = 0, backwards = 0;
      // Counters live in locals so that stores into `out` cannot alias them; written back on exit.
      auto flush = [&] {
        cd.commit(n);
        stats_.cd_events += n;
        stats_.out_of_bounds += oob;
        stats_.time_backwards += backwards;
        last_event_t_ = last;
        time_ = t;
        n = 0;
        oob = backwards = 0;
      };
      for (; i < end; ++i) {
        const std::uint64_t w = load_word<kLegacy>(data + i * kWordSize);
        const auto type = static_cast<std::uint32_t>(w >> 60);
        if (type <= kCdOn) {
          const auto x = static_cast<std::uint32_t>((w >> 43) & 0x7FFu);
          const auto y = static_cast<std::uint32_t>((w >> 32) & 0x7FFu);
          const auto mask = static_cast<std::uint32_t>(w);
          t = base | static_cast<std::int64_t>((w >> 54) & 63u);
          // Keep the bits i with x + i < width (and none when the row is outside the sensor). The
          // vector usually lies inside: popcount (a libcall without -mpopcnt) only runs when it does not.
          std::uint32_t valid = mask;
          if (y >= hl || x + 32 > wl) [[unlikely]] {
            if (y >= hl || x >= wl)
              valid = 0;
            else
              valid &= (1u << (wl - x)) - 1u;
            const auto dropped = static_cast<std::uint64_t>(std::popcount(mask & ~valid));
            oob += dropped;
            if constexpr (kRaise) {
              if (dropped != 0) {
                flush();
                fail(offset + static_cast<std::int64_t>(i * kWordSize),
                     "CD vector at x=" + std::to_string(x) + " y=" + std::to_string(y) +
                         " mask=" + std::to_string(mask) + " reaches outside the sensor (" +
                         std::to_string(wl) + "x" + std::to_string(hl) + ")");
              }
            }
          }
          const bool back = t < last;
          if constexpr (kRaise) {
            if (back && valid != 0) {
              backwards += static_cast<std::uint64_t>(std::popcount(valid));
              flush();
              fail(offset + static_cast<std::int64_t>(i * kWordSize),
                   "time went backwards to " + std::to_string(t) + " after " + std::to_string(last));
            }
          }
          const std::size_t first = n;
          const std::uint64_t row_pol = (std::uint64_t{y} << 16) | (std::uint64_t{type} << 32);
          while (valid != 0) {
            const auto bit = static_cast<std::uint32_t>(std::countr_zero(valid));
            store_event(out + n++, row_pol | (x + bit), t);
            valid &= valid - 1;
          }
          const std::size_t kept = n - first;
          backwards += back ? kept : 0;
          last = kept != 0 ? t : last;
        } else if (type == kTimeHigh) {
          time_ = t;
          const bool ok = apply_time_high(w);
          base = time_base_;
          t = time_;
          if constexpr (kRaise) {
            if (!ok) {
              flush();
              fail(offset + static_cast<std::int64_t>(i * kWordSize), "TIME_HIGH went backwards");
            }
          }
        } else {
          time_ = t;
          const bool ok = other_word(w, triggers);
          t = time_;
          if constexpr (kRaise) {
            if (!ok) {
              flush();
              fail(offset + static_cast<std::int64_t>(i * kWordSize),
                   "reserved word type " + std::to_string(type));
            }
          }
        }
      }
      flush();
    }
  }

  std::uint32_t width_limit_ = 2048;
  std::uint32_t height_limit_ = 2048;
  std::int64_t time_base_ = 0;
  std::int64_t time_ = 0;
  std::int64_t last_event_t_ = INT64_MIN;
  std::int64_t first_time_high_ = -1;
  std::int32_t loops_ = 0;
  bool has_time_base_ = false;
  std::int64_t position_ = 0;  // bytes fed since construction / reset / restore
  std::byte pending_[kWordSize] = {};
  std::size_t pending_n_ = 0;
};

}  // namespace

std::unique_ptr<EventDecoder> make_evt21_decoder(const DecoderOptions& options) {
  return std::make_unique<Evt21Decoder>(options);
}

}  // namespace evloader::detail
