// SPDX-License-Identifier: Apache-2.0
// Images of event tensors, as metavision_ml's preprocessing/viz.py draws them, in C++ (no OpenCV).
//
// Every function takes one time bin as a [1, C, H, W] view (TensorView::frame(t)) of any dtype and writes
// uint8 pixels row-major: `rgb` holds H*W*3 bytes in R, G, B order, `gray` H*W bytes. A destination of
// the wrong size, or a frame with too few channels, throws ConfigError.
//
// Colour order: the arrays are those of the reference, whose colour tuples are RGB (Metavision's BG, POS
// and NEG colours), except viz_timesurface: the reference returns OpenCV's JET colormap in BGR order,
// we return it in RGB order (the reference's image with its last axis reversed).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "evloader/preprocess/tensor.hpp"

namespace evloader {

using Rgb = std::array<std::uint8_t, 3>;
inline constexpr Rgb kVizBackground{30, 37, 52};   ///< Metavision BG_COLOR
inline constexpr Rgb kVizPositive{216, 223, 236};  ///< Metavision POS_COLOR
inline constexpr Rgb kVizNegative{64, 126, 201};   ///< Metavision NEG_COLOR

/// OpenCV's COLORMAP_JET lookup table, entry i for gray level i, in RGB order.
[[nodiscard]] const std::array<Rgb, 256>& jet_colormap() noexcept;

/// Background everywhere, POS where channel 0 > 0, then NEG where channel 1 > 0 (the reference's order:
/// channel 1, the ON events of a histogram, wins and shows in NEG colour). Needs C >= 2.
void viz_histo_binarized(const TensorView& frame, std::span<std::uint8_t> rgb);

/// Background, POS where channel 0 > 0, NEG where channel 0 < 0.
void viz_diff_binarized(const TensorView& frame, std::span<std::uint8_t> rgb);

/// Channel 0 as float32, clipped to mean +- 3 std, min-max normalised to 0..255 (truncated); all 127 when
/// the result is all 0.
void viz_diff(const TensorView& frame, std::span<std::uint8_t> gray);

/// viz_diff of channel 1 - channel 0. Needs C >= 2.
void viz_histo(const TensorView& frame, std::span<std::uint8_t> gray);

/// viz_histo repeated on the three colour channels.
void viz_histo_rgb(const TensorView& frame, std::span<std::uint8_t> rgb);

/// clip(channel 1 - channel 0, +-val_max) mapped linearly to 0..255, gray repeated on three channels.
void viz_histo_filtered(const TensorView& frame, std::span<std::uint8_t> rgb, double val_max = 0.5);

/// JET colormap (RGB) of trunc(v * 255), v = max(channel 0, channel 1) when C == 2, else channel 0.
/// v * 255 outside [0, 255] wraps modulo 256 as numpy's float-to-uint8 cast does on x86 (the reference's
/// blend mode relies on it); NaN maps to 0.
void viz_timesurface(const TensorView& frame, std::span<std::uint8_t> rgb);

/// Split polarity: colour channel i = viz_histo of planes (2i, 2i+1), i < 3 (needs C >= 6). Otherwise
/// colour channel i = viz_diff of plane i (needs C >= 3).
void viz_event_cube_rgb(const TensorView& frame, std::span<std::uint8_t> rgb, bool split_polarity = true);

/// Default: viz_event_cube_rgb with split polarity. blend: the reference's blend of the micro-bins into
/// one time surface, drawn with viz_timesurface.
void viz_multichannel_timesurface(const TensorView& frame, std::span<std::uint8_t> rgb, bool blend = false);

/// The registry's viz of a preprocessing name (histo -> viz_histo_binarized, event_cube ->
/// viz_event_cube_rgb,
/// ...). Throws ConfigError for unknown names.
void visualize(std::string_view preprocessing, const TensorView& frame, std::span<std::uint8_t> rgb);

}  // namespace evloader
