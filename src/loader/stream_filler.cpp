// SPDX-License-Identifier: Apache-2.0
// Slot streams of the streaming loader: recordings read tensor after tensor, kernels at the sensor's size,
// area downscaling to the batch's size.
#include "evloader/loader/stream_filler.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <optional>

#include "evloader/core/error.hpp"
#include "evloader/preprocess/area_resize.hpp"

namespace evloader {

namespace {

template <class T>
void widen(const T* in, std::size_t n, float* out) {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]);
}

class NativeStreamKernel final : public StreamKernel {
 public:
  NativeStreamKernel(std::shared_ptr<const Preprocessor> preprocessor, int channels, int height, int width)
      : preprocessor_(std::move(preprocessor)), channels_(channels), height_(height), width_(width) {
    // Refuse a bad channel count or dtype now, rather than at every tensor.
    std::vector<std::byte> probe(dtype_size(preprocessor_->dtype()));
    preprocessor_->check(TensorView(probe.data(), preprocessor_->dtype(), {1, channels, 1, 1}), 1, 0, false);
  }

  void run(std::span<const EventCD> events, Timestamp total, int bins, float* out) override {
    const std::array<std::int64_t, 4> dims{bins, channels_, height_, width_};
    if (preprocessor_->dtype() == DType::float32) {  // straight into the frames, already zeroed
      preprocessor_->run(events, TensorView(out, dims), total, 0, false);
      return;
    }
    const TensorView view(nullptr, preprocessor_->dtype(), dims);
    scratch_.resize(view.nbytes());
    const TensorView typed(scratch_.data(), view.dtype, dims);
    preprocessor_->run(events, typed, total, 0, true);
    const std::size_t n = typed.numel();
    switch (typed.dtype) {
      case DType::float32: break;
      case DType::float64: widen(typed.as<double>(), n, out); break;
      case DType::int8: widen(typed.as<std::int8_t>(), n, out); break;
      case DType::uint8: widen(typed.as<std::uint8_t>(), n, out); break;
      case DType::int16: widen(typed.as<std::int16_t>(), n, out); break;
      case DType::int32: widen(typed.as<std::int32_t>(), n, out); break;
      case DType::int64: widen(typed.as<std::int64_t>(), n, out); break;
    }
  }

 private:
  std::shared_ptr<const Preprocessor> preprocessor_;
  int channels_, height_, width_;
  std::vector<std::byte> scratch_;  // the kernel's dtype when not float32, reused
};

class EventStreamSource final : public StreamTensorSource {
 public:
  EventStreamSource(const std::filesystem::path& path, const ReaderOptions& options,
                    const StreamSlicing& slicing, const StreamPlan& plan, const StreamKernelFactory& kernel,
                    const BatchShape& shape)
      : reader_(EventReader::open(path, options)),
        slicing_(slicing),
        plan_(plan),
        cutter_(slicing, plan),
        shape_(shape) {
    sensor_h_ = plan.geometry.known() ? plan.geometry.height : shape.height;
    sensor_w_ = plan.geometry.known() ? plan.geometry.width : shape.width;
    if (sensor_h_ < shape.height || sensor_w_ < shape.width)
      throw ConfigError(path.string() + ": the sensor (" + std::to_string(sensor_w_) + "x" +
                        std::to_string(sensor_h_) + ") is smaller than the requested " +
                        std::to_string(shape.width) + "x" + std::to_string(shape.height) +
                        " (area interpolation only downscales)");
    if (sensor_h_ != shape.height || sensor_w_ != shape.width)
      resizer_.emplace(sensor_h_, sensor_w_, shape.height, shape.width);
    kernel_ = kernel(sensor_h_, sensor_w_);
    frame_ = static_cast<std::size_t>(shape.channels) * sensor_h_ * sensor_w_;
    frames_.assign(frame_ * static_cast<std::size_t>(shape.num_tbins), 0.0f);
  }

  BinSpan read(std::uint64_t index, float* out, std::size_t t_stride) override {
    std::fill(frames_.begin(), frames_.end(), 0.0f);
    const int bins = shape_.num_tbins;
    BinSpan span;
    if (slicing_.mode == SliceMode::delta_t) {
      const Timestamp window = slicing_.delta_t * bins;
      span.begin = plan_.begin + static_cast<Timestamp>(index) * window;
      span.end = span.begin + window;
      // Consecutive tensors follow each other: only the first (or a jump) seeks.
      if (reader_->current_time() != span.begin || index == 0) reader_->seek_time(span.begin);
      const Timestamp length = std::min(window, plan_.end - span.begin);
      if (length > 0) {
        reader_->load_delta_t(length, events_);
        relative_to(span.begin);
        kernel_->run(events_.view(), window, bins, frames_.data());
        events_read_ += events_.size();
      }
    } else {
      if (index == 0 || index != next_) skip_to(index);
      for (int j = 0; j < bins && cutter_.more(*reader_); ++j) {
        const BinSpan bin = cutter_.next(*reader_, events_);
        relative_to(bin.begin);
        kernel_->run(events_.view(), bin.end - bin.begin, 1,
                     frames_.data() + static_cast<std::size_t>(j) * frame_);
        events_read_ += events_.size();
        if (j == 0) span = bin;
        span.end = std::max(span.end, bin.end);
      }
    }
    for (int t = 0; t < bins; ++t) {
      const float* src = frames_.data() + static_cast<std::size_t>(t) * frame_;
      float* dst = out + static_cast<std::size_t>(t) * t_stride;
      if (resizer_)
        resizer_->resize(src, dst, static_cast<std::size_t>(shape_.channels));
      else
        std::copy_n(src, frame_, dst);
    }
    next_ = index + 1;
    return span;
  }

  [[nodiscard]] std::uint64_t events_read() const noexcept override { return events_read_; }

 private:
  void relative_to(Timestamp origin) {
    for (EventCD& e : events_) e.t -= origin;  // kernels take times relative to the span
  }

  // Count-cut bins depend on everything before them: restart and pass over the earlier bins.
  void skip_to(std::uint64_t index) {
    cutter_.rewind(*reader_);
    const std::uint64_t skip = index * static_cast<std::uint64_t>(shape_.num_tbins);
    for (std::uint64_t i = 0; i < skip && cutter_.more(*reader_); ++i) (void)cutter_.next(*reader_, events_);
  }

  std::unique_ptr<EventReader> reader_;
  StreamSlicing slicing_;
  StreamPlan plan_;
  BinCutter cutter_;
  BatchShape shape_;
  int sensor_h_ = 0, sensor_w_ = 0;
  std::optional<AreaResizer> resizer_;
  std::unique_ptr<StreamKernel> kernel_;
  std::size_t frame_ = 0;
  std::vector<float> frames_;  // [T, C, sensor_h, sensor_w], reused
  EventBuffer events_;         // reused
  std::uint64_t next_ = 0;
  std::uint64_t events_read_ = 0;
};

// Rethrows the exception in flight with `where` in its message, keeping its category.
[[noreturn]] void rethrow_naming(const std::string& name, const std::string& where) {
  const auto message = [&](const char* what) {
    std::string m = what;
    return m.find(name) == std::string::npos ? name + ": " + m + " (" + where + ")" : m + " (" + where + ")";
  };
  try {
    throw;
  } catch (const IoError& e) {
    throw IoError(message(e.what()));
  } catch (const FormatError& e) {
    throw FormatError(message(e.what()));
  } catch (const ConfigError& e) {
    throw ConfigError(message(e.what()));
  } catch (const std::exception& e) {
    throw Error(message(e.what()));
  }
}

std::string describe_current(const std::string& name, const std::string& where) {
  try {
    rethrow_naming(name, where);
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

std::unique_ptr<StreamKernel> make_native_stream_kernel(std::shared_ptr<const Preprocessor> preprocessor,
                                                        int channels, int height, int width) {
  return std::make_unique<NativeStreamKernel>(std::move(preprocessor), channels, height, width);
}

std::unique_ptr<StreamTensorSource> open_event_stream(const std::filesystem::path& path,
                                                      const ReaderOptions& reader_options,
                                                      const StreamSlicing& slicing, const StreamPlan& plan,
                                                      const StreamKernelFactory& kernel,
                                                      const BatchShape& shape) {
  return std::make_unique<EventStreamSource>(path, reader_options, slicing, plan, kernel, shape);
}

StreamFiller::StreamFiller(std::shared_ptr<const StreamSchedule> schedule, StreamSourceFactory open_source,
                           LabelFunction labels, OnStreamError on_error, std::vector<std::string> names)
    : schedule_(std::move(schedule)),
      open_source_(std::move(open_source)),
      labels_(std::move(labels)),
      on_error_(on_error),
      names_(std::move(names)),
      streams_(static_cast<std::size_t>(schedule_->batch_size())) {}

void StreamFiller::begin_epoch() {
  // Each epoch tries failed recordings again (and warns again); open sources restart at their tensor 0.
  for (auto& s : streams_) s.failed = false;
}

std::vector<std::string> StreamFiller::take_warnings() {
  std::lock_guard lock(warnings_mutex_);
  return std::exchange(warnings_, {});
}

void StreamFiller::fill(const ScheduleItem& /*placeholder*/, int slot, Batch& batch) {
  const BatchShape& shape = batch.shape();
  const std::size_t frame = shape.item_frame();
  const std::size_t t_stride = static_cast<std::size_t>(shape.batch_size) * frame;
  float* first = batch.data() + batch.offset(0, slot);
  const auto zero = [&] {
    for (int t = 0; t < shape.num_tbins; ++t)
      std::fill_n(first + static_cast<std::size_t>(t) * t_stride, frame, 0.0f);
  };
  const StreamItem item = schedule_->at(batch.index(), slot);
  ScheduleItem& out = batch.items[static_cast<std::size_t>(slot)];
  out = ScheduleItem{};
  out.keep_memory = false;  // padding resets the memory too (metavision's stream loader pads with 0)
  // Sources write every value of their tensors: only what they do not fill is zeroed.
  bool filled = false;
  if (!item.padding()) {
    Stream& stream = streams_[static_cast<std::size_t>(slot)];
    if (stream.recording != item.recording) {
      stream.source.reset();  // close the previous recording before opening the next
      stream.recording = item.recording;
      stream.failed = false;
    }
    if (!stream.failed) {
      try {
        if (!stream.source) {
          stream.source = open_source_(item.recording);
          opens_++;
        }
        const std::uint64_t before = stream.source->events_read();
        const BinSpan span = stream.source->read(item.index, first, t_stride);
        events_read_ += stream.source->events_read() - before;
        out.padding = false;
        out.entry = static_cast<int>(
            std::min<std::uint64_t>(item.index, static_cast<std::uint64_t>(std::numeric_limits<int>::max())));
        out.recording = item.recording;
        out.start = span.begin;
        out.duration = span.end - span.begin;
        out.keep_memory = item.keep_memory();
        filled = true;
      } catch (...) {
        zero();  // a half-written tensor must not leak into the batch
        filled = true;
        stream.source.reset();
        const std::string& name = names_.at(static_cast<std::size_t>(item.recording));
        const std::string where = "tensor " + std::to_string(item.index) + " of the recording";
        if (on_error_ == OnStreamError::raise) {
          stream.recording = -1;  // reopened from scratch next time
          rethrow_naming(name, where);
        }
        stream.failed = true;
        std::lock_guard lock(warnings_mutex_);
        warnings_.push_back(describe_current(name, where) + "; the rest of this recording is skipped");
      }
    }
  }
  if (!filled) zero();
  if (labels_) labels_(out, slot, batch);
}

}  // namespace evloader
