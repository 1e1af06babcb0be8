// SPDX-License-Identifier: Apache-2.0
// HDF5 event file writer: exact round trips, OpenEB's layout, byte-identical chunks and indexes against
// the official encoder's file, and the ECF filter inside our libhdf5 (H5Dread / H5Dwrite through it).
#include <gtest/gtest.h>

#include <random>

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

struct IndexRecord {
  std::uint64_t id;
  std::int64_t ts;
  friend bool operator==(const IndexRecord&, const IndexRecord&) = default;
};

// The whole /CD/indexes (or another index table) and its "offset" attribute.
std::pair<std::vector<IndexRecord>, std::string> read_index(const std::filesystem::path& file,
                                                            const char* name) {
  detail::Hdf5Lock lock;
  h5::Handle f = h5::file(H5Fopen(file.string().c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  h5::Handle d = h5::dataset(H5Dopen2(f.get(), name, H5P_DEFAULT));
  h5::Handle s = h5::space(H5Dget_space(d.get()));
  hsize_t dims[1] = {0};
  H5Sget_simple_extent_dims(s.get(), dims, nullptr);
  std::vector<IndexRecord> out(dims[0]);
  h5::Handle t = h5::index_type();
  if (dims[0]) H5Dread(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data());
  std::string offset;
  if (H5Aexists(d.get(), "offset") > 0) {
    h5::Handle a = h5::attribute(H5Aopen(d.get(), "offset", H5P_DEFAULT));
    offset = h5::read_attribute_text(a.get()).value_or("?");
  }
  return {out, offset};
}

std::filesystem::path temp(const std::string& name) { return test::temp_dir() / name; }

Hdf5WriterOptions with_geometry(int width, int height) {
  Hdf5WriterOptions o;
  o.geometry = {width, height};
  return o;
}

Hdf5WriterOptions with_chunk(std::size_t chunk) {
  Hdf5WriterOptions o;
  o.chunk_events = chunk;
  return o;
}

TEST(Hdf5Writer, RoundTripsEventsAndTriggersExactly) {
  test::StreamShape shape;
  shape.width = 1280;
  shape.height = 720;
  shape.t_start = 123'456'789;
  const auto events = test::random_events(150000, 31, shape);
  const auto triggers = test::random_triggers(40000, 32, events.front().t, events.back().t);
  for (std::size_t chunk : {std::size_t{16384}, std::size_t{1000}, std::size_t{65535}}) {
    const auto path = temp("roundtrip_" + std::to_string(chunk) + ".hdf5");
    Hdf5WriterOptions options;
    options.geometry = {1280, 720};
    options.chunk_events = chunk;
    options.attributes = {{"serial_number", "00000307"}};
    {
      Hdf5EventWriter writer(path, options);
      // Odd slices, so pending chunks fill across calls.
      std::mt19937 rng(static_cast<unsigned>(chunk));
      std::size_t i = 0, j = 0;
      while (i < events.size()) {
        const std::size_t n = std::min<std::size_t>(events.size() - i, rng() % 40000);
        writer.write({events.data() + i, n});
        i += n;
        const std::size_t m = std::min<std::size_t>(triggers.size() - j, rng() % 9000);
        writer.write_triggers({triggers.data() + j, m});
        j += m;
      }
      writer.write_triggers({triggers.data() + j, triggers.size() - j});
      EXPECT_EQ(writer.events_written(), events.size());
      EXPECT_EQ(writer.triggers_written(), triggers.size());
    }  // the destructor closes
    auto reader = EventReader::open(path, test::memory_index());
    EXPECT_EQ(reader->geometry(), (Geometry{1280, 720}));
    EXPECT_EQ(reader->header().at("serial_number"), "00000307");
    auto got = reader->load_all();
    EXPECT_EQ(std::vector<EventCD>(got.begin(), got.end()), events) << chunk;
    auto t = reader->take_triggers();
    EXPECT_EQ(std::vector<EventExtTrigger>(t.begin(), t.end()), triggers) << chunk;
    EXPECT_EQ(reader->stats().violations(), 0u);
  }
}

TEST(Hdf5Writer, WritesOpenEBsLayout) {
  const auto path = temp("layout.hdf5");
  test::StreamShape shape_640;
  shape_640.width = 640;
  shape_640.height = 480;
  {
    Hdf5EventWriter writer(path, with_geometry(640, 480));
    writer.write(test::random_events(20000, 3, shape_640));
    writer.write_triggers(std::vector<EventExtTrigger>{{1, 10, 0}});
  }
  detail::Hdf5Lock lock;
  h5::Handle f = h5::file(H5Fopen(path.string().c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  h5::Handle root = h5::group(H5Gopen2(f.get(), "/", H5P_DEFAULT));
  auto attrs = h5::read_attributes(root.get());
  EXPECT_EQ(attrs["version"], "1.0");
  EXPECT_EQ(attrs["geometry"], "640x480");
  struct Expect {
    const char* name;
    h5::Handle (*type)();
    bool ecf;
  };
  for (const Expect& e :
       {Expect{"/CD/events", &h5::event_cd_type, true}, Expect{"/CD/indexes", &h5::index_type, false},
        Expect{"/EXT_TRIGGER/events", &h5::trigger_type, false},
        Expect{"/EXT_TRIGGER/indexes", &h5::index_type, false}}) {
    h5::Handle d = h5::dataset(H5Dopen2(f.get(), e.name, H5P_DEFAULT));
    ASSERT_TRUE(d) << e.name;
    h5::Handle type = h5::type(H5Dget_type(d.get()));
    EXPECT_GT(H5Tequal(type.get(), e.type().get()), 0) << e.name;
    h5::Handle dcpl = h5::plist(H5Dget_create_plist(d.get()));
    hsize_t chunk[1] = {0};
    EXPECT_EQ(H5Pget_chunk(dcpl.get(), 1, chunk), 1);
    EXPECT_EQ(chunk[0], 16384u) << e.name;
    h5::Handle space = h5::space(H5Dget_space(d.get()));
    hsize_t dims[1], maxdims[1];
    H5Sget_simple_extent_dims(space.get(), dims, maxdims);
    EXPECT_EQ(maxdims[0], H5S_UNLIMITED);
    EXPECT_EQ(H5Pget_nfilters(dcpl.get()), e.ecf ? 1 : 0) << e.name;
    if (e.ecf) {
      unsigned flags = 0;
      std::size_t n = 0;
      unsigned config = 0;
      EXPECT_EQ(H5Pget_filter2(dcpl.get(), 0, &flags, &n, nullptr, 0, nullptr, &config), 0x8ECF);
      EXPECT_TRUE(flags & H5Z_FLAG_OPTIONAL);
    }
  }
}

// Re-encoding the official file's events gives its very bytes: same modes, same streams, same indexes.
TEST(Hdf5Writer, ReproducesTheOfficialEncodersChunksAndIndexes) {
  const auto dir = test::real_data_dir();
  if (dir.empty()) GTEST_SKIP() << "../shared/data/real not found";
  for (const char* name : {"evt2_gen3_faery.hdf5", "evt3_gen41_expelliarmus.hdf5"}) {
    const auto original = dir / name;
    const auto events = test::read_all_events(original);
    const auto copy = temp(std::string("copy_") + name);
    {
      Hdf5EventWriter writer(copy);
      writer.write(events);
    }
    const auto theirs = test::stored_chunks(original, "/CD/events");
    const auto ours = test::stored_chunks(copy, "/CD/events");
    ASSERT_EQ(ours.size(), theirs.size());
    std::map<int, int> modes;
    for (std::size_t k = 0; k < ours.size(); ++k) {
      EXPECT_EQ(ours[k].first_event, theirs[k].first_event);
      EXPECT_EQ(ours[k].filter_mask, 0u);
      const auto their_header = ecf::read_header(theirs[k].bytes);
      EXPECT_EQ(ecf::read_header(ours[k].bytes).mode, their_header.mode) << name << " chunk " << k;
      ++modes[static_cast<int>(their_header.mode)];
      // The last (partial) chunk may differ in the padding of the reference encoder's last group.
      if (k + 1 < ours.size()) {
        EXPECT_EQ(ours[k].bytes, theirs[k].bytes) << name << " chunk " << k;
      } else {
        EXPECT_EQ(ours[k].bytes.size(), theirs[k].bytes.size()) << name << " chunk " << k;
      }
    }
    EXPECT_EQ(read_index(copy, "/CD/indexes"), read_index(original, "/CD/indexes")) << name;
    if (std::string(name).find("faery") != std::string::npos) {
      EXPECT_EQ(modes[int(ecf::Mode::masked_x)], 21);  // SOURCES.md: 21 masked-x chunks, 11 packed y/x/p
      EXPECT_EQ(modes[int(ecf::Mode::pack_yxp)], 11);
    } else {
      EXPECT_EQ(modes[int(ecf::Mode::pack_xp)], 14);
    }
  }
}

TEST(Hdf5Writer, IndexFollowsOpenEBsTwoMillisecondRule) {
  // Events at relative times 0, 1, 2500, 2600, 9000 (periods 0, 0, 1, 1, 4).
  const std::vector<EventCD> events = {
      {0, 0, 0, 1000}, {1, 0, 0, 1001}, {2, 0, 0, 3500}, {3, 0, 0, 3600}, {4, 0, 0, 10000}};
  const auto path = temp("index.hdf5");
  {
    Hdf5EventWriter writer(path);
    writer.write(events);
  }
  const auto [index, offset] = read_index(path, "/CD/indexes");
  EXPECT_EQ(offset, "-1000");
  const std::vector<IndexRecord> expected = {{0, -1}, {0, 0}, {2, 2500}, {2, 2500}, {2, 2500}, {4, 9000}};
  EXPECT_EQ(index, expected);
}

TEST(Hdf5Writer, RejectsWhatCannotBeStored) {
  Hdf5EventWriter writer(temp("reject.hdf5"), with_geometry(640, 480));
  writer.write(std::vector<EventCD>{{1, 1, 0, 100}});
  EXPECT_THROW(writer.write(std::vector<EventCD>{{1, 1, 0, 99}}), ConfigError);  // before the previous call
  EXPECT_THROW(writer.write(std::vector<EventCD>{{1, 1, 0, 200}, {1, 1, 0, 150}}), ConfigError);
  EXPECT_THROW(writer.write(std::vector<EventCD>{{640, 1, 0, 300}}), ConfigError);
  EXPECT_THROW(writer.write(std::vector<EventCD>{{1, 1, -1, 300}}), ConfigError);
  EXPECT_THROW(writer.write_triggers(std::vector<EventExtTrigger>{{1, 5, 0}, {1, 4, 0}}), ConfigError);
  writer.write(std::vector<EventCD>{{2, 2, 1, 100}});  // equal time is fine
  writer.close();
  EXPECT_THROW(writer.write(std::vector<EventCD>{{1, 1, 0, 500}}), ConfigError);
  EXPECT_EQ(test::read_all_events(temp("reject.hdf5")),
            (std::vector<EventCD>{{1, 1, 0, 100}, {2, 2, 1, 100}}));
  EXPECT_THROW((Hdf5EventWriter(temp("bad.hdf5"), with_chunk(70000))), ConfigError);
  EXPECT_THROW((Hdf5EventWriter(temp("bad.hdf5"), with_geometry(4096, 10))), ConfigError);
  EXPECT_THROW((Hdf5EventWriter(test::temp_dir() / "missing" / "folder" / "x.hdf5")), IoError);
}

// The filter registered in our libhdf5: plain H5Dread decodes our chunks through its callback.
TEST(EcfFilter, DecodesThroughH5Dread) {
  ASSERT_TRUE(ecf::register_filter());
  const auto events = test::random_events(40000, 41);
  const auto path = temp("h5dread.hdf5");
  {
    Hdf5EventWriter writer(path);
    writer.write(events);
  }
  detail::Hdf5Lock lock;
  h5::Handle f = h5::file(H5Fopen(path.string().c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  h5::Handle d = h5::dataset(H5Dopen2(f.get(), "/CD/events", H5P_DEFAULT));
  std::vector<EventCD> got(events.size());
  h5::Handle t = h5::event_cd_type();
  ASSERT_GE(H5Dread(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, got.data()), 0);
  EXPECT_EQ(got, events);
}

// ...and H5Dwrite encodes through it, including the partial last chunk HDF5 pads with fill values.
TEST(EcfFilter, EncodesThroughH5Dwrite) {
  ASSERT_TRUE(ecf::register_filter());
  const auto events = test::random_events(20000, 42);
  const auto path = temp("h5dwrite.hdf5");
  {
    detail::Hdf5Lock lock;
    h5::Handle f = h5::file(H5Fcreate(path.string().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    h5::Handle g = h5::group(H5Gcreate2(f.get(), "/CD", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    hsize_t dims[1] = {events.size()}, chunk[1] = {16384};
    h5::Handle s = h5::space(H5Screate_simple(1, dims, nullptr));
    h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
    H5Pset_chunk(dcpl.get(), 1, chunk);
    H5Pset_filter(dcpl.get(), 0x8ECF, H5Z_FLAG_MANDATORY, 0, nullptr);
    h5::Handle t = h5::event_cd_type();
    h5::Handle d = h5::dataset(
        H5Dcreate2(f.get(), "/CD/events", t.get(), s.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    ASSERT_GE(H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, events.data()), 0);
  }
  const auto chunks = test::stored_chunks(path, "/CD/events");
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(ecf::read_header(chunks[1].bytes).event_count, 16384u);  // the padded edge chunk
  auto reader = EventReader::open(path, test::memory_index());
  EXPECT_EQ(reader->encoding_name(), "HDF5 (ECF)");
  auto got = reader->load_all();
  EXPECT_EQ(std::vector<EventCD>(got.begin(), got.end()), events);
}

// h5py needs the filter class itself: check the struct the Python side hands to h5py.h5z.register_filter.
TEST(EcfFilter, ClassDescribesFilter0x8ECF) {
  const auto* cls = static_cast<const H5Z_class2_t*>(ecf::h5z_filter_class());
  EXPECT_EQ(cls->version, H5Z_CLASS_T_VERS);
  EXPECT_EQ(cls->id, 0x8ECF);
  EXPECT_EQ(cls->encoder_present, 1u);
  EXPECT_EQ(cls->decoder_present, 1u);
  ASSERT_NE(cls->filter, nullptr);
  // Call it as a foreign libhdf5 would: a malloc'd chunk in, a malloc'd array of events out.
  const auto events = test::random_events(1000, 43);
  std::vector<std::byte> encoded;
  ecf::encode(events, encoded);
  void* buf = std::malloc(encoded.size());
  std::memcpy(buf, encoded.data(), encoded.size());
  std::size_t buf_size = encoded.size();
  const std::size_t n = cls->filter(H5Z_FLAG_REVERSE, 0, nullptr, encoded.size(), &buf_size, &buf);
  ASSERT_EQ(n, events.size() * sizeof(EventCD));
  const auto* decoded = static_cast<const EventCD*>(buf);
  EXPECT_EQ(std::vector<EventCD>(decoded, decoded + events.size()), events);
  // A damaged chunk: failure (0) and the buffer left alone.
  std::memset(buf, 0xFF, 4);
  void* before = buf;
  EXPECT_EQ(cls->filter(H5Z_FLAG_REVERSE, 0, nullptr, 12, &buf_size, &buf), 0u);
  EXPECT_EQ(buf, before);
  std::free(buf);
}

// Found by fuzzing (tests/fuzz/regressions/ecf/filter-empty-chunk-replaced-buffer): a chunk announcing 0
// events "succeeded" with 0 bytes, which HDF5 takes for a failure, after replacing the caller's buffer.
// HDF5's contract on failure is to return 0 and leave the buffer alone.
TEST(EcfFilter, EmptyChunkIsRefusedWithTheBufferLeftAlone) {
  const auto* cls = static_cast<const H5Z_class2_t*>(ecf::h5z_filter_class());
  std::vector<std::byte> empty;
  ecf::encode({}, empty, ecf::Mode::pack_yxp);
  ASSERT_EQ(empty.size(), ecf::kHeaderBytes);
  void* buf = std::malloc(empty.size());
  std::memcpy(buf, empty.data(), empty.size());
  void* const before = buf;
  std::size_t buf_size = empty.size();
  EXPECT_EQ(cls->filter(H5Z_FLAG_REVERSE, 0, nullptr, empty.size(), &buf_size, &buf), 0u);
  EXPECT_EQ(buf, before);
  EXPECT_EQ(buf_size, empty.size());
  EXPECT_EQ(std::memcmp(buf, empty.data(), empty.size()), 0);
  std::free(buf);
  // The public decoder reads the same chunk as no events.
  EXPECT_EQ(ecf::decode(empty, nullptr, 0), 0u);
}

}  // namespace
}  // namespace evloader
