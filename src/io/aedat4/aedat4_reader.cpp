// SPDX-License-Identifier: Apache-2.0
// Reader of iniVation AEDAT 4.0 files (formats.md §5): magic, IOHeader flatbuffer, the XML stream
// description, then LZ4- or Zstd-compressed packets of which the events stream (and the triggers
// stream) are decoded; other streams (frames, IMU) are skipped without decompressing them.
#include <lz4frame.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/file.hpp"
#include "io/aedat4/flatbuffer.hpp"
#include "io/detail/readers.hpp"

namespace evloader::detail {

namespace {

constexpr char kMagic[] = "#!AER-DAT4.0\r\n";
constexpr std::size_t kMagicSize = sizeof(kMagic) - 1;
// Blocks of packets up to ~64 Ki events or 1 MiB of file: few index entries, cheap seeks.
constexpr std::size_t kBlockEvents = 64 * 1024;
constexpr std::uint64_t kBlockBytes = 1 << 20;
// A packet decompressing to more than this is corrupt (DV writes packets of a few MiB at most).
constexpr std::size_t kMaxPacketBytes = std::size_t{1} << 30;
// Zstd's largest block (format spec: Block_Maximum_Size).
constexpr std::size_t kZstdMaxBlockBytes = std::size_t{128} << 10;

enum class Compression : std::int32_t { none = 0, lz4 = 1, lz4_high = 2, zstd = 3, zstd_high = 4 };

struct StreamInfo {
  std::string type;  // EVTS, FRME, IMUS, TRIG, ...
  std::string name;  // originalOutputName
  int size_x = 0, size_y = 0;
  std::string source;
  std::string ts_offset;
};

std::uint64_t mix(std::uint64_t h, std::uint64_t v) { return (h ^ v) * 1099511628211ull; }

std::string xml_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '&') {
      static constexpr std::pair<std::string_view, char> kEntities[] = {
          {"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}};
      bool replaced = false;
      for (const auto& [entity, c] : kEntities) {
        if (s.substr(i, entity.size()) == entity) {
          out += c;
          i += entity.size() - 1;
          replaced = true;
          break;
        }
      }
      if (replaced) continue;
    }
    out += s[i];
  }
  return out;
}

std::string_view xml_attribute(std::string_view tag, std::string_view name) {
  std::size_t pos = 0;
  while ((pos = tag.find(name, pos)) != std::string_view::npos) {
    const bool starts = pos > 0 && (tag[pos - 1] == ' ' || tag[pos - 1] == '\t' || tag[pos - 1] == '\n');
    const std::size_t eq = pos + name.size();
    if (starts && eq + 1 < tag.size() && tag[eq] == '=' && (tag[eq + 1] == '"' || tag[eq + 1] == '\'')) {
      const char quote = tag[eq + 1];
      const std::size_t end = tag.find(quote, eq + 2);
      if (end == std::string_view::npos) return {};
      return tag.substr(eq + 2, end - eq - 2);
    }
    pos = eq;
  }
  return {};
}

// The stream id of a node path ".../outInfo/<id>/" and whether it is that stream's "info/" child.
std::optional<std::pair<int, bool>> stream_of_path(std::string_view path) {
  const std::size_t at = path.find("/outInfo/");
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = path.substr(at + 9);
  const std::size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  int id = 0;
  auto [p, ec] = std::from_chars(rest.data(), rest.data() + slash, id);
  if (ec != std::errc() || p != rest.data() + slash) return std::nullopt;
  rest = rest.substr(slash + 1);
  if (rest.empty()) return std::make_pair(id, false);
  if (rest == "info/") return std::make_pair(id, true);
  return std::nullopt;
}

// The "dv" configuration tree: <node name=.. path=..> elements holding <attr key=.. type=..>value</attr>.
std::map<int, StreamInfo> parse_description(std::string_view xml) {
  std::map<int, StreamInfo> streams;
  std::vector<std::string_view> paths;  // open <node> elements
  std::size_t pos = 0;
  while ((pos = xml.find('<', pos)) != std::string_view::npos) {
    const std::size_t close = xml.find('>', pos);
    if (close == std::string_view::npos) break;
    const std::string_view tag = xml.substr(pos + 1, close - pos - 1);
    pos = close + 1;
    if (tag.starts_with("node")) {
      if (!tag.ends_with("/")) paths.push_back(xml_attribute(tag, "path"));
    } else if (tag.starts_with("/node")) {
      if (!paths.empty()) paths.pop_back();
    } else if (tag.starts_with("attr") && !paths.empty()) {
      const std::size_t end = xml.find("</attr>", pos);
      if (end == std::string_view::npos) break;
      const std::string value = xml_unescape(xml.substr(pos, end - pos));
      pos = end + 7;
      auto stream = stream_of_path(paths.back());
      if (!stream) continue;
      StreamInfo& s = streams[stream->first];
      const std::string_view key = xml_attribute(tag, "key");
      auto as_int = [&] {
        int v = 0;
        std::from_chars(value.data(), value.data() + value.size(), v);
        return v;
      };
      if (!stream->second) {
        if (key == "typeIdentifier") s.type = value;
        if (key == "originalOutputName") s.name = value;
      } else {
        if (key == "sizeX") s.size_x = as_int();
        if (key == "sizeY") s.size_y = as_int();
        if (key == "source") s.source = value;
        if (key == "tsOffset") s.ts_offset = value;
      }
    }
  }
  return streams;
}

const char* compression_name(Compression c) {
  switch (c) {
    case Compression::none: return "none";
    case Compression::lz4: return "LZ4";
    case Compression::lz4_high: return "LZ4 (high)";
    case Compression::zstd: return "Zstd";
    case Compression::zstd_high: return "Zstd (high)";
  }
  return "?";
}

// dv::TriggerType: rising edges, pulses and "begin" markers map to p = 1, falling edges and "end"
// markers to p = 0; the type itself is kept as the trigger id.
std::int16_t trigger_polarity(int type) {
  switch (type) {
    case 1:  // EXTERNAL_SIGNAL_RISING_EDGE
    case 3:  // EXTERNAL_SIGNAL_PULSE
    case 4:  // EXTERNAL_GENERATOR_RISING_EDGE
    case 6:  // APS_FRAME_START
    case 8:  // APS_EXPOSURE_START
      return 1;
    default: return 0;
  }
}

class Aedat4Reader final : public EventReader {
 public:
  Aedat4Reader(const std::filesystem::path& path, const ReaderOptions& options)
      : EventReader(path, options), file_(path) {
    read_file_header();
    rewind_source();
    finish_open();
  }

  ~Aedat4Reader() override {
    if (lz4_) LZ4F_freeDecompressionContext(lz4_);
    if (zstd_) ZSTD_freeDCtx(zstd_);
  }

  FileFormat format() const noexcept override { return FileFormat::aedat4; }
  std::string encoding_name() const override { return "AEDAT4"; }
  const DecodeStats& stats() const noexcept override { return stats_; }

 protected:
  bool decode_next_block(EventBuffer& cd, TriggerBuffer& triggers) override {
    const std::size_t from = cd.size();
    const std::uint64_t block_start = position_;
    while (position_ < data_end_ && cd.size() - from < kBlockEvents &&
           position_ - block_start < kBlockBytes) {
      if (!next_packet(cd, triggers)) break;
    }
    return position_ < data_end_;
  }

  IndexEntry source_position() const override {
    IndexEntry e;
    e.byte_offset = position_;
    e.state.last_event_t = last_event_t_;
    return e;
  }

  void restore_source(const IndexEntry& position) override {
    position_ = std::clamp<std::uint64_t>(position.byte_offset, data_start_, data_end_);
    last_event_t_ = position.state.last_event_t;
  }

  void rewind_source() override {
    position_ = data_start_;
    last_event_t_ = std::numeric_limits<Timestamp>::min();
  }

  std::uint64_t data_size() const noexcept override { return data_end_; }

  // Events are 16 bytes before compression; LZ4/Zstd packets of real recordings hold about 8 bytes per
  // event (plus other streams): a quarter of the bytes left errs on the generous side.
  std::uint64_t estimated_remaining_events() const noexcept override { return (data_end_ - position_) / 4; }

  IndexKey index_key() const override {
    IndexKey key;
    key.file_size = file_.size();
    key.mtime_ns = file_.mtime_ns();
    std::uint64_t h = 1469598103934665603ull;
    h = mix(h, static_cast<std::uint64_t>(geometry_.width));
    h = mix(h, static_cast<std::uint64_t>(geometry_.height));
    h = mix(h, options_.decode_triggers ? 1 : 0);
    h = mix(h, 0xAEDA740000000001ull);  // bump when the AEDAT4 decoding semantics change
    key.decode_signature = h;
    return key;
  }

  // AEDAT4 times are Unix-epoch microseconds; the Metavision SDK defines no shift for them.
  Timestamp probe_metavision_shift() override { return 0; }

 private:
  [[noreturn]] void fail(std::uint64_t offset, const std::string& what) const {
    throw_format_error(path_, static_cast<std::int64_t>(offset), what);
  }

  void read_exact(std::uint64_t offset, std::span<std::uint8_t> out, const char* what) const {
    if (file_.read_at(offset, std::as_writable_bytes(out)) != out.size())
      fail(offset, std::string("file ends inside ") + what);
  }

  void read_file_header() {
    std::array<std::uint8_t, kMagicSize + 4> head{};
    if (file_.size() < head.size()) fail(0, "too short for an AEDAT4 file");
    read_exact(0, head, "the file header");
    if (std::memcmp(head.data(), kMagic, kMagicSize) != 0)
      fail(0, "not an AEDAT 4.0 file (the magic '#!AER-DAT4.0\\r\\n' is missing)");
    std::uint32_t length = 0;
    std::memcpy(&length, head.data() + kMagicSize, 4);
    if (length > file_.size() - head.size())
      fail(kMagicSize, "IOHeader length runs past the end of the file");
    std::vector<std::uint8_t> io(length);
    read_exact(head.size(), io, "the IOHeader");
    auto root = fb::Table::root(io, "IOHE");
    if (!root) fail(head.size(), "malformed IOHeader flatbuffer");
    compression_ = static_cast<Compression>(root->scalar<std::int32_t>(0).value_or(0));
    if (static_cast<std::int32_t>(compression_) < 0 || static_cast<std::int32_t>(compression_) > 4)
      fail(head.size(), "unknown compression " + std::to_string(static_cast<std::int32_t>(compression_)));
    const std::int64_t table = root->scalar<std::int64_t>(1).value_or(-1);
    auto description = root->string(2);
    if (!description) fail(head.size(), "the IOHeader has no stream description");
    streams_ = parse_description(*description);

    data_start_ = head.size() + length;
    has_table_ = table >= 0;
    data_end_ =
        has_table_ ? std::min<std::uint64_t>(static_cast<std::uint64_t>(table), file_.size()) : file_.size();
    if (data_end_ < data_start_) fail(head.size(), "file data table position lies inside the header");

    for (const auto& [id, s] : streams_) {
      if (s.type == "EVTS" && events_stream_ < 0) events_stream_ = id;
      if (s.type == "TRIG" && trigger_stream_ < 0) trigger_stream_ = id;
    }
    if (events_stream_ < 0) fail(head.size(), "no events stream (typeIdentifier EVTS) in the description");
    const StreamInfo& ev = streams_.at(events_stream_);
    geometry_ = options_.geometry.value_or(Geometry{ev.size_x, ev.size_y});
    header_["format"] = "AEDAT4";
    header_["compression"] = compression_name(compression_);
    if (ev.size_x > 0 && ev.size_y > 0)
      header_["geometry"] = std::to_string(ev.size_x) + "x" + std::to_string(ev.size_y);
    if (!ev.source.empty()) header_["source"] = ev.source;
    if (!ev.ts_offset.empty()) header_["ts_offset"] = ev.ts_offset;
    std::string list;
    for (const auto& [id, s] : streams_) {
      if (!list.empty()) list += ',';
      list.append(std::to_string(id)).append(":").append(s.type);
    }
    header_["streams"] = list;
  }

  // One packet: false when the data ends (a cut-off last packet is counted as truncated bytes).
  bool next_packet(EventBuffer& cd, TriggerBuffer& triggers) {
    const std::uint64_t at = position_;
    if (data_end_ - at < 8) {
      stats_.truncated_bytes += data_end_ - at;
      raise_if_needed(at, "the file ends inside a packet header");
      position_ = data_end_;
      return false;
    }
    std::array<std::uint8_t, 8> head{};
    read_exact(at, head, "a packet header");
    std::int32_t stream = 0, size = 0;
    std::memcpy(&stream, head.data(), 4);
    std::memcpy(&size, head.data() + 4, 4);
    if (size < 0) fail(at, "packet with a negative size (" + std::to_string(size) + ")");
    if (static_cast<std::uint64_t>(size) > data_end_ - at - 8) {
      // With a file data table the file is complete: the size is wrong. Without, the recording was cut.
      if (has_table_)
        fail(at, "packet of " + std::to_string(size) + " bytes runs past the end of the packet data");
      stats_.truncated_bytes += data_end_ - at;
      raise_if_needed(at, "the file ends inside a packet");
      position_ = data_end_;
      return false;
    }
    if (!streams_.count(stream))
      fail(at, "packet of stream " + std::to_string(stream) + ", absent from the description");
    stats_.bytes += 8 + static_cast<std::uint64_t>(size);
    position_ = at + 8 + static_cast<std::uint64_t>(size);
    const bool want_events = stream == events_stream_;
    const bool want_triggers = stream == trigger_stream_ && options_.decode_triggers;
    if (!want_events && !want_triggers) {
      stats_.padding_words += 1;  // frames, IMU, other streams: skipped, not a violation
      return true;
    }
    compressed_.resize(static_cast<std::size_t>(size));
    read_exact(at + 8, compressed_, "a packet");
    std::span<const std::uint8_t> payload = decompress(at);
    // Size-prefixed flatbuffer: u32 size, then the buffer (root offset, 4-byte identifier, ...).
    std::uint32_t prefix = 0;
    if (!fb::Table::read(payload, 0, prefix) || prefix > payload.size() - 4)
      fail(at, "packet payload with a bad size prefix");
    payload = payload.subspan(4, prefix);
    if (want_events) {
      decode_events(payload, at, cd);
    } else {
      decode_triggers(payload, at, triggers);
    }
    return true;
  }

  void raise_if_needed(std::uint64_t at, const std::string& what) const {
    if (options_.on_violation == OnViolation::raise) fail(at, what);
  }

  std::span<const std::uint8_t> decompress(std::uint64_t at) {
    switch (compression_) {
      case Compression::none: return compressed_;
      case Compression::lz4:
      case Compression::lz4_high: return decompress_lz4(at);
      case Compression::zstd:
      case Compression::zstd_high: return decompress_zstd(at);
    }
    fail(at, "unknown compression");
  }

  // LZ4 frame format (one or more frames back to back). Done when all input is used and the last frame
  // is complete (hint 0); a call that neither reads nor writes means the frame is cut short.
  std::span<const std::uint8_t> decompress_lz4(std::uint64_t at) {
    if (!lz4_ && LZ4F_isError(LZ4F_createDecompressionContext(&lz4_, LZ4F_VERSION)))
      fail(at, "cannot create an LZ4 decompression context");
    LZ4F_resetDecompressionContext(lz4_);
    plain_.resize(std::max<std::size_t>(plain_.size(), compressed_.size() * 4 + 1024));
    std::size_t in_pos = 0, out_pos = 0;
    for (;;) {
      if (out_pos == plain_.size()) grow(at);
      std::size_t out_size = plain_.size() - out_pos, in_size = compressed_.size() - in_pos;
      const std::size_t hint = LZ4F_decompress(lz4_, plain_.data() + out_pos, &out_size,
                                               compressed_.data() + in_pos, &in_size, nullptr);
      if (LZ4F_isError(hint)) {
        LZ4F_resetDecompressionContext(lz4_);
        fail(at, std::string("corrupt LZ4 packet: ") + LZ4F_getErrorName(hint));
      }
      in_pos += in_size;
      out_pos += out_size;
      if (in_pos == compressed_.size() && hint == 0) break;
      if (in_size == 0 && out_size == 0) {
        LZ4F_resetDecompressionContext(lz4_);
        fail(at, in_pos == compressed_.size() ? "LZ4 packet truncated (incomplete frame)"
                                              : "LZ4 packet makes no progress");
      }
    }
    return {plain_.data(), out_pos};
  }

  // One-shot decompression into plain_, grown and retried while too small. Streaming would allocate a
  // window buffer of the size the frame header declares: 128 MiB for a 13-byte packet. One-shot uses the
  // output as its window, and the output is bounded by what the packet's bytes can encode.
  std::span<const std::uint8_t> decompress_zstd(std::uint64_t at) {
    if (!zstd_ && !(zstd_ = ZSTD_createDCtx())) fail(at, "cannot create a Zstd decompression context");
    // Every 128 KiB of output costs a block of at least 4 bytes (an RLE block: 3-byte header, 1 byte).
    const std::size_t limit =
        std::min<std::size_t>(kMaxPacketBytes, (compressed_.size() / 4 + 1) * kZstdMaxBlockBytes);
    plain_.resize(std::max<std::size_t>(plain_.size(), std::min(limit, compressed_.size() * 4 + 1024)));
    for (;;) {
      ZSTD_DCtx_reset(zstd_, ZSTD_reset_session_only);
      const std::size_t n =
          ZSTD_decompressDCtx(zstd_, plain_.data(), plain_.size(), compressed_.data(), compressed_.size());
      if (!ZSTD_isError(n)) return {plain_.data(), n};
      if (ZSTD_getErrorCode(n) != ZSTD_error_dstSize_tooSmall)
        fail(at, std::string("corrupt Zstd packet: ") + ZSTD_getErrorName(n));
      if (plain_.size() >= limit)
        fail(at, "corrupt Zstd packet: it claims more data than its " + std::to_string(compressed_.size()) +
                     " bytes can hold");
      plain_.resize(std::min(limit, plain_.size() * 2));
    }
  }

  void grow(std::uint64_t at) {
    if (plain_.size() >= kMaxPacketBytes) fail(at, "packet decompresses to more than 1 GiB");
    plain_.resize(std::min(kMaxPacketBytes, plain_.size() * 2));
  }

  // EventPacket: field 0 = vector of 16-byte structs {i64 t, i16 x, i16 y, u8 on, 3 pad}.
  void decode_events(std::span<const std::uint8_t> payload, std::uint64_t at, EventBuffer& cd) {
    auto root = fb::Table::root(payload, "EVTS");
    if (!root) fail(at, "events packet without a valid EVTS flatbuffer");
    auto elements = root->vector(0, 16);
    if (!elements) {
      if (root->field(0)) fail(at, "events packet with a malformed event vector");
      return;  // an empty packet
    }
    const std::uint8_t* p = payload.data() + elements->data;
    const std::size_t n = elements->count;
    EventCD* out = cd.prepare(n);
    std::size_t kept = 0;
    const bool bounded = geometry_.known();
    const auto w = static_cast<unsigned>(geometry_.width), h = static_cast<unsigned>(geometry_.height);
    Timestamp prev = last_event_t_;
    std::uint64_t outside = 0, backwards = 0;
    for (std::size_t i = 0; i < n; ++i, p += 16) {
      std::int64_t t;
      std::int16_t x, y;
      std::memcpy(&t, p, 8);
      std::memcpy(&x, p + 8, 2);
      std::memcpy(&y, p + 10, 2);
      const bool on = p[12] != 0;
      const auto ux = static_cast<std::uint16_t>(x), uy = static_cast<std::uint16_t>(y);
      if (x < 0 || y < 0 || (bounded && (ux >= w || uy >= h))) {
        ++outside;
        if (options_.on_violation == OnViolation::raise)
          fail(at, "event at (" + std::to_string(x) + ", " + std::to_string(y) + ") outside the " +
                       std::to_string(geometry_.width) + "x" + std::to_string(geometry_.height) + " sensor");
        continue;
      }
      if (t < prev) {
        ++backwards;
        if (options_.on_violation == OnViolation::raise)
          fail(at, "time goes backwards (" + std::to_string(t) + " after " + std::to_string(prev) + ")");
      }
      prev = t;
      out[kept++] = EventCD{ux, uy, static_cast<std::int16_t>(on ? 1 : 0), t};
    }
    cd.commit(kept);
    last_event_t_ = prev;
    stats_.cd_events += kept;
    stats_.out_of_bounds += outside;
    stats_.time_backwards += backwards;
  }

  // TriggerPacket: field 0 = vector of Trigger tables {0: i64 t, 1: i8 type}.
  void decode_triggers(std::span<const std::uint8_t> payload, std::uint64_t at, TriggerBuffer& triggers) {
    auto root = fb::Table::root(payload, "TRIG");
    if (!root) fail(at, "trigger packet without a valid TRIG flatbuffer");
    auto elements = root->vector(0, 4);
    if (!elements) return;
    for (std::size_t i = 0; i < elements->count; ++i) {
      auto trigger = root->table_at(*elements, i);
      if (!trigger) fail(at, "trigger packet with a malformed trigger " + std::to_string(i));
      const std::int64_t t = trigger->scalar<std::int64_t>(0).value_or(0);
      const int type = trigger->scalar<std::int8_t>(1).value_or(0);
      triggers.push_back(EventExtTrigger{trigger_polarity(type), t, static_cast<std::int16_t>(type)});
      ++stats_.trigger_events;
    }
  }

  File file_;
  Compression compression_ = Compression::none;
  std::map<int, StreamInfo> streams_;
  int events_stream_ = -1;
  int trigger_stream_ = -1;
  bool has_table_ = false;
  std::uint64_t data_start_ = 0;
  std::uint64_t data_end_ = 0;
  std::uint64_t position_ = 0;
  Timestamp last_event_t_ = std::numeric_limits<Timestamp>::min();
  std::vector<std::uint8_t> compressed_;
  std::vector<std::uint8_t> plain_;
  LZ4F_dctx* lz4_ = nullptr;
  ZSTD_DCtx* zstd_ = nullptr;
  DecodeStats stats_{};
};

}  // namespace

std::unique_ptr<EventReader> make_aedat4_reader(const std::filesystem::path& path,
                                                const ReaderOptions& options) {
  return std::make_unique<Aedat4Reader>(path, options);
}

}  // namespace evloader::detail
