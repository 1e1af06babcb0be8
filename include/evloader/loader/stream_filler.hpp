// SPDX-License-Identifier: Apache-2.0
// The ItemFiller of the streaming loader (CDProcessorDataLoader): each slot streams its recordings in order
// through a preprocessing kernel at the sensor's size, area-downscaled to the batch's size when smaller.
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "evloader/loader/engine.hpp"
#include "evloader/loader/slot_filler.hpp"
#include "evloader/loader/stream_schedule.hpp"
#include "evloader/preprocess/preprocessor.hpp"

namespace evloader {

/// Turns the events of a span into time bins. Used by one thread at a time (one per stream).
class StreamKernel {
 public:
  virtual ~StreamKernel() = default;
  /// Accumulates `events` (times relative to the span start) into `out`, `bins` contiguous float32 frames of
  /// channels x height x width, zeroed before the call; the span of `total` µs is split into `bins` bins.
  virtual void run(std::span<const EventCD> events, Timestamp total, int bins, float* out) = 0;
  /// True when a bin's values depend only on the events the kernel's bin rule puts in it, not on their times
  /// (histo, diff and their quantized forms): a delta_t window can then be made one bin at a time.
  [[nodiscard]] virtual bool separable_bins() const noexcept { return false; }
  /// True when the kernel writes only at the pixels (x, y) of its events, in any channel (every registry
  /// kernel at the sensor size): a downscaled frame can then be made from the blocks its events touch.
  [[nodiscard]] virtual bool pixel_local() const noexcept { return false; }
};

/// A registry preprocessing (C++ kernel) producing frames of channels x height x width. Runs in the
/// preprocessor's dtype and widens to float32. Throws ConfigError when the kernel refuses that output.
[[nodiscard]] std::unique_ptr<StreamKernel> make_native_stream_kernel(
    std::shared_ptr<const Preprocessor> preprocessor, int channels, int height, int width);

/// Makes the kernel of one stream for a sensor of height x width.
using StreamKernelFactory = std::function<std::unique_ptr<StreamKernel>(int height, int width)>;

/// Reads the tensors of one recording, in order. Used by one thread at a time.
class StreamTensorSource {
 public:
  virtual ~StreamTensorSource() = default;
  /// Writes tensor `index` (num_tbins frames of C x H x W at out + t * t_stride, zeroed before the call) and
  /// returns the time it covers. Reading tensor 0 restarts the recording; any other index not following the
  /// previous one seeks (delta_t mode) or re-reads from the start (the other modes).
  virtual BinSpan read(std::uint64_t index, float* out, std::size_t t_stride) = 0;
  /// Events read so far by this source.
  [[nodiscard]] virtual std::uint64_t events_read() const noexcept = 0;
};

/// An event recording (RAW, DAT, HDF5, AEDAT4) cut by `slicing` as `plan` says; its sensor size is the plan's
/// geometry, or the batch's H x W when the file does not tell. Frames are made at the sensor size and area-
/// downscaled (OpenCV's INTER_AREA arithmetic) to the batch's H x W when different. Throws (naming the file)
/// when the file cannot be opened or the sensor is smaller than H x W.
[[nodiscard]] std::unique_ptr<StreamTensorSource> open_event_stream(
    const std::filesystem::path& path, const ReaderOptions& reader_options, const StreamSlicing& slicing,
    const StreamPlan& plan, const StreamKernelFactory& kernel, const BatchShape& shape);

/// What a precomputed tensor file (TensorFileReader) must match to be streamed: its preprocessing name, its
/// mode (delta_t or n_events, as the slicing's; mixed is refused), delta_t or n_events, channel count, and an
/// output size that is its sensor size divided by a power of two, at most its stored size.
struct TensorStreamRequest {
  std::string preprocess;
  int channels = 0;
  int height = 0;
  int width = 0;
};

/// Plans a precomputed tensor file: tensors of num_tbins consecutive frames, the last one completed with
/// zero frames (metavision's HDF5Iterator drops it). delta_t mode: begin = the file's start_ts (0 when
/// absent), frames cut at max_duration. `events` is 0 (a tensor file does not keep them); geometry is the
/// stored size. Throws ConfigError (naming the file) when it does not match, FormatError / IoError when it
/// cannot be read, ConfigError when evloader was built without HDF5.
[[nodiscard]] StreamPlan plan_tensor_stream(const std::filesystem::path& path, const StreamSlicing& slicing,
                                            const TensorStreamRequest& request);

/// Streams a tensor file planned by plan_tensor_stream: frames area-downscaled to the batch's size when
/// smaller, /255 when stored as uint8. Spans: delta_t mode, [begin + k T delta_t, + T delta_t); n_events
/// mode, from the last event of the frame before (begin for the first) to the last event of its last frame
/// + 1.
[[nodiscard]] std::unique_ptr<StreamTensorSource> open_tensor_stream(const std::filesystem::path& path,
                                                                     const StreamSlicing& slicing,
                                                                     const StreamPlan& plan,
                                                                     const BatchShape& shape);

/// Opens the source of recording `r` (called from worker threads; must be thread-safe).
using StreamSourceFactory = std::function<std::unique_ptr<StreamTensorSource>(int recording)>;

/// What a failing recording does to the epoch.
enum class OnStreamError {
  raise,  ///< the batch holding the failing tensor raises (the message names the recording and the tensor)
  skip,   ///< the rest of the recording becomes padding in its slot, a warning is recorded, others go on
};

/// Fills the slots of batches from a StreamSchedule. For each slot it writes batch.items[slot] with what was
/// read: padding, entry = tensor index, recording, start and duration of the tensor, keep_memory.
class StreamFiller : public ItemFiller {
 public:
  /// `names[r]` names recording r in error messages.
  StreamFiller(std::shared_ptr<const StreamSchedule> schedule, StreamSourceFactory open_source,
               LabelFunction labels, OnStreamError on_error, std::vector<std::string> names);
  void begin_epoch() override;
  void fill(const ScheduleItem& placeholder, int slot, Batch& batch) override;

  /// Warnings of skipped recordings since the last call (OnStreamError::skip).
  [[nodiscard]] std::vector<std::string> take_warnings();
  /// Recordings opened so far.
  [[nodiscard]] std::size_t opens() const noexcept { return opens_.load(); }
  /// Events read so far, over all slots and epochs.
  [[nodiscard]] std::uint64_t events_read() const noexcept { return events_read_.load(); }

 private:
  struct Stream {
    int recording = -1;
    bool failed = false;  // skip mode: the rest of this recording is padding
    std::unique_ptr<StreamTensorSource> source;
  };
  std::shared_ptr<const StreamSchedule> schedule_;
  StreamSourceFactory open_source_;
  LabelFunction labels_;
  OnStreamError on_error_;
  std::vector<std::string> names_;
  std::vector<Stream> streams_;
  std::atomic<std::size_t> opens_{0};
  std::atomic<std::uint64_t> events_read_{0};
  mutable std::mutex warnings_mutex_;
  std::vector<std::string> warnings_;
};

}  // namespace evloader
