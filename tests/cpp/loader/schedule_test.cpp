// SPDX-License-Identifier: Apache-2.0
#include "evloader/loader/schedule.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "evloader/core/error.hpp"

namespace evloader {
namespace {

constexpr Timestamp kMs = 1000;

// The worked example of the behaviour spec §3.5: T_total = 100 ms, N = 2.
std::vector<ScheduleRecording> spec_recordings() {
  return {{0, 1000 * kMs}, {0, 600 * kMs}, {0, 450 * kMs}, {0, 1200 * kMs}, {0, 300999}};
}

ScheduleOptions spec_options(bool padding) {
  ScheduleOptions o;
  o.delta_t = 10 * kMs;
  o.num_tbins = 10;
  o.batch_size = 2;
  o.padding = padding;
  return o;
}

TEST(RoundDuration, RoundsUpOnlyWithinTheTolerance) {
  EXPECT_EQ(round_duration(450 * kMs, 100 * kMs), 400 * kMs);
  EXPECT_EQ(round_duration(300999, 100 * kMs), 300 * kMs);
  EXPECT_EQ(round_duration(399001, 100 * kMs), 400 * kMs);  // 999 µs short of a window: up
  EXPECT_EQ(round_duration(399000, 100 * kMs), 400 * kMs);  // exactly the tolerance: up
  EXPECT_EQ(round_duration(398999, 100 * kMs), 300 * kMs);
  EXPECT_EQ(round_duration(1000 * kMs, 100 * kMs, 3), 300 * kMs);
  EXPECT_EQ(round_duration(400 * kMs, 100 * kMs), 400 * kMs);
  EXPECT_EQ(round_duration(-50 * kMs, 100 * kMs), -100 * kMs);  // Python floor semantics
}

TEST(Schedule, SpecWorkedExampleWithPadding) {
  Schedule s(spec_recordings(), spec_options(true));
  ASSERT_EQ(s.num_batches(), 18u);
  ASSERT_EQ(s.batch_size(), 2);
  // slot 0: file 0 (batches 0-9), file 2 (10-13), file 4 (14-16), padding at 17.
  for (std::size_t b = 0; b < 18; ++b) {
    auto item = s.at(b, 0);
    if (b < 10)
      EXPECT_EQ(item.recording, 0);
    else if (b < 14)
      EXPECT_EQ(item.recording, 2);
    else if (b < 17)
      EXPECT_EQ(item.recording, 4);
    else
      EXPECT_TRUE(item.padding);
  }
  // slot 1: file 1 (0-5), file 3 (6-17).
  for (std::size_t b = 0; b < 18; ++b) EXPECT_EQ(s.at(b, 1).recording, b < 6 ? 1 : 3);
  EXPECT_EQ(s.at(12, 0).start, 200 * kMs);
  EXPECT_EQ(s.at(7, 1).start, 100 * kMs);
  EXPECT_EQ(s.at(7, 1).duration, 100 * kMs);
}

TEST(Schedule, SpecWorkedExampleWithoutPadding) {
  Schedule s(spec_recordings(), spec_options(false));
  EXPECT_EQ(s.num_batches(), 17u);  // file 3's last window is dropped
  EXPECT_EQ(s.at(16, 1).start, 1000 * kMs);
  EXPECT_THROW((void)s.at(17, 0), std::out_of_range);
}

TEST(Schedule, KeepMemoryIsFalseAtTheFirstWindowOfEachRecording) {
  Schedule s(spec_recordings(), spec_options(true));
  for (std::size_t b = 0; b < s.num_batches(); ++b)
    for (int slot = 0; slot < 2; ++slot) {
      auto item = s.at(b, slot);
      if (item.padding) {
        EXPECT_TRUE(item.keep_memory);  // metavision_ml's convention for padding
        continue;
      }
      const bool first = b == 0 || s.at(b - 1, slot).recording != item.recording;
      EXPECT_EQ(item.keep_memory, !first) << "batch " << b << " slot " << slot;
      EXPECT_EQ(item.start == 0, first);
    }
}

TEST(Schedule, MaxConsecutiveBatchCutsChunks) {
  auto o = spec_options(true);
  o.max_consecutive_batch = 3;
  Schedule s({{0, 1000 * kMs}, {0, 600 * kMs}}, o);
  std::vector<Timestamp> starts_of_0;
  for (const auto& e : s.entries())
    if (e.recording == 0) starts_of_0.push_back(e.start_ts);
  EXPECT_EQ(starts_of_0, (std::vector<Timestamp>{0, 300 * kMs, 600 * kMs, 900 * kMs}));
  // Each chunk starts with a memory reset and lasts at most 3 batches.
  std::map<int, int> batches_per_entry;
  for (std::size_t b = 0; b < s.num_batches(); ++b)
    for (int slot = 0; slot < s.batch_size(); ++slot) {
      auto item = s.at(b, slot);
      if (item.padding) continue;
      batches_per_entry[item.entry]++;
      EXPECT_EQ(item.keep_memory, item.start != s.entries()[static_cast<std::size_t>(item.entry)].start_ts);
    }
  for (const auto& [entry, n] : batches_per_entry) EXPECT_LE(n, 3);
  EXPECT_EQ(batches_per_entry.at(3), 1);  // the 0.9 s chunk of recording 0 has 100 ms left
}

TEST(Schedule, RecordingsNotStartingAtZeroAreReadFromTheirBegin) {
  auto o = spec_options(false);
  o.batch_size = 1;
  Schedule s({{913'716'224, 913'716'224 + 350 * kMs}}, o);
  ASSERT_EQ(s.num_batches(), 3u);
  EXPECT_EQ(s.at(0, 0).start, 913'716'224);
  EXPECT_EQ(s.at(2, 0).start, 913'716'224 + 200 * kMs);
}

TEST(Schedule, BatchSizeShrinksToTheNumberOfRecordings) {
  auto o = spec_options(false);
  o.batch_size = 8;
  Schedule s({{0, 500 * kMs}, {0, 300 * kMs}}, o);
  EXPECT_EQ(s.batch_size(), 2);
  EXPECT_EQ(s.num_batches(), 3u);
  Schedule empty({}, o);
  EXPECT_EQ(empty.num_batches(), 0u);
}

TEST(Schedule, ShuffleIsDeterministicForASeedAndCoversEverything) {
  std::vector<ScheduleRecording> recs;
  for (int i = 0; i < 12; ++i) recs.push_back({0, (300 + 100 * i) * kMs});
  auto o = spec_options(true);
  o.batch_size = 3;
  o.shuffle = true;
  o.seed = 42;
  Schedule a(recs, o), b(recs, o);
  o.seed = 43;
  Schedule c(recs, o);
  std::vector<int> order_a, order_b, order_c;
  for (auto& e : a.entries()) order_a.push_back(e.recording);
  for (auto& e : b.entries()) order_b.push_back(e.recording);
  for (auto& e : c.entries()) order_c.push_back(e.recording);
  EXPECT_EQ(order_a, order_b);
  EXPECT_NE(order_a, order_c);
  EXPECT_EQ(std::set<int>(order_a.begin(), order_a.end()).size(), 12u);
}

TEST(Schedule, RanksGetDisjointBalancedSharesAndTheSameNumberOfBatches) {
  std::vector<ScheduleRecording> recs;
  for (int i = 0; i < 11; ++i) recs.push_back({0, (200 + 137 * i) * kMs});
  for (int world : {2, 3, 4}) {
    std::set<int> seen;
    std::size_t batches = 0;
    std::vector<Timestamp> totals;
    for (int rank = 0; rank < world; ++rank) {
      auto o = spec_options(false);
      o.batch_size = 2;
      o.world_size = world;
      o.rank = rank;
      Schedule s(recs, o);
      if (rank == 0) batches = s.num_batches();
      EXPECT_EQ(s.num_batches(), batches) << "world " << world << " rank " << rank;
      EXPECT_EQ(s.batch_size(), 2);
      Timestamp total = 0;
      for (int r : s.recordings_of_rank()) {
        EXPECT_TRUE(seen.insert(r).second) << "recording " << r << " on two ranks";
        total += recs[static_cast<std::size_t>(r)].end;
      }
      totals.push_back(total);
      // Every item is readable or padding; nothing is out of range.
      for (std::size_t b = 0; b < s.num_batches(); ++b) (void)s.batch(b);
    }
    EXPECT_EQ(seen.size(), recs.size());
    auto [lo, hi] = std::minmax_element(totals.begin(), totals.end());
    EXPECT_LE(*hi - *lo, 1500 * kMs) << "shares unbalanced for world " << world;
  }
}

TEST(Schedule, RejectsBadOptions) {
  auto o = spec_options(false);
  o.delta_t = 0;
  EXPECT_THROW(Schedule(spec_recordings(), o), ConfigError);
  o = spec_options(false);
  o.rank = 2;
  o.world_size = 2;
  EXPECT_THROW(Schedule(spec_recordings(), o), ConfigError);
  o = spec_options(false);
  EXPECT_THROW(Schedule({{10, 5}}, o), ConfigError);
}

TEST(SeededPermutation, IsAPermutationAndStable) {
  auto p = seeded_permutation(100, 7);
  EXPECT_EQ(std::set<int>(p.begin(), p.end()).size(), 100u);
  EXPECT_EQ(p, seeded_permutation(100, 7));
  EXPECT_NE(p, seeded_permutation(100, 8));
}

}  // namespace
}  // namespace evloader
