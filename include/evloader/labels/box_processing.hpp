// SPDX-License-Identifier: Apache-2.0
// metavision_ml's box_processing (behaviour spec §5) in C++: time-bin splitting with the "latest box
// wins" NMS, clipping, rescaling, class lookup filtering, the empty-box filter on the input tensor, and the
// whole load_boxes pipeline as one thread-safe function over a const BoxStore.
//
// Arithmetic follows numpy's float32 evaluation of the Python original operation by operation (coordinates,
// areas and IoU in float32, thresholds rounded to float32), so results are bit-identical to it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "evloader/core/pod_buffer.hpp"
#include "evloader/core/types.hpp"
#include "evloader/io/npy.hpp"
#include "evloader/labels/box_store.hpp"

namespace evloader {

using BoxBuffer = PodBuffer<EventBbox>;

/// A read-only float32 tensor [T, C, H, W] with strides in elements (any layout, e.g. one item of a batch
/// [T, N, C, H, W]). A null `data` means "no tensor": load_boxes then skips the empty-box filter and uses
/// only the shape.
struct TensorView {
  const float* data = nullptr;
  std::array<std::int64_t, 4> shape{};    ///< T, C, H, W
  std::array<std::int64_t, 4> strides{};  ///< elements between neighbours along each axis

  /// A C-contiguous [T, C, H, W] view.
  [[nodiscard]] static TensorView contiguous(const float* data, std::int64_t t, std::int64_t c,
                                             std::int64_t h, std::int64_t w) noexcept;
  /// Item `slot` of a C-contiguous batch [T, N, C, H, W].
  [[nodiscard]] static TensorView batch_item(const float* batch, std::int64_t t, std::int64_t n,
                                             std::int64_t c, std::int64_t h, std::int64_t w,
                                             std::int64_t slot) noexcept;
  [[nodiscard]] float at(std::int64_t ti, std::int64_t ci, std::int64_t y, std::int64_t x) const noexcept {
    return data[ti * strides[0] + ci * strides[1] + y * strides[2] + x * strides[3]];
  }
};

// ---- NMS (spec §5.3) -----------------------------------------------------------------------------------

/// Greedy NMS with the "+1 pixel" convention (x2 = x + w, area = (x2 - x1 + 1) * (y2 - y1 + 1), overlap
/// widths max(0, min - max + 1)): boxes are visited in `order` (indices into `boxes`, highest score first);
/// each visited box is kept and suppresses the later ones whose IoU with it exceeds `iou_threshold`.
/// Returns the kept indices in increasing order. ConfigError for an index out of range.
[[nodiscard]] std::vector<std::int64_t> nms_in_order(std::span<const EventBbox> boxes,
                                                     std::span<const std::int64_t> order,
                                                     double iou_threshold = 0.5);
/// The visiting order of metavision's `scores.argsort()[::-1]` with a stable sort: decreasing score, ties
/// visited from the last index to the first (the later box wins), NaN scores first (numpy sorts them last).
[[nodiscard]] std::vector<std::int64_t> descending_order(std::span<const double> scores);
[[nodiscard]] std::vector<std::int64_t> descending_order(std::span<const std::int64_t> scores);
/// nms_in_order run separately on the boxes of each class_id (each class visited in `order` restricted
/// to it); returns the union of kept indices in increasing order. Unlike metavision_ml 4.2.1, which always
/// uses 0.5 here, `iou_threshold` is honoured (same result at the default).
[[nodiscard]] std::vector<std::int64_t> nms_by_class_in_order(std::span<const EventBbox> boxes,
                                                              std::span<const std::int64_t> order,
                                                              double iou_threshold = 0.5);

// ---- Time bins (spec §5.2, §5.9) ----------------------------------------------------------------------

/// The boxes of each of `num_tbins` bins, bin k holding start + k*delta_t < t <= start + (k+1)*delta_t, in
/// input order; with `apply_nms`, each bin is reduced by nms with the box time as score (iou 0.5: among
/// overlapping boxes the most recent one wins). ConfigError for delta_t <= 0 or num_tbins < 0.
[[nodiscard]] std::vector<BoxBuffer> split_boxes(std::span<const EventBbox> boxes, Timestamp batch_start_time,
                                                 Timestamp delta_t, int num_tbins, bool apply_nms = true);

/// Bin k is true when some multiple of labelling_delta_t lies in (start + k*dt, start + (k+1)*dt], dt =
/// duration / num_tbins. ConfigError unless labelling_delta_t > 0, num_tbins > 0 and num_tbins divides
/// duration.
[[nodiscard]] std::vector<std::uint8_t> could_frame_contain_valid_gt(Timestamp batch_start_time,
                                                                     Timestamp duration,
                                                                     Timestamp labelling_delta_t,
                                                                     int num_tbins);

// ---- Geometry (spec §5.4, §5.5) -----------------------------------------------------------------------

/// Clip every box into [0, width] x [0, height] in place (w and h recomputed from the clipped far edges),
/// then return copies of the boxes with w > 2 and h > 2.
[[nodiscard]] BoxBuffer clip_boxes(std::span<EventBbox> boxes, double width_orig, double height_orig);
/// Scale x, w by width_dst / width_orig and y, h by height_dst / height_orig, in place.
void rescale_boxes(std::span<EventBbox> boxes, double width_orig, double height_orig, double width_dst,
                   double height_dst);

// ---- Classes (spec §5.6) ------------------------------------------------------------------------------

/// Map class_id through `class_lookup` (values <= 0 are dropped; 0 is an error: it is the background),
/// then drop (or, with ignore_filtered, keep with class_id -1 as uint32) the boxes at `idx_to_filter`
/// (negative indices count from the end, like numpy). Returns new boxes with the looked-up class ids.
/// ConfigError for a class_id beyond the lookup, a lookup value of 0, or an index out of range.
[[nodiscard]] BoxBuffer filter_boxes(std::span<const EventBbox> boxes,
                                     std::span<const std::int64_t> class_lookup,
                                     std::span<const std::int64_t> idx_to_filter, bool ignore_filtered);

// ---- Empty-box filter (spec §5.8) ---------------------------------------------------------------------

/// Indices (increasing) of the boxes with too little input under them: box corners in tensor pixels are
/// int16(coordinate) >> shift (left/top clamped at 0); a box is judged over the bins [tmax - L, tmax), tmax =
/// min(trunc(ts / time_per_bin) + 1, T), L = max(1, trunc(100000 / time_per_bin)), ts = t -
/// batch_start_time, and filtered when fewer than `area_box_filter` x (visible area) of its pixels hold a
/// non-zero value in any of those bins and channels. A box whose visible area is empty is filtered; a box
/// whose bin range lies before the tensor is kept (no evidence); boxes with ts > last_time_to_filter are
/// skipped. ConfigError for time_per_bin <= 0 or shift outside [0, 15].
[[nodiscard]] std::vector<std::int64_t> filter_empty_tensor(const TensorView& tensor,
                                                            std::span<const EventBbox> boxes,
                                                            double area_box_filter, int shift,
                                                            double time_per_bin, Timestamp batch_start_time,
                                                            std::optional<double> last_time_to_filter);

// ---- The whole pipeline (spec §5.8) -------------------------------------------------------------------

struct LoadBoxesOptions {
  int sensor_width = 0;  ///< size of the sensor the boxes are annotated in (required)
  int sensor_height = 0;
  std::span<const std::int64_t> class_lookup;  ///< required; see filter_boxes (the caller keeps it alive)
  double min_box_diag_network = 0.0;           ///< in network pixels
  /// metavision_ml's hard-coded empty-box filter: boxes with absolute t <= filter_empty_until are dropped
  /// when fewer than area_box_filter of their area shows input. area_box_filter <= 0 disables it.
  double area_box_filter = 0.1;
  Timestamp filter_empty_until = 500000;
};

struct BinnedBoxes {
  std::vector<BoxBuffer> bins;                 ///< [T] boxes in network pixels, class ids looked up
  std::vector<std::uint8_t> frame_is_labeled;  ///< [T] 1 when the bin holds any box before class filtering
};

/// metavision_ml's load_boxes for the batch (start, duration) of the recording whose boxes are `store`:
/// window, frame_is_labeled, clip to the sensor, empty-box filter on `tensor`, class lookup, split into
/// T = tensor.shape[0] bins with NMS, rescale to the tensor's W x H, minimum-size filter. Reads only const
/// state: safe to call from several threads on one store. ConfigError for bad options (sizes <= 0, empty
/// lookup, a tensor wider than the sensor).
[[nodiscard]] BinnedBoxes load_boxes(const BoxStore& store, Timestamp batch_start_time, Timestamp duration,
                                     const TensorView& tensor, const LoadBoxesOptions& options);

/// int(log2(sensor_width / network_width)) as metavision_ml computes the down-sampling shift.
[[nodiscard]] int downsampling_shift(int sensor_width, int network_width);

}  // namespace evloader
