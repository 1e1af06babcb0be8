// SPDX-License-Identifier: Apache-2.0
// The time index of a recording: resumable decoder positions every few hundred KiB, so that seeking,
// duration and event counts never need a decode from the start. Kept in a sidecar file next to the
// recording (or in the user cache when that folder is read-only) and rebuilt when the recording changes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "evloader/core/types.hpp"
#include "evloader/io/decode_stats.hpp"
#include "evloader/io/decoder.hpp"

namespace evloader {

/// A position where decoding can resume: the byte offset of a word boundary and the decoder state there.
struct IndexEntry {
  std::uint64_t byte_offset = 0;
  std::uint64_t event_index = 0;          ///< CD events decoded before this position
  std::int64_t max_t_before = INT64_MIN;  ///< largest t among those events (non-decreasing over entries)
  DecoderState state{};
};

struct IndexSummary {
  std::uint64_t event_count = 0;
  std::uint64_t trigger_count = 0;
  std::int64_t first_t = 0;  ///< t of the first event in stream order (0 when empty)
  std::int64_t last_t = 0;   ///< t of the last event in stream order (0 when empty)
  std::int64_t max_t = 0;    ///< largest t seen
  std::int64_t metavision_time_shift = 0;
  DecodeStats stats{};
};

/// What the index depends on: if any of it changes, the index is rebuilt.
struct IndexKey {
  std::uint64_t file_size = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t decode_signature = 0;  ///< hash of the options that change the decoded events
};

struct TimeIndex {
  std::vector<IndexEntry> entries;  ///< entries[0] is the start of the data
  IndexSummary summary;

  /// The last entry after which no event has t >= t (so a linear scan's first event with t' >= t lies after
  /// it).
  [[nodiscard]] const IndexEntry& entry_for_time(Timestamp t) const;
  /// The last entry with event_index <= n.
  [[nodiscard]] const IndexEntry& entry_for_event(std::uint64_t n) const;
};

/// `<recording>.evlidx` next to the recording.
[[nodiscard]] std::filesystem::path sidecar_index_path(const std::filesystem::path& recording);
/// `<cache>/evloader/index/<hash of the absolute path>.evlidx`, with <cache> from EVLOADER_CACHE_DIR,
/// XDG_CACHE_HOME or ~/.cache.
[[nodiscard]] std::filesystem::path cache_index_path(const std::filesystem::path& recording);

/// Load an index saved for `key`; nullopt when missing, stale, or damaged (checksum, structure).
[[nodiscard]] std::optional<TimeIndex> load_index(const std::filesystem::path& index_path,
                                                  const IndexKey& key);
/// Save atomically (temporary file + rename). Returns false when the folder is not writable.
bool save_index(const std::filesystem::path& index_path, const IndexKey& key,
                const TimeIndex& index) noexcept;

}  // namespace evloader
