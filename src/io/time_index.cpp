// SPDX-License-Identifier: Apache-2.0
#include "evloader/io/time_index.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <system_error>
#include <thread>

namespace evloader {

namespace {

constexpr char kMagic[8] = {'E', 'V', 'L', 'I', 'D', 'X', '0', '1'};
constexpr std::uint64_t kMaxEntries = std::uint64_t{1} << 32;

std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

struct FileLayout {  // fixed part of the sidecar, followed by the entries and a checksum
  char magic[8];
  IndexKey key;
  IndexSummary summary;
  std::uint64_t entry_count;
};

// Bounds no real recording comes near (2^62 us is 146,000 years of recording, 2^20 counter wraps is
// 570 years even for EVT 2.0's 2^34 us period). A loaded decoder state within them keeps every decoder's
// time arithmetic (adding wraps, loops times the period) far from signed overflow, whatever the index says.
constexpr std::int64_t kMaxTime = std::int64_t{1} << 62;
constexpr std::int32_t kMaxLoops = 1 << 20;

bool plausible_time(std::int64_t t) { return t >= -kMaxTime && t <= kMaxTime; }
bool is_flag(std::int32_t v) { return v == 0 || v == 1; }

// What a decoder can have saved (decoder.hpp, DatReader): anything else is damage, not a position.
bool plausible_state(const DecoderState& s) {
  return s.time_base >= 0 && s.time_base <= kMaxTime && s.time >= -1 && s.time <= kMaxTime &&
         (s.last_event_t == INT64_MIN || plausible_time(s.last_event_t)) && s.first_time_high >= -1 &&
         s.first_time_high <= 0xFFFFFFFFll && s.loops >= 0 && s.loops <= kMaxLoops && s.y >= 0 &&
         s.y <= 0xFFFF && s.base_x >= 0 && s.base_x <= 0xFFFF && is_flag(s.polarity) &&
         is_flag(s.has_time_base) && is_flag(s.y_valid) && s.skip_words >= 0 && s.skip_words <= 64 &&
         s.reserved == 0;
}

// The summary as build_index writes it: times only when there are events, max_t the largest of them.
// (Counts are not bounded by the file size: compressed HDF5 recordings can hold many events per byte.)
bool plausible_summary(const IndexSummary& s) {
  if (!plausible_time(s.metavision_time_shift)) return false;
  if (s.event_count == 0) return s.first_t == 0 && s.last_t == 0 && s.max_t == 0;
  return plausible_time(s.first_t) && plausible_time(s.last_t) && plausible_time(s.max_t) &&
         s.max_t >= s.first_t && s.max_t >= s.last_t;
}

}  // namespace

const IndexEntry& TimeIndex::entry_for_time(Timestamp t) const {
  // entries' max_t_before is non-decreasing: find the last one whose preceding events are all < t.
  auto it = std::partition_point(entries.begin(), entries.end(),
                                 [t](const IndexEntry& e) { return e.max_t_before < t; });
  return it == entries.begin() ? entries.front() : *(it - 1);
}

const IndexEntry& TimeIndex::entry_for_event(std::uint64_t n) const {
  auto it = std::partition_point(entries.begin(), entries.end(),
                                 [n](const IndexEntry& e) { return e.event_index <= n; });
  return it == entries.begin() ? entries.front() : *(it - 1);
}

std::filesystem::path sidecar_index_path(const std::filesystem::path& recording) {
  auto p = recording;
  p += ".evlidx";
  return p;
}

std::filesystem::path cache_index_path(const std::filesystem::path& recording) {
  std::filesystem::path base;
  if (const char* d = std::getenv("EVLOADER_CACHE_DIR"); d && *d) {
    base = d;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    base = std::filesystem::path(x) / "evloader";
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    base = std::filesystem::path(h) / ".cache" / "evloader";
  } else {
    base = std::filesystem::temp_directory_path() / "evloader";
  }
  std::error_code ec;
  auto absolute = std::filesystem::absolute(recording, ec);
  std::string text = (ec ? recording : absolute).lexically_normal().string();
  char name[32];
  std::snprintf(name, sizeof name, "%016llx",
                static_cast<unsigned long long>(fnv1a(text.data(), text.size())));
  return base / "index" / (std::string(name) + ".evlidx");
}

std::optional<TimeIndex> load_index(const std::filesystem::path& index_path, const IndexKey& key) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in) return std::nullopt;
  FileLayout head{};
  if (!in.read(reinterpret_cast<char*>(&head), sizeof head)) return std::nullopt;
  if (std::memcmp(head.magic, kMagic, sizeof kMagic) != 0) return std::nullopt;
  if (head.key.file_size != key.file_size || head.key.mtime_ns != key.mtime_ns ||
      head.key.decode_signature != key.decode_signature)
    return std::nullopt;
  if (head.entry_count == 0 || head.entry_count > kMaxEntries) return std::nullopt;
  // The entries must be in the file before they are allocated: a damaged count must not reserve gigabytes.
  std::error_code ec;
  const std::uint64_t index_size = std::filesystem::file_size(index_path, ec);
  if (ec || index_size < sizeof head + sizeof(std::uint64_t) ||
      (index_size - sizeof head - sizeof(std::uint64_t)) / sizeof(IndexEntry) != head.entry_count ||
      (index_size - sizeof head - sizeof(std::uint64_t)) % sizeof(IndexEntry) != 0)
    return std::nullopt;
  TimeIndex index;
  index.summary = head.summary;
  index.entries.resize(head.entry_count);
  const auto bytes = static_cast<std::streamsize>(head.entry_count * sizeof(IndexEntry));
  if (!in.read(reinterpret_cast<char*>(index.entries.data()), bytes)) return std::nullopt;
  std::uint64_t stored = 0;
  if (!in.read(reinterpret_cast<char*>(&stored), sizeof stored)) return std::nullopt;
  std::uint64_t h = fnv1a(&head, sizeof head);
  h = fnv1a(index.entries.data(), static_cast<std::size_t>(bytes), h);
  if (h != stored) return std::nullopt;
  // Structural and semantic checks so that a damaged or hostile sidecar (even one with a valid checksum)
  // can never send a reader out of the file or into overflowing time arithmetic. The reader checks the
  // rest against the recording (start position, its own format's constraints) before using the index.
  if (!plausible_summary(index.summary)) return std::nullopt;
  const IndexEntry& first = index.entries.front();
  if (first.event_index != 0 || first.max_t_before != INT64_MIN) return std::nullopt;
  for (std::size_t i = 0; i < index.entries.size(); ++i) {
    const auto& e = index.entries[i];
    if (e.byte_offset > key.file_size || e.event_index > index.summary.event_count) return std::nullopt;
    if (!plausible_state(e.state)) return std::nullopt;
    // Before any event max_t_before is the INT64_MIN sentinel; after one it is a real time <= max_t.
    if ((e.event_index == 0) != (e.max_t_before == INT64_MIN)) return std::nullopt;
    if (e.event_index != 0 && (!plausible_time(e.max_t_before) || e.max_t_before > index.summary.max_t))
      return std::nullopt;
    if (i > 0) {
      const auto& p = index.entries[i - 1];
      if (e.byte_offset < p.byte_offset || e.event_index < p.event_index || e.max_t_before < p.max_t_before)
        return std::nullopt;
    }
  }
  return index;
}

bool save_index(const std::filesystem::path& index_path, const IndexKey& key,
                const TimeIndex& index) noexcept {
  try {
    std::error_code ec;
    std::filesystem::create_directories(index_path.parent_path(), ec);
    auto tmp = index_path;
    // Unique per process and thread: two readers of one recording (loader slots) may save its index at once.
    tmp += ".tmp" + std::to_string(::getpid()) + "-" +
           std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) return false;
      FileLayout head;
      std::memset(static_cast<void*>(&head), 0, sizeof head);  // the checksum covers every byte
      std::memcpy(head.magic, kMagic, sizeof kMagic);
      head.key = key;
      head.summary = index.summary;
      head.entry_count = index.entries.size();
      const std::size_t bytes = index.entries.size() * sizeof(IndexEntry);
      std::uint64_t h = fnv1a(&head, sizeof head);
      h = fnv1a(index.entries.data(), bytes, h);
      out.write(reinterpret_cast<const char*>(&head), sizeof head);
      out.write(reinterpret_cast<const char*>(index.entries.data()), static_cast<std::streamsize>(bytes));
      out.write(reinterpret_cast<const char*>(&h), sizeof h);
      out.flush();
      if (!out) {
        out.close();
        std::filesystem::remove(tmp, ec);
        return false;
      }
    }
    std::filesystem::rename(tmp, index_path, ec);
    if (ec) {
      std::filesystem::remove(tmp, ec);
      return false;
    }
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace evloader
