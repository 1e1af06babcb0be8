// SPDX-License-Identifier: Apache-2.0
// HDF5 event file reader: the real recordings against SOURCES.md and their RAW originals, seeking
// against a linear scan, threads, other dataset layouts, time shift, and damaged files.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>

#include "evloader/core/error.hpp"
#include "evloader/io/ecf.hpp"
#include "evloader/io/event_reader.hpp"
#include "evloader/io/hdf5_event_writer.hpp"
#include "h5_test_util.hpp"
#include "support/event_gen.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

namespace h5 = detail::h5;

struct Reference {
  const char* name;
  const char* file;
  const char* raw_twin;
  std::uint64_t events;
  std::int64_t first_t, last_t, sum_x, sum_y, sum_p, sum_t;
  Geometry geometry;
};

class RealHdf5 : public ::testing::TestWithParam<Reference> {
 protected:
  std::filesystem::path path(const char* name) {
    const auto dir = test::real_data_dir();
    return dir.empty() ? std::filesystem::path{} : dir / name;
  }
};

TEST_P(RealHdf5, MatchesReferenceNumbers) {
  const Reference& ref = GetParam();
  const auto file = path(ref.file);
  if (file.empty()) GTEST_SKIP() << "../shared/data/real not found (set EVLOADER_DATA_DIR)";
  auto reader = EventReader::open(file, test::memory_index());
  EXPECT_EQ(reader->format(), FileFormat::hdf5);
  EXPECT_EQ(reader->encoding_name(), "HDF5 (ECF)");
  EXPECT_EQ(reader->geometry(), ref.geometry);
  EXPECT_EQ(reader->header().at("version"), "1.0");
  auto events = reader->load_all();
  ASSERT_EQ(events.size(), ref.events);
  std::int64_t sx = 0, sy = 0, sp = 0, st = 0;
  for (const auto& e : events) {
    sx += e.x;
    sy += e.y;
    sp += e.p;
    st += e.t;
  }
  EXPECT_EQ(events[0].t, ref.first_t);
  EXPECT_EQ(events[events.size() - 1].t, ref.last_t);
  EXPECT_EQ(sx, ref.sum_x);
  EXPECT_EQ(sy, ref.sum_y);
  EXPECT_EQ(sp, ref.sum_p);
  EXPECT_EQ(st, ref.sum_t);
  EXPECT_EQ(reader->stats().violations(), 0u) << reader->stats().summary();
  EXPECT_EQ(reader->stats().cd_events, ref.events);
  EXPECT_LT(reader->stats().bytes, ref.events * 8) << "chunks were not read compressed (direct path)";
  EXPECT_EQ(reader->event_count(), ref.events);
  EXPECT_EQ(reader->first_timestamp(), ref.first_t);
  EXPECT_EQ(reader->last_timestamp(), ref.last_t);
  EXPECT_EQ(reader->duration(), ref.last_t - ref.first_t);
  EXPECT_EQ(reader->trigger_count(), 0u);
}

TEST_P(RealHdf5, EqualsItsRawOriginal) {
  const Reference& ref = GetParam();
  const auto file = path(ref.file);
  if (file.empty()) GTEST_SKIP() << "../shared/data/real not found";
  EXPECT_EQ(test::read_all_events(file), test::read_all_events(path(ref.raw_twin)));
}

// Metavision's "time shift" for HDF5 is the root attribute time_shift only: these files have none.
TEST_P(RealHdf5, MetavisionOriginWithoutTimeShiftAttributeKeepsAbsoluteTimes) {
  const Reference& ref = GetParam();
  const auto file = path(ref.file);
  if (file.empty()) GTEST_SKIP() << "../shared/data/real not found";
  ReaderOptions options = test::memory_index();
  options.time_origin = TimeOrigin::metavision;
  auto reader = EventReader::open(file, options);
  EXPECT_EQ(reader->time_shift(), 0);
  EXPECT_EQ(reader->load_n_events(1)[0].t, ref.first_t);
}

INSTANTIATE_TEST_SUITE_P(SharedData, RealHdf5,
                         ::testing::Values(Reference{"faery",
                                                     "evt2_gen3_faery.hdf5",
                                                     "evt2_gen3_faery.raw",
                                                     521252,
                                                     913716224,
                                                     913812095,
                                                     128979953,
                                                     216346680,
                                                     185861,
                                                     476298094656969,
                                                     {640, 480}},
                                           Reference{"expelliarmus",
                                                     "evt3_gen41_expelliarmus.hdf5",
                                                     "evt3_gen41_expelliarmus.raw",
                                                     219596,
                                                     11718656,
                                                     11727457,
                                                     159113225,
                                                     85638051,
                                                     115532,
                                                     2574324900467,
                                                     {1280, 720}}),
                         [](const auto& param) { return std::string(param.param.name); });

std::filesystem::path faery() {
  const auto dir = test::real_data_dir();
  return dir.empty() ? std::filesystem::path{} : dir / "evt2_gen3_faery.hdf5";
}

TEST(Hdf5Reader, SeekTimeMatchesALinearScan) {
  if (faery().empty()) GTEST_SKIP() << "../shared/data/real not found";
  const auto all = test::read_all_events(faery());
  auto reader = EventReader::open(faery(), test::memory_index());
  std::mt19937_64 rng(5);
  std::vector<Timestamp> targets = {
      0, all.front().t, all.front().t + 1, all.back().t, all.back().t + 1, all[16384].t, all[16383].t + 1};
  for (int i = 0; i < 40; ++i)
    targets.push_back(all.front().t + static_cast<Timestamp>(
                                          rng() % static_cast<std::uint64_t>(all.back().t - all.front().t)));
  for (Timestamp t : targets) {
    reader->seek_time(t);
    const auto first =
        std::lower_bound(all.begin(), all.end(), t, [](const EventCD& e, Timestamp v) { return e.t < v; });
    const auto index = static_cast<std::uint64_t>(first - all.begin());
    EXPECT_EQ(reader->current_event_index(), index) << t;
    EXPECT_EQ(reader->current_time(), t);
    auto got = reader->load_n_events(100);
    const std::vector<EventCD> expected(first, first + std::min<std::ptrdiff_t>(100, all.end() - first));
    EXPECT_EQ(std::vector<EventCD>(got.begin(), got.end()), expected) << t;
  }
}

TEST(Hdf5Reader, SeekEventMatchesALinearScan) {
  if (faery().empty()) GTEST_SKIP() << "../shared/data/real not found";
  const auto all = test::read_all_events(faery());
  auto reader = EventReader::open(faery(), test::memory_index());
  for (std::uint64_t n : {0ull, 1ull, 16383ull, 16384ull, 16385ull, 65536ull, 300000ull, 521251ull}) {
    reader->seek_event(n);
    EXPECT_EQ(reader->current_time(), all[n].t);
    auto got = reader->load_n_events(3);
    ASSERT_GE(got.size(), 1u);
    EXPECT_EQ(got[0], all[n]) << n;
  }
  reader->seek_event(all.size() + 10);
  EXPECT_TRUE(reader->is_done());
}

TEST(Hdf5Reader, TimeWindowsConcatenateToTheWholeRecording) {
  if (faery().empty()) GTEST_SKIP() << "../shared/data/real not found";
  const auto all = test::read_all_events(faery());
  auto reader = EventReader::open(faery(), test::memory_index());
  reader->seek_time(all.front().t);
  std::vector<EventCD> windows;
  while (!reader->is_done()) {
    auto w = reader->load_delta_t(3333);
    for (const auto& e : w) {
      EXPECT_LT(e.t, reader->current_time());
      EXPECT_GE(e.t, reader->current_time() - 3333);
    }
    windows.insert(windows.end(), w.begin(), w.end());
  }
  EXPECT_EQ(windows, all);
}

// Several readers decode in parallel (the HDF5 lock covers only the chunk reads).
TEST(Hdf5Reader, ReadersInSeveralThreadsAgree) {
  if (faery().empty()) GTEST_SKIP() << "../shared/data/real not found";
  const auto all = test::read_all_events(faery());
  std::vector<std::vector<EventCD>> results(4);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < results.size(); ++i)
    threads.emplace_back([&, i] { results[i] = test::read_all_events(faery()); });
  for (auto& t : threads) t.join();
  for (const auto& r : results) EXPECT_EQ(r, all);
}

class Hdf5Files : public ::testing::Test {
 protected:
  std::filesystem::path file(const std::string& name) { return test::temp_dir() / name; }

  // Write `events` with a chosen chunk size (and everything else default).
  std::filesystem::path write(const std::string& name, const std::vector<EventCD>& events,
                              Hdf5WriterOptions options = {},
                              const std::vector<EventExtTrigger>& triggers = {}) {
    const auto path = file(name);
    Hdf5EventWriter writer(path, options);
    writer.write(events);
    writer.write_triggers(triggers);
    writer.close();
    return path;
  }
};

TEST_F(Hdf5Files, TriggersComeOutInTimeWithTheirBlocks) {
  test::StreamShape shape;
  shape.width = 640;
  shape.height = 480;
  shape.t_start = 1'000'000;
  const auto events = test::random_events(200000, 3, shape);
  const auto triggers = test::random_triggers(500, 4, events.front().t - 10, events.back().t + 10);
  Hdf5WriterOptions options;
  options.geometry = {640, 480};
  const auto path = write("triggers.hdf5", events, options, triggers);
  auto reader = EventReader::open(path, test::memory_index());
  EXPECT_EQ(reader->trigger_count(), triggers.size());
  std::vector<EventExtTrigger> got;
  std::size_t seen = 0;
  while (!reader->is_done()) {
    auto w = reader->load_n_events(10000);
    seen += w.size();
    auto t = reader->take_triggers();
    // Decoding runs ahead by at most a block: no trigger far beyond the events delivered.
    for (const auto& tr : t) EXPECT_LE(tr.t, events[std::min(seen + 70000, events.size() - 1)].t);
    got.insert(got.end(), t.begin(), t.end());
  }
  auto rest = reader->take_triggers();
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got, triggers);

  // After a seek only the triggers from the seek time on.
  const Timestamp mid = events[100000].t;
  reader->seek_time(mid);
  (void)reader->load_all();
  auto after = reader->take_triggers();
  std::vector<EventExtTrigger> expected;
  for (const auto& tr : triggers)
    if (tr.t >= mid) expected.push_back(tr);
  EXPECT_EQ(std::vector<EventExtTrigger>(after.begin(), after.end()), expected);

  ReaderOptions no_triggers = test::memory_index();
  no_triggers.decode_triggers = false;
  auto plain = EventReader::open(path, no_triggers);
  (void)plain->load_all();
  EXPECT_EQ(plain->take_triggers().size(), 0u);
}

// The index saved next to the recording is valid for the index loader (offsets within the file, in
// order) and is loaded, not rebuilt, by the next reader; seeking through it matches a linear scan.
TEST_F(Hdf5Files, SidecarIndexIsReloadedAndSeeksCorrectly) {
  test::StreamShape shape;
  shape.t_start = 77'000'000;
  const auto events = test::random_events(300000, 12, shape);
  const auto triggers = test::random_triggers(100, 13, events.front().t, events.back().t);
  Hdf5WriterOptions options;
  options.chunk_events = 10000;
  const auto path = write("sidecar.hdf5", events, options, triggers);
  std::filesystem::remove(sidecar_index_path(path));
  ReaderOptions sidecar;
  int calls = 0;
  {
    auto first = EventReader::open(path, sidecar);
    first->build_index([&](std::uint64_t done, std::uint64_t total) {
      EXPECT_LE(done, total);
      ++calls;
    });
    EXPECT_EQ(first->index_path(), sidecar_index_path(path));
  }
  EXPECT_GT(calls, 0);
  calls = 0;
  auto second = EventReader::open(path, sidecar);
  second->build_index([&](std::uint64_t, std::uint64_t) { ++calls; });
  EXPECT_EQ(calls, 0) << "the sidecar index was rebuilt instead of loaded";
  EXPECT_EQ(second->event_count(), events.size());
  EXPECT_EQ(second->trigger_count(), triggers.size());
  for (std::size_t k : {0u, 1u, 9999u, 10000u, 123457u, 299999u}) {
    second->seek_time(events[k].t);
    const auto first_at = std::lower_bound(events.begin(), events.end(), events[k].t,
                                           [](const EventCD& e, Timestamp v) { return e.t < v; });
    EXPECT_EQ(second->current_event_index(), static_cast<std::uint64_t>(first_at - events.begin()));
    EXPECT_EQ(second->load_n_events(1)[0], *first_at);
    second->seek_event(k);
    EXPECT_EQ(second->load_n_events(1)[0], events[k]);
  }
  second->seek_time(events[150000].t);
  (void)second->load_all();
  auto late = second->take_triggers();
  std::size_t expected = 0;
  for (const auto& t : triggers) expected += t.t >= events[150000].t;
  EXPECT_EQ(late.size(), expected);
}

TEST_F(Hdf5Files, TimeShiftAttributeAppliesWithMetavisionOrigin) {
  test::StreamShape shape;
  shape.t_start = 5'000'000;
  const auto events = test::random_events(5000, 9, shape);
  Hdf5WriterOptions options;
  options.attributes = {{"time_shift", "4000000"}};
  const auto path = write("shift.hdf5", events, options);
  ReaderOptions mv = test::memory_index();
  mv.time_origin = TimeOrigin::metavision;
  auto shifted = EventReader::open(path, mv);
  EXPECT_EQ(shifted->time_shift(), 4'000'000);
  EXPECT_EQ(shifted->load_n_events(1)[0].t, events[0].t - 4'000'000);
  EXPECT_EQ(shifted->first_timestamp(), events[0].t - 4'000'000);
  shifted->seek_time(events[2000].t - 4'000'000);
  EXPECT_EQ(
      shifted->current_event_index(),
      static_cast<std::uint64_t>(std::lower_bound(events.begin(), events.end(), events[2000].t,
                                                  [](const EventCD& e, Timestamp v) { return e.t < v; }) -
                                 events.begin()));
  auto absolute = EventReader::open(path, test::memory_index());
  EXPECT_EQ(absolute->time_shift(), 0);
  EXPECT_EQ(absolute->load_n_events(1)[0].t, events[0].t);

  options.attributes = {{"time_shift", "-5"}};
  auto negative = EventReader::open(write("negative_shift.hdf5", events, options), mv);
  EXPECT_EQ(negative->time_shift(), 0);
}

TEST_F(Hdf5Files, OutOfBoundsEventsAreDroppedAndCounted) {
  std::vector<EventCD> events = {{1, 1, 0, 10}, {200, 1, 1, 11}, {2, 150, 0, 12}, {3, 3, 1, 13}};
  Hdf5WriterOptions options;
  options.attributes = {{"geometry", "100x100"}};
  const auto path = write("oob.hdf5", events, options);
  auto reader = EventReader::open(path, test::memory_index());
  EXPECT_EQ(reader->geometry(), (Geometry{100, 100}));
  auto got = reader->load_all();
  EXPECT_EQ(std::vector<EventCD>(got.begin(), got.end()), (std::vector<EventCD>{events[0], events[3]}));
  EXPECT_EQ(reader->stats().out_of_bounds, 2u);
  ReaderOptions strict = test::memory_index();
  strict.on_violation = OnViolation::raise;
  auto raising = EventReader::open(path, strict);
  EXPECT_THROW(raising->load_all(), FormatError);
  // A user geometry overrides the file's.
  ReaderOptions wide = test::memory_index();
  wide.geometry = Geometry{640, 480};
  EXPECT_EQ(test::read_all_events(path, wide), events);
}

TEST_F(Hdf5Files, GeometryFromTheFormatAttribute) {
  Hdf5WriterOptions options;
  options.attributes = {{"format", "EVT3;height=720;width=1280"}};
  auto reader = EventReader::open(write("format.hdf5", {{1, 1, 0, 1}}, options), test::memory_index());
  EXPECT_EQ(reader->geometry(), (Geometry{1280, 720}));
  EXPECT_EQ(reader->header().at("format"), "EVT3;height=720;width=1280");
}

TEST_F(Hdf5Files, EmptyRecordingAndTriggersOnly) {
  const std::vector<EventExtTrigger> triggers = {{1, 5, 0}, {0, 9, 0}, {1, 12, 1}};
  auto reader = EventReader::open(write("empty.hdf5", {}, {}, triggers), test::memory_index());
  EXPECT_TRUE(reader->load_all().empty());
  auto t = reader->take_triggers();
  EXPECT_EQ(std::vector<EventExtTrigger>(t.begin(), t.end()), triggers);
  EXPECT_EQ(reader->event_count(), 0u);
  EXPECT_EQ(reader->trigger_count(), 3u);
}

// A dataset HDF5 must convert (another field order, contiguous, no filter) goes through H5Dread.
TEST_F(Hdf5Files, ReadsOtherLayoutsThroughHdf5) {
  const auto events = test::random_events(70000, 21);
  const auto path = file("converted.h5");
  {
    detail::Hdf5Lock lock;
    struct Other {
      std::int64_t t;
      std::int16_t p;
      std::uint16_t y, x;
    };
    std::vector<Other> rows;
    for (const auto& e : events) rows.push_back({e.t, e.p, e.y, e.x});
    h5::Handle f = h5::file(H5Fcreate(path.string().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    h5::Handle g = h5::group(H5Gcreate2(f.get(), "/CD", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    h5::Handle t = h5::type(H5Tcreate(H5T_COMPOUND, sizeof(Other)));
    H5Tinsert(t.get(), "t", offsetof(Other, t), H5T_STD_I64LE);
    H5Tinsert(t.get(), "p", offsetof(Other, p), H5T_STD_I16LE);
    H5Tinsert(t.get(), "y", offsetof(Other, y), H5T_STD_U16LE);
    H5Tinsert(t.get(), "x", offsetof(Other, x), H5T_STD_U16LE);
    hsize_t dims[1] = {rows.size()};
    h5::Handle s = h5::space(H5Screate_simple(1, dims, nullptr));
    h5::Handle d = h5::dataset(
        H5Dcreate2(f.get(), "/CD/events", t.get(), s.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_GE(H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()), 0);
  }
  auto reader = EventReader::open(path, test::memory_index());
  EXPECT_EQ(reader->encoding_name(), "HDF5");
  auto got = reader->load_all();
  EXPECT_EQ(std::vector<EventCD>(got.begin(), got.end()), events);
  reader->seek_time(events[50000].t);
  EXPECT_EQ(reader->load_n_events(1)[0].t, events[50000].t);
}

// OpenEB's optional filter may be skipped for a chunk (filter mask bit 0): that chunk holds raw records.
TEST_F(Hdf5Files, ChunkStoredWithoutTheOptionalFilterIsRead) {
  const auto events = test::random_events(40000, 22);
  Hdf5WriterOptions options;
  options.chunk_events = 16384;
  const auto path = write("mask.hdf5", events, options);
  {
    detail::Hdf5Lock lock;
    h5::Handle f = h5::file(H5Fopen(path.string().c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    h5::Handle d = h5::dataset(H5Dopen2(f.get(), "/CD/events", H5P_DEFAULT));
    hsize_t offset[1] = {16384};
    ASSERT_GE(
        H5Dwrite_chunk(d.get(), H5P_DEFAULT, 1u, offset, 16384 * sizeof(EventCD), events.data() + 16384), 0);
  }
  auto chunks = test::stored_chunks(path, "/CD/events");
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[1].filter_mask, 1u);
  EXPECT_EQ(test::read_all_events(path), events);
}

TEST_F(Hdf5Files, RefusesFilesThatAreNotEventFiles) {
  const auto not_hdf5 = file("text.hdf5");
  std::ofstream(not_hdf5) << "hello, not an HDF5 file";
  EXPECT_THROW(EventReader::open(not_hdf5), FormatError);

  const auto tensor = file("tensors.h5");
  {
    detail::Hdf5Lock lock;
    h5::Handle f = h5::file(H5Fcreate(tensor.string().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    hsize_t dims[1] = {4};
    h5::Handle s = h5::space(H5Screate_simple(1, dims, nullptr));
    h5::Handle d = h5::dataset(
        H5Dcreate2(f.get(), "data", H5T_IEEE_F32LE, s.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  }
  try {
    (void)EventReader::open(tensor);
    ADD_FAILURE() << "a tensor file opened as events";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor file"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tensors.h5"), std::string::npos) << e.what();
  }
  const auto other = file("other.h5");
  {
    detail::Hdf5Lock lock;
    h5::Handle f = h5::file(H5Fcreate(other.string().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    h5::Handle g = h5::group(H5Gcreate2(f.get(), "/CD", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  }
  EXPECT_THROW(EventReader::open(other), FormatError);
}

std::string error_of(const std::filesystem::path& path) {
  try {
    (void)test::read_all_events(path);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

// Damaged chunks: every one is a FormatError naming the file and the chunk, never a crash.
TEST_F(Hdf5Files, DamagedChunksNameTheFileAndTheChunk) {
  const auto events = test::random_events(50000, 23);
  Hdf5WriterOptions options;
  options.mode = ecf::Mode::masked_x;
  const auto clean = write("clean.hdf5", events, options);
  const auto chunks = test::stored_chunks(clean, "/CD/events");
  ASSERT_EQ(chunks.size(), 4u);
  const auto& target = chunks[1];

  auto damaged = [&](const std::string& name, std::uint64_t at, std::vector<std::byte> bytes) {
    const auto path = file(name);
    std::filesystem::copy_file(clean, path, std::filesystem::copy_options::overwrite_existing);
    test::patch_file(path, target.address + at, bytes);
    const std::string message = error_of(path);
    EXPECT_NE(message.find(name), std::string::npos) << message;
    EXPECT_NE(message.find("chunk 1"), std::string::npos) << message;
    return message;
  };
  auto info = [](std::uint32_t v) {
    std::vector<std::byte> b(4);
    std::memcpy(b.data(), &v, 4);
    return b;
  };
  EXPECT_NE(damaged("mode.hdf5", 0, info((16384u << 2) | 3)).find("both packing flags"), std::string::npos);
  EXPECT_NE(damaged("few.hdf5", 0, info(100u << 2)).find("holds 100 events"), std::string::npos);
  EXPECT_NE(damaged("many.hdf5", 0, info(20000u << 2)).find("holds 20000 events"), std::string::npos);
  EXPECT_NE(damaged("huge.hdf5", 0, info(0xFFFFFFF0u)).find("above 65535"), std::string::npos);
  // Run counts that overflow the chunk: a y word claiming 65535 events.
  std::vector<std::byte> ts_overflow = {std::byte{0x0F}, std::byte{0xFF}, std::byte{0xFF}};
  EXPECT_NE(damaged("run.hdf5", 12, ts_overflow).find("longer than the events left"), std::string::npos);
  // Garbage over the whole chunk body.
  std::vector<std::byte> garbage(target.bytes.size() - 12);
  std::mt19937 rng(1);
  for (auto& b : garbage) b = static_cast<std::byte>(rng());
  damaged("garbage.hdf5", 12, garbage);

  // A file cut inside the chunk data: HDF5 itself fails to read that chunk.
  const auto cut = file("cut.hdf5");
  std::filesystem::copy_file(clean, cut, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::resize_file(cut, chunks[3].address + 10);
  const std::string cut_message = error_of(cut);
  EXPECT_NE(cut_message.find("cut.hdf5"), std::string::npos) << cut_message;
}

// A dataset whose extent is declared without storage: HDF5 reads fill values there, so a file of a few
// KiB could claim 2^40 events (or triggers) and make a reader reserve 16 TiB (a bad_alloc, or a size that
// overflows). Found by fuzzing (tests/fuzz/regressions/hdf5_attributes/): such claims are FormatErrors
// naming the dataset, at open.
void write_unstored_extent(const std::filesystem::path& path, bool triggers, hsize_t records, bool deflate) {
  detail::Hdf5Lock lock;
  h5::Handle f = h5::file(H5Fcreate(path.string().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  h5::Handle cd = h5::group(H5Gcreate2(f.get(), "/CD", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  h5::Handle ext = h5::group(H5Gcreate2(f.get(), "/EXT_TRIGGER", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
  const hsize_t chunk[1] = {16384};
  H5Pset_chunk(dcpl.get(), 1, chunk);
  if (deflate) H5Pset_deflate(dcpl.get(), 1);
  const hsize_t dims[1] = {records}, zero[1] = {0}, maxdims[1] = {H5S_UNLIMITED};
  // The claimed extent on the events or on the triggers; the other dataset valid and empty.
  h5::Handle big = h5::space(H5Screate_simple(1, dims, maxdims));
  h5::Handle empty = h5::space(H5Screate_simple(1, zero, maxdims));
  h5::Handle et = h5::event_cd_type(), tt = h5::trigger_type();
  h5::Handle e = h5::dataset(H5Dcreate2(f.get(), "/CD/events", et.get(), (triggers ? empty : big).get(),
                                        H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  h5::Handle t =
      h5::dataset(H5Dcreate2(f.get(), "/EXT_TRIGGER/events", tt.get(), (triggers ? big : empty).get(),
                             H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  ASSERT_TRUE(e.valid() && t.valid());
}

TEST_F(Hdf5Files, EventsDeclaredWithoutStorageAreAFormatError) {
  for (bool deflate : {false, true}) {  // the direct chunk path, and HDF5's own reads
    const auto path = file(deflate ? "unstored_deflate.hdf5" : "unstored.hdf5");
    write_unstored_extent(path, false, hsize_t{1} << 40, deflate);
    ASSERT_LT(std::filesystem::file_size(path), 64u << 10);
    try {
      auto reader = EventReader::open(path, test::memory_index());
      (void)reader->load_all();
      ADD_FAILURE() << "no error for 2^40 unstored events";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("/CD/events declares 1099511627776 records"), std::string::npos)
          << e.what();
    }
  }
  // A small unstored tail stays readable: fill values, as HDF5 returns them (a cut recording).
  const auto tail = file("unstored_tail.hdf5");
  write_unstored_extent(tail, false, 1000, true);
  EXPECT_EQ(test::read_all_events(tail).size(), 1000u);
}

TEST_F(Hdf5Files, TriggersDeclaredWithoutStorageAreAFormatError) {
  const auto path = file("unstored_triggers.hdf5");
  write_unstored_extent(path, true, hsize_t{1} << 40, false);
  try {
    (void)EventReader::open(path, test::memory_index());
    ADD_FAILURE() << "no error for 2^40 unstored triggers";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("/EXT_TRIGGER/events declares"), std::string::npos) << e.what();
  }
  ReaderOptions no_triggers = test::memory_index();
  no_triggers.decode_triggers = false;  // never looked at
  EXPECT_EQ(EventReader::open(path, no_triggers)->load_all().size(), 0u);
}

// Found by fuzzing (tests/fuzz/regressions/hdf5_attributes/triggers-short-raw-chunk): libhdf5 1.10 copies
// a whole chunk out of what it read without checking there were that many bytes, so an unfiltered chunk
// stored shorter than the chunk made H5Dread read past libhdf5's own buffer. The reader checks the stored
// size of such chunks before HDF5 reads them.
TEST_F(Hdf5Files, ShortUnfilteredChunksAreFormatErrors) {
  const auto path = file("short_chunk.hdf5");
  auto write_short = [&](bool triggers) {
    detail::Hdf5Lock lock;
    h5::Handle f = h5::file(H5Fcreate(path.string().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    h5::Handle cd = h5::group(H5Gcreate2(f.get(), "/CD", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    h5::Handle ext = h5::group(H5Gcreate2(f.get(), "/EXT_TRIGGER", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
    const hsize_t chunk[1] = {16}, dims[1] = {3}, maxdims[1] = {H5S_UNLIMITED};
    H5Pset_chunk(dcpl.get(), 1, chunk);
    h5::Handle s = h5::space(H5Screate_simple(1, dims, maxdims));
    // Events in another field order (so that HDF5 reads them), or Metavision's triggers.
    h5::Handle et = h5::type(H5Tcreate(H5T_COMPOUND, 16));
    H5Tinsert(et.get(), "t", 0, H5T_STD_I64LE);
    H5Tinsert(et.get(), "x", 8, H5T_STD_U16LE);
    H5Tinsert(et.get(), "y", 10, H5T_STD_U16LE);
    H5Tinsert(et.get(), "p", 12, H5T_STD_I16LE);
    h5::Handle tt = h5::trigger_type();
    h5::Handle e = h5::dataset(
        H5Dcreate2(f.get(), "/CD/events", et.get(), s.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    h5::Handle t = h5::dataset(
        H5Dcreate2(f.get(), "/EXT_TRIGGER/events", tt.get(), s.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    std::vector<std::byte> bytes(93);  // 3 records need 48 (events) or 72 (triggers); a chunk holds 16
    const hsize_t offset[1] = {0};
    ASSERT_GE(H5Dwrite_chunk((triggers ? t : e).get(), H5P_DEFAULT, 0, offset, bytes.size(), bytes.data()),
              0);
  };
  write_short(true);
  try {
    (void)EventReader::open(path, test::memory_index());
    ADD_FAILURE() << "short trigger chunk accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("/EXT_TRIGGER/events chunk 0 stores 93 bytes for a chunk of 384"),
              std::string::npos)
        << e.what();
  }
  write_short(false);
  try {
    (void)test::read_all_events(path);
    ADD_FAILURE() << "short event chunk accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("/CD/events chunk 0 stores 93 bytes for a chunk of 256"),
              std::string::npos)
        << e.what();
  }
}

// Found by fuzzing (tests/fuzz/regressions/hdf5_attributes/ecf-short-chunk-through-h5dread): ECF chunks
// of a dataset in another record layout went through H5Dread and the registered filter, where a chunk
// announcing fewer events than the chunk holds made libhdf5 read past the filter's output. ECF decodes to
// Metavision's 16-byte records only, so such datasets are refused.
TEST_F(Hdf5Files, EcfOnlyOnMetavisionRecords) {
  const auto path = file("ecf_other_layout.hdf5");
  {
    ASSERT_TRUE(ecf::register_filter());
    detail::Hdf5Lock lock;
    h5::Handle f = h5::file(H5Fcreate(path.string().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    h5::Handle cd = h5::group(H5Gcreate2(f.get(), "/CD", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
    const hsize_t chunk[1] = {16}, dims[1] = {16};
    H5Pset_chunk(dcpl.get(), 1, chunk);
    H5Pset_filter(dcpl.get(), static_cast<H5Z_filter_t>(ecf::kFilterId), H5Z_FLAG_OPTIONAL, 0, nullptr);
    h5::Handle s = h5::space(H5Screate_simple(1, dims, nullptr));
    h5::Handle et = h5::type(H5Tcreate(H5T_COMPOUND, 16));
    H5Tinsert(et.get(), "t", 0, H5T_STD_I64LE);
    H5Tinsert(et.get(), "x", 8, H5T_STD_U16LE);
    H5Tinsert(et.get(), "y", 10, H5T_STD_U16LE);
    H5Tinsert(et.get(), "p", 12, H5T_STD_I16LE);
    h5::Handle e = h5::dataset(
        H5Dcreate2(f.get(), "/CD/events", et.get(), s.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    std::vector<std::byte> chunk_bytes;
    ecf::encode(test::random_events(5, 3), chunk_bytes);  // 5 events where the chunk holds 16
    const hsize_t offset[1] = {0};
    ASSERT_GE(H5Dwrite_chunk(e.get(), H5P_DEFAULT, 0, offset, chunk_bytes.size(), chunk_bytes.data()), 0);
  }
  try {
    (void)EventReader::open(path, test::memory_index());
    ADD_FAILURE() << "ECF in another record layout accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("ECF filter is only supported alone"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace evloader
