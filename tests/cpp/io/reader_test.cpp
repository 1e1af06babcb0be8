// SPDX-License-Identifier: Apache-2.0
// The reader contract on generated recordings: load modes, seeks against a linear scan, the time index.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
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

}  // namespace
}  // namespace evloader
