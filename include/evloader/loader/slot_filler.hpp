// SPDX-License-Identifier: Apache-2.0
// The ItemFiller of the SequentialDataLoader: each slot keeps the recording it reads open (one source per
// slot, reopened only when the slot moves to another recording), writes the item's T frames into the batch,
// then asks the label function for the item's labels.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "evloader/loader/engine.hpp"

namespace evloader {

/// Produces the frames of one recording for consecutive windows. Used by one thread at a time.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  /// Write the T frames of the window [start, start + duration) at out + t * t_stride (t = 0..T-1), each
  /// C*H*W float32 values. Every value must be written (the batch buffer is reused: it holds the data of
  /// an earlier batch), zeros included.
  virtual void read(Timestamp start, Timestamp duration, float* out, std::size_t t_stride) = 0;
};

/// Opens the source of recording `index` (called from worker threads; must be thread-safe).
using TensorSourceFactory = std::function<std::unique_ptr<TensorSource>(int recording)>;

/// Fills labels and frame_is_labeled of one slot (padding items included). Called after the frames are
/// written, from worker threads.
using LabelFunction = std::function<void(const ScheduleItem& item, int slot, Batch& batch)>;

class SlotFiller : public ItemFiller {
 public:
  SlotFiller(int slots, TensorSourceFactory open_source, LabelFunction labels);
  void begin_epoch() override;
  void fill(const ScheduleItem& item, int slot, Batch& batch) override;

  /// Recordings opened so far (a recording is opened once per slot stream, not once per batch).
  [[nodiscard]] std::size_t opens() const noexcept { return opens_.load(); }

 private:
  struct Stream {
    int recording = -1;
    std::unique_ptr<TensorSource> source;
  };
  TensorSourceFactory open_source_;
  LabelFunction labels_;
  std::vector<Stream> streams_;
  std::atomic<std::size_t> opens_{0};
};

}  // namespace evloader
