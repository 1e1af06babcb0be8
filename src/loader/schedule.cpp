// SPDX-License-Identifier: Apache-2.0
#include "evloader/loader/schedule.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include "evloader/core/error.hpp"

namespace evloader {

namespace {

Timestamp floor_mod(Timestamp a, Timestamp b) {
  Timestamp r = a % b;
  return r < 0 ? r + b : r;
}

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The chunks of one rank's recordings, in order.
std::vector<ScheduleEntry> chunk_recordings(const std::vector<ScheduleRecording>& recordings,
                                            const std::vector<int>& members, const ScheduleOptions& o,
                                            Timestamp window) {
  std::vector<ScheduleEntry> entries;
  for (int r : members) {
    const auto& rec = recordings[static_cast<std::size_t>(r)];
    if (o.max_consecutive_batch <= 0) {
      entries.push_back({r, rec.begin});
      continue;
    }
    // As metavision_ml: chunk starts every max_consecutive_batch windows, up to the last whole window.
    const Timestamp last =
        rec.begin + round_duration(rec.end - rec.begin - window, window, 0, o.rounding_tolerance);
    const Timestamp step = window * o.max_consecutive_batch;
    for (Timestamp start = rec.begin; start <= last; start += step) entries.push_back({r, start});
  }
  return entries;
}

struct SlotTable {
  std::vector<std::vector<Timestamp>> cumulative;
  std::size_t batches = 0;
};

SlotTable build_slots(const std::vector<ScheduleRecording>& recordings,
                      const std::vector<ScheduleEntry>& entries, int slots, const ScheduleOptions& o,
                      Timestamp window) {
  SlotTable table;
  table.cumulative.resize(static_cast<std::size_t>(slots));
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    const Timestamp remaining = recordings[static_cast<std::size_t>(e.recording)].end - e.start_ts;
    const Timestamp scheduled = std::max<Timestamp>(
        0, round_duration(remaining, window, o.max_consecutive_batch, o.rounding_tolerance));
    auto& cum = table.cumulative[i % static_cast<std::size_t>(slots)];
    cum.push_back((cum.empty() ? 0 : cum.back()) + scheduled);
  }
  bool first = true;
  for (const auto& cum : table.cumulative) {
    const auto n = static_cast<std::size_t>((cum.empty() ? 0 : cum.back()) / window);
    // Ranks are padded to a common length anyway, so no rank drops the tail of its longer slots.
    const bool pad = o.padding || o.world_size > 1;
    table.batches = first ? n : (pad ? std::max(table.batches, n) : std::min(table.batches, n));
    first = false;
  }
  return table;
}

}  // namespace

Timestamp round_duration(Timestamp duration, Timestamp window, int max_batch, Timestamp tolerance) {
  if (window <= 0) throw ConfigError("round_duration: the window must be positive");
  const Timestamp excess = floor_mod(duration, window);
  Timestamp rounded = duration - excess;
  if (excess != 0 && window - excess <= tolerance) rounded += window;
  if (max_batch > 0) rounded = std::min(rounded, window * max_batch);
  return rounded;
}

std::vector<int> seeded_permutation(std::size_t n, std::uint64_t seed) {
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::uint64_t state = seed;
  for (std::size_t i = n; i > 1; --i) {
    const std::size_t j = static_cast<std::size_t>(splitmix64(state) % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

std::vector<std::vector<int>> shard_recordings(const std::vector<ScheduleRecording>& recordings,
                                               const std::vector<int>& order, int world_size) {
  std::vector<int> by_length = order;
  std::stable_sort(by_length.begin(), by_length.end(), [&](int a, int b) {
    const auto& ra = recordings[static_cast<std::size_t>(a)];
    const auto& rb = recordings[static_cast<std::size_t>(b)];
    return ra.end - ra.begin > rb.end - rb.begin;
  });
  std::vector<std::vector<int>> shards(static_cast<std::size_t>(world_size));
  std::vector<Timestamp> load(static_cast<std::size_t>(world_size), 0);
  for (int r : by_length) {
    const auto lightest = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    shards[lightest].push_back(r);
    const auto& rec = recordings[static_cast<std::size_t>(r)];
    load[lightest] += rec.end - rec.begin;
  }
  // Within a shard keep the order given (the seeded shuffle, or the user's order).
  std::vector<std::size_t> position(recordings.size());
  for (std::size_t i = 0; i < order.size(); ++i) position[static_cast<std::size_t>(order[i])] = i;
  for (auto& shard : shards)
    std::sort(shard.begin(), shard.end(), [&](int a, int b) {
      return position[static_cast<std::size_t>(a)] < position[static_cast<std::size_t>(b)];
    });
  return shards;
}

Schedule::Schedule(std::vector<ScheduleRecording> recordings, const ScheduleOptions& options)
    : recordings_(std::move(recordings)), options_(options) {
  const auto& o = options_;
  if (o.delta_t <= 0) throw ConfigError("delta_t must be positive, got " + std::to_string(o.delta_t));
  if (o.num_tbins <= 0) throw ConfigError("num_tbins must be positive, got " + std::to_string(o.num_tbins));
  if (o.batch_size <= 0)
    throw ConfigError("batch_size must be positive, got " + std::to_string(o.batch_size));
  if (o.max_consecutive_batch < 0) throw ConfigError("max_consecutive_batch must be >= 0");
  if (o.world_size <= 0 || o.rank < 0 || o.rank >= o.world_size)
    throw ConfigError("rank must be in [0, world_size), got rank " + std::to_string(o.rank) + " of " +
                      std::to_string(o.world_size));
  for (std::size_t i = 0; i < recordings_.size(); ++i)
    if (recordings_[i].end < recordings_[i].begin)
      throw ConfigError("recording " + std::to_string(i) + " ends before it begins");
  window_ = o.delta_t * o.num_tbins;

  std::vector<int> order(recordings_.size());
  std::iota(order.begin(), order.end(), 0);
  if (o.shuffle) order = seeded_permutation(recordings_.size(), o.seed);
  const auto shards = shard_recordings(recordings_, order, o.world_size);

  // Every rank computes every rank's length, so that all agree on the number of batches without talking.
  std::size_t longest = 0;
  for (int r = 0; r < o.world_size; ++r) {
    auto entries = chunk_recordings(recordings_, shards[static_cast<std::size_t>(r)], o, window_);
    if (o.shuffle) {
      const auto perm = seeded_permutation(
          entries.size(), o.seed * 0x9E3779B97F4A7C15ull + 1 + static_cast<std::uint64_t>(r));
      std::vector<ScheduleEntry> shuffled;
      shuffled.reserve(entries.size());
      for (int i : perm) shuffled.push_back(entries[static_cast<std::size_t>(i)]);
      entries = std::move(shuffled);
    }
    // A single process reduces the batch to the number of chunks (as metavision_ml); ranks keep the
    // requested size so that every rank's tensors have the same shape.
    int slots = o.batch_size;
    if (o.world_size == 1) slots = std::min<int>(slots, static_cast<int>(entries.size()));
    SlotTable table = slots > 0 ? build_slots(recordings_, entries, slots, o, window_) : SlotTable{};
    longest = std::max(longest, table.batches);
    if (r == o.rank) {
      rank_recordings_ = shards[static_cast<std::size_t>(r)];
      entries_ = std::move(entries);
      batch_size_ = slots;
      cumulative_ = std::move(table.cumulative);
      own_batches_ = table.batches;
    }
  }
  num_batches_ = o.world_size > 1 ? longest : own_batches_;
}

ScheduleItem Schedule::at(std::size_t batch, int slot) const {
  if (batch >= num_batches_ || slot < 0 || slot >= batch_size_)
    throw std::out_of_range("schedule item (" + std::to_string(batch) + ", " + std::to_string(slot) +
                            ") out of range");
  ScheduleItem item;
  item.duration = window_;
  const auto& cum = cumulative_[static_cast<std::size_t>(slot)];
  const Timestamp end_of_window = static_cast<Timestamp>(batch + 1) * window_;
  if (cum.empty() || end_of_window > cum.back()) {
    item.duration = 0;  // padding: as metavision_ml, keep_memory stays 1 and nothing is read
    return item;
  }
  const auto k =
      static_cast<std::size_t>(std::lower_bound(cum.begin(), cum.end(), end_of_window) - cum.begin());
  const std::size_t e = static_cast<std::size_t>(slot) + static_cast<std::size_t>(batch_size_) * k;
  const Timestamp elapsed = k ? cum[k - 1] : 0;
  const ScheduleEntry& entry = entries_[e];
  item.padding = false;
  item.entry = static_cast<int>(e);
  item.recording = entry.recording;
  item.start = entry.start_ts + (end_of_window - window_ - elapsed);
  item.keep_memory = item.start > entry.start_ts;
  return item;
}

std::vector<ScheduleItem> Schedule::batch(std::size_t b) const {
  std::vector<ScheduleItem> items;
  items.reserve(static_cast<std::size_t>(batch_size_));
  for (int s = 0; s < batch_size_; ++s) items.push_back(at(b, s));
  return items;
}

}  // namespace evloader
