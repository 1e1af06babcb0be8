// SPDX-License-Identifier: Apache-2.0
// BoxStore (sorted boxes of one recording, window queries) and the process-wide cache of stores.
#include "evloader/labels/box_store.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <limits>
#include <string_view>
#include <system_error>
#include <utility>

#include "evloader/core/error.hpp"

namespace evloader {

namespace {

// numpy's float ordering for sorts: NaN after every number, NaNs equal to each other.
bool float_less(float a, float b) noexcept { return a < b || (std::isnan(b) && !std::isnan(a)); }

bool ends_with_nocase(std::string_view text, std::string_view suffix) noexcept {
  if (text.size() < suffix.size()) return false;
  text.remove_prefix(text.size() - suffix.size());
  for (std::size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[i])) != static_cast<unsigned char>(suffix[i]))
      return false;
  return true;
}

Timestamp saturating_add(Timestamp a, Timestamp b) noexcept {
  Timestamp out;
  if (__builtin_add_overflow(a, b, &out))
    return b > 0 ? std::numeric_limits<Timestamp>::max() : std::numeric_limits<Timestamp>::min();
  return out;
}

}  // namespace

std::filesystem::path label_path_for(const std::filesystem::path& recording) {
  // `_td.dat` before `.dat`: Prophesee datasets pair rec_td.dat with rec_bbox.npy.
  static constexpr std::array<std::string_view, 6> endings = {"_td.dat", ".dat", ".hdf5",
                                                              ".h5",     ".raw", ".aedat4"};
  const std::string text = recording.string();
  for (std::string_view ending : endings)
    if (ends_with_nocase(text, ending) && text.size() > ending.size())
      return std::filesystem::path(text.substr(0, text.size() - ending.size()) + "_bbox.npy");
  throw ConfigError(text +
                    ": cannot derive the box file name (expected a recording ending in _td.dat, .dat, .h5, "
                    ".hdf5, .raw or .aedat4)");
}

bool box_order_less(const EventBbox& a, const EventBbox& b) noexcept {
  if (a.t != b.t) return a.t < b.t;
  for (auto field : {&EventBbox::x, &EventBbox::y, &EventBbox::w, &EventBbox::h}) {
    if (float_less(a.*field, b.*field)) return true;
    if (float_less(b.*field, a.*field)) return false;
  }
  if (a.class_id != b.class_id) return a.class_id < b.class_id;
  if (a.track_id != b.track_id) return a.track_id < b.track_id;
  return float_less(a.class_confidence, b.class_confidence);
}

BoxStore::BoxStore(std::vector<EventBbox> boxes, std::filesystem::path path)
    : boxes_(std::move(boxes)), path_(std::move(path)) {
  for (EventBbox& b : boxes_) b.padding_ = 0;
  // Stable, so records equal in every field keep the file order (they are indistinguishable anyway).
  std::stable_sort(boxes_.begin(), boxes_.end(), box_order_less);
}

std::shared_ptr<const BoxStore> BoxStore::load(const std::filesystem::path& box_file) {
  return std::make_shared<const BoxStore>(read_boxes_npy(box_file), box_file);
}

std::span<const EventBbox> BoxStore::range(Timestamp after, Timestamp until) const noexcept {
  if (until <= after) return {};
  auto by_time = [](const EventBbox& b, Timestamp t) { return b.t <= t; };
  // First box with t > after, first box with t > until.
  auto lo = std::lower_bound(boxes_.begin(), boxes_.end(), after, by_time);
  auto hi = std::lower_bound(lo, boxes_.end(), until, by_time);
  return {boxes_.data() + (lo - boxes_.begin()), static_cast<std::size_t>(hi - lo)};
}

std::span<const EventBbox> BoxStore::window(Timestamp start, Timestamp duration) const noexcept {
  return range(start, saturating_add(start, duration));
}

BoxStoreCache::BoxStoreCache(std::size_t capacity) : capacity_(std::max<std::size_t>(1, capacity)) {}

std::shared_ptr<const BoxStore> BoxStoreCache::get(const std::filesystem::path& box_file) {
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(box_file, ec);
  if (ec) absolute = box_file;
  absolute = absolute.lexically_normal();
  const auto status = std::filesystem::status(absolute, ec);
  if (ec || !std::filesystem::exists(status)) throw_io_error(box_file, "box file not found");
  if (std::filesystem::is_directory(status)) throw_io_error(box_file, "is a directory, not a box file");
  const auto mtime = std::filesystem::last_write_time(absolute, ec);
  if (ec) throw_io_error(box_file, "cannot read the modification time: " + ec.message());
  const auto size = std::filesystem::file_size(absolute, ec);
  if (ec) throw_io_error(box_file, "cannot get the file size: " + ec.message());
  std::string key = absolute.string();

  {
    std::lock_guard lock(mutex_);
    if (auto it = index_.find(key); it != index_.end()) {
      if (it->second->mtime == mtime && it->second->size == size) {
        lru_.splice(lru_.begin(), lru_, it->second);
        return it->second->store;
      }
      lru_.erase(it->second);  // changed on disk: read it again
      index_.erase(it);
    }
  }
  // Read without the lock: other files stay available to other threads meanwhile.
  std::shared_ptr<const BoxStore> store = BoxStore::load(box_file);

  std::lock_guard lock(mutex_);
  ++file_reads_;
  if (auto it = index_.find(key); it != index_.end()) {
    if (it->second->mtime == mtime && it->second->size == size) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->store;  // another thread read the same version first
    }
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.push_front(Entry{key, mtime, size, store});
  index_.emplace(std::move(key), lru_.begin());
  evict_locked();
  return store;
}

void BoxStoreCache::evict_locked() {
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

void BoxStoreCache::clear() {
  std::lock_guard lock(mutex_);
  index_.clear();
  lru_.clear();
}

void BoxStoreCache::set_capacity(std::size_t capacity) {
  std::lock_guard lock(mutex_);
  capacity_ = std::max<std::size_t>(1, capacity);
  evict_locked();
}

std::size_t BoxStoreCache::capacity() const {
  std::lock_guard lock(mutex_);
  return capacity_;
}

std::size_t BoxStoreCache::size() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

std::uint64_t BoxStoreCache::file_reads() const {
  std::lock_guard lock(mutex_);
  return file_reads_;
}

BoxStoreCache& BoxStoreCache::global() {
  static BoxStoreCache cache;
  return cache;
}

}  // namespace evloader
