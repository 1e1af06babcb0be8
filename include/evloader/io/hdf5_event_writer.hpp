// SPDX-License-Identifier: Apache-2.0
// Writes Metavision HDF5 event files in OpenEB's layout (formats.md §3.1): /CD/events compressed with
// ECF (filter 0x8ECF, one direct chunk write per chunk), /CD/indexes, /EXT_TRIGGER/events and indexes,
// and string root attributes. Metavision, evloader, and h5py (after evloader.hdf5.register_ecf_filter())
// read the result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "evloader/core/types.hpp"
#include "evloader/io/ecf.hpp"

namespace evloader {

struct Hdf5WriterOptions {
  /// Written as the root attribute "geometry" ("WxH", which Metavision reads) when known; events must
  /// then lie inside it.
  Geometry geometry{};
  /// More root attributes, as variable-length strings (e.g. the RAW header fields: "format",
  /// "serial_number", ... or "time_shift"). They replace "version" and "geometry" if named so.
  std::vector<std::pair<std::string, std::string>> attributes;
  /// Events per chunk of every dataset (OpenEB: 16384). 1..65535 (the ECF limit).
  std::size_t chunk_events = 16384;
  /// Force one ECF mode for every chunk (tests); by default each chunk gets the reference encoder's choice.
  std::optional<ecf::Mode> mode;
};

class Hdf5EventWriter {
 public:
  /// Creates (truncates) `path`. Throws IoError when HDF5 cannot create it, ConfigError for bad options.
  explicit Hdf5EventWriter(const std::filesystem::path& path, const Hdf5WriterOptions& options = {});
  /// Closes the file; errors are swallowed here (call close() to see them).
  ~Hdf5EventWriter();
  Hdf5EventWriter(const Hdf5EventWriter&) = delete;
  Hdf5EventWriter& operator=(const Hdf5EventWriter&) = delete;

  /// Append CD events, sorted by t (also across calls). ConfigError, before anything of this call is
  /// written, for unsorted events, x or y >= 2048 (or outside the geometry), p other than 0 and 1.
  void write(std::span<const EventCD> events);
  /// Append trigger events, sorted by t (also across calls).
  void write_triggers(std::span<const EventExtTrigger> triggers);
  /// Set (or replace) one root attribute.
  void set_attribute(const std::string& key, const std::string& value);
  /// Write the last partial chunks and the closing index entries, then close the file. Further writes
  /// throw. Throws IoError when HDF5 fails.
  void close();

  [[nodiscard]] std::uint64_t events_written() const noexcept;
  [[nodiscard]] std::uint64_t triggers_written() const noexcept;
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  struct Impl;
  std::filesystem::path path_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace evloader
