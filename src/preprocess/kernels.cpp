// SPDX-License-Identifier: Apache-2.0
// Event-to-tensor loops, templated on the output dtype: one pass over the events, no per-event calls
// through pointers, arithmetic done as the numba reference does it (float64, then cast on store).
#include "kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "evloader/core/error.hpp"

namespace evloader::preprocess_detail {

double py_floordiv(double vx, double wx) noexcept {
  const double mod = std::fmod(vx, wx);
  double div = (vx - mod) / wx;
  if (mod != 0.0 && ((wx < 0) != (mod < 0))) div -= 1.0;
  if (div == 0.0) return std::copysign(0.0, vx / wx);
  double floordiv = std::floor(div);
  if (div - floordiv > 0.5) floordiv += 1.0;
  return floordiv;
}

namespace {

// Calls fn(T{}) with T the C++ type of d.
template <class Fn>
void with_any_dtype(DType d, Fn&& fn) {
  switch (d) {
    case DType::float32: fn(float{}); break;
    case DType::float64: fn(double{}); break;
    case DType::int8: fn(std::int8_t{}); break;
    case DType::uint8: fn(std::uint8_t{}); break;
    case DType::int16: fn(std::int16_t{}); break;
    case DType::int32: fn(std::int32_t{}); break;
    case DType::int64: fn(std::int64_t{}); break;
  }
}

template <class Fn>
void with_float_dtype(DType d, Fn&& fn) {
  if (d == DType::float64) {
    fn(double{});
  } else {
    fn(float{});
  }
}

// double -> T as numba stores a float64 into an array element: round to nearest for floats, truncation
// for integers. Integers saturate instead of hitting undefined behaviour when out of range (the
// reference's result is platform-defined there).
template <class T>
inline T store_cast(double v) noexcept {
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(v);
  } else {
    constexpr double lo = static_cast<double>(std::numeric_limits<T>::min());
    constexpr double hi = static_cast<double>(std::numeric_limits<T>::max());
    if (!(v > lo)) return v != v ? T(0) : std::numeric_limits<T>::min();
    if (v >= hi) return std::numeric_limits<T>::max();
    return static_cast<T>(v);
  }
}

// The reference's running time bin (metavision_ml 4.2.1, shared by histo, diff, timesurface and the
// quantized kernels): bins never decrease, and the bin only moves when t reaches the next bin's
// integer threshold while the bin is not the last one. A bin >= `bins` is where the reference writes
// out of bounds; it never changes again, so the kernels stop there.
class BinClock {
 public:
  BinClock(Timestamp total, std::int64_t bins) noexcept
      : dt_(static_cast<double>(total) / static_cast<double>(bins)), bins_(bins), threshold_(ceil_int(dt_)) {}

  [[nodiscard]] double dt() const noexcept { return dt_; }

  [[nodiscard]] std::int64_t bin(Timestamp t) noexcept {
    if (t >= threshold_ && bin_ + 1 < bins_) [[unlikely]]
      advance(t);
    return bin_;
  }

 private:
  static std::int64_t ceil_int(double v) noexcept {
    const double c = std::ceil(v);
    return c >= 9.2e18 ? std::numeric_limits<std::int64_t>::max() : static_cast<std::int64_t>(c);
  }

  void advance(Timestamp t) noexcept {
    const double q = py_floordiv(static_cast<double>(t), dt_);  // t >= threshold >= 1, so q >= 0
    if (!(q < static_cast<double>(bins_))) {
      bin_ = bins_;
      return;
    }
    bin_ = static_cast<std::int64_t>(q);
    if (bin_ + 1 < bins_) threshold_ = ceil_int(static_cast<double>(bin_ + 1) * dt_);
  }

  double dt_;
  std::int64_t bins_;
  std::int64_t bin_ = 0;
  std::int64_t threshold_;
};

// Geometry of a [bins, channels, height, width] tensor, in elements.
struct Layout {
  std::int64_t bins, channels, height, width;
  [[nodiscard]] std::size_t plane() const noexcept { return static_cast<std::size_t>(height * width); }
  [[nodiscard]] std::size_t index(std::int64_t b, std::int64_t c, std::uint32_t y,
                                  std::uint32_t x) const noexcept {
    return (static_cast<std::size_t>(b * channels + c) * static_cast<std::size_t>(height) + y) *
               static_cast<std::size_t>(width) +
           x;
  }
};

// Events per block of the two-pass loops below: small enough that the block's cells stay in L1/L2 between
// the passes, large enough to keep many cache misses in flight.
constexpr std::size_t kBlock = 128;

// Walks the events with the reference's running bin, dropping the events it would write out of bounds
// (bin >= bins: the walk stops there; pixel outside the layout after >> ds; cell_of returning -1).
// Two passes per block: the first computes every kept event's cell and prefetches it, the second applies
// update(cell, event, bin) in event order. Outputs are megabytes and events land on scattered pixels, so
// the loop is bound by memory latency; overlapping the misses of a block is what makes it fast.
template <class Elem, class CellOf, class Update>
inline void for_each_binned(std::span<const EventCD> events, Timestamp total, const Layout& l, int ds,
                            Elem* base, CellOf&& cell_of, Update&& update) {
  BinClock clock(total, l.bins);
  const auto width = static_cast<std::uint32_t>(std::min<std::int64_t>(l.width, 1 << 20));
  const auto height = static_cast<std::uint32_t>(std::min<std::int64_t>(l.height, 1 << 20));
  const unsigned shift = static_cast<unsigned>(ds);
  std::size_t cells[kBlock];
  std::uint32_t which[kBlock];
  std::int64_t bins[kBlock];
  const EventCD* ev = events.data();
  const std::size_t n = events.size();
  bool stop = false;
  for (std::size_t first = 0; first < n && !stop; first += kBlock) {
    const std::size_t end = std::min(n, first + kBlock);
    std::size_t m = 0;
    for (std::size_t i = first; i < end; ++i) {
      const EventCD& e = ev[i];
      const std::int64_t b = clock.bin(e.t);
      if (b >= l.bins) [[unlikely]] {
        stop = true;
        break;
      }
      const std::uint32_t x = static_cast<std::uint32_t>(e.x) >> shift;
      const std::uint32_t y = static_cast<std::uint32_t>(e.y) >> shift;
      if (x >= width || y >= height) [[unlikely]]
        continue;
      const std::int64_t c = cell_of(e, b, x, y);
      if (c < 0) [[unlikely]]
        continue;
      __builtin_prefetch(base + c, 1, 3);
      cells[m] = static_cast<std::size_t>(c);
      which[m] = static_cast<std::uint32_t>(i - first);
      bins[m] = b;
      ++m;
    }
    for (std::size_t j = 0; j < m; ++j) update(base[cells[j]], ev[first + which[j]], bins[j]);
  }
}

template <class T>
void histo_impl(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, double k) {
  const Layout l{out.shape[0], 2, out.shape[2], out.shape[3]};
  for_each_binned(
      events, total, l, ds, out.as<T>(),
      [&](const EventCD& e, std::int64_t b, std::uint32_t x, std::uint32_t y) -> std::int64_t {
        const auto p = static_cast<std::uint16_t>(e.p);
        return p > 1 ? -1 : static_cast<std::int64_t>(l.index(b, p, y, x));
      },
      [k](T& cell, const EventCD&, std::int64_t) {
        // min(v + k, 1): the reference's "v + k if v + k <= 1 else 1", without a branch
        cell = store_cast<T>(std::min(static_cast<double>(cell) + k, 1.0));
      });
}

template <class T>
void diff_impl(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, double k) {
  const Layout l{out.shape[0], 1, out.shape[2], out.shape[3]};
  for_each_binned(
      events, total, l, ds, out.as<T>(),
      [&](const EventCD&, std::int64_t b, std::uint32_t x, std::uint32_t y) {
        return static_cast<std::int64_t>(l.index(b, 0, y, x));
      },
      [k](T& cell, const EventCD& e, std::int64_t) {
        // ON: min(v + k, 1), OFF: max(v - k, -1), selected without a branch (polarities alternate
        // unpredictably).
        const double v = static_cast<double>(cell);
        const double candidates[2] = {std::max(v - k, -1.0), std::min(v + k, 1.0)};
        cell = store_cast<T>(candidates[e.p != 0]);
      });
}

template <class T>
void timesurface_impl(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds,
                      bool normed) {
  // multi_channel_timesurface views [T, C, H, W] as [T*C/2, 2, H, W]: same memory, more bins.
  const Layout l{out.shape[0] * out.shape[1] / 2, 2, out.shape[2], out.shape[3]};
  const double dt = static_cast<double>(total) / static_cast<double>(l.bins);
  auto offset = [dt](const EventCD& e, std::int64_t b) {
    return static_cast<double>(e.t) - static_cast<double>(b) * dt;
  };
  for_each_binned(
      events, total, l, ds, out.as<T>(),
      [&](const EventCD& e, std::int64_t b, std::uint32_t x, std::uint32_t y) -> std::int64_t {
        const auto p = static_cast<std::uint16_t>(e.p);
        const double value = offset(e, b);
        // the reference's guard against stale timestamps: 0 <= t - bin*dt < dt
        if (p > 1 || !(value >= 0.0 && value < dt)) return -1;
        return static_cast<std::int64_t>(l.index(b, p, y, x));
      },
      [&](T& cell, const EventCD& e, std::int64_t b) {
        const double value = offset(e, b);
        cell = store_cast<T>(normed ? value / dt : value);
      });
}

template <class T>
void event_cube_impl(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds,
                     bool split, double k) {
  const std::int64_t polarities = split ? 2 : 1;
  const Layout l{out.shape[0] * out.shape[1] / polarities, polarities, out.shape[2], out.shape[3]};
  const std::int64_t n = l.bins;
  const auto un = static_cast<std::uint64_t>(n);
  const double total_d = static_cast<double>(total);
  const double n_d = static_cast<double>(n);
  const auto width = static_cast<std::uint32_t>(std::min<std::int64_t>(l.width, 1 << 20));
  const auto height = static_cast<std::uint32_t>(std::min<std::int64_t>(l.height, 1 << 20));
  const unsigned shift = static_cast<unsigned>(ds);
  const std::size_t plane_stride = l.plane() * static_cast<std::size_t>(polarities);  // one micro-bin
  T* base = out.as<T>();
  // Per block: the left cell of each kept event and its two weights (prefetched), then the clamped
  // accumulations in event order, left micro-bin before right as the reference.
  std::size_t cells[kBlock];
  double wls[kBlock], wrs[kBlock];
  std::uint8_t has_left[kBlock], has_right[kBlock];
  const EventCD* ev = events.data();
  const std::size_t count = events.size();
  auto accumulate = [k](T& cell, double w) {
    const double v = static_cast<double>(cell) + w * k;
    cell = static_cast<T>(std::max(-1.0, std::min(v, 1.0)));
  };
  for (std::size_t first = 0; first < count; first += kBlock) {
    const std::size_t end = std::min(count, first + kBlock);
    std::size_t m = 0;
    for (std::size_t i = first; i < end; ++i) {
      const EventCD& e = ev[i];
      const std::uint32_t x = static_cast<std::uint32_t>(e.x) >> shift;
      const std::uint32_t y = static_cast<std::uint32_t>(e.y) >> shift;
      if (x >= width || y >= height) [[unlikely]]
        continue;
      std::int64_t channel = 0;
      if (split) {
        const auto p = static_cast<std::uint16_t>(e.p);
        if (p > 1) [[unlikely]]
          continue;
        channel = p;
      }
      // (t * n) / total as numba evaluates it: int64 product (wrapping), true division in float64.
      const auto tn = static_cast<std::int64_t>(static_cast<std::uint64_t>(e.t) * un);
      const double s = static_cast<double>(tn) / total_d - 0.5;
      if (!(s >= -1.0 && s < n_d)) [[unlikely]]
        continue;  // neither neighbouring micro-bin is in [0, n)
      // floor of s in [-1, n): truncation, one down for negative non-integers (std::floor is a libm
      // call without SSE4.1)
      auto left = static_cast<std::int64_t>(s);
      left -= static_cast<double>(left) > s;
      double wl = std::max(0.0, 1.0 - std::abs(static_cast<double>(left) - s));
      double wr = 1.0 - wl;
      if (!split && e.p == 0) {
        wl = -wl;
        wr = -wr;
      }
      // left may be -1 (only the right micro-bin 0 exists): index from micro-bin 0 and step back.
      const std::size_t right_cell = l.index(left + 1, channel, y, x);
      has_left[m] = left >= 0;
      has_right[m] = left + 1 < n;
      if (has_left[m]) __builtin_prefetch(base + (right_cell - plane_stride), 1, 3);
      if (has_right[m]) __builtin_prefetch(base + right_cell, 1, 3);
      cells[m] = right_cell;
      wls[m] = wl;
      wrs[m] = wr;
      ++m;
    }
    for (std::size_t j = 0; j < m; ++j) {
      if (has_left[j]) accumulate(base[cells[j] - plane_stride], wls[j]);
      if (has_right[j]) accumulate(base[cells[j]], wrs[j]);
    }
  }
}

// Per-thread zeroed scratch for the full-resolution counters of the quantized kernels with ds > 0, kept
// between calls so that a worker does not reallocate it for every window.
std::uint8_t* zeroed_scratch(std::size_t bytes) {
  thread_local std::unique_ptr<std::uint8_t[]> buffer;
  thread_local std::size_t capacity = 0;
  if (bytes > capacity) {
    buffer.reset();
    buffer = std::make_unique_for_overwrite<std::uint8_t[]>(bytes);
    capacity = bytes;
  }
  std::memset(buffer.get(), 0, bytes);
  return buffer.get();
}

// Full-resolution layout of the quantized counters: H << ds by W << ds, limited to the 16-bit coordinate
// range (rows and columns beyond it can hold no event, so their counters stay 0).
Layout full_resolution(const TensorView& out, int ds, std::int64_t channels) {
  const std::int64_t h = std::min<std::int64_t>(out.shape[2] << ds, 65536);
  const std::int64_t w = std::min<std::int64_t>(out.shape[3] << ds, 65536);
  const Layout l{out.shape[0], channels, h, w};
  const double bytes = static_cast<double>(l.bins) * static_cast<double>(channels) * static_cast<double>(h) *
                       static_cast<double>(w);
  if (bytes > static_cast<double>(std::size_t{1} << 32))
    throw ConfigError("quantized preprocessing: downsampling_factor " + std::to_string(ds) +
                      " needs full-resolution counters larger than 4 GiB for this output");
  return l;
}

// Average pooling of the reference (_downsampling_quantized): out += counts[.., r::s, c::s] for r, c in
// row-major order, then out /= s*s, each step rounded in T like numpy's in-place array operations; then
// out /= divisor when normalising (divisor 1: nothing).
template <class T, class Counter>
void pool(const Counter* counts, const Layout& full, const TensorView& out, int ds, double divisor) {
  const std::int64_t s = std::int64_t{1} << ds;
  const double area = static_cast<double>(s * s);
  const std::int64_t height = out.shape[2], width = out.shape[3];
  T* o = out.as<T>();
  auto finish = [&](T v) {
    v = static_cast<T>(static_cast<double>(v) / area);
    return divisor == 1.0 ? v : static_cast<T>(static_cast<double>(v) / divisor);
  };
  for (std::int64_t bc = 0; bc < full.bins * full.channels; ++bc) {
    const Counter* plane = counts + static_cast<std::size_t>(bc) * full.plane();
    T* dst = o + static_cast<std::size_t>(bc * height * width);
    for (std::int64_t y = 0; y < height; ++y) {
      for (std::int64_t x = 0; x < width; ++x) {
        T v = dst[y * width + x];
        for (std::int64_t r = 0; r < s; ++r) {
          const std::int64_t row = y * s + r;
          for (std::int64_t c = 0; c < s; ++c) {
            const std::int64_t col = x * s + c;
            const T count = (row < full.height && col < full.width)
                                ? static_cast<T>(plane[static_cast<std::size_t>(row * full.width + col)])
                                : T(0);
            v = static_cast<T>(v + count);
          }
        }
        dst[y * width + x] = finish(v);
      }
    }
  }
}

// The same pooling into a zeroed output, when every block lies inside the counters and its sum stays
// below 2^24: the reference's float additions of small integers onto 0 are then exact in any order, so
// the sum is formed in integers, row by row.
template <class T, class Counter>
void pool_zeroed(const Counter* counts, const Layout& full, const TensorView& out, int ds, double divisor) {
  const std::int64_t s = std::int64_t{1} << ds;
  const double area = static_cast<double>(s * s);
  const std::int64_t height = out.shape[2], width = out.shape[3];
  std::vector<std::int32_t> sums(static_cast<std::size_t>(width));
  T* o = out.as<T>();
  for (std::int64_t bc = 0; bc < full.bins * full.channels; ++bc) {
    const Counter* plane = counts + static_cast<std::size_t>(bc) * full.plane();
    T* dst = o + static_cast<std::size_t>(bc * height * width);
    for (std::int64_t y = 0; y < height; ++y) {
      std::fill(sums.begin(), sums.end(), 0);
      for (std::int64_t r = 0; r < s; ++r) {
        const Counter* src = plane + static_cast<std::size_t>((y * s + r) * full.width);
        if (s == 2) {
          for (std::int64_t x = 0; x < width; ++x)
            sums[static_cast<std::size_t>(x)] += src[2 * x] + src[2 * x + 1];
        } else {
          for (std::int64_t x = 0; x < width; ++x)
            for (std::int64_t c = 0; c < s; ++c) sums[static_cast<std::size_t>(x)] += src[x * s + c];
        }
      }
      for (std::int64_t x = 0; x < width; ++x) {
        T v = static_cast<T>(static_cast<T>(sums[static_cast<std::size_t>(x)]) / static_cast<T>(area));
        if (divisor != 1.0) v = static_cast<T>(static_cast<double>(v) / divisor);
        dst[y * width + x] = v;
      }
    }
  }
}

template <class T, class Counter>
void pool_any(const Counter* counts, const Layout& full, const TensorView& out, int ds, double divisor,
              bool reset) {
  const bool inside = full.height == out.shape[2] << ds && full.width == out.shape[3] << ds;
  if (reset && inside && ds <= 8) {
    pool_zeroed<T>(counts, full, out, ds, divisor);
  } else {
    pool<T>(counts, full, out, ds, divisor);
  }
}

template <class T>
void divide_all(const TensorView& out, double divisor) {
  T* o = out.as<T>();
  const std::size_t n = out.numel();
  for (std::size_t i = 0; i < n; ++i) o[i] = static_cast<T>(static_cast<double>(o[i]) / divisor);
}

// Counting with the reference's saturation rule, on counters of type Cell (the output itself at ds 0,
// int8/uint8 scratch otherwise). Coordinates are not shifted: counting is at full resolution.
template <class Cell>
void count_diff(std::span<const EventCD> events, Cell* base, const Layout& l, Timestamp total, int pos_clamp,
                int neg_clamp) {
  const double pos = pos_clamp, neg = -static_cast<double>(neg_clamp);
  for_each_binned(
      events, total, l, 0, base,
      [&](const EventCD&, std::int64_t b, std::uint32_t x, std::uint32_t y) {
        return static_cast<std::int64_t>(l.index(b, 0, y, x));
      },
      [&](Cell& cell, const EventCD& e, std::int64_t) {
        if constexpr (std::is_integral_v<Cell>) {
          // branch-free: ON increments when the result stays <= pos, OFF decrements when it stays >= neg
          const int v = cell;
          const bool on = e.p != 0;
          const int next = on ? v + 1 : v - 1;
          const bool ok = on ? next <= pos_clamp : next >= -neg_clamp;
          cell = static_cast<Cell>(ok ? next : v);
        } else {
          const double v = static_cast<double>(cell);
          if (e.p != 0) {
            if (v + 1.0 <= pos) cell = static_cast<Cell>(v + 1.0);
          } else {
            if (v - 1.0 >= neg) cell = static_cast<Cell>(v - 1.0);
          }
        }
      });
}

template <class Cell>
void count_histo(std::span<const EventCD> events, Cell* base, const Layout& l, Timestamp total, int off_clamp,
                 int on_clamp) {
  const double clamps[2] = {static_cast<double>(off_clamp), static_cast<double>(on_clamp)};
  const int int_clamps[2] = {off_clamp, on_clamp};
  for_each_binned(
      events, total, l, 0, base,
      [&](const EventCD& e, std::int64_t b, std::uint32_t x, std::uint32_t y) -> std::int64_t {
        const auto p = static_cast<std::uint16_t>(e.p);
        return p > 1 ? -1 : static_cast<std::int64_t>(l.index(b, p, y, x));
      },
      [&](Cell& cell, const EventCD& e, std::int64_t) {
        if constexpr (std::is_integral_v<Cell>) {
          const int v = cell;
          cell = static_cast<Cell>(v + (v + 1 <= int_clamps[e.p]));
        } else {
          const double v = static_cast<double>(cell);
          if (v + 1.0 <= clamps[e.p]) cell = static_cast<Cell>(v + 1.0);
        }
      });
}

}  // namespace

void histo(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, double k,
           bool reset) {
  with_any_dtype(out.dtype, [&](auto tag) {
    // Counting in uint8 then expanding through the table of the reference's saturating steps was
    // measured slower: the scattered updates cost about as much on 1-byte as on 4-byte cells, and the
    // expansion pass costs more than the zero fill.
    if (reset) std::memset(out.data, 0, out.nbytes());
    histo_impl<decltype(tag)>(events, out, total, ds, k);
  });
}

void diff(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, double k) {
  with_any_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_signed_v<T>) diff_impl<T>(events, out, total, ds, k);
  });
}

void timesurface(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds,
                 bool normed) {
  with_any_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (sizeof(T) >= 4) timesurface_impl<T>(events, out, total, ds, normed);
  });
}

void event_cube(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, bool split,
                double k) {
  with_float_dtype(out.dtype,
                   [&](auto tag) { event_cube_impl<decltype(tag)>(events, out, total, ds, split, k); });
}

void diff_quantized(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, int nbl,
                    bool normalization, bool reset) {
  const int neg_clamp = 1 << (nbl - 1);
  const int pos_clamp = neg_clamp - 1;
  if (ds == 0) {
    const Layout l{out.shape[0], 1, out.shape[2], out.shape[3]};
    if (out.dtype == DType::int8) {
      count_diff(events, out.as<std::int8_t>(), l, total, pos_clamp, neg_clamp);
      return;
    }
    with_float_dtype(out.dtype, [&](auto tag) {
      using T = decltype(tag);
      count_diff(events, out.as<T>(), l, total, pos_clamp, neg_clamp);
      if (normalization) divide_all<T>(out, neg_clamp);
    });
    return;
  }
  const Layout full = full_resolution(out, ds, 1);
  auto* counts =
      reinterpret_cast<std::int8_t*>(zeroed_scratch(full.plane() * static_cast<std::size_t>(full.bins)));
  count_diff(events, counts, full, total, pos_clamp, neg_clamp);
  with_float_dtype(out.dtype, [&](auto tag) {
    pool_any<decltype(tag)>(counts, full, out, ds, normalization ? neg_clamp : 1.0, reset);
  });
}

void histo_quantized(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, int nbl,
                     int tbl, bool normalization, bool reset) {
  const int off_clamp = (1 << nbl) - 1;
  const int on_clamp = (1 << (tbl - nbl)) - 1;
  const double max_clamp = std::max(off_clamp, on_clamp);
  if (ds == 0) {
    const Layout l{out.shape[0], 2, out.shape[2], out.shape[3]};
    if (out.dtype == DType::uint8) {
      count_histo(events, out.as<std::uint8_t>(), l, total, off_clamp, on_clamp);
      return;
    }
    with_float_dtype(out.dtype, [&](auto tag) {
      using T = decltype(tag);
      count_histo(events, out.as<T>(), l, total, off_clamp, on_clamp);
      if (normalization) divide_all<T>(out, max_clamp);
    });
    return;
  }
  const Layout full = full_resolution(out, ds, 2);
  std::uint8_t* counts = zeroed_scratch(full.plane() * static_cast<std::size_t>(full.bins * 2));
  count_histo(events, counts, full, total, off_clamp, on_clamp);
  with_float_dtype(out.dtype, [&](auto tag) {
    pool_any<decltype(tag)>(counts, full, out, ds, normalization ? max_clamp : 1.0, reset);
  });
}

}  // namespace evloader::preprocess_detail
