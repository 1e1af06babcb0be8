// SPDX-License-Identifier: Apache-2.0
// The reader API shared by every recording format, modelled on Metavision's contract
// (load_delta_t / load_n_events / load_mixed, seek_time / seek_event, current_time, is_done, reset).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "evloader/core/pod_buffer.hpp"
#include "evloader/core/types.hpp"
#include "evloader/io/decode_stats.hpp"
#include "evloader/io/raw_format.hpp"
#include "evloader/io/time_index.hpp"

namespace evloader {

enum class FileFormat { raw, dat, hdf5, aedat4 };

/// absolute: timestamps as the sensor counted them (the same event has the same t in RAW, DAT and HDF5
/// copies of a recording). metavision: the Metavision SDK's time shift for RAW files (formats.md §1.5);
/// DAT files are never shifted, as in the SDK.
enum class TimeOrigin { absolute, metavision };

/// Where the time index is kept.
enum class IndexStorage {
  sidecar,  ///< `<recording>.evlidx`, or the user cache when the folder is read-only (default)
  cache,    ///< always the user cache (EVLOADER_CACHE_DIR, XDG_CACHE_HOME or ~/.cache)
  memory,   ///< never written to disk
};

/// Called while an index is built: (bytes done, bytes total).
using ProgressCallback = std::function<void(std::uint64_t, std::uint64_t)>;

struct ReaderOptions {
  OnViolation on_violation = OnViolation::skip;
  TimeOrigin time_origin = TimeOrigin::absolute;
  RawFormatOverride raw_format{};    ///< RAW only: force encoding, geometry, EVT2.1 word order
  std::optional<Geometry> geometry;  ///< DAT (and RAW) geometry override, e.g. for DAT files without a size
  bool decode_triggers = true;
  IndexStorage index_storage = IndexStorage::sidecar;
};

class EventReader {
 public:
  virtual ~EventReader() = default;
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  /// Open a recording, choosing the format from its extension (.raw, .dat) and, failing that, its content.
  /// Throws IoError (missing, directory, unreadable) or FormatError (unknown or malformed format).
  [[nodiscard]] static std::unique_ptr<EventReader> open(const std::filesystem::path& path,
                                                         const ReaderOptions& options = {});

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] virtual FileFormat format() const noexcept = 0;
  /// "EVT3", "EVT2", "EVT21", "DAT".
  [[nodiscard]] virtual std::string encoding_name() const = 0;
  [[nodiscard]] Geometry geometry() const noexcept { return geometry_; }
  [[nodiscard]] const std::map<std::string, std::string>& header() const noexcept { return header_; }

  // --- Reading (events come out in file order) --------------------------------------------------
  /// Events with current_time() <= t < current_time() + dt; then current_time() += dt. dt >= 1.
  [[nodiscard]] EventBuffer load_delta_t(Timestamp dt);
  void load_delta_t(Timestamp dt, EventBuffer& out);
  /// The next n events (n >= 1, fewer at the end); current_time() becomes the t of the last one.
  [[nodiscard]] EventBuffer load_n_events(std::uint64_t n);
  void load_n_events(std::uint64_t n, EventBuffer& out);
  /// The next events with t < current_time() + dt, at most n. If n were reached, current_time() becomes
  /// the t of the last event returned, else current_time() += dt.
  [[nodiscard]] EventBuffer load_mixed(std::uint64_t n, Timestamp dt);
  void load_mixed(std::uint64_t n, Timestamp dt, EventBuffer& out);
  /// All remaining events.
  [[nodiscard]] EventBuffer load_all();

  /// Trigger events decoded so far and not yet taken (decoding runs slightly ahead of the CD events
  /// returned).
  [[nodiscard]] TriggerBuffer take_triggers();

  // --- Position -------------------------------------------------------------------------------
  /// Next load returns events from the first one (in file order) with t >= t; current_time() = t.
  void seek_time(Timestamp t);
  /// Next load returns events from index n; current_time() = t of that event (or of the last one).
  void seek_event(std::uint64_t n);
  /// Back to the first event; current_time() = 0.
  void reset();
  /// Next event to load has t >= current_time() (for time-ordered recordings).
  [[nodiscard]] Timestamp current_time() const noexcept { return current_time_; }
  /// Index of the next event to load.
  [[nodiscard]] std::uint64_t current_event_index() const noexcept { return delivered_; }
  /// True when no event is left.
  [[nodiscard]] bool is_done();

  // --- Summary (from the time index) ------------------------------------------------------------
  [[nodiscard]] std::uint64_t event_count();
  [[nodiscard]] std::uint64_t trigger_count();
  [[nodiscard]] Timestamp first_timestamp();
  [[nodiscard]] Timestamp last_timestamp();
  /// last_timestamp() - first_timestamp() (Metavision's DAT convention).
  [[nodiscard]] Timestamp duration();
  /// Subtracted from every timestamp returned (0 with TimeOrigin::absolute).
  [[nodiscard]] Timestamp time_shift() const noexcept { return shift_; }
  /// Violation counters of the whole file (from the index) - builds the index if needed.
  [[nodiscard]] DecodeStats file_stats();
  /// Violation counters of what this reader decoded so far.
  [[nodiscard]] virtual const DecodeStats& stats() const noexcept = 0;

  /// Build (or load) the time index now, reporting progress. Later calls return at once.
  void build_index(const ProgressCallback& progress = {});
  [[nodiscard]] bool has_index() const noexcept { return index_.has_value(); }
  /// Where the index was loaded from or saved to; empty when it lives only in memory.
  [[nodiscard]] const std::filesystem::path& index_path() const noexcept { return index_path_; }

 protected:
  EventReader(const std::filesystem::path& path, const ReaderOptions& options);

  // --- What a format provides: a resumable decoder over the file's bytes -------------------------
  /// Decode the next block of the file, appending to `cd` and `triggers`. False at the end of the data.
  virtual bool decode_next_block(EventBuffer& cd, TriggerBuffer& triggers) = 0;
  /// The resumable position at the current block boundary.
  [[nodiscard]] virtual IndexEntry source_position() const = 0;
  /// Resume decoding at a saved position (the start of the data for a default IndexEntry with
  /// byte_offset 0 is NOT implied: use rewind_source()).
  virtual void restore_source(const IndexEntry& position) = 0;
  virtual void rewind_source() = 0;
  /// Total bytes of event data (for progress).
  [[nodiscard]] virtual std::uint64_t data_size() const noexcept = 0;
  [[nodiscard]] virtual IndexKey index_key() const = 0;
  /// The format's time shift under TimeOrigin::metavision, when it can be known without a full decode.
  [[nodiscard]] virtual Timestamp probe_metavision_shift() = 0;
  /// A generous guess of the CD events not yet decoded, to size output buffers once (reserving is
  /// cheap: untouched memory costs nothing). 0 when unknown.
  [[nodiscard]] virtual std::uint64_t estimated_remaining_events() const noexcept { return 0; }

  /// Subclasses call this at the end of their constructor.
  void finish_open();

  std::filesystem::path path_;
  ReaderOptions options_;
  Geometry geometry_{};
  std::map<std::string, std::string> header_;

 private:
  bool fill();  // decode until at least one pending event or the end
  // At the end of the data: with OnViolation::raise, a file cut inside its last word or record is a
  // FormatError like any other violation (with skip it is only counted in truncated_bytes).
  void raise_if_cut() const;
  [[nodiscard]] std::uint64_t pending_left() const noexcept { return pending_.size() - pending_pos_; }
  void take_pending(std::size_t n, EventBuffer& out);
  void ensure_index();
  void position_at(const IndexEntry& entry);
  void skip_to_event(std::uint64_t n);  // from the nearest index entry, no time update
  void apply_shift(std::size_t cd_from, std::size_t trig_from);

  EventBuffer pending_;
  std::size_t pending_pos_ = 0;
  TriggerBuffer triggers_;
  bool source_done_ = false;
  Timestamp current_time_ = 0;
  std::uint64_t delivered_ = 0;
  Timestamp shift_ = 0;
  std::optional<TimeIndex> index_;
  std::filesystem::path index_path_;
};

/// Shorthand for EventReader::open.
[[nodiscard]] inline std::unique_ptr<EventReader> open_reader(const std::filesystem::path& path,
                                                              const ReaderOptions& options = {}) {
  return EventReader::open(path, options);
}

}  // namespace evloader
