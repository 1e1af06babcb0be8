// SPDX-License-Identifier: Apache-2.0
// Box processing against hand-computed expectations from the behaviour spec §5.
#include "evloader/labels/box_processing.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "evloader/core/error.hpp"

namespace evloader {
namespace {

EventBbox box(Timestamp t, float x, float y, float w, float h, std::uint32_t cls = 0, std::uint32_t track = 0,
              float conf = 1.0f) {
  return EventBbox{t, x, y, w, h, cls, track, conf, 0};
}

std::vector<std::int64_t> ids(std::initializer_list<std::int64_t> v) { return v; }

TEST(Nms, UsesThePlusOnePixelConvention) {
  // Shifted by 3.5 px: IoU 82.5 / 159.5 = 0.517 with the +1 convention (suppressed), 65 / 135 = 0.48 without.
  std::vector<EventBbox> boxes = {box(0, 0, 0, 10, 10), box(0, 3.5f, 0, 10, 10)};
  EXPECT_EQ(nms_in_order(boxes, ids({1, 0})), ids({1}));
  EXPECT_EQ(nms_in_order(boxes, ids({0, 1})), ids({0}));
  // Shifted by 5 px: 66 / 176 = 0.375, both kept; a threshold of 0.3 suppresses.
  std::vector<EventBbox> apart = {box(0, 0, 0, 10, 10), box(0, 5, 0, 10, 10)};
  EXPECT_EQ(nms_in_order(apart, ids({1, 0})), ids({0, 1}));
  EXPECT_EQ(nms_in_order(apart, ids({1, 0}), 0.3), ids({1}));
  EXPECT_THROW((void)nms_in_order(apart, ids({2})), ConfigError);
  EXPECT_TRUE(nms_in_order({}, {}).empty());
}

TEST(Nms, SuppressionIsGreedyAndKeepsTheSurvivorsOrder) {
  // 0 overlaps 1, 1 overlaps 2, 0 does not overlap 2: visiting 0 first suppresses 1, so 2 survives.
  std::vector<EventBbox> chain = {box(0, 0, 0, 10, 10), box(0, 3, 0, 10, 10), box(0, 6, 0, 10, 10)};
  EXPECT_EQ(nms_in_order(chain, ids({0, 1, 2})), ids({0, 2}));
  EXPECT_EQ(nms_in_order(chain, ids({1, 0, 2})), ids({1}));
}

TEST(Nms, DescendingOrderBreaksTiesTowardsTheLaterIndex) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> scores = {1.0, 3.0, 1.0, nan, 3.0};
  EXPECT_EQ(descending_order(scores), ids({3, 4, 1, 2, 0}));
  std::vector<std::int64_t> times = {5, 7, 5, 7};
  EXPECT_EQ(descending_order(std::span<const std::int64_t>(times)), ids({3, 1, 2, 0}));
}

TEST(Nms, NaNOverlapsSuppress) {
  // numpy keeps only boxes with ovr <= thresh, and NaN <= thresh is false.
  std::vector<EventBbox> boxes = {box(0, 0, 0, 10, 10), box(0, std::nanf(""), 0, 10, 10)};
  EXPECT_EQ(nms_in_order(boxes, ids({0, 1})), ids({0}));
}

TEST(Nms, ByClassKeepsOverlapsOfDifferentClasses) {
  std::vector<EventBbox> boxes = {box(0, 0, 0, 10, 10, 1), box(0, 1, 1, 10, 10, 2), box(0, 1, 0, 10, 10, 1),
                                  box(0, 50, 50, 10, 10, 2)};
  EXPECT_EQ(nms_by_class_in_order(boxes, ids({2, 1, 0, 3})), ids({1, 2, 3}));
  EXPECT_EQ(nms_by_class_in_order(boxes, ids({0, 1, 2, 3})), ids({0, 1, 3}));
  EXPECT_EQ(nms_in_order(boxes, ids({0, 1, 2, 3})), ids({0, 3}));
}

TEST(SplitBoxes, BinsAreLeftOpenRightClosed) {
  const Timestamp s = 1000, dt = 100;
  std::vector<EventBbox> boxes = {box(s, 0, 0, 5, 5),           box(s + 1, 10, 0, 5, 5),
                                  box(s + dt, 20, 0, 5, 5),     box(s + dt + 1, 30, 0, 5, 5),
                                  box(s + 3 * dt, 40, 0, 5, 5), box(s + 3 * dt + 1, 50, 0, 5, 5),
                                  box(s - 50, 60, 0, 5, 5)};
  auto bins = split_boxes(boxes, s, dt, 3);
  ASSERT_EQ(bins.size(), 3u);
  ASSERT_EQ(bins[0].size(), 2u);
  EXPECT_EQ(bins[0][0].t, s + 1);
  EXPECT_EQ(bins[0][1].t, s + dt);
  ASSERT_EQ(bins[1].size(), 1u);
  EXPECT_EQ(bins[1][0].t, s + dt + 1);
  ASSERT_EQ(bins[2].size(), 1u);
  EXPECT_EQ(bins[2][0].t, s + 3 * dt);
  EXPECT_THROW((void)split_boxes(boxes, s, 0, 3), ConfigError);
  EXPECT_TRUE(split_boxes(boxes, s, dt, 0).empty());
}

TEST(SplitBoxes, TheMostRecentOfOverlappingBoxesWins) {
  std::vector<EventBbox> boxes = {box(30, 0, 0, 10, 10, 1), box(10, 1, 1, 10, 10, 2),
                                  box(20, 40, 40, 10, 10, 3), box(30, 1, 0, 10, 10, 4)};
  auto bins = split_boxes(boxes, 0, 100, 1);
  ASSERT_EQ(bins[0].size(), 2u);
  EXPECT_EQ(bins[0][0].class_id, 3u);  // input order is kept
  EXPECT_EQ(bins[0][1].class_id, 4u);  // same time as class 1: the later one wins the tie
  auto raw = split_boxes(boxes, 0, 100, 1, false);
  EXPECT_EQ(raw[0].size(), 4u);
}

TEST(CouldFrameContainValidGt, MatchesTheDocstringDiagrams) {
  using V = std::vector<std::uint8_t>;
  EXPECT_EQ(could_frame_contain_valid_gt(0, 250, 120, 5), (V{0, 0, 1, 0, 1}));
  EXPECT_EQ(could_frame_contain_valid_gt(250, 250, 120, 5), (V{0, 0, 1, 0, 1}));
  EXPECT_EQ(could_frame_contain_valid_gt(500, 250, 120, 5), (V{0, 1, 0, 0, 1}));
  EXPECT_EQ(could_frame_contain_valid_gt(0, 250, 100, 5), (V{0, 1, 0, 1, 0}));
  EXPECT_EQ(could_frame_contain_valid_gt(250, 250, 100, 5), (V{1, 0, 1, 0, 1}));
  EXPECT_EQ(could_frame_contain_valid_gt(500, 250, 100, 5), (V{0, 1, 0, 1, 0}));
  EXPECT_EQ(could_frame_contain_valid_gt(0, 250, 1, 5), (V{1, 1, 1, 1, 1}));
  EXPECT_EQ(could_frame_contain_valid_gt(-250, 250, 100, 5), (V{1, 0, 1, 0, 1}));
  EXPECT_THROW((void)could_frame_contain_valid_gt(0, 251, 100, 5), ConfigError);
  EXPECT_THROW((void)could_frame_contain_valid_gt(0, 250, 0, 5), ConfigError);
  EXPECT_THROW((void)could_frame_contain_valid_gt(0, 250, 10, 0), ConfigError);
}

TEST(ClipBoxes, ClipsInPlaceAndDropsThinBoxes) {
  std::vector<EventBbox> boxes = {box(0, -5, -5, 20, 20), box(1, 95, 10, 10, 10), box(2, 98.5f, 10, 10, 10),
                                  box(3, 10, 10, 2, 50), box(4, std::nanf(""), 0, 5, 5)};
  auto kept = clip_boxes(boxes, 100, 100);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0], box(0, 0, 0, 15, 15));
  EXPECT_EQ(kept[1], box(1, 95, 10, 5, 10));
  EXPECT_EQ(boxes[0], box(0, 0, 0, 15, 15));  // input clipped in place
  EXPECT_EQ(boxes[2].w, 1.5f);
  // np.clip keeps a value equal to a bound as it is: -0.0 stays -0.0.
  std::vector<EventBbox> signed_zero = {box(0, -0.0f, 5, 10, 10)};
  (void)clip_boxes(signed_zero, 100, 100);
  EXPECT_TRUE(std::signbit(signed_zero[0].x));
}

TEST(RescaleBoxes, ScalesInPlaceByFloat32Ratios) {
  std::vector<EventBbox> boxes = {box(0, 100, 50, 40, 20), box(0, 1, 3, 5, 7)};
  rescale_boxes(boxes, 1280, 720, 640, 360);
  EXPECT_EQ(boxes[0], box(0, 50, 25, 20, 10));
  rescale_boxes(boxes, 3, 3, 1, 1);
  const float third = static_cast<float>(1.0 / 3.0);
  EXPECT_EQ(boxes[1].x, 0.5f * third);
  EXPECT_EQ(boxes[1].h, 3.5f * third);
}

TEST(FilterBoxes, LooksUpClassesAndDropsOrIgnoresIndices) {
  const std::vector<std::int64_t> lookup = {2, -1, 1, -1};  // spec §5.7: wanted [car, pedestrian]
  std::vector<EventBbox> boxes = {box(0, 0, 0, 5, 5, 0), box(1, 0, 0, 5, 5, 1), box(2, 0, 0, 5, 5, 2),
                                  box(3, 0, 0, 5, 5, 3), box(4, 0, 0, 5, 5, 2)};
  auto out = filter_boxes(boxes, lookup, {}, false);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].class_id, 2u);
  EXPECT_EQ(out[1].class_id, 1u);
  EXPECT_EQ(out[2].t, 4);
  out = filter_boxes(boxes, lookup, ids({2, -1}), false);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].t, 0);
  out = filter_boxes(boxes, lookup, ids({2, 1}), true);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].class_id, 0xFFFFFFFFu);  // ignored: -1 as uint32
  EXPECT_THROW((void)filter_boxes(boxes, lookup, ids({5}), false), ConfigError);
  const std::vector<std::int64_t> with_zero = {0, 1, 2, 3};
  EXPECT_THROW((void)filter_boxes(boxes, with_zero, {}, false), ConfigError);
  const std::vector<std::int64_t> short_lookup = {1, 2};
  EXPECT_THROW((void)filter_boxes(boxes, short_lookup, {}, false), ConfigError);
}

class EmptyTensorFilter : public ::testing::Test {
 protected:
  static constexpr int T = 4, C = 2, H = 10, W = 10;
  std::vector<float> data = std::vector<float>(T * C * H * W, 0.0f);
  TensorView view() const { return TensorView::contiguous(data.data(), T, C, H, W); }
  float& at(int t, int c, int y, int x) { return data[((t * C + c) * H + y) * W + x]; }
  // x 2..6, y 2..7: 20 pixels, 10% is 2 pixels. ts = 15000 with 10 ms bins: bins [0, 2).
  std::vector<EventBbox> boxes = {box(15000, 2, 2, 4, 5)};
  std::vector<std::int64_t> run(double tpb = 10000, int shift = 0,
                                std::optional<double> last = std::nullopt) {
    return filter_empty_tensor(view(), boxes, 0.1, shift, tpb, 0, last);
  }
};

TEST_F(EmptyTensorFilter, CountsPixelsWithInputInAnyBinAndChannel) {
  EXPECT_EQ(run(), ids({0}));
  at(0, 1, 2, 2) = 1.0f;
  EXPECT_EQ(run(), ids({0}));  // 1 pixel < 2
  at(1, 0, 2, 2) = 3.0f;
  EXPECT_EQ(run(), ids({0}));  // same pixel again
  at(2, 0, 6, 5) = 1.0f;
  EXPECT_EQ(run(), ids({0}));  // bin 2 is after the box
  at(1, 0, 6, 5) = -1.0f;
  EXPECT_TRUE(run().empty());  // negative values count
  at(1, 0, 6, 5) = std::nanf("");
  EXPECT_EQ(run(), ids({0}));  // NaN does not
  at(1, 0, 6, 6) = 1.0f;
  EXPECT_EQ(run(), ids({0}));  // x = 6 is outside [2, 6)
}

TEST_F(EmptyTensorFilter, LooksBackAtMost100Milliseconds) {
  at(0, 0, 3, 3) = 1.0f;
  at(0, 0, 3, 4) = 1.0f;
  EXPECT_TRUE(run().empty());
  // 60 ms bins: ts = 15000 is in bin 0 and the lookback is int(100/60) = 1 bin.
  boxes[0].t = 70000;  // bin 1: looks at bin 1 only
  EXPECT_EQ(run(60000), ids({0}));
  EXPECT_TRUE(run(20000).empty());  // 20 ms bins: tmax = 4, lookback 5 bins: bin 0 included
  // Bins longer than 100 ms still look at the box's own bin.
  boxes[0].t = 1000;
  EXPECT_TRUE(run(200000).empty());
}

TEST_F(EmptyTensorFilter, ShiftsCoordinatesAndHandlesEdges) {
  // shift 1: x 2..6 -> 1..3, y 2..7 -> 1..3: 4 pixels, needs 0.4 -> one pixel is enough.
  at(0, 0, 1, 1) = 1.0f;
  EXPECT_TRUE(run(10000, 1).empty());
  boxes = {box(15000, 2, 2, 0.5f, 5),  // zero width after the int16 cast
           box(15000, 12, 2, 5, 5),    // right of the tensor: nothing visible
           box(-30000, 2, 2, 4, 5),    // before the tensor: kept
           box(600000, 2, 2, 4, 5)};   // after last_time_to_filter: kept
  EXPECT_EQ(run(10000, 0, 500000.0), ids({0, 1}));
  EXPECT_EQ(run(10000, 0), ids({0, 1, 3}));
  EXPECT_THROW((void)run(0), ConfigError);
  EXPECT_THROW((void)run(10000, 16), ConfigError);
}

TEST(EmptyTensorFilterStrided, ReadsOneItemOfABatch) {
  constexpr int T = 2, N = 3, C = 1, H = 4, W = 4;
  std::vector<float> batch(T * N * C * H * W, 0.0f);
  auto at = [&](int t, int n, int y, int x) -> float& { return batch[((t * N + n) * C * H + y) * W + x]; };
  std::vector<EventBbox> boxes = {box(5, 0, 0, 2, 2)};  // 4 pixels, needs 0.4
  at(0, 0, 0, 0) = 1.0f;                                // other slots do not count
  at(0, 2, 0, 0) = 1.0f;
  const auto item = TensorView::batch_item(batch.data(), T, N, C, H, W, 1);
  EXPECT_EQ(filter_empty_tensor(item, boxes, 0.1, 0, 10, 0, std::nullopt), ids({0}));
  at(0, 1, 1, 1) = 2.0f;
  EXPECT_TRUE(filter_empty_tensor(item, boxes, 0.1, 0, 10, 0, std::nullopt).empty());
}

TEST(DownsamplingShift, IsTheTruncatedLog2OfTheWidthRatio) {
  EXPECT_EQ(downsampling_shift(1280, 1280), 0);
  EXPECT_EQ(downsampling_shift(1280, 640), 1);
  EXPECT_EQ(downsampling_shift(1280, 320), 2);
  EXPECT_EQ(downsampling_shift(1280, 500), 1);
  EXPECT_THROW((void)downsampling_shift(640, 1280), ConfigError);
  EXPECT_THROW((void)downsampling_shift(640, 0), ConfigError);
}

class LoadBoxes : public ::testing::Test {
 protected:
  // Sensor 32x16, tensor [2, 1, 8, 16]: shift 1, boxes scaled by 0.5.
  static constexpr Timestamp start = 1000000, duration = 100000;
  std::vector<float> tensor = std::vector<float>(2 * 1 * 8 * 16, 0.0f);
  std::vector<std::int64_t> lookup = {-1, 1, 2};
  LoadBoxesOptions options() const {
    LoadBoxesOptions o;
    o.sensor_width = 32;
    o.sensor_height = 16;
    o.class_lookup = lookup;
    return o;
  }
  TensorView view() const { return TensorView::contiguous(tensor.data(), 2, 1, 8, 16); }
  BoxStore store{{box(start, 2, 2, 10, 6, 1),               // on the start: previous batch
                  box(start + 50000, 2, 2, 10, 6, 1, 7),    // bin 0
                  box(start + 20000, 0, 0, 8, 8, 0),        // bin 0, class dropped
                  box(start + 100000, 30, 10, 10, 10, 2),   // clipped to 2 px wide: dropped
                  box(start + 100000, -4, 0, 12, 8, 2, 9),  // bin 1, clipped to x 0..8
                  box(start + 100001, 2, 2, 10, 6, 1)}};    // next batch
};

TEST_F(LoadBoxes, RunsTheWholePipeline) {
  auto out = load_boxes(store, start, duration, view(), options());
  EXPECT_EQ(out.frame_is_labeled, (std::vector<std::uint8_t>{1, 1}));
  ASSERT_EQ(out.bins.size(), 2u);
  ASSERT_EQ(out.bins[0].size(), 1u);
  EXPECT_EQ(out.bins[0][0], box(start + 50000, 1, 1, 5, 3, 1, 7));
  ASSERT_EQ(out.bins[1].size(), 1u);
  EXPECT_EQ(out.bins[1][0], box(start + 100000, 0, 0, 4, 4, 2, 9));
  EXPECT_EQ(store.window(start, duration)[0].x, 0.0f);  // the store is untouched (box at start+20000)
}

TEST_F(LoadBoxes, FiltersByMinimumDiagonal) {
  auto o = options();
  o.min_box_diag_network = 5;  // 5x3: 34 >= 25; 4x4: 32 >= 25
  auto out = load_boxes(store, start, duration, view(), o);
  EXPECT_EQ(out.bins[0].size(), 1u);
  EXPECT_EQ(out.bins[1].size(), 1u);
  o.min_box_diag_network = 5.7;  // 32.49: only the 5x3 box stays
  out = load_boxes(store, start, duration, view(), o);
  EXPECT_EQ(out.bins[0].size(), 1u);
  EXPECT_EQ(out.bins[1].size(), 0u);
  o.min_box_diag_network = 9.5;  // w >= 3.17 fails for the 5x3 box's height
  out = load_boxes(store, start, duration, view(), o);
  EXPECT_EQ(out.bins[0].size(), 0u);
}

TEST_F(LoadBoxes, FrameWithOnlyAnIgnoredClassIsStillLabelled) {
  BoxStore only_ignored({box(start + 60000, 2, 2, 10, 6, 0)});
  auto out = load_boxes(only_ignored, start, duration, view(), options());
  EXPECT_EQ(out.frame_is_labeled, (std::vector<std::uint8_t>{0, 1}));
  EXPECT_TRUE(out.bins[1].empty());
}

TEST_F(LoadBoxes, DropsEmptyBoxesInTheFirstHalfSecondOnly) {
  BoxStore early({box(50000, 2, 2, 10, 6, 1), box(550000, 2, 2, 10, 6, 1)});
  auto out = load_boxes(early, 0, duration, view(), options());
  EXPECT_TRUE(out.bins[0].empty());  // t = 50 ms, nothing under it
  EXPECT_EQ(out.frame_is_labeled[0], 1);
  out = load_boxes(early, 500000, duration, view(), options());
  EXPECT_EQ(out.bins[0].size(), 1u);  // t = 550 ms is never filtered
  // Input under the box (tensor pixels x 1..6, y 1..4: 15 pixels, 2 needed) keeps it.
  tensor[1 * 16 + 1] = 1.0f;
  tensor[2 * 16 + 3] = 1.0f;
  out = load_boxes(early, 0, duration, view(), options());
  EXPECT_EQ(out.bins[0].size(), 1u);
  // No tensor data: the filter is skipped.
  std::fill(tensor.begin(), tensor.end(), 0.0f);
  TensorView shape_only = view();
  shape_only.data = nullptr;
  out = load_boxes(early, 0, duration, shape_only, options());
  EXPECT_EQ(out.bins[0].size(), 1u);
}

TEST_F(LoadBoxes, RejectsBadOptions) {
  auto o = options();
  o.class_lookup = {};
  EXPECT_THROW((void)load_boxes(store, start, duration, view(), o), ConfigError);
  o = options();
  o.sensor_width = 0;
  EXPECT_THROW((void)load_boxes(store, start, duration, view(), o), ConfigError);
  o = options();
  o.sensor_width = 8;  // narrower than the tensor
  EXPECT_THROW((void)load_boxes(store, start, duration, view(), o), ConfigError);
  EXPECT_THROW((void)load_boxes(store, start, 1, view(), options()), ConfigError);
}

TEST_F(LoadBoxes, IsThreadSafeOnOneStore) {
  std::vector<EventBbox> many;
  for (int i = 0; i < 2000; ++i)
    many.push_back(box(i * 1777 % 3000000, static_cast<float>(i % 29), static_cast<float>(i % 11), 6, 5,
                       static_cast<std::uint32_t>(i % 3), static_cast<std::uint32_t>(i)));
  const BoxStore shared(many);
  for (std::size_t i = 0; i < tensor.size(); i += 3) tensor[i] = 1.0f;
  std::vector<BinnedBoxes> expected;
  for (Timestamp s = 0; s < 3000000; s += duration)
    expected.push_back(load_boxes(shared, s, duration, view(), options()));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(6, 0);
  for (int th = 0; th < 6; ++th)
    threads.emplace_back([&, th] {
      for (int rep = 0; rep < 3; ++rep)
        for (std::size_t b = static_cast<std::size_t>(th) % expected.size(), n = 0; n < expected.size();
             ++n, b = (b + 1) % expected.size()) {
          auto got = load_boxes(shared, static_cast<Timestamp>(b) * duration, duration, view(), options());
          if (got.frame_is_labeled != expected[b].frame_is_labeled) ++mismatches[th];
          for (std::size_t k = 0; k < got.bins.size(); ++k)
            if (!std::equal(got.bins[k].begin(), got.bins[k].end(), expected[b].bins[k].begin(),
                            expected[b].bins[k].end()))
              ++mismatches[th];
        }
    });
  for (auto& t : threads) t.join();
  for (int th = 0; th < 6; ++th) EXPECT_EQ(mismatches[th], 0) << "thread " << th;
}

}  // namespace
}  // namespace evloader
