// SPDX-License-Identifier: Apache-2.0
// The event-to-tensor loops behind the Preprocessor classes; arguments are checked by the caller.
#pragma once

#include <cstdint>
#include <span>

#include "evloader/core/types.hpp"
#include "evloader/preprocess/tensor.hpp"

namespace evloader::preprocess_detail {

/// CPython's float floor division (float_floor_div), which numba reproduces: the reference's bin index
/// is int(t // dt), and t // dt differs from floor(t / dt) when t / dt rounds up to an integer.
[[nodiscard]] double py_floordiv(double vx, double wx) noexcept;

/// out[bin, p] = min(1, out + k) (any dtype), zeroing the output first with `reset`.
void histo(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, double k,
           bool reset);
/// out[bin, 0] = min(1, out + k) for ON, max(-1, out - k) for OFF (signed or float dtypes).
void diff(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, double k);
/// Latest (t - bin*dt) [/ dt] per pixel with T*C/2 bins of two channels (float32/64, int32/64).
void timesurface(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds,
                 bool normed);
/// Bilinear-in-time micro-bin accumulation clamped to [-1, 1] (float32/64).
void event_cube(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, bool split,
                double k);
/// Saturating ON-OFF counters in [-2^(nbl-1), 2^(nbl-1)-1], average-pooled when ds > 0, normalised by
/// 2^(nbl-1) when asked (int8 at ds 0 without normalisation, float otherwise). `reset`: `out` was zeroed.
void diff_quantized(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, int nbl,
                    bool normalization, bool reset);
/// Saturating per-polarity counters (OFF up to 2^nbl-1, ON up to 2^(tbl-nbl)-1), average-pooled when
/// ds > 0, normalised by the larger clamp when asked (uint8 at ds 0 without normalisation, float
/// otherwise). `reset`: `out` was zeroed.
void histo_quantized(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds, int nbl,
                     int tbl, bool normalization, bool reset);

}  // namespace evloader::preprocess_detail
