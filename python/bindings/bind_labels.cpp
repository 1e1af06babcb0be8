// SPDX-License-Identifier: Apache-2.0
// Bindings of the labels module (evloader._core.labels): box stores and the cache, box processing, the
// load_boxes pipeline. Box arrays cross as uint8 [n, 40] buffers (EventBbox records) without copies; the
// GIL is released while C++ works.
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <optional>

#include "bindings.hpp"
#include "evloader/core/error.hpp"
#include "evloader/labels/box_processing.hpp"
#include "evloader/labels/box_store.hpp"

namespace evloader::python {

namespace {

using BoxBytesIn = nb::ndarray<const std::uint8_t, nb::c_contig, nb::device::cpu>;
using BoxBytesInOut = nb::ndarray<std::uint8_t, nb::c_contig, nb::device::cpu>;
using Int64In = nb::ndarray<const std::int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using TensorIn = nb::ndarray<const float, nb::ndim<4>, nb::device::cpu>;
using BoxArray = nb::ndarray<nb::numpy, std::uint8_t, nb::ndim<2>>;

std::span<const EventBbox> boxes_in(const BoxBytesIn& bytes) {
  if (bytes.size() % sizeof(EventBbox) != 0)
    throw nb::value_error("box array has a byte size that is not a multiple of 40 (EventBbox)");
  return {reinterpret_cast<const EventBbox*>(bytes.data()), bytes.size() / sizeof(EventBbox)};
}

std::span<EventBbox> boxes_in_out(BoxBytesInOut& bytes) {
  if (bytes.size() % sizeof(EventBbox) != 0)
    throw nb::value_error("box array has a byte size that is not a multiple of 40 (EventBbox)");
  return {reinterpret_cast<EventBbox*>(bytes.data()), bytes.size() / sizeof(EventBbox)};
}

std::span<const std::int64_t> ints_in(const Int64In& a) { return {a.data(), a.size()}; }

template <class T>
nb::ndarray<nb::numpy, T, nb::ndim<1>> vector_to_numpy(std::vector<T>&& values) {
  auto* owned = new std::vector<T>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  static T empty_storage[1] = {};
  T* data = owned->empty() ? empty_storage : owned->data();
  return nb::ndarray<nb::numpy, T, nb::ndim<1>>(data, {owned->size()}, owner);
}

nb::ndarray<nb::numpy, bool, nb::ndim<1>> mask_to_numpy(const std::vector<std::uint8_t>& mask) {
  // A plain bool array (std::vector<bool> is packed), one byte per value as numpy's bool.
  auto* owned = new bool[mask.empty() ? 1 : mask.size()];
  for (std::size_t i = 0; i < mask.size(); ++i) owned[i] = mask[i] != 0;
  nb::capsule owner(owned, [](void* p) noexcept { delete[] static_cast<bool*>(p); });
  return nb::ndarray<nb::numpy, bool, nb::ndim<1>>(owned, {mask.size()}, owner);
}

nb::list bins_to_list(std::vector<BoxBuffer>&& bins) {
  nb::list out;
  for (BoxBuffer& bin : bins) out.append(records_to_numpy(std::move(bin)));
  return out;
}

TensorView tensor_view(const TensorIn& tensor) {
  TensorView view;
  view.data = tensor.data();
  for (std::size_t i = 0; i < 4; ++i) {
    view.shape[i] = static_cast<std::int64_t>(tensor.shape(i));
    view.strides[i] = tensor.stride(i);
  }
  return view;
}

// A store as Python holds it (the C++ store is shared with the cache and the loader).
struct PyBoxStore {
  std::shared_ptr<const BoxStore> store;
};

BoxArray copy_boxes(std::span<const EventBbox> boxes) {
  BoxBuffer out;
  out.append(boxes);
  return records_to_numpy(std::move(out));
}

}  // namespace

void bind_labels(nb::module_& parent) {
  nb::module_ m = parent.def_submodule("labels", "Box labels: stores, windows, NMS, filters, load_boxes");

  m.def(
      "label_path_for", [](const std::filesystem::path& p) { return label_path_for(p).string(); },
      nb::arg("recording"));

  nb::class_<PyBoxStore>(m, "BoxStore")
      .def_static(
          "from_boxes",
          [](const BoxBytesIn& bytes) {
            auto boxes = boxes_in(bytes);
            return PyBoxStore{
                std::make_shared<const BoxStore>(std::vector<EventBbox>(boxes.begin(), boxes.end()))};
          },
          nb::arg("boxes"))
      .def("__len__", [](const PyBoxStore& s) { return s.store->size(); })
      .def_prop_ro("path", [](const PyBoxStore& s) { return s.store->path().string(); })
      .def("boxes", [](const PyBoxStore& s) { return copy_boxes(s.store->boxes()); })
      .def(
          "window",
          [](const PyBoxStore& s, Timestamp start, Timestamp duration) {
            return copy_boxes(s.store->window(start, duration));
          },
          nb::arg("start"), nb::arg("duration"))
      .def(
          "range",
          [](const PyBoxStore& s, Timestamp after, Timestamp until) {
            return copy_boxes(s.store->range(after, until));
          },
          nb::arg("after"), nb::arg("until"))
      .def("__repr__", [](const PyBoxStore& s) {
        return "BoxStore(" + std::to_string(s.store->size()) + " boxes, path='" + s.store->path().string() +
               "')";
      });

  m.def(
      "box_store",
      [](const std::filesystem::path& path) {
        std::shared_ptr<const BoxStore> store;
        {
          nb::gil_scoped_release unlocked;
          store = BoxStoreCache::global().get(path);
        }
        return PyBoxStore{std::move(store)};
      },
      nb::arg("path"), "The cached store of a box file (read once per process, again when it changes).");
  m.def("cache_clear", [] { BoxStoreCache::global().clear(); });
  m.def(
      "cache_set_capacity", [](std::size_t n) { BoxStoreCache::global().set_capacity(n); },
      nb::arg("capacity"));
  m.def("cache_info", [] {
    const BoxStoreCache& c = BoxStoreCache::global();
    nb::dict info;
    info["size"] = c.size();
    info["capacity"] = c.capacity();
    info["file_reads"] = c.file_reads();
    return info;
  });

  m.def(
      "nms",
      [](const BoxBytesIn& boxes, const Int64In& order, double iou) {
        auto b = boxes_in(boxes);
        std::vector<std::int64_t> keep;
        {
          nb::gil_scoped_release unlocked;
          keep = nms_in_order(b, ints_in(order), iou);
        }
        return vector_to_numpy(std::move(keep));
      },
      nb::arg("boxes"), nb::arg("order"), nb::arg("iou_thresh") = 0.5);
  m.def(
      "nms_by_class",
      [](const BoxBytesIn& boxes, const Int64In& order, double iou) {
        auto b = boxes_in(boxes);
        std::vector<std::int64_t> keep;
        {
          nb::gil_scoped_release unlocked;
          keep = nms_by_class_in_order(b, ints_in(order), iou);
        }
        return vector_to_numpy(std::move(keep));
      },
      nb::arg("boxes"), nb::arg("order"), nb::arg("iou_thresh") = 0.5);
  m.def(
      "split_boxes",
      [](const BoxBytesIn& boxes, Timestamp start, Timestamp delta_t, int num_tbins, bool apply_nms) {
        auto b = boxes_in(boxes);
        std::vector<BoxBuffer> bins;
        {
          nb::gil_scoped_release unlocked;
          bins = split_boxes(b, start, delta_t, num_tbins, apply_nms);
        }
        return bins_to_list(std::move(bins));
      },
      nb::arg("boxes"), nb::arg("batch_start_time"), nb::arg("delta_t"), nb::arg("num_tbins"),
      nb::arg("apply_nms") = true);
  m.def(
      "could_frame_contain_valid_gt",
      [](Timestamp start, Timestamp duration, Timestamp labelling_delta_t, int num_tbins) {
        return mask_to_numpy(could_frame_contain_valid_gt(start, duration, labelling_delta_t, num_tbins));
      },
      nb::arg("batch_start_time"), nb::arg("duration"), nb::arg("labelling_delta_t"), nb::arg("num_tbins"));
  m.def(
      "clip_boxes",
      [](BoxBytesInOut boxes, double width, double height) {
        auto b = boxes_in_out(boxes);
        BoxBuffer kept;
        {
          nb::gil_scoped_release unlocked;
          kept = clip_boxes(b, width, height);
        }
        return records_to_numpy(std::move(kept));
      },
      nb::arg("boxes").noconvert(), nb::arg("width_orig"), nb::arg("height_orig"));
  m.def(
      "rescale_boxes",
      [](BoxBytesInOut boxes, double wo, double ho, double wd, double hd) {
        auto b = boxes_in_out(boxes);
        nb::gil_scoped_release unlocked;
        rescale_boxes(b, wo, ho, wd, hd);
      },
      nb::arg("boxes").noconvert(), nb::arg("width_orig"), nb::arg("height_orig"), nb::arg("width_dst"),
      nb::arg("height_dst"));
  m.def(
      "filter_boxes",
      [](const BoxBytesIn& boxes, const Int64In& lookup, const Int64In& idx, bool ignore) {
        auto b = boxes_in(boxes);
        BoxBuffer out;
        {
          nb::gil_scoped_release unlocked;
          out = filter_boxes(b, ints_in(lookup), ints_in(idx), ignore);
        }
        return records_to_numpy(std::move(out));
      },
      nb::arg("boxes"), nb::arg("class_lookup"), nb::arg("idx_to_filter"), nb::arg("ignore_filtered"));
  m.def(
      "filter_empty_tensor",
      [](const TensorIn& tensor, const BoxBytesIn& boxes, double area, int shift, double time_per_bin,
         Timestamp start, std::optional<double> last) {
        auto b = boxes_in(boxes);
        const TensorView view = tensor_view(tensor);
        std::vector<std::int64_t> out;
        {
          nb::gil_scoped_release unlocked;
          out = filter_empty_tensor(view, b, area, shift, time_per_bin, start, last);
        }
        return vector_to_numpy(std::move(out));
      },
      nb::arg("tensor"), nb::arg("boxes"), nb::arg("area_box_filter"), nb::arg("shift"),
      nb::arg("time_per_bin"), nb::arg("batch_start_time"), nb::arg("last_time_to_filter").none());
  m.def(
      "load_boxes",
      [](const PyBoxStore& store, Timestamp start, Timestamp duration, std::optional<TensorIn> tensor,
         std::vector<std::int64_t> shape, int sensor_width, int sensor_height, const Int64In& lookup,
         double min_box_diag_network, double area_box_filter, Timestamp filter_empty_until) {
        TensorView view;
        if (tensor) {
          view = tensor_view(*tensor);
        } else {
          if (shape.size() != 4) throw nb::value_error("load_boxes: shape must be [T, C, H, W]");
          for (std::size_t i = 0; i < 4; ++i) view.shape[i] = shape[i];
        }
        LoadBoxesOptions options;
        options.sensor_width = sensor_width;
        options.sensor_height = sensor_height;
        options.class_lookup = ints_in(lookup);
        options.min_box_diag_network = min_box_diag_network;
        options.area_box_filter = area_box_filter;
        options.filter_empty_until = filter_empty_until;
        BinnedBoxes out;
        {
          nb::gil_scoped_release unlocked;
          out = load_boxes(*store.store, start, duration, view, options);
        }
        auto mask = mask_to_numpy(out.frame_is_labeled);
        return std::make_pair(bins_to_list(std::move(out.bins)), mask);
      },
      nb::arg("store"), nb::arg("batch_start_time"), nb::arg("duration"), nb::arg("tensor").none(),
      nb::arg("shape") = std::vector<std::int64_t>{}, nb::arg("sensor_width"), nb::arg("sensor_height"),
      nb::arg("class_lookup"), nb::arg("min_box_diag_network") = 0.0, nb::arg("area_box_filter") = 0.1,
      nb::arg("filter_empty_until") = 500000);
}

}  // namespace evloader::python
