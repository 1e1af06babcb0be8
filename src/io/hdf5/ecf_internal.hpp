// SPDX-License-Identifier: Apache-2.0
// Non-throwing core of the ECF codec, shared by the public API (which throws) and the HDF5 filter
// callback (which must not let an exception reach the C library that calls it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "evloader/core/types.hpp"
#include "evloader/io/ecf.hpp"

namespace evloader::ecf::detail {

struct DecodeError {
  const char* what = "";
  std::size_t offset = 0;  ///< byte position inside the chunk
};

bool parse_header(const std::uint8_t* data, std::size_t size, ChunkHeader& header,
                  DecodeError& error) noexcept;
bool try_decode(const std::uint8_t* data, std::size_t size, EventCD* out, std::size_t capacity,
                std::size_t& n_out, DecodeError& error) noexcept;

/// nullptr when ECF can store these events, else why not. Without `require_sorted`, times below the
/// running maximum are accepted (and stored as that maximum).
const char* validate(std::span<const EventCD> events, bool require_sorted) noexcept;
Mode choose(std::span<const EventCD> events) noexcept;
/// Needs validate(events, false) == nullptr and max_encoded_size(events.size()) bytes at out.
std::size_t encode_unchecked(std::span<const EventCD> events, std::uint8_t* out, Mode mode) noexcept;

}  // namespace evloader::ecf::detail
