// SPDX-License-Identifier: Apache-2.0
// Plain value types shared by every module: events, geometry, time windows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace evloader {

/// Time in integer microseconds, everywhere.
using Timestamp = std::int64_t;

/// A change-detection event, byte-compatible with Metavision's numpy dtype
/// `{x: <u2 @0, y: <u2 @2, p: <i2 @4, t: <i8 @8}`, itemsize 16.
/// p is 1 for ON (brightness increase) and 0 for OFF.
struct EventCD {
  std::uint16_t x;
  std::uint16_t y;
  std::int16_t p;
  std::int64_t t;

  friend bool operator==(const EventCD&, const EventCD&) = default;
};
static_assert(sizeof(EventCD) == 16 && offsetof(EventCD, p) == 4 && offsetof(EventCD, t) == 8);
static_assert(std::is_trivially_copyable_v<EventCD>);

/// An external trigger event, byte-compatible with Metavision's numpy dtype
/// `{p: <i2 @0, t: <i8 @8, id: <i2 @16}`, itemsize 24. p is the edge (1 rising, 0 falling).
struct EventExtTrigger {
  std::int16_t p;
  std::int64_t t;
  std::int16_t id;

  friend bool operator==(const EventExtTrigger&, const EventExtTrigger&) = default;
};
static_assert(sizeof(EventExtTrigger) == 24 && offsetof(EventExtTrigger, t) == 8 &&
              offsetof(EventExtTrigger, id) == 16);

/// Sensor size in pixels. A zero width or height means "unknown" (e.g. DAT files without a size).
struct Geometry {
  int width = 0;
  int height = 0;

  [[nodiscard]] bool known() const noexcept { return width > 0 && height > 0; }
  friend bool operator==(const Geometry&, const Geometry&) = default;
};

/// Half-open time window [t0, t1) in microseconds.
struct TimeWindow {
  Timestamp t0 = 0;
  Timestamp t1 = 0;

  [[nodiscard]] bool contains(Timestamp t) const noexcept { return t >= t0 && t < t1; }
  [[nodiscard]] Timestamp duration() const noexcept { return t1 - t0; }
};

}  // namespace evloader
