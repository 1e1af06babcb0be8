// SPDX-License-Identifier: Apache-2.0
// Bindings of the preprocess module: the kernel registry, kernels writing in place into caller-owned numpy
// arrays (checked, never copied, GIL released) and the visualisations.
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <string>

#include "bindings.hpp"
#include "evloader/core/error.hpp"
#include "evloader/preprocess/preprocessor.hpp"
#include "evloader/preprocess/viz.hpp"

namespace evloader::python {

namespace {

using AnyArray = nb::ndarray<nb::device::cpu>;
using EventBytes = nb::ndarray<std::uint8_t, nb::c_contig, nb::device::cpu>;
using Image = nb::ndarray<nb::numpy, std::uint8_t>;

DType dtype_of(const AnyArray& a, const char* what) {
  const nb::dlpack::dtype d = a.dtype();
  if (d == nb::dtype<float>()) return DType::float32;
  if (d == nb::dtype<double>()) return DType::float64;
  if (d == nb::dtype<std::int8_t>()) return DType::int8;
  if (d == nb::dtype<std::uint8_t>()) return DType::uint8;
  if (d == nb::dtype<std::int16_t>()) return DType::int16;
  if (d == nb::dtype<std::int32_t>()) return DType::int32;
  if (d == nb::dtype<std::int64_t>()) return DType::int64;
  throw ConfigError(std::string(what) +
                    ": unsupported dtype (use float32, float64, int8, uint8, int16, int32 or int64)");
}

bool c_contiguous(const AnyArray& a) {
  std::int64_t expected = 1;
  for (std::size_t i = a.ndim(); i-- > 0;) {
    if (a.shape(i) != 1 && a.stride(i) != expected) return false;
    expected *= static_cast<std::int64_t>(a.shape(i));
  }
  return true;
}

// A view of a caller's array as [T, C, H, W] (or a frame [1, C, H, W] for 3-D input), without copying.
TensorView view_of(const AnyArray& a, std::size_t ndim, const char* what) {
  if (a.ndim() != ndim)
    throw ConfigError(std::string(what) + ": expected a " + std::to_string(ndim) + "-D array, got " +
                      std::to_string(a.ndim()) + "-D");
  if (!c_contiguous(a)) throw ConfigError(std::string(what) + ": the array must be C-contiguous");
  std::array<std::int64_t, 4> shape{1, 1, 1, 1};
  for (std::size_t i = 0; i < ndim; ++i) shape[4 - ndim + i] = static_cast<std::int64_t>(a.shape(i));
  return {a.data(), dtype_of(a, what), shape};
}

Kwargs to_kwargs(const nb::dict& d) {
  Kwargs out;
  for (auto [key, value] : d) {
    const std::string k = nb::cast<std::string>(nb::str(key));
    if (value.is_none()) {
      out[k] = std::monostate{};
    } else if (PyBool_Check(value.ptr())) {
      out[k] = nb::cast<bool>(value);
    } else if (PyLong_Check(value.ptr())) {
      long long v = 0;
      if (!nb::try_cast<long long>(value, v)) throw ConfigError("kwarg '" + k + "': integer out of range");
      out[k] = static_cast<std::int64_t>(v);
    } else if (PyFloat_Check(value.ptr())) {
      out[k] = nb::cast<double>(value);
    } else if (PyUnicode_Check(value.ptr())) {
      out[k] = nb::cast<std::string>(value);
    } else {
      throw ConfigError("kwarg '" + k + "': unsupported value type " +
                        nb::cast<std::string>(nb::str(value.type().attr("__name__"))) +
                        " (use None, bool, int, float or str)");
    }
  }
  return out;
}

nb::dict from_kwargs(const Kwargs& kw) {
  nb::dict d;
  for (const auto& [k, v] : kw) {
    const char* key = k.c_str();
    if (std::holds_alternative<std::monostate>(v)) {
      d[key] = nb::none();
    } else if (const auto* b = std::get_if<bool>(&v)) {
      d[key] = *b;
    } else if (const auto* i = std::get_if<std::int64_t>(&v)) {
      d[key] = *i;
    } else if (const auto* f = std::get_if<double>(&v)) {
      d[key] = *f;
    } else {
      d[key] = std::get<std::string>(v);
    }
  }
  return d;
}

// A fresh uint8 numpy array of the given shape, filled by fn(span) without the GIL.
template <class Fn>
Image new_image(std::initializer_list<std::size_t> shape, Fn&& fn) {
  std::size_t n = 1;
  for (std::size_t s : shape) n *= s;
  auto* buffer = new std::uint8_t[n > 0 ? n : 1];
  nb::capsule owner(buffer, [](void* p) noexcept { delete[] static_cast<std::uint8_t*>(p); });
  {
    nb::gil_scoped_release unlocked;
    fn(std::span<std::uint8_t>(buffer, n));
  }
  return Image(buffer, shape.size(), shape.begin(), owner);
}

// The frame [1, C, H, W] of a 3-D [C, H, W] array.
TensorView frame_of(const AnyArray& im, const char* what) { return view_of(im, 3, what); }

std::size_t dim(const TensorView& v, int i) {
  return static_cast<std::size_t>(v.shape[static_cast<std::size_t>(i)]);
}

void bind_viz(nb::module_& m) {
  m.def(
      "viz_rgb",
      [](const std::string& which, const AnyArray& im, bool flag, double value) {
        const TensorView f = frame_of(im, which.c_str());
        return new_image({dim(f, 2), dim(f, 3), 3}, [&](std::span<std::uint8_t> rgb) {
          if (which == "viz_histo_binarized") {
            viz_histo_binarized(f, rgb);
          } else if (which == "viz_diff_binarized") {
            viz_diff_binarized(f, rgb);
          } else if (which == "viz_timesurface") {
            viz_timesurface(f, rgb);
          } else if (which == "viz_event_cube_rgb") {
            viz_event_cube_rgb(f, rgb, flag);
          } else if (which == "viz_multichannel_timesurface") {
            viz_multichannel_timesurface(f, rgb, flag);
          } else if (which == "viz_histo_rgb") {
            viz_histo_rgb(f, rgb);
          } else if (which == "viz_histo_filtered") {
            viz_histo_filtered(f, rgb, value);
          } else {
            visualize(which, f, rgb);
          }
        });
      },
      nb::arg("which"), nb::arg("im"), nb::arg("flag") = false, nb::arg("value") = 0.5,
      "An [H, W, 3] RGB uint8 image of a C-contiguous [C, H, W] frame (see evloader.preprocessing).");
  m.def(
      "viz_gray",
      [](const std::string& which, const AnyArray& im) {
        const TensorView f = frame_of(im, which.c_str());
        return new_image({dim(f, 2), dim(f, 3)}, [&](std::span<std::uint8_t> gray) {
          if (which == "viz_histo") {
            viz_histo(f, gray);
          } else if (which == "viz_diff") {
            viz_diff(f, gray);
          } else {
            throw ConfigError("unknown gray visualisation '" + which + "'");
          }
        });
      },
      nb::arg("which"), nb::arg("im"), "An [H, W] uint8 image of a C-contiguous [C, H, W] frame.");
  m.def("jet_colormap", [] {
    return new_image({256, 3}, [](std::span<std::uint8_t> rgb) {
      for (std::size_t i = 0; i < 256; ++i)
        for (std::size_t c = 0; c < 3; ++c) rgb[3 * i + c] = jet_colormap()[i][c];
    });
  });
}

}  // namespace

void bind_preprocess(nb::module_& m) {
  nb::class_<Preprocessor>(m, "Preprocessor")
      .def_prop_ro("name", &Preprocessor::name)
      .def_prop_ro("channels", &Preprocessor::channels)
      .def_prop_ro("dtype", [](const Preprocessor& p) { return std::string(dtype_name(p.dtype())); })
      .def_prop_ro("kwargs", [](const Preprocessor& p) { return from_kwargs(p.kwargs()); })
      .def(
          "run",
          [](const Preprocessor& p, const EventBytes& events, const AnyArray& out, std::int64_t total, int ds,
             bool reset) {
            const auto records = numpy_to_records<EventCD>(events);
            const TensorView view = view_of(out, 4, p.name().c_str());
            nb::gil_scoped_release unlocked;
            p.run(records, view, total, ds, reset);
          },
          nb::arg("events"), nb::arg("out").noconvert(), nb::arg("total_tbins_delta_t"),
          nb::arg("downsampling_factor") = 0, nb::arg("reset") = true,
          "Accumulate EventCD records (uint8 bytes) into the C-contiguous [T, C, H, W] array `out`, in "
          "place.");
  m.def(
      "make_preprocessor",
      [](const std::string& name, const nb::dict& kwargs) {
        return make_preprocessor(name, to_kwargs(kwargs));
      },
      nb::arg("name"), nb::arg("kwargs") = nb::dict());
  m.def("preprocessor_names", &preprocessor_names);
  m.def("preprocessor_default_kwargs",
        [](const std::string& name) { return from_kwargs(preprocessor_default_kwargs(name)); });
  m.def("preprocessor_channels", &preprocessor_channels);
  bind_viz(m);
}

}  // namespace evloader::python
