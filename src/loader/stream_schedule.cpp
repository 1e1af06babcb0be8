// SPDX-License-Identifier: Apache-2.0
// Planning of the streaming loader: bins and tensors per recording, and recordings chained per slot.
#include "evloader/loader/stream_schedule.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <stdexcept>
#include <thread>

#include "evloader/core/error.hpp"

namespace evloader {

namespace {

Timestamp floor_to(Timestamp t, Timestamp step) {
  Timestamp r = t % step;
  if (r < 0) r += step;
  return t - r;
}

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return a / b + (a % b != 0); }

// Events of the recording (file order) before the first one with t >= end.
std::uint64_t events_before(EventReader& reader, Timestamp end, std::uint64_t count, Timestamp last) {
  if (end > last) return count;
  reader.seek_time(end);
  return reader.current_event_index();
}

}  // namespace

void StreamSlicing::validate() const {
  if (num_tbins < 1) throw ConfigError("num_tbins must be >= 1, got " + std::to_string(num_tbins));
  if ((mode == SliceMode::delta_t || mode == SliceMode::mixed) && delta_t < 1)
    throw ConfigError("delta_t must be >= 1 us in " +
                      std::string(mode == SliceMode::mixed ? "mixed" : "delta_t") + " mode, got " +
                      std::to_string(delta_t));
  if ((mode == SliceMode::n_events || mode == SliceMode::mixed) && n_events < 1)
    throw ConfigError("n_events must be >= 1 in " +
                      std::string(mode == SliceMode::mixed ? "mixed" : "n_events") + " mode, got " +
                      std::to_string(n_events));
  if (max_duration < 0)
    throw ConfigError("max_duration must be positive, got " + std::to_string(max_duration));
  if (mode == SliceMode::delta_t && delta_t > std::numeric_limits<Timestamp>::max() / num_tbins)
    throw ConfigError("delta_t * num_tbins overflows");
}

BinCutter::BinCutter(const StreamSlicing& slicing, const StreamPlan& plan) : slicing_(slicing), plan_(plan) {}

void BinCutter::rewind(EventReader& reader) {
  read_ = 0;
  if (slicing_.mode == SliceMode::n_events)
    reader.reset();
  else
    reader.seek_time(plan_.begin);
}

bool BinCutter::more(EventReader& reader) {
  if (slicing_.mode == SliceMode::n_events) return read_ < plan_.events;
  // Mixed: bins continue until the cursor reaches the end, or no event is left. Time-limited bins in a
  // gap are empty but still bins, as the reader's load_mixed returns them.
  return reader.current_time() < plan_.end && !reader.is_done();
}

BinSpan BinCutter::next(EventReader& reader, EventBuffer& events) {
  BinSpan span;
  if (slicing_.mode == SliceMode::n_events) {
    const std::uint64_t take = std::min(slicing_.n_events, plan_.events - read_);
    reader.load_n_events(take, events);
    read_ += events.size();
    if (events.empty()) return span;
    Timestamp lo = events[0].t, hi = events[0].t;
    for (const EventCD& e : events) {
      lo = std::min(lo, e.t);
      hi = std::max(hi, e.t);
    }
    span.begin = lo;
    span.end = hi + 1;
    return span;
  }
  const Timestamp cursor = reader.current_time();
  const Timestamp dt = std::min(slicing_.delta_t, plan_.end - cursor);
  reader.load_mixed(slicing_.n_events, dt, events);
  read_ += events.size();
  span.begin = cursor;
  span.end = cursor + dt;
  if (events.size() == slicing_.n_events) {  // the count ended the bin: it ends after its last event
    Timestamp hi = cursor;
    for (const EventCD& e : events) hi = std::max(hi, e.t);
    span.end = hi + 1;
  }
  return span;
}

StreamPlan plan_stream(EventReader& reader, const StreamSlicing& slicing) {
  slicing.validate();
  StreamPlan plan;
  plan.geometry = reader.geometry();
  const std::uint64_t count = reader.event_count();
  if (count == 0) return plan;
  const Timestamp first = reader.first_timestamp();
  const Timestamp last = reader.last_timestamp();
  const auto cap = [&](Timestamp begin) {
    Timestamp end = last + 1;
    if (slicing.max_duration > 0) end = std::min(end, begin + slicing.max_duration);
    return end;
  };
  const auto tbins = static_cast<std::uint64_t>(slicing.num_tbins);
  switch (slicing.mode) {
    case SliceMode::delta_t: {
      // The grid of metavision's EventsIterator (windows at multiples of num_tbins * delta_t), without the
      // empty windows before the first event.
      plan.begin = floor_to(first, slicing.delta_t * slicing.num_tbins);
      plan.end = cap(plan.begin);
      plan.events = events_before(reader, plan.end, count, last);
      plan.bins = ceil_div(static_cast<std::uint64_t>(plan.end - plan.begin),
                           static_cast<std::uint64_t>(slicing.delta_t));
      break;
    }
    case SliceMode::n_events: {
      plan.begin = first;
      plan.end = cap(plan.begin);
      plan.events = events_before(reader, plan.end, count, last);
      plan.bins = ceil_div(plan.events, slicing.n_events);
      break;
    }
    case SliceMode::mixed: {
      plan.begin = floor_to(first, slicing.delta_t);
      plan.end = cap(plan.begin);
      BinCutter cutter(slicing, plan);
      EventBuffer events;
      cutter.rewind(reader);
      while (cutter.more(reader)) {
        (void)cutter.next(reader, events);
        ++plan.bins;
      }
      plan.events = cutter.events_read();
      break;
    }
  }
  plan.items = ceil_div(plan.bins, tbins);
  return plan;
}

std::vector<PlanResult> plan_streams(const std::vector<std::filesystem::path>& paths,
                                     const ReaderOptions& reader_options, const StreamSlicing& slicing,
                                     int threads) {
  slicing.validate();
  std::vector<PlanResult> results(paths.size());
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next++; i < paths.size(); i = next++) {
      PlanResult& r = results[i];
      const auto failed = [&](const char* kind, const std::string& what) {
        r.error_kind = kind;
        // Readers name the file in their messages; add it when an exception does not.
        const std::string name = paths[i].string();
        r.error = what.find(name) == std::string::npos ? name + ": " + what : what;
      };
      try {
        auto reader = EventReader::open(paths[i], reader_options);
        r.plan = plan_stream(*reader, slicing);
      } catch (const IoError& e) {
        failed("io", e.what());
      } catch (const FormatError& e) {
        failed("format", e.what());
      } catch (const ConfigError& e) {
        failed("config", e.what());
      } catch (const std::exception& e) {
        failed("other", e.what());
      }
    }
  };
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(paths.size())));
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return results;
}

StreamSchedule::StreamSchedule(std::vector<std::uint64_t> items, int batch_size, StreamPadding padding,
                               std::vector<int> order)
    : batch_size_(batch_size), padding_(padding) {
  if (batch_size < 1) throw ConfigError("batch_size must be >= 1, got " + std::to_string(batch_size));
  if (order.empty()) {
    order.resize(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) order[i] = static_cast<int>(i);
  }
  // Recordings without a tensor are passed over (metavision's StreamDataset would end the worker there).
  std::vector<int> streams;
  for (int r : order) {
    if (r < 0 || static_cast<std::size_t>(r) >= items.size())
      throw ConfigError("stream order names recording " + std::to_string(r) + " of " +
                        std::to_string(items.size()));
    if (items[static_cast<std::size_t>(r)] > 0) streams.push_back(r);
  }
  segments_.resize(static_cast<std::size_t>(batch_size));
  const std::size_t m = streams.size();
  if (m == 0) return;

  // The simulation of StreamDataset.__iter__ for one worker holding every slot: `pos` counts the streams
  // started, a slot is active while it reads a stream started before the list ran out.
  struct SlotState {
    std::size_t ends = 0;  // first batch after the current run
    bool active = false;
  };
  std::vector<SlotState> slots(static_cast<std::size_t>(batch_size));
  std::size_t pos = 0;
  const auto start_run = [&](std::size_t s, std::size_t b) {
    const int r = streams[pos % m];
    const std::uint64_t n = items[static_cast<std::size_t>(r)];
    slots[s].active = pos < m;
    slots[s].ends = b + static_cast<std::size_t>(n);
    segments_[s].push_back({b, r, 0, n});
    ++pos;
  };
  for (std::size_t s = 0; s < slots.size(); ++s) {
    if (pos < m || padding_ == StreamPadding::data)
      start_run(s, 0);
    else
      ++pos;  // a slot with nothing to read: padding from the start
  }
  std::size_t b = 0;
  for (;; ++b) {
    bool any_active = false;
    for (std::size_t s = 0; s < slots.size(); ++s) {
      SlotState& slot = slots[s];
      if (b >= slot.ends) {  // the run is over: next stream, or padding
        if (pos < m || padding_ == StreamPadding::data) {
          start_run(s, b);
        } else {
          slot.active = false;
          ++pos;
        }
      }
      any_active = any_active || slot.active;
    }
    if (!any_active) break;  // this batch would hold no fresh data: the epoch ends before it
  }
  num_batches_ = b;
  for (auto& runs : segments_) {
    while (!runs.empty() && runs.back().first_batch >= num_batches_) runs.pop_back();
    for (auto& run : runs)
      run.count =
          std::min<std::uint64_t>(run.count, static_cast<std::uint64_t>(num_batches_ - run.first_batch));
  }
}

StreamItem StreamSchedule::at(std::size_t batch, int slot) const {
  if (batch >= num_batches_ || slot < 0 || slot >= batch_size_)
    throw std::out_of_range("stream item (" + std::to_string(batch) + ", " + std::to_string(slot) +
                            ") out of range");
  const auto& runs = segments_[static_cast<std::size_t>(slot)];
  auto it = std::upper_bound(runs.begin(), runs.end(), batch,
                             [](std::size_t b, const Segment& s) { return b < s.first_batch; });
  StreamItem item;
  if (it == runs.begin()) return item;
  --it;
  const std::size_t offset = batch - it->first_batch;
  if (offset >= it->count) return item;
  item.recording = it->recording;
  item.index = it->first_index + offset;
  return item;
}

std::shared_ptr<const Schedule> StreamSchedule::engine_schedule() const {
  // One "recording" per slot, num_batches windows of 1 µs long: the Schedule then has exactly the batch
  // count and slot count of this schedule (its items are placeholders).
  std::vector<ScheduleRecording> spans(static_cast<std::size_t>(batch_size_),
                                       ScheduleRecording{0, static_cast<Timestamp>(num_batches_)});
  ScheduleOptions o;
  o.delta_t = 1;
  o.num_tbins = 1;
  o.batch_size = batch_size_;
  o.rounding_tolerance = 0;
  return std::make_shared<Schedule>(std::move(spans), o);
}

}  // namespace evloader
