// SPDX-License-Identifier: Apache-2.0
// Writes Prophesee RAW files (EVT 2.0, EVT 2.1, EVT 3.0) with a header both old and new readers accept.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "evloader/core/types.hpp"
#include "evloader/io/decoder.hpp"
#include "evloader/io/encoder.hpp"

namespace evloader {

class RawWriter {
 public:
  /// Creates (truncates) `path` and writes the header: sorted keys `camera_integrator_name`, `date`,
  /// `evt`, `format` (NAME;height=H;width=W), `geometry` (WxH), `plugin_integrator_name`, plus `extra`
  /// lines, then `% end`. Throws IoError when the file cannot be created, ConfigError for a bad geometry.
  RawWriter(const std::filesystem::path& path, RawEncoding encoding, Geometry geometry,
            const std::vector<std::pair<std::string, std::string>>& extra_header = {},
            Evt21Order evt21_order = Evt21Order::little);
  ~RawWriter();
  RawWriter(const RawWriter&) = delete;
  RawWriter& operator=(const RawWriter&) = delete;

  /// Append events (each list sorted by t, continuing after the previous call). Coordinates must lie
  /// inside the geometry (ConfigError otherwise, before anything is written).
  void write(std::span<const EventCD> events, std::span<const EventExtTrigger> triggers = {});
  /// Flush the encoder and close the file. Further writes throw.
  void close();

  [[nodiscard]] std::uint64_t events_written() const noexcept { return events_written_; }

 private:
  void flush_words();

  std::filesystem::path path_;
  std::ofstream out_;
  Geometry geometry_;
  std::unique_ptr<EventEncoder> encoder_;
  std::vector<std::byte> words_;
  std::uint64_t events_written_ = 0;
  bool closed_ = false;
};

}  // namespace evloader
