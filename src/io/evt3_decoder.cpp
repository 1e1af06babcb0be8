// SPDX-License-Identifier: Apache-2.0
// EVT 3.0 decoder (formats.md §1.4): turns the stateful 16-bit word stream into CD and trigger events.
//
// Semantics (beyond the spec table):
// - Words before the first EVT_TIME_HIGH are ignored; the event-emitting ones among them (ADDR_X, VECT_12,
//   VECT_8, and EXT_TRIGGER when triggers are decoded) are counted as before_time_base, one per word.
// - CD events before the first EVT_ADDR_Y that follows the first TIME_HIGH are dropped and counted as
//   before_time_base, one per event.
// - EVT_ADDR_Y keeps bit 11 (slave camera) in y, so such rows fail the height check and their events count
//   as out_of_bounds, as OpenEB does. With unknown geometry the limits are the 11-bit word range (2048).
// - OTHERS, CONTINUED_12, CONTINUED_4, IMU (0xD), legacy EM ADDR_Y (0x1) and vendor padding (0x9, Lucid
//   cameras emit 0x9999) are skipped and counted as padding_words. CONTINUED words have their own types, so
//   a multi-word OTHERS sequence split across decode() calls needs no extra state (skip_words stays 0).
// - Reserved types 0xB and 0xC are counted as unknown_words.
// - TIME_HIGH: a drop of the 12-bit value by >= 2048 is a 2^24 µs counter loop (OpenEB HAL rule); a smaller
//   drop is a glitch: counted, and the new value is used anyway. Loops stop at 2^31 - 1 (later drops count as
//   glitches) and restore() clamps states to what decoding can produce, so time never overflows.
// - time_backwards counts each event whose t is below the previous emitted event's t (so one per backward
//   jump, not one per event at the lower time).
// - DecoderState: time_base = loops * 2^24 + (time_high << 12), time = time_base + time_low, y keeps bit 11,
//   y_valid = 1 once an ADDR_Y was seen, base_x/polarity = vector state; skip_words is unused (see above).
// - OnViolation::raise throws at the first violation of a call, naming the offending word's offset (for
//   time going backwards: the first event-emitting word at the lower time). The state then includes that
//   word; the rest of the call's input is not decoded.
//
// Speed (the hot loop is ~28 instructions per ADDR_X/ADDR_Y word, no data-dependent branch): ADDR_Y/ADDR_X
// share one branch-free path, 32-pixel vector groups (VECT_BASE_X + VECT_12 + VECT_12 + VECT_8) are
// expanded in one step, bounds are one add-and-test per event, time_backwards is counted once per time
// change instead of per event, and events go straight into the caller's buffer (EventBuffer::prepare).
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>

#include "evloader/core/error.hpp"
#include "io/detail/codecs.hpp"

namespace evloader::detail {
namespace {

// 32 KiB of input per inner pass: bounds the prepare() reservation to ~3 MiB whatever the call size.
constexpr std::size_t kBlockWords = 16384;
constexpr std::size_t kMaxEventsPerWord = 12;
constexpr std::uint32_t kCoordLimit = 2048;  // EVT3 addresses are 11 bits
// base_x only grows by vector words; past this every pixel is out of bounds anyway, so clamping keeps the
// arithmetic small on garbage input without changing any output.
constexpr std::uint32_t kBaseXClamp = 4096;
constexpr std::uint32_t kNoRow = 0xFFFF0000u;  // row value before the first EVT_ADDR_Y (y = 0xFFFF)
// The loop count is saved as an int32: it stops there (2^31 loops of 2^24 us are 1100 years, only a hostile
// stream gets there), which keeps every timestamp below 2^56.
constexpr std::int64_t kMaxLoops = INT32_MAX;
constexpr std::int64_t kMaxTime = (kMaxLoops + 1) << 24;

enum : unsigned {
  kAddrY = 0x0,
  kEmAddrY = 0x1,
  kAddrX = 0x2,
  kVectBaseX = 0x3,
  kVect12 = 0x4,
  kVect8 = 0x5,
  kTimeLow = 0x6,
  kContinued4 = 0x7,
  kTimeHigh = 0x8,
  kPadding = 0x9,
  kExtTrigger = 0xA,
  kUnusedB = 0xB,
  kUnusedC = 0xC,
  kImu = 0xD,
  kOthers = 0xE,
  kContinued12 = 0xF,
};

inline unsigned load_word(const std::byte* p) noexcept {
  std::uint16_t w;
  std::memcpy(&w, p, 2);
  if constexpr (std::endian::native == std::endian::big) w = static_cast<std::uint16_t>((w >> 8) | (w << 8));
  return w;
}

// `lo` is the first 8 bytes of an EventCD: x | y << 16 | p << 32, padding bytes zero. Two plain 64-bit
// stores per event, and the padding is deterministic (byte-comparable output).
inline void store_event(EventCD* out, std::uint64_t lo, std::int64_t t) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(reinterpret_cast<char*>(out), &lo, 8);
    std::memcpy(reinterpret_cast<char*>(out) + 8, &t, 8);
  } else {
    *out = EventCD{static_cast<std::uint16_t>(lo & 0xFFFF), static_cast<std::uint16_t>((lo >> 16) & 0xFFFF),
                   static_cast<std::int16_t>((lo >> 32) & 1), t};
  }
}

// Index of the lowest set bit, 32 for 0. The 64-bit operand is never 0, so the compiler emits a bare BSF
// even without BMI (std::countr_zero on a 32-bit value would branch on 0 for generic x86-64).
inline unsigned lowest_bit(std::uint32_t m) noexcept {
  return static_cast<unsigned>(std::countr_zero(static_cast<std::uint64_t>(m) | (std::uint64_t{1} << 32)));
}

struct Violation {
  std::size_t word = 0;  // index of the offending word in the run() input
  const char* what = nullptr;
};

class Evt3Decoder final : public EventDecoder {
 public:
  explicit Evt3Decoder(const DecoderOptions& options)
      : EventDecoder(options),
        limit_x_(options.geometry.known()
                     ? std::min(static_cast<std::uint32_t>(options.geometry.width), kCoordLimit)
                     : kCoordLimit),
        limit_y_(options.geometry.known()
                     ? std::min(static_cast<std::uint32_t>(options.geometry.height), kCoordLimit)
                     : kCoordLimit) {}

  [[nodiscard]] RawEncoding encoding() const noexcept override { return RawEncoding::evt3; }
  [[nodiscard]] std::size_t word_size() const noexcept override { return 2; }
  [[nodiscard]] std::size_t max_events_per_word() const noexcept override { return kMaxEventsPerWord; }

  void decode(std::span<const std::byte> bytes, EventBuffer& cd, TriggerBuffer* triggers,
              std::int64_t stream_offset) override {
    // Without a file offset, report offsets within the word stream fed so far.
    std::int64_t offset = stream_offset >= 0 ? stream_offset : static_cast<std::int64_t>(stats_.bytes);
    stats_.bytes += bytes.size();
    const std::byte* p = bytes.data();
    std::size_t n = bytes.size();
    if (n == 0) return;
    if (has_pending_) {
      const std::byte word[2] = {pending_, p[0]};
      has_pending_ = false;
      dispatch(word, 1, cd, triggers, offset - 1);
      ++p;
      --n;
      ++offset;
    }
    dispatch(p, n / 2, cd, triggers, offset);
    if (n % 2 != 0) {
      pending_ = p[n - 1];
      has_pending_ = true;
    }
  }

  void finish() override {
    if (has_pending_) ++stats_.truncated_bytes;
    has_pending_ = false;
  }

  [[nodiscard]] DecoderState state() const override { return state_; }
  void restore(const DecoderState& state) override {
    // States come from time indexes on disk: clamp to what decoding can produce, so that a damaged one
    // cannot make the time arithmetic overflow (a no-op for any state this decoder saved).
    state_ = state;
    state_.loops = std::max(state.loops, 0);
    state_.time_base = std::clamp<std::int64_t>(state.time_base, 0, kMaxTime);
    state_.time = std::clamp<std::int64_t>(state.time, 0, kMaxTime);
    state_.first_time_high = std::clamp<std::int64_t>(state.first_time_high, -1, 0xFFF);
    state_.base_x = std::clamp(state.base_x, 0, static_cast<std::int32_t>(kBaseXClamp));
    state_.polarity = state.polarity & 1;
    state_.has_time_base = state.has_time_base != 0 ? 1 : 0;
    state_.y_valid = state.y_valid != 0 ? 1 : 0;
    has_pending_ = false;
  }
  void reset() override {
    state_ = DecoderState{};
    has_pending_ = false;
  }
  [[nodiscard]] std::size_t pending_bytes() const noexcept override { return has_pending_ ? 1 : 0; }

  [[nodiscard]] std::optional<std::int64_t> metavision_time_shift() const override {
    if (state_.first_time_high < 0) return std::nullopt;
    return state_.first_time_high > 0 ? (state_.first_time_high - 1) << 12 : 0;
  }

 private:
  void dispatch(const std::byte* in, std::size_t n_words, EventBuffer& cd, TriggerBuffer* triggers,
                std::int64_t offset) {
    if (n_words == 0) return;
    Violation v;
    const bool ok = options_.on_violation == OnViolation::raise ? run<true>(in, n_words, cd, triggers, v)
                                                                : run<false>(in, n_words, cd, triggers, v);
    if (!ok)
      throw FormatError(
          describe_location("EVT3 stream", offset + 2 * static_cast<std::int64_t>(v.word), v.what));
  }

  // Decodes n whole words. Returns false (with `viol` set) at the first violation when kRaise; the state and
  // buffers then reflect everything up to and including the offending word.
  template <bool kRaise>
  bool run(const std::byte* in, std::size_t n, EventBuffer& cd, TriggerBuffer* triggers, Violation& viol);

  DecoderState state_;
  const std::uint32_t limit_x_;
  const std::uint32_t limit_y_;
  bool has_pending_ = false;
  std::byte pending_{};
};

// Jumps out of the word loop to the block epilogue (which saves the state) when raising.
#define EVT3_VIOLATION(message)                                 \
  do {                                                          \
    if constexpr (kRaise) {                                     \
      viol = {static_cast<std::size_t>(p - in) / 2, (message)}; \
      p += 2;                                                   \
      ok = false;                                               \
      goto block_done;                                          \
    }                                                           \
  } while (0)

template <bool kRaise>
bool Evt3Decoder::run(const std::byte* in, std::size_t n, EventBuffer& cd, TriggerBuffer* triggers,
                      Violation& viol) {
  const bool want_triggers = triggers != nullptr && options_.decode_triggers;
  std::size_t i = 0;

  if (state_.has_time_base == 0) {
    // Reference decoders ignore everything until the first TIME_HIGH: no time, so nothing can be emitted.
    for (; i < n; ++i) {
      const unsigned w = load_word(in + 2 * i);
      const unsigned type = w >> 12;
      if (type == kTimeHigh) {
        const std::int64_t high = w & 0xFFF;
        state_.has_time_base = 1;
        state_.first_time_high = high;
        state_.loops = 0;
        state_.time_base = high << 12;
        state_.time = state_.time_base;
        ++i;
        break;
      }
      if (type == kAddrX || type == kVect12 || type == kVect8 || (type == kExtTrigger && want_triggers)) {
        ++stats_.before_time_base;
        if constexpr (kRaise) {
          viol = {i, "event word before the first EVT_TIME_HIGH"};
          return false;
        }
      }
    }
    if (state_.has_time_base == 0) return true;
  }

  const std::uint32_t limit_x = limit_x_;
  const std::uint32_t limit_row = limit_y_ << 16;  // y < limit_y  <=>  (y << 16) < limit_row
  // Bounds of an ADDR_X in one test: for key = (y << 16) | x (x < 2^11, y < 2^16), key + bounds_add has
  // bit 11 set iff x >= limit_x, and bit 32 set iff y >= limit_y (limits are at most 2048).
  const std::uint64_t bounds_add = (static_cast<std::uint64_t>(0x10000 - limit_y_) << 16) | (0x800 - limit_x);
  constexpr std::uint64_t kBoundsBits = (std::uint64_t{1} << 32) | 0x800;
  bool ok = true;
  while (i < n) {
    const std::size_t block = std::min(n - i, kBlockWords);
    EventCD* const begin = cd.prepare(block * kMaxEventsPerWord);
    EventCD* out = begin;
    const std::byte* p = in + 2 * i;
    const std::byte* const end = p + 2 * block;
    // time_backwards is checked lazily, once per group of events emitted at one `time` value: `mark` is
    // where the current group starts; at each time change (and at block end) a non-empty group is compared
    // with the previous event's t. No per-event work in the skip mode.
    EventCD* mark = begin;
    std::int64_t time = state_.time;
    std::int64_t time_base = state_.time_base;
    std::int64_t last_t = state_.last_event_t;
    std::int64_t loops = state_.loops;
    // The row as it sits in an event's first 32 bits (y << 16), or kNoRow before the first ADDR_Y. ADDR_Y
    // gives at most 12 bits (bit 11, the slave-camera flag, is kept so such rows fail the height check),
    // so kNoRow cannot come from a word; it fails the height check too.
    std::uint32_t row = state_.y_valid != 0 ? (static_cast<std::uint32_t>(state_.y) & 0xFFF) << 16 : kNoRow;
    std::uint32_t base_x =
        static_cast<std::uint32_t>(std::clamp(state_.base_x, 0, static_cast<std::int32_t>(kBaseXClamp)));
    std::uint64_t pol = static_cast<std::uint64_t>(state_.polarity & 1) << 32;

    auto drop = [&](std::uint64_t count) {
      if (row != kNoRow)
        stats_.out_of_bounds += count;
      else
        stats_.before_time_base += count;
    };
#define EVT3_DROP_MESSAGE (row != kNoRow ? "CD event out of bounds" : "CD event before the first EVT_ADDR_Y")
    // In raise mode, checked before the first event of each event-emitting word.
#define EVT3_CHECK_TIME_BACKWARDS()            \
  do {                                         \
    if constexpr (kRaise) {                    \
      if (time < last_t) {                     \
        ++stats_.time_backwards;               \
        last_t = time;                         \
        EVT3_VIOLATION("time went backwards"); \
      }                                        \
    }                                          \
  } while (0)

    for (; p != end; p += 2) {
      const unsigned w = load_word(p);
      if ((w & 0xD000u) == 0) [[likely]] {  // type 0 or 2
        // ADDR_Y (0) and ADDR_X (2) are ~80% of real streams and alternate unpredictably (rows of 1 to 12
        // events), so they share one branch-free path: the candidate event is always stored, `out` only
        // advances for an ADDR_X in bounds, and the row is blended with masks (not ?:, which the compiler
        // may turn back into a branch).
        const std::uint32_t is_x = w >> 13;
        const std::uint64_t keep = 0 - static_cast<std::uint64_t>(is_x);
        const std::uint32_t key = row | (w & 0x7FF);
        store_event(out, key | (static_cast<std::uint64_t>(w & 0x800) << 21), time);
        row = (row & static_cast<std::uint32_t>(keep)) | ((w << 16) & ~static_cast<std::uint32_t>(keep));
        if (((key + bounds_add) & kBoundsBits & keep) != 0) [[unlikely]] {
          drop(1);
          EVT3_VIOLATION(EVT3_DROP_MESSAGE);
          continue;
        }
        if constexpr (kRaise) {
          if (is_x != 0) EVT3_CHECK_TIME_BACKWARDS();
        }
        out += is_x;
        continue;
      }
      const unsigned type = w >> 12;
      const std::uint32_t xlim = row < limit_row ? limit_x : 0;  // x < xlim: the pixel is in bounds
      switch (type) {
        case kVectBaseX: {
          base_x = w & 0x7FF;
          pol = static_cast<std::uint64_t>(w & 0x800) << 21;
          // IMX636/Gen4.1 sensors emit VECT_BASE_X, VECT_12, VECT_12, VECT_8 (32 pixels): take the group as
          // one 32-bit mask when it lies inside the row, and store the first 4 events without branching
          // (most groups hold 2 to 4 events). Anything else goes word by word.
          if (end - p >= 8) {
            const unsigned w1 = load_word(p + 2);
            const unsigned w2 = load_word(p + 4);
            const unsigned w3 = load_word(p + 6);
            if (((w1 >> 12) | ((w2 >> 12) << 4) | ((w3 >> 12) << 8)) == 0x544 && base_x + 32 <= xlim &&
                (!kRaise || time >= last_t)) [[likely]] {
              std::uint32_t m = (w1 & 0xFFF) | ((w2 & 0xFFF) << 12) | ((w3 & 0xFF) << 24);
              const std::uint64_t lo = row | pol | base_x;
              // Slots past the last event get harmless junk (x = base + 32) that later events overwrite.
              // (No popcount: generic x86-64 has no POPCNT instruction.)
              for (int k = 0; k < 4; ++k) {
                store_event(out, lo + lowest_bit(m), time);
                out += m != 0;
                m &= m - 1;
              }
              if (m != 0) [[unlikely]] {
                do {
                  store_event(out++, lo + lowest_bit(m), time);
                  m &= m - 1;
                } while (m != 0);
              }
              base_x += 32;
              p += 6;
            }
          }
          break;
        }
        case kVect12:
        case kVect8: {
          const std::uint32_t width = type == kVect12 ? 12 : 8;
          std::uint32_t m = w & (width == 12 ? 0xFFFu : 0xFFu);
          std::uint32_t bx = base_x;
          if (bx + width <= xlim) [[likely]] {
            base_x = bx + width;
            if (m != 0) {
              EVT3_CHECK_TIME_BACKWARDS();
              const std::uint64_t lo = row | pol | bx;
              do {
                store_event(out++, lo + lowest_bit(m), time);
                m &= m - 1;
              } while (m != 0);
            }
          } else {
            bx = std::min(bx, kBaseXClamp);
            base_x = bx + width;
            if (m != 0) {
              // Part of the vector (or all of it) is outside: check each pixel.
              EventCD* const first = out;
              const std::uint64_t lo = row | pol;
              std::uint64_t dropped = 0;
              do {
                const std::uint32_t x = bx + lowest_bit(m);
                if (x < xlim)
                  store_event(out++, lo | x, time);
                else
                  ++dropped;
                m &= m - 1;
              } while (m != 0);
              if (out != first) EVT3_CHECK_TIME_BACKWARDS();
              if (dropped != 0) {
                drop(dropped);
                EVT3_VIOLATION(EVT3_DROP_MESSAGE);
              }
            }
          }
          break;
        }
        case kTimeLow:
          if (out != mark) {
            if (time < last_t) ++stats_.time_backwards;
            last_t = time;
          }
          time = time_base + (w & 0xFFF);
          mark = out;
          break;
        case kTimeHigh: {
          if (out != mark) {
            if (time < last_t) ++stats_.time_backwards;
            last_t = time;
          }
          const std::uint32_t high = w & 0xFFF;
          const std::uint32_t previous = static_cast<std::uint32_t>(time_base >> 12) & 0xFFF;
          bool glitch = false;
          if (previous >= high + 2048 && loops < kMaxLoops) {
            ++loops;
            ++stats_.time_loops;
          } else if (high < previous) {
            ++stats_.time_high_glitches;
            glitch = true;
          }
          time_base = (loops << 24) + (static_cast<std::int64_t>(high) << 12);
          time = time_base;  // TIME_HIGH resets time_low to 0
          mark = out;
          if (glitch) EVT3_VIOLATION("EVT_TIME_HIGH went backwards");
          break;
        }
        case kExtTrigger:
          if (want_triggers) {
            triggers->push_back(EventExtTrigger{static_cast<std::int16_t>(w & 1), time,
                                                static_cast<std::int16_t>((w >> 8) & 0xF)});
            ++stats_.trigger_events;
          }
          break;
        case kUnusedB:
        case kUnusedC:
          ++stats_.unknown_words;
          EVT3_VIOLATION("reserved EVT3 word type");
          break;
        case kAddrY:  // handled above
        case kAddrX: break;
        case kEmAddrY:
        case kContinued4:
        case kPadding:
        case kImu:
        case kOthers:
        case kContinued12:
        default: ++stats_.padding_words; break;
      }
    }

    [[maybe_unused]] block_done : i = static_cast<std::size_t>(p - in) / 2;
    if (out != mark) {
      if (time < last_t) ++stats_.time_backwards;
      last_t = time;
    }
    state_.time = time;
    state_.time_base = time_base;
    state_.last_event_t = last_t;
    state_.loops = static_cast<std::int32_t>(loops);
    state_.y = row != kNoRow ? static_cast<std::int32_t>(row >> 16) : 0;
    state_.y_valid = row != kNoRow ? 1 : 0;
    state_.base_x = static_cast<std::int32_t>(base_x);
    state_.polarity = static_cast<std::int32_t>(pol >> 32);
    const auto produced = static_cast<std::size_t>(out - begin);
    cd.commit(produced);
    stats_.cd_events += produced;
    if (!ok) return false;
  }
  return true;
}

#undef EVT3_CHECK_TIME_BACKWARDS
#undef EVT3_DROP_MESSAGE
#undef EVT3_VIOLATION

}  // namespace

std::unique_ptr<EventDecoder> make_evt3_decoder(const DecoderOptions& options) {
  return std::make_unique<Evt3Decoder>(options);
}

}  // namespace evloader::detail
