// SPDX-License-Identifier: Apache-2.0
// The box labels of one recording, read once from its `_bbox.npy` and queried by time window from any
// number of threads, plus a per-process cache so that a box file is read once, not once per batch.
//
// Window convention (behaviour spec §5.1, quirk 1): a batch [start, start + duration) of events owns the
// boxes with start < t <= start + duration, and time bin k owns start + k*dt < t <= start + (k+1)*dt. This
// is the older Metavision SDK's convention, consistent with split_boxes' bins; 4.2.1's [start, end) window
// loses every box that lies exactly on a batch boundary. See docs/labels.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "evloader/core/types.hpp"
#include "evloader/io/npy.hpp"

namespace evloader {

/// The box file of a recording (spec §2.4, made generous): the recording's ending `_td.dat`, `.dat`,
/// `.h5`, `.hdf5`, `.raw` or `.aedat4` (matched case-insensitively) is replaced by `_bbox.npy`:
/// `rec_td.dat -> rec_bbox.npy`, `rec_3.h5 -> rec_3_bbox.npy`. Throws ConfigError for any other ending.
[[nodiscard]] std::filesystem::path label_path_for(const std::filesystem::path& recording);

/// Metavision's box order: by t, ties broken by the other fields in dtype order (x, y, w, h, class_id,
/// track_id, class_confidence; NaN after numbers), exactly as `np.sort(boxes, order=["t"])` orders them.
/// Deterministic, so the "latest box wins" NMS of split_boxes breaks ties the same way as metavision_ml.
[[nodiscard]] bool box_order_less(const EventBbox& a, const EventBbox& b) noexcept;

/// Boxes of one recording in box_order_less order. Immutable after construction: every member is const,
/// so one store can be queried from several threads at once.
class BoxStore {
 public:
  BoxStore() = default;
  /// Takes the boxes in any order and sorts them (the tail padding bytes are zeroed).
  explicit BoxStore(std::vector<EventBbox> boxes, std::filesystem::path path = {});
  /// Read a box file of any known layout (io/npy.hpp read_boxes_npy). IoError when it is missing or
  /// unreadable, FormatError when it is malformed; both name the file.
  [[nodiscard]] static std::shared_ptr<const BoxStore> load(const std::filesystem::path& box_file);

  [[nodiscard]] std::span<const EventBbox> boxes() const noexcept { return boxes_; }
  [[nodiscard]] std::size_t size() const noexcept { return boxes_.size(); }
  [[nodiscard]] bool empty() const noexcept { return boxes_.empty(); }
  /// The file the boxes came from (empty for in-memory stores).
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

  /// Boxes with after < t <= until (binary search; a view into the store).
  [[nodiscard]] std::span<const EventBbox> range(Timestamp after, Timestamp until) const noexcept;
  /// The boxes of the batch that starts at `start` and lasts `duration`: start < t <= start + duration.
  [[nodiscard]] std::span<const EventBbox> window(Timestamp start, Timestamp duration) const noexcept;

 private:
  std::vector<EventBbox> boxes_;
  std::filesystem::path path_;
};

/// A bounded, thread-safe LRU cache of BoxStores keyed by (absolute path, modification time, size): a box
/// file is read once per process and read again only when it changes on disk.
class BoxStoreCache {
 public:
  explicit BoxStoreCache(std::size_t capacity = 256);
  BoxStoreCache(const BoxStoreCache&) = delete;
  BoxStoreCache& operator=(const BoxStoreCache&) = delete;

  /// The store of `box_file`, read now if it is not cached or changed since. IoError (missing file) and
  /// FormatError (malformed file) name the file. Concurrent callers may each read a file that is not
  /// cached yet; one of the stores is kept.
  [[nodiscard]] std::shared_ptr<const BoxStore> get(const std::filesystem::path& box_file);

  void clear();
  void set_capacity(std::size_t capacity);  ///< at least 1; evicts the least recently used entries
  [[nodiscard]] std::size_t capacity() const;
  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] std::uint64_t file_reads() const;  ///< files read so far (hits do not count)

  /// The process-wide cache used by the Python functions and the loader.
  [[nodiscard]] static BoxStoreCache& global();

 private:
  struct Entry {
    std::string key;  // absolute path
    std::filesystem::file_time_type mtime;
    std::uintmax_t size = 0;
    std::shared_ptr<const BoxStore> store;
  };
  void evict_locked();

  mutable std::mutex mutex_;
  std::size_t capacity_;
  std::uint64_t file_reads_ = 0;
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace evloader
