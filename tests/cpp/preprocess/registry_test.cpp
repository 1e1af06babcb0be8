// SPDX-License-Identifier: Apache-2.0
// The preprocessing registry (names, channels, default kwargs of metavision_ml 4.2.1) and every bad
// parameter that must raise ConfigError instead of writing anywhere.
#include <gtest/gtest.h>

#include "evloader/core/error.hpp"
#include "test_util.hpp"

namespace evloader::test {
namespace {

TEST(PreprocessRegistry, NamesChannelsAndDefaults) {
  const std::vector<std::string> expected{"diff",
                                          "diff_quantized",
                                          "histo",
                                          "histo_quantized",
                                          "timesurface",
                                          "event_cube",
                                          "event_cube_paper",
                                          "multi_channel_timesurface"};
  EXPECT_EQ(preprocessor_names(), expected);
  const std::vector<int> channels{1, 1, 2, 2, 2, 6, 10, 6};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(preprocessor_channels(expected[i]), channels[i]) << expected[i];
    EXPECT_EQ(make_preprocessor(expected[i])->channels(), channels[i]) << expected[i];
  }
  EXPECT_EQ(make_preprocessor("histo_quantized")->dtype(), DType::uint8);
  EXPECT_EQ(make_preprocessor("diff_quantized")->dtype(), DType::int8);
  EXPECT_EQ(make_preprocessor("event_cube")->dtype(), DType::float32);
  const Kwargs paper = preprocessor_default_kwargs("event_cube_paper");
  EXPECT_EQ(std::get<double>(paper.at("max_incr_per_pixel")), 255.0 / 4);
  EXPECT_EQ(std::get<bool>(paper.at("split_polarity")), true);
  const Kwargs hq = preprocessor_default_kwargs("histo_quantized");
  EXPECT_EQ(std::get<std::int64_t>(hq.at("negative_bit_length")), 4);
  EXPECT_EQ(std::get<std::int64_t>(hq.at("total_bit_length")), 8);
  EXPECT_EQ(std::get<std::string>(hq.at("preprocess_dtype")), "uint8");
  // Caller kwargs are merged over the defaults.
  auto p = make_preprocessor(
      "histo", {{"max_incr_per_pixel", KwargValue{10.0}}, {"preprocess_dtype", std::string("float64")}});
  EXPECT_EQ(std::get<double>(p->kwargs().at("max_incr_per_pixel")), 10.0);
  EXPECT_EQ(p->dtype(), DType::float64);
}

TEST(PreprocessRegistry, DtypeNames) {
  EXPECT_EQ(dtype_from_name("float32"), DType::float32);
  EXPECT_EQ(dtype_from_name("<f8"), DType::float64);
  EXPECT_EQ(dtype_from_name("uint8"), DType::uint8);
  EXPECT_FALSE(dtype_from_name("complex64").has_value());
  EXPECT_EQ(dtype_name(DType::int16), "int16");
}

TEST(PreprocessRegistry, BadKwargsRaiseConfigError) {
  EXPECT_THROW((void)make_preprocessor("histogram"), ConfigError);
  EXPECT_THROW((void)make_preprocessor("histo", {{"foo", true}}), ConfigError);
  EXPECT_THROW((void)make_preprocessor("histo", {{"max_incr_per_pixel", KwargValue{0.0}}}), ConfigError);
  EXPECT_THROW((void)make_preprocessor("diff", {{"max_incr_per_pixel", KwargValue{std::int64_t{-3}}}}),
               ConfigError);
  EXPECT_THROW((void)make_preprocessor("event_cube", {{"max_incr_per_pixel", std::string("5")}}),
               ConfigError);
  EXPECT_THROW((void)make_preprocessor("event_cube", {{"split_polarity", std::string("yes")}}), ConfigError);
  EXPECT_THROW(
      (void)make_preprocessor("diff_quantized", {{"negative_bit_length", KwargValue{std::int64_t{1}}}}),
      ConfigError);
  EXPECT_THROW(
      (void)make_preprocessor("diff_quantized", {{"negative_bit_length", KwargValue{std::int64_t{9}}}}),
      ConfigError);
  EXPECT_THROW(
      (void)make_preprocessor("histo_quantized", {{"negative_bit_length", KwargValue{std::int64_t{-1}}}}),
      ConfigError);
  EXPECT_THROW(
      (void)make_preprocessor("histo_quantized", {{"total_bit_length", KwargValue{std::int64_t{0}}}}),
      ConfigError);
  EXPECT_THROW(
      (void)make_preprocessor("histo_quantized", {{"negative_bit_length", KwargValue{std::int64_t{6}}},
                                                  {"total_bit_length", KwargValue{std::int64_t{5}}}}),
      ConfigError);
  EXPECT_THROW(
      (void)make_preprocessor("histo_quantized", {{"total_bit_length", KwargValue{std::int64_t{9}}}}),
      ConfigError);
  EXPECT_THROW((void)make_preprocessor("histo", {{"preprocess_dtype", std::string("complex64")}}),
               ConfigError);
  EXPECT_THROW((void)make_preprocessor("event_cube", {{"preprocess_dtype", std::string("int16")}}),
               ConfigError);
  EXPECT_THROW((void)make_preprocessor("diff", {{"preprocess_dtype", std::string("uint8")}}), ConfigError);
  EXPECT_THROW((void)make_preprocessor("diff_quantized", {{"normalization", true}}),
               ConfigError);  // int8 default
  // The time surfaces accept and ignore max_incr_per_pixel, as the reference's **kwargs.
  EXPECT_NO_THROW(
      (void)make_preprocessor("timesurface", {{"max_incr_per_pixel", KwargValue{std::int64_t{5}}}}));
  EXPECT_NO_THROW((void)make_preprocessor("histo", {{"max_incr_per_pixel", KwargValue{}}}));
  EXPECT_NO_THROW((void)make_preprocessor("histo_quantized", {{"negative_bit_length", KwargValue{8.0}}}));
}

TEST(PreprocessRegistry, BadOutputsRaiseConfigError) {
  const std::vector<EventCD> events{ev(0, 0, 1, 0)};
  auto expect_bad = [&](std::string_view name, auto tensor, int ds = 0, Timestamp total = 100,
                        Kwargs kw = {}) {
    auto before = tensor.data;
    EXPECT_THROW(make_preprocessor(name, kw)->run(events, tensor.view(), total, ds), ConfigError) << name;
    EXPECT_EQ(tensor.data, before) << name << ": output changed before the error";
  };
  expect_bad("histo", Tensor<float>({1, 3, 2, 2}, 0.5f));                      // channels
  expect_bad("diff", Tensor<float>({1, 2, 2, 2}, 0.5f));                       // channels
  expect_bad("multi_channel_timesurface", Tensor<float>({1, 5, 2, 2}, 0.5f));  // odd C
  expect_bad("event_cube", Tensor<float>({2, 3, 2, 2}, 0.5f));                 // odd C with split
  expect_bad("event_cube", Tensor<std::int32_t>({1, 6, 2, 2}, 1));             // dtype
  expect_bad("diff", Tensor<std::uint8_t>({1, 1, 2, 2}, 1));                   // unsigned
  expect_bad("timesurface", Tensor<std::int16_t>({1, 2, 2, 2}, 1));            // < 4 bytes
  expect_bad("multi_channel_timesurface", Tensor<std::int32_t>({1, 6, 2, 2}, 1));
  expect_bad("histo_quantized", Tensor<float>({1, 2, 2, 2}, 0.5f));         // ds 0, no normalisation: uint8
  expect_bad("histo_quantized", Tensor<std::uint8_t>({1, 2, 2, 2}, 1), 1);  // ds 1: float
  expect_bad("diff_quantized", Tensor<std::uint8_t>({1, 1, 2, 2}, 1));      // int8 wanted
  expect_bad("histo", Tensor<float>({1, 2, 2, 2}, 0.5f), -1);               // downsampling < 0
  expect_bad("histo", Tensor<float>({1, 2, 2, 2}, 0.5f), 31);
  expect_bad("histo", Tensor<float>({1, 2, 2, 2}, 0.5f), 0, 0);  // total 0 with events
  expect_bad("event_cube", Tensor<float>({1, 6, 2, 2}, 0.5f), 0, -5);
  expect_bad("histo", Tensor<float>({0, 2, 2, 2}, 0.5f));  // T 0
  // Event cubes and the multi-channel surface take other channel counts than the registry's.
  Tensor<float> four({1, 4, 2, 2});
  EXPECT_NO_THROW(make_preprocessor("event_cube_paper")->run(events, four.view(), 100, 0));
  EXPECT_NO_THROW(make_preprocessor("multi_channel_timesurface")->run(events, four.view(), 100, 0));
  Tensor<float> three({1, 3, 2, 2});
  EXPECT_NO_THROW(
      make_preprocessor("event_cube", {{"split_polarity", false}})->run(events, three.view(), 100, 0));
  // No events: a zero window is fine (the reference's CDProcessor passes 0 for empty slices).
  Tensor<float> two({1, 2, 2, 2}, 0.5f);
  EXPECT_NO_THROW(make_preprocessor("histo")->run({}, two.view(), 0, 0));
  EXPECT_EQ(two.nonzero(), 0u);
}

}  // namespace
}  // namespace evloader::test
