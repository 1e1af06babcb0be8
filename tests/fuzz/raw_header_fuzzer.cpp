// SPDX-License-Identifier: Apache-2.0
// Fuzzes the RAW header parser, the format resolution and the whole RawReader on arbitrary files: the
// header either parses into sane lines (which survive a format/parse round trip and agree with any prefix
// that claims to be complete) or throws FormatError; the reader either opens and returns exactly what the
// decoder makes of the data, through loads, seeks and the index summaries, or throws FormatError.
//
// Input layout: [flags u8][seek u16][count u16] then the file's bytes (count bits 14-15 both set: the data
// part repeated past 256 KiB, the reader's block). flags: bit 0 raise on violations,
// bit 1 Metavision time origin, bit 2 decode triggers, bits 3-4 override (none, encoding from bits 5-6,
// geometry 640x480, EVT 2.1 legacy order), bit 7 a header line padded to end exactly at byte 4096 (the
// reader reads headers in 4 KiB steps).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/decoder.hpp"
#include "evloader/io/event_reader.hpp"
#include "evloader/io/header.hpp"
#include "evloader/io/raw_format.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace evloader;

[[noreturn]] void property_failed(const char* what, int line) {
  std::fprintf(stderr, "raw_header_fuzzer: property failed at line %d: %s\n", line, what);
  std::fflush(stderr);
  __builtin_trap();
}
#define FUZZ_CHECK(cond)                           \
  do {                                             \
    if (!(cond)) property_failed(#cond, __LINE__); \
  } while (0)

// RAW words address 11 bits: a header may not claim a larger sensor (frames would be sized from it).
constexpr int kMaxSide = 2048;

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

bool same_lines(const FileHeader& a, const FileHeader& b) { return a.lines == b.lines; }

// The header's own invariants, and that format_header() writes something that parses back the same.
void check_header(const FileHeader& h, std::size_t size) {
  FUZZ_CHECK(h.data_offset <= size);
  for (const auto& [key, value] : h.lines) {
    FUZZ_CHECK(!key.empty());
    FUZZ_CHECK(std::none_of(key.begin(), key.end(), is_blank));
    FUZZ_CHECK(value.empty() || (!is_blank(value.front()) && !is_blank(value.back())));
    FUZZ_CHECK(value.find('\n') == std::string::npos);
    FUZZ_CHECK(!(key == "end" && value.empty()));  // that line ends the header, it is not kept
  }
  const std::string text = format_header(h.lines, true);
  bool complete = false;
  const FileHeader back =
      parse_header({reinterpret_cast<const std::byte*>(text.data()), text.size()}, complete, SIZE_MAX);
  FUZZ_CHECK(complete && back.has_end_marker && back.data_offset == text.size());
  FUZZ_CHECK(same_lines(back, h));
}

struct Expected {
  std::vector<EventCD> cd;
  std::vector<EventExtTrigger> triggers;
  DecodeStats stats;
  Timestamp shift = 0;
};

// What the reader must return: the format's decoder over the data bytes in one call (skip mode).
Expected decode_data(const RawFormat& format, std::span<const std::byte> data, bool triggers,
                     bool metavision) {
  DecoderOptions o;
  o.geometry = format.geometry;
  o.evt21_order = format.evt21_order;
  o.decode_triggers = triggers;
  auto decoder = make_decoder(format.encoding, o);
  EventBuffer cd;
  TriggerBuffer tr;
  decoder->decode(data, cd, &tr, -1);
  decoder->finish();
  Expected e;
  e.stats = decoder->stats();
  if (metavision) e.shift = decoder->metavision_time_shift().value_or(0);
  for (EventCD ev : cd) {
    ev.t -= e.shift;
    e.cd.push_back(ev);
  }
  for (EventExtTrigger ev : tr) {
    ev.t -= e.shift;
    e.triggers.push_back(ev);
  }
  return e;
}

bool buffer_is(const EventBuffer& got, const std::vector<EventCD>& want, std::size_t from, std::size_t to) {
  return got.size() == to - from &&
         std::equal(got.begin(), got.end(), want.begin() + static_cast<long>(from));
}

// Loads, seeks and summaries of an opened reader against the expected events. Any FormatError thrown
// here (raise mode) propagates to the caller.
void exercise_reader(EventReader& reader, const Expected& want, bool triggers, std::uint16_t seek,
                     std::uint16_t count) {
  const std::size_t n = want.cd.size();
  // Batches of a few events (bounded number of calls whatever the event count).
  const std::uint64_t batch = std::max<std::uint64_t>(1 + count % 97, n / 16 + 1);
  std::vector<EventCD> got;
  EventBuffer buffer;
  for (int calls = 0; calls < 40; ++calls) {
    reader.load_n_events(batch, buffer);
    FUZZ_CHECK(buffer.size() <= batch);
    got.insert(got.end(), buffer.begin(), buffer.end());
    if (buffer.empty()) break;
  }
  FUZZ_CHECK(got == want.cd);
  FUZZ_CHECK(reader.is_done());
  FUZZ_CHECK(reader.current_event_index() == n);
  if (triggers) {
    const TriggerBuffer tr = reader.take_triggers();
    FUZZ_CHECK(std::equal(tr.begin(), tr.end(), want.triggers.begin(), want.triggers.end()));
  }

  // Summaries from the time index.
  FUZZ_CHECK(reader.event_count() == n);
  FUZZ_CHECK(reader.trigger_count() == (triggers ? want.triggers.size() : 0));
  if (n != 0) {
    FUZZ_CHECK(reader.first_timestamp() == want.cd.front().t && reader.last_timestamp() == want.cd.back().t);
  }
  const DecodeStats file = reader.file_stats();
  FUZZ_CHECK(file.cd_events == want.stats.cd_events && file.out_of_bounds == want.stats.out_of_bounds &&
             file.time_backwards == want.stats.time_backwards &&
             file.unknown_words == want.stats.unknown_words &&
             file.truncated_bytes == want.stats.truncated_bytes);

  // seek_event(k): the rest is want[k:].
  const std::size_t k = seek % (n + 2);
  reader.seek_event(k);
  FUZZ_CHECK(reader.current_event_index() == std::min(k, n));
  EventBuffer rest = reader.load_all();
  FUZZ_CHECK(buffer_is(rest, want.cd, std::min(k, n), n));

  // seek_time(t): from the first event (in file order) with t >= t, then a window of dt.
  Timestamp t = 0;
  if (n != 0) t = want.cd[seek % n].t - (count & 1);
  reader.seek_time(t);
  FUZZ_CHECK(reader.current_time() == t);
  std::size_t first = 0;
  while (first < n && want.cd[first].t < t) ++first;
  const Timestamp dt = 1 + (count >> 1) % 5000;
  std::size_t last = first;
  while (last < n && want.cd[last].t < t + dt) ++last;
  reader.load_delta_t(dt, buffer);
  FUZZ_CHECK(buffer_is(buffer, want.cd, first, last));
  FUZZ_CHECK(reader.current_time() == t + dt);
  rest = reader.load_all();
  FUZZ_CHECK(buffer_is(rest, want.cd, last, n));

  reader.reset();
  FUZZ_CHECK(reader.current_event_index() == 0 && reader.current_time() == 0);
  rest = reader.load_all();
  FUZZ_CHECK(buffer_is(rest, want.cd, 0, n));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* raw, std::size_t size) {
  evloader::fuzz::FuzzInput in(raw, size);
  const auto flags = in.take<std::uint8_t>();
  const auto seek = in.take<std::uint16_t>();
  const auto count = in.take<std::uint16_t>();
  const auto payload = in.rest();
  std::vector<std::uint8_t> bytes;
  if ((flags & 0x80) != 0) {  // "% pad aaa...a\n", 4096 bytes: the next line starts the reader's 2nd read
    const std::string pad = "% pad " + std::string(4096 - 7, 'a') + "\n";
    bytes.assign(pad.begin(), pad.end());
  }
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  if ((count & 0xC000) == 0xC000) {
    // The data repeated past one reader block (256 KiB): the index gets several entries, and seeks
    // restore decoder states saved mid-file.
    std::size_t data_at = 0;
    try {
      bool ignored = false;
      data_at =
          parse_header({reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()}, ignored).data_offset;
    } catch (const FormatError&) {
    }
    const std::vector<std::uint8_t> data(bytes.begin() + static_cast<long>(data_at), bytes.end());
    const std::size_t target = 256 * 1024 + 1 + seek % 4096;
    while (!data.empty() && bytes.size() < target) bytes.insert(bytes.end(), data.begin(), data.end());
  }
  const std::span<const std::byte> file_bytes(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());

  const bool raise = (flags & 1) != 0;
  const bool metavision = (flags & 2) != 0;
  const bool triggers = (flags & 4) != 0;
  RawFormatOverride user;
  switch ((flags >> 3) & 3) {
    case 1: {
      const RawEncoding encodings[] = {RawEncoding::evt2, RawEncoding::evt21, RawEncoding::evt3,
                                       RawEncoding::evt3};
      user.encoding = encodings[(flags >> 5) & 3];
      break;
    }
    case 2: user.geometry = Geometry{640, 480}; break;
    case 3: user.evt21_order = Evt21Order::legacy; break;
    default: break;
  }

  // The parser on the whole input, then on a prefix: a prefix that claims to be complete is the header.
  std::optional<FileHeader> header;
  bool complete = false;
  try {
    header = parse_header(file_bytes, complete);
  } catch (const FormatError&) {
  }
  if (header) {
    check_header(*header, bytes.size());
    const std::size_t cut = count % (bytes.size() + 1);
    bool prefix_complete = false;
    try {
      const FileHeader prefix = parse_header(file_bytes.first(cut), prefix_complete);
      FUZZ_CHECK(prefix.data_offset <= cut);
      if (prefix_complete) {
        FUZZ_CHECK(same_lines(prefix, *header) && prefix.data_offset == header->data_offset &&
                   prefix.has_end_marker == header->has_end_marker);
      }
    } catch (const FormatError&) {
      FUZZ_CHECK(false);  // a prefix of a parsable header has no longer line
    }
  }

  std::optional<RawFormat> format;
  if (header) {
    try {
      format = resolve_raw_format(*header, user, "fuzz.raw");
    } catch (const FormatError&) {
    }
  }
  if (format) {
    const Geometry g = format->geometry;
    FUZZ_CHECK((g.width == 0 && g.height == 0) || (g.width > 0 && g.height > 0));
    FUZZ_CHECK(g.width <= kMaxSide && g.height <= kMaxSide);
    FUZZ_CHECK(!user.encoding || format->encoding == *user.encoding);
  }

  // The reader on a file of these bytes. The index stays in memory: nothing is written beside the file
  // or into the cache.
  evloader::fuzz::TempFile file(bytes, ".raw");
  ReaderOptions options;
  options.on_violation = raise ? OnViolation::raise : OnViolation::skip;
  options.time_origin = metavision ? TimeOrigin::metavision : TimeOrigin::absolute;
  options.decode_triggers = triggers;
  options.raw_format = user;
  options.index_storage = IndexStorage::memory;

  std::optional<Expected> want;
  if (format) want = decode_data(*format, file_bytes.subspan(header->data_offset), triggers, metavision);
  // Without violations (a truncated last word is not one that raises) the raise mode decodes the same.
  const bool clean = want && want->stats.violations() == want->stats.truncated_bytes;
  try {
    auto reader = EventReader::open(file.path(), options);
    FUZZ_CHECK(format.has_value());  // the reader cannot accept what the parser or resolution refused
    FUZZ_CHECK(reader->format() == FileFormat::raw);
    FUZZ_CHECK(reader->encoding_name() == to_string(format->encoding));
    FUZZ_CHECK(reader->geometry() == format->geometry);
    FUZZ_CHECK(reader->header() == header->as_map());
    FUZZ_CHECK(reader->time_shift() == want->shift);
    exercise_reader(*reader, *want, triggers, seek, count);
    FUZZ_CHECK(!reader->has_index() || reader->index_path().empty());
  } catch (const FormatError&) {
    // Refused at open (bad header or encoding), or a violation met in raise mode.
    FUZZ_CHECK(!format || (raise && !clean));
  }
  return 0;
}
