// SPDX-License-Identifier: Apache-2.0
// Reader of Prophesee DAT files: fixed 8-byte records decoded in blocks, 32-bit time unwrapped.
#include "evloader/core/error.hpp"
#include "evloader/io/dat.hpp"
#include "evloader/io/file.hpp"
#include "io/detail/readers.hpp"

namespace evloader::detail {

namespace {

constexpr std::size_t kBlockRecords = 32 * 1024;  // 256 KiB per block, as for RAW files

class DatReader final : public EventReader {
 public:
  DatReader(const std::filesystem::path& path, const ReaderOptions& options)
      : EventReader(path, options), file_(path), info_(read_dat_info(path)) {
    for (const auto& [k, v] : info_.header.lines) header_[k] = v;
    geometry_ = options.geometry.value_or(info_.geometry);
    block_.resize(kBlockRecords * 8);
    rewind_source();
    finish_open();
  }

  FileFormat format() const noexcept override { return FileFormat::dat; }
  std::string encoding_name() const override {
    return info_.type == DatEventType::ext_trigger ? "DAT (triggers)" : "DAT";
  }
  const DecodeStats& stats() const noexcept override { return stats_; }

 protected:
  bool decode_next_block(EventBuffer& cd, TriggerBuffer& triggers) override {
    const std::uint64_t end = info_.data_offset + info_.record_count * 8;
    if (position_ >= end) {
      if (!counted_tail_) stats_.truncated_bytes += info_.trailing_bytes;
      counted_tail_ = true;
      return false;
    }
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(block_.size(), end - position_));
    const std::size_t got = file_.read_at(position_, {block_.data(), want});
    const std::size_t whole = got / 8 * 8;
    if (whole == 0) {  // the file shrank under us
      stats_.truncated_bytes += got;
      counted_tail_ = true;
      position_ = end;
      return false;
    }
    std::span<const std::byte> records(block_.data(), whole);
    if (info_.type == DatEventType::ext_trigger) {
      if (options_.decode_triggers) decode_dat_triggers(records, state_, triggers, stats_);
    } else {
      decode_dat_cd(records, geometry_, state_, cd, stats_);
    }
    position_ += whole;
    if (options_.on_violation == OnViolation::raise && stats_.violations() != 0)
      throw_format_error(path_, static_cast<std::int64_t>(position_ - whole),
                         "protocol violation in this block: " + stats_.summary());
    return true;
  }

  IndexEntry source_position() const override {
    IndexEntry e;
    e.byte_offset = position_;
    e.state.time_base = state_.high;
    e.state.time = state_.last_raw_t;
    e.state.last_event_t = state_.last_event_t;
    return e;
  }

  // Only a position this reader can have saved: a record boundary within the data and an unwrapping state
  // of whole 2^32 wraps and a 32-bit last value. Anything else comes from a damaged time index, which the
  // base class then rebuilds instead of decoding misaligned records.
  void restore_source(const IndexEntry& position) override {
    const std::uint64_t end = info_.data_offset + info_.record_count * 8;
    const DecoderState& s = position.state;
    if (position.byte_offset < info_.data_offset || position.byte_offset > end ||
        (position.byte_offset - info_.data_offset) % 8 != 0 || s.time_base < 0 ||
        s.time_base % (std::int64_t{1} << 32) != 0 || s.time < -1 || s.time > 0xFFFFFFFFll)
      throw_format_error(path_, static_cast<std::int64_t>(position.byte_offset),
                         "time index position is not a record boundary of this DAT file");
    position_ = position.byte_offset;
    state_.high = position.state.time_base;
    state_.last_raw_t = position.state.time;
    state_.last_event_t = position.state.last_event_t;
    counted_tail_ = false;
  }

  void rewind_source() override {
    position_ = info_.data_offset;
    state_ = DatDecodeState{};
    counted_tail_ = false;
  }

  std::uint64_t data_size() const noexcept override { return file_.size(); }

  std::uint64_t estimated_remaining_events() const noexcept override {
    if (info_.type == DatEventType::ext_trigger) return 0;
    const std::uint64_t end = info_.data_offset + info_.record_count * 8;
    return position_ < end ? (end - position_) / 8 : 0;
  }

  IndexKey index_key() const override {
    IndexKey key;
    key.file_size = file_.size();
    key.mtime_ns = file_.mtime_ns();
    key.decode_signature = (static_cast<std::uint64_t>(geometry_.width) << 32) ^
                           static_cast<std::uint64_t>(geometry_.height) ^ 0xDA7000000001ull;
    return key;
  }

  // The Metavision SDK never shifts DAT timestamps.
  Timestamp probe_metavision_shift() override { return 0; }

 private:
  File file_;
  DatInfo info_;
  std::vector<std::byte> block_;
  std::uint64_t position_ = 0;
  DatDecodeState state_{};
  DecodeStats stats_{};
  bool counted_tail_ = false;
};

}  // namespace

std::unique_ptr<EventReader> make_dat_reader(const std::filesystem::path& path,
                                             const ReaderOptions& options) {
  return std::make_unique<DatReader>(path, options);
}

}  // namespace evloader::detail
