// SPDX-License-Identifier: Apache-2.0
// Bindings of the io module: readers, decoders, writers, box files. Event arrays cross without copies
// as uint8 [n, itemsize] arrays that the Python layer views with Metavision's structured dtypes.
#include <nanobind/operators.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <mutex>

#include "bindings.hpp"
#include "evloader/core/error.hpp"
#include "evloader/io/dat.hpp"
#include "evloader/io/decoder.hpp"
#include "evloader/io/encoder.hpp"
#include "evloader/io/event_reader.hpp"
#include "evloader/io/npy.hpp"
#include "evloader/io/raw_writer.hpp"

namespace evloader::python {

namespace {

using EventBytes = nb::ndarray<nb::numpy, std::uint8_t, nb::ndim<2>>;
using InputBytes = nb::ndarray<std::uint8_t, nb::c_contig, nb::device::cpu>;

// Event buffers whose numpy arrays were released, kept for the next read: a streaming loop
// (`while ...: events = reader.load_n_events(n)`) then decodes into memory it already touched instead of
// paying the first-write page faults of fresh memory on every call.
class EventBufferPool {
 public:
  static EventBufferPool& global() {
    static auto* pool = new EventBufferPool;  // never destroyed: arrays may outlive module teardown
    return *pool;
  }
  EventBuffer take() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) return {};
    EventBuffer b = std::move(free_.back());
    free_.pop_back();
    b.clear();
    return b;
  }
  void give(EventBuffer&& b) {
    if (b.capacity() * sizeof(EventCD) > kMaxKeptBytes) return;
    std::lock_guard lock(mutex_);
    if (free_.size() < kMaxKept) free_.push_back(std::move(b));
  }

 private:
  static constexpr std::size_t kMaxKept = 4;
  static constexpr std::size_t kMaxKeptBytes = std::size_t{256} << 20;
  std::mutex mutex_;
  std::vector<EventBuffer> free_;
};

EventBytes pooled_to_numpy(EventBuffer&& buffer) {
  auto* owned = new EventBuffer(std::move(buffer));
  nb::capsule owner(owned, [](void* p) noexcept {
    auto* b = static_cast<EventBuffer*>(p);
    EventBufferPool::global().give(std::move(*b));
    delete b;
  });
  static std::uint8_t empty_storage[sizeof(EventCD)] = {};
  auto* data = owned->size() ? reinterpret_cast<std::uint8_t*>(owned->data()) : empty_storage;
  return EventBytes(data, {owned->size(), sizeof(EventCD)}, owner);
}

// Run `fn(buffer)` on the reader without the GIL, into a recycled buffer, then hand the events to numpy.
template <class Fn>
EventBytes released(Fn&& fn) {
  EventBuffer out = EventBufferPool::global().take();
  {
    nb::gil_scoped_release unlocked;
    fn(out);
  }
  return pooled_to_numpy(std::move(out));
}

void bind_enums(nb::module_& m) {
  nb::enum_<RawEncoding>(m, "RawEncoding")
      .value("evt2", RawEncoding::evt2)
      .value("evt21", RawEncoding::evt21)
      .value("evt3", RawEncoding::evt3);
  nb::enum_<Evt21Order>(m, "Evt21Order")
      .value("little", Evt21Order::little)
      .value("legacy", Evt21Order::legacy);
  nb::enum_<OnViolation>(m, "OnViolation")
      .value("skip", OnViolation::skip)
      .value("raise_", OnViolation::raise);
  nb::enum_<TimeOrigin>(m, "TimeOrigin")
      .value("absolute", TimeOrigin::absolute)
      .value("metavision", TimeOrigin::metavision);
  nb::enum_<IndexStorage>(m, "IndexStorage")
      .value("sidecar", IndexStorage::sidecar)
      .value("cache", IndexStorage::cache)
      .value("memory", IndexStorage::memory);
  nb::enum_<FileFormat>(m, "FileFormat")
      .value("raw", FileFormat::raw)
      .value("dat", FileFormat::dat)
      .value("hdf5", FileFormat::hdf5)
      .value("aedat4", FileFormat::aedat4);
  nb::enum_<DatEventType>(m, "DatEventType")
      .value("event2d", DatEventType::event2d)
      .value("cd", DatEventType::cd)
      .value("ext_trigger", DatEventType::ext_trigger);
}

void bind_stats(nb::module_& m) {
  nb::class_<DecodeStats>(m, "DecodeStats")
      .def(nb::init<>())
      .def_ro("bytes", &DecodeStats::bytes)
      .def_ro("cd_events", &DecodeStats::cd_events)
      .def_ro("trigger_events", &DecodeStats::trigger_events)
      .def_ro("padding_words", &DecodeStats::padding_words)
      .def_ro("before_time_base", &DecodeStats::before_time_base)
      .def_ro("out_of_bounds", &DecodeStats::out_of_bounds)
      .def_ro("time_backwards", &DecodeStats::time_backwards)
      .def_ro("time_high_glitches", &DecodeStats::time_high_glitches)
      .def_ro("unknown_words", &DecodeStats::unknown_words)
      .def_ro("truncated_bytes", &DecodeStats::truncated_bytes)
      .def_ro("time_loops", &DecodeStats::time_loops)
      .def_prop_ro("violations", &DecodeStats::violations)
      .def("summary", &DecodeStats::summary)
      .def("__repr__", [](const DecodeStats& s) { return "DecodeStats(" + s.summary() + ")"; });
}

void bind_reader(nb::module_& m) {
  nb::class_<ReaderOptions>(m, "ReaderOptions")
      .def(nb::init<>())
      .def_rw("on_violation", &ReaderOptions::on_violation)
      .def_rw("time_origin", &ReaderOptions::time_origin)
      .def_rw("geometry", &ReaderOptions::geometry)
      .def_rw("decode_triggers", &ReaderOptions::decode_triggers)
      .def_rw("index_storage", &ReaderOptions::index_storage)
      .def_prop_rw(
          "encoding", [](const ReaderOptions& o) { return o.raw_format.encoding; },
          [](ReaderOptions& o, std::optional<RawEncoding> e) { o.raw_format.encoding = e; }, nb::arg().none())
      .def_prop_rw(
          "evt21_order", [](const ReaderOptions& o) { return o.raw_format.evt21_order; },
          [](ReaderOptions& o, std::optional<Evt21Order> e) { o.raw_format.evt21_order = e; },
          nb::arg().none());

  nb::class_<EventReader>(m, "EventReader")
      .def_static(
          "open",
          [](const std::filesystem::path& path, const ReaderOptions& options) {
            nb::gil_scoped_release unlocked;
            return EventReader::open(path, options);
          },
          nb::arg("path"), nb::arg("options") = ReaderOptions{})
      .def_prop_ro("path", &EventReader::path)
      .def_prop_ro("format", &EventReader::format)
      .def_prop_ro("encoding_name", &EventReader::encoding_name)
      .def_prop_ro("geometry", &EventReader::geometry)
      .def_prop_ro("header", &EventReader::header)
      .def("load_delta_t",
           [](EventReader& r, Timestamp dt) {
             return released([&](EventBuffer& b) { r.load_delta_t(dt, b); });
           })
      .def("load_n_events",
           [](EventReader& r, std::int64_t n) {
             if (n < 1) throw ConfigError("load_n_events: n_events must be >= 1");
             return released([&](EventBuffer& b) { r.load_n_events(static_cast<std::uint64_t>(n), b); });
           })
      .def("load_mixed",
           [](EventReader& r, std::int64_t n, Timestamp dt) {
             if (n < 1) throw ConfigError("load_mixed: n_events must be >= 1");
             return released([&](EventBuffer& b) { r.load_mixed(static_cast<std::uint64_t>(n), dt, b); });
           })
      .def("load_all", [](EventReader& r) { return released([&](EventBuffer& b) { b = r.load_all(); }); })
      .def("take_triggers", [](EventReader& r) { return records_to_numpy(r.take_triggers()); })
      .def("seek_time", &EventReader::seek_time, nb::call_guard<nb::gil_scoped_release>())
      .def("seek_event",
           [](EventReader& r, std::int64_t n) {
             if (n < 0) throw ConfigError("seek_event: the event index must be >= 0");
             nb::gil_scoped_release unlocked;
             r.seek_event(static_cast<std::uint64_t>(n));
           })
      .def("reset", &EventReader::reset, nb::call_guard<nb::gil_scoped_release>())
      .def("current_time", &EventReader::current_time)
      .def("current_event_index", &EventReader::current_event_index)
      .def("is_done", &EventReader::is_done, nb::call_guard<nb::gil_scoped_release>())
      .def("event_count", &EventReader::event_count, nb::call_guard<nb::gil_scoped_release>())
      .def("trigger_count", &EventReader::trigger_count, nb::call_guard<nb::gil_scoped_release>())
      .def("first_timestamp", &EventReader::first_timestamp, nb::call_guard<nb::gil_scoped_release>())
      .def("last_timestamp", &EventReader::last_timestamp, nb::call_guard<nb::gil_scoped_release>())
      .def("duration", &EventReader::duration, nb::call_guard<nb::gil_scoped_release>())
      .def("time_shift", &EventReader::time_shift)
      .def("file_stats", &EventReader::file_stats, nb::call_guard<nb::gil_scoped_release>())
      .def("stats", [](const EventReader& r) { return r.stats(); })
      .def(
          "build_index",
          [](EventReader& r, std::optional<nb::callable> progress) {
            ProgressCallback cb;
            if (progress) {
              cb = [fn = *progress](std::uint64_t done, std::uint64_t total) {
                nb::gil_scoped_acquire locked;
                fn(done, total);
              };
            }
            nb::gil_scoped_release unlocked;
            r.build_index(cb);
          },
          nb::arg("progress").none() = nb::none())
      .def_prop_ro("has_index", &EventReader::has_index)
      .def_prop_ro("index_path", &EventReader::index_path);
}

void bind_decoder(nb::module_& m) {
  nb::class_<DecoderOptions>(m, "DecoderOptions")
      .def(nb::init<>())
      .def_rw("geometry", &DecoderOptions::geometry)
      .def_rw("on_violation", &DecoderOptions::on_violation)
      .def_rw("evt21_order", &DecoderOptions::evt21_order)
      .def_rw("decode_triggers", &DecoderOptions::decode_triggers);

  // A streaming decoder for bytes the caller reads itself (sockets, partial files).
  nb::class_<EventDecoder>(m, "EventDecoder")
      .def_static("create", &make_decoder, nb::arg("encoding"), nb::arg("options") = DecoderOptions{})
      .def(
          "decode",
          [](EventDecoder& d, nb::bytes data) {
            EventBuffer cd;
            TriggerBuffer triggers;
            std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data.c_str()), data.size());
            {
              nb::gil_scoped_release unlocked;
              d.decode(bytes, cd, &triggers);
            }
            return std::make_pair(records_to_numpy(std::move(cd)), records_to_numpy(std::move(triggers)));
          },
          nb::arg("data"))
      .def("finish", &EventDecoder::finish)
      .def("reset", &EventDecoder::reset)
      .def_prop_ro("stats", [](const EventDecoder& d) { return d.stats(); })
      .def_prop_ro("pending_bytes", &EventDecoder::pending_bytes)
      .def("metavision_time_shift", &EventDecoder::metavision_time_shift);
}

void bind_writers(nb::module_& m) {
  nb::class_<RawWriter>(m, "RawWriter")
      .def(nb::init<const std::filesystem::path&, RawEncoding, Geometry,
                    const std::vector<std::pair<std::string, std::string>>&, Evt21Order>(),
           nb::arg("path"), nb::arg("encoding"), nb::arg("geometry"),
           nb::arg("extra_header") = std::vector<std::pair<std::string, std::string>>{},
           nb::arg("evt21_order") = Evt21Order::little)
      .def(
          "write",
          [](RawWriter& w, const InputBytes& events, std::optional<InputBytes> triggers) {
            auto cd = numpy_to_records<EventCD>(events);
            std::span<const EventExtTrigger> tr;
            if (triggers) tr = numpy_to_records<EventExtTrigger>(*triggers);
            nb::gil_scoped_release unlocked;
            w.write(cd, tr);
          },
          nb::arg("events"), nb::arg("triggers").none() = nb::none())
      .def("close", &RawWriter::close)
      .def_prop_ro("events_written", &RawWriter::events_written);

  nb::class_<DatWriter>(m, "DatWriter")
      .def(nb::init<const std::filesystem::path&, Geometry, DatEventType>(), nb::arg("path"),
           nb::arg("geometry"), nb::arg("type") = DatEventType::cd)
      .def(
          "write_cd",
          [](DatWriter& w, const InputBytes& events) {
            auto cd = numpy_to_records<EventCD>(events);
            nb::gil_scoped_release unlocked;
            w.write(cd);
          },
          nb::arg("events"))
      .def(
          "write_triggers",
          [](DatWriter& w, const InputBytes& triggers) {
            auto tr = numpy_to_records<EventExtTrigger>(triggers);
            nb::gil_scoped_release unlocked;
            w.write(tr);
          },
          nb::arg("triggers"))
      .def("close", &DatWriter::close);
}

void bind_boxes(nb::module_& m) {
  m.def(
      "read_boxes_npy",
      [](const std::filesystem::path& path) {
        std::vector<EventBbox> boxes;
        {
          nb::gil_scoped_release unlocked;
          boxes = read_boxes_npy(path);
        }
        PodBuffer<EventBbox> buffer;
        buffer.append(boxes);
        return records_to_numpy(std::move(buffer));
      },
      nb::arg("path"));
  m.def(
      "write_boxes_npy",
      [](const std::filesystem::path& path, const InputBytes& boxes) {
        auto records = numpy_to_records<EventBbox>(boxes);
        nb::gil_scoped_release unlocked;
        write_boxes_npy(path, records);
      },
      nb::arg("path"), nb::arg("boxes"));
}

}  // namespace

void bind_io(nb::module_& m) {
  bind_enums(m);
  bind_stats(m);
  bind_reader(m);
  bind_decoder(m);
  bind_writers(m);
  bind_boxes(m);
}

}  // namespace evloader::python
