// SPDX-License-Identifier: Apache-2.0
// INTER_AREA downscaling with OpenCV's arithmetic (block means for integer factors, weight tables otherwise).
#include "evloader/preprocess/area_resize.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>

#include "evloader/core/error.hpp"

namespace evloader {

namespace {

// OpenCV's weight table of one axis (computeResizeAreaTab): output cell d covers [d * scale, (d + 1) * scale)
// of the source axis; each source sample it touches gets its overlap divided by the cell width. Partial
// overlaps under 1e-3 are dropped, which is why this is not a plain overlap matrix.
std::vector<AreaResizer::Weight> area_table(int src_size, int dst_size, double scale) {
  std::vector<AreaResizer::Weight> tab;
  tab.reserve(static_cast<std::size_t>(src_size) * 2);
  for (int d = 0; d < dst_size; ++d) {
    const double f1 = d * scale;
    const double f2 = f1 + scale;
    const double cell = std::min(scale, src_size - f1);
    int s1 = static_cast<int>(std::ceil(f1));
    int s2 = static_cast<int>(std::floor(f2));
    s2 = std::min(s2, src_size - 1);
    s1 = std::min(s1, s2);
    if (s1 - f1 > 1e-3) tab.push_back({s1 - 1, d, static_cast<float>((s1 - f1) / cell)});
    for (int s = s1; s < s2; ++s) tab.push_back({s, d, static_cast<float>(1.0 / cell)});
    if (f2 - s2 > 1e-3)
      tab.push_back({s2, d, static_cast<float>(std::min(std::min(f2 - s2, 1.0), cell) / cell)});
  }
  return tab;
}

}  // namespace

AreaResizer::AreaResizer(int src_height, int src_width, int dst_height, int dst_width)
    : src_h_(src_height), src_w_(src_width), dst_h_(dst_height), dst_w_(dst_width) {
  if (src_height <= 0 || src_width <= 0 || dst_height <= 0 || dst_width <= 0)
    throw ConfigError("area resize: sizes must be positive, got " + std::to_string(src_height) + "x" +
                      std::to_string(src_width) + " -> " + std::to_string(dst_height) + "x" +
                      std::to_string(dst_width));
  if (dst_height > src_height || dst_width > src_width)
    throw ConfigError("area resize only downscales: " + std::to_string(src_height) + "x" +
                      std::to_string(src_width) + " -> " + std::to_string(dst_height) + "x" +
                      std::to_string(dst_width));
  // The same scale computation as cv::resize (inverse of the inverse), so that "integer" means the same.
  const double scale_x = 1.0 / (static_cast<double>(dst_width) / src_width);
  const double scale_y = 1.0 / (static_cast<double>(dst_height) / src_height);
  const int ix = static_cast<int>(std::lround(scale_x));
  const int iy = static_cast<int>(std::lround(scale_y));
  fast_ = std::abs(scale_x - ix) < DBL_EPSILON && std::abs(scale_y - iy) < DBL_EPSILON;
  if (fast_) {
    fx_ = ix;
    fy_ = iy;
  } else {
    xtab_ = area_table(src_width, dst_width, scale_x);
    ytab_ = area_table(src_height, dst_height, scale_y);
  }
}

void AreaResizer::resize(const float* src, float* dst, std::size_t planes) const {
  const std::size_t src_plane = static_cast<std::size_t>(src_h_) * src_w_;
  const std::size_t dst_plane = static_cast<std::size_t>(dst_h_) * dst_w_;
  if (src_h_ == dst_h_ && src_w_ == dst_w_) {
    if (planes) std::memcpy(dst, src, planes * src_plane * sizeof(float));
    return;
  }
  if (fast_) {
    for (std::size_t p = 0; p < planes; ++p) resize_fast(src + p * src_plane, dst + p * dst_plane);
    return;
  }
  std::vector<float> scratch(static_cast<std::size_t>(dst_w_) * 2);
  for (std::size_t p = 0; p < planes; ++p)
    resize_general(src + p * src_plane, dst + p * dst_plane, scratch.data(), scratch.data() + dst_w_);
}

void AreaResizer::resize_fast(const float* src, float* dst) const {
  const std::size_t sw = static_cast<std::size_t>(src_w_);
  if (fx_ == 2 && fy_ == 2) {
    // OpenCV's vector path for 2x2: the two horizontal pair sums, added, times 0.25.
    for (int dy = 0; dy < dst_h_; ++dy) {
      const float* r0 = src + static_cast<std::size_t>(2 * dy) * sw;
      const float* r1 = r0 + sw;
      float* out = dst + static_cast<std::size_t>(dy) * dst_w_;
      for (int dx = 0; dx < dst_w_; ++dx)
        out[dx] = ((r0[2 * dx] + r0[2 * dx + 1]) + (r1[2 * dx] + r1[2 * dx + 1])) * 0.25f;
    }
    return;
  }
  const int area = fx_ * fy_;
  const float scale = 1.f / static_cast<float>(area);
  if (fx_ % 4 == 0) {
    // OpenCV sums the block in row-major order, four samples at a time; with a width that is a multiple of
    // four every group of four lies within one source row, so the same additions, in the same order, can
    // run row by row into a per-column accumulator (contiguous loads, no offset table).
    std::vector<float> acc(static_cast<std::size_t>(dst_w_));
    for (int dy = 0; dy < dst_h_; ++dy) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int sy = 0; sy < fy_; ++sy) {
        const float* row = src + (static_cast<std::size_t>(dy) * fy_ + sy) * sw;
        for (int dx = 0; dx < dst_w_; ++dx) {
          const float* s = row + static_cast<std::size_t>(dx) * fx_;
          float a = acc[static_cast<std::size_t>(dx)];
          for (int g = 0; g < fx_; g += 4) a += s[g] + s[g + 1] + s[g + 2] + s[g + 3];
          acc[static_cast<std::size_t>(dx)] = a;
        }
      }
      float* out = dst + static_cast<std::size_t>(dy) * dst_w_;
      for (int dx = 0; dx < dst_w_; ++dx) out[dx] = acc[static_cast<std::size_t>(dx)] * scale;
    }
    return;
  }
  // Generic block mean: samples in row-major order inside the block, summed four at a time as OpenCV's
  // unrolled loop does, then one multiplication by 1 / area.
  std::vector<std::size_t> ofs(static_cast<std::size_t>(area));
  for (int sy = 0, k = 0; sy < fy_; ++sy)
    for (int sx = 0; sx < fx_; ++sx)
      ofs[static_cast<std::size_t>(k++)] = static_cast<std::size_t>(sy) * sw + sx;
  const std::size_t* o = ofs.data();
  for (int dy = 0; dy < dst_h_; ++dy) {
    const float* row = src + static_cast<std::size_t>(dy) * fy_ * sw;
    float* out = dst + static_cast<std::size_t>(dy) * dst_w_;
    for (int dx = 0; dx < dst_w_; ++dx) {
      const float* s = row + static_cast<std::size_t>(dx) * fx_;
      float sum = 0.f;
      int k = 0;
      for (; k <= area - 4; k += 4) sum += s[o[k]] + s[o[k + 1]] + s[o[k + 2]] + s[o[k + 3]];
      for (; k < area; ++k) sum += s[o[k]];
      out[dx] = sum * scale;
    }
  }
}

void AreaResizer::resize_general(const float* src, float* dst, float* row_buf, float* sum) const {
  // Each source row is first reduced horizontally into row_buf, then added with its vertical weight into
  // the running sum of its output row; an output row is emitted when the table moves to the next one.
  std::fill(sum, sum + dst_w_, 0.f);
  int prev_dy = ytab_.empty() ? 0 : ytab_.front().dst;
  for (const Weight& yw : ytab_) {
    const float* s = src + static_cast<std::size_t>(yw.src) * src_w_;
    std::fill(row_buf, row_buf + dst_w_, 0.f);
    for (const Weight& xw : xtab_) row_buf[xw.dst] += s[xw.src] * xw.alpha;
    const float beta = yw.alpha;
    if (yw.dst != prev_dy) {
      float* out = dst + static_cast<std::size_t>(prev_dy) * dst_w_;
      for (int dx = 0; dx < dst_w_; ++dx) {
        out[dx] = sum[dx];
        sum[dx] = beta * row_buf[dx];
      }
      prev_dy = yw.dst;
    } else {
      for (int dx = 0; dx < dst_w_; ++dx) sum[dx] += beta * row_buf[dx];
    }
  }
  std::memcpy(dst + static_cast<std::size_t>(prev_dy) * dst_w_, sum,
              static_cast<std::size_t>(dst_w_) * sizeof(float));
}

void area_resize(const float* src, int src_height, int src_width, float* dst, int dst_height, int dst_width,
                 std::size_t planes) {
  AreaResizer(src_height, src_width, dst_height, dst_width).resize(src, dst, planes);
}

}  // namespace evloader
