// SPDX-License-Identifier: Apache-2.0
// Which encoding and sensor size a RAW file uses, resolved from its header (formats.md §1.1).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "evloader/core/types.hpp"
#include "evloader/io/decoder.hpp"
#include "evloader/io/header.hpp"

namespace evloader {

struct RawFormat {
  RawEncoding encoding = RawEncoding::evt3;
  Geometry geometry{};  ///< unknown (0x0) when neither the header nor the system_ID table tells
  Evt21Order evt21_order = Evt21Order::little;
};

/// What the user forces, whatever the header says.
struct RawFormatOverride {
  std::optional<RawEncoding> encoding;
  std::optional<Geometry> geometry;
  std::optional<Evt21Order> evt21_order;
};

/// Resolve in OpenEB's order: `format` key, else `evt` key, else the system_ID table; geometry from the
/// `format` options, else `geometry` (WxH), else the system_ID table. Throws FormatError (naming `origin`)
/// for unsupported encodings (EVT4, HISTO3D...), contradicting keys, or when the encoding stays unknown.
[[nodiscard]] RawFormat resolve_raw_format(const FileHeader& header, const RawFormatOverride& user,
                                           const std::filesystem::path& origin);

/// "EVT3", "evt3", "3.0", "EVT2", "2.0", "EVT21", "EVT2.1", "2.1" -> encoding; nullopt otherwise.
[[nodiscard]] std::optional<RawEncoding> parse_encoding_name(const std::string& name);

/// "640x480" -> {640, 480}; nullopt when malformed.
[[nodiscard]] std::optional<Geometry> parse_geometry(const std::string& text);

}  // namespace evloader
