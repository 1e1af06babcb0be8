// SPDX-License-Identifier: Apache-2.0
// Names of tensor dtypes, as numpy spells them.
#include "evloader/preprocess/tensor.hpp"

#include <array>
#include <utility>

namespace evloader {

std::string_view dtype_name(DType d) noexcept {
  switch (d) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::int8: return "int8";
    case DType::uint8: return "uint8";
    case DType::int16: return "int16";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
  }
  return "?";
}

std::optional<DType> dtype_from_name(std::string_view name) noexcept {
  // numpy names, their one-letter codes and the little-endian type strings ("<f4") numpy's str() gives.
  static constexpr std::array<std::pair<std::string_view, DType>, 27> kNames{{
      {"float32", DType::float32}, {"f4", DType::float32},      {"<f4", DType::float32},
      {"single", DType::float32},  {"float64", DType::float64}, {"f8", DType::float64},
      {"<f8", DType::float64},     {"double", DType::float64},  {"float", DType::float64},
      {"int8", DType::int8},       {"i1", DType::int8},         {"|i1", DType::int8},
      {"uint8", DType::uint8},     {"u1", DType::uint8},        {"|u1", DType::uint8},
      {"int16", DType::int16},     {"i2", DType::int16},        {"<i2", DType::int16},
      {"int32", DType::int32},     {"i4", DType::int32},        {"<i4", DType::int32},
      {"int64", DType::int64},     {"i8", DType::int64},        {"<i8", DType::int64},
      {"int", DType::int64},       {"b", DType::int8},          {"B", DType::uint8},
  }};
  for (const auto& [n, d] : kNames)
    if (n == name) return d;
  return std::nullopt;
}

}  // namespace evloader
