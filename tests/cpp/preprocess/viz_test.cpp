// SPDX-License-Identifier: Apache-2.0
// Visualisations: colours at known pixels, the JET table against OpenCV's documented end points, and
// the reference's float32 normalisation.
#include "evloader/preprocess/viz.hpp"

#include <gtest/gtest.h>

#include "evloader/core/error.hpp"
#include "test_util.hpp"

namespace evloader::test {
namespace {

Rgb pixel(const std::vector<std::uint8_t>& rgb, std::size_t i) {
  return {rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]};
}

TEST(PreprocessViz, HistoBinarizedColoursOnWinsInNegColour) {
  Tensor<float> t({1, 2, 1, 4});
  t.at(0, 0, 0, 1) = 0.2f;  // OFF only -> POS colour
  t.at(0, 1, 0, 2) = 0.2f;  // ON only -> NEG colour (the reference's swap)
  t.at(0, 0, 0, 3) = 0.4f;  // both -> NEG (ON drawn last)
  t.at(0, 1, 0, 3) = 0.2f;
  std::vector<std::uint8_t> rgb(4 * 3);
  viz_histo_binarized(t.view(), rgb);
  EXPECT_EQ(pixel(rgb, 0), (Rgb{30, 37, 52}));
  EXPECT_EQ(pixel(rgb, 1), (Rgb{216, 223, 236}));
  EXPECT_EQ(pixel(rgb, 2), (Rgb{64, 126, 201}));
  EXPECT_EQ(pixel(rgb, 3), (Rgb{64, 126, 201}));
  std::vector<std::uint8_t> other(rgb.size());
  visualize("histo_quantized", t.view(), other);
  EXPECT_EQ(other, rgb);
}

TEST(PreprocessViz, DiffBinarizedSigns) {
  Tensor<std::int8_t> t({1, 1, 1, 3});
  t.at(0, 0, 0, 0) = 3;
  t.at(0, 0, 0, 1) = -1;
  std::vector<std::uint8_t> rgb(9);
  viz_diff_binarized(t.view(), rgb);
  EXPECT_EQ(pixel(rgb, 0), kVizPositive);
  EXPECT_EQ(pixel(rgb, 1), kVizNegative);
  EXPECT_EQ(pixel(rgb, 2), kVizBackground);
}

TEST(PreprocessViz, JetTableEndsAndTimesurfaceRgbOrder) {
  // OpenCV's JET: gray 0 is dark blue (BGR 128,0,0), 255 dark red (BGR 0,0,128); we give RGB.
  EXPECT_EQ(jet_colormap()[0], (Rgb{0, 0, 128}));
  EXPECT_EQ(jet_colormap()[255], (Rgb{128, 0, 0}));
  EXPECT_EQ(jet_colormap()[128], (Rgb{130, 255, 126}));
  EXPECT_EQ(jet_colormap()[63], (Rgb{0, 124, 255}));
  Tensor<float> t({1, 2, 1, 3});
  t.at(0, 0, 0, 0) = 1.0f;   // 255
  t.at(0, 1, 0, 1) = 0.5f;   // max of the two planes: 127
  t.at(0, 0, 0, 2) = 0.25f;  // 63
  std::vector<std::uint8_t> rgb(9);
  viz_timesurface(t.view(), rgb);
  EXPECT_EQ(pixel(rgb, 0), jet_colormap()[255]);
  EXPECT_EQ(pixel(rgb, 1), jet_colormap()[127]);
  EXPECT_EQ(pixel(rgb, 2), jet_colormap()[63]);
}

TEST(PreprocessViz, DiffNormalisesAndFallsBackTo127) {
  Tensor<float> zero({1, 1, 2, 2});
  std::vector<std::uint8_t> gray(4);
  viz_diff(zero.view(), gray);
  EXPECT_EQ(gray, std::vector<std::uint8_t>(4, 127));
  // Four values: mean 0.25, std ~0.83, so nothing is clipped; min -1 -> 0, max 1 -> 254 (truncated).
  Tensor<float> t({1, 1, 2, 2});
  t.at(0, 0, 0, 0) = -1.0f;
  t.at(0, 0, 0, 1) = 1.0f;
  t.at(0, 0, 1, 0) = 0.5f;
  t.at(0, 0, 1, 1) = 0.5f;
  viz_diff(t.view(), gray);
  EXPECT_EQ(gray[0], 0);
  EXPECT_EQ(gray[1], 254);
  EXPECT_EQ(gray[2], static_cast<std::uint8_t>((1.5f / (2.0f + 1e-6f)) * 255.0f));
}

TEST(PreprocessViz, EventCubeChannelsAndErrors) {
  Tensor<float> t({1, 6, 1, 2});
  t.at(0, 1, 0, 0) = 0.5f;  // micro-bin 0 ON at pixel 0 -> red channel high at 0
  t.at(0, 4, 0, 1) = 0.5f;  // micro-bin 2 OFF at pixel 1 -> blue channel low at 1
  std::vector<std::uint8_t> rgb(6);
  viz_event_cube_rgb(t.view(), rgb);
  EXPECT_GT(rgb[0], rgb[3]);
  EXPECT_LT(rgb[3 + 2], rgb[2]);
  std::vector<std::uint8_t> mc(6);
  viz_multichannel_timesurface(t.view(), mc);
  EXPECT_EQ(mc, rgb);
  std::vector<std::uint8_t> wrong(5);
  EXPECT_THROW(viz_event_cube_rgb(t.view(), wrong), ConfigError);
  Tensor<float> few({1, 4, 1, 2});
  EXPECT_THROW(viz_event_cube_rgb(few.view(), rgb), ConfigError);
  EXPECT_THROW(visualize("nope", t.view(), rgb), ConfigError);
}

}  // namespace
}  // namespace evloader::test
