// SPDX-License-Identifier: Apache-2.0
// The format-independent half of every reader: the Metavision-style load/seek contract on top of a
// resumable block decoder, and the time index that makes seeking and summaries cheap.
#include "evloader/io/event_reader.hpp"

#include <algorithm>
#include <limits>

#include "evloader/core/error.hpp"
#include "evloader/io/file.hpp"
#include "evloader/io/header.hpp"
#include "io/detail/readers.hpp"

namespace evloader {

namespace {

std::string lower_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

DecodeStats difference(const DecodeStats& after, const DecodeStats& before) {
  DecodeStats d;
  d.bytes = after.bytes - before.bytes;
  d.cd_events = after.cd_events - before.cd_events;
  d.trigger_events = after.trigger_events - before.trigger_events;
  d.padding_words = after.padding_words - before.padding_words;
  d.before_time_base = after.before_time_base - before.before_time_base;
  d.out_of_bounds = after.out_of_bounds - before.out_of_bounds;
  d.time_backwards = after.time_backwards - before.time_backwards;
  d.time_high_glitches = after.time_high_glitches - before.time_high_glitches;
  d.unknown_words = after.unknown_words - before.unknown_words;
  d.truncated_bytes = after.truncated_bytes - before.truncated_bytes;
  d.time_loops = after.time_loops - before.time_loops;
  return d;
}

bool folder_accepts_files(const std::filesystem::path& file) {
  std::error_code ec;
  auto folder = file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path();
  const auto mode = std::filesystem::status(folder, ec).permissions();
  if (ec) return false;
  using P = std::filesystem::perms;
  return (mode & (P::owner_write | P::group_write | P::others_write)) != P::none;
}

// Times and the Metavision shift come from files: arithmetic on them saturates instead of overflowing.
Timestamp add_saturating(Timestamp a, Timestamp b) {
  Timestamp r;
  if (__builtin_add_overflow(a, b, &r))
    return b > 0 ? std::numeric_limits<Timestamp>::max() : std::numeric_limits<Timestamp>::min();
  return r;
}

Timestamp sub_saturating(Timestamp a, Timestamp b) {
  Timestamp r;
  if (__builtin_sub_overflow(a, b, &r))
    return b < 0 ? std::numeric_limits<Timestamp>::max() : std::numeric_limits<Timestamp>::min();
  return r;
}

}  // namespace

std::unique_ptr<EventReader> EventReader::open(const std::filesystem::path& path,
                                               const ReaderOptions& options) {
  File probe(path);  // uniform IoError for missing files, directories and permissions
  std::string ext = lower_extension(path);
  if (ext == ".raw") return detail::make_raw_reader(path, options);
  if (ext == ".dat") return detail::make_dat_reader(path, options);
  if (ext == ".hdf5" || ext == ".h5") return detail::make_hdf5_event_reader(path, options);
  if (ext == ".aedat4") return detail::make_aedat4_reader(path, options);
  // Unknown extension: look at the header.
  FileHeader header = read_header(path);
  if (header.get("evt") || header.get("format")) return detail::make_raw_reader(path, options);
  if (header.get("Height") || header.get("Width") || header.get("Version"))
    return detail::make_dat_reader(path, options);
  throw_format_error(path, 0,
                     "unknown recording format (evloader reads .raw, .dat, .hdf5 and .aedat4 files)");
}

EventReader::EventReader(const std::filesystem::path& path, const ReaderOptions& options)
    : path_(path), options_(options) {}

void EventReader::finish_open() {
  if (options_.time_origin == TimeOrigin::metavision) shift_ = probe_metavision_shift();
}

void EventReader::apply_shift(std::size_t cd_from, std::size_t trig_from) {
  if (shift_ == 0) return;
  // Saturating: the shift comes from the file (an HDF5 attribute may hold anything) and so do the times.
  for (std::size_t i = cd_from; i < pending_.size(); ++i)
    pending_[i].t = sub_saturating(pending_[i].t, shift_);
  for (std::size_t i = trig_from; i < triggers_.size(); ++i)
    triggers_[i].t = sub_saturating(triggers_[i].t, shift_);
}

bool EventReader::fill() {
  while (pending_pos_ >= pending_.size()) {
    if (source_done_) return false;
    pending_.clear();
    pending_pos_ = 0;
    const std::size_t trig_from = triggers_.size();
    if (!decode_next_block(pending_, triggers_)) {
      source_done_ = true;
      raise_if_cut();
    }
    apply_shift(0, trig_from);
  }
  return true;
}

void EventReader::raise_if_cut() const {
  if (options_.on_violation != OnViolation::raise) return;
  const std::uint64_t cut = stats().truncated_bytes;
  if (cut == 0) return;
  std::error_code ec;
  const std::uint64_t size = std::filesystem::file_size(path_, ec);
  const std::int64_t at = ec ? -1 : static_cast<std::int64_t>(size - std::min(size, cut));
  throw_format_error(path_, at,
                     "the file ends inside an event word or record (" + std::to_string(cut) +
                         " trailing bytes; on_violation='skip' drops them)");
}

void EventReader::take_pending(std::size_t n, EventBuffer& out) {
  out.append({pending_.data() + pending_pos_, n});
  pending_pos_ += n;
  delivered_ += n;
}

void EventReader::load_delta_t(Timestamp dt, EventBuffer& out) {
  if (dt < 1) throw ConfigError("load_delta_t: delta_t must be >= 1 us, got " + std::to_string(dt));
  out.clear();
  const Timestamp end = add_saturating(current_time_, dt);
  while (fill()) {
    const EventCD* p = pending_.data() + pending_pos_;
    const std::size_t avail = pending_.size() - pending_pos_;
    std::size_t k = 0;
    while (k < avail && p[k].t < end) ++k;
    take_pending(k, out);
    if (k < avail) break;
  }
  current_time_ = end;
}

EventBuffer EventReader::load_delta_t(Timestamp dt) {
  EventBuffer out;
  load_delta_t(dt, out);
  return out;
}

void EventReader::load_n_events(std::uint64_t n, EventBuffer& out) {
  if (n < 1) throw ConfigError("load_n_events: n_events must be >= 1");
  out.clear();
  out.reserve(
      static_cast<std::size_t>(std::min<std::uint64_t>(n, pending_left() + estimated_remaining_events())));
  while (out.size() < n && fill()) {
    const std::size_t avail = pending_.size() - pending_pos_;
    take_pending(static_cast<std::size_t>(std::min<std::uint64_t>(avail, n - out.size())), out);
  }
  if (!out.empty()) current_time_ = out[out.size() - 1].t;
}

EventBuffer EventReader::load_n_events(std::uint64_t n) {
  EventBuffer out;
  load_n_events(n, out);
  return out;
}

void EventReader::load_mixed(std::uint64_t n, Timestamp dt, EventBuffer& out) {
  if (n < 1) throw ConfigError("load_mixed: n_events must be >= 1");
  if (dt < 1) throw ConfigError("load_mixed: delta_t must be >= 1 us, got " + std::to_string(dt));
  out.clear();
  const Timestamp end = add_saturating(current_time_, dt);
  while (out.size() < n && fill()) {
    const EventCD* p = pending_.data() + pending_pos_;
    const std::size_t avail =
        static_cast<std::size_t>(std::min<std::uint64_t>(pending_.size() - pending_pos_, n - out.size()));
    std::size_t k = 0;
    while (k < avail && p[k].t < end) ++k;
    const bool window_ended = k < avail;
    take_pending(k, out);
    if (window_ended) break;
  }
  current_time_ = (out.size() == n) ? out[out.size() - 1].t : end;
}

EventBuffer EventReader::load_mixed(std::uint64_t n, Timestamp dt) {
  EventBuffer out;
  load_mixed(n, dt, out);
  return out;
}

EventBuffer EventReader::load_all() {
  EventBuffer out;
  // One allocation for the whole read: growing a large buffer re-copies it and faults fresh pages each time.
  out.reserve(static_cast<std::size_t>(pending_left() + estimated_remaining_events()));
  while (fill()) take_pending(pending_.size() - pending_pos_, out);
  if (!out.empty()) current_time_ = out[out.size() - 1].t;
  return out;
}

TriggerBuffer EventReader::take_triggers() {
  TriggerBuffer out = std::move(triggers_);
  triggers_ = TriggerBuffer{};
  return out;
}

bool EventReader::is_done() { return !fill(); }

void EventReader::position_at(const IndexEntry& entry) {
  if (entry.byte_offset == index_->entries.front().byte_offset) {
    rewind_source();
  } else {
    restore_source(entry);
  }
  pending_.clear();
  pending_pos_ = 0;
  triggers_.clear();
  source_done_ = false;
  delivered_ = entry.event_index;
}

void EventReader::seek_time(Timestamp t) {
  ensure_index();
  position_at(index_->entry_for_time(add_saturating(t, shift_)));
  while (fill()) {
    const EventCD* p = pending_.data() + pending_pos_;
    const std::size_t avail = pending_.size() - pending_pos_;
    std::size_t k = 0;
    while (k < avail && p[k].t < t) ++k;
    pending_pos_ += k;
    delivered_ += k;
    if (k < avail) break;
  }
  // Triggers decoded while skipping belong before the seek point.
  std::size_t keep = 0;
  for (std::size_t i = 0; i < triggers_.size(); ++i)
    if (triggers_[i].t >= t) triggers_[keep++] = triggers_[i];
  triggers_.truncate(keep);
  current_time_ = t;
}

void EventReader::skip_to_event(std::uint64_t n) {
  position_at(index_->entry_for_event(n));
  while (delivered_ < n && fill()) {
    const std::size_t avail = pending_.size() - pending_pos_;
    const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(avail, n - delivered_));
    pending_pos_ += k;
    delivered_ += k;
  }
}

void EventReader::seek_event(std::uint64_t n) {
  ensure_index();
  skip_to_event(n);
  if (fill()) {
    current_time_ = pending_[pending_pos_].t;
  } else if (index_->summary.event_count > 0) {
    current_time_ = sub_saturating(index_->summary.last_t, shift_);
  }
}

void EventReader::reset() {
  rewind_source();
  pending_.clear();
  pending_pos_ = 0;
  triggers_.clear();
  source_done_ = false;
  delivered_ = 0;
  current_time_ = 0;
}

void EventReader::ensure_index() {
  if (!index_) build_index();
}

void EventReader::build_index(const ProgressCallback& progress) {
  if (index_) return;
  const IndexKey key = index_key();
  std::vector<std::filesystem::path> candidates;
  if (options_.index_storage == IndexStorage::sidecar) candidates.push_back(sidecar_index_path(path_));
  // A folder without write permission is read-only by intent, even for root (who could write anyway):
  // never drop files into such a dataset folder.
  const bool folder_writable = folder_accepts_files(path_);
  if (options_.index_storage != IndexStorage::memory) candidates.push_back(cache_index_path(path_));
  // A loaded index must also fit this recording as its decoder sees it (load_index only knows the file's
  // size): the first entry is the start of the data, and the format accepts every entry as a position
  // (restore_source throws FormatError for one it could never have saved, e.g. a DAT offset inside a
  // record). Otherwise it is rebuilt. The source is put back where it was.
  auto fits_source = [this](const TimeIndex& index) {
    const IndexEntry here = source_position();
    rewind_source();
    const IndexEntry start = source_position();
    const bool here_is_start = here.byte_offset == start.byte_offset && here.state == start.state;
    const IndexEntry& first = index.entries.front();
    bool ok = first.byte_offset == start.byte_offset && first.state == start.state;
    try {
      for (std::size_t i = 1; ok && i < index.entries.size(); ++i) restore_source(index.entries[i]);
    } catch (const FormatError&) {
      ok = false;
    }
    if (here_is_start)
      rewind_source();
    else
      restore_source(here);
    return ok;
  };
  for (const auto& candidate : candidates) {
    if (auto loaded = load_index(candidate, key); loaded && fits_source(*loaded)) {
      index_ = std::move(loaded);
      index_path_ = candidate;
      return;
    }
  }

  // One decode of the whole file with the reader's own decoder, recording a resumable position per block.
  const std::uint64_t resume_at = delivered_;
  const Timestamp saved_time = current_time_;
  TriggerBuffer saved_triggers = take_triggers();
  const DecodeStats before = stats();

  TimeIndex index;
  IndexSummary& s = index.summary;
  Timestamp max_t = std::numeric_limits<Timestamp>::min();
  EventBuffer cd;
  TriggerBuffer triggers;
  rewind_source();
  const std::uint64_t total = data_size();
  std::uint64_t blocks = 0;
  while (true) {
    IndexEntry entry = source_position();
    entry.event_index = s.event_count;
    entry.max_t_before = max_t;
    index.entries.push_back(entry);
    cd.clear();
    triggers.clear();
    const bool more = decode_next_block(cd, triggers);
    if (!cd.empty()) {
      if (s.event_count == 0) s.first_t = cd[0].t;
      s.last_t = cd[cd.size() - 1].t;
      for (const EventCD& e : cd) max_t = std::max(max_t, e.t);
      s.event_count += cd.size();
    }
    s.trigger_count += triggers.size();
    if (progress && (++blocks % 16 == 0 || !more))
      progress(std::min(source_position().byte_offset, total), total);
    if (!more) {
      raise_if_cut();
      break;
    }
  }
  s.max_t = s.event_count ? max_t : 0;
  s.stats = difference(stats(), before);
  s.metavision_time_shift = shift_;
  index_ = std::move(index);

  for (const auto& candidate : candidates) {
    if (candidate == sidecar_index_path(path_) && !folder_writable) continue;
    if (save_index(candidate, key, *index_)) {
      index_path_ = candidate;
      break;
    }
  }

  // Put the reader back where it was.
  skip_to_event(resume_at);
  triggers_ = std::move(saved_triggers);
  current_time_ = saved_time;
}

std::uint64_t EventReader::event_count() {
  ensure_index();
  return index_->summary.event_count;
}

std::uint64_t EventReader::trigger_count() {
  ensure_index();
  return index_->summary.trigger_count;
}

Timestamp EventReader::first_timestamp() {
  ensure_index();
  return index_->summary.event_count ? sub_saturating(index_->summary.first_t, shift_) : 0;
}

Timestamp EventReader::last_timestamp() {
  ensure_index();
  return index_->summary.event_count ? sub_saturating(index_->summary.last_t, shift_) : 0;
}

Timestamp EventReader::duration() { return last_timestamp() - first_timestamp(); }

DecodeStats EventReader::file_stats() {
  ensure_index();
  return index_->summary.stats;
}

}  // namespace evloader
