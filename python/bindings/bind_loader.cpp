// SPDX-License-Identifier: Apache-2.0
// Bindings of the loader module: the batch schedule and the engine of the SequentialDataLoader.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "bindings.hpp"
#include "evloader/core/error.hpp"
#include "evloader/loader/engine.hpp"
#include "evloader/loader/schedule.hpp"
#include "evloader/loader/slot_filler.hpp"
#include "evloader/loader/sources.hpp"
#include "python_objects.hpp"

namespace evloader::python {

namespace {

void bind_schedule(nb::module_& m) {
  nb::class_<Schedule>(m, "Schedule")
      .def(
          "__init__",
          [](Schedule* self, const std::vector<std::pair<Timestamp, Timestamp>>& spans, Timestamp delta_t,
             int num_tbins, int batch_size, int max_consecutive_batch, bool padding, bool shuffle,
             std::uint64_t seed, int rank, int world_size, Timestamp rounding_tolerance) {
            std::vector<ScheduleRecording> recordings;
            recordings.reserve(spans.size());
            for (const auto& [begin, end] : spans) recordings.push_back({begin, end});
            ScheduleOptions o;
            o.delta_t = delta_t;
            o.num_tbins = num_tbins;
            o.batch_size = batch_size;
            o.max_consecutive_batch = max_consecutive_batch;
            o.padding = padding;
            o.shuffle = shuffle;
            o.seed = seed;
            o.rank = rank;
            o.world_size = world_size;
            o.rounding_tolerance = rounding_tolerance;
            new (self) Schedule(std::move(recordings), o);
          },
          nb::arg("spans"), nb::arg("delta_t"), nb::arg("num_tbins"), nb::arg("batch_size"),
          nb::arg("max_consecutive_batch") = 0, nb::arg("padding") = false, nb::arg("shuffle") = false,
          nb::arg("seed") = 0, nb::arg("rank") = 0, nb::arg("world_size") = 1,
          nb::arg("rounding_tolerance") = 1000)
      .def_prop_ro("num_batches", &Schedule::num_batches)
      .def_prop_ro("batch_size", &Schedule::batch_size)
      .def_prop_ro("window", &Schedule::window)
      .def_prop_ro("own_batches", &Schedule::own_batches)
      .def_prop_ro("recordings_of_rank", &Schedule::recordings_of_rank)
      .def_prop_ro("entries",
                   [](const Schedule& s) {
                     std::vector<std::pair<int, Timestamp>> out;
                     for (const auto& e : s.entries()) out.emplace_back(e.recording, e.start_ts);
                     return out;
                   })
      .def(
          "at", [](const Schedule& s, std::size_t b, int slot) { return item_tuple(s.at(b, slot)); },
          "(padding, entry, recording, start, duration, keep_memory) of slot `slot` of batch `b`")
      .def("batch", [](const Schedule& s, std::size_t b) {
        nb::list out;
        for (const auto& i : s.batch(b)) out.append(item_tuple(i));
        return out;
      });
  m.def("round_duration", &round_duration, nb::arg("duration"), nb::arg("window"), nb::arg("max_batch") = 0,
        nb::arg("tolerance") = 1000);
}

// A Python preprocessing function (register_new_preprocessing) on a C++ reader: the events are read without
// the GIL, the function runs with it.
class PythonKernelSource final : public TensorSource {
 public:
  PythonKernelSource(const std::filesystem::path& path, const ReaderOptions& options, nb::object kernel,
                     const BatchShape& shape)
      : reader_(EventReader::open(path, options)), kernel_(std::move(kernel)), shape_(shape) {}
  ~PythonKernelSource() override {
    nb::gil_scoped_acquire locked;
    kernel_.reset();
  }

  void read(Timestamp start, Timestamp duration, float* out, std::size_t t_stride) override {
    if (reader_->current_time() != start) reader_->seek_time(start);
    reader_->load_delta_t(duration, events_);
    for (EventCD& e : events_) e.t -= start;
    const std::size_t frame_size = shape_.item_frame();
    for (int t = 0; t < shape_.num_tbins; ++t)  // Python kernels accumulate (reset=False) into zeros
      std::fill(out + static_cast<std::size_t>(t) * t_stride,
                out + static_cast<std::size_t>(t) * t_stride + frame_size, 0.0f);
    nb::gil_scoped_acquire locked;
    // The function gets the events and a [T, C, H, W] strided view of the batch (writes land in place).
    const std::size_t frame = shape_.item_frame();
    std::int64_t strides[4] = {static_cast<std::int64_t>(t_stride),
                               static_cast<std::int64_t>(frame / shape_.channels), shape_.width, 1};
    std::size_t dims[4] = {static_cast<std::size_t>(shape_.num_tbins),
                           static_cast<std::size_t>(shape_.channels), static_cast<std::size_t>(shape_.height),
                           static_cast<std::size_t>(shape_.width)};
    nb::ndarray<nb::numpy, float, nb::ndim<4>> tensor(out, 4, dims, nb::handle(), strides);
    PodBuffer<EventCD> copy;
    copy.append(events_.view());
    // rv_policy::reference: a view of the batch, not a copy (nanobind copies owner-less arrays by default).
    kernel_(records_to_numpy(std::move(copy)), nb::cast(tensor, nb::rv_policy::reference), duration);
  }

 private:
  std::unique_ptr<EventReader> reader_;
  nb::object kernel_;
  BatchShape shape_;
  EventBuffer events_;
};

/// The SequentialDataLoader's engine as Python sees it: recordings by path, a preprocessing by name (or a
/// Python function), an optional Python label hook; batches come out as torch tensors sharing the buffer.
class LoaderEngine {
 public:
  LoaderEngine(std::shared_ptr<Schedule> schedule, std::vector<std::string> paths,
               std::vector<bool> precomputed, std::tuple<int, int, int, int, int> dims,
               std::string preprocess, nb::dict kwargs, nb::object python_kernel, int downsampling_factor,
               Timestamp delta_t, TimeOrigin time_origin, nb::object label_hook, int num_workers,
               int prefetch) {
    auto [T, N, C, H, W] = dims;
    shape_ = {T, N, C, H, W};
    ReaderOptions reader_options;
    reader_options.time_origin = time_origin;
    std::shared_ptr<const Preprocessor> kernel;
    if (python_kernel.is_none()) kernel = make_preprocessor(preprocess, kwargs_from_dict(kwargs));
    auto python_kernel_ref = std::make_shared<nb::object>(python_kernel);
    TensorSourceFactory open = [=, paths = std::move(paths), precomputed = std::move(precomputed),
                                shape = shape_](int r) -> std::unique_ptr<TensorSource> {
      const auto& path = paths[static_cast<std::size_t>(r)];
      if (precomputed[static_cast<std::size_t>(r)]) return open_tensor_file_source(path, delta_t, shape);
      if (kernel) return open_event_source(path, reader_options, kernel, downsampling_factor, shape);
      nb::object fn;
      {
        nb::gil_scoped_acquire locked;
        fn = *python_kernel_ref;
      }
      return std::make_unique<PythonKernelSource>(path, reader_options, std::move(fn), shape);
    };
    LabelFunction labels;
    if (!label_hook.is_none()) {
      auto hook = std::make_shared<nb::object>(label_hook);
      labels = [hook, shape = shape_](const ScheduleItem& item, int slot, Batch& batch) {
        nb::gil_scoped_acquire locked;
        const std::size_t frame = shape.item_frame();
        std::int64_t strides[4] = {
            static_cast<std::int64_t>(static_cast<std::size_t>(shape.batch_size) * frame),
            static_cast<std::int64_t>(frame / static_cast<std::size_t>(shape.channels)), shape.width, 1};
        std::size_t dims4[4] = {
            static_cast<std::size_t>(shape.num_tbins), static_cast<std::size_t>(shape.channels),
            static_cast<std::size_t>(shape.height), static_cast<std::size_t>(shape.width)};
        nb::ndarray<nb::numpy, float, nb::ndim<4>> tensor(batch.data() + batch.offset(0, slot), 4, dims4,
                                                          nb::handle(), strides);
        nb::object result = (*hook)(item_tuple(item), nb::cast(tensor, nb::rv_policy::reference));
        // The Python side normalises the mask to bytes (one 0/1 byte per time bin).
        auto [values, mask] = nb::cast<std::pair<nb::object, nb::bytes>>(result);
        if (mask.size() != static_cast<std::size_t>(shape.num_tbins))
          throw ConfigError("load_labels returned a frame_is_labeled mask of " + std::to_string(mask.size()) +
                            " values for " + std::to_string(shape.num_tbins) + " time bins");
        for (int t = 0; t < shape.num_tbins; ++t)
          batch.frame_is_labeled[static_cast<std::size_t>(t * shape.batch_size + slot)] =
              mask.c_str()[t] != 0;
        batch.labels[static_cast<std::size_t>(slot)] = keep_python_object(std::move(values));
      };
    }
    filler_ = std::make_shared<SlotFiller>(N, std::move(open), std::move(labels));
    engine_ =
        std::make_unique<Engine>(std::move(schedule), shape_, filler_, EngineOptions{num_workers, prefetch});
  }

  ~LoaderEngine() {
    // Workers may be waiting for the GIL (label hooks): let them finish before joining.
    nb::gil_scoped_release unlocked;
    engine_.reset();
  }

  void start(std::size_t first) {
    nb::gil_scoped_release unlocked;
    engine_->start(first);
  }

  void stop() {
    nb::gil_scoped_release unlocked;
    engine_->stop();
  }

  /// (inputs [T, N, C, H, W] torch tensor, batch index, frame_is_labeled [T*N] bytes, labels per slot) or
  /// None.
  nb::object next() {
    std::shared_ptr<Batch> batch = next_batch_interruptible(*engine_);
    if (!batch) return nb::none();
    nb::object inputs = batch_to_torch(batch);
    nb::list labels = batch_labels(*batch);
    nb::bytes mask(reinterpret_cast<const char*>(batch->frame_is_labeled.data()),
                   batch->frame_is_labeled.size());
    return nb::make_tuple(inputs, batch->index(), mask, labels);
  }

  std::size_t opens() const { return filler_->opens(); }
  std::size_t buffers() const { return engine_->pool().allocated(); }

 private:
  BatchShape shape_;
  std::shared_ptr<SlotFiller> filler_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace

void bind_loader(nb::module_& m) {
  bind_schedule(m);
  nb::class_<LoaderEngine>(m, "LoaderEngine")
      .def(nb::init<std::shared_ptr<Schedule>, std::vector<std::string>, std::vector<bool>,
                    std::tuple<int, int, int, int, int>, std::string, nb::dict, nb::object, int, Timestamp,
                    TimeOrigin, nb::object, int, int>(),
           nb::arg("schedule"), nb::arg("paths"), nb::arg("precomputed"), nb::arg("dims"),
           nb::arg("preprocess"), nb::arg("kwargs"), nb::arg("python_kernel").none(),
           nb::arg("downsampling_factor"), nb::arg("delta_t"), nb::arg("time_origin"),
           nb::arg("label_hook").none(), nb::arg("num_workers"), nb::arg("prefetch"))
      .def("start", &LoaderEngine::start, nb::arg("first") = 0)
      .def("stop", &LoaderEngine::stop)
      .def("next", &LoaderEngine::next)
      .def_prop_ro("opens", &LoaderEngine::opens)
      .def_prop_ro("buffers", &LoaderEngine::buffers);
}

}  // namespace evloader::python
