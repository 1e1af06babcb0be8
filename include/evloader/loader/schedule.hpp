// SPDX-License-Identifier: Apache-2.0
// The chronological batch schedule of the SequentialDataLoader (metavision_ml's Scheduler, behaviour spec
// §3): recordings are cut into time windows of num_tbins * delta_t and laid end to end in `batch_size`
// parallel slots, so that slot s of batch b+1 continues where slot s of batch b stopped (truncated BPTT).
// Pure arithmetic: no I/O, no threads, deterministic for a seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "evloader/core/types.hpp"

namespace evloader {

/// The readable span of one recording, [begin, end) in its own clock (µs). For recordings whose clock
/// starts near 0 (Metavision's convention) begin is 0 and end is the duration.
struct ScheduleRecording {
  Timestamp begin = 0;
  Timestamp end = 0;
};

struct ScheduleOptions {
  Timestamp delta_t = 0;  ///< µs per time bin
  int num_tbins = 0;      ///< time bins per batch item
  int batch_size = 1;     ///< parallel slots (reduced to the number of chunks when there are fewer)
  /// 0: whole recordings; k > 0: recordings are cut into chunks of at most k consecutive batches
  /// (curriculum learning), each chunk starting with a memory reset.
  int max_consecutive_batch = 0;
  bool padding = false;  ///< keep going until the longest slot ends, padding the others
  bool shuffle = false;  ///< shuffle the order of the chunks with `seed`
  std::uint64_t seed = 0;
  int rank = 0;  ///< this process's share of the recordings ...
  /// ... out of world_size disjoint shares, balanced by duration. With world_size > 1 every rank pads to
  /// the longest rank's number of batches (so a torch.distributed job never hangs), and so never drops
  /// the tail of its longer slots either.
  int world_size = 1;
  Timestamp rounding_tolerance = 1000;  ///< a remainder within this of a whole window is rounded up
};

/// A chunk of a recording: reading starts at start_ts.
struct ScheduleEntry {
  int recording = -1;
  Timestamp start_ts = 0;
};

/// What one slot of one batch reads.
struct ScheduleItem {
  bool padding = true;      ///< nothing to read: zeros, no labels
  int entry = -1;           ///< index into Schedule::entries()
  int recording = -1;       ///< index into the recordings given to the constructor
  Timestamp start = 0;      ///< first µs of the window
  Timestamp duration = 0;   ///< num_tbins * delta_t
  bool keep_memory = true;  ///< false at the first window of a chunk: the network must reset its state
};

/// metavision_ml's `_rounding`: the duration rounded to a multiple of `window`, up when the remainder is
/// within `tolerance` of a whole window, else down; then capped at max_batch windows when max_batch > 0.
[[nodiscard]] Timestamp round_duration(Timestamp duration, Timestamp window, int max_batch = 0,
                                       Timestamp tolerance = 1000);

class Schedule {
 public:
  /// Throws ConfigError for non-positive delta_t/num_tbins/batch_size, a bad rank, or a recording with end <
  /// begin.
  Schedule(std::vector<ScheduleRecording> recordings, const ScheduleOptions& options);

  [[nodiscard]] std::size_t num_batches() const noexcept { return num_batches_; }
  /// Slots per batch (the requested batch size, or fewer when this rank has fewer chunks).
  [[nodiscard]] int batch_size() const noexcept { return batch_size_; }
  [[nodiscard]] Timestamp window() const noexcept { return window_; }
  [[nodiscard]] const ScheduleOptions& options() const noexcept { return options_; }

  /// Throws std::out_of_range past num_batches() or batch_size().
  [[nodiscard]] ScheduleItem at(std::size_t batch, int slot) const;
  [[nodiscard]] std::vector<ScheduleItem> batch(std::size_t batch) const;

  /// This rank's chunks, in slot order (slot s reads entries s, s + N, s + 2N, ...).
  [[nodiscard]] const std::vector<ScheduleEntry>& entries() const noexcept { return entries_; }
  /// The recordings assigned to this rank.
  [[nodiscard]] const std::vector<int>& recordings_of_rank() const noexcept { return rank_recordings_; }
  /// Batches a rank would have before equalisation (for tests and diagnostics).
  [[nodiscard]] std::size_t own_batches() const noexcept { return own_batches_; }

 private:
  std::vector<ScheduleRecording> recordings_;
  ScheduleOptions options_;
  Timestamp window_ = 0;
  int batch_size_ = 0;
  std::vector<int> rank_recordings_;
  std::vector<ScheduleEntry> entries_;
  std::vector<std::vector<Timestamp>> cumulative_;  // per slot: cumulative scheduled time
  std::size_t own_batches_ = 0;
  std::size_t num_batches_ = 0;
};

/// The disjoint share of recordings of each rank: longest first, each to the rank with the least total
/// duration so far (ties to the lowest rank). Deterministic.
[[nodiscard]] std::vector<std::vector<int>> shard_recordings(const std::vector<ScheduleRecording>& recordings,
                                                             const std::vector<int>& order, int world_size);

/// Deterministic Fisher-Yates shuffle of [0, n) driven by splitmix64(seed): the same on every platform.
[[nodiscard]] std::vector<int> seeded_permutation(std::size_t n, std::uint64_t seed);

}  // namespace evloader
