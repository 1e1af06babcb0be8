// SPDX-License-Identifier: Apache-2.0
#include "evloader/loader/slot_filler.hpp"

#include <algorithm>

namespace evloader {

SlotFiller::SlotFiller(int slots, TensorSourceFactory open_source, LabelFunction labels)
    : open_source_(std::move(open_source)),
      labels_(std::move(labels)),
      streams_(static_cast<std::size_t>(slots)) {}

void SlotFiller::begin_epoch() {
  // Streams stay open across epochs when the slot reads the same recording again; positions are
  // re-established by each read (sources seek when a window does not follow the previous one).
}

void SlotFiller::fill(const ScheduleItem& item, int slot, Batch& batch) {
  const BatchShape& shape = batch.shape();
  const std::size_t t_stride = static_cast<std::size_t>(shape.batch_size) * shape.item_frame();
  float* first = batch.data() + batch.offset(0, slot);
  if (item.padding) {  // sources write every value of their items; only padding needs zeros here
    for (int t = 0; t < shape.num_tbins; ++t) {
      float* frame = first + static_cast<std::size_t>(t) * t_stride;
      std::fill(frame, frame + shape.item_frame(), 0.0f);
    }
  } else {
    Stream& stream = streams_[static_cast<std::size_t>(slot)];
    try {
      if (stream.recording != item.recording || !stream.source) {
        stream.source.reset();  // close the previous recording before opening the next
        stream.recording = item.recording;
        stream.source = open_source_(item.recording);
        opens_++;
      }
      stream.source->read(item.start, item.duration, first, t_stride);
    } catch (...) {
      // A source that threw may have stopped anywhere in its recording: the next item reopens it rather than
      // trusting its position (the engine delivers this error at this batch and may be started again).
      stream.source.reset();
      stream.recording = -1;
      throw;
    }
  }
  if (labels_) labels_(item, slot, batch);
}

}  // namespace evloader
