// SPDX-License-Identifier: Apache-2.0
// OpenCV's INTER_AREA downscaling of float planes, as Metavision's loader applies to precomputed frames.
#pragma once

#include <cstddef>
#include <vector>

namespace evloader {

/// Downscales float32 planes of src_height x src_width to dst_height x dst_width with the arithmetic of
/// `cv::resize(src, dst, {dst_width, dst_height}, 0, 0, cv::INTER_AREA)` on a CV_32FC1 image:
///  - integer factors in both directions (src = k * dst): the mean of each k_y x k_x block, summed in float
///    in row-major order and multiplied by 1.f / (k_y * k_x);
///  - any other factor: each output pixel is the area-weighted mean of the source pixels its footprint
///    [d * s, (d + 1) * s) covers (s = src / dst, per axis), with OpenCV's weight tables (fractional edge
///    overlaps below 1e-3 dropped, float weights, rows accumulated in float).
/// Upscaling is not area interpolation in OpenCV and is refused (ConfigError), as are empty sizes.
/// The object is immutable after construction: resize() may run on several threads at once.
class AreaResizer {
 public:
  AreaResizer(int src_height, int src_width, int dst_height, int dst_width);

  /// Resizes `planes` consecutive planes: src holds planes * src_height * src_width floats, dst receives
  /// planes * dst_height * dst_width. src and dst must not overlap. Sizes equal to the source copy.
  void resize(const float* src, float* dst, std::size_t planes = 1) const;

  [[nodiscard]] int src_height() const noexcept { return src_h_; }
  [[nodiscard]] int src_width() const noexcept { return src_w_; }
  [[nodiscard]] int dst_height() const noexcept { return dst_h_; }
  [[nodiscard]] int dst_width() const noexcept { return dst_w_; }
  /// True when both factors are integers (OpenCV's "fast area" path: plain block means).
  [[nodiscard]] bool integer_factors() const noexcept { return fast_; }

  /// One entry of a weight table: source index, destination index, weight.
  struct Weight {
    int src;
    int dst;
    float alpha;
  };

 private:
  void resize_fast(const float* src, float* dst) const;
  void resize_general(const float* src, float* dst, float* row_buf, float* sum) const;

  int src_h_, src_w_, dst_h_, dst_w_;
  bool fast_ = false;
  int fy_ = 1, fx_ = 1;
  std::vector<Weight> xtab_, ytab_;
};

/// One-shot helper: AreaResizer(src_height, src_width, dst_height, dst_width).resize(src, dst, planes).
void area_resize(const float* src, int src_height, int src_width, float* dst, int dst_height, int dst_width,
                 std::size_t planes = 1);

}  // namespace evloader
