// SPDX-License-Identifier: Apache-2.0
// AreaResizer against an independent area-overlap computation in double precision.
#include "evloader/preprocess/area_resize.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "evloader/core/error.hpp"

namespace evloader {
namespace {

std::vector<float> random_plane(int h, int w, std::uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, scale);
  std::vector<float> v(static_cast<std::size_t>(h) * w);
  for (auto& x : v) x = u(rng);
  return v;
}

// Overlap of source sample s ([s, s + 1)) with output cell d ([d * scale, (d + 1) * scale)), over the cell
// width: the definition of area averaging, computed exactly in double.
std::vector<std::vector<double>> overlap_weights(int src, int dst) {
  const double scale = static_cast<double>(src) / dst;
  std::vector<std::vector<double>> w(static_cast<std::size_t>(dst), std::vector<double>(src, 0.0));
  for (int d = 0; d < dst; ++d) {
    const double a = d * scale, b = std::min<double>((d + 1) * scale, src);
    for (int s = 0; s < src; ++s) {
      const double o = std::min<double>(b, s + 1) - std::max<double>(a, s);
      if (o > 0) w[d][s] = o / (b - a);
    }
  }
  return w;
}

std::vector<double> reference_area(const std::vector<float>& src, int sh, int sw, int dh, int dw) {
  const auto wy = overlap_weights(sh, dh), wx = overlap_weights(sw, dw);
  std::vector<double> out(static_cast<std::size_t>(dh) * dw, 0.0);
  for (int y = 0; y < dh; ++y)
    for (int x = 0; x < dw; ++x) {
      double acc = 0;
      for (int sy = 0; sy < sh; ++sy) {
        if (wy[y][sy] == 0) continue;
        for (int sx = 0; sx < sw; ++sx)
          acc += wy[y][sy] * wx[x][sx] * src[static_cast<std::size_t>(sy) * sw + sx];
      }
      out[static_cast<std::size_t>(y) * dw + x] = acc;
    }
  return out;
}

void expect_matches_reference(int sh, int sw, int dh, int dw, double tol) {
  const auto src = random_plane(sh, sw, static_cast<std::uint32_t>(sh * 31 + sw * 7 + dh + dw));
  std::vector<float> out(static_cast<std::size_t>(dh) * dw, -1.f);
  AreaResizer r(sh, sw, dh, dw);
  r.resize(src.data(), out.data());
  const auto ref = reference_area(src, sh, sw, dh, dw);
  for (std::size_t i = 0; i < out.size(); ++i)
    ASSERT_NEAR(out[i], ref[i], tol) << sh << "x" << sw << " -> " << dh << "x" << dw << " at " << i;
}

TEST(AreaResizer, IntegerFactorsAreBlockMeans) {
  expect_matches_reference(8, 12, 4, 6, 1e-6);    // factor 2
  expect_matches_reference(16, 32, 4, 8, 1e-6);   // factor 4
  expect_matches_reference(24, 24, 3, 3, 1e-6);   // factor 8
  expect_matches_reference(9, 12, 3, 4, 1e-6);    // factor 3
  expect_matches_reference(10, 12, 10, 4, 1e-6);  // factor 1 x 3
  EXPECT_TRUE(AreaResizer(720, 1280, 180, 320).integer_factors());
  EXPECT_FALSE(AreaResizer(10, 10, 3, 3).integer_factors());
}

TEST(AreaResizer, TwoByTwoIsPairSumsTimesAQuarter) {
  // OpenCV's 2x2 path: (a + b) + (c + d), then * 0.25f - bit for bit.
  const auto src = random_plane(6, 10, 3, 37.f);
  std::vector<float> out(3 * 5);
  AreaResizer(6, 10, 3, 5).resize(src.data(), out.data());
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 5; ++x) {
      const float* r0 = &src[static_cast<std::size_t>(2 * y) * 10 + 2 * x];
      const float* r1 = r0 + 10;
      EXPECT_EQ(out[static_cast<std::size_t>(y) * 5 + x], ((r0[0] + r0[1]) + (r1[0] + r1[1])) * 0.25f);
    }
}

TEST(AreaResizer, NonIntegerFactorsWeighPartialPixels) {
  expect_matches_reference(10, 10, 3, 3, 1e-5);
  expect_matches_reference(7, 11, 3, 4, 1e-5);
  expect_matches_reference(10, 15, 4, 6, 1e-5);  // 2.5 both ways
  expect_matches_reference(48, 64, 20, 30, 1e-5);
  expect_matches_reference(5, 9, 5, 4, 1e-5);  // only one axis scaled
}

TEST(AreaResizer, HandComputedThreeToTwo) {
  // 1x3 -> 1x2: cells [0, 1.5) and [1.5, 3): out0 = (a + b/2) / 1.5, out1 = (b/2 + c) / 1.5.
  const float src[3] = {3.f, 6.f, 9.f};
  float out[2];
  AreaResizer(1, 3, 1, 2).resize(src, out);
  EXPECT_NEAR(out[0], (3.0 + 3.0) / 1.5, 1e-6);
  EXPECT_NEAR(out[1], (3.0 + 9.0) / 1.5, 1e-6);
}

TEST(AreaResizer, SameSizeCopiesAndPlanesAreIndependent) {
  const auto src = random_plane(4, 4, 5);
  std::vector<float> out(16);
  AreaResizer(4, 4, 4, 4).resize(src.data(), out.data());
  EXPECT_EQ(out, src);
  // Three planes: each plane resized on its own.
  std::vector<float> planes(3 * 16);
  for (int p = 0; p < 3; ++p)
    for (int i = 0; i < 16; ++i)
      planes[static_cast<std::size_t>(p * 16 + i)] = static_cast<float>(p * 100 + i);
  std::vector<float> small(3 * 4);
  area_resize(planes.data(), 4, 4, small.data(), 2, 2, 3);
  for (int p = 0; p < 3; ++p)
    EXPECT_FLOAT_EQ(small[static_cast<std::size_t>(p * 4)], p * 100 + (0 + 1 + 4 + 5) / 4.f);
}

TEST(AreaResizer, RefusesUpscalingAndEmptySizes) {
  EXPECT_THROW(AreaResizer(4, 4, 8, 4), ConfigError);
  EXPECT_THROW(AreaResizer(4, 4, 0, 2), ConfigError);
  EXPECT_THROW(AreaResizer(-1, 4, 1, 2), ConfigError);
}

}  // namespace
}  // namespace evloader
