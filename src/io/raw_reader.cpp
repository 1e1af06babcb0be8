// SPDX-License-Identifier: Apache-2.0
// Reader of Prophesee RAW files: header, format resolution, block decoding through the EVT decoders.
#include <array>
#include <cstring>

#include "evloader/core/error.hpp"
#include "evloader/io/decoder.hpp"
#include "evloader/io/file.hpp"
#include "evloader/io/header.hpp"
#include "evloader/io/raw_format.hpp"
#include "io/detail/readers.hpp"

namespace evloader::detail {

namespace {

// 256 KiB per block: large reads for throughput, small enough that a seek decodes little, and a
// multiple of every word size so block boundaries are word boundaries (relative to the data start).
constexpr std::size_t kBlockBytes = 256 * 1024;

std::uint64_t mix(std::uint64_t h, std::uint64_t v) { return (h ^ v) * 1099511628211ull; }

class RawReader final : public EventReader {
 public:
  RawReader(const std::filesystem::path& path, const ReaderOptions& options)
      : EventReader(path, options), file_(path) {
    FileHeader header = read_header(path);
    for (const auto& [k, v] : header.lines) header_[k] = v;
    data_offset_ = header.data_offset;
    RawFormatOverride user = options.raw_format;
    if (options.geometry && !user.geometry) user.geometry = options.geometry;
    format_ = resolve_raw_format(header, user, path);
    geometry_ = format_.geometry;
    DecoderOptions decoder_options;
    decoder_options.geometry = format_.geometry;
    decoder_options.on_violation = options.on_violation;
    decoder_options.evt21_order = format_.evt21_order;
    decoder_options.decode_triggers = options.decode_triggers;
    decoder_ = make_decoder(format_.encoding, decoder_options);
    block_.resize(kBlockBytes);
    rewind_source();
    finish_open();
  }

  FileFormat format() const noexcept override { return FileFormat::raw; }
  std::string encoding_name() const override { return to_string(format_.encoding); }
  const DecodeStats& stats() const noexcept override { return decoder_->stats(); }

 protected:
  bool decode_next_block(EventBuffer& cd, TriggerBuffer& triggers) override {
    if (position_ >= file_.size()) {
      finish_decoder();
      return false;
    }
    std::size_t n = file_.read_at(position_, block_);
    if (n == 0) {  // the file shrank under us
      finish_decoder();
      return false;
    }
    try {
      decoder_->decode({block_.data(), n}, cd, &triggers, static_cast<std::int64_t>(position_));
    } catch (const FormatError& e) {  // the decoder knows the offset, the reader knows the file
      throw FormatError(path_.string() + ": " + e.what());
    }
    position_ += n;
    return true;
  }

  IndexEntry source_position() const override {
    IndexEntry e;
    e.byte_offset = position_;
    e.state = decoder_->state();
    return e;
  }

  void restore_source(const IndexEntry& position) override {
    decoder_->restore(position.state);
    position_ = position.byte_offset;
    finished_ = false;
  }

  void rewind_source() override {
    decoder_->reset();
    position_ = data_offset_;
    finished_ = false;
  }

  std::uint64_t data_size() const noexcept override { return file_.size(); }

  std::uint64_t estimated_remaining_events() const noexcept override {
    const std::uint64_t left = position_ < file_.size() ? file_.size() - position_ : 0;
    // About one event per word in real streams (EVT3 vectors pack more, EVT3 time words fewer); EVT2.1
    // words are vectors of up to 32 pixels, typically a few.
    return format_.encoding == RawEncoding::evt21 ? left / 2 : left / decoder_->word_size();
  }

  IndexKey index_key() const override {
    IndexKey key;
    key.file_size = file_.size();
    key.mtime_ns = file_.mtime_ns();
    std::uint64_t h = 1469598103934665603ull;
    h = mix(h, static_cast<std::uint64_t>(format_.encoding));
    h = mix(h, static_cast<std::uint64_t>(format_.geometry.width));
    h = mix(h, static_cast<std::uint64_t>(format_.geometry.height));
    h = mix(h, static_cast<std::uint64_t>(format_.evt21_order));
    h = mix(h, data_offset_);
    h = mix(h, 0x52415701);  // bump when the RAW decoding semantics change
    key.decode_signature = h;
    return key;
  }

  Timestamp probe_metavision_shift() override {
    // The shift comes from the first TIME_HIGH: decode from the start until the decoder has seen one.
    auto probe = make_decoder(format_.encoding, decoder_->options());
    EventBuffer cd;
    TriggerBuffer triggers;
    std::uint64_t pos = data_offset_;
    while (pos < file_.size()) {
      std::size_t n = file_.read_at(pos, block_);
      if (n == 0) break;
      probe->decode({block_.data(), n}, cd, &triggers, static_cast<std::int64_t>(pos));
      if (auto shift = probe->metavision_time_shift()) return *shift;
      cd.clear();
      triggers.clear();
      pos += n;
    }
    return 0;
  }

 private:
  void finish_decoder() {
    if (!finished_) decoder_->finish();
    finished_ = true;
  }

  File file_;
  std::uint64_t data_offset_ = 0;
  RawFormat format_;
  std::unique_ptr<EventDecoder> decoder_;
  std::vector<std::byte> block_;
  std::uint64_t position_ = 0;
  bool finished_ = false;
};

}  // namespace

std::unique_ptr<EventReader> make_raw_reader(const std::filesystem::path& path,
                                             const ReaderOptions& options) {
  return std::make_unique<RawReader>(path, options);
}

}  // namespace evloader::detail
