// SPDX-License-Identifier: Apache-2.0
// metavision_ml's box processing (spec §5) with numpy's float32 arithmetic reproduced operation by
// operation, and the load_boxes pipeline over a const BoxStore.
#include "evloader/labels/box_processing.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "evloader/core/error.hpp"

// Bit-compatibility with numpy needs every float32 operation rounded on its own: no fused multiply-add.
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace evloader {

namespace {

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

// np.maximum / np.minimum: NaN propagates (std::max would return the other operand) and a tie returns the
// second operand; np.clip keeps the value on a tie (-0.0 stays -0.0), NaN included.
inline float np_max(float a, float b) noexcept {
  return (std::isnan(a) || std::isnan(b)) ? kNan : (a > b ? a : b);
}
inline float np_min(float a, float b) noexcept {
  return (std::isnan(a) || std::isnan(b)) ? kNan : (a < b ? a : b);
}
inline float np_clip(float v, float lo, float hi) noexcept { return v < lo ? lo : (v > hi ? hi : v); }

// numpy's float32 -> int16 cast on x86-64: truncate to int32 (NaN and out-of-range values give INT32_MIN),
// then keep the low 16 bits. Written without undefined behaviour.
inline std::int32_t np_float_to_int16(float v) noexcept {
  if (!(v >= -2147483648.0f && v < 2147483648.0f)) return 0;
  const auto wide = static_cast<std::int64_t>(v);
  return static_cast<std::int16_t>(static_cast<std::uint16_t>(static_cast<std::uint64_t>(wide) & 0xFFFFu));
}

// Python's int(x) for a finite double, saturated to int64.
inline std::int64_t trunc_to_int64(double v) noexcept {
  if (std::isnan(v)) return 0;
  if (v >= 9.2e18) return std::numeric_limits<std::int64_t>::max();
  if (v <= -9.2e18) return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(v);
}

// Bin of time t: start + k*dt < t <= start + (k+1)*dt, or -1 outside [0, num_tbins).
inline std::int64_t bin_of(Timestamp t, Timestamp start, Timestamp delta_t, int num_tbins) noexcept {
  if (t <= start) return -1;
  // Exact even when t - start overflows int64: t > start, so the unsigned difference is the true one.
  const std::uint64_t elapsed = static_cast<std::uint64_t>(t) - static_cast<std::uint64_t>(start);
  const std::uint64_t k = (elapsed - 1) / static_cast<std::uint64_t>(delta_t);
  return k < static_cast<std::uint64_t>(num_tbins) ? static_cast<std::int64_t>(k) : -1;
}

inline std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

struct Corners {
  float x1, y1, x2, y2, area;
};

inline Corners corners_of(const EventBbox& b) noexcept {
  Corners c;
  c.x1 = b.x;
  c.y1 = b.y;
  c.x2 = b.x + b.w;
  c.y2 = b.y + b.h;
  c.area = ((c.x2 - c.x1) + 1.0f) * ((c.y2 - c.y1) + 1.0f);
  return c;
}

// True when metavision's NMS keeps `other` next to the kept box `kept` (IoU <= threshold, in float32).
inline bool survives(const Corners& kept, const Corners& other, float threshold) noexcept {
  const float xx1 = np_max(kept.x1, other.x1);
  const float yy1 = np_max(kept.y1, other.y1);
  const float xx2 = np_min(kept.x2, other.x2);
  const float yy2 = np_min(kept.y2, other.y2);
  const float w = np_max(0.0f, (xx2 - xx1) + 1.0f);
  const float h = np_max(0.0f, (yy2 - yy1) + 1.0f);
  const float inter = w * h;
  const float ovr = inter / ((kept.area + other.area) - inter);
  return ovr <= threshold;  // NaN overlaps suppress, as numpy's `ovr <= thresh` does
}

template <class T, class Less>
std::vector<std::int64_t> descending_order_impl(std::span<const T> scores, Less less) {
  std::vector<std::int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return less(scores[static_cast<std::size_t>(a)], scores[static_cast<std::size_t>(b)]);
  });
  std::reverse(order.begin(), order.end());
  return order;
}

void check_order(std::span<const std::int64_t> order, std::size_t n) {
  for (std::int64_t i : order)
    if (i < 0 || static_cast<std::uint64_t>(i) >= n)
      throw ConfigError("nms: index " + std::to_string(i) + " is out of range for " + std::to_string(n) +
                        " boxes");
}

}  // namespace

TensorView TensorView::contiguous(const float* data, std::int64_t t, std::int64_t c, std::int64_t h,
                                  std::int64_t w) noexcept {
  return TensorView{data, {t, c, h, w}, {c * h * w, h * w, w, 1}};
}

TensorView TensorView::batch_item(const float* batch, std::int64_t t, std::int64_t n, std::int64_t c,
                                  std::int64_t h, std::int64_t w, std::int64_t slot) noexcept {
  const std::int64_t frame = c * h * w;
  return TensorView{batch ? batch + slot * frame : nullptr, {t, c, h, w}, {n * frame, h * w, w, 1}};
}

std::vector<std::int64_t> nms_in_order(std::span<const EventBbox> boxes, std::span<const std::int64_t> order,
                                       double iou_threshold) {
  check_order(order, boxes.size());
  const auto threshold = static_cast<float>(iou_threshold);  // numpy compares float32 with a float32 scalar
  std::vector<Corners> visit(order.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    visit[i] = corners_of(boxes[static_cast<std::size_t>(order[i])]);
  std::vector<std::uint8_t> alive(order.size(), 1);
  std::vector<std::int64_t> keep;
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (!alive[i]) continue;
    keep.push_back(order[i]);
    for (std::size_t j = i + 1; j < order.size(); ++j)
      if (alive[j] && !survives(visit[i], visit[j], threshold)) alive[j] = 0;
  }
  std::sort(keep.begin(), keep.end());
  return keep;
}

std::vector<std::int64_t> descending_order(std::span<const double> scores) {
  // Ascending with NaN last (numpy), reversed: NaN first, ties from the last index to the first.
  return descending_order_impl(scores,
                               [](double a, double b) { return a < b || (std::isnan(b) && !std::isnan(a)); });
}

std::vector<std::int64_t> descending_order(std::span<const std::int64_t> scores) {
  return descending_order_impl(scores, [](std::int64_t a, std::int64_t b) { return a < b; });
}

std::vector<std::int64_t> nms_by_class_in_order(std::span<const EventBbox> boxes,
                                                std::span<const std::int64_t> order, double iou_threshold) {
  check_order(order, boxes.size());
  // Group the visiting order by class, keeping its relative order inside each class.
  std::vector<std::int64_t> grouped(order.begin(), order.end());
  std::stable_sort(grouped.begin(), grouped.end(), [&](std::int64_t a, std::int64_t b) {
    return boxes[static_cast<std::size_t>(a)].class_id < boxes[static_cast<std::size_t>(b)].class_id;
  });
  std::vector<std::int64_t> keep;
  for (std::size_t begin = 0; begin < grouped.size();) {
    const std::uint32_t cls = boxes[static_cast<std::size_t>(grouped[begin])].class_id;
    std::size_t end = begin;
    while (end < grouped.size() && boxes[static_cast<std::size_t>(grouped[end])].class_id == cls) ++end;
    auto kept = nms_in_order(boxes, std::span<const std::int64_t>(grouped).subspan(begin, end - begin),
                             iou_threshold);
    keep.insert(keep.end(), kept.begin(), kept.end());
    begin = end;
  }
  std::sort(keep.begin(), keep.end());
  return keep;
}

std::vector<BoxBuffer> split_boxes(std::span<const EventBbox> boxes, Timestamp batch_start_time,
                                   Timestamp delta_t, int num_tbins, bool apply_nms) {
  if (delta_t <= 0)
    throw ConfigError("split_boxes: delta_t must be positive, got " + std::to_string(delta_t));
  if (num_tbins < 0) throw ConfigError("split_boxes: num_tbins must not be negative");
  std::vector<BoxBuffer> bins(static_cast<std::size_t>(num_tbins));
  for (const EventBbox& b : boxes) {
    const std::int64_t k = bin_of(b.t, batch_start_time, delta_t, num_tbins);
    if (k >= 0) bins[static_cast<std::size_t>(k)].push_back(b);
  }
  if (!apply_nms) return bins;
  std::vector<std::int64_t> times;
  for (BoxBuffer& bin : bins) {
    if (bin.size() < 2) continue;
    times.resize(bin.size());
    for (std::size_t i = 0; i < bin.size(); ++i) times[i] = bin[i].t;
    const auto keep = nms_in_order(bin.view(), descending_order(std::span<const std::int64_t>(times)), 0.5);
    if (keep.size() == bin.size()) continue;
    std::size_t out = 0;
    for (std::int64_t i : keep) bin[out++] = bin[static_cast<std::size_t>(i)];  // keep is increasing
    bin.truncate(out);
  }
  return bins;
}

std::vector<std::uint8_t> could_frame_contain_valid_gt(Timestamp batch_start_time, Timestamp duration,
                                                       Timestamp labelling_delta_t, int num_tbins) {
  if (labelling_delta_t <= 0)
    throw ConfigError("could_frame_contain_valid_gt: labelling_delta_t must be positive, got " +
                      std::to_string(labelling_delta_t));
  if (num_tbins <= 0) throw ConfigError("could_frame_contain_valid_gt: num_tbins must be positive");
  if (duration % num_tbins != 0)
    throw ConfigError("could_frame_contain_valid_gt: duration " + std::to_string(duration) +
                      " is not a multiple of num_tbins " + std::to_string(num_tbins));
  const Timestamp dt = duration / num_tbins;
  std::vector<std::uint8_t> out(static_cast<std::size_t>(num_tbins), 0);
  for (int k = 0; k < num_tbins; ++k) {
    const Timestamp lo = batch_start_time + k * dt;
    // A label instant m * labelling_delta_t lies in (lo, lo + dt] exactly when the floors differ.
    out[static_cast<std::size_t>(k)] =
        floor_div(lo + dt, labelling_delta_t) > floor_div(lo, labelling_delta_t);
  }
  return out;
}

BoxBuffer clip_boxes(std::span<EventBbox> boxes, double width_orig, double height_orig) {
  const auto width = static_cast<float>(width_orig);
  const auto height = static_cast<float>(height_orig);
  BoxBuffer kept;
  kept.reserve(boxes.size());
  for (EventBbox& b : boxes) {
    const float xmax = b.x + b.w;
    const float ymax = b.y + b.h;
    b.x = np_clip(b.x, 0.0f, width);
    b.y = np_clip(b.y, 0.0f, height);
    b.w = np_clip(xmax, 0.0f, width) - b.x;
    b.h = np_clip(ymax, 0.0f, height) - b.y;
    if (b.w > 2.0f && b.h > 2.0f) kept.push_back(b);
  }
  return kept;
}

void rescale_boxes(std::span<EventBbox> boxes, double width_orig, double height_orig, double width_dst,
                   double height_dst) {
  // numpy multiplies the float32 fields by the Python ratio rounded to float32.
  const auto w_ratio = static_cast<float>(width_dst / width_orig);
  const auto h_ratio = static_cast<float>(height_dst / height_orig);
  for (EventBbox& b : boxes) {
    b.w *= w_ratio;
    b.h *= h_ratio;
    b.x *= w_ratio;
    b.y *= h_ratio;
  }
}

BoxBuffer filter_boxes(std::span<const EventBbox> boxes, std::span<const std::int64_t> class_lookup,
                       std::span<const std::int64_t> idx_to_filter, bool ignore_filtered) {
  const std::size_t n = boxes.size();
  std::vector<std::int64_t> classes(n);
  std::vector<std::uint8_t> keep(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t id = boxes[i].class_id;
    if (id >= class_lookup.size())
      throw ConfigError("filter_boxes: box class_id " + std::to_string(id) +
                        " has no entry in class_lookup (size " + std::to_string(class_lookup.size()) + ")");
    classes[i] = class_lookup[id];
    if (classes[i] == 0)
      throw ConfigError("filter_boxes: class_lookup maps class_id " + std::to_string(id) +
                        " to 0, which is reserved for the background");
    keep[i] = classes[i] > 0;
  }
  for (std::int64_t idx : idx_to_filter) {
    const std::int64_t i = idx < 0 ? idx + static_cast<std::int64_t>(n) : idx;
    if (i < 0 || static_cast<std::uint64_t>(i) >= n)
      throw ConfigError("filter_boxes: index " + std::to_string(idx) + " is out of range for " +
                        std::to_string(n) + " boxes");
    if (ignore_filtered)
      classes[static_cast<std::size_t>(i)] = -1;  // kept, but ignored by the loss
    else
      keep[static_cast<std::size_t>(i)] = 0;
  }
  BoxBuffer out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!keep[i]) continue;
    EventBbox b = boxes[i];
    b.class_id =
        static_cast<std::uint32_t>(static_cast<std::uint64_t>(classes[i]));  // -1 -> 0xFFFFFFFF, as numpy
    out.push_back(b);
  }
  return out;
}

std::vector<std::int64_t> filter_empty_tensor(const TensorView& tensor, std::span<const EventBbox> boxes,
                                              double area_box_filter, int shift, double time_per_bin,
                                              Timestamp batch_start_time,
                                              std::optional<double> last_time_to_filter) {
  if (!(time_per_bin > 0)) throw ConfigError("filter_empty_tensor: time_per_bin must be positive");
  if (shift < 0 || shift > 15)
    throw ConfigError("filter_empty_tensor: shift must be in [0, 15], got " + std::to_string(shift));
  for (std::int64_t d : tensor.shape)
    if (d < 0) throw ConfigError("filter_empty_tensor: negative tensor dimension");
  const std::int64_t num_t = tensor.shape[0], num_c = tensor.shape[1], height = tensor.shape[2],
                     width = tensor.shape[3];
  if (tensor.data == nullptr && num_t * num_c * height * width != 0)
    throw ConfigError("filter_empty_tensor: the tensor has no data");
  // The lookback window is 100 ms of bins; at least the box's own bin (metavision's empty slice for bins
  // longer than 100 ms is a numpy error).
  const std::int64_t lookback = std::max<std::int64_t>(1, trunc_to_int64(100000.0 / time_per_bin));

  std::vector<std::int64_t> filtered;
  std::vector<std::uint8_t> seen;
  for (std::size_t i = 0; i < boxes.size(); ++i) {
    const EventBbox& b = boxes[i];
    const double ts = static_cast<double>(b.t) - static_cast<double>(batch_start_time);
    if (last_time_to_filter && ts > *last_time_to_filter) continue;
    const std::int64_t tmax = std::min(trunc_to_int64(ts / time_per_bin) + 1, num_t);
    const std::int64_t tmin = std::max<std::int64_t>(0, tmax - lookback);
    const std::int64_t xmin = std::max(0, np_float_to_int16(b.x) >> shift);
    const std::int64_t xmax = np_float_to_int16(b.x + b.w) >> shift;
    const std::int64_t ymin = std::max(0, np_float_to_int16(b.y) >> shift);
    const std::int64_t ymax = np_float_to_int16(b.y + b.h) >> shift;
    if (ymax <= ymin || xmax <= xmin) {  // zero-area box
      filtered.push_back(static_cast<std::int64_t>(i));
      continue;
    }
    // The part of the box inside the tensor (numpy slicing clamps the same way).
    const std::int64_t y0 = std::min(ymin, height), y1 = std::min(ymax, height);
    const std::int64_t x0 = std::min(xmin, width), x1 = std::min(xmax, width);
    const std::int64_t box_h = y1 - y0, box_w = x1 - x0;
    if (box_h <= 0 || box_w <= 0) {  // nothing of it is visible
      filtered.push_back(static_cast<std::int64_t>(i));
      continue;
    }
    if (tmax <= tmin) continue;  // the box lies before the tensor: no evidence either way
    const double needed = area_box_filter * static_cast<double>(box_w) * static_cast<double>(box_h);
    seen.assign(static_cast<std::size_t>(box_w * box_h), 0);
    std::int64_t count = 0;
    for (std::int64_t t = tmin; t < tmax && static_cast<double>(count) < needed; ++t)
      for (std::int64_t c = 0; c < num_c && static_cast<double>(count) < needed; ++c)
        for (std::int64_t y = y0; y < y1; ++y) {
          const float* row =
              tensor.data + t * tensor.strides[0] + c * tensor.strides[1] + y * tensor.strides[2];
          std::uint8_t* mark = seen.data() + (y - y0) * box_w;
          for (std::int64_t x = x0; x < x1; ++x) {
            const float v = row[x * tensor.strides[3]];
            // |v| > 0: non-zero and not NaN.
            if ((v > 0.0f || v < 0.0f) && !mark[x - x0]) {
              mark[x - x0] = 1;
              ++count;
            }
          }
        }
    if (static_cast<double>(count) < needed) filtered.push_back(static_cast<std::int64_t>(i));
  }
  return filtered;
}

int downsampling_shift(int sensor_width, int network_width) {
  if (sensor_width <= 0 || network_width <= 0)
    throw ConfigError("load_boxes: sensor and tensor widths must be positive, got " +
                      std::to_string(sensor_width) + " and " + std::to_string(network_width));
  const double ratio = std::log2(static_cast<double>(sensor_width) / static_cast<double>(network_width));
  const auto shift = static_cast<int>(std::trunc(ratio));
  if (shift < 0 || shift > 15)
    throw ConfigError("load_boxes: a tensor " + std::to_string(network_width) +
                      " pixels wide cannot come from a " + std::to_string(sensor_width) +
                      " pixels wide sensor");
  return shift;
}

BinnedBoxes load_boxes(const BoxStore& store, Timestamp batch_start_time, Timestamp duration,
                       const TensorView& tensor, const LoadBoxesOptions& options) {
  const std::int64_t num_t = tensor.shape[0];
  const std::int64_t net_h = tensor.shape[2], net_w = tensor.shape[3];
  if (num_t <= 0 || num_t > std::numeric_limits<int>::max() || net_h <= 0 || net_w <= 0)
    throw ConfigError("load_boxes: the tensor must have a positive shape [T, C, H, W]");
  if (options.sensor_width <= 0 || options.sensor_height <= 0)
    throw ConfigError("load_boxes: the sensor size must be positive, got " +
                      std::to_string(options.sensor_width) + "x" + std::to_string(options.sensor_height));
  if (options.class_lookup.empty()) throw ConfigError("load_boxes: class_lookup is empty");
  if (duration < num_t)
    throw ConfigError("load_boxes: duration " + std::to_string(duration) +
                      " is shorter than one µs per time bin");
  const int num_tbins = static_cast<int>(num_t);
  const Timestamp dt = duration / num_t;
  const int shift = downsampling_shift(options.sensor_width, static_cast<int>(net_w));

  BinnedBoxes out;
  const std::span<const EventBbox> window = store.window(batch_start_time, duration);
  // A bin is labelled when any box falls in it, before any filtering: an "empty"-class box marks a frame
  // that was annotated but holds no object.
  out.frame_is_labeled.assign(static_cast<std::size_t>(num_tbins), 0);
  for (const EventBbox& b : window) {
    const std::int64_t k = bin_of(b.t, batch_start_time, dt, num_tbins);
    if (k >= 0) out.frame_is_labeled[static_cast<std::size_t>(k)] = 1;
  }
  if (window.empty()) {
    out.bins.resize(static_cast<std::size_t>(num_tbins));
    return out;
  }

  BoxBuffer boxes;
  boxes.assign(window);  // the store stays untouched
  boxes = clip_boxes(boxes.view(), options.sensor_width, options.sensor_height);

  std::vector<std::int64_t> empty_boxes;
  if (tensor.data != nullptr && options.area_box_filter > 0)
    empty_boxes = filter_empty_tensor(tensor, boxes.view(), options.area_box_filter, shift,
                                      static_cast<double>(dt), batch_start_time,
                                      static_cast<double>(options.filter_empty_until - batch_start_time));
  boxes = filter_boxes(boxes.view(), options.class_lookup, empty_boxes, false);
  out.bins = split_boxes(boxes.view(), batch_start_time, dt, num_tbins, true);

  // numpy compares the float32 sizes with the Python thresholds rounded to float32.
  const double diag = options.min_box_diag_network;
  const auto min_diag_sq = static_cast<float>(diag * diag);
  const auto min_side = static_cast<float>(diag / 3.0);
  const auto max_w = static_cast<float>(0.8 * static_cast<double>(net_w));
  for (BoxBuffer& bin : out.bins) {
    rescale_boxes(bin.view(), options.sensor_width, options.sensor_height, static_cast<double>(net_w),
                  static_cast<double>(net_h));
    std::size_t kept = 0;
    for (const EventBbox& b : bin) {
      const float diag_sq = (b.w * b.w) + (b.h * b.h);
      if (diag_sq >= min_diag_sq && b.w >= min_side && b.h >= min_side && b.w <= max_w) bin[kept++] = b;
    }
    bin.truncate(kept);
  }
  return out;
}

}  // namespace evloader
