// SPDX-License-Identifier: Apache-2.0
// diff_quantized and histo_quantized: saturating full-resolution counters, average pooling for
// downsampling, normalisation (spec §6.3), checked on hand-made events.
#include <gtest/gtest.h>

#include "test_util.hpp"

namespace evloader::test {
namespace {

std::vector<EventCD> repeat(int n, int x, int y, int p, std::int64_t t = 0) {
  return std::vector<EventCD>(static_cast<std::size_t>(n), ev(x, y, p, t));
}

std::vector<EventCD> concat(std::initializer_list<std::vector<EventCD>> parts) {
  std::vector<EventCD> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(PreprocessDiffQuantized, SaturatingCountersInt8) {
  Tensor<std::int8_t> out({1, 1, 1, 4});
  run("diff_quantized",
      concat({repeat(200, 0, 0, 1), repeat(200, 1, 0, 0), repeat(3, 2, 0, 1), repeat(1, 2, 0, 0)}), out, 10);
  EXPECT_EQ(out.at(0, 0, 0, 0), 127);
  EXPECT_EQ(out.at(0, 0, 0, 1), -128);
  EXPECT_EQ(out.at(0, 0, 0, 2), 2);
  // negative_bit_length 2: counters in [-2, 1].
  run("diff_quantized", concat({repeat(5, 0, 0, 1), repeat(5, 1, 0, 0), repeat(5, 2, 0, 7)}), out, 10, 0,
      {{"negative_bit_length", KwargValue{std::int64_t{2}}}});
  EXPECT_EQ(out.at(0, 0, 0, 0), 1);
  EXPECT_EQ(out.at(0, 0, 0, 1), -2);
  EXPECT_EQ(out.at(0, 0, 0, 2), 1);  // any non-zero p counts as ON, as `if p:` in the reference
}

TEST(PreprocessDiffQuantized, AveragePoolingAndNormalisation) {
  // ds 1: a 2x2 block of full-resolution counters 3, -1, 0, 2 averages to 1.
  const auto events =
      concat({repeat(3, 0, 0, 1), repeat(1, 1, 0, 0), repeat(2, 1, 1, 1), repeat(4, 2, 0, 0)});
  Tensor<float> out({1, 1, 1, 2});
  run("diff_quantized", events, out, 10, 1);
  EXPECT_EQ(out.at(0, 0, 0, 0), 1.0f);
  EXPECT_EQ(out.at(0, 0, 0, 1), -1.0f);
  run("diff_quantized", events, out, 10, 1,
      {{"normalization", true}, {"preprocess_dtype", std::string("float32")}});
  EXPECT_EQ(out.at(0, 0, 0, 0), 1.0f / 128);
  // reset=False: the previous content is added before the division (the reference's in-place ops).
  Tensor<float> acc({1, 1, 1, 2}, 2.0f);
  run("diff_quantized", events, acc, 10, 1, {}, false);
  EXPECT_EQ(acc.at(0, 0, 0, 0), (2.0f + 4.0f) / 4);
  // ds 0 with normalisation: counters in the float output, then divided by 2^(nbl-1).
  Tensor<double> norm({1, 1, 1, 1});
  run("diff_quantized", repeat(3, 0, 0, 0), norm, 10, 0,
      {{"normalization", true},
       {"negative_bit_length", KwargValue{std::int64_t{4}}},
       {"preprocess_dtype", std::string("float64")}});
  EXPECT_EQ(norm.at(0, 0, 0, 0), -3.0 / 8);
}

TEST(PreprocessDiffQuantized, FullResolutionBoundsAndTimeBins) {
  // Quantized kernels count at full resolution: with ds 1 and W 2, x = 3 is the last column and x = 4 is
  // dropped. Time bins follow the shared rule; t >= total from bin 0 stops the call.
  Tensor<float> out({2, 1, 1, 2});
  run("diff_quantized", {ev(3, 1, 1, 0), ev(4, 0, 1, 0), ev(0, 2, 1, 0), ev(0, 0, 1, 60), ev(0, 0, 1, 300)},
      out, 100, 1);
  EXPECT_EQ(out.at(0, 0, 0, 1), 0.25f);
  EXPECT_EQ(out.at(1, 0, 0, 0), 0.5f);  // t 300 >= total joins the last bin, already the running one
  EXPECT_EQ(out.nonzero(), 2u);
  Tensor<std::int8_t> stop({2, 1, 1, 2});
  run("diff_quantized", {ev(0, 0, 1, 10), ev(1, 0, 1, 250), ev(1, 0, 1, 20)}, stop, 100);
  EXPECT_EQ(stop.at(0, 0, 0, 0), 1);
  EXPECT_EQ(stop.nonzero(), 1u);
}

TEST(PreprocessHistoQuantized, PerPolarityClamps) {
  Tensor<std::uint8_t> out({1, 2, 1, 2});
  run("histo_quantized", concat({repeat(40, 0, 0, 0), repeat(40, 0, 0, 1), repeat(2, 1, 0, 1)}), out, 10);
  EXPECT_EQ(out.at(0, 0, 0, 0), 15);  // OFF: 2^4 - 1
  EXPECT_EQ(out.at(0, 1, 0, 0), 15);  // ON: 2^(8-4) - 1
  EXPECT_EQ(out.at(0, 1, 0, 1), 2);
  run("histo_quantized", concat({repeat(40, 0, 0, 0), repeat(40, 0, 0, 1), repeat(3, 1, 0, 2)}), out, 10, 0,
      {{"negative_bit_length", KwargValue{std::int64_t{2}}},
       {"total_bit_length", KwargValue{std::int64_t{5}}}});
  EXPECT_EQ(out.at(0, 0, 0, 0), 3);
  EXPECT_EQ(out.at(0, 1, 0, 0), 7);
  EXPECT_EQ(out.nonzero(), 2u);  // p = 2 dropped
  run("histo_quantized", repeat(5, 0, 0, 0), out, 10, 0,
      {{"negative_bit_length", KwargValue{std::int64_t{0}}}});
  EXPECT_EQ(out.nonzero(), 0u);  // OFF clamp 2^0 - 1 = 0
}

TEST(PreprocessHistoQuantized, PoolingAndNormalisationByTheLargerClamp) {
  const auto events = concat({repeat(20, 0, 0, 1), repeat(1, 1, 1, 1), repeat(2, 3, 3, 0)});
  Tensor<float> out({1, 2, 2, 2});
  run("histo_quantized", events, out, 10, 1, {{"preprocess_dtype", std::string("float32")}});
  EXPECT_EQ(out.at(0, 1, 0, 0), (15.0f + 1.0f) / 4);
  EXPECT_EQ(out.at(0, 0, 1, 1), 2.0f / 4);
  run("histo_quantized", events, out, 10, 1,
      {{"normalization", true},
       {"preprocess_dtype", std::string("float32")},
       {"negative_bit_length", KwargValue{std::int64_t{3}}},
       {"total_bit_length", KwargValue{std::int64_t{8}}}});
  // ON clamp 2^5 - 1 = 31, OFF clamp 7: everything divided by 31 (float64 division rounded to float32).
  EXPECT_EQ(out.at(0, 1, 0, 0), static_cast<float>(static_cast<double>(21.0f / 4) / 31));
  EXPECT_EQ(out.at(0, 0, 1, 1), static_cast<float>(static_cast<double>(2.0f / 4) / 31));
  Tensor<float> ds0({1, 2, 1, 1});
  run("histo_quantized", repeat(9, 0, 0, 1), ds0, 10, 0,
      {{"normalization", true}, {"preprocess_dtype", std::string("float32")}});
  EXPECT_EQ(ds0.at(0, 1, 0, 0), static_cast<float>(9.0 / 15));
}

TEST(PreprocessHistoQuantized, LargeDownsamplingFactors) {
  // ds 10: 1024x1024 full-resolution pixels per output pixel.
  Tensor<float> out({1, 2, 1, 2});
  run("histo_quantized", {ev(1023, 1023, 1, 0), ev(1024, 0, 1, 0), ev(2048, 0, 1, 0)}, out, 10, 10,
      {{"preprocess_dtype", std::string("float32")}});
  EXPECT_EQ(out.at(0, 1, 0, 0), 1.0f / (1024.0f * 1024.0f));
  EXPECT_EQ(out.at(0, 1, 0, 1), 1.0f / (1024.0f * 1024.0f));
  EXPECT_EQ(out.nonzero(), 2u);
  // Counters are bounded by the 16-bit coordinate range (65536 rows and columns), and refused beyond
  // 4 GiB rather than allocated.
  Tensor<float> huge({1, 2, 64, 64});
  EXPECT_THROW(
      run("histo_quantized", {ev(0, 0, 1, 0)}, huge, 10, 12, {{"preprocess_dtype", std::string("float32")}}),
      ConfigError);
}

}  // namespace
}  // namespace evloader::test
