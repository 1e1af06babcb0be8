// SPDX-License-Identifier: Apache-2.0
// Fuzzes the time-index sidecar (time_index.hpp): any bytes as the index of a fixed recording (DAT, EVT3,
// EVT2), with the key, and optionally the checksum, fixed up so that the structural and semantic checks are
// reached. Whatever the index says, reading the recording gives its events, and seeks stay in bounds.
// Input: flags u8 (recording = (flags & 3) % 3; 4: fix the checksum; 8: also read when load_index refused;
// 16: a whole read at the end), seek_n u32, seek_t u32, then the index file.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/dat.hpp"
#include "evloader/io/event_reader.hpp"
#include "evloader/io/raw_writer.hpp"
#include "evloader/io/time_index.hpp"
#include "fuzz_support.hpp"

namespace {

using evloader::EventBuffer;
using evloader::EventCD;
using evloader::Geometry;
using evloader::IndexEntry;
using evloader::TimeIndex;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// Sidecar layout (time_index.cpp): magic[8], IndexKey, IndexSummary, entry count, entries, then an FNV-1a
// checksum of everything before it.
constexpr std::size_t kKeyOffset = 8;
constexpr std::size_t kHeadSize = 8 + sizeof(evloader::IndexKey) + sizeof(evloader::IndexSummary) + 8;

std::uint64_t fnv1a(std::span<const std::uint8_t> bytes) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::uint8_t b : bytes) h = (h ^ b) * 1099511628211ull;
  return h;
}

constexpr Geometry kGeometry{640, 480};
constexpr std::size_t kEvents = 75000;  // over one 256 KiB block in each format: 3 or 4 index entries

// The recordings' events; tests/fuzz/seeders/files.py writes the same ones to make the seed indexes.
// DAT: times that cross 2^32 (the on-disk counter wraps); RAW: small steps with gaps.
std::vector<EventCD> make_events(bool dat) {
  std::vector<EventCD> events(kEvents);
  for (std::size_t i = 0; i < kEvents; ++i) {
    const auto k = static_cast<std::int64_t>(i);
    events[i].x = static_cast<std::uint16_t>((i * 7) % kGeometry.width);
    events[i].y = static_cast<std::uint16_t>((i * 13) % kGeometry.height);
    events[i].p = static_cast<std::int16_t>((i >> 3) & 1);
    events[i].t = dat ? 4294000000 + 20 * k : 1000 + 2 * k + (k / 1000) * 5000;
  }
  return events;
}

struct Recording {
  std::filesystem::path path;
  std::vector<EventCD> events;
  std::vector<std::uint8_t> index;  // the sidecar the reader writes for it
};

std::vector<std::uint8_t> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::filesystem::path& path, std::span<const std::uint8_t> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A folder of this process for the recordings, their sidecars and the index cache; removed at exit (the
// path is never destroyed, so the exit handler can still use it), and by the next run when a crash or
// libFuzzer's _Exit skipped that.
const std::filesystem::path& scratch_dir() {
  static const auto* dir = [] {
    const std::string prefix = "evloader_fuzz_tidx_";
    std::error_code ec;
    for (const auto& entry :
         std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind(prefix, 0) != 0) continue;
      const std::string pid = name.substr(prefix.size());
      if (!pid.empty() && !std::filesystem::exists("/proc/" + pid, ec))
        std::filesystem::remove_all(entry.path(), ec);
    }
    auto* d = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                        (prefix + std::to_string(::getpid())));
    std::filesystem::create_directories(*d);
    ::setenv("EVLOADER_CACHE_DIR", (*d / "cache").c_str(), 1);
    std::atexit([] {
      std::error_code error;
      std::filesystem::remove_all(scratch_dir(), error);
    });
    return d;
  }();
  return *dir;
}

std::vector<Recording>& recordings() {
  static std::vector<Recording> all = [] {
    std::vector<Recording> r(3);
    r[0].path = scratch_dir() / "rec.dat";
    r[1].path = scratch_dir() / "rec_evt3.raw";
    r[2].path = scratch_dir() / "rec_evt2.raw";
    for (std::size_t i = 0; i < r.size(); ++i) {
      r[i].events = make_events(i == 0);
      if (i == 0) {
        evloader::DatWriter w(r[i].path, kGeometry);
        w.write(r[i].events);
        w.close();
      } else {
        evloader::RawWriter w(r[i].path, i == 1 ? evloader::RawEncoding::evt3 : evloader::RawEncoding::evt2,
                              kGeometry);
        w.write(r[i].events);
        w.close();
      }
      auto reader = evloader::EventReader::open(r[i].path);
      reader->build_index();
      check(reader->index_path() == evloader::sidecar_index_path(r[i].path));
      r[i].index = read_bytes(reader->index_path());
      check(r[i].index.size() > kHeadSize + 2 * sizeof(IndexEntry));  // several entries
      // The writers and readers agree with the formula, so it is the reference below.
      const EventBuffer decoded = reader->load_all();
      check(decoded.size() == kEvents);
      for (std::size_t k = 0; k < kEvents; ++k) check(decoded[k] == r[i].events[k]);
    }
    return r;
  }();
  return all;
}

bool same_events(const EventBuffer& a, std::span<const EventCD> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i])) return false;
  return true;
}

// What load_index promises for an index it accepts, checked independently.
void check_accepted(const TimeIndex& index, std::uint64_t file_size) {
  check(!index.entries.empty());
  check(index.entries.front().event_index == 0);
  for (std::size_t i = 0; i < index.entries.size(); ++i) {
    const IndexEntry& e = index.entries[i];
    check(e.byte_offset <= file_size && e.event_index <= index.summary.event_count);
    if (i > 0) {
      const IndexEntry& p = index.entries[i - 1];
      check(p.byte_offset <= e.byte_offset && p.event_index <= e.event_index &&
            p.max_t_before <= e.max_t_before);
    }
  }
}

bool entries_equal(const TimeIndex& a, const std::vector<std::uint8_t>& real_bytes) {
  const std::size_t n = (real_bytes.size() - kHeadSize - 8) / sizeof(IndexEntry);
  if (a.entries.size() != n) return false;
  for (std::size_t i = 0; i < n; ++i) {
    IndexEntry e;
    std::memcpy(&e, real_bytes.data() + kHeadSize + i * sizeof(IndexEntry), sizeof e);
    const IndexEntry& b = a.entries[i];
    if (e.byte_offset != b.byte_offset || e.event_index != b.event_index ||
        e.max_t_before != b.max_t_before || !(e.state == b.state))
      return false;
  }
  return true;
}

bool summary_equal(const TimeIndex& a, const std::vector<std::uint8_t>& real_bytes) {
  evloader::IndexSummary s;
  std::memcpy(&s, real_bytes.data() + kKeyOffset + sizeof(evloader::IndexKey), sizeof s);
  return s.event_count == a.summary.event_count && s.trigger_count == a.summary.trigger_count &&
         s.first_t == a.summary.first_t && s.last_t == a.summary.last_t && s.max_t == a.summary.max_t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  evloader::fuzz::FuzzInput in(data, size);
  const auto flags = in.take<std::uint8_t>();
  const auto seek_n = in.take<std::uint32_t>();
  const auto seek_t = in.take<std::uint32_t>();
  const auto payload = in.rest();

  Recording& rec = recordings()[(flags & 3) % 3];
  std::vector<std::uint8_t> index(payload.begin(), payload.end());
  // The key is this recording's (its size and mtime are not the fuzzer's to guess). The checksum is made
  // right after that when the input's own was (an intact index of another copy of the recording), and
  // always with flag 4, so that the checks behind it see the fuzzed entries.
  const auto checksum_of = [](std::span<const std::uint8_t> bytes) {
    return fnv1a(bytes.first(bytes.size() - 8));
  };
  bool fix_checksum = (flags & 4) != 0;
  if (!fix_checksum && index.size() >= 8) {
    std::uint64_t stored = 0;
    std::memcpy(&stored, index.data() + index.size() - 8, 8);
    fix_checksum = stored == checksum_of(index);
  }
  if (index.size() >= kKeyOffset + sizeof(evloader::IndexKey))
    std::copy_n(rec.index.begin() + kKeyOffset, sizeof(evloader::IndexKey), index.begin() + kKeyOffset);
  if (fix_checksum && index.size() >= 8) {
    const std::uint64_t h = checksum_of(index);
    std::memcpy(index.data() + index.size() - 8, &h, 8);
  }
  const auto sidecar = evloader::sidecar_index_path(rec.path);
  write_bytes(sidecar, index);

  evloader::IndexKey key;
  std::memcpy(&key, rec.index.data() + kKeyOffset, sizeof key);
  const std::uint64_t file_size = std::filesystem::file_size(rec.path);
  std::optional<TimeIndex> loaded = evloader::load_index(sidecar, key);
  bool truthful = false;  // the accepted index says what a rebuild would say
  if (loaded) {
    check_accepted(*loaded, file_size);
    truthful = entries_equal(*loaded, rec.index) && summary_equal(*loaded, rec.index);
  }

  // An index load_index refused is rebuilt by the reader, which costs a full decode: checked only with
  // flag 8 so that the fuzzer spends its time on indexes that get through.
  if (!loaded && (flags & 8) == 0) return 0;

  const std::span<const EventCD> ref(rec.events);
  try {
    auto reader = evloader::EventReader::open(rec.path);
    reader->build_index();  // loads the sidecar, or rebuilds when it does not fit the recording
    const std::uint64_t count = reader->event_count();
    if (truthful || !loaded) {
      check(count == kEvents);
      check(reader->first_timestamp() == ref.front().t && reader->last_timestamp() == ref.back().t);
    }
    // Sequential reading never depends on the index, even once it is loaded.
    check(same_events(reader->load_n_events(1000), ref.first(1000)));

    const std::uint64_t n = seek_n % (kEvents + 1);
    reader->seek_event(n);
    const EventBuffer after_n = reader->load_n_events(4);
    const std::int64_t t = ref[seek_t % kEvents].t + static_cast<std::int64_t>(seek_t >> 28) - 8;
    reader->seek_time(t);
    const EventBuffer after_t = reader->load_n_events(4);
    for (const EventBuffer* b : {&after_n, &after_t}) {
      check(b->size() <= 4);
      for (const EventCD& e : *b)
        check(e.x < kGeometry.width && e.y < kGeometry.height && (e.p == 0 || e.p == 1));
    }
    if (truthful || !loaded) {
      check(same_events(after_n, ref.subspan(n, std::min<std::size_t>(4, kEvents - n))));
      std::size_t j = 0;
      while (j < kEvents && ref[j].t < t) ++j;
      check(same_events(after_t, ref.subspan(j, std::min<std::size_t>(4, kEvents - j))));
    }
    reader->reset();
    if ((flags & 16) != 0)
      check(same_events(reader->load_all(), ref));  // a whole read after seeks (costly, so on request)
    else
      check(same_events(reader->load_n_events(100), ref.first(100)));
  } catch (const evloader::Error&) {
    check(loaded && !truthful);  // only a damaged index may end in a (clean) error
  }
  return 0;
}
