// SPDX-License-Identifier: Apache-2.0
// BoxStore: label file names, ordering, window queries on batch boundaries, loading errors, the cache.
#include "evloader/labels/box_store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <thread>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/labels/box_processing.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

EventBbox box(Timestamp t, float x, float y, float w, float h, std::uint32_t cls = 0, std::uint32_t track = 0,
              float conf = 1.0f) {
  return EventBbox{t, x, y, w, h, cls, track, conf, 0};
}

std::filesystem::path temp_file(const std::string& name) { return test::temp_dir() / name; }

TEST(LabelPath, ReplacesTheRecordingEnding) {
  EXPECT_EQ(label_path_for("rec_td.dat"), std::filesystem::path("rec_bbox.npy"));
  EXPECT_EQ(label_path_for("rec.h5"), std::filesystem::path("rec_bbox.npy"));
  EXPECT_EQ(label_path_for("data/rec_3.h5"), std::filesystem::path("data/rec_3_bbox.npy"));
  EXPECT_EQ(label_path_for("/a/b.h5/rec.dat"), std::filesystem::path("/a/b.h5/rec_bbox.npy"));
  EXPECT_EQ(label_path_for("rec.raw"), std::filesystem::path("rec_bbox.npy"));
  EXPECT_EQ(label_path_for("rec.hdf5"), std::filesystem::path("rec_bbox.npy"));
  EXPECT_EQ(label_path_for("rec.aedat4"), std::filesystem::path("rec_bbox.npy"));
  EXPECT_EQ(label_path_for("REC_TD.DAT"), std::filesystem::path("REC_bbox.npy"));
  EXPECT_THROW((void)label_path_for("rec.txt"), ConfigError);
  EXPECT_THROW((void)label_path_for("rec_bbox.npy"), ConfigError);
}

TEST(BoxStore, SortsByTimeThenByTheOtherFieldsLikeNumpy) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<EventBbox> in = {box(20, 1, 0, 0, 0), box(10, 5, 0, 0, 0), box(10, nan, 0, 0, 0),
                               box(10, 2, 9, 0, 0), box(10, 2, 3, 0, 0), box(10, 2, 3, 0, 0, 7),
                               box(5, 0, 0, 0, 0)};
  BoxStore store(in);
  ASSERT_EQ(store.size(), in.size());
  const auto b = store.boxes();
  EXPECT_EQ(b[0].t, 5);
  EXPECT_EQ(b[1], box(10, 2, 3, 0, 0));
  EXPECT_EQ(b[2], box(10, 2, 3, 0, 0, 7));
  EXPECT_EQ(b[3], box(10, 2, 9, 0, 0));
  EXPECT_EQ(b[4].x, 5.0f);
  EXPECT_TRUE(std::isnan(b[5].x));  // NaN after numbers
  EXPECT_EQ(b[6].t, 20);
}

TEST(BoxStore, WindowIsLeftOpenRightClosed) {
  BoxStore store({box(0, 0, 0, 1, 1), box(100, 0, 0, 1, 1), box(101, 0, 0, 1, 1), box(200, 0, 0, 1, 1),
                  box(201, 0, 0, 1, 1)});
  auto w = store.window(100, 100);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].t, 101);
  EXPECT_EQ(w[1].t, 200);
  EXPECT_EQ(store.window(0, 100).size(), 1u);  // t=0 is not after start 0
  EXPECT_EQ(store.window(-1, 1).size(), 1u);
  EXPECT_TRUE(store.window(300, 100).empty());
  EXPECT_TRUE(store.window(100, 0).empty());
  EXPECT_EQ(store.window(std::numeric_limits<Timestamp>::max() - 5, 100).size(), 0u);  // no overflow
  EXPECT_EQ(store.range(std::numeric_limits<Timestamp>::min(), std::numeric_limits<Timestamp>::max()).size(),
            5u);
}

// Quirk 1 of the spec: labels at every delta_t must all survive across consecutive batches.
TEST(BoxStore, LabelsAtEveryDeltaTAreKeptAcrossConsecutiveBatches) {
  constexpr Timestamp dt = 50000;
  constexpr int num_tbins = 3;
  std::vector<EventBbox> boxes;
  for (int k = 1; k <= 30; ++k) boxes.push_back(box(k * dt, 10, 10, 20, 20, 1));
  BoxStore store(boxes);
  std::multiset<Timestamp> seen;
  for (Timestamp start = 0; start < 30 * dt; start += num_tbins * dt) {
    auto bins = split_boxes(store.window(start, num_tbins * dt), start, dt, num_tbins);
    for (int k = 0; k < num_tbins; ++k) {
      ASSERT_EQ(bins[k].size(), 1u) << "batch " << start << " bin " << k;
      EXPECT_EQ(bins[k][0].t, start + (k + 1) * dt);
      seen.insert(bins[k][0].t);
    }
  }
  EXPECT_EQ(seen.size(), 30u);
  EXPECT_EQ(std::set<Timestamp>(seen.begin(), seen.end()).size(), 30u);
}

TEST(BoxStore, LoadsFilesAndNamesTheFileInErrors) {
  const auto path = temp_file("store_load_bbox.npy");
  std::vector<EventBbox> boxes = {box(30, 1, 2, 3, 4, 5, 6, 0.5f), box(10, 1, 2, 3, 4)};
  write_boxes_npy(path, boxes);
  auto store = BoxStore::load(path);
  ASSERT_EQ(store->size(), 2u);
  EXPECT_EQ(store->boxes()[0].t, 10);
  EXPECT_EQ(store->boxes()[1], boxes[0]);
  EXPECT_EQ(store->path(), path);

  const auto missing = temp_file("no_such_bbox.npy");
  try {
    (void)BoxStore::load(missing);
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_bbox.npy"), std::string::npos) << e.what();
  }
  const auto garbage = temp_file("garbage_bbox.npy");
  std::ofstream(garbage, std::ios::binary) << "this is not a numpy file at all";
  try {
    (void)BoxStore::load(garbage);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("garbage_bbox.npy"), std::string::npos) << e.what();
  }
}

TEST(BoxStoreCache, ReadsAFileOnceAndAgainWhenItChanges) {
  BoxStoreCache cache(4);
  const auto path = temp_file("cache_once_bbox.npy");
  write_boxes_npy(path, std::vector<EventBbox>{box(1, 0, 0, 5, 5)});
  auto a = cache.get(path);
  auto b = cache.get(path);
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(cache.file_reads(), 1u);
  EXPECT_EQ(cache.size(), 1u);

  // A different size is a different version (mtime alone may not tick within the clock resolution).
  write_boxes_npy(path, std::vector<EventBbox>{box(1, 0, 0, 5, 5), box(2, 0, 0, 5, 5)});
  auto c = cache.get(path);
  EXPECT_EQ(c->size(), 2u);
  EXPECT_EQ(cache.file_reads(), 2u);
  EXPECT_EQ(a->size(), 1u);  // holders of the old version keep it

  EXPECT_THROW((void)cache.get(temp_file("cache_missing_bbox.npy")), IoError);
  EXPECT_THROW((void)cache.get(test::temp_dir()), IoError);
}

TEST(BoxStoreCache, EvictsTheLeastRecentlyUsed) {
  BoxStoreCache cache(2);
  std::vector<std::filesystem::path> files;
  for (int i = 0; i < 3; ++i) {
    files.push_back(temp_file("cache_lru_" + std::to_string(i) + "_bbox.npy"));
    write_boxes_npy(files.back(), std::vector<EventBbox>{box(i, 0, 0, 5, 5)});
  }
  (void)cache.get(files[0]);
  (void)cache.get(files[1]);
  (void)cache.get(files[0]);  // 1 is now the least recently used
  (void)cache.get(files[2]);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.file_reads(), 3u);
  (void)cache.get(files[0]);
  EXPECT_EQ(cache.file_reads(), 3u);
  (void)cache.get(files[1]);
  EXPECT_EQ(cache.file_reads(), 4u);
  cache.set_capacity(1);
  EXPECT_EQ(cache.size(), 1u);
  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
}

TEST(BoxStoreCache, ManyThreadsShareOneStore) {
  BoxStoreCache cache(8);
  const auto path = temp_file("cache_threads_bbox.npy");
  std::vector<EventBbox> boxes;
  for (int i = 0; i < 1000; ++i) boxes.push_back(box(i * 997 % 100000, 1, 1, 30, 30, i % 3));
  write_boxes_npy(path, boxes);
  const BoxStore reference(boxes);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  std::vector<const BoxStore*> seen(8);
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        auto store = cache.get(path);
        seen[t] = store.get();
        if (store->window(i * 100, 5000).size() != reference.window(i * 100, 5000).size()) ++failures;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(cache.file_reads(), 8u);  // at most one read per thread racing on the first miss
  EXPECT_EQ(cache.size(), 1u);
}

}  // namespace
}  // namespace evloader
