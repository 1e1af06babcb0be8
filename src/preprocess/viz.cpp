// SPDX-License-Identifier: Apache-2.0
// Images of event tensors with the arithmetic of metavision_ml's viz.py (numpy float32 steps, truncating
// uint8 casts) and OpenCV's JET table, without OpenCV.
#include "evloader/preprocess/viz.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"

namespace evloader {

namespace {

// OpenCV COLORMAP_JET (cv::applyColorMap on gray levels 0..255), colours reordered from BGR to RGB.
constexpr std::array<Rgb, 256> kJet{{
    {0, 0, 128},     {0, 0, 132},     {0, 0, 136},     {0, 0, 140},     {0, 0, 144},     {0, 0, 148},
    {0, 0, 152},     {0, 0, 156},     {0, 0, 160},     {0, 0, 164},     {0, 0, 168},     {0, 0, 172},
    {0, 0, 176},     {0, 0, 180},     {0, 0, 184},     {0, 0, 188},     {0, 0, 192},     {0, 0, 196},
    {0, 0, 200},     {0, 0, 204},     {0, 0, 208},     {0, 0, 212},     {0, 0, 216},     {0, 0, 220},
    {0, 0, 224},     {0, 0, 228},     {0, 0, 232},     {0, 0, 236},     {0, 0, 240},     {0, 0, 244},
    {0, 0, 248},     {0, 0, 252},     {0, 0, 255},     {0, 4, 255},     {0, 8, 255},     {0, 12, 255},
    {0, 16, 255},    {0, 20, 255},    {0, 24, 255},    {0, 28, 255},    {0, 32, 255},    {0, 36, 255},
    {0, 40, 255},    {0, 44, 255},    {0, 48, 255},    {0, 52, 255},    {0, 56, 255},    {0, 60, 255},
    {0, 64, 255},    {0, 68, 255},    {0, 72, 255},    {0, 76, 255},    {0, 80, 255},    {0, 84, 255},
    {0, 88, 255},    {0, 92, 255},    {0, 96, 255},    {0, 100, 255},   {0, 104, 255},   {0, 108, 255},
    {0, 112, 255},   {0, 116, 255},   {0, 120, 255},   {0, 124, 255},   {0, 128, 255},   {0, 132, 255},
    {0, 136, 255},   {0, 140, 255},   {0, 144, 255},   {0, 148, 255},   {0, 152, 255},   {0, 156, 255},
    {0, 160, 255},   {0, 164, 255},   {0, 168, 255},   {0, 172, 255},   {0, 176, 255},   {0, 180, 255},
    {0, 184, 255},   {0, 188, 255},   {0, 192, 255},   {0, 196, 255},   {0, 200, 255},   {0, 204, 255},
    {0, 208, 255},   {0, 212, 255},   {0, 216, 255},   {0, 220, 255},   {0, 224, 255},   {0, 228, 255},
    {0, 232, 255},   {0, 236, 255},   {0, 240, 255},   {0, 244, 255},   {0, 248, 255},   {0, 252, 255},
    {2, 255, 254},   {6, 255, 250},   {10, 255, 246},  {14, 255, 242},  {18, 255, 238},  {22, 255, 234},
    {26, 255, 230},  {30, 255, 226},  {34, 255, 222},  {38, 255, 218},  {42, 255, 214},  {46, 255, 210},
    {50, 255, 206},  {54, 255, 202},  {58, 255, 198},  {62, 255, 194},  {66, 255, 190},  {70, 255, 186},
    {74, 255, 182},  {78, 255, 178},  {82, 255, 174},  {86, 255, 170},  {90, 255, 166},  {94, 255, 162},
    {98, 255, 158},  {102, 255, 154}, {106, 255, 150}, {110, 255, 146}, {114, 255, 142}, {118, 255, 138},
    {122, 255, 134}, {126, 255, 130}, {130, 255, 126}, {134, 255, 122}, {138, 255, 118}, {142, 255, 114},
    {146, 255, 110}, {150, 255, 106}, {154, 255, 102}, {158, 255, 98},  {162, 255, 94},  {166, 255, 90},
    {170, 255, 86},  {174, 255, 82},  {178, 255, 78},  {182, 255, 74},  {186, 255, 70},  {190, 255, 66},
    {194, 255, 62},  {198, 255, 58},  {202, 255, 54},  {206, 255, 50},  {210, 255, 46},  {214, 255, 42},
    {218, 255, 38},  {222, 255, 34},  {226, 255, 30},  {230, 255, 26},  {234, 255, 22},  {238, 255, 18},
    {242, 255, 14},  {246, 255, 10},  {250, 255, 6},   {254, 255, 1},   {255, 252, 0},   {255, 248, 0},
    {255, 244, 0},   {255, 240, 0},   {255, 236, 0},   {255, 232, 0},   {255, 228, 0},   {255, 224, 0},
    {255, 220, 0},   {255, 216, 0},   {255, 212, 0},   {255, 208, 0},   {255, 204, 0},   {255, 200, 0},
    {255, 196, 0},   {255, 192, 0},   {255, 188, 0},   {255, 184, 0},   {255, 180, 0},   {255, 176, 0},
    {255, 172, 0},   {255, 168, 0},   {255, 164, 0},   {255, 160, 0},   {255, 156, 0},   {255, 152, 0},
    {255, 148, 0},   {255, 144, 0},   {255, 140, 0},   {255, 136, 0},   {255, 132, 0},   {255, 128, 0},
    {255, 124, 0},   {255, 120, 0},   {255, 116, 0},   {255, 112, 0},   {255, 108, 0},   {255, 104, 0},
    {255, 100, 0},   {255, 96, 0},    {255, 92, 0},    {255, 88, 0},    {255, 84, 0},    {255, 80, 0},
    {255, 76, 0},    {255, 72, 0},    {255, 68, 0},    {255, 64, 0},    {255, 60, 0},    {255, 56, 0},
    {255, 52, 0},    {255, 48, 0},    {255, 44, 0},    {255, 40, 0},    {255, 36, 0},    {255, 32, 0},
    {255, 28, 0},    {255, 24, 0},    {255, 20, 0},    {255, 16, 0},    {255, 12, 0},    {255, 8, 0},
    {255, 4, 0},     {255, 0, 0},     {252, 0, 0},     {248, 0, 0},     {244, 0, 0},     {240, 0, 0},
    {236, 0, 0},     {232, 0, 0},     {228, 0, 0},     {224, 0, 0},     {220, 0, 0},     {216, 0, 0},
    {212, 0, 0},     {208, 0, 0},     {204, 0, 0},     {200, 0, 0},     {196, 0, 0},     {192, 0, 0},
    {188, 0, 0},     {184, 0, 0},     {180, 0, 0},     {176, 0, 0},     {172, 0, 0},     {168, 0, 0},
    {164, 0, 0},     {160, 0, 0},     {156, 0, 0},     {152, 0, 0},     {148, 0, 0},     {144, 0, 0},
    {140, 0, 0},     {136, 0, 0},     {132, 0, 0},     {128, 0, 0},
}};

struct Frame {
  std::size_t height, width, pixels;
};

Frame checked_frame(const TensorView& frame, std::int64_t min_channels, std::span<std::uint8_t> dst,
                    std::size_t bytes_per_pixel, const char* what) {
  const auto& s = frame.shape;
  if (s[0] != 1 || s[2] < 1 || s[3] < 1 || frame.data == nullptr)
    throw ConfigError(std::string(what) + ": expected one frame of shape [1, C, H, W] with H, W >= 1");
  if (s[1] < min_channels)
    throw ConfigError(std::string(what) + ": the frame has " + std::to_string(s[1]) +
                      " channels, needs at least " + std::to_string(min_channels));
  const Frame f{static_cast<std::size_t>(s[2]), static_cast<std::size_t>(s[3]),
                static_cast<std::size_t>(s[2] * s[3])};
  if (dst.size() != f.pixels * bytes_per_pixel)
    throw ConfigError(std::string(what) + ": destination holds " + std::to_string(dst.size()) +
                      " bytes, expected " + std::to_string(f.pixels * bytes_per_pixel));
  return f;
}

template <class Fn>
void with_dtype(DType d, Fn&& fn) {
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

// Channel c of the frame converted to F (numpy's astype).
template <class F>
std::vector<F> plane_as(const TensorView& frame, std::int64_t c) {
  const auto n = static_cast<std::size_t>(frame.shape[2] * frame.shape[3]);
  std::vector<F> out(n);
  with_dtype(frame.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* src = frame.as<T>() + static_cast<std::size_t>(c) * n;
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<F>(src[i]);
  });
  return out;
}

// numpy's float -> uint8 cast on x86: through a 32-bit integer, keeping the low byte (0 when out of
// the int32 range or NaN). Identity for values in [0, 256).
inline std::uint8_t numpy_to_uint8(double v) noexcept {
  if (!(v > -2147483649.0 && v < 2147483648.0)) return 0;
  return static_cast<std::uint8_t>(static_cast<std::uint32_t>(static_cast<std::int32_t>(v)) & 0xFFu);
}

// viz_diff: filter_outliers(im, 3), normalize, * 255, uint8; all 127 when that is all 0.
void diff_to_gray(const std::vector<float>& im, std::span<std::uint8_t> gray) {
  const std::size_t n = im.size();
  double sum = 0;
  for (float v : im) sum += v;
  const double mean = sum / static_cast<double>(n);
  double sq = 0;
  for (float v : im) sq += (v - mean) * (v - mean);
  // numpy works in float32 here: mean and std are float32 scalars, 3 * std too.
  const float mean_f = static_cast<float>(mean);
  const float range = 3.0f * static_cast<float>(std::sqrt(sq / static_cast<double>(n)));
  const float img_min = mean_f - range, img_max = mean_f + range;
  float lo = 0, hi = 0;
  bool first = true;
  for (float v : im) {
    const float c = std::min(std::max(v, img_min), img_max);
    if (first || c < lo) lo = c;
    if (first || c > hi) hi = c;
    first = false;
  }
  const float denom = (hi - lo) + 1e-6f;
  std::uint8_t top = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float c = std::min(std::max(im[i], img_min), img_max);
    const float scaled = ((c - lo) / denom) * 255.0f;
    gray[i] = numpy_to_uint8(scaled);
    top = std::max(top, gray[i]);
  }
  if (top == 0) std::fill(gray.begin(), gray.end(), std::uint8_t{127});
}

std::vector<float> histo_difference(const TensorView& frame, std::int64_t off, std::int64_t on) {
  std::vector<float> a = plane_as<float>(frame, on);
  const std::vector<float> b = plane_as<float>(frame, off);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = a[i] - b[i];
  return a;
}

void gray_into_channel(std::span<const std::uint8_t> gray, std::span<std::uint8_t> rgb, int channel) {
  for (std::size_t i = 0; i < gray.size(); ++i) rgb[3 * i + static_cast<std::size_t>(channel)] = gray[i];
}

// JET of numpy_to_uint8(im * 255), im computed in its own dtype (F float for float32, double else).
template <class F>
void jet_of(const std::vector<F>& im, std::span<std::uint8_t> rgb) {
  for (std::size_t i = 0; i < im.size(); ++i) {
    const F scaled = im[i] * static_cast<F>(255);
    std::memcpy(&rgb[3 * i], kJet[numpy_to_uint8(static_cast<double>(scaled))].data(), 3);
  }
}

}  // namespace

const std::array<Rgb, 256>& jet_colormap() noexcept { return kJet; }

void viz_histo_binarized(const TensorView& frame, std::span<std::uint8_t> rgb) {
  const Frame f = checked_frame(frame, 2, rgb, 3, "viz_histo_binarized");
  const std::vector<double> off = plane_as<double>(frame, 0), on = plane_as<double>(frame, 1);
  for (std::size_t i = 0; i < f.pixels; ++i) {
    const Rgb& c = on[i] > 0 ? kVizNegative : off[i] > 0 ? kVizPositive : kVizBackground;
    std::memcpy(&rgb[3 * i], c.data(), 3);
  }
}

void viz_diff_binarized(const TensorView& frame, std::span<std::uint8_t> rgb) {
  const Frame f = checked_frame(frame, 1, rgb, 3, "viz_diff_binarized");
  const std::vector<double> d = plane_as<double>(frame, 0);
  for (std::size_t i = 0; i < f.pixels; ++i) {
    const Rgb& c = d[i] < 0 ? kVizNegative : d[i] > 0 ? kVizPositive : kVizBackground;
    std::memcpy(&rgb[3 * i], c.data(), 3);
  }
}

void viz_diff(const TensorView& frame, std::span<std::uint8_t> gray) {
  checked_frame(frame, 1, gray, 1, "viz_diff");
  diff_to_gray(plane_as<float>(frame, 0), gray);
}

void viz_histo(const TensorView& frame, std::span<std::uint8_t> gray) {
  checked_frame(frame, 2, gray, 1, "viz_histo");
  diff_to_gray(histo_difference(frame, 0, 1), gray);
}

void viz_histo_rgb(const TensorView& frame, std::span<std::uint8_t> rgb) {
  const Frame f = checked_frame(frame, 2, rgb, 3, "viz_histo_rgb");
  std::vector<std::uint8_t> gray(f.pixels);
  diff_to_gray(histo_difference(frame, 0, 1), gray);
  for (int c = 0; c < 3; ++c) gray_into_channel(gray, rgb, c);
}

void viz_histo_filtered(const TensorView& frame, std::span<std::uint8_t> rgb, double val_max) {
  const Frame f = checked_frame(frame, 2, rgb, 3, "viz_histo_filtered");
  if (!(val_max > 0)) throw ConfigError("viz_histo_filtered: val_max must be > 0");
  const std::vector<float> d = histo_difference(frame, 0, 1);
  // numpy: float32 array against Python floats, which stay float32 (2 * val_max is formed in float64).
  const auto vm = static_cast<float>(val_max);
  const auto span = static_cast<float>(2 * val_max);
  for (std::size_t i = 0; i < f.pixels; ++i) {
    const float c = std::min(std::max(d[i], -vm), vm);
    const std::uint8_t g = numpy_to_uint8((c + vm) / span * 255.0f);
    rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = g;
  }
}

void viz_timesurface(const TensorView& frame, std::span<std::uint8_t> rgb) {
  checked_frame(frame, 1, rgb, 3, "viz_timesurface");
  const bool two = frame.shape[1] == 2;
  auto draw = [&](auto tag) {
    using F = decltype(tag);
    std::vector<F> im = plane_as<F>(frame, 0);
    if (two) {
      const std::vector<F> other = plane_as<F>(frame, 1);
      // np.maximum propagates NaN.
      for (std::size_t i = 0; i < im.size(); ++i)
        im[i] = (im[i] != im[i] || im[i] >= other[i]) ? im[i] : other[i];
    }
    jet_of(im, rgb);
  };
  if (frame.dtype == DType::float32) {
    draw(float{});
  } else {
    draw(double{});
  }
}

void viz_event_cube_rgb(const TensorView& frame, std::span<std::uint8_t> rgb, bool split_polarity) {
  const Frame f = checked_frame(frame, split_polarity ? 6 : 3, rgb, 3, "viz_event_cube_rgb");
  std::vector<std::uint8_t> gray(f.pixels);
  for (int i = 0; i < 3; ++i) {
    if (split_polarity) {
      diff_to_gray(histo_difference(frame, 2 * i, 2 * i + 1), gray);
    } else {
      diff_to_gray(plane_as<float>(frame, i), gray);
    }
    gray_into_channel(gray, rgb, i);
  }
}

void viz_multichannel_timesurface(const TensorView& frame, std::span<std::uint8_t> rgb, bool blend) {
  if (!blend) {
    viz_event_cube_rgb(frame, rgb, true);
    return;
  }
  const Frame f = checked_frame(frame, 2, rgb, 3, "viz_multichannel_timesurface");
  if (frame.shape[1] % 2 != 0)
    throw ConfigError("viz_multichannel_timesurface: blend needs an even number of channels");
  const std::int64_t n = frame.shape[1] / 2;
  // The reference: im = tensor / n; even planes += m; odd planes = (updated even plane) + m; the image
  // is max(sum of even planes, sum of odd planes), each step rounded to the tensor's float type.
  auto draw = [&](auto tag) {
    using F = decltype(tag);
    const F range = static_cast<F>(1.0 / static_cast<double>(n));
    std::vector<F> even_sum(f.pixels, F(0)), odd_sum(f.pixels, F(0));
    for (std::int64_t m = 0; m < n; ++m) {
      const std::vector<F> plane = plane_as<F>(frame, 2 * m);
      const auto md = static_cast<double>(m);
      for (std::size_t i = 0; i < f.pixels; ++i) {
        const F even = static_cast<F>(static_cast<double>(range * plane[i]) + md);
        const F odd = static_cast<F>(static_cast<double>(even) + md);
        even_sum[i] = m == 0 ? even : static_cast<F>(even_sum[i] + even);
        odd_sum[i] = m == 0 ? odd : static_cast<F>(odd_sum[i] + odd);
      }
    }
    for (std::size_t i = 0; i < f.pixels; ++i) even_sum[i] = std::max(even_sum[i], odd_sum[i]);
    jet_of(even_sum, rgb);
  };
  if (frame.dtype == DType::float32) {
    draw(float{});
  } else {
    draw(double{});
  }
}

void visualize(std::string_view preprocessing, const TensorView& frame, std::span<std::uint8_t> rgb) {
  if (preprocessing == "diff" || preprocessing == "diff_quantized") {
    viz_diff_binarized(frame, rgb);
  } else if (preprocessing == "histo" || preprocessing == "histo_quantized") {
    viz_histo_binarized(frame, rgb);
  } else if (preprocessing == "timesurface") {
    viz_timesurface(frame, rgb);
  } else if (preprocessing == "event_cube" || preprocessing == "event_cube_paper") {
    viz_event_cube_rgb(frame, rgb, true);
  } else if (preprocessing == "multi_channel_timesurface") {
    viz_multichannel_timesurface(frame, rgb, false);
  } else {
    throw ConfigError("visualize: unknown preprocessing '" + std::string(preprocessing) + "'");
  }
}

}  // namespace evloader
