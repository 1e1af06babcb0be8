// SPDX-License-Identifier: Apache-2.0
// Random event streams for round-trip and property tests (deterministic for a seed).
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "evloader/core/types.hpp"

namespace evloader::test {

struct StreamShape {
  int width = 1280;
  int height = 720;
  std::int64_t t_start = 0;
  std::int64_t max_gap_us = 50;  ///< time between consecutive events drawn in [0, max_gap_us]
  double same_time_prob = 0.6;   ///< probability that the next event has the same t
  double burst_prob = 0.3;       ///< probability of a run of neighbouring pixels on one row (vectors)
};

/// Events sorted by t, with bursts of same-row same-t neighbours (which exercise the vector words).
inline std::vector<EventCD> random_events(std::size_t n, std::uint32_t seed, const StreamShape& shape = {}) {
  std::mt19937_64 rng(seed);
  std::vector<EventCD> out;
  out.reserve(n);
  std::int64_t t = shape.t_start;
  std::uniform_int_distribution<int> xs(0, shape.width - 1), ys(0, shape.height - 1), ps(0, 1);
  std::uniform_int_distribution<std::int64_t> gaps(0, shape.max_gap_us);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  while (out.size() < n) {
    if (u(rng) >= shape.same_time_prob) t += gaps(rng);
    if (u(rng) < shape.burst_prob) {
      int y = ys(rng), p = ps(rng), x = xs(rng);
      int len = 1 + static_cast<int>(u(rng) * 40);
      for (int i = 0; i < len && out.size() < n && x < shape.width; ++i, ++x)
        if (u(rng) < 0.7)
          out.push_back({static_cast<std::uint16_t>(x), static_cast<std::uint16_t>(y),
                         static_cast<std::int16_t>(p), t});
    } else {
      out.push_back({static_cast<std::uint16_t>(xs(rng)), static_cast<std::uint16_t>(ys(rng)),
                     static_cast<std::int16_t>(ps(rng)), t});
    }
  }
  return out;
}

inline std::vector<EventExtTrigger> random_triggers(std::size_t n, std::uint32_t seed, std::int64_t t_start,
                                                    std::int64_t t_end, int max_id = 15) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int64_t> ts(t_start, std::max(t_start, t_end));
  std::uniform_int_distribution<int> ids(0, max_id), ps(0, 1);
  std::vector<EventExtTrigger> out(n);
  for (auto& e : out) e = {static_cast<std::int16_t>(ps(rng)), ts(rng), static_cast<std::int16_t>(ids(rng))};
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.t < b.t; });
  return out;
}

}  // namespace evloader::test
