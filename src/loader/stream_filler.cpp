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
#ifdef EVLOADER_WITH_HDF5
#include "evloader/preprocess/tensor_file.hpp"
#endif

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
    const std::string& name = preprocessor_->name();
    separable_ = name == "histo" || name == "diff" || name == "histo_quantized" || name == "diff_quantized";
    // Refuse a bad channel count or dtype now, rather than at every tensor.
    std::vector<std::byte> probe(dtype_size(preprocessor_->dtype()));
    preprocessor_->check(TensorView(probe.data(), preprocessor_->dtype(), {1, channels, 1, 1}), 1, 0, false);
  }

  [[nodiscard]] bool separable_bins() const noexcept override { return separable_; }
  [[nodiscard]] bool pixel_local() const noexcept override { return true; }

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
  bool separable_ = false;
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
    if (resizer_ && resizer_->integer_factors()) {
      sparse_ = kernel_->pixel_local();
      fy_ = sensor_h_ / shape.height;
      fx_ = sensor_w_ / shape.width;
      for (int sy = 0; sy < fy_; ++sy)
        for (int sx = 0; sx < fx_; ++sx) block_.push_back(static_cast<std::size_t>(sy) * sensor_w_ + sx);
      for (int x = 0; x < sensor_w_; ++x) block_x_.push_back(x / fx_);  // no division per event
      for (int y = 0; y < sensor_h_; ++y) block_y_.push_back(y / fy_);
      stamps_.assign(static_cast<std::size_t>(shape.height) * shape.width, 0);
    }
    frame_ = static_cast<std::size_t>(shape.channels) * sensor_h_ * sensor_w_;
    // A delta_t window is made in one kernel call unless its bins are separable; otherwise one bin at a time.
    const bool whole_window = slicing.mode == SliceMode::delta_t && !kernel_->separable_bins();
    const std::size_t scratch_bins = whole_window ? static_cast<std::size_t>(shape.num_tbins) : 1;
    frames_.assign(frame_ * scratch_bins, 0.0f);
  }

  BinSpan read(std::uint64_t index, float* out, std::size_t t_stride) override {
    // The scratch frames are kept zeroed between calls (each is cleared right after use, while it is still in
    // cache); only an exception can leave them dirty.
    if (dirty_) std::fill(frames_.begin(), frames_.end(), 0.0f);
    dirty_ = true;
    const int bins = shape_.num_tbins;
    const std::size_t out_frame = shape_.item_frame();
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
        events_read_ += events_.size();
      } else {
        events_.clear();
      }
      relative_to(span.begin);
      if (kernel_->separable_bins()) {
        // Bin by bin, each straight into the batch (or through a one-bin scratch kept in cache).
        const std::span<const EventCD> all = events_.view();
        std::size_t first = 0;
        for (int t = 0; t < bins; ++t) {
          const std::size_t last = bin_end(all, first, t, bins);
          const std::span<const EventCD> part = all.subspan(first, last - first);
          for (EventCD& e : std::span<EventCD>(events_.data() + first, last - first))
            e.t -= t * slicing_.delta_t;
          run_bin(part, slicing_.delta_t, out + static_cast<std::size_t>(t) * t_stride);
          first = last;
        }
      } else {
        // One call for all bins: the kernel's bin rule (a running bin over the window) is kept exactly.
        kernel_->run(events_.view(), window, bins, frames_.data());
        for (int t = 0; t < bins; ++t)
          emit(frames_.data() + static_cast<std::size_t>(t) * frame_,
               out + static_cast<std::size_t>(t) * t_stride);
      }
    } else {
      if (index == 0 || index != next_) skip_to(index);
      for (int j = 0; j < bins; ++j) {
        float* dst = out + static_cast<std::size_t>(j) * t_stride;
        if (!cutter_.more(*reader_)) {  // the recording ended inside this tensor: empty bins
          std::fill_n(dst, out_frame, 0.0f);
          continue;
        }
        const BinSpan bin = cutter_.next(*reader_, events_);
        relative_to(bin.begin);
        run_bin(events_.view(), bin.end - bin.begin, dst);
        events_read_ += events_.size();
        if (j == 0) span = bin;
        span.end = std::max(span.end, bin.end);
      }
    }
    dirty_ = false;
    next_ = index + 1;
    return span;
  }

  [[nodiscard]] std::uint64_t events_read() const noexcept override { return events_read_; }

 private:
  // One bin into its batch frame: straight in at the sensor size, else through the one-bin scratch, which
  // stays in cache from the kernel to the resize to its clearing.
  void run_bin(std::span<const EventCD> events, Timestamp total, float* dst) {
    if (resizer_) {
      kernel_->run(events, total, 1, frames_.data());
      // Few events: only the blocks they touched can be non-zero (a sparse resize, then a sparse clear).
      const std::size_t plane = static_cast<std::size_t>(sensor_h_) * sensor_w_;
      // Measured crossover (2x2 blocks, VGA): sparse wins below about one event per 60 pixels.
      if (sparse_ && events.size() * (block_.size() + 8) * 4 < plane)
        emit_sparse(events, dst);
      else
        emit(frames_.data(), dst);
    } else {
      std::fill_n(dst, shape_.item_frame(), 0.0f);
      kernel_->run(events, total, 1, dst);
    }
  }

  // End of the events of bin t (from `first`), by the kernels' running-bin rule: the bin moves to t / delta_t
  // at the first event past its end and never back, so each bin is a contiguous run of the window's events.
  [[nodiscard]] std::size_t bin_end(std::span<const EventCD> events, std::size_t first, int t,
                                    int bins) const {
    if (t == bins - 1) return events.size();
    const Timestamp edge = static_cast<Timestamp>(t + 1) * slicing_.delta_t;
    std::size_t i = first;
    while (i < events.size() && events[i].t < edge) ++i;
    return i;
  }

  // The area mean of block (by, bx) of one plane, with AreaResizer's arithmetic for integer factors
  // (OpenCV's): 2x2 as two pair sums; otherwise the block in row-major order, four samples at a time, times 1
  // / area.
  [[nodiscard]] float block_mean(const float* plane, int by, int bx) const {
    const float* s =
        plane + static_cast<std::size_t>(by) * fy_ * sensor_w_ + static_cast<std::size_t>(bx) * fx_;
    if (fx_ == 2 && fy_ == 2) return ((s[0] + s[1]) + (s[sensor_w_] + s[sensor_w_ + 1])) * 0.25f;
    const std::size_t* o = block_.data();
    const std::size_t area = block_.size();
    float sum = 0.f;
    std::size_t k = 0;
    for (; k + 4 <= area; k += 4) sum += s[o[k]] + s[o[k + 1]] + s[o[k + 2]] + s[o[k + 3]];
    for (; k < area; ++k) sum += s[o[k]];
    return sum * (1.f / static_cast<float>(area));
  }

  // The resize of a frame whose only non-zero pixels are at the events' (x, y): output blocks holding no
  // event are zero, the others are computed once; then the scratch is cleared at those pixels only. Equal to
  // emit() for pixel-local kernels, at a cost in events, not pixels.
  void emit_sparse(std::span<const EventCD> events, float* dst) {
    const std::size_t in_plane = static_cast<std::size_t>(sensor_h_) * sensor_w_;
    const std::size_t out_plane = static_cast<std::size_t>(shape_.height) * shape_.width;
    const int channels = shape_.channels;
    std::fill_n(dst, out_plane * static_cast<std::size_t>(channels), 0.0f);
    if (++stamp_ == 0) {  // a block is computed once per call: stamped with the call's number
      std::fill(stamps_.begin(), stamps_.end(), 0u);
      stamp_ = 1;
    }
    for (const EventCD& e : events) {
      if (e.x >= sensor_w_ || e.y >= sensor_h_) continue;  // the kernels drop them too
      const int bx = block_x_[e.x], by = block_y_[e.y];
      const std::size_t at = static_cast<std::size_t>(by) * shape_.width + bx;
      if (stamps_[at] == stamp_) continue;
      stamps_[at] = stamp_;
      for (int c = 0; c < channels; ++c)
        dst[static_cast<std::size_t>(c) * out_plane + at] = block_mean(frames_.data() + c * in_plane, by, bx);
    }
    for (const EventCD& e : events) {
      if (e.x >= sensor_w_ || e.y >= sensor_h_) continue;
      const std::size_t at = static_cast<std::size_t>(e.y) * sensor_w_ + e.x;
      for (int c = 0; c < channels; ++c) frames_[static_cast<std::size_t>(c) * in_plane + at] = 0.0f;
    }
  }

  // Writes one scratch frame to the batch (resized or copied), then clears it for the next use.
  void emit(float* frame, float* dst) {
    if (!block_.empty()) {
      emit_blocks(frame, dst);
      return;
    }
    if (resizer_)
      resizer_->resize(frame, dst, static_cast<std::size_t>(shape_.channels));
    else
      std::copy_n(frame, frame_, dst);
    std::fill_n(frame, frame_, 0.0f);
  }

  // Integer factors: AreaResizer's block means (the same additions), each band of source rows cleared right
  // after it is read, while it is still in L1, rather than in a second pass over the frame.
  void emit_blocks(float* frame, float* dst) {
    const std::size_t sw = static_cast<std::size_t>(sensor_w_);
    const std::size_t band = sw * static_cast<std::size_t>(fy_);
    const int rows = shape_.height * shape_.channels;  // planes are stacked: output row r reads band r
    for (int r = 0; r < rows; ++r) {
      float* src = frame + static_cast<std::size_t>(r) * band;
      float* out = dst + static_cast<std::size_t>(r) * shape_.width;
      if (fx_ == 2 && fy_ == 2) {
        const float* r0 = src;
        const float* r1 = src + sw;
        for (int dx = 0; dx < shape_.width; ++dx)
          out[dx] = ((r0[2 * dx] + r0[2 * dx + 1]) + (r1[2 * dx] + r1[2 * dx + 1])) * 0.25f;
      } else {
        for (int dx = 0; dx < shape_.width; ++dx) out[dx] = block_mean(src, 0, dx);
      }
      std::fill_n(src, band, 0.0f);
    }
  }

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
  // Integer area factors (block_ empty otherwise): the offsets of a block's samples in row-major order.
  int fy_ = 0, fx_ = 0;
  std::vector<std::size_t> block_;
  // Pixel-local kernel: bins with few events are resized block by block (sensor column / row -> output
  // column / row; per output pixel, the sparse call that computed it last).
  bool sparse_ = false;
  std::vector<int> block_x_, block_y_;
  std::vector<std::uint32_t> stamps_;
  std::uint32_t stamp_ = 0;
  std::unique_ptr<StreamKernel> kernel_;
  std::size_t frame_ = 0;
  std::vector<float> frames_;  // [T or 1, C, sensor_h, sensor_w], zeroed between reads
  EventBuffer events_;         // reused
  std::uint64_t next_ = 0;
  std::uint64_t events_read_ = 0;
  bool dirty_ = false;  // frames_ may hold values (an exception interrupted a read)
};

#ifdef EVLOADER_WITH_HDF5
class TensorStreamSource final : public StreamTensorSource {
 public:
  TensorStreamSource(const std::filesystem::path& path, const StreamSlicing& slicing, const StreamPlan& plan,
                     const BatchShape& shape)
      : reader_(path), slicing_(slicing), plan_(plan), shape_(shape) {}

  BinSpan read(std::uint64_t index, float* out, std::size_t t_stride) override {
    const int bins = shape_.num_tbins;
    const auto first = static_cast<std::int64_t>(index) * bins;
    const auto frames = static_cast<std::int64_t>(plan_.bins);
    const std::size_t frame = shape_.item_frame();
    for (int t = 0; t < bins; ++t) {
      float* dst = out + static_cast<std::size_t>(t) * t_stride;
      if (first + t < frames)
        reader_.read_frames(first + t, 1, shape_.height, shape_.width, {dst, frame});
      else
        std::fill_n(dst, frame, 0.0f);  // past the end (or max_duration): an incomplete last tensor
    }
    BinSpan span;
    if (slicing_.mode == SliceMode::delta_t) {
      const Timestamp window = slicing_.delta_t * bins;
      span.begin = plan_.begin + static_cast<Timestamp>(index) * window;
      span.end = span.begin + window;
    } else {
      const auto& last = reader_.last_timestamps();
      const auto end = std::min<std::int64_t>(first + bins, frames);
      span.begin = first > 0 ? last[static_cast<std::size_t>(first - 1)] : plan_.begin;
      span.end = std::max(span.begin, last[static_cast<std::size_t>(end - 1)]) + 1;
    }
    return span;
  }

  [[nodiscard]] std::uint64_t events_read() const noexcept override { return 0; }

 private:
  TensorFileReader reader_;
  StreamSlicing slicing_;
  StreamPlan plan_;
  BatchShape shape_;
};
#endif

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

StreamPlan plan_tensor_stream(const std::filesystem::path& path, const StreamSlicing& slicing,
                              const TensorStreamRequest& request) {
  slicing.validate();
#ifdef EVLOADER_WITH_HDF5
  if (slicing.mode == SliceMode::mixed)
    throw ConfigError(path.string() + ": a precomputed tensor file cannot be streamed in mixed mode");
  TensorFileReader reader(path);
  TensorRequest r;
  r.events_to_tensor = request.preprocess;
  r.mode = slicing.mode == SliceMode::delta_t ? TensorMode::delta_t : TensorMode::n_events;
  if (slicing.mode == SliceMode::delta_t)
    r.delta_t = static_cast<std::uint32_t>(slicing.delta_t);
  else
    r.n_events = static_cast<std::int64_t>(slicing.n_events);
  r.channels = request.channels;
  r.height = request.height;
  r.width = request.width;
  reader.check(r);
  const TensorFileInfo& info = reader.info();
  StreamPlan plan;
  plan.begin = info.start_ts.value_or(0);
  std::int64_t frames = reader.num_frames();
  if (slicing.mode == SliceMode::delta_t) {
    if (slicing.max_duration > 0)
      frames = std::min<std::int64_t>(frames, (slicing.max_duration + slicing.delta_t - 1) / slicing.delta_t);
    plan.end = plan.begin + frames * slicing.delta_t;
  } else {
    plan.end = frames > 0 ? reader.last_timestamps()[static_cast<std::size_t>(frames - 1)] + 1 : plan.begin;
  }
  plan.bins = static_cast<std::uint64_t>(frames);
  plan.items = (plan.bins + static_cast<std::uint64_t>(slicing.num_tbins) - 1) /
               static_cast<std::uint64_t>(slicing.num_tbins);
  plan.geometry = {info.width, info.height};
  return plan;
#else
  (void)request;
  throw ConfigError(path.string() +
                    ": precomputed tensor files need evloader built with EVLOADER_WITH_HDF5=ON");
#endif
}

std::unique_ptr<StreamTensorSource> open_tensor_stream(const std::filesystem::path& path,
                                                       const StreamSlicing& slicing, const StreamPlan& plan,
                                                       const BatchShape& shape) {
#ifdef EVLOADER_WITH_HDF5
  return std::make_unique<TensorStreamSource>(path, slicing, plan, shape);
#else
  (void)slicing;
  (void)plan;
  (void)shape;
  throw ConfigError(path.string() +
                    ": precomputed tensor files need evloader built with EVLOADER_WITH_HDF5=ON");
#endif
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
