// SPDX-License-Identifier: Apache-2.0
// A non-owning view of a dense C-contiguous [T, C, H, W] tensor of one of numpy's numeric dtypes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace evloader {

/// Element types of event tensors (the numpy dtypes Metavision's preprocessings accept).
enum class DType : std::uint8_t { float32, float64, int8, uint8, int16, int32, int64 };

/// Bytes per element.
[[nodiscard]] constexpr std::size_t dtype_size(DType d) noexcept {
  switch (d) {
    case DType::int8:
    case DType::uint8: return 1;
    case DType::int16: return 2;
    case DType::float32:
    case DType::int32: return 4;
    case DType::float64:
    case DType::int64: return 8;
  }
  return 0;
}

[[nodiscard]] constexpr bool dtype_is_floating(DType d) noexcept {
  return d == DType::float32 || d == DType::float64;
}

/// numpy's name of the dtype ("float32", "uint8", ...).
[[nodiscard]] std::string_view dtype_name(DType d) noexcept;

/// The dtype of a numpy name ("float32", "float", "f4", "uint8", ...); nullopt when unknown.
[[nodiscard]] std::optional<DType> dtype_from_name(std::string_view name) noexcept;

template <class T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::float32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::float64;
};
template <>
struct DTypeOf<std::int8_t> {
  static constexpr DType value = DType::int8;
};
template <>
struct DTypeOf<std::uint8_t> {
  static constexpr DType value = DType::uint8;
};
template <>
struct DTypeOf<std::int16_t> {
  static constexpr DType value = DType::int16;
};
template <>
struct DTypeOf<std::int32_t> {
  static constexpr DType value = DType::int32;
};
template <>
struct DTypeOf<std::int64_t> {
  static constexpr DType value = DType::int64;
};

/// A view of caller-owned memory holding a C-contiguous tensor of shape [T, C, H, W] (time bins,
/// channels, rows, columns). Copying a view never copies the data.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::float32;
  std::array<std::int64_t, 4> shape{};  ///< T, C, H, W

  TensorView() = default;
  TensorView(void* d, DType dt, std::array<std::int64_t, 4> s) noexcept : data(d), dtype(dt), shape(s) {}
  template <class T>
  TensorView(T* d, std::array<std::int64_t, 4> s) noexcept : data(d), dtype(DTypeOf<T>::value), shape(s) {}

  [[nodiscard]] std::int64_t bins() const noexcept { return shape[0]; }
  [[nodiscard]] std::int64_t channels() const noexcept { return shape[1]; }
  [[nodiscard]] std::int64_t height() const noexcept { return shape[2]; }
  [[nodiscard]] std::int64_t width() const noexcept { return shape[3]; }
  [[nodiscard]] std::size_t numel() const noexcept {
    return static_cast<std::size_t>(shape[0] * shape[1] * shape[2] * shape[3]);
  }
  [[nodiscard]] std::size_t nbytes() const noexcept { return numel() * dtype_size(dtype); }

  /// Time bin t alone, as a [1, C, H, W] view (what the visualisations take).
  [[nodiscard]] TensorView frame(std::int64_t t) const noexcept {
    auto* bytes = static_cast<std::byte*>(data) +
                  static_cast<std::size_t>(t * shape[1] * shape[2] * shape[3]) * dtype_size(dtype);
    return {bytes, dtype, {1, shape[1], shape[2], shape[3]}};
  }

  /// Typed pointer; the caller has checked that dtype matches T.
  template <class T>
  [[nodiscard]] T* as() const noexcept {
    return static_cast<T*>(data);
  }
};

}  // namespace evloader
