// SPDX-License-Identifier: Apache-2.0
// Prophesee DAT files (formats.md §2): header, fixed 8-byte records, writer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>

#include "evloader/core/pod_buffer.hpp"
#include "evloader/core/types.hpp"
#include "evloader/io/decode_stats.hpp"
#include "evloader/io/header.hpp"

namespace evloader {

enum class DatEventType : std::uint8_t { event2d = 0, cd = 12, ext_trigger = 14 };

struct DatInfo {
  FileHeader header;
  DatEventType type = DatEventType::event2d;
  std::uint64_t data_offset = 0;     ///< first record byte
  std::uint64_t record_count = 0;    ///< whole 8-byte records
  std::uint64_t trailing_bytes = 0;  ///< bytes after the last whole record (truncated file)
  Geometry geometry{};               ///< from Height/Width lines; unknown (0x0) when absent
};

/// Parse the header, the type/size bytes and count records. Throws IoError / FormatError (unknown event
/// type, record size other than 8, directory...).
[[nodiscard]] DatInfo read_dat_info(const std::filesystem::path& path);

/// Carries the 32-bit timestamp unwrapping across calls.
struct DatDecodeState {
  std::int64_t high = 0;         ///< multiples of 2^32 added so far
  std::int64_t last_raw_t = -1;  ///< last 32-bit on-disk value
  std::int64_t last_event_t = INT64_MIN;
};

/// Decode whole 8-byte CD records (type 0 or 12). Timestamps are unwrapped: a drop of more than 2^31 adds
/// 2^32. Events outside a known geometry are dropped and counted; time going backwards is counted.
void decode_dat_cd(std::span<const std::byte> records, const Geometry& geometry, DatDecodeState& state,
                   EventBuffer& out, DecodeStats& stats);
/// Decode whole 8-byte trigger records (type 14).
void decode_dat_triggers(std::span<const std::byte> records, DatDecodeState& state, TriggerBuffer& out,
                         DecodeStats& stats);

/// Writes a DAT file in the C++ SDK layout: sorted header keys `% Height`, `% Version 2`, `% Width`,
/// `% date`, then `% end`, type byte, size byte 8, records. Timestamps must fit in 32 bits after the
/// optional wrap (t mod 2^32 is written, as the format can only hold that).
class DatWriter {
 public:
  DatWriter(const std::filesystem::path& path, Geometry geometry, DatEventType type = DatEventType::cd);
  ~DatWriter();
  DatWriter(const DatWriter&) = delete;
  DatWriter& operator=(const DatWriter&) = delete;

  void write(std::span<const EventCD> events);            ///< type 0/12 files only
  void write(std::span<const EventExtTrigger> triggers);  ///< type 14 files only
  void close();

 private:
  std::filesystem::path path_;
  std::ofstream out_;
  DatEventType type_;
  Geometry geometry_;
};

}  // namespace evloader
