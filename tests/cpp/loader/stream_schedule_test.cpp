// SPDX-License-Identifier: Apache-2.0
// The streaming loader's slot table against hand-worked examples and a literal model of metavision_core_ml's
// StreamDataset.__iter__ (one worker holding every slot).
#include "evloader/loader/stream_schedule.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <random>

#include "evloader/core/error.hpp"

namespace evloader {
namespace {

using Table = std::vector<std::vector<StreamItem>>;  // [batch][slot]

Table table_of(const StreamSchedule& s) {
  Table t(s.num_batches());
  for (std::size_t b = 0; b < s.num_batches(); ++b)
    for (int slot = 0; slot < s.batch_size(); ++slot) t[b].push_back(s.at(b, slot));
  return t;
}

// A line-by-line model of StreamDataset.__iter__ with iterators over item indices, and of the loader's rule
// for 'data' padding (stop at the first exhausted worker: here the only one). Returns [batch][slot].
Table reference(const std::vector<std::uint64_t>& items, int batch_size, bool data_mode) {
  std::vector<int> streams;
  for (std::size_t r = 0; r < items.size(); ++r)
    if (items[r] > 0) streams.push_back(static_cast<int>(r));
  Table out;
  if (streams.empty()) return out;
  const int m = static_cast<int>(streams.size());
  struct It {
    int recording = -1;
    std::uint64_t next = 0;
    std::optional<StreamItem> pull(const std::vector<std::uint64_t>& n) {
      if (recording < 0 || next >= n[static_cast<std::size_t>(recording)]) return std::nullopt;
      return StreamItem{recording, next++};
    }
  };
  std::vector<It> its(static_cast<std::size_t>(batch_size));
  std::vector<bool> active(static_cast<std::size_t>(batch_size), true);
  for (int i = 0; i < batch_size; ++i) {
    if (i < m)
      its[static_cast<std::size_t>(i)] = It{streams[static_cast<std::size_t>(i)], 0};
    else if (data_mode)
      its[static_cast<std::size_t>(i)] = It{streams[static_cast<std::size_t>(i % m)], 0};
    active[static_cast<std::size_t>(i)] = i < m;
  }
  int file_pos = batch_size - 1;
  while (true) {
    bool any = false;
    for (bool a : active) any = any || a;
    if (!any) break;
    std::vector<StreamItem> values;
    for (int i = 0; i < batch_size; ++i) {
      auto& it = its[static_cast<std::size_t>(i)];
      auto v = it.pull(items);
      if (!v) {
        file_pos += 1;
        active[static_cast<std::size_t>(i)] = file_pos < m;
        if (data_mode || active[static_cast<std::size_t>(i)]) {
          it = It{streams[static_cast<std::size_t>(file_pos % m)], 0};
          v = it.pull(items);
        } else {
          v = StreamItem{};
        }
      }
      values.push_back(*v);
    }
    any = false;
    for (bool a : active) any = any || a;
    if (any) out.push_back(values);
  }
  return out;
}

void expect_same(const Table& a, const Table& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size());
    for (std::size_t s = 0; s < a[i].size(); ++s) {
      EXPECT_EQ(a[i][s].recording, b[i][s].recording) << "batch " << i << " slot " << s;
      EXPECT_EQ(a[i][s].index, b[i][s].index) << "batch " << i << " slot " << s;
    }
  }
}

TEST(StreamSchedule, ZerosModeChainsRecordingsPerSlotThenPads) {
  // Slot 0: r0 (3 tensors) then r3 (4); slot 1: r1 (1) then r2 (2), then padding.
  const StreamSchedule s({3, 1, 2, 4}, 2, StreamPadding::zeros);
  ASSERT_EQ(s.num_batches(), 7u);
  const std::vector<std::pair<int, int>> slot0 = {{0, 0}, {0, 1}, {0, 2}, {3, 0}, {3, 1}, {3, 2}, {3, 3}};
  const std::vector<std::pair<int, int>> slot1 = {{1, 0}, {2, 0}, {2, 1}, {-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}};
  for (std::size_t b = 0; b < 7; ++b) {
    EXPECT_EQ(s.at(b, 0).recording, slot0[b].first);
    EXPECT_EQ(s.at(b, 0).index, static_cast<std::uint64_t>(slot0[b].second));
    EXPECT_EQ(s.at(b, 1).recording, slot1[b].first);
    EXPECT_EQ(s.at(b, 1).index, static_cast<std::uint64_t>(slot1[b].second));
  }
  EXPECT_FALSE(s.at(0, 0).keep_memory());
  EXPECT_TRUE(s.at(1, 0).keep_memory());
  EXPECT_FALSE(s.at(3, 0).keep_memory());  // r3 starts: memory reset
  EXPECT_FALSE(s.at(1, 1).keep_memory());
  EXPECT_TRUE(s.at(3, 1).padding());
  EXPECT_FALSE(s.at(3, 1).keep_memory());  // padding resets too (metavision's fill value)
  EXPECT_THROW((void)s.at(7, 0), std::out_of_range);
  EXPECT_THROW((void)s.at(0, 2), std::out_of_range);
  expect_same(table_of(s), reference({3, 1, 2, 4}, 2, false));
}

TEST(StreamSchedule, DataModeRestartsRecordingsAndEndsWhenNoSlotHasFreshData) {
  const StreamSchedule s({3, 1, 2, 4}, 2, StreamPadding::data);
  ASSERT_EQ(s.num_batches(), 7u);
  // Slot 1 ran out at batch 3: it restarts from the head of the list (r0, then r1).
  EXPECT_EQ(s.at(3, 1).recording, 0);
  EXPECT_EQ(s.at(3, 1).index, 0u);
  EXPECT_FALSE(s.at(3, 1).keep_memory());
  EXPECT_EQ(s.at(5, 1).recording, 0);
  EXPECT_EQ(s.at(5, 1).index, 2u);
  EXPECT_EQ(s.at(6, 1).recording, 1);
  for (std::size_t b = 0; b < s.num_batches(); ++b)
    for (int slot = 0; slot < 2; ++slot) EXPECT_FALSE(s.at(b, slot).padding());
  expect_same(table_of(s), reference({3, 1, 2, 4}, 2, true));
}

TEST(StreamSchedule, MatchesTheModelOnRandomLists) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 9);
    std::vector<std::uint64_t> items(static_cast<std::size_t>(n));
    for (auto& v : items) v = rng() % 5 == 0 ? 0 : 1 + rng() % 12;  // some empty recordings
    const int batch = 1 + static_cast<int>(rng() % static_cast<unsigned>(n));
    for (bool data : {false, true}) {
      const StreamSchedule s(items, batch, data ? StreamPadding::data : StreamPadding::zeros);
      SCOPED_TRACE("trial " + std::to_string(trial) + (data ? " data" : " zeros"));
      expect_same(table_of(s), reference(items, batch, data));
      if (data) continue;
      // Zeros mode: every tensor of every recording exactly once, in order, in one slot.
      std::vector<std::uint64_t> seen(items.size(), 0);
      for (std::size_t b = 0; b < s.num_batches(); ++b) {
        bool real = false;
        for (int slot = 0; slot < batch; ++slot) {
          const StreamItem it = s.at(b, slot);
          if (it.padding()) continue;
          real = true;
          EXPECT_EQ(it.index, seen[static_cast<std::size_t>(it.recording)]++);
        }
        EXPECT_TRUE(real) << "a batch of padding only";
      }
      EXPECT_EQ(seen, items);
    }
  }
}

TEST(StreamSchedule, EmptyRecordingsAndShortListsAndOrder) {
  EXPECT_EQ(StreamSchedule({0, 0}, 2, StreamPadding::zeros).num_batches(), 0u);
  EXPECT_EQ(StreamSchedule({}, 3, StreamPadding::data).num_batches(), 0u);
  // Fewer recordings than slots: the extra slots are padding (zeros) from the start.
  const StreamSchedule few({2}, 3, StreamPadding::zeros);
  ASSERT_EQ(few.num_batches(), 2u);
  EXPECT_TRUE(few.at(0, 1).padding());
  EXPECT_TRUE(few.at(1, 2).padding());
  // An explicit order: slots take recordings in that order.
  const StreamSchedule ordered({1, 2, 3}, 1, StreamPadding::zeros, {2, 0, 1});
  ASSERT_EQ(ordered.num_batches(), 6u);
  EXPECT_EQ(ordered.at(0, 0).recording, 2);
  EXPECT_EQ(ordered.at(3, 0).recording, 0);
  EXPECT_EQ(ordered.at(4, 0).recording, 1);
  EXPECT_THROW(StreamSchedule({1}, 0, StreamPadding::zeros), ConfigError);
  EXPECT_THROW(StreamSchedule({1}, 1, StreamPadding::zeros, {1}), ConfigError);
}

TEST(StreamSchedule, EngineScheduleHasTheSameShape) {
  const StreamSchedule s({5, 2, 7}, 2, StreamPadding::zeros);
  const auto e = s.engine_schedule();
  EXPECT_EQ(e->num_batches(), s.num_batches());
  EXPECT_EQ(e->batch_size(), 2);
  const StreamSchedule none({0}, 2, StreamPadding::zeros);
  EXPECT_EQ(none.engine_schedule()->num_batches(), 0u);
  // Segments of a slot cover its real items, in batch order.
  std::uint64_t covered = 0;
  for (int slot = 0; slot < 2; ++slot)
    for (const auto& run : s.segments(slot)) covered += run.count;
  EXPECT_EQ(covered, 14u);
}

TEST(StreamSlicing, ValidatesParameters) {
  StreamSlicing s;
  s.mode = SliceMode::delta_t;
  s.delta_t = 0;
  EXPECT_THROW(s.validate(), ConfigError);
  s.delta_t = 10;
  s.num_tbins = 0;
  EXPECT_THROW(s.validate(), ConfigError);
  s.num_tbins = 3;
  EXPECT_NO_THROW(s.validate());
  s.mode = SliceMode::n_events;
  EXPECT_THROW(s.validate(), ConfigError);  // n_events = 0
  s.n_events = 5;
  EXPECT_NO_THROW(s.validate());
  s.mode = SliceMode::mixed;
  s.delta_t = 0;
  EXPECT_THROW(s.validate(), ConfigError);
  s.delta_t = 1;
  s.max_duration = -1;
  EXPECT_THROW(s.validate(), ConfigError);
}

}  // namespace
}  // namespace evloader
