// SPDX-License-Identifier: Apache-2.0
// Bindings of the tensor-file module: writer, reader (reads into caller-owned numpy arrays without the GIL)
// and the INTER_AREA resizer. The Python layer (evloader.tensor_file) allocates and validates arrays.
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include "bindings.hpp"
#include "evloader/core/error.hpp"

#ifdef EVLOADER_WITH_HDF5
#include "evloader/preprocess/area_resize.hpp"
#include "evloader/preprocess/tensor_file.hpp"
#endif

namespace evloader::python {

#ifdef EVLOADER_WITH_HDF5
namespace {

using FloatArray = nb::ndarray<float, nb::c_contig, nb::device::cpu>;
using ConstFloatArray = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;

void bind_area_resize(nb::module_& m) {
  m.def(
      "area_resize",
      [](ConstFloatArray src, FloatArray dst) {
        if (src.ndim() < 2 || dst.ndim() != src.ndim())
          throw ConfigError("area_resize: src and dst need the same number (>= 2) of dimensions");
        std::size_t planes = 1;
        for (std::size_t d = 0; d + 2 < src.ndim(); ++d) {
          if (src.shape(d) != dst.shape(d)) throw ConfigError("area_resize: leading dimensions differ");
          planes *= src.shape(d);
        }
        const auto sh = static_cast<int>(src.shape(src.ndim() - 2)),
                   sw = static_cast<int>(src.shape(src.ndim() - 1));
        const auto dh = static_cast<int>(dst.shape(dst.ndim() - 2)),
                   dw = static_cast<int>(dst.shape(dst.ndim() - 1));
        AreaResizer resizer(sh, sw, dh, dw);
        nb::gil_scoped_release unlocked;
        resizer.resize(src.data(), dst.data(), planes);
      },
      nb::arg("src"), nb::arg("dst"),
      "OpenCV INTER_AREA downscaling of float32 planes [..., H, W] into dst [..., h, w] (no GIL).");
}

std::optional<TensorDtype> dtype_of(const nb::dlpack::dtype& d) {
  if (d == nb::dtype<std::uint8_t>()) return TensorDtype::uint8;
  if (d == nb::dtype<std::int8_t>()) return TensorDtype::int8;
  if (d == nb::dtype<std::uint16_t>()) return TensorDtype::uint16;
  if (d == nb::dtype<std::int16_t>()) return TensorDtype::int16;
  if (d == nb::dtype<std::uint32_t>()) return TensorDtype::uint32;
  if (d == nb::dtype<std::int32_t>()) return TensorDtype::int32;
  if (d == nb::dtype<float>()) return TensorDtype::float32;
  if (d == nb::dtype<double>()) return TensorDtype::float64;
  return std::nullopt;
}

void bind_tensor_file_classes(nb::module_& m) {
  nb::enum_<TensorMode>(m, "TensorMode")
      .value("delta_t", TensorMode::delta_t)
      .value("n_events", TensorMode::n_events);

  nb::class_<TensorFileInfo>(m, "TensorFileInfo")
      .def(nb::init<>())
      .def_rw("events_to_tensor", &TensorFileInfo::events_to_tensor)
      .def_rw("mode", &TensorFileInfo::mode)
      .def_rw("delta_t", &TensorFileInfo::delta_t)
      .def_rw("n_events", &TensorFileInfo::n_events)
      .def_rw("channels", &TensorFileInfo::channels)
      .def_rw("height", &TensorFileInfo::height)
      .def_rw("width", &TensorFileInfo::width)
      .def_rw("sensor", &TensorFileInfo::sensor)
      .def_prop_rw(
          "dtype", [](const TensorFileInfo& i) { return std::string(tensor_dtype_name(i.dtype)); },
          [](TensorFileInfo& i, const std::string& name) { i.dtype = tensor_dtype_from_name(name); })
      .def_rw("store_as_uint8", &TensorFileInfo::store_as_uint8)
      .def_rw("start_ts", &TensorFileInfo::start_ts)
      .def_rw("kwargs", &TensorFileInfo::kwargs);

  nb::class_<TensorFileWriter>(m, "TensorFileWriter")
      .def(
          "__init__",
          [](TensorFileWriter* self, const std::filesystem::path& path, const TensorFileInfo& info,
             int compression_level, std::int64_t grow_by, int compression_threads) {
            TensorFileWriterOptions options;
            options.compression_level = compression_level;
            options.grow_by = grow_by;
            options.compression_threads = compression_threads;
            nb::gil_scoped_release unlocked;
            new (self) TensorFileWriter(path, info, options);
          },
          nb::arg("path"), nb::arg("info"), nb::arg("compression_level") = 4, nb::arg("grow_by") = 100,
          nb::arg("compression_threads") = 1)
      .def(
          "write",
          [](TensorFileWriter& w, nb::ndarray<nb::c_contig, nb::device::cpu> frames,
             std::optional<nb::ndarray<const std::int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>>
                 last) {
            const TensorFileInfo& info = w.info();
            const auto got = dtype_of(frames.dtype());
            if (!got || *got != w.input_dtype())
              throw ConfigError(w.path().string() + ": frames must be " +
                                std::string(tensor_dtype_name(w.input_dtype())));
            if (frames.ndim() != 4 || frames.shape(1) != static_cast<std::size_t>(info.channels) ||
                frames.shape(2) != static_cast<std::size_t>(info.height) ||
                frames.shape(3) != static_cast<std::size_t>(info.width))
              throw ConfigError(w.path().string() + ": frames must have shape [N, " +
                                std::to_string(info.channels) + ", " + std::to_string(info.height) + ", " +
                                std::to_string(info.width) + "]");
            std::span<const Timestamp> stamps;
            if (last) stamps = {reinterpret_cast<const Timestamp*>(last->data()), last->shape(0)};
            const auto count = static_cast<std::int64_t>(frames.shape(0));
            nb::gil_scoped_release unlocked;
            w.write(frames.data(), count, stamps);
          },
          nb::arg("frames"), nb::arg("last_timestamps") = nb::none())
      .def("set_cursor", &TensorFileWriter::set_cursor)
      .def_prop_ro("index", &TensorFileWriter::index)
      .def_prop_ro("info", &TensorFileWriter::info)
      .def_prop_ro("path", &TensorFileWriter::path)
      .def("close", &TensorFileWriter::close, nb::call_guard<nb::gil_scoped_release>());

  nb::class_<TensorFileReader>(m, "TensorFileReader")
      .def(
          "__init__",
          [](TensorFileReader* self, const std::filesystem::path& path) {
            nb::gil_scoped_release unlocked;
            new (self) TensorFileReader(path);
          },
          nb::arg("path"))
      .def_prop_ro("path", &TensorFileReader::path)
      .def_prop_ro("info", &TensorFileReader::info)
      .def_prop_ro("num_frames", &TensorFileReader::num_frames)
      .def("duration", &TensorFileReader::duration)
      .def_prop_ro("sensor_size", &TensorFileReader::sensor_size)
      .def("last_timestamps", &TensorFileReader::last_timestamps)
      .def(
          "check",
          [](const TensorFileReader& r, const std::string& name, std::optional<TensorMode> mode,
             std::uint32_t delta_t, std::int64_t n_events, int channels, int height, int width) {
            r.check({name, mode, delta_t, n_events, channels, height, width});
          },
          nb::arg("events_to_tensor") = "", nb::arg("mode") = nb::none(), nb::arg("delta_t") = 0,
          nb::arg("n_events") = 0, nb::arg("channels") = 0, nb::arg("height") = 0, nb::arg("width") = 0)
      .def(
          "read_frames",
          [](const TensorFileReader& r, std::int64_t first, std::int64_t count, int height, int width,
             FloatArray out) {
            nb::gil_scoped_release unlocked;
            r.read_frames(first, count, height, width, {out.data(), out.size()});
          },
          nb::arg("first"), nb::arg("count"), nb::arg("height"), nb::arg("width"), nb::arg("out"))
      .def(
          "read_window",
          [](const TensorFileReader& r, Timestamp t0, Timestamp t1, int height, int width, FloatArray out) {
            nb::gil_scoped_release unlocked;
            return r.read_window(t0, t1, height, width, {out.data(), out.size()});
          },
          nb::arg("t0"), nb::arg("t1"), nb::arg("height"), nb::arg("width"), nb::arg("out"))
      .def(
          "read_raw",
          [](const TensorFileReader& r, std::int64_t first, std::int64_t count,
             nb::ndarray<nb::c_contig, nb::device::cpu> out) {
            auto* bytes = static_cast<std::byte*>(out.data());
            const std::size_t n = out.nbytes();
            nb::gil_scoped_release unlocked;
            r.read_raw(first, count, {bytes, n});
          },
          nb::arg("first"), nb::arg("count"), nb::arg("out"));
}

}  // namespace
#endif  // EVLOADER_WITH_HDF5

// Nothing without HDF5: the resizer is compiled with the tensor-file module.
void bind_tensor_file([[maybe_unused]] nb::module_& m) {
#ifdef EVLOADER_WITH_HDF5
  bind_area_resize(m);
  bind_tensor_file_classes(m);
#endif
}

}  // namespace evloader::python
