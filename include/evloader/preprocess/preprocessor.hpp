// SPDX-License-Identifier: Apache-2.0
// Metavision ML's event-to-tensor preprocessings (histo, diff, timesurface, event cubes, quantized frames)
// as thread-safe C++ kernels, created by name from a registry with the reference's default kwargs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "evloader/core/types.hpp"
#include "evloader/preprocess/tensor.hpp"

namespace evloader {

/// A preprocessing parameter: None (std::monostate), bool, integer, real number or string.
/// `preprocess_dtype` is given as numpy's dtype name ("float32", "uint8", ...).
using KwargValue = std::variant<std::monostate, bool, std::int64_t, double, std::string>;
using Kwargs = std::map<std::string, KwargValue, std::less<>>;

/// One preprocessing with its parameters fixed. Immutable after construction: run() is const and keeps no
/// state between calls, so several threads may call it at once on different outputs.
///
/// Semantics are those of metavision_ml 4.2.1 (see docs/preprocessing.md). Where the reference would
/// index out of bounds, the kernels stay in bounds and DROP the event, never clamp it:
///  - time bins: the running bin of the reference is followed exactly (non-decreasing, unsorted events go
///    to the current bin, negative t to the current bin). An event that moves the running bin to >= T
///    (t >= total_tbins_delta_t while the running bin is not yet T-1) is dropped, and so is every later
///    event of the call, because the reference's running bin stays there. An event with t >= total while
///    the running bin is already T-1 goes to bin T-1, as in the reference;
///  - event cubes: micro-bins outside [0, n) get nothing (the reference wraps negative right bins around);
///  - pixels: events with (x >> ds) >= W or (y >> ds) >= H are dropped (quantized kernels: x >= W << ds
///    or y >= H << ds, as they count at full resolution);
///  - polarity: kernels that index a channel with p drop events whose p is neither 0 nor 1; diff,
///    diff_quantized and event_cube without split polarity treat any non-zero p as ON, as the reference.
class Preprocessor {
 public:
  virtual ~Preprocessor() = default;
  Preprocessor(const Preprocessor&) = delete;
  Preprocessor& operator=(const Preprocessor&) = delete;

  /// Registry name ("histo", "event_cube_paper", ...).
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// Channels of the registry entry ('cin'): the C of the tensors the loaders allocate.
  [[nodiscard]] int channels() const noexcept { return channels_; }
  /// `preprocess_dtype`: the dtype the loaders allocate (the registry default unless overridden).
  [[nodiscard]] DType dtype() const noexcept { return dtype_; }
  /// The kwargs: the registry defaults merged with the caller's, validated.
  [[nodiscard]] const Kwargs& kwargs() const noexcept { return kwargs_; }

  /// Whether run() accepts an output with this many channels. Stricter kernels (histo, diff,
  /// timesurface, quantized) want exactly their channel count; event cubes and the multi-channel time
  /// surface accept any even count (event_cube without split polarity: any count).
  [[nodiscard]] virtual bool accepts_channels(std::int64_t c) const noexcept = 0;
  /// Whether run() accepts an output of this dtype with this downsampling factor.
  [[nodiscard]] virtual bool accepts_dtype(DType d, int downsampling_factor) const noexcept = 0;

  /// Throws ConfigError naming the problem when run() would refuse these arguments.
  void check(const TensorView& out, Timestamp total_tbins_delta_t, int downsampling_factor,
             bool has_events) const;

  /// Accumulates `events` into `out` [T, C, H, W]. Event times are relative to the window start
  /// (0 = start); the window spans total_tbins_delta_t µs split into T bins. Coordinates are divided
  /// by 2^downsampling_factor (x >> ds, y >> ds; quantized kernels average-pool full-resolution
  /// counters). `reset` zeroes `out` first. Throws ConfigError on a bad output (dtype, shape, channels),
  /// downsampling factor outside [0, 30], or total_tbins_delta_t <= 0 with events to place.
  void run(std::span<const EventCD> events, const TensorView& out, Timestamp total_tbins_delta_t,
           int downsampling_factor = 0, bool reset = true) const;

 protected:
  Preprocessor(std::string name, int channels, DType dtype, Kwargs kwargs)
      : name_(std::move(name)), channels_(channels), dtype_(dtype), kwargs_(std::move(kwargs)) {}
  /// The channel counts accepted, in words, for error messages.
  [[nodiscard]] virtual std::string channel_rule() const = 0;
  /// The kernel proper, which zeroes `out` first when `reset`; arguments already checked.
  virtual void run_checked(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds,
                           bool reset) const = 0;

 private:
  std::string name_;
  int channels_;
  DType dtype_;
  Kwargs kwargs_;
};

/// A preprocessing by registry name with `kwargs` merged over its defaults. Throws ConfigError for an
/// unknown name, an unknown kwarg, a kwarg of the wrong type or out of range (max_incr_per_pixel <= 0,
/// bit lengths out of range, ...), or a preprocess_dtype the kernel cannot write.
[[nodiscard]] std::unique_ptr<Preprocessor> make_preprocessor(std::string_view name,
                                                              const Kwargs& kwargs = {});

/// Registry names in the reference's order: diff, diff_quantized, histo, histo_quantized, timesurface,
/// event_cube, event_cube_paper, multi_channel_timesurface.
[[nodiscard]] const std::vector<std::string>& preprocessor_names();

/// Default kwargs of a registry entry (preprocess_dtype included). Throws ConfigError for unknown names.
[[nodiscard]] Kwargs preprocessor_default_kwargs(std::string_view name);

/// The registry's channel count ('cin'). Throws ConfigError for unknown names.
[[nodiscard]] int preprocessor_channels(std::string_view name);

}  // namespace evloader
