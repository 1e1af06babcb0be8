// SPDX-License-Identifier: Apache-2.0
// AEDAT4 reader: the real DVXplorer sample against SOURCES.md, hand-built files (LZ4, Zstd, none; several
// streams; triggers), seeking against a linear scan, and damaged files (never a crash: fuzzed).
#include <gtest/gtest.h>
#include <lz4frame.h>
#include <zstd.h>

#include <cstring>
#include <fstream>
#include <optional>
#include <random>

#include "evloader/core/error.hpp"
#include "evloader/io/event_reader.hpp"
#include "h5_test_util.hpp"
#include "support/event_gen.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

// --- A minimal AEDAT4 writer: hand-laid flatbuffers (little-endian), as the format describes ----------

struct Buf {
  std::vector<std::uint8_t> b;
  template <class T>
  std::size_t put(T v) {
    const std::size_t at = b.size();
    b.resize(at + sizeof(T));
    std::memcpy(b.data() + at, &v, sizeof(T));
    return at;
  }
  template <class T>
  void set(std::size_t at, T v) {
    std::memcpy(b.data() + at, &v, sizeof(T));
  }
  void align(std::size_t n) {
    while (b.size() % n) b.push_back(0);
  }
};

// Buffer = root uoffset, 4-byte identifier, then a one-field table pointing at a vector.
// `elements` are the vector's raw element bytes (structs) and `element_count` their number.
std::vector<std::uint8_t> packet_with_vector(const char* id, const std::vector<std::uint8_t>& elements,
                                             std::uint32_t element_count) {
  Buf f;
  const std::size_t root = f.put<std::uint32_t>(0);
  f.b.insert(f.b.end(), id, id + 4);
  const std::size_t vtable = f.put<std::uint16_t>(6);
  f.put<std::uint16_t>(8);
  f.put<std::uint16_t>(4);
  f.align(4);
  const std::size_t table = f.put<std::int32_t>(0);
  f.set<std::int32_t>(table, static_cast<std::int32_t>(table - vtable));
  const std::size_t field = f.put<std::uint32_t>(0);
  f.put<std::uint32_t>(0);  // so that the elements start 8-aligned
  const std::size_t vec = f.put<std::uint32_t>(element_count);
  f.set<std::uint32_t>(field, static_cast<std::uint32_t>(vec - field));
  f.b.insert(f.b.end(), elements.begin(), elements.end());
  f.set<std::uint32_t>(root, static_cast<std::uint32_t>(table));
  return f.b;
}

std::vector<std::uint8_t> events_packet(const std::vector<EventCD>& events) {
  std::vector<std::uint8_t> raw(events.size() * 16, 0);
  for (std::size_t i = 0; i < events.size(); ++i) {
    std::memcpy(&raw[i * 16], &events[i].t, 8);
    const std::int16_t x = static_cast<std::int16_t>(events[i].x), y = static_cast<std::int16_t>(events[i].y);
    std::memcpy(&raw[i * 16 + 8], &x, 2);
    std::memcpy(&raw[i * 16 + 10], &y, 2);
    raw[i * 16 + 12] = events[i].p ? 1 : 0;
  }
  return packet_with_vector("EVTS", raw, static_cast<std::uint32_t>(events.size()));
}

// TriggerPacket: a vector of offsets to Trigger tables {0: i64 t, 1: i8 type}.
std::vector<std::uint8_t> triggers_packet(const std::vector<std::pair<std::int64_t, std::int8_t>>& triggers) {
  Buf f;
  const std::size_t root = f.put<std::uint32_t>(0);
  f.b.insert(f.b.end(), {'T', 'R', 'I', 'G'});
  const std::size_t vt_packet = f.put<std::uint16_t>(6);
  f.put<std::uint16_t>(8);
  f.put<std::uint16_t>(4);
  const std::size_t vt_trigger = f.put<std::uint16_t>(8);
  f.put<std::uint16_t>(16);
  f.put<std::uint16_t>(4);   // t
  f.put<std::uint16_t>(12);  // type
  f.align(4);
  const std::size_t table = f.put<std::int32_t>(0);
  f.set<std::int32_t>(table, static_cast<std::int32_t>(table - vt_packet));
  const std::size_t field = f.put<std::uint32_t>(0);
  const std::size_t vec = f.put<std::uint32_t>(static_cast<std::uint32_t>(triggers.size()));
  f.set<std::uint32_t>(field, static_cast<std::uint32_t>(vec - field));
  std::vector<std::size_t> slots;
  for (std::size_t i = 0; i < triggers.size(); ++i) slots.push_back(f.put<std::uint32_t>(0));
  for (std::size_t i = 0; i < triggers.size(); ++i) {
    f.align(8);
    f.put<std::uint32_t>(0);  // so that t (at table + 4) is 8-aligned
    const std::size_t t = f.put<std::int32_t>(0);
    f.set<std::int32_t>(t, static_cast<std::int32_t>(t - vt_trigger));
    f.put<std::int64_t>(triggers[i].first);
    f.put<std::int8_t>(triggers[i].second);
    f.set<std::uint32_t>(slots[i], static_cast<std::uint32_t>(t - slots[i]));
  }
  f.set<std::uint32_t>(root, static_cast<std::uint32_t>(table));
  return f.b;
}

std::vector<std::uint8_t> size_prefixed(std::vector<std::uint8_t> buffer) {
  // Sized once: GCC 12 reports a false -Warray-bounds on insert() growing a 4-byte vector.
  std::vector<std::uint8_t> out(4 + buffer.size());
  const auto n = static_cast<std::uint32_t>(buffer.size());
  std::memcpy(out.data(), &n, 4);
  std::copy(buffer.begin(), buffer.end(), out.begin() + 4);
  return out;
}

std::vector<std::uint8_t> compress(const std::vector<std::uint8_t>& plain, int compression) {
  if (compression == 1 || compression == 2) {
    std::vector<std::uint8_t> out(LZ4F_compressFrameBound(plain.size(), nullptr));
    out.resize(LZ4F_compressFrame(out.data(), out.size(), plain.data(), plain.size(), nullptr));
    return out;
  }
  if (compression == 3 || compression == 4) {
    std::vector<std::uint8_t> out(ZSTD_compressBound(plain.size()));
    out.resize(ZSTD_compress(out.data(), out.size(), plain.data(), plain.size(), 3));
    return out;
  }
  return plain;
}

struct Packet {
  std::int32_t stream;
  std::vector<std::uint8_t> payload;  // before compression, without the size prefix
};

std::string description(int width, int height) {
  return "<dv version=\"2.0\">\n <node name=\"outInfo\" path=\"/mainloop/Recorder/outInfo/\">\n"
         "  <node name=\"0\" path=\"/mainloop/Recorder/outInfo/0/\">\n"
         "   <attr key=\"typeIdentifier\" type=\"string\">EVTS</attr>\n"
         "   <attr key=\"originalOutputName\" type=\"string\">events</attr>\n"
         "   <node name=\"info\" path=\"/mainloop/Recorder/outInfo/0/info/\">\n"
         "    <attr key=\"sizeX\" type=\"int\">" +
         std::to_string(width) + "</attr>\n    <attr key=\"sizeY\" type=\"int\">" + std::to_string(height) +
         "</attr>\n    <attr key=\"source\" type=\"string\">Test &amp; Co</attr>\n   </node>\n  </node>\n"
         "  <node name=\"2\" path=\"/mainloop/Recorder/outInfo/2/\">\n"
         "   <attr key=\"typeIdentifier\" type=\"string\">IMUS</attr>\n  </node>\n"
         "  <node name=\"3\" path=\"/mainloop/Recorder/outInfo/3/\">\n"
         "   <attr key=\"typeIdentifier\" type=\"string\">TRIG</attr>\n  </node>\n </node>\n</dv>\n";
}

// Magic, IOHeader {compression, file_data_position, description}, packets, and (with `table`) an
// empty file data table at the end.
std::vector<std::uint8_t> aedat4_file(const std::vector<Packet>& packets, int compression, bool table,
                                      int width = 320, int height = 240) {
  const std::string desc = description(width, height);
  Buf h;
  const std::size_t root = h.put<std::uint32_t>(0);
  h.b.insert(h.b.end(), {'I', 'O', 'H', 'E'});
  const std::size_t vtable = h.put<std::uint16_t>(10);
  h.put<std::uint16_t>(20);
  h.put<std::uint16_t>(8);   // compression
  h.put<std::uint16_t>(12);  // file_data_position
  h.put<std::uint16_t>(4);   // description
  h.align(4);
  const std::size_t tbl = h.put<std::int32_t>(0);
  h.set<std::int32_t>(tbl, static_cast<std::int32_t>(tbl - vtable));
  const std::size_t desc_field = h.put<std::uint32_t>(0);
  h.put<std::int32_t>(compression);
  const std::size_t fdp = h.put<std::int64_t>(-1);
  const std::size_t str = h.put<std::uint32_t>(static_cast<std::uint32_t>(desc.size()));
  h.b.insert(h.b.end(), desc.begin(), desc.end());
  h.b.push_back(0);
  h.set<std::uint32_t>(desc_field, static_cast<std::uint32_t>(str - desc_field));
  h.set<std::uint32_t>(root, static_cast<std::uint32_t>(tbl));

  std::vector<std::uint8_t> body;
  for (const Packet& p : packets) {
    const auto data = compress(size_prefixed(p.payload), compression);
    Buf ph;
    ph.put<std::int32_t>(p.stream);
    ph.put<std::int32_t>(static_cast<std::int32_t>(data.size()));
    body.insert(body.end(), ph.b.begin(), ph.b.end());
    body.insert(body.end(), data.begin(), data.end());
  }
  const std::string magic = "#!AER-DAT4.0\r\n";
  std::vector<std::uint8_t> file(magic.begin(), magic.end());
  const std::uint64_t data_start = file.size() + 4 + h.b.size();
  if (table) h.set<std::int64_t>(fdp, static_cast<std::int64_t>(data_start + body.size()));
  Buf len;
  len.put<std::uint32_t>(static_cast<std::uint32_t>(h.b.size()));
  file.insert(file.end(), len.b.begin(), len.b.end());
  file.insert(file.end(), h.b.begin(), h.b.end());
  file.insert(file.end(), body.begin(), body.end());
  if (table) {  // a file data table packet (its content is not needed by the reader)
    const auto ftab = compress(size_prefixed(packet_with_vector("FTAB", {}, 0)), compression);
    file.insert(file.end(), ftab.begin(), ftab.end());
  }
  return file;
}

std::filesystem::path save(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  const auto path = test::temp_dir() / name;
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::vector<EventCD> sample_events(std::size_t n, std::uint32_t seed) {
  test::StreamShape shape;
  shape.width = 320;
  shape.height = 240;
  shape.t_start = 1'605'537'493'000'000;
  return test::random_events(n, seed, shape);
}

// --- The real sample ------------------------------------------------------------------------------

std::filesystem::path dvxplorer() {
  const auto dir = test::real_data_dir();
  return dir.empty() ? std::filesystem::path{} : dir / "dvxplorer_sample.aedat4";
}

TEST(Aedat4Reader, RealSampleMatchesReferenceNumbers) {
  if (dvxplorer().empty()) GTEST_SKIP() << "../shared/data/real not found (set EVLOADER_DATA_DIR)";
  auto reader = EventReader::open(dvxplorer(), test::memory_index());
  EXPECT_EQ(reader->format(), FileFormat::aedat4);
  EXPECT_EQ(reader->encoding_name(), "AEDAT4");
  EXPECT_EQ(reader->geometry(), (Geometry{320, 240}));
  EXPECT_EQ(reader->header().at("compression"), "LZ4");
  EXPECT_EQ(reader->header().at("source"), "DVXplorer_DXB00010");
  auto events = reader->load_all();
  ASSERT_EQ(events.size(), 111954u);
  EXPECT_EQ(events[0].t, 1605537493718345);
  EXPECT_EQ(events[events.size() - 1].t, 1605537494308262);
  std::int64_t sum_p = 0;
  for (const auto& e : events) sum_p += e.p;
  EXPECT_EQ(sum_p, 55023);
  EXPECT_EQ(reader->stats().violations(), 0u) << reader->stats().summary();
  EXPECT_EQ(reader->event_count(), 111954u);
  EXPECT_EQ(reader->first_timestamp(), 1605537493718345);
  EXPECT_EQ(reader->last_timestamp(), 1605537494308262);
  auto triggers = reader->take_triggers();
  EXPECT_EQ(reader->trigger_count(), triggers.size());
  for (const auto& t : triggers) {
    EXPECT_GE(t.t, 1605537493000000);
    EXPECT_LE(t.t, 1605537495000000);
  }
}

TEST(Aedat4Reader, RealSampleSeeksLikeALinearScan) {
  if (dvxplorer().empty()) GTEST_SKIP() << "../shared/data/real not found";
  const auto all = test::read_all_events(dvxplorer());
  auto reader = EventReader::open(dvxplorer(), test::memory_index());
  std::mt19937_64 rng(8);
  for (int i = 0; i < 30; ++i) {
    const Timestamp t =
        all.front().t - 5 +
        static_cast<Timestamp>(rng() % static_cast<std::uint64_t>(all.back().t - all.front().t + 10));
    reader->seek_time(t);
    const auto first =
        std::lower_bound(all.begin(), all.end(), t, [](const EventCD& e, Timestamp v) { return e.t < v; });
    EXPECT_EQ(reader->current_event_index(), static_cast<std::uint64_t>(first - all.begin()));
    auto got = reader->load_n_events(20);
    EXPECT_EQ(std::vector<EventCD>(got.begin(), got.end()),
              std::vector<EventCD>(first, first + std::min<std::ptrdiff_t>(20, all.end() - first)));
  }
  for (std::uint64_t n : {0ull, 1ull, 50000ull, 111953ull}) {
    reader->seek_event(n);
    EXPECT_EQ(reader->load_n_events(1)[0], all[n]);
  }
}

TEST(Aedat4Reader, SidecarIndexIsReloaded) {
  const auto events = sample_events(20000, 14);
  std::vector<Packet> packets;
  for (std::size_t i = 0; i < events.size(); i += 3000)
    packets.push_back(
        {0,
         events_packet({events.begin() + static_cast<std::ptrdiff_t>(i),
                        events.begin() + static_cast<std::ptrdiff_t>(std::min(i + 3000, events.size()))})});
  const auto path = save("indexed.aedat4", aedat4_file(packets, 3, true));
  std::filesystem::remove(sidecar_index_path(path));
  int calls = 0;
  EventReader::open(path)->build_index([&](std::uint64_t, std::uint64_t) { ++calls; });
  EXPECT_GT(calls, 0);
  calls = 0;
  auto reader = EventReader::open(path);
  reader->build_index([&](std::uint64_t, std::uint64_t) { ++calls; });
  EXPECT_EQ(calls, 0) << "the sidecar index was rebuilt instead of loaded";
  reader->seek_event(12345);
  EXPECT_EQ(reader->load_n_events(1)[0], events[12345]);
}

// Random flips in the real file's packets: FormatError or events, never a crash (ASan build).
TEST(Aedat4Reader, SurvivesDamagedPackets) {
  if (dvxplorer().empty()) GTEST_SKIP() << "../shared/data/real not found";
  std::ifstream in(dvxplorer(), std::ios::binary);
  std::vector<std::uint8_t> original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::mt19937 rng(99);
  int refused = 0;
  for (int iter = 0; iter < 60; ++iter) {
    auto bytes = original;
    for (int k = 0; k < 1 + iter % 8; ++k)
      bytes[2400 + rng() % (bytes.size() - 2400)] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
    const auto path = save("damaged.aedat4", bytes);
    try {
      (void)test::read_all_events(path);
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("damaged.aedat4"), std::string::npos) << e.what();
      ++refused;
    }
  }
  EXPECT_GT(refused, 10);
}

// --- Hand-built files -----------------------------------------------------------------------------

class Aedat4Compression : public ::testing::TestWithParam<int> {};

TEST_P(Aedat4Compression, ReadsEventsAndTriggersAcrossStreams) {
  const auto events = sample_events(30000, 5);
  std::vector<Packet> packets;
  std::vector<std::pair<std::int64_t, std::int8_t>> trig = {
      {events[10].t, 1}, {events[10].t + 5, 2}, {events[20000].t, 3}};
  packets.push_back({0, events_packet({events.begin(), events.begin() + 12000})});
  packets.push_back({2, {1, 2, 3, 4, 5, 6, 7, 8}});  // IMU: never decompressed
  packets.push_back({3, triggers_packet({trig[0], trig[1]})});
  packets.push_back({0, events_packet({events.begin() + 12000, events.begin() + 12000})});  // empty
  packets.push_back({0, events_packet({events.begin() + 12000, events.end()})});
  packets.push_back({3, triggers_packet({trig[2]})});
  for (bool table : {false, true}) {
    const auto path =
        save("synthetic_" + std::to_string(GetParam()) + ".aedat4", aedat4_file(packets, GetParam(), table));
    auto reader = EventReader::open(path, test::memory_index());
    EXPECT_EQ(reader->geometry(), (Geometry{320, 240}));
    EXPECT_EQ(reader->header().at("source"), "Test & Co");
    EXPECT_EQ(reader->header().at("streams"), "0:EVTS,2:IMUS,3:TRIG");
    auto got = reader->load_all();
    EXPECT_EQ(std::vector<EventCD>(got.begin(), got.end()), events);
    auto t = reader->take_triggers();
    const std::vector<EventExtTrigger> expected = {
        {1, trig[0].first, 1}, {0, trig[1].first, 2}, {1, trig[2].first, 3}};
    EXPECT_EQ(std::vector<EventExtTrigger>(t.begin(), t.end()), expected);
    EXPECT_EQ(reader->stats().violations(), 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, Aedat4Compression, ::testing::Values(0, 1, 2, 3, 4),
                         [](const auto& param) { return "compression" + std::to_string(param.param); });

TEST(Aedat4Reader, DropsAndCountsEventsOutsideTheSensor) {
  std::vector<EventCD> events = sample_events(10, 6);
  events[3].x = 320;
  events[5].y = 500;
  const auto path = save("oob.aedat4", aedat4_file({{0, events_packet(events)}}, 1, true));
  auto reader = EventReader::open(path, test::memory_index());
  EXPECT_EQ(reader->load_all().size(), 8u);
  EXPECT_EQ(reader->stats().out_of_bounds, 2u);
  ReaderOptions strict = test::memory_index();
  strict.on_violation = OnViolation::raise;
  EXPECT_THROW((void)test::read_all_events(path, strict), FormatError);
}

std::string error_of(const std::vector<std::uint8_t>& bytes, const std::string& name,
                     const ReaderOptions& options = test::memory_index()) {
  const auto path = save(name, bytes);
  try {
    (void)test::read_all_events(path, options);
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    return e.what();
  }
  return "";
}

TEST(Aedat4Reader, DamagedFilesAreFormatErrors) {
  const auto events = sample_events(1000, 7);
  const auto good = aedat4_file({{0, events_packet(events)}}, 1, true);
  auto bad_magic = good;
  bad_magic[5] = 'X';
  EXPECT_NE(error_of(bad_magic, "magic.aedat4").find("magic"), std::string::npos);
  EXPECT_NE(error_of({good.begin(), good.begin() + 30}, "short.aedat4").find("IOHeader"), std::string::npos);

  // Packet header right after the IOHeader: stream id then size.
  std::uint32_t header_len = 0;
  std::memcpy(&header_len, good.data() + 14, 4);
  const std::size_t packet = 18 + header_len;
  auto unknown_stream = good;
  unknown_stream[packet] = 7;
  EXPECT_NE(error_of(unknown_stream, "stream.aedat4").find("stream 7"), std::string::npos);
  auto huge = good;
  huge[packet + 6] = 0x7F;
  EXPECT_NE(error_of(huge, "size.aedat4").find("runs past"), std::string::npos);
  auto negative = good;
  negative[packet + 7] = 0xFF;
  EXPECT_NE(error_of(negative, "negative.aedat4").find("negative size"), std::string::npos);
  auto lz4 = good;
  for (std::size_t i = packet + 12; i < packet + 40; ++i) lz4[i] ^= 0x5A;
  EXPECT_NE(error_of(lz4, "lz4.aedat4").find("LZ4"), std::string::npos);
  // A payload that is not an EVTS flatbuffer.
  std::vector<Packet> wrong = {{0, packet_with_vector("IMUS", {}, 0)}};
  EXPECT_NE(error_of(aedat4_file(wrong, 3, true), "ident.aedat4").find("EVTS"), std::string::npos);
  // An element count larger than the packet.
  auto lying = events_packet(events);
  const std::uint32_t too_many = 1'000'000;
  std::memcpy(lying.data() + 28, &too_many, 4);
  EXPECT_NE(error_of(aedat4_file({{0, lying}}, 0, true), "count.aedat4").find("event vector"),
            std::string::npos);
}

// Without a file data table a cut-off last packet is a truncated recording: the events before it are kept.
TEST(Aedat4Reader, RecordingCutInsideAPacket) {
  const auto first = sample_events(500, 8);
  auto second = sample_events(500, 9);
  for (auto& e : second) e.t += 10'000'000;
  auto bytes = aedat4_file({{0, events_packet(first)}, {0, events_packet(second)}}, 3, false);
  bytes.resize(bytes.size() - 100);
  const auto path = save("cut.aedat4", bytes);
  auto reader = EventReader::open(path, test::memory_index());
  auto got = reader->load_all();
  EXPECT_EQ(std::vector<EventCD>(got.begin(), got.end()), first);
  EXPECT_GT(reader->stats().truncated_bytes, 0u);
  ReaderOptions strict = test::memory_index();
  strict.on_violation = OnViolation::raise;
  EXPECT_THROW((void)test::read_all_events(path, strict), FormatError);
}

// A Zstd frame laid out by hand (RFC 8878): window descriptor, optional 4-byte content size, the data in
// raw blocks of at most 128 KiB.
std::vector<std::uint8_t> zstd_raw_frame(const std::vector<std::uint8_t>& data,
                                         std::uint8_t window_descriptor,
                                         std::optional<std::uint32_t> content_size) {
  Buf f;
  f.put<std::uint32_t>(0xFD2FB528u);
  f.put<std::uint8_t>(content_size ? 0x80 : 0x00);  // content size flag 2 (4 bytes), not single-segment
  f.put<std::uint8_t>(window_descriptor);
  if (content_size) f.put<std::uint32_t>(*content_size);
  std::size_t at = 0;
  do {
    const std::size_t n = std::min<std::size_t>(data.size() - at, 128 << 10);
    const std::uint32_t header = static_cast<std::uint32_t>(n << 3) | (at + n == data.size() ? 1u : 0u);
    f.put<std::uint8_t>(header & 0xFF);
    f.put<std::uint8_t>((header >> 8) & 0xFF);
    f.put<std::uint8_t>((header >> 16) & 0xFF);
    f.b.insert(f.b.end(), data.begin() + static_cast<std::ptrdiff_t>(at),
               data.begin() + static_cast<std::ptrdiff_t>(at + n));
    at += n;
  } while (at < data.size());
  return f.b;
}

std::vector<std::uint8_t> with_packet(std::vector<std::uint8_t> file, const std::vector<std::uint8_t>& data) {
  Buf ph;
  ph.put<std::int32_t>(0);
  ph.put<std::int32_t>(static_cast<std::int32_t>(data.size()));
  file.insert(file.end(), ph.b.begin(), ph.b.end());
  file.insert(file.end(), data.begin(), data.end());
  return file;
}

// Found by fuzzing (tests/fuzz/regressions/aedat4/zstd-frame-declaring-128mib-window): streaming
// decompression allocated the window a frame header declares, 128 MiB for a 13-byte packet. Packets are
// now decompressed in one shot (the output is the window), whatever window they declare, and a frame
// claiming more content than its bytes can encode is refused before anything that size is allocated.
TEST(Aedat4Reader, ZstdPacketsDecodeWhateverWindowTheyDeclare) {
  const auto events = sample_events(500, 31);
  const auto plain = size_prefixed(events_packet(events));
  const auto header_only = aedat4_file({}, 3, false);
  const auto path = save("zstd_window.aedat4", with_packet(header_only, zstd_raw_frame(plain, 0x88, {})));
  auto got = EventReader::open(path, test::memory_index())->load_all();
  EXPECT_EQ(std::vector<EventCD>(got.begin(), got.end()), events);

  const auto bomb =
      save("zstd_bomb.aedat4", with_packet(header_only, zstd_raw_frame({1, 2, 3, 4}, 0x88, 1u << 30)));
  try {
    (void)test::read_all_events(bomb);
    ADD_FAILURE() << "a 4-byte frame claiming 1 GiB was accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt Zstd packet"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace evloader
