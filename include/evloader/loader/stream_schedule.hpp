// SPDX-License-Identifier: Apache-2.0
// The streaming loader's plan (metavision_core_ml's StreamDataset, behaviour spec §8): how a recording is cut
// into tensors of num_tbins time bins (by time, by event count, or both), and which tensor of which recording
// each slot of each batch holds when recordings are chained per slot. Everything is computed before the first
// batch, so the batches do not depend on thread timing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "evloader/core/pod_buffer.hpp"
#include "evloader/core/types.hpp"
#include "evloader/io/event_reader.hpp"
#include "evloader/loader/schedule.hpp"

namespace evloader {

/// How a recording is cut into time bins. A tensor is num_tbins consecutive bins.
///  - delta_t: bins of delta_t µs (a tensor spans num_tbins * delta_t µs, empty where the sensor was idle);
///  - n_events: bins of n_events events (the last tensor of a recording may have fewer, then empty bins);
///  - mixed: a bin ends after n_events events or delta_t µs, whichever comes first (the reader's load_mixed).
enum class SliceMode { delta_t, n_events, mixed };

struct StreamSlicing {
  SliceMode mode = SliceMode::delta_t;
  Timestamp delta_t = 0;       ///< µs per bin (delta_t and mixed modes)
  std::uint64_t n_events = 0;  ///< events per bin (n_events and mixed modes)
  int num_tbins = 1;
  Timestamp max_duration = 0;  ///< > 0: only events with t < begin + max_duration are read

  /// Throws ConfigError naming the bad parameter.
  void validate() const;
};

/// [begin, end) of a time bin or a tensor, in the recording's clock (µs).
struct BinSpan {
  Timestamp begin = 0;
  Timestamp end = 0;
};

/// What a recording yields: where reading starts, where it stops, how many events and tensors.
struct StreamPlan {
  Timestamp begin = 0;  ///< reading starts here (delta_t mode: the first event's time floored to a
                        ///< multiple of num_tbins * delta_t; mixed: of delta_t; n_events: the first event)
  Timestamp end = 0;    ///< exclusive; the last event's time + 1, or begin + max_duration
  std::uint64_t events = 0;  ///< events read over all tensors (those with begin <= t < end)
  std::uint64_t bins = 0;    ///< time bins holding data (the last tensor may be completed by empty bins)
  std::uint64_t items = 0;   ///< tensors: ceil(bins / num_tbins)
  Geometry geometry{};       ///< the sensor size from the file (unknown: 0 x 0)
};

/// Cuts the events of one bin in n_events and mixed modes; the planning pass and the reading pass share it,
/// so that both see exactly the same bins.
class BinCutter {
 public:
  BinCutter(const StreamSlicing& slicing, const StreamPlan& plan);
  /// Positions `reader` at the first bin.
  void rewind(EventReader& reader);
  /// True while bins are left.
  [[nodiscard]] bool more(EventReader& reader);
  /// Reads the next bin into `events` (times untouched) and returns its span: [first t, last t + 1) in
  /// n_events mode; [cursor, cursor + delta_t) in mixed mode, or [cursor, last t + 1) when the count ended
  /// it.
  BinSpan next(EventReader& reader, EventBuffer& events);
  [[nodiscard]] std::uint64_t events_read() const noexcept { return read_; }

 private:
  StreamSlicing slicing_;
  StreamPlan plan_;
  std::uint64_t read_ = 0;  // events taken so far
};

/// Plans the recording `reader` reads. delta_t and n_events modes use the time index only (event count, first
/// and last timestamps, one seek when max_duration cuts the recording); mixed mode reads the recording once,
/// as its bins depend on every timestamp. Leaves the reader anywhere.
[[nodiscard]] StreamPlan plan_stream(EventReader& reader, const StreamSlicing& slicing);

/// The plan of each file, or the error that opening or reading it raised (an empty message means success).
struct PlanResult {
  StreamPlan plan;
  std::string error;       ///< "" when planned
  std::string error_kind;  ///< "io", "format", "config" or "other" when failed
};

/// Plans several recordings on up to `threads` threads (results in the order of `paths`). Never throws for
/// a bad file: its PlanResult carries the message, which names the file.
[[nodiscard]] std::vector<PlanResult> plan_streams(const std::vector<std::filesystem::path>& paths,
                                                   const ReaderOptions& reader_options,
                                                   const StreamSlicing& slicing, int threads);

/// What happens to a slot once every recording has been started.
enum class StreamPadding {
  zeros,  ///< the slot is padded (zeros, keep_memory 0) until the longest slot ends
  data,   ///< the slot restarts recordings from the start of the list; the epoch ends when every slot has
          ///< finished the recordings it started while some were left (metavision_core_ml's 'data' mode)
};

/// One slot of one batch: tensor `index` of recording `recording`, or padding (recording -1).
struct StreamItem {
  int recording = -1;
  std::uint64_t index = 0;
  [[nodiscard]] bool padding() const noexcept { return recording < 0; }
  /// false at a recording's first tensor and for padding: the network resets its memory.
  [[nodiscard]] bool keep_memory() const noexcept { return recording >= 0 && index > 0; }
};

/// Recordings chained per slot, as metavision_core_ml's StreamDataset does within one worker: slot s starts
/// with recording s; whenever a slot runs out, it takes the next recording not yet started (slots served
/// in order, batch by batch). Recordings with no tensor are passed over. The epoch ends before the first
/// batch in which no slot has a fresh recording left, so it never ends with a batch of padding only.
class StreamSchedule {
 public:
  /// `items[r]`: tensors of recording r; `order`: the recordings in the order slots take them (default:
  /// 0..n-1). Throws ConfigError for batch_size < 1 or an order naming an unknown recording.
  StreamSchedule(std::vector<std::uint64_t> items, int batch_size, StreamPadding padding,
                 std::vector<int> order = {});

  [[nodiscard]] std::size_t num_batches() const noexcept { return num_batches_; }
  [[nodiscard]] int batch_size() const noexcept { return batch_size_; }
  [[nodiscard]] StreamPadding padding() const noexcept { return padding_; }
  /// Throws std::out_of_range past num_batches() or batch_size().
  [[nodiscard]] StreamItem at(std::size_t batch, int slot) const;

  /// A Schedule with the same number of batches and slots, for the Engine, whose items the StreamFiller
  /// replaces with the real ones.
  [[nodiscard]] std::shared_ptr<const Schedule> engine_schedule() const;

  /// A run of consecutive tensors of one recording in one slot, from batch `first_batch`.
  struct Segment {
    std::size_t first_batch = 0;
    int recording = -1;
    std::uint64_t first_index = 0;
    std::uint64_t count = 0;
  };
  /// The runs of slot `slot`, in batch order (padding between runs is implicit).
  [[nodiscard]] const std::vector<Segment>& segments(int slot) const {
    return segments_.at(static_cast<std::size_t>(slot));
  }

 private:
  int batch_size_ = 0;
  StreamPadding padding_;
  std::size_t num_batches_ = 0;
  std::vector<std::vector<Segment>> segments_;  // per slot
};

}  // namespace evloader
