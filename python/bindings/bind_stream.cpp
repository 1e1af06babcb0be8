// SPDX-License-Identifier: Apache-2.0
// Bindings of the streaming loader (CDProcessorDataLoader): recording plans, the per-slot stream table, and
// an engine whose batches come out as torch tensors sharing the batch buffer.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "bindings.hpp"
#include "evloader/core/error.hpp"
#include "evloader/loader/engine.hpp"
#include "evloader/loader/stream_filler.hpp"
#include "evloader/loader/stream_schedule.hpp"
#include "python_objects.hpp"

namespace evloader::python {

namespace {

SliceMode slice_mode(const std::string& name) {
  if (name == "delta_t") return SliceMode::delta_t;
  if (name == "n_events") return SliceMode::n_events;
  if (name == "mixed") return SliceMode::mixed;
  throw ConfigError("mode must be 'delta_t', 'n_events' or 'mixed', got '" + name + "'");
}

StreamPadding padding_mode(const std::string& name) {
  if (name == "zeros") return StreamPadding::zeros;
  if (name == "data") return StreamPadding::data;
  throw ConfigError("padding_mode must be 'zeros' or 'data', got '" + name + "'");
}

StreamSlicing make_slicing(const std::string& mode, Timestamp delta_t, std::uint64_t n_events, int num_tbins,
                           Timestamp max_duration) {
  StreamSlicing s;
  s.mode = slice_mode(mode);
  s.delta_t = delta_t;
  s.n_events = n_events;
  s.num_tbins = num_tbins;
  s.max_duration = max_duration;
  s.validate();
  return s;
}

// (begin, end, events, bins, items, width, height): a plan as Python keeps it.
using PlanTuple = std::tuple<Timestamp, Timestamp, std::uint64_t, std::uint64_t, std::uint64_t, int, int>;

PlanTuple plan_tuple(const StreamPlan& p) {
  return {p.begin, p.end, p.events, p.bins, p.items, p.geometry.width, p.geometry.height};
}

StreamPlan plan_from(const PlanTuple& t) {
  StreamPlan p;
  std::tie(p.begin, p.end, p.events, p.bins, p.items, p.geometry.width, p.geometry.height) = t;
  return p;
}

// A Python preprocessing function (register_new_preprocessing): called with the GIL on the events of a span
// and a [bins, C, H, W] float32 view of the stream's frames (writes land in place).
class PythonStreamKernel final : public StreamKernel {
 public:
  PythonStreamKernel(nb::object fn, int channels, int height, int width)
      : fn_(std::move(fn)), channels_(channels), height_(height), width_(width) {}
  ~PythonStreamKernel() override {
    nb::gil_scoped_acquire locked;
    fn_.reset();
  }

  void run(std::span<const EventCD> events, Timestamp total, int bins, float* out) override {
    PodBuffer<EventCD> copy;  // the function may keep the array: it owns its events
    copy.append(events);
    nb::gil_scoped_acquire locked;
    std::size_t dims[4] = {static_cast<std::size_t>(bins), static_cast<std::size_t>(channels_),
                           static_cast<std::size_t>(height_), static_cast<std::size_t>(width_)};
    nb::ndarray<nb::numpy, float, nb::ndim<4>, nb::c_contig> view(out, 4, dims, nb::handle());
    fn_(records_to_numpy(std::move(copy)), nb::cast(view, nb::rv_policy::reference), total);
  }

 private:
  nb::object fn_;
  int channels_, height_, width_;
};

std::vector<nb::tuple> py_plan_streams(const std::vector<std::string>& paths, const std::string& mode,
                                       Timestamp delta_t, std::uint64_t n_events, int num_tbins,
                                       Timestamp max_duration, TimeOrigin time_origin, int threads) {
  const StreamSlicing slicing = make_slicing(mode, delta_t, n_events, num_tbins, max_duration);
  ReaderOptions options;
  options.time_origin = time_origin;
  std::vector<PlanResult> results;
  {
    nb::gil_scoped_release unlocked;
    std::vector<std::filesystem::path> p(paths.begin(), paths.end());
    results = plan_streams(p, options, slicing, threads);
  }
  std::vector<nb::tuple> out;
  for (const auto& r : results)
    out.push_back(nb::make_tuple(r.error, r.error_kind, nb::cast(plan_tuple(r.plan))));
  return out;
}

/// The streaming loader's engine as Python sees it: recordings by path with their plans, a preprocessing by
/// name (or a Python function), an optional Python label hook; batches come out as torch tensors.
class StreamEngine {
 public:
  StreamEngine(std::shared_ptr<StreamSchedule> schedule, std::vector<std::string> paths,
               std::vector<PlanTuple> plans, std::vector<bool> precomputed, const std::string& mode,
               Timestamp delta_t, std::uint64_t n_events, Timestamp max_duration,
               std::tuple<int, int, int, int, int> dims, const std::string& preprocess, nb::dict kwargs,
               nb::object python_kernel, TimeOrigin time_origin, nb::object label_hook,
               const std::string& on_error, int num_workers, int prefetch) {
    auto [T, N, C, H, W] = dims;
    shape_ = {T, N, C, H, W};
    if (paths.size() != plans.size() || paths.size() != precomputed.size())
      throw ConfigError("one plan and one precomputed flag per recording are needed");
    if (N != schedule->batch_size()) throw ConfigError("the batch size and the stream table disagree");
    const StreamSlicing slicing = make_slicing(mode, delta_t, n_events, T, max_duration);
    if (on_error != "raise" && on_error != "skip")
      throw ConfigError("on_error must be 'raise' or 'skip', got '" + on_error + "'");
    ReaderOptions reader_options;
    reader_options.time_origin = time_origin;

    StreamKernelFactory kernel;
    if (python_kernel.is_none()) {
      std::shared_ptr<const Preprocessor> native = make_preprocessor(preprocess, kwargs_from_dict(kwargs));
      kernel = [native, C](int h, int w) { return make_native_stream_kernel(native, C, h, w); };
    } else {
      auto fn = std::make_shared<nb::object>(python_kernel);
      kernel = [fn, C](int h, int w) -> std::unique_ptr<StreamKernel> {
        nb::object copy;
        {
          nb::gil_scoped_acquire locked;
          copy = *fn;
        }
        return std::make_unique<PythonStreamKernel>(std::move(copy), C, h, w);
      };
      // The shared reference itself is dropped with the GIL (the engine dies with the GIL released).
      python_objects_.push_back(std::shared_ptr<void>(fn, fn.get()));
    }
    std::vector<StreamPlan> native_plans;
    for (const auto& p : plans) native_plans.push_back(plan_from(p));
    StreamSourceFactory open = [paths, native_plans, precomputed, slicing, reader_options, kernel,
                                shape = shape_](int r) -> std::unique_ptr<StreamTensorSource> {
      const auto i = static_cast<std::size_t>(r);
      if (precomputed[i]) return open_tensor_stream(paths[i], slicing, native_plans[i], shape);
      return open_event_stream(paths[i], reader_options, slicing, native_plans[i], kernel, shape);
    };

    LabelFunction labels;
    if (!label_hook.is_none()) {
      auto hook = std::make_shared<nb::object>(label_hook);
      python_objects_.push_back(std::shared_ptr<void>(hook, hook.get()));
      labels = [hook, shape = shape_](const ScheduleItem& item, int slot, Batch& batch) {
        if (item.padding) return;  // the Python side fills padding labels without a call
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
    filler_ = std::make_shared<StreamFiller>(schedule, std::move(open), std::move(labels),
                                             on_error == "skip" ? OnStreamError::skip : OnStreamError::raise,
                                             std::move(paths));
    engine_ = std::make_unique<Engine>(schedule->engine_schedule(), shape_, filler_,
                                       EngineOptions{num_workers, prefetch});
  }

  ~StreamEngine() {
    // Workers may be waiting for the GIL (label hooks, Python kernels): let them finish before joining.
    {
      nb::gil_scoped_release unlocked;
      engine_.reset();
      filler_.reset();
    }
    python_objects_.clear();  // with the GIL held
  }

  void start(std::size_t first) {
    nb::gil_scoped_release unlocked;
    engine_->start(first);
  }

  void stop() {
    nb::gil_scoped_release unlocked;
    engine_->stop();
  }

  /// (inputs [T, N, C, H, W] torch tensor, batch index, frame_is_labeled [T*N] bytes, labels per slot, items
  /// per slot) or None at the end of the epoch.
  nb::object next() {
    std::shared_ptr<Batch> batch = next_batch_interruptible(*engine_);
    if (!batch) return nb::none();
    nb::object inputs = batch_to_torch(batch);
    nb::list labels = batch_labels(*batch), items;
    for (const auto& i : batch->items) items.append(item_tuple(i));
    nb::bytes mask(reinterpret_cast<const char*>(batch->frame_is_labeled.data()),
                   batch->frame_is_labeled.size());
    return nb::make_tuple(inputs, batch->index(), mask, labels, items);
  }

  std::vector<std::string> take_warnings() { return filler_->take_warnings(); }
  std::size_t opens() const { return filler_->opens(); }
  std::uint64_t events_read() const { return filler_->events_read(); }
  std::size_t buffers() const { return engine_->pool().allocated(); }

 private:
  BatchShape shape_;
  std::shared_ptr<StreamFiller> filler_;
  std::unique_ptr<Engine> engine_;
  std::vector<std::shared_ptr<void>> python_objects_;
};

}  // namespace

void bind_stream(nb::module_& m) {
  m.def("plan_streams", &py_plan_streams, nb::arg("paths"), nb::arg("mode"), nb::arg("delta_t"),
        nb::arg("n_events"), nb::arg("num_tbins"), nb::arg("max_duration"), nb::arg("time_origin"),
        nb::arg("threads"),
        "[(error, error_kind, (begin, end, events, bins, items, width, height))] per path; error is '' when "
        "the "
        "recording was planned");

  m.def(
      "plan_tensor_stream",
      [](const std::string& path, const std::string& mode, Timestamp delta_t, std::uint64_t n_events,
         int num_tbins, Timestamp max_duration, const std::string& preprocess, int channels, int height,
         int width) {
        const StreamSlicing slicing = make_slicing(mode, delta_t, n_events, num_tbins, max_duration);
        StreamPlan plan;
        {
          nb::gil_scoped_release unlocked;
          plan = plan_tensor_stream(path, slicing, TensorStreamRequest{preprocess, channels, height, width});
        }
        return plan_tuple(plan);
      },
      nb::arg("path"), nb::arg("mode"), nb::arg("delta_t"), nb::arg("n_events"), nb::arg("num_tbins"),
      nb::arg("max_duration"), nb::arg("preprocess"), nb::arg("channels"), nb::arg("height"),
      nb::arg("width"),
      "(begin, end, events, bins, items, width, height) of a precomputed tensor file; raises when it does "
      "not "
      "match the request");

  nb::class_<StreamSchedule>(m, "StreamSchedule")
      .def(
          "__init__",
          [](StreamSchedule* self, std::vector<std::uint64_t> items, int batch_size,
             const std::string& padding, std::vector<int> order) {
            new (self) StreamSchedule(std::move(items), batch_size, padding_mode(padding), std::move(order));
          },
          nb::arg("items"), nb::arg("batch_size"), nb::arg("padding_mode"),
          nb::arg("order") = std::vector<int>{})
      .def_prop_ro("num_batches", &StreamSchedule::num_batches)
      .def_prop_ro("batch_size", &StreamSchedule::batch_size)
      .def(
          "at",
          [](const StreamSchedule& s, std::size_t b, int slot) {
            const StreamItem i = s.at(b, slot);
            return std::make_pair(i.recording, i.index);
          },
          "(recording, tensor index) of slot `slot` of batch `b`; recording -1 for padding")
      .def("segments", [](const StreamSchedule& s, int slot) {
        std::vector<std::tuple<std::size_t, int, std::uint64_t, std::uint64_t>> out;
        for (const auto& r : s.segments(slot))
          out.emplace_back(r.first_batch, r.recording, r.first_index, r.count);
        return out;
      });

  nb::class_<StreamEngine>(m, "StreamEngine")
      .def(nb::init<std::shared_ptr<StreamSchedule>, std::vector<std::string>, std::vector<PlanTuple>,
                    std::vector<bool>, const std::string&, Timestamp, std::uint64_t, Timestamp,
                    std::tuple<int, int, int, int, int>, const std::string&, nb::dict, nb::object, TimeOrigin,
                    nb::object, const std::string&, int, int>(),
           nb::arg("schedule"), nb::arg("paths"), nb::arg("plans"), nb::arg("precomputed"), nb::arg("mode"),
           nb::arg("delta_t"), nb::arg("n_events"), nb::arg("max_duration"), nb::arg("dims"),
           nb::arg("preprocess"), nb::arg("kwargs"), nb::arg("python_kernel").none(), nb::arg("time_origin"),
           nb::arg("label_hook").none(), nb::arg("on_error"), nb::arg("num_workers"), nb::arg("prefetch"))
      .def("start", &StreamEngine::start, nb::arg("first") = 0)
      .def("stop", &StreamEngine::stop)
      .def("next", &StreamEngine::next)
      .def("take_warnings", &StreamEngine::take_warnings)
      .def_prop_ro("opens", &StreamEngine::opens)
      .def_prop_ro("events_read", &StreamEngine::events_read)
      .def_prop_ro("buffers", &StreamEngine::buffers);
}

}  // namespace evloader::python
