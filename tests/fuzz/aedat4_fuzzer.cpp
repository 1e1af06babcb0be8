// SPDX-License-Identifier: Apache-2.0
// Fuzz harness of the AEDAT4 reader (formats.md §5): magic, IOHeader flatbuffer, XML description,
// LZ4/Zstd packets. Two input shapes: a whole file as is, or a file the harness builds from fuzz choices
// (geometry, streams, packets of events/triggers/other data, each possibly compressed with the file's
// codec, lied about or cut), so that mutations reach the flatbuffers behind the decompressors. Properties:
// only evloader errors; events inside the known geometry with binary polarity; the time index, chunked
// reads and seeks agree with one load_all(); honest built files give back exactly their events.
#include <lz4frame.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/event_reader.hpp"
#include "fuzz_support.hpp"

using evloader::fuzz::allocation_hooks;
using evloader::fuzz::largest_allocation;

namespace {

using evloader::EventCD;
using evloader::fuzz::FuzzInput;

#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

struct Buf {
  std::vector<std::uint8_t> b;
  template <class T>
  std::size_t put(T v) {
    const std::size_t at = b.size();
    // insert, not resize + memcpy: g++ 12 -O3 warns (wrongly) about the latter (-Wstringop-overflow).
    std::uint8_t bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    b.insert(b.end(), bytes, bytes + sizeof(T));
    return at;
  }
  template <class T>
  void set(std::size_t at, T v) {
    std::memcpy(b.data() + at, &v, sizeof(T));
  }
  void align(std::size_t n) {
    while (b.size() % n) b.push_back(0);
  }
  void append(std::span<const std::uint8_t> bytes) { b.insert(b.end(), bytes.begin(), bytes.end()); }
};

// Root uoffset, identifier, a one-field table pointing at a vector of `count` elements (raw bytes).
std::vector<std::uint8_t> table_with_vector(const char* id, std::span<const std::uint8_t> elements,
                                            std::uint32_t count) {
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
  f.put<std::uint32_t>(0);
  const std::size_t vec = f.put<std::uint32_t>(count);
  f.set<std::uint32_t>(field, static_cast<std::uint32_t>(vec - field));
  f.append(elements);
  f.set<std::uint32_t>(root, static_cast<std::uint32_t>(table));
  return f.b;
}

struct RawEvent {
  std::int64_t t;
  std::int16_t x, y;
  std::uint8_t on;
};

std::vector<std::uint8_t> events_payload(const std::vector<RawEvent>& events) {
  std::vector<std::uint8_t> raw(events.size() * 16, 0);
  for (std::size_t i = 0; i < events.size(); ++i) {
    std::memcpy(&raw[i * 16], &events[i].t, 8);
    std::memcpy(&raw[i * 16 + 8], &events[i].x, 2);
    std::memcpy(&raw[i * 16 + 10], &events[i].y, 2);
    raw[i * 16 + 12] = events[i].on;
  }
  return table_with_vector("EVTS", raw, static_cast<std::uint32_t>(events.size()));
}

std::vector<std::uint8_t> triggers_payload(
    const std::vector<std::pair<std::int64_t, std::int8_t>>& triggers) {
  Buf f;
  const std::size_t root = f.put<std::uint32_t>(0);
  f.b.insert(f.b.end(), {'T', 'R', 'I', 'G'});
  const std::size_t vt_packet = f.put<std::uint16_t>(6);
  f.put<std::uint16_t>(8);
  f.put<std::uint16_t>(4);
  const std::size_t vt_trigger = f.put<std::uint16_t>(8);
  f.put<std::uint16_t>(16);
  f.put<std::uint16_t>(4);
  f.put<std::uint16_t>(12);
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
    f.put<std::uint32_t>(0);
    const std::size_t t = f.put<std::int32_t>(0);
    f.set<std::int32_t>(t, static_cast<std::int32_t>(t - vt_trigger));
    f.put<std::int64_t>(triggers[i].first);
    f.put<std::int8_t>(triggers[i].second);
    f.set<std::uint32_t>(slots[i], static_cast<std::uint32_t>(t - slots[i]));
  }
  f.set<std::uint32_t>(root, static_cast<std::uint32_t>(table));
  return f.b;
}

std::vector<std::uint8_t> compress(const std::vector<std::uint8_t>& plain, int compression) {
  if (compression == 1 || compression == 2) {
    std::vector<std::uint8_t> out(LZ4F_compressFrameBound(plain.size(), nullptr));
    const std::size_t n = LZ4F_compressFrame(out.data(), out.size(), plain.data(), plain.size(), nullptr);
    FUZZ_CHECK(!LZ4F_isError(n));
    out.resize(n);
    return out;
  }
  if (compression == 3 || compression == 4) {
    std::vector<std::uint8_t> out(ZSTD_compressBound(plain.size()));
    const std::size_t n = ZSTD_compress(out.data(), out.size(), plain.data(), plain.size(), 1);
    FUZZ_CHECK(!ZSTD_isError(n));
    out.resize(n);
    return out;
  }
  return plain;
}

std::string description(int size_x, int size_y, int events_id, int trigger_id, std::string_view extra) {
  auto stream = [](int id, const char* type, std::string info) {
    const std::string path = "/mainloop/Recorder/outInfo/" + std::to_string(id) + "/";
    return "  <node name=\"" + std::to_string(id) + "\" path=\"" + path +
           "\">\n   <attr key=\"typeIdentifier\" type=\"string\">" + type + "</attr>\n" +
           (info.empty() ? ""
                         : "   <node name=\"info\" path=\"" + path + "info/\">\n" + info + "   </node>\n") +
           "  </node>\n";
  };
  std::string xml = "<dv version=\"2.0\">\n <node name=\"outInfo\" path=\"/mainloop/Recorder/outInfo/\">\n";
  xml += stream(events_id, "EVTS",
                "    <attr key=\"sizeX\" type=\"int\">" + std::to_string(size_x) +
                    "</attr>\n    <attr key=\"sizeY\" type=\"int\">" + std::to_string(size_y) +
                    "</attr>\n    <attr key=\"source\" type=\"string\">fuzz &amp; co</attr>\n");
  if (trigger_id != events_id) xml += stream(trigger_id, "TRIG", "");
  if (events_id != 2 && trigger_id != 2) xml += stream(2, "IMUS", "");
  xml.append(extra);
  xml += " </node>\n</dv>\n";
  return xml;
}

std::vector<std::uint8_t> io_header(std::int32_t compression, std::int64_t table_position,
                                    const std::string& desc, std::size_t& table_field) {
  Buf h;
  const std::size_t root = h.put<std::uint32_t>(0);
  h.b.insert(h.b.end(), {'I', 'O', 'H', 'E'});
  const std::size_t vtable = h.put<std::uint16_t>(10);
  h.put<std::uint16_t>(20);
  h.put<std::uint16_t>(8);
  h.put<std::uint16_t>(12);
  h.put<std::uint16_t>(4);
  h.align(4);
  const std::size_t tbl = h.put<std::int32_t>(0);
  h.set<std::int32_t>(tbl, static_cast<std::int32_t>(tbl - vtable));
  const std::size_t desc_field = h.put<std::uint32_t>(0);
  h.put<std::int32_t>(compression);
  table_field = h.put<std::int64_t>(table_position);
  const std::size_t str = h.put<std::uint32_t>(static_cast<std::uint32_t>(desc.size()));
  h.b.insert(h.b.end(), desc.begin(), desc.end());
  h.b.push_back(0);
  h.set<std::uint32_t>(desc_field, static_cast<std::uint32_t>(str - desc_field));
  h.set<std::uint32_t>(root, static_cast<std::uint32_t>(tbl));
  return h.b;
}

// What an honest built file must give back.
struct Expected {
  bool honest = true;
  std::vector<EventCD> events;  // with skip: the events inside the geometry
  bool violation = false;       // with raise: some event outside or going back in time
  std::uint64_t triggers = 0;
};

struct Built {
  std::vector<std::uint8_t> file;
  evloader::ReaderOptions options;
  Expected expected;
};

Built build_file(FuzzInput& in) {
  Built out;
  Expected& ex = out.expected;
  const auto f0 = in.take<std::uint8_t>();
  const auto f1 = in.take<std::uint8_t>();
  std::int32_t compression = f0 % 5;
  if (f0 >= 250) {
    compression = in.take<std::int32_t>();
    ex.honest = false;
  }
  const bool table = f1 & 1;
  const bool table_lie = f1 & 2;
  const bool geometry_override = f1 & 4;
  out.options.on_violation = (f1 & 8) ? evloader::OnViolation::raise : evloader::OnViolation::skip;
  out.options.decode_triggers = (f1 & 16) == 0;
  const bool truncate = f1 & 32;
  out.options.index_storage = (f1 & 64) ? evloader::IndexStorage::cache : evloader::IndexStorage::memory;
  const bool garbage = f1 & 128;

  const int size_x = in.take<std::int16_t>(), size_y = in.take<std::int16_t>();
  const int events_id = in.take<std::uint8_t>() % 8, trigger_id = in.take<std::uint8_t>() % 8;
  std::string extra;
  if (garbage) {
    const auto bytes = in.take_bytes(in.take_in(0, 128));
    extra.assign(bytes.begin(), bytes.end());
    ex.honest = false;
  }
  evloader::Geometry geometry{size_x, size_y};
  if (geometry_override) {
    geometry = {static_cast<int>(in.take_in(0, 2048)), static_cast<int>(in.take_in(0, 2048))};
    out.options.geometry = geometry;
  }
  const bool bounded = geometry.known();

  std::vector<std::uint8_t> body;
  std::int64_t t = in.take<std::int64_t>() >> 8;
  std::int64_t prev = std::numeric_limits<std::int64_t>::min();
  const std::size_t packets = static_cast<std::size_t>(in.take_in(0, 12));
  for (std::size_t k = 0; k < packets && in.remaining() > 0; ++k) {
    const auto pk = in.take<std::uint8_t>();
    std::int32_t stream = 2;
    std::vector<std::uint8_t> plain;
    switch (pk % 4) {
      case 0: {
        stream = events_id;
        std::vector<RawEvent> events(static_cast<std::size_t>(in.take_in(0, 48)));
        for (RawEvent& e : events) {
          const auto step = in.take<std::uint8_t>();
          t += (step & 0x80) ? -static_cast<std::int64_t>(step & 0x7F) : step;  // sometimes backwards
          e.t = t;
          e.x = in.take<std::int16_t>();
          e.y = in.take<std::int16_t>();
          if (step & 1) e.x = static_cast<std::int16_t>(e.x & 0x1FF);  // mostly inside a sensor
          if (step & 2) e.y = static_cast<std::int16_t>(e.y & 0xFF);
          e.on = in.take<std::uint8_t>();
          const bool outside =
              e.x < 0 || e.y < 0 || (bounded && (e.x >= geometry.width || e.y >= geometry.height));
          if (outside) {
            ex.violation = true;
            continue;
          }
          if (e.t < prev) ex.violation = true;
          prev = e.t;
          ex.events.push_back(EventCD{static_cast<std::uint16_t>(e.x), static_cast<std::uint16_t>(e.y),
                                      static_cast<std::int16_t>(e.on ? 1 : 0), e.t});
        }
        plain = events_payload(events);
        break;
      }
      case 1: {
        stream = trigger_id;
        std::vector<std::pair<std::int64_t, std::int8_t>> triggers(
            static_cast<std::size_t>(in.take_in(0, 6)));
        for (auto& [tt, type] : triggers) {
          tt = t + in.take<std::uint8_t>();
          type = in.take<std::int8_t>();
        }
        if (trigger_id != events_id) ex.triggers += triggers.size();
        if (trigger_id == events_id) ex.honest = false;
        plain = triggers_payload(triggers);
        break;
      }
      case 2: {  // another stream's data (never decoded), unless stream 2 is the events' or triggers'
        const auto bytes = in.take_bytes(in.take_in(0, 64));
        plain.assign(bytes.begin(), bytes.end());
        if (events_id == 2 || trigger_id == 2) ex.honest = false;
        break;
      }
      default: {  // arbitrary bytes for any stream id: the flatbuffer walker's input
        stream = static_cast<std::int32_t>(in.take<std::uint8_t>() % 10);
        const auto bytes = in.take_bytes(in.take_in(0, 256));
        plain.assign(bytes.begin(), bytes.end());
        if (stream != 2 || events_id == 2 || trigger_id == 2) ex.honest = false;
        break;
      }
    }
    // Size prefix, compression, packet header: each may lie.
    std::vector<std::uint8_t> prefixed(4 + plain.size());
    std::uint32_t prefix = static_cast<std::uint32_t>(plain.size());
    if (pk & 0x10) {
      prefix = in.take<std::uint32_t>();
      if (prefix != plain.size()) ex.honest = false;
    }
    std::memcpy(prefixed.data(), &prefix, 4);
    if (!plain.empty()) std::memcpy(prefixed.data() + 4, plain.data(), plain.size());
    std::vector<std::uint8_t> data = (pk & 0x40) ? prefixed : compress(prefixed, compression);
    if ((pk & 0x40) && compression != 0) ex.honest = false;
    std::int32_t size = static_cast<std::int32_t>(data.size());
    if (pk & 0x20) {
      size = in.take<std::int32_t>();
      if (size != static_cast<std::int32_t>(data.size())) ex.honest = false;
    }
    Buf ph;
    ph.put<std::int32_t>(stream);
    ph.put<std::int32_t>(size);
    body.insert(body.end(), ph.b.begin(), ph.b.end());
    body.insert(body.end(), data.begin(), data.end());
  }

  const std::string desc = description(size_x, size_y, events_id, trigger_id, extra);
  std::size_t table_field = 0;
  std::vector<std::uint8_t> header = io_header(compression, -1, desc, table_field);
  const std::string magic = "#!AER-DAT4.0\r\n";
  const std::uint64_t data_start = magic.size() + 4 + header.size();
  if (table) {
    std::int64_t position = static_cast<std::int64_t>(data_start + body.size());
    if (table_lie) {
      position = in.take<std::int64_t>();
      ex.honest = false;
    }
    std::memcpy(header.data() + table_field, &position, 8);
  }
  std::vector<std::uint8_t>& file = out.file;
  file.assign(magic.begin(), magic.end());
  const auto length = static_cast<std::uint32_t>(header.size());
  file.resize(file.size() + 4);
  std::memcpy(file.data() + magic.size(), &length, 4);
  file.insert(file.end(), header.begin(), header.end());
  file.insert(file.end(), body.begin(), body.end());
  if (table) {
    std::vector<std::uint8_t> ftab(4, 0);
    const auto payload = table_with_vector("FTAB", {}, 0);
    const auto n = static_cast<std::uint32_t>(payload.size());
    std::memcpy(ftab.data(), &n, 4);
    ftab.insert(ftab.end(), payload.begin(), payload.end());
    const auto packed = compress(ftab, compression);
    file.insert(file.end(), packed.begin(), packed.end());
  }
  if (truncate) {
    file.resize(static_cast<std::size_t>(in.take_in(0, file.size())));
    ex.honest = false;
  }
  if (!ex.honest) ex = Expected{false, {}, false, 0};
  return out;
}

const std::filesystem::path& cache_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("evloader_fuzz_cache_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    ::setenv("EVLOADER_CACHE_DIR", d.c_str(), 1);
    return d;
  }();
  return dir;
}

// EVLOADER_FUZZ_VERBOSE=1: say why each input was refused (to see what a corpus reaches).
void note(const char* what) {
  static const bool verbose = std::getenv("EVLOADER_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "refused: %s\n", what);
}

void check_events(const evloader::EventBuffer& events, evloader::Geometry g) {
  for (const EventCD& e : events) {
    FUZZ_CHECK(e.p == 0 || e.p == 1);
    if (g.known()) FUZZ_CHECK(e.x < g.width && e.y < g.height);
  }
}

bool same(const evloader::EventBuffer& a, std::span<const EventCD> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// Open, read everything, then check the index, chunked reads and seeks against that one read.
void exercise(const std::filesystem::path& path, const evloader::ReaderOptions& options, const Expected* ex,
              std::uint64_t file_size, FuzzInput& in) {
  std::unique_ptr<evloader::EventReader> reader;
  evloader::EventBuffer all;
  std::uint64_t triggers = 0;
  try {
    reader = evloader::EventReader::open(path, options);
    all = reader->load_all();
    triggers = reader->take_triggers().size();
  } catch (const evloader::Error& e) {
    note(e.what());
    FUZZ_CHECK(!ex || (options.on_violation == evloader::OnViolation::raise && ex->violation));
    return;
  } catch (const evloader::ConfigError& e) {
    note(e.what());
    FUZZ_CHECK(!ex);
    return;
  }
  const evloader::Geometry g = reader->geometry();
  check_events(all, g);
  // 16-byte events come out of packets of at least 16 bytes each (before compression: LZ4/Zstd can
  // shrink repeated events, by at most their ratio; 64 Ki:1 is far above both).
  FUZZ_CHECK(all.size() <= file_size * 65536);
  if (ex) {
    FUZZ_CHECK(!(options.on_violation == evloader::OnViolation::raise && ex->violation));
    FUZZ_CHECK(same(all, ex->events));
    if (options.decode_triggers) FUZZ_CHECK(triggers == ex->triggers);
  }

  // Everything below decodes the same bytes again: it must succeed and agree.
  FUZZ_CHECK(reader->event_count() == all.size());
  if (!all.empty()) {
    FUZZ_CHECK(reader->first_timestamp() == all[0].t);
    FUZZ_CHECK(reader->last_timestamp() == all[all.size() - 1].t);
  }
  if (options.decode_triggers) FUZZ_CHECK(reader->trigger_count() == triggers);

  reader->reset();
  const std::uint64_t step = 1 + in.take_in(0, 40);
  std::vector<EventCD> chunked;
  evloader::EventBuffer part;
  while (!reader->is_done()) {
    reader->load_n_events(step, part);
    FUZZ_CHECK(!part.empty() && part.size() <= step);
    chunked.insert(chunked.end(), part.begin(), part.end());
    FUZZ_CHECK(chunked.size() <= all.size());
  }
  FUZZ_CHECK(same(all, chunked));

  if (!all.empty()) {
    const std::uint64_t i = in.take_in(0, all.size() - 1);
    reader->seek_event(i);
    FUZZ_CHECK(reader->current_event_index() == i);
    const auto one = reader->load_n_events(1);
    FUZZ_CHECK(one.size() == 1 && one[0] == all[i]);
    const bool sorted =
        std::is_sorted(all.begin(), all.end(), [](const EventCD& a, const EventCD& b) { return a.t < b.t; });
    if (sorted) {
      const evloader::Timestamp target = all[i].t;
      reader->seek_time(target);
      const auto first = std::lower_bound(all.begin(), all.end(), target,
                                          [](const EventCD& e, evloader::Timestamp v) { return e.t < v; });
      const auto next = reader->load_n_events(1);
      FUZZ_CHECK(next.size() == 1 && next[0] == *first);
    }
  }

  // A second reader finds the index the first one saved (cache storage) or rebuilds it: same summary.
  if (options.index_storage == evloader::IndexStorage::cache) {
    auto again = evloader::EventReader::open(path, options);
    FUZZ_CHECK(again->event_count() == all.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::filesystem::path& cache = cache_dir();
  FuzzInput in(data, size);
  const auto shape = in.take<std::uint8_t>();
  std::optional<Expected> expected;
  evloader::ReaderOptions options;
  std::vector<std::uint8_t> file;
  if (shape & 1) {
    Built built = build_file(in);
    file = std::move(built.file);
    options = built.options;
    if (built.expected.honest) expected = std::move(built.expected);
  } else {
    options.on_violation = (shape & 2) ? evloader::OnViolation::raise : evloader::OnViolation::skip;
    options.decode_triggers = (shape & 4) == 0;
    options.index_storage = (shape & 8) ? evloader::IndexStorage::cache : evloader::IndexStorage::memory;
    const auto bytes = in.rest();
    file.assign(bytes.begin(), bytes.end());
  }
  {
    evloader::fuzz::TempFile temp(file, ".aedat4");
    largest_allocation = 0;
    exercise(temp.path(), options, expected ? &*expected : nullptr, file.size(), in);
    // Decompression may legitimately expand (Zstd up to 32768:1, in 128 KiB blocks of 4 bytes), so the
    // bound scales with the file; a header that merely claims a size must not reach it.
    if (allocation_hooks()) FUZZ_CHECK(largest_allocation <= (std::size_t{64} << 20) + 40000 * file.size());
  }
  // Fresh cache for the next input: the same path may come back with the same size and mtime.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(cache, ec))
    std::filesystem::remove(entry.path(), ec);
  return 0;
}
