// SPDX-License-Identifier: Apache-2.0
// histo, diff, timesurface, multi-channel time surface and event cube on hand-made events whose expected
// tensors follow from metavision_ml's rules (spec §6.2-6.3), including the events the reference would
// write out of bounds.
#include "preprocess/kernels.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "support/event_gen.hpp"
#include "test_util.hpp"

namespace evloader::test {
namespace {

TEST(PreprocessBins, PythonFloorDivision) {
  // 1 // 0.1 is 9.0 in Python although 1 / 0.1 rounds to 10.0: the reference uses the former.
  EXPECT_EQ(preprocess_detail::py_floordiv(1.0, 0.1), 9.0);
  EXPECT_EQ(preprocess_detail::py_floordiv(7.0, 2.0), 3.0);
  EXPECT_EQ(preprocess_detail::py_floordiv(40.0, 20.0), 2.0);
  EXPECT_EQ(preprocess_detail::py_floordiv(-1.0, 3.0), -1.0);
}

TEST(PreprocessBins, SortedEventsFollowFloorOfTOverDt) {
  Tensor<float> out({5, 2, 1, 8});
  // total 100, T 5: dt 20. Bin edges at 20, 40, 60, 80; t = total - 1 in the last bin.
  run("histo",
      {ev(0, 0, 1, 0), ev(1, 0, 1, 19), ev(2, 0, 1, 20), ev(3, 0, 1, 59), ev(4, 0, 1, 60), ev(5, 0, 1, 99)},
      out, 100, 0, {{"max_incr_per_pixel", KwargValue{std::int64_t{1}}}});
  EXPECT_EQ(out.at(0, 1, 0, 0), 1.0f);
  EXPECT_EQ(out.at(0, 1, 0, 1), 1.0f);
  EXPECT_EQ(out.at(1, 1, 0, 2), 1.0f);
  EXPECT_EQ(out.at(2, 1, 0, 3), 1.0f);
  EXPECT_EQ(out.at(3, 1, 0, 4), 1.0f);
  EXPECT_EQ(out.at(4, 1, 0, 5), 1.0f);
  EXPECT_EQ(out.sum(), 6.0);
}

TEST(PreprocessBins, NonIntegerDtUsesCeilThresholds) {
  // total 10, T 3: dt 3.333.., thresholds ceil(dt) = 4 and ceil(2 dt) = 7.
  Tensor<float> out({3, 2, 1, 4});
  run("histo", {ev(0, 0, 0, 3), ev(1, 0, 0, 4), ev(2, 0, 0, 6), ev(3, 0, 0, 7)}, out, 10, 0,
      {{"max_incr_per_pixel", KwargValue{std::int64_t{1}}}});
  EXPECT_EQ(out.at(0, 0, 0, 0), 1.0f);
  EXPECT_EQ(out.at(1, 0, 0, 1), 1.0f);
  EXPECT_EQ(out.at(1, 0, 0, 2), 1.0f);
  EXPECT_EQ(out.at(2, 0, 0, 3), 1.0f);
}

TEST(PreprocessBins, UnsortedEventsStayInTheRunningBin) {
  Tensor<float> out({4, 2, 1, 4});
  // dt 25: t 60 moves to bin 2; the later t 10 stays in bin 2; negative t at the start goes to bin 0.
  run("histo", {ev(0, 0, 0, -30), ev(1, 0, 0, 60), ev(2, 0, 0, 10), ev(3, 0, 0, 80)}, out, 100, 0,
      {{"max_incr_per_pixel", KwargValue{std::int64_t{1}}}});
  EXPECT_EQ(out.at(0, 0, 0, 0), 1.0f);
  EXPECT_EQ(out.at(2, 0, 0, 1), 1.0f);
  EXPECT_EQ(out.at(2, 0, 0, 2), 1.0f);
  EXPECT_EQ(out.at(3, 0, 0, 3), 1.0f);
  EXPECT_EQ(out.sum(), 4.0);
}

TEST(PreprocessBins, LateEventsKeptInLastBinOnlyWhenAlreadyThere) {
  const Kwargs one{{"max_incr_per_pixel", KwargValue{std::int64_t{1}}}};
  {
    // Running bin already T-1: t >= total goes to the last bin, as in the reference.
    Tensor<float> out({2, 2, 1, 4});
    run("histo", {ev(0, 0, 1, 60), ev(1, 0, 1, 100), ev(2, 0, 1, 5000)}, out, 100, 0, one);
    EXPECT_EQ(out.at(1, 1, 0, 0), 1.0f);
    EXPECT_EQ(out.at(1, 1, 0, 1), 1.0f);
    EXPECT_EQ(out.at(1, 1, 0, 2), 1.0f);
  }
  {
    // Running bin 0 and t >= total: the reference would write bin t // dt >= T out of bounds and stay
    // there; the event and every later one (even with small t) are dropped.
    Tensor<float> out({2, 2, 1, 4});
    run("histo", {ev(0, 0, 1, 10), ev(1, 0, 1, 100), ev(2, 0, 1, 20), ev(3, 0, 1, 70)}, out, 100, 0, one);
    EXPECT_EQ(out.at(0, 1, 0, 0), 1.0f);
    EXPECT_EQ(out.sum(), 1.0);
  }
  {
    // Same for every bin-based kernel: nothing written past the output (ASan checks the bounds).
    for (const char* name : {"diff", "timesurface", "multi_channel_timesurface"}) {
      const std::int64_t c = std::string_view(name) == "diff"          ? 1
                             : std::string_view(name) == "timesurface" ? 2
                                                                       : 6;
      Tensor<float> out({1 + (c == 6 ? 0 : 1), c, 1, 2});
      run(name, {ev(0, 0, 1, 1), ev(1, 0, 1, 1000000)}, out, 100, 0);
      EXPECT_EQ(out.nonzero(), 1u) << name;
    }
  }
}

TEST(PreprocessBins, BorderPixelsAndCoordinatesBeyondTheGeometry) {
  Tensor<float> out({1, 2, 3, 4});
  const Kwargs one{{"max_incr_per_pixel", KwargValue{std::int64_t{1}}}};
  run("histo", {ev(3, 2, 1, 0), ev(0, 0, 0, 0), ev(4, 0, 1, 0), ev(0, 3, 1, 0), ev(65535, 65535, 0, 0)}, out,
      10, 0, one);
  EXPECT_EQ(out.at(0, 1, 2, 3), 1.0f);
  EXPECT_EQ(out.at(0, 0, 0, 0), 1.0f);
  EXPECT_EQ(out.sum(), 2.0);
  // ds 1: x >> 1, so x = 7 is the last column of a 4-wide output and x = 8 is beyond it.
  Tensor<float> half({1, 2, 3, 4});
  run("histo", {ev(7, 5, 1, 0), ev(8, 0, 1, 0), ev(0, 6, 1, 0)}, half, 10, 1,
      {{"max_incr_per_pixel", KwargValue{0.25}}});
  EXPECT_EQ(half.at(0, 1, 2, 3), 1.0f);  // k = 1 / (0.25 * 4)
  EXPECT_EQ(half.sum(), 1.0);
}

TEST(PreprocessHisto, SaturatesAtOneWithFloat64Steps) {
  Tensor<float> out({1, 2, 1, 2});
  std::vector<EventCD> events;
  for (int i = 0; i < 7; ++i) events.push_back(ev(0, 0, 1, i));
  events.push_back(ev(1, 0, 0, 3));
  events.push_back(ev(1, 0, 0, 4));
  run("histo", events, out, 10);
  // Each step: float32(float64(v) + 0.2), the numba reference's arithmetic.
  const float one_step = static_cast<float>(0.2);
  const float two_steps = static_cast<float>(static_cast<double>(one_step) + 0.2);
  EXPECT_EQ(out.at(0, 1, 0, 0), 1.0f);
  EXPECT_EQ(out.at(0, 0, 0, 1), two_steps);
  // ds 1 with the default 5 increments: k = 1/20.
  Tensor<double> ds({1, 2, 1, 1});
  run("histo", {ev(1, 1, 0, 0)}, ds, 10, 1);
  EXPECT_EQ(ds.at(0, 0, 0, 0), 1.0 / 20);
}

TEST(PreprocessHisto, IntegerDtypesAndNoneNormaliser) {
  // k < 1 truncates to nothing in integer outputs (as numba's cast does); max_incr None means k = 1.
  Tensor<std::uint8_t> trunc({1, 2, 1, 1});
  run("histo", {ev(0, 0, 1, 0), ev(0, 0, 1, 1)}, trunc, 10);
  EXPECT_EQ(trunc.at(0, 1, 0, 0), 0);
  Tensor<std::int16_t> none({1, 2, 1, 1});
  run("histo", {ev(0, 0, 1, 0), ev(0, 0, 1, 1)}, none, 10, 0, {{"max_incr_per_pixel", KwargValue{}}});
  EXPECT_EQ(none.at(0, 1, 0, 0), 1);
}

TEST(PreprocessHisto, PolarityOutsideZeroOneIsDropped) {
  Tensor<float> out({1, 2, 1, 1});
  run("histo", {ev(0, 0, 2, 0), ev(0, 0, -1, 0)}, out, 10);
  EXPECT_EQ(out.nonzero(), 0u);
}

TEST(PreprocessHisto, ResetFalseAccumulates) {
  Tensor<float> out({1, 2, 1, 1}, 0.5f);
  run("histo", {ev(0, 0, 1, 0)}, out, 10, 0, {}, false);
  EXPECT_EQ(out.at(0, 1, 0, 0), static_cast<float>(0.5 + 0.2));
  EXPECT_EQ(out.at(0, 0, 0, 0), 0.5f);
  run("histo", {ev(0, 0, 1, 0)}, out, 10, 0, {}, true);
  EXPECT_EQ(out.at(0, 0, 0, 0), 0.0f);
}

TEST(PreprocessDiff, SignedSaturationAndAnyNonZeroPolarityIsOn) {
  Tensor<float> out({1, 1, 1, 3});
  std::vector<EventCD> events;
  for (int i = 0; i < 8; ++i) events.push_back(ev(0, 0, 0, i));
  events.push_back(ev(1, 0, 1, 0));
  events.push_back(ev(1, 0, 0, 0));
  events.push_back(ev(2, 0, 3, 0));  // the reference tests `if p:`
  run("diff", events, out, 10);
  EXPECT_EQ(out.at(0, 0, 0, 0), -1.0f);
  EXPECT_EQ(out.at(0, 0, 0, 1), static_cast<float>(static_cast<double>(0.2f) - 0.2));
  EXPECT_EQ(out.at(0, 0, 0, 2), 0.2f);
  Tensor<std::int8_t> ints({1, 1, 1, 1});
  run("diff", {ev(0, 0, 0, 0)}, ints, 10, 0, {{"max_incr_per_pixel", KwargValue{std::int64_t{1}}}});
  EXPECT_EQ(ints.at(0, 0, 0, 0), -1);
}

TEST(PreprocessTimesurface, LatestEventWinsNormalisedPerBin) {
  Tensor<float> out({2, 2, 1, 2});
  // dt 50: t 10 then t 30 on the same pixel (latest wins), t 75 in bin 1 -> (75 - 50) / 50.
  run("timesurface", {ev(0, 0, 1, 10), ev(0, 0, 1, 30), ev(1, 0, 0, 75), ev(1, 0, 0, 40)}, out, 100);
  EXPECT_EQ(out.at(0, 1, 0, 0), static_cast<float>(30.0 / 50));
  EXPECT_EQ(out.at(1, 0, 0, 1), static_cast<float>(25.0 / 50));
  // The unsorted t 40 lands in bin 1 with a negative offset: skipped, as in the reference.
  EXPECT_EQ(out.nonzero(), 2u);
  Tensor<std::int32_t> raw({1, 2, 1, 1});
  run("timesurface", {ev(0, 0, 0, 77)}, raw, 100, 0,
      {{"normed", true}, {"max_incr_per_pixel", KwargValue{5.0}}});
  EXPECT_EQ(raw.at(0, 0, 0, 0), 0);  // 0.77 truncated
  run("timesurface", {ev(0, 0, 0, 77)}, raw, 100, 0, {{"normed", false}});
  EXPECT_EQ(raw.at(0, 0, 0, 0), 77);
}

TEST(PreprocessTimesurface, MultiChannelMapsMicroBinsToChannelPairs) {
  // T 2, C 6: 6 micro-bins of 100 / 6 us; channel 2m + p of bin t is micro-bin 3t + m.
  Tensor<double> out({2, 6, 1, 1});
  run("multi_channel_timesurface", {ev(0, 0, 1, 20), ev(0, 0, 0, 60), ev(0, 0, 1, 99)}, out, 100);
  const double dt = 100.0 / 6;
  EXPECT_DOUBLE_EQ(out.at(0, 2 * 1 + 1, 0, 0), (20 - 1 * dt) / dt);
  EXPECT_DOUBLE_EQ(out.at(1, 2 * 0 + 0, 0, 0), (60 - 3 * dt) / dt);
  EXPECT_DOUBLE_EQ(out.at(1, 2 * 2 + 1, 0, 0), (99 - 5 * dt) / dt);
  EXPECT_EQ(out.nonzero(), 3u);
}

TEST(PreprocessEventCube, BilinearWeightsAcrossMicroBins) {
  // T 1, C 6 split: n = 3 micro-bins over total 300. t 150: s = 1.0 -> all weight on bin 1.
  // t 200: s = 1.5 -> half on bins 1 and 2. k = 1/5.
  Tensor<double> out({1, 6, 1, 3});
  run("event_cube", {ev(0, 0, 1, 150), ev(1, 0, 0, 200), ev(2, 0, 1, 0)}, out, 300);
  EXPECT_DOUBLE_EQ(out.at(0, 2 * 1 + 1, 0, 0), 0.2);
  EXPECT_DOUBLE_EQ(out.at(0, 2 * 1 + 0, 0, 1), 0.5 * 0.2);
  EXPECT_DOUBLE_EQ(out.at(0, 2 * 2 + 0, 0, 1), 0.5 * 0.2);
  // t 0: s = -0.5 -> left bin -1 gets nothing, bin 0 gets the right weight 0.5 (edge loss).
  EXPECT_DOUBLE_EQ(out.at(0, 1, 0, 2), 0.5 * 0.2);
  EXPECT_EQ(out.nonzero(), 4u);
}

TEST(PreprocessEventCube, NoSplitSignsAndClamps) {
  Tensor<float> out({2, 3, 1, 2});  // n = 6 micro-bins of one channel
  std::vector<EventCD> events;
  for (int i = 0; i < 10; ++i) events.push_back(ev(0, 0, 0, 60));  // s = 2.5: half to micro-bins 2 and 3
  events.push_back(ev(1, 0, 1, 60));
  run("event_cube", events, out, 120, 0,
      {{"split_polarity", false}, {"max_incr_per_pixel", KwargValue{1.0}}});
  // 10 OFF events of weight 0.5 each saturate at -1 in micro-bins 2 and 3 (tbin 0 channel 2, tbin 1 channel
  // 0).
  EXPECT_EQ(out.at(0, 2, 0, 0), -1.0f);
  EXPECT_EQ(out.at(1, 0, 0, 0), -1.0f);
  EXPECT_EQ(out.at(0, 2, 0, 1), 0.5f);
  EXPECT_EQ(out.at(1, 0, 0, 1), 0.5f);
}

TEST(PreprocessEventCube, OutOfRangeTimesStayInBounds) {
  // Negative t with right bin < 0 (the reference wraps it to the last micro-bin) and t far past total:
  // nothing written. t slightly negative (s in [-1, 0)) still feeds micro-bin 0.
  Tensor<float> out({1, 2, 1, 1});
  run("event_cube", {ev(0, 0, 0, -1000), ev(0, 0, 0, 5000), ev(0, 0, 1, 2000000000000LL)}, out, 100);
  EXPECT_EQ(out.nonzero(), 0u);
  run("event_cube", {ev(0, 0, 1, -25)}, out, 100);  // n 1: s = -0.75 -> bin 0 weight 0.25
  EXPECT_EQ(out.at(0, 1, 0, 0), static_cast<float>(0.25 * 0.2));
}

TEST(PreprocessThreads, ConcurrentRunsMatchASerialRun) {
  StreamShape shape;
  shape.width = 320;
  shape.height = 240;
  const auto events = random_events(200000, 7, shape);
  const Timestamp total = events.back().t + 1;
  for (const char* name : {"histo", "event_cube", "timesurface", "histo_quantized"}) {
    auto pre = make_preprocessor(
        name, std::string_view(name) == "histo_quantized"
                  ? Kwargs{{"normalization", true}, {"preprocess_dtype", std::string("float32")}}
                  : Kwargs{});
    const std::array<std::int64_t, 4> shp{3, pre->channels(), 120, 160};
    Tensor<float> serial(shp);
    pre->run(events, serial.view(), total, 1);
    std::vector<Tensor<float>> outs(4, Tensor<float>(shp));
    std::vector<std::thread> threads;
    for (auto& o : outs)
      threads.emplace_back([&] {
        for (int r = 0; r < 3; ++r) pre->run(events, o.view(), total, 1);
      });
    for (auto& t : threads) t.join();
    for (auto& o : outs) EXPECT_EQ(o.data, serial.data) << name;
    EXPECT_GT(serial.nonzero(), 1000u) << name;
  }
}

}  // namespace
}  // namespace evloader::test
