// SPDX-License-Identifier: Apache-2.0
// Bindings of the loader module: the batch schedule and the engine of the SequentialDataLoader.
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "bindings.hpp"
#include "evloader/loader/schedule.hpp"

namespace evloader::python {

namespace {

nb::tuple item_tuple(const ScheduleItem& i) {
  return nb::make_tuple(i.padding, i.entry, i.recording, i.start, i.duration, i.keep_memory);
}

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
          nb::arg("seed") = 0, nb::arg("rank") = 0, nb::arg("world_size") = 1, nb::arg("rounding_tolerance") = 1000)
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

}  // namespace

void bind_loader(nb::module_& m) { bind_schedule(m); }

}  // namespace evloader::python
