// SPDX-License-Identifier: Apache-2.0
// Bindings of the hdf5 module: the HDF5 event file writer, the ECF chunk codec, and the address of the
// ECF filter class that evloader.hdf5.register_ecf_filter() hands to h5py (reading goes through
// EventReader, which dispatches .hdf5/.h5 files itself).
#include "bindings.hpp"

#ifdef EVLOADER_WITH_HDF5

#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/ecf.hpp"
#include "evloader/io/hdf5_event_writer.hpp"

namespace evloader::python {

namespace {

using InputBytes = nb::ndarray<std::uint8_t, nb::c_contig, nb::device::cpu>;

}  // namespace

void bind_hdf5(nb::module_& m) {
  nb::enum_<ecf::Mode>(m, "EcfMode")
      .value("masked_x", ecf::Mode::masked_x)
      .value("pack_xp", ecf::Mode::pack_xp)
      .value("pack_yxp", ecf::Mode::pack_yxp);

  m.def(
      "ecf_filter_class_address", [] { return reinterpret_cast<std::uintptr_t>(ecf::h5z_filter_class()); },
      "Address of the static H5Z_class2_t of the ECF filter (for h5py.h5z.register_filter).");
  m.def("ecf_register_filter", &ecf::register_filter,
        "Register ECF with the libhdf5 evloader is linked to (not h5py's copy).");
  m.def(
      "ecf_encode",
      [](const InputBytes& events, std::optional<ecf::Mode> mode) {
        auto records = numpy_to_records<EventCD>(events);
        std::vector<std::byte> out;
        {
          nb::gil_scoped_release unlocked;
          ecf::encode(records, out, mode);
        }
        return nb::bytes(reinterpret_cast<const char*>(out.data()), out.size());
      },
      nb::arg("events"), nb::arg("mode").none() = nb::none());
  m.def(
      "ecf_decode",
      [](nb::bytes chunk) {
        std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(chunk.c_str()), chunk.size());
        EventBuffer out;
        {
          nb::gil_scoped_release unlocked;
          ecf::decode(bytes, out);
        }
        return records_to_numpy(std::move(out));
      },
      nb::arg("chunk"));
  m.def(
      "ecf_chunk_header",
      [](nb::bytes chunk) {
        auto h = ecf::read_header({reinterpret_cast<const std::byte*>(chunk.c_str()), chunk.size()});
        return std::make_pair(static_cast<std::uint64_t>(h.event_count), h.mode);
      },
      nb::arg("chunk"));

  nb::class_<Hdf5EventWriter>(m, "Hdf5EventWriter")
      .def(
          "__init__",
          [](Hdf5EventWriter* self, const std::filesystem::path& path, Geometry geometry,
             const std::vector<std::pair<std::string, std::string>>& attributes, std::size_t chunk_events,
             std::optional<ecf::Mode> mode) {
            Hdf5WriterOptions options;
            options.geometry = geometry;
            options.attributes = attributes;
            options.chunk_events = chunk_events;
            options.mode = mode;
            nb::gil_scoped_release unlocked;
            new (self) Hdf5EventWriter(path, options);
          },
          nb::arg("path"), nb::arg("geometry") = Geometry{},
          nb::arg("attributes") = std::vector<std::pair<std::string, std::string>>{},
          nb::arg("chunk_events") = std::size_t{16384}, nb::arg("mode").none() = nb::none())
      .def(
          "write",
          [](Hdf5EventWriter& w, const InputBytes& events) {
            auto cd = numpy_to_records<EventCD>(events);
            nb::gil_scoped_release unlocked;
            w.write(cd);
          },
          nb::arg("events"))
      .def(
          "write_triggers",
          [](Hdf5EventWriter& w, const InputBytes& triggers) {
            auto tr = numpy_to_records<EventExtTrigger>(triggers);
            nb::gil_scoped_release unlocked;
            w.write_triggers(tr);
          },
          nb::arg("triggers"))
      .def("set_attribute", &Hdf5EventWriter::set_attribute, nb::arg("key"), nb::arg("value"))
      .def("close", &Hdf5EventWriter::close, nb::call_guard<nb::gil_scoped_release>())
      .def_prop_ro("events_written", &Hdf5EventWriter::events_written)
      .def_prop_ro("triggers_written", &Hdf5EventWriter::triggers_written);
}

}  // namespace evloader::python

#else

namespace evloader::python {
void bind_hdf5(nb::module_& m) { (void)m; }
}  // namespace evloader::python

#endif
