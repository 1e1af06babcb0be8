// SPDX-License-Identifier: Apache-2.0
// Small helpers shared by the preprocessing tests: owned tensors and hand-made events.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/core/types.hpp"
#include "evloader/preprocess/preprocessor.hpp"
#include "evloader/preprocess/tensor.hpp"

namespace evloader::test {

template <class T>
struct Tensor {
  std::array<std::int64_t, 4> shape;
  std::vector<T> data;

  explicit Tensor(std::array<std::int64_t, 4> s, T fill = T(0))
      : shape(s), data(static_cast<std::size_t>(s[0] * s[1] * s[2] * s[3]), fill) {}
  TensorView view() { return TensorView(data.data(), shape); }
  T& at(std::int64_t t, std::int64_t c, std::int64_t y, std::int64_t x) {
    return data[static_cast<std::size_t>(((t * shape[1] + c) * shape[2] + y) * shape[3] + x)];
  }
  [[nodiscard]] double sum() const {
    double s = 0;
    for (T v : data) s += static_cast<double>(v);
    return s;
  }
  [[nodiscard]] std::size_t nonzero() const {
    std::size_t n = 0;
    for (T v : data) n += v != T(0);
    return n;
  }
};

inline EventCD ev(int x, int y, int p, std::int64_t t) {
  return {static_cast<std::uint16_t>(x), static_cast<std::uint16_t>(y), static_cast<std::int16_t>(p), t};
}

template <class T>
void run(std::string_view name, const std::vector<EventCD>& events, Tensor<T>& out, Timestamp total,
         int ds = 0, const Kwargs& kwargs = {}, bool reset = true) {
  make_preprocessor(name, kwargs)->run(events, out.view(), total, ds, reset);
}

}  // namespace evloader::test
