// SPDX-License-Identifier: Apache-2.0
// Fuzzes DAT files (formats.md §2): the record decoders fed whole and in pieces against a scalar reference,
// and the DatReader (header, open, read, seeks) on the same bytes as a file.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/dat.hpp"
#include "evloader/io/event_reader.hpp"
#include "fuzz_support.hpp"

namespace {

using evloader::DatDecodeState;
using evloader::DecodeStats;
using evloader::EventBuffer;
using evloader::EventCD;
using evloader::EventExtTrigger;
using evloader::Geometry;
using evloader::TriggerBuffer;

// Every property failure stops here, so libFuzzer records the input.
void check(bool ok) {
  if (!ok) __builtin_trap();
}

// The index sidecar must not litter: readers that save one use a scratch cache folder.
const bool kScratchCache = [] {
  const auto dir = std::filesystem::temp_directory_path() / "evloader_fuzz_dat_cache";
  ::setenv("EVLOADER_CACHE_DIR", dir.c_str(), 1);
  return true;
}();

std::uint64_t load_u64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// The format's rules written plainly (formats.md §2.2): x, y 14 bits, p bit 28, 32-bit time that wraps
// when it drops by more than 2^31; CD events outside a known geometry are dropped.
struct Reference {
  std::vector<EventCD> cd;
  std::vector<EventExtTrigger> triggers;
  std::uint64_t dropped = 0;
  std::uint64_t loops = 0;
  std::uint64_t backwards = 0;
};

Reference reference_decode(std::span<const std::uint8_t> records, const Geometry& g, bool triggers) {
  Reference r;
  std::int64_t high = 0, last_raw = -1, last_t = INT64_MIN;
  for (std::size_t i = 0; i + 8 <= records.size(); i += 8) {
    const std::uint64_t rec = load_u64(records.data() + i);
    const auto raw = static_cast<std::int64_t>(rec & 0xFFFFFFFFu);
    if (raw < last_raw && last_raw - raw > (std::int64_t{1} << 31)) {
      high += std::int64_t{1} << 32;
      ++r.loops;
    }
    last_raw = raw;
    const std::int64_t t = high + raw;
    const auto w = static_cast<std::uint32_t>(rec >> 32);
    if (triggers) {
      r.triggers.push_back({static_cast<std::int16_t>(w & 0xF), t, static_cast<std::int16_t>(w >> 26)});
      r.backwards += t < last_t;
      last_t = t;
      continue;
    }
    const std::uint32_t x = w & 0x3FFF, y = (w >> 14) & 0x3FFF;
    if (g.known() &&
        (x >= static_cast<std::uint32_t>(g.width) || y >= static_cast<std::uint32_t>(g.height))) {
      ++r.dropped;
      continue;
    }
    r.cd.push_back({static_cast<std::uint16_t>(x), static_cast<std::uint16_t>(y),
                    static_cast<std::int16_t>((w >> 28) & 1), t});
    r.backwards += t < last_t;
    last_t = t;
  }
  return r;
}

// decode_dat_cd / decode_dat_triggers whole and cut at record boundaries must both equal the reference.
void check_stream_decoder(std::span<const std::uint8_t> records, const Geometry& g, bool triggers,
                          std::span<const std::size_t> cuts) {
  const Reference ref = reference_decode(records, g, triggers);
  const auto bytes = std::as_bytes(records);
  const std::size_t whole_records = records.size() / 8 * 8;
  for (int pass = 0; pass < 2; ++pass) {
    DatDecodeState state;
    DecodeStats stats;
    EventBuffer cd;
    TriggerBuffer trig;
    std::size_t from = 0;
    auto feed = [&](std::size_t to) {
      const auto piece = bytes.subspan(from, to - from);
      if (triggers)
        evloader::decode_dat_triggers(piece, state, trig, stats);
      else
        evloader::decode_dat_cd(piece, g, state, cd, stats);
      from = to;
    };
    if (pass == 1)
      for (std::size_t c : cuts) feed(std::max(from, std::min(c / 8 * 8, whole_records)));
    feed(whole_records);
    feed(records.size());  // the partial tail record, counted as truncated
    check(stats.truncated_bytes == records.size() % 8);
    check(stats.bytes == records.size());
    check(stats.time_loops == ref.loops);
    check(stats.time_backwards == ref.backwards);
    if (triggers) {
      check(trig.size() == ref.triggers.size() && stats.trigger_events == trig.size());
      for (std::size_t i = 0; i < trig.size(); ++i) {
        check(trig[i] == ref.triggers[i]);
        check(trig[i].id >= 0 && trig[i].id < 64 && trig[i].p >= 0 && trig[i].p < 16);
      }
    } else {
      check(cd.size() == ref.cd.size() && stats.cd_events == cd.size());
      check(stats.out_of_bounds == ref.dropped);
      check(cd.size() + ref.dropped == whole_records / 8);
      for (std::size_t i = 0; i < cd.size(); ++i) {
        check(cd[i] == ref.cd[i]);
        check(cd[i].p == 0 || cd[i].p == 1);
        if (g.known()) check(cd[i].x < g.width && cd[i].y < g.height);
      }
    }
  }
}

bool same_events(const EventBuffer& a, std::span<const EventCD> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i])) return false;
  return true;
}

// The reader on the bytes as a file: what the header says, then reading, counting and seeking against the
// reference decode of the record section.
void check_reader(std::span<const std::uint8_t> file, std::optional<Geometry> override_geometry, bool raise,
                  std::uint32_t seek_n, std::uint32_t seek_t) {
  evloader::fuzz::TempFile tmp(file, ".dat");
  evloader::DatInfo info;
  try {
    info = evloader::read_dat_info(tmp.path());
  } catch (const evloader::Error&) {
    return;
  }
  check(info.data_offset <= file.size());
  check(info.data_offset + info.record_count * 8 + info.trailing_bytes == file.size());
  check(info.trailing_bytes < 8);
  const Geometry g = override_geometry.value_or(info.geometry);
  const bool triggers = info.type == evloader::DatEventType::ext_trigger;
  const Reference ref = reference_decode(file.subspan(info.data_offset, info.record_count * 8), g, triggers);

  evloader::ReaderOptions options;
  options.geometry = override_geometry;
  options.index_storage = evloader::IndexStorage::memory;  // no stale index from an earlier input
  options.on_violation = raise ? evloader::OnViolation::raise : evloader::OnViolation::skip;
  std::unique_ptr<evloader::EventReader> reader;
  try {
    reader = evloader::EventReader::open(tmp.path(), options);
  } catch (const evloader::Error&) {
    return;  // a header that read_dat_info took apart must also open: only for a raise reader
  } catch (const evloader::ConfigError&) {
    return;
  }
  check(reader->geometry() == g);
  try {
    const EventBuffer all = reader->load_all();
    check(same_events(all, ref.cd));
    if (triggers) {
      const TriggerBuffer trig = reader->take_triggers();
      check(trig.size() == ref.triggers.size());
      for (std::size_t i = 0; i < trig.size(); ++i) check(trig[i] == ref.triggers[i]);
    }
    check(reader->is_done());
    const DecodeStats& st = reader->stats();
    check(st.out_of_bounds == ref.dropped && st.truncated_bytes == info.trailing_bytes);
    if (raise) check(st.violations() == st.truncated_bytes);  // a cut tail is counted, never thrown

    check(reader->event_count() == ref.cd.size());
    check(reader->trigger_count() == (triggers ? ref.triggers.size() : 0));
    if (!ref.cd.empty()) {
      check(reader->first_timestamp() == ref.cd.front().t);
      check(reader->last_timestamp() == ref.cd.back().t);
    }

    // seek_event: the next events are the reference's from index n on.
    const std::size_t n = ref.cd.empty() ? 0 : seek_n % (ref.cd.size() + 1);
    reader->seek_event(n);
    check(reader->current_event_index() == n);
    const EventBuffer after = reader->load_n_events(3);
    check(same_events(after, std::span(ref.cd).subspan(n, std::min<std::size_t>(3, ref.cd.size() - n))));

    // seek_time: the next event is the first one in file order with t' >= t.
    const std::int64_t t = ref.cd.empty() ? seek_t : ref.cd[seek_t % ref.cd.size()].t + (seek_t >> 24) - 128;
    reader->seek_time(t);
    std::size_t j = 0;
    while (j < ref.cd.size() && ref.cd[j].t < t) ++j;
    check(reader->current_event_index() == j);
    const EventBuffer at = reader->load_n_events(2);
    check(same_events(at, std::span(ref.cd).subspan(j, std::min<std::size_t>(2, ref.cd.size() - j))));

    reader->reset();
    check(same_events(reader->load_all(), ref.cd));
  } catch (const evloader::FormatError&) {
    check(raise);  // only a reader asked to raise may refuse the file after opening it
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  evloader::fuzz::FuzzInput in(data, size);
  const auto flags = in.take<std::uint8_t>();
  const auto width = static_cast<int>(in.take_in(0, 1u << 15));
  const auto height = static_cast<int>(in.take_in(0, 1u << 15));
  const auto seek_n = in.take<std::uint32_t>();
  const auto seek_t = in.take<std::uint32_t>();
  std::vector<std::size_t> cuts(in.take_in(0, 6));
  for (auto& c : cuts) c = in.take_in(0, 4096);
  const Geometry g{width, height};
  const auto payload = in.rest();

  // The payload as a record section, decoded by the stream decoders.
  check_stream_decoder(payload, g, (flags & 8) != 0, cuts);

  // The payload as a whole file, or behind a writer-style header so the fuzzer can focus on records.
  std::vector<std::uint8_t> file;
  if ((flags & 4) != 0) {
    std::string head;
    if ((flags & 16) != 0) head += "% Height " + std::to_string(height) + "\n";
    head += "% Version 2\n";
    if ((flags & 16) != 0) head += "% Width " + std::to_string(width) + "\n";
    head += "% end\n";
    file.assign(head.begin(), head.end());
    file.push_back((flags & 8) != 0 ? 14 : ((flags & 32) != 0 ? 0 : 12));
    file.push_back(8);
  }
  file.insert(file.end(), payload.begin(), payload.end());
  const std::optional<Geometry> override_geometry =
      (flags & 1) != 0 ? std::optional<Geometry>(g) : std::nullopt;
  check_reader(file, override_geometry, (flags & 2) != 0, seek_n, seek_t);
  return 0;
}
