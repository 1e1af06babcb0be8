// SPDX-License-Identifier: Apache-2.0
#include "evloader/loader/sources.hpp"

#include <algorithm>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/core/pod_buffer.hpp"
#ifdef EVLOADER_WITH_HDF5
#include "evloader/preprocess/tensor_file.hpp"
#endif

namespace evloader {

namespace {

template <class T>
void widen_frames(const T* in, std::size_t frame, int bins, float* out, std::size_t t_stride) {
  for (int t = 0; t < bins; ++t) {
    const T* src = in + static_cast<std::size_t>(t) * frame;
    float* dst = out + static_cast<std::size_t>(t) * t_stride;
    for (std::size_t i = 0; i < frame; ++i) dst[i] = static_cast<float>(src[i]);
  }
}

class EventSource final : public TensorSource {
 public:
  EventSource(const std::filesystem::path& path, const ReaderOptions& options,
              std::shared_ptr<const Preprocessor> preprocessor, int ds, const BatchShape& shape)
      : reader_(EventReader::open(path, options)),
        preprocessor_(std::move(preprocessor)),
        ds_(ds),
        shape_(shape) {
    const std::array<std::int64_t, 4> dims{shape.num_tbins, shape.channels, shape.height, shape.width};
    scratch_.resize(TensorView(nullptr, preprocessor_->dtype(), dims).nbytes());
    // Fail at open, naming the problem, rather than at every batch.
    preprocessor_->check(TensorView(scratch_.data(), preprocessor_->dtype(), dims), 1, ds_, false);
  }

  void read(Timestamp start, Timestamp duration, float* out, std::size_t t_stride) override {
    if (reader_->current_time() != start) reader_->seek_time(start);  // consecutive windows: no seek
    reader_->load_delta_t(duration, events_);
    for (EventCD& e : events_) e.t -= start;  // kernels take times relative to the window
    const TensorView view(scratch_.data(), preprocessor_->dtype(),
                          {shape_.num_tbins, shape_.channels, shape_.height, shape_.width});
    preprocessor_->run(events_.view(), view, duration, ds_, true);
    const std::size_t frame = shape_.item_frame();
    switch (view.dtype) {
      case DType::float32: {
        for (int t = 0; t < shape_.num_tbins; ++t)
          std::copy_n(view.as<float>() + static_cast<std::size_t>(t) * frame, frame,
                      out + static_cast<std::size_t>(t) * t_stride);
        break;
      }
      case DType::float64: widen_frames(view.as<double>(), frame, shape_.num_tbins, out, t_stride); break;
      case DType::int8: widen_frames(view.as<std::int8_t>(), frame, shape_.num_tbins, out, t_stride); break;
      case DType::uint8: widen_frames(view.as<std::uint8_t>(), frame, shape_.num_tbins, out, t_stride); break;
      case DType::int16: widen_frames(view.as<std::int16_t>(), frame, shape_.num_tbins, out, t_stride); break;
      case DType::int32: widen_frames(view.as<std::int32_t>(), frame, shape_.num_tbins, out, t_stride); break;
      case DType::int64: widen_frames(view.as<std::int64_t>(), frame, shape_.num_tbins, out, t_stride); break;
    }
  }

 private:
  std::unique_ptr<EventReader> reader_;
  std::shared_ptr<const Preprocessor> preprocessor_;
  int ds_;
  BatchShape shape_;
  EventBuffer events_;              // reused for every window
  std::vector<std::byte> scratch_;  // [T, C, H, W] in the kernel's dtype, reused
};

#ifdef EVLOADER_WITH_HDF5
class TensorFileSource final : public TensorSource {
 public:
  TensorFileSource(const std::filesystem::path& path, Timestamp delta_t, const BatchShape& shape)
      : reader_(path), shape_(shape) {
    const TensorFileInfo& info = reader_.info();
    if (info.mode != TensorMode::delta_t)
      throw ConfigError(path.string() +
                        ": the SequentialDataLoader reads delta_t-mode tensor files, this one is " +
                        std::string(mode_name(info.mode)));
    TensorRequest request;
    request.mode = TensorMode::delta_t;
    request.delta_t = static_cast<std::uint32_t>(delta_t);
    request.channels = shape.channels;
    request.height = shape.height;
    request.width = shape.width;
    reader_.check(request);
    delta_t_ = info.delta_t;
    origin_ = info.start_ts.value_or(0);
  }

  void read(Timestamp start, Timestamp duration, float* out, std::size_t t_stride) override {
    const std::int64_t first = (start - origin_) / delta_t_;
    const std::int64_t end = (start + duration - origin_) / delta_t_;
    const std::size_t frame = shape_.item_frame();
    for (std::int64_t t = 0; t < shape_.num_tbins; ++t) {
      float* dst = out + static_cast<std::size_t>(t) * t_stride;
      if (first + t < end)
        reader_.read_frames(first + t, 1, shape_.height, shape_.width, {dst, frame});  // zeros past the end
      else
        std::fill(dst, dst + frame, 0.0f);
    }
  }

 private:
  TensorFileReader reader_;
  BatchShape shape_;
  Timestamp delta_t_ = 1;
  Timestamp origin_ = 0;
};
#endif

}  // namespace

std::unique_ptr<TensorSource> open_event_source(const std::filesystem::path& path,
                                                const ReaderOptions& reader_options,
                                                std::shared_ptr<const Preprocessor> preprocessor,
                                                int downsampling_factor, const BatchShape& shape) {
  return std::make_unique<EventSource>(path, reader_options, std::move(preprocessor), downsampling_factor,
                                       shape);
}

std::unique_ptr<TensorSource> open_tensor_file_source(const std::filesystem::path& path, Timestamp delta_t,
                                                      const BatchShape& shape) {
#ifdef EVLOADER_WITH_HDF5
  return std::make_unique<TensorFileSource>(path, delta_t, shape);
#else
  (void)delta_t;
  (void)shape;
  throw FormatError(path.string() +
                    ": precomputed tensor files need evloader built with EVLOADER_WITH_HDF5=ON");
#endif
}

}  // namespace evloader
