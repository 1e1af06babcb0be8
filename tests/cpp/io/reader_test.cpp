// SPDX-License-Identifier: Apache-2.0
// The reader contract on generated recordings: load modes, seeks against a linear scan, the time index.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "evloader/core/error.hpp"
#include "evloader/io/dat.hpp"
#include "evloader/io/event_reader.hpp"
#include "evloader/io/raw_writer.hpp"
#include "support/event_gen.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

namespace fs = std::filesystem;

std::vector<EventCD> sorted_canonically(std::vector<EventCD> v) {
  std::stable_sort(v.begin(), v.end(), [](const EventCD& a, const EventCD& b) {
    return std::tie(a.t, a.y, a.p, a.x) < std::tie(b.t, b.y, b.p, b.x);
  });
  return v;
}

std::vector<EventCD> to_vector(const EventBuffer& b) { return {b.begin(), b.end()}; }

struct Recording {
  fs::path path;
  std::vector<EventCD> events;  // in the order the reader returns them
};

enum class Kind { evt2, evt21, evt3, dat };

Recording write_recording(Kind kind, std::size_t n, std::uint32_t seed) {
  test::StreamShape shape;
  shape.width = 640;
  shape.height = 480;
  shape.t_start = 5'000'000;
  auto events = test::random_events(n, seed, shape);
  const char* names[] = {"evt2.raw", "evt21.raw", "evt3.raw", "rec_td.dat"};
  fs::path path = test::temp_dir() / (std::to_string(seed) + "_" + names[static_cast<int>(kind)]);
  fs::remove(fs::path(path.string() + ".evlidx"));
  if (kind == Kind::dat) {
    DatWriter w(path, {640, 480});
    w.write(events);
    w.close();
  } else {
    RawEncoding enc = kind == Kind::evt2    ? RawEncoding::evt2
                      : kind == Kind::evt21 ? RawEncoding::evt21
                                            : RawEncoding::evt3;
    RawWriter w(path, enc, {640, 480});
    w.write(std::span(events).first(n / 3));
    w.write(std::span(events).subspan(n / 3));
    w.close();
  }
  // Encoders may reorder events that share a timestamp; the reader's order is the reference from here on.
  ReaderOptions memory_only;
  memory_only.index_storage = IndexStorage::memory;
  auto all = EventReader::open(path, memory_only)->load_all();
  EXPECT_EQ(sorted_canonically(to_vector(all)), sorted_canonically(events));
  return {path, to_vector(all)};
}

class ReaderContract : public ::testing::TestWithParam<Kind> {};

TEST_P(ReaderContract, LoadDeltaTPartitionsTheStream) {
  auto rec = write_recording(GetParam(), 80'000, 11);
  auto reader = EventReader::open(rec.path);
  reader->seek_time(5'000'000);
  std::vector<EventCD> seen;
  EventBuffer slice;
  Timestamp start = 5'000'000;
  while (!reader->is_done()) {
    reader->load_delta_t(997, slice);
    for (const auto& e : slice) {
      ASSERT_GE(e.t, start);
      ASSERT_LT(e.t, start + 997);
    }
    start += 997;
    ASSERT_EQ(reader->current_time(), start);
    seen.insert(seen.end(), slice.begin(), slice.end());
  }
  EXPECT_EQ(seen, rec.events);
}

TEST_P(ReaderContract, SeekTimeEqualsLinearScan) {
  auto rec = write_recording(GetParam(), 120'000, 12);
  auto reader = EventReader::open(rec.path);
  std::mt19937 rng(3);
  const Timestamp lo = rec.events.front().t - 50, hi = rec.events.back().t + 50;
  std::uniform_int_distribution<Timestamp> pick(lo, hi);
  std::vector<Timestamp> targets = {lo, rec.events.front().t, rec.events.back().t, hi, 0};
  for (int i = 0; i < 40; ++i) targets.push_back(pick(rng));
  for (Timestamp target : targets) {
    reader->seek_time(target);
    auto first =
        std::find_if(rec.events.begin(), rec.events.end(), [&](const EventCD& e) { return e.t >= target; });
    const auto expected_index = static_cast<std::uint64_t>(first - rec.events.begin());
    ASSERT_EQ(reader->current_event_index(), expected_index) << "target " << target;
    ASSERT_EQ(reader->current_time(), target);
    auto got = reader->load_n_events(300);
    std::vector<EventCD> expected(first, first + std::min<std::ptrdiff_t>(300, rec.events.end() - first));
    ASSERT_EQ(to_vector(got), expected) << "target " << target;
  }
}

TEST_P(ReaderContract, SeekEventAndSummaryFromIndex) {
  auto rec = write_recording(GetParam(), 100'000, 13);
  auto reader = EventReader::open(rec.path);
  EXPECT_EQ(reader->event_count(), rec.events.size());
  EXPECT_EQ(reader->first_timestamp(), rec.events.front().t);
  EXPECT_EQ(reader->last_timestamp(), rec.events.back().t);
  EXPECT_EQ(reader->duration(), rec.events.back().t - rec.events.front().t);
  for (std::uint64_t n : {0ull, 1ull, 33'333ull, 65'536ull, 99'999ull}) {
    reader->seek_event(n);
    ASSERT_EQ(reader->current_time(), rec.events[n].t);
    auto got = reader->load_n_events(10);
    ASSERT_EQ(got[0], rec.events[n]);
  }
  reader->seek_event(rec.events.size() + 5);
  EXPECT_TRUE(reader->is_done());
}

TEST_P(ReaderContract, IndexBuiltMidStreamKeepsThePosition) {
  auto rec = write_recording(GetParam(), 60'000, 14);
  auto reader = EventReader::open(rec.path);
  auto head = reader->load_n_events(12'345);
  const Timestamp now = reader->current_time();
  EXPECT_EQ(reader->event_count(), rec.events.size());  // builds the index
  EXPECT_EQ(reader->current_time(), now);
  auto next = reader->load_n_events(100);
  EXPECT_EQ(next[0], rec.events[12'345]);
}

TEST_P(ReaderContract, SidecarIndexIsWrittenAndReused) {
  auto rec = write_recording(GetParam(), 30'000, 15);
  {
    auto reader = EventReader::open(rec.path);
    reader->build_index();
    EXPECT_EQ(reader->index_path(), sidecar_index_path(rec.path));
  }
  ASSERT_TRUE(fs::exists(sidecar_index_path(rec.path)));
  auto reader = EventReader::open(rec.path);
  reader->build_index();
  EXPECT_EQ(reader->index_path(), sidecar_index_path(rec.path));
  EXPECT_EQ(reader->event_count(), rec.events.size());
  reader->seek_event(20'000);
  EXPECT_EQ(reader->load_n_events(1)[0], rec.events[20'000]);
}

std::string kind_name(const ::testing::TestParamInfo<Kind>& param) {
  static const char* const names[] = {"Evt2", "Evt21", "Evt3", "Dat"};
  return names[static_cast<int>(param.param)];
}

INSTANTIATE_TEST_SUITE_P(AllFormats, ReaderContract,
                         ::testing::Values(Kind::evt2, Kind::evt21, Kind::evt3, Kind::dat), kind_name);

TEST(EventReader, MetavisionTimeOriginShiftsRawButNotDat) {
  auto rec = write_recording(Kind::evt3, 1000, 16);
  ReaderOptions options;
  options.time_origin = TimeOrigin::metavision;
  auto reader = EventReader::open(rec.path, options);
  const Timestamp first = rec.events.front().t;
  // EVT3: shift = (first TIME_HIGH - 1) << 12, so the first event lands in [4096, 8192).
  EXPECT_EQ(reader->time_shift(), ((first >> 12) - 1) << 12);
  EXPECT_EQ(reader->load_n_events(1)[0].t, first - reader->time_shift());
  auto dat = write_recording(Kind::dat, 1000, 17);
  EXPECT_EQ(EventReader::open(dat.path, options)->time_shift(), 0);
}

TEST(EventReader, OpenReportsMissingDirectoryAndUnknown) {
  EXPECT_THROW((void)EventReader::open(test::temp_dir() / "missing.raw"), IoError);
  EXPECT_THROW((void)EventReader::open(test::temp_dir()), IoError);
  auto unknown = test::temp_dir() / "unknown.bin";
  std::ofstream(unknown) << "just some text\n";
  EXPECT_THROW((void)EventReader::open(unknown), FormatError);
}

TEST(EventReader, InvalidParametersAreConfigErrors) {
  auto rec = write_recording(Kind::evt2, 100, 18);
  auto reader = EventReader::open(rec.path);
  EXPECT_THROW((void)reader->load_delta_t(0), ConfigError);
  EXPECT_THROW((void)reader->load_n_events(0), ConfigError);
  EXPECT_THROW((void)reader->load_mixed(10, -1), ConfigError);
}

TEST(EventReader, FileChangingAfterIndexingIsNoticed) {
  auto rec = write_recording(Kind::evt3, 5000, 19);
  EventReader::open(rec.path)->build_index();
  auto other = write_recording(Kind::evt3, 7000, 19);  // same name, new content
  EXPECT_EQ(EventReader::open(other.path)->event_count(), 7000u);
}

TEST(TimeIndex, ReadOnlyFolderSendsTheIndexToTheCache) {
  auto rec = write_recording(Kind::evt3, 3000, 21);
  const fs::path folder = test::temp_dir() / "read_only";
  fs::create_directories(folder);
  const fs::path path = folder / "rec.raw";
  fs::copy_file(rec.path, path, fs::copy_options::overwrite_existing);
  const fs::path cache = test::temp_dir() / "cache";
  ::setenv("EVLOADER_CACHE_DIR", cache.c_str(), 1);
  fs::permissions(folder, fs::perms::owner_read | fs::perms::owner_exec);
  auto reader = EventReader::open(path);
  reader->build_index();
  fs::permissions(folder, fs::perms::owner_all);
  ::unsetenv("EVLOADER_CACHE_DIR");
  EXPECT_FALSE(fs::exists(sidecar_index_path(path)));
  EXPECT_EQ(reader->index_path().parent_path().parent_path(), cache);
  EXPECT_TRUE(fs::exists(reader->index_path()));
}

TEST(TimeIndex, DamagedSidecarIsIgnored) {
  auto rec = write_recording(Kind::evt2, 40'000, 20);
  EventReader::open(rec.path)->build_index();
  auto sidecar = sidecar_index_path(rec.path);
  {
    std::fstream f(sidecar, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(300);
    f.put('\x7f');
  }
  auto reader = EventReader::open(rec.path);
  EXPECT_EQ(reader->event_count(), rec.events.size());
  reader->seek_event(30'000);
  EXPECT_EQ(reader->load_n_events(1)[0], rec.events[30'000]);
}

// ---- damaged and forged sidecars (fuzz findings of tests/fuzz/time_index_fuzzer.cpp)
// -------------------------

// The sidecar's layout: magic, key, summary, entry count, entries, FNV-1a checksum of all that.
constexpr std::size_t kIndexHead = 8 + sizeof(IndexKey) + sizeof(IndexSummary) + 8;

std::vector<char> read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Writes `bytes` with a correct checksum, so that only the checks behind it can refuse the index.
void write_with_checksum(const fs::path& path, std::vector<char> bytes) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i + 8 < bytes.size(); ++i)
    h = (h ^ static_cast<unsigned char>(bytes[i])) * 1099511628211ull;
  std::memcpy(bytes.data() + bytes.size() - 8, &h, 8);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

IndexEntry entry_at(const std::vector<char>& bytes, std::size_t i) {
  IndexEntry e;
  std::memcpy(&e, bytes.data() + kIndexHead + i * sizeof(IndexEntry), sizeof e);
  return e;
}

void set_entry(std::vector<char>& bytes, std::size_t i, const IndexEntry& e) {
  std::memcpy(bytes.data() + kIndexHead + i * sizeof(IndexEntry), &e, sizeof e);
}

IndexKey key_of(const std::vector<char>& bytes) {
  IndexKey key;
  std::memcpy(&key, bytes.data() + 8, sizeof key);
  return key;
}

// The reader still gives the recording's events, counts and seeks, whatever the sidecar said.
void expect_reads_correctly(const Recording& rec) {
  auto reader = EventReader::open(rec.path);
  EXPECT_EQ(reader->event_count(), rec.events.size());
  for (std::size_t n : {std::size_t{0}, rec.events.size() / 3, rec.events.size() - 1}) {
    reader->seek_event(n);
    ASSERT_EQ(reader->load_n_events(1)[0], rec.events[n]) << n;
  }
  reader->seek_time(rec.events[rec.events.size() / 2].t);
  EXPECT_EQ(reader->load_n_events(1)[0].t, rec.events[rec.events.size() / 2].t);
  reader->reset();
  EXPECT_EQ(to_vector(reader->load_all()), rec.events);
}

TEST(TimeIndex, EntryCountBeyondTheFileIsRefusedWithoutAllocating) {
  auto rec = write_recording(Kind::dat, 40'000, 23);
  EventReader::open(rec.path)->build_index();
  const auto sidecar = sidecar_index_path(rec.path);
  std::vector<char> bytes = read_all(sidecar);
  const IndexKey key = key_of(bytes);
  ASSERT_TRUE(load_index(sidecar, key).has_value());
  // 2^32 entries claimed, none present: reserving them would take 377 GB.
  const std::uint64_t count = std::uint64_t{1} << 32;
  std::memcpy(bytes.data() + kIndexHead - 8, &count, 8);
  bytes.resize(kIndexHead + 8);
  write_with_checksum(sidecar, bytes);
  EXPECT_FALSE(load_index(sidecar, key).has_value());
  expect_reads_correctly(rec);
}

TEST(TimeIndex, ImplausibleEntriesWithAValidChecksumAreRefused) {
  auto rec = write_recording(Kind::evt2, 120'000, 24);
  EventReader::open(rec.path)->build_index();
  const auto sidecar = sidecar_index_path(rec.path);
  const std::vector<char> good = read_all(sidecar);
  const IndexKey key = key_of(good);
  const std::size_t entries = (good.size() - kIndexHead - 8) / sizeof(IndexEntry);
  ASSERT_GE(entries, 3u);
  const std::vector<void (*)(IndexEntry&)> damage = {
      [](IndexEntry& e) { e.state.loops = INT32_MAX; },               // ++loops overflows
      [](IndexEntry& e) { e.state.time_base = INT64_MAX - 10; },      // time arithmetic overflows
      [](IndexEntry& e) { e.state.has_time_base = 7; },               // not a flag
      [](IndexEntry& e) { e.max_t_before = INT64_MIN; },              // events before it, no time
      [](IndexEntry& e) { e.max_t_before = std::int64_t{1} << 61; },  // beyond the summary's max_t
  };
  for (std::size_t k = 0; k < damage.size(); ++k) {
    std::vector<char> bytes = good;
    IndexEntry e = entry_at(bytes, 1);
    damage[k](e);
    set_entry(bytes, 1, e);
    write_with_checksum(sidecar, bytes);
    EXPECT_FALSE(load_index(sidecar, key).has_value()) << "damage " << k;
    expect_reads_correctly(rec);
  }
}

TEST(TimeIndex, IndexThatDoesNotFitTheRecordingIsRebuilt) {
  for (const Kind kind : {Kind::dat, Kind::evt3}) {
    auto rec = write_recording(kind, 120'000, 25);
    EventReader::open(rec.path)->build_index();
    const auto sidecar = sidecar_index_path(rec.path);
    const std::vector<char> good = read_all(sidecar);
    // Structurally fine, so load_index takes them; only the reader can tell that they do not fit.
    std::vector<std::vector<char>> forged;
    {
      std::vector<char> bytes = good;  // the first entry is not the start of the data
      IndexEntry e = entry_at(bytes, 0);
      e.byte_offset += 2;
      set_entry(bytes, 0, e);
      forged.push_back(bytes);
    }
    if (kind == Kind::dat) {
      std::vector<char> bytes = good;  // a DAT position inside a record
      IndexEntry e = entry_at(bytes, 1);
      e.byte_offset += 4;
      set_entry(bytes, 1, e);
      forged.push_back(bytes);
      bytes = good;  // a DAT time state that is not whole 2^32 wraps
      e = entry_at(bytes, 1);
      e.state.time_base += 5;
      set_entry(bytes, 1, e);
      forged.push_back(bytes);
    }
    for (const auto& bytes : forged) {
      write_with_checksum(sidecar, bytes);
      ASSERT_TRUE(load_index(sidecar, key_of(good)).has_value());
      expect_reads_correctly(rec);
      EXPECT_EQ(read_all(sidecar), good);  // rebuilt and saved over the forged one
    }
  }
}

}  // namespace
}  // namespace evloader
