// SPDX-License-Identifier: Apache-2.0
// The streaming loader end to end on generated RAW and DAT recordings (and the real ones when present): plans
// and tensors against independent computations from the event vectors, every event seen once, identical
// batches for any number of workers, area downscaling, and failing recordings.
#include "evloader/loader/stream_filler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>

#include "evloader/core/error.hpp"
#include "evloader/io/dat.hpp"
#include "evloader/io/raw_writer.hpp"
#include "evloader/preprocess/area_resize.hpp"
#ifdef EVLOADER_WITH_HDF5
#include "evloader/preprocess/tensor_file.hpp"
#endif
#include "support/event_gen.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

constexpr int kW = 64;
constexpr int kH = 48;

// Counts events per [bin, p, y, x] (bins split the span evenly): the exact tally of what a tensor received.
class CountKernel final : public StreamKernel {
 public:
  CountKernel(int h, int w) : h_(h), w_(w) {}
  void run(std::span<const EventCD> events, Timestamp total, int bins, float* out) override {
    for (const EventCD& e : events) {
      const int bin = e.t <= 0 ? 0 : static_cast<int>(std::min<Timestamp>(bins - 1, e.t * bins / total));
      if (e.x >= w_ || e.y >= h_ || (e.p != 0 && e.p != 1)) continue;
      out[((static_cast<std::size_t>(bin) * 2 + static_cast<std::size_t>(e.p)) * h_ + e.y) * w_ + e.x] +=
          1.0f;
    }
  }

 private:
  int h_, w_;
};

StreamKernelFactory count_kernel() {
  return [](int h, int w) { return std::make_unique<CountKernel>(h, w); };
}

struct Recording {
  std::filesystem::path path;
  std::vector<EventCD> events;
};

std::filesystem::path dir() {
  static const auto d = test::temp_dir() / "stream";
  std::filesystem::create_directories(d);
  return d;
}

Recording write_recording(const std::string& name, std::size_t n, std::uint32_t seed, Timestamp t0,
                          Timestamp gap_at = -1, Timestamp gap = 0) {
  test::StreamShape shape;
  shape.width = kW;
  shape.height = kH;
  shape.t_start = t0;
  shape.max_gap_us = 30;
  Recording rec{dir() / name, test::random_events(n, seed, shape)};
  if (gap_at >= 0)  // a silent stretch: empty bins in the time modes
    for (auto& e : rec.events)
      if (e.t >= gap_at) e.t += gap;
  const auto ext = rec.path.extension();
  if (ext == ".dat") {
    DatWriter w(rec.path, {kW, kH});
    w.write(rec.events);
  } else {
    RawWriter w(rec.path, name.find("evt2") != std::string::npos ? RawEncoding::evt2 : RawEncoding::evt3,
                {kW, kH});
    w.write(rec.events);
  }
  return rec;
}

const std::vector<Recording>& recordings() {
  static const std::vector<Recording> recs = {
      write_recording("a_evt3.raw", 40000, 1, 1'234'567),
      write_recording("b_td.dat", 9000, 2, 50'000, 60'000, 35'000),
      write_recording("c_evt2.raw", 25000, 3, 7'000'001),
  };
  return recs;
}

ReaderOptions memory_index() {
  ReaderOptions o;
  o.index_storage = IndexStorage::memory;
  return o;
}

// What one tensor must hold, computed from the event vector alone.
struct Expected {
  Timestamp start = 0;
  Timestamp end = 0;
  std::vector<float> frames;  // [T, 2, kH, kW]
};

void add(std::vector<float>& frames, int bin, const EventCD& e) {
  frames[((static_cast<std::size_t>(bin) * 2 + static_cast<std::size_t>(e.p)) * kH + e.y) * kW + e.x] += 1.0f;
}

Timestamp floor_to(Timestamp t, Timestamp step) { return t - ((t % step) + step) % step; }

// The tensors of a recording per mode, derived from the spec of each mode (not from the reader's code).
std::vector<Expected> expected_tensors(const std::vector<EventCD>& ev, const StreamSlicing& s) {
  const int T = s.num_tbins;
  const std::size_t frame = 2u * kH * kW;
  std::vector<Expected> out;
  if (ev.empty()) return out;
  if (s.mode == SliceMode::delta_t) {
    const Timestamp window = s.delta_t * T;
    const Timestamp begin = floor_to(ev.front().t, window);
    Timestamp end = ev.back().t + 1;
    if (s.max_duration > 0) end = std::min(end, begin + s.max_duration);
    for (Timestamp start = begin; start < end; start += window) {
      Expected x{start, start + window, std::vector<float>(frame * T, 0.0f)};
      for (const auto& e : ev)
        if (e.t >= start && e.t < std::min(start + window, end))
          add(x.frames, static_cast<int>((e.t - start) / s.delta_t), e);
      out.push_back(std::move(x));
    }
    return out;
  }
  // Bins as lists of event indices with their spans.
  struct Bin {
    std::size_t first = 0, last = 0;  // [first, last)
    Timestamp begin = 0, end = 0;
  };
  std::vector<Bin> bins;
  if (s.mode == SliceMode::n_events) {
    Timestamp end = ev.back().t + 1;
    if (s.max_duration > 0) end = std::min(end, ev.front().t + s.max_duration);
    std::size_t total = 0;
    while (total < ev.size() && ev[total].t < end) ++total;
    for (std::size_t i = 0; i < total; i += s.n_events) {
      const std::size_t j = std::min<std::size_t>(total, i + s.n_events);
      bins.push_back({i, j, ev[i].t, ev[j - 1].t + 1});
    }
  } else {  // mixed: a bin ends after n_events events or delta_t µs
    const Timestamp begin = floor_to(ev.front().t, s.delta_t);
    Timestamp end = ev.back().t + 1;
    if (s.max_duration > 0) end = std::min(end, begin + s.max_duration);
    Timestamp cursor = begin;
    std::size_t i = 0;
    while (cursor < end && i < ev.size()) {
      const Timestamp limit = cursor + std::min(s.delta_t, end - cursor);
      std::size_t j = i;
      while (j < ev.size() && j - i < s.n_events && ev[j].t < limit) ++j;
      Bin b{i, j, cursor, limit};
      if (j - i == s.n_events) {
        b.end = ev[j - 1].t + 1;
        cursor = ev[j - 1].t;
      } else {
        cursor = limit;
      }
      bins.push_back(b);
      i = j;
    }
  }
  for (std::size_t k = 0; k * T < bins.size(); ++k) {
    Expected x{0, 0, std::vector<float>(frame * T, 0.0f)};
    for (int j = 0; j < T && k * T + j < bins.size(); ++j) {
      const Bin& b = bins[k * T + j];
      if (j == 0) x.start = b.begin;
      x.end = std::max(x.end, b.end);
      for (std::size_t e = b.first; e < b.last; ++e) add(x.frames, j, ev[e]);
    }
    out.push_back(std::move(x));
  }
  return out;
}

struct EpochResult {
  std::vector<std::vector<float>> batches;  // raw tensors
  std::vector<std::vector<ScheduleItem>> items;
  std::vector<std::string> warnings;
  std::uint64_t events = 0;
};

EpochResult run_epoch(const std::vector<std::filesystem::path>& paths, const std::vector<StreamPlan>& plans,
                      const StreamSlicing& slicing, int batch_size, int workers, const BatchShape& base,
                      StreamPadding padding = StreamPadding::zeros,
                      OnStreamError on_error = OnStreamError::raise,
                      std::function<StreamSourceFactory(StreamSourceFactory)> wrap = {}) {
  std::vector<std::uint64_t> items;
  std::vector<std::string> names;
  for (std::size_t i = 0; i < plans.size(); ++i) {
    items.push_back(plans[i].items);
    names.push_back(paths[i].string());
  }
  auto schedule = std::make_shared<StreamSchedule>(items, batch_size, padding);
  BatchShape shape = base;
  shape.batch_size = batch_size;
  StreamSourceFactory open = [=](int r) {
    return open_event_stream(paths[static_cast<std::size_t>(r)], memory_index(), slicing,
                             plans[static_cast<std::size_t>(r)], count_kernel(), shape);
  };
  if (wrap) open = wrap(open);
  auto filler = std::make_shared<StreamFiller>(schedule, open, nullptr, on_error, names);
  Engine engine(schedule->engine_schedule(), shape, filler, EngineOptions{workers, 2});
  EpochResult result;
  engine.start();
  while (auto batch = engine.next()) {
    result.batches.emplace_back(batch->data(), batch->data() + shape.elements());
    result.items.push_back(batch->items);
    for (auto& w : filler->take_warnings()) result.warnings.push_back(w);
  }
  result.events = filler->events_read();
  return result;
}

std::vector<StreamPlan> plan_all(const std::vector<std::filesystem::path>& paths, const StreamSlicing& s) {
  std::vector<StreamPlan> plans;
  for (const auto& r : plan_streams(paths, memory_index(), s, 2)) {
    EXPECT_EQ(r.error, "");
    plans.push_back(r.plan);
  }
  return plans;
}

// Checks every tensor of an epoch against the expected tensors of its recording, and that each tensor of
// each recording shows up exactly once, in order.
void check_epoch(const EpochResult& epoch, const std::vector<std::vector<Expected>>& expected,
                 const BatchShape& shape) {
  std::vector<std::uint64_t> next(expected.size(), 0);
  const std::size_t frame = shape.item_frame();
  for (std::size_t b = 0; b < epoch.batches.size(); ++b) {
    for (int slot = 0; slot < shape.batch_size; ++slot) {
      const ScheduleItem& it = epoch.items[b][static_cast<std::size_t>(slot)];
      std::vector<float> got(frame * shape.num_tbins);
      for (int t = 0; t < shape.num_tbins; ++t)
        std::copy_n(epoch.batches[b].data() + (static_cast<std::size_t>(t) * shape.batch_size + slot) * frame,
                    frame, got.data() + static_cast<std::size_t>(t) * frame);
      if (it.padding) {
        EXPECT_FALSE(it.keep_memory);
        EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](float v) { return v == 0.0f; }));
        continue;
      }
      const auto r = static_cast<std::size_t>(it.recording);
      ASSERT_LT(r, expected.size());
      ASSERT_EQ(static_cast<std::uint64_t>(it.entry), next[r]) << "recording " << r << " out of order";
      const Expected& x = expected[r][next[r]++];
      EXPECT_EQ(it.start, x.start) << "recording " << r << " tensor " << it.entry;
      EXPECT_EQ(it.duration, x.end - x.start) << "recording " << r << " tensor " << it.entry;
      EXPECT_EQ(it.keep_memory, it.entry > 0);
      EXPECT_EQ(got, x.frames) << "recording " << r << " tensor " << it.entry;
    }
  }
  for (std::size_t r = 0; r < expected.size(); ++r)
    EXPECT_EQ(next[r], expected[r].size()) << "recording " << r;
}

double total(const std::vector<std::vector<float>>& batches) {
  double sum = 0;
  for (const auto& b : batches)
    for (float v : b) sum += v;
  return sum;
}

void check_mode(const StreamSlicing& slicing, int workers) {
  std::vector<std::filesystem::path> paths;
  std::vector<std::vector<Expected>> expected;
  std::uint64_t in_range = 0;
  for (const auto& rec : recordings()) {
    paths.push_back(rec.path);
    expected.push_back(expected_tensors(rec.events, slicing));
    for (const auto& x : expected.back())
      for (float v : x.frames) in_range += static_cast<std::uint64_t>(v);
  }
  const auto plans = plan_all(paths, slicing);
  std::uint64_t planned = 0;
  for (std::size_t r = 0; r < plans.size(); ++r) {
    EXPECT_EQ(plans[r].items, expected[r].size()) << "recording " << r;
    EXPECT_EQ(plans[r].geometry, (Geometry{kW, kH}));
    planned += plans[r].events;
  }
  EXPECT_EQ(planned, in_range);
  const BatchShape shape{slicing.num_tbins, 2, 2, kH, kW};
  const auto epoch = run_epoch(paths, plans, slicing, 2, workers, shape);
  check_epoch(epoch, expected, shape);
  EXPECT_EQ(epoch.events, planned);
  EXPECT_EQ(total(epoch.batches), static_cast<double>(planned));  // every event once
}

TEST(StreamFiller, DeltaTModeMatchesTheEventsWindowByWindow) {
  StreamSlicing s;
  s.mode = SliceMode::delta_t;
  s.delta_t = 5000;
  s.num_tbins = 4;
  check_mode(s, 2);
  // Without max_duration every event of every recording is read.
  const auto plans = plan_all({recordings()[0].path, recordings()[1].path}, s);
  EXPECT_EQ(plans[0].events, recordings()[0].events.size());
  EXPECT_EQ(plans[1].events, recordings()[1].events.size());
  EXPECT_EQ(plans[0].begin % 20000, 0);
  s.max_duration = 33'333;  // cuts inside a window: that window keeps its length, without the later events
  check_mode(s, 0);
}

TEST(StreamFiller, NEventsModeCutsBinsByCount) {
  StreamSlicing s;
  s.mode = SliceMode::n_events;
  s.n_events = 700;
  s.num_tbins = 3;
  check_mode(s, 2);
  s.max_duration = 40'000;
  check_mode(s, 1);
}

TEST(StreamFiller, MixedModeCutsBinsByCountOrTime) {
  StreamSlicing s;
  s.mode = SliceMode::mixed;
  s.n_events = 150;
  s.delta_t = 2000;
  s.num_tbins = 5;
  check_mode(s, 2);
  // Both limits really occur (and the silent stretch of recording b gives empty time-limited bins).
  const auto x = expected_tensors(recordings()[1].events, s);
  std::size_t empty_bins = 0;
  for (const auto& t : x)
    for (int j = 0; j < s.num_tbins; ++j)
      empty_bins += std::all_of(t.frames.begin() + j * 2 * kH * kW, t.frames.begin() + (j + 1) * 2 * kH * kW,
                                [](float v) { return v == 0.0f; });
  EXPECT_GT(empty_bins, 10u);
  s.max_duration = 25'000;
  check_mode(s, 0);
}

TEST(StreamFiller, BatchesAreTheSameForAnyNumberOfWorkers) {
  StreamSlicing s;
  s.mode = SliceMode::mixed;
  s.n_events = 400;
  s.delta_t = 3000;
  s.num_tbins = 2;
  std::vector<std::filesystem::path> paths;
  for (const auto& rec : recordings()) paths.push_back(rec.path);
  const auto plans = plan_all(paths, s);
  const BatchShape shape{2, 2, 2, kH, kW};
  const auto ref = run_epoch(paths, plans, s, 2, 0, shape);
  for (int workers : {1, 3, 5}) {
    const auto other = run_epoch(paths, plans, s, 2, workers, shape);
    EXPECT_EQ(other.batches, ref.batches) << workers << " workers";
  }
  // 'data' padding: the slot that runs out restarts recordings from the head of the list.
  const auto data = run_epoch(paths, plans, s, 2, 3, shape, StreamPadding::data);
  const auto data0 = run_epoch(paths, plans, s, 2, 0, shape, StreamPadding::data);
  EXPECT_EQ(data.batches, data0.batches);
  for (const auto& items : data.items)
    for (const auto& it : items) EXPECT_FALSE(it.padding);
}

TEST(StreamFiller, DataModeRereadsARecordingFromItsStart) {
  StreamSlicing s;
  s.mode = SliceMode::n_events;
  s.n_events = 5000;
  s.num_tbins = 2;
  // b (9000 events: 1 tensor) runs out first; its slot restarts a (4 tensors) while slot 0 still reads a.
  const std::vector<std::filesystem::path> paths = {recordings()[0].path, recordings()[1].path};
  const auto plans = plan_all(paths, s);
  ASSERT_EQ(plans[0].items, 4u);
  ASSERT_EQ(plans[1].items, 1u);
  const BatchShape shape{2, 2, 2, kH, kW};
  const auto epoch = run_epoch(paths, plans, s, 2, 2, shape, StreamPadding::data);
  ASSERT_EQ(epoch.batches.size(), 4u);
  std::vector<std::vector<Expected>> expected = {expected_tensors(recordings()[0].events, s),
                                                 expected_tensors(recordings()[1].events, s)};
  const std::size_t frame = shape.item_frame();
  for (std::size_t b = 1; b < 4; ++b) {
    const ScheduleItem& it = epoch.items[b][1];
    ASSERT_EQ(it.recording, 0);
    ASSERT_EQ(it.entry, static_cast<int>(b - 1));
    EXPECT_EQ(it.keep_memory, b > 1);
    for (int t = 0; t < 2; ++t) {
      const float* got = epoch.batches[b].data() + (static_cast<std::size_t>(t) * 2 + 1) * frame;
      EXPECT_TRUE(std::equal(got, got + frame, expected[0][b - 1].frames.begin() + t * frame));
    }
  }
}

TEST(StreamFiller, AreaDownscalingAveragesSensorPixels) {
  StreamSlicing s;
  s.mode = SliceMode::delta_t;
  s.delta_t = 4000;
  s.num_tbins = 3;
  const std::vector<std::filesystem::path> paths = {recordings()[2].path};
  const auto plans = plan_all(paths, s);
  const auto expected = expected_tensors(recordings()[2].events, s);
  for (auto [h, w] : {std::pair{24, 32}, std::pair{20, 30}}) {
    const BatchShape shape{3, 1, 2, h, w};
    const auto epoch = run_epoch(paths, plans, s, 1, 2, shape);
    ASSERT_EQ(epoch.batches.size(), expected.size());
    for (std::size_t b = 0; b < expected.size(); ++b) {
      std::vector<float> want(shape.elements());
      area_resize(expected[b].frames.data(), kH, kW, want.data(), h, w, 3 * 2);
      EXPECT_EQ(epoch.batches[b], want) << h << "x" << w << " tensor " << b;
    }
    if (h ==
        24) {  // integer factors: each output pixel is the mean of 4, so the sum is a quarter of the events
      EXPECT_NEAR(total(epoch.batches) * 4, static_cast<double>(plans[0].events), 1e-3 * plans[0].events);
    }
  }
  // Larger than the sensor: refused, naming the file.
  const BatchShape big{3, 1, 2, kH * 2, kW};
  try {
    (void)open_event_stream(paths[0], memory_index(), s, plans[0], count_kernel(), big);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("c_evt2.raw"), std::string::npos);
  }
}

TEST(StreamFiller, NativeKernelsRunAtTheSensorSizeAndWiden) {
  // histo_quantized counts in uint8 and saturates at 15: the widened tensors are min(count, 15).
  StreamSlicing s;
  s.mode = SliceMode::n_events;
  s.n_events = 2000;
  s.num_tbins = 2;
  const std::vector<std::filesystem::path> paths = {recordings()[1].path};
  const auto plans = plan_all(paths, s);
  std::shared_ptr<const Preprocessor> kernel = make_preprocessor("histo_quantized");
  const BatchShape shape{2, 1, 2, kH, kW};
  auto schedule =
      std::make_shared<StreamSchedule>(std::vector<std::uint64_t>{plans[0].items}, 1, StreamPadding::zeros);
  auto filler = std::make_shared<StreamFiller>(
      schedule,
      [&](int) {
        return open_event_stream(
            paths[0], memory_index(), s, plans[0],
            [&](int h, int w) { return make_native_stream_kernel(kernel, 2, h, w); }, shape);
      },
      nullptr, OnStreamError::raise, std::vector<std::string>{paths[0].string()});
  Engine engine(schedule->engine_schedule(), shape, filler, EngineOptions{1, 2});
  engine.start();
  const auto expected = expected_tensors(recordings()[1].events, s);
  std::size_t k = 0;
  while (auto batch = engine.next()) {
    ASSERT_LT(k, expected.size());
    std::vector<float> want = expected[k++].frames;
    for (float& v : want) v = std::min(v, 15.0f);
    EXPECT_TRUE(std::equal(want.begin(), want.end(), batch->data()));
  }
  EXPECT_EQ(k, expected.size());
  // delta_t mode with a kernel whose bins are separable: made bin by bin (straight into the batch, or through
  // a one-bin scratch when downscaled), with the same values.
  StreamSlicing d;
  d.mode = SliceMode::delta_t;
  d.delta_t = 3000;
  d.num_tbins = 4;
  // Events on every bin edge, where an off-by-one in cutting the bins would show.
  static const Recording edges = [] {
    Recording r = write_recording("e_edges_evt3.raw", 6000, 9, 0);
    for (std::size_t i = 0; i < r.events.size(); ++i) r.events[i].t = static_cast<Timestamp>(i / 4) * 500;
    RawWriter w(r.path, RawEncoding::evt3, {kW, kH});
    w.write(r.events);
    return r;
  }();
  const std::vector<std::filesystem::path> dpaths = {edges.path};
  const auto dplans = plan_all(dpaths, d);
  const auto dexpected = expected_tensors(edges.events, d);
  for (auto [h, w] : {std::pair{kH, kW}, std::pair{24, 32}}) {
    const BatchShape dshape{4, 1, 2, h, w};
    auto dschedule = std::make_shared<StreamSchedule>(std::vector<std::uint64_t>{dplans[0].items}, 1,
                                                      StreamPadding::zeros);
    auto dfiller = std::make_shared<StreamFiller>(
        dschedule,
        [&](int) {
          return open_event_stream(
              dpaths[0], memory_index(), d, dplans[0],
              [&](int hh, int ww) { return make_native_stream_kernel(kernel, 2, hh, ww); }, dshape);
        },
        nullptr, OnStreamError::raise, std::vector<std::string>{dpaths[0].string()});
    Engine dengine(dschedule->engine_schedule(), dshape, dfiller, EngineOptions{2, 2});
    dengine.start();
    std::size_t n = 0;
    while (auto batch = dengine.next()) {
      ASSERT_LT(n, dexpected.size());
      std::vector<float> want = dexpected[n++].frames;
      for (float& v : want) v = std::min(v, 15.0f);
      std::vector<float> small(dshape.elements());
      area_resize(want.data(), kH, kW, small.data(), h, w, 4 * 2);
      EXPECT_TRUE(std::equal(small.begin(), small.end(), batch->data()))
          << h << "x" << w << " tensor " << n - 1;
    }
    EXPECT_EQ(n, dexpected.size());
  }
  // A kernel that refuses the channel count is refused when the stream opens.
  EXPECT_THROW((void)make_native_stream_kernel(kernel, 3, kH, kW), ConfigError);
}

// Runs `slicing` over a recording with a native kernel at batch size h x w; returns the epoch's tensors.
std::vector<std::vector<float>> native_epoch(const std::filesystem::path& path, const std::string& name,
                                             const StreamSlicing& slicing, int h, int w) {
  const std::vector<std::filesystem::path> paths = {path};
  const auto plans = plan_all(paths, slicing);
  std::shared_ptr<const Preprocessor> kernel = make_preprocessor(name);
  const int channels = preprocessor_channels(name);
  const BatchShape shape{slicing.num_tbins, 1, channels, h, w};
  auto schedule =
      std::make_shared<StreamSchedule>(std::vector<std::uint64_t>{plans[0].items}, 1, StreamPadding::zeros);
  auto filler = std::make_shared<StreamFiller>(
      schedule,
      [=](int) {
        return open_event_stream(
            paths[0], memory_index(), slicing, plans[0],
            [=](int hh, int ww) { return make_native_stream_kernel(kernel, channels, hh, ww); }, shape);
      },
      nullptr, OnStreamError::raise, std::vector<std::string>{paths[0].string()});
  Engine engine(schedule->engine_schedule(), shape, filler, EngineOptions{1, 2});
  engine.start();
  std::vector<std::vector<float>> out;
  while (auto batch = engine.next()) out.emplace_back(batch->data(), batch->data() + shape.elements());
  return out;
}

TEST(StreamFiller, DownscaledKernelsEqualTheAreaResizeOfTheFullSizeTensors) {
  // Bit for bit, with fractional values (histo adds 0.2, event cubes bilinear weights), whichever way the
  // frame is downscaled: sparse blocks for few events, the whole frame otherwise, the general INTER_AREA path
  // for non-integer factors.
  // Spots: 12 events in a 4x4 pixel square every 100 us (pixels hit once or twice), so that blocks hold
  // several values whose sum depends on the order of the additions.
  static const Recording spots = [] {
    Recording r{dir() / "f_spots_evt3.raw", {}};
    std::mt19937 rng(5);
    for (int i = 0; i < 150; ++i) {
      const int x0 = static_cast<int>(rng() % (kW / 4)) * 4, y0 = static_cast<int>(rng() % (kH / 4)) * 4;
      for (int k = 0; k < 12; ++k)
        r.events.push_back({static_cast<std::uint16_t>(x0 + rng() % 4),
                            static_cast<std::uint16_t>(y0 + rng() % 4), static_cast<std::int16_t>(rng() % 2),
                            static_cast<Timestamp>(i) * 100 + k});
    }
    RawWriter w(r.path, RawEncoding::evt3, {kW, kH});
    w.write(r.events);
    return r;
  }();
  for (const char* name : {"histo", "event_cube", "timesurface"}) {
    for (SliceMode mode : {SliceMode::mixed, SliceMode::delta_t}) {
      StreamSlicing s;
      s.mode = mode;
      s.delta_t = 100;  // one spot per bin: few enough events for the sparse resize
      s.n_events = mode == SliceMode::mixed ? 7 : 0;
      s.num_tbins = 3;
      const auto full = native_epoch(spots.path, name, s, kH, kW);
      const int channels = preprocessor_channels(name);
      for (auto [h, w] : {std::pair{24, 32}, std::pair{12, 16}, std::pair{16, 32}, std::pair{20, 30}}) {
        const auto small = native_epoch(spots.path, name, s, h, w);
        ASSERT_EQ(small.size(), full.size());
        for (std::size_t b = 0; b < full.size(); ++b) {
          std::vector<float> want(small[b].size());
          area_resize(full[b].data(), kH, kW, want.data(), h, w, static_cast<std::size_t>(3 * channels));
          ASSERT_EQ(small[b], want) << name << " " << h << "x" << w << " tensor " << b;
        }
      }
    }
  }
  // Dense bins (every pixel touched): the whole-frame path gives the same.
  StreamSlicing dense;
  dense.mode = SliceMode::n_events;
  dense.n_events = 20000;
  dense.num_tbins = 1;
  const auto full = native_epoch(recordings()[0].path, "histo", dense, kH, kW);
  const auto small = native_epoch(recordings()[0].path, "histo", dense, 24, 32);
  ASSERT_EQ(small.size(), full.size());
  for (std::size_t b = 0; b < full.size(); ++b) {
    std::vector<float> want(small[b].size());
    area_resize(full[b].data(), kH, kW, want.data(), 24, 32, 2);
    EXPECT_EQ(small[b], want);
  }
}

TEST(StreamFiller, KernelChannelsAreCheckedAtOpen) {
  std::shared_ptr<const Preprocessor> kernel = make_preprocessor("histo_quantized");
  EXPECT_THROW((void)make_native_stream_kernel(kernel, 3, kH, kW), ConfigError);
}

// Wraps a source so that recording `bad` throws at tensor `at`.
class FailingSource final : public StreamTensorSource {
 public:
  FailingSource(std::unique_ptr<StreamTensorSource> inner, std::uint64_t at)
      : inner_(std::move(inner)), at_(at) {}
  BinSpan read(std::uint64_t index, float* out, std::size_t t_stride) override {
    if (index == at_) {
      out[0] = 123.0f;  // half-written tensor: must not reach the batch
      throw FormatError("corrupt data at byte 4242");
    }
    return inner_->read(index, out, t_stride);
  }
  std::uint64_t events_read() const noexcept override { return inner_->events_read(); }

 private:
  std::unique_ptr<StreamTensorSource> inner_;
  std::uint64_t at_;
};

TEST(StreamFiller, AFailingRecordingRaisesNamingItOrIsSkippedWithoutDisturbingOthers) {
  StreamSlicing s;
  s.mode = SliceMode::delta_t;
  s.delta_t = 2000;
  s.num_tbins = 2;
  std::vector<std::filesystem::path> paths;
  for (const auto& rec : recordings()) paths.push_back(rec.path);
  const auto plans = plan_all(paths, s);
  const BatchShape shape{2, 2, 2, kH, kW};
  const auto fail_b = [](StreamSourceFactory inner) -> StreamSourceFactory {
    return [inner](int r) -> std::unique_ptr<StreamTensorSource> {
      auto src = inner(r);
      if (r == 1) return std::make_unique<FailingSource>(std::move(src), 3);
      return src;
    };
  };
  try {
    (void)run_epoch(paths, plans, s, 2, 2, shape, StreamPadding::zeros, OnStreamError::raise, fail_b);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("b_td.dat"), std::string::npos) << what;
    EXPECT_NE(what.find("tensor 3"), std::string::npos) << what;
    EXPECT_NE(what.find("byte 4242"), std::string::npos) << what;
  }
  const auto clean = run_epoch(paths, plans, s, 2, 2, shape);
  const auto skipped =
      run_epoch(paths, plans, s, 2, 2, shape, StreamPadding::zeros, OnStreamError::skip, fail_b);
  ASSERT_EQ(skipped.warnings.size(), 1u);
  EXPECT_NE(skipped.warnings[0].find("b_td.dat"), std::string::npos);
  ASSERT_EQ(skipped.batches.size(), clean.batches.size());
  const std::size_t frame = shape.item_frame();
  for (std::size_t b = 0; b < clean.batches.size(); ++b) {
    for (int slot = 0; slot < 2; ++slot) {
      const ScheduleItem& c = clean.items[b][static_cast<std::size_t>(slot)];
      const ScheduleItem& k = skipped.items[b][static_cast<std::size_t>(slot)];
      const bool lost = c.recording == 1 && c.entry >= 3;
      EXPECT_EQ(k.padding, lost || c.padding);
      for (int t = 0; t < 2; ++t) {
        const std::size_t off = (static_cast<std::size_t>(t) * 2 + static_cast<std::size_t>(slot)) * frame;
        const float* got = skipped.batches[b].data() + off;
        if (lost)
          EXPECT_TRUE(std::all_of(got, got + frame, [](float v) { return v == 0.0f; }));
        else
          EXPECT_TRUE(std::equal(got, got + frame, clean.batches[b].data() + off)) << "batch " << b;
      }
    }
  }
}

TEST(StreamFiller, PlansNameFilesThatCannotBeRead) {
  const auto garbage = dir() / "garbage_td.dat";
  {
    std::ofstream out(garbage, std::ios::binary);
    out << "% Height 48\n% Width 64\n% end\n" << char(99) << char(8) << std::string(64, '\x7f');
  }
  StreamSlicing s;
  s.mode = SliceMode::delta_t;
  s.delta_t = 1000;
  const auto results = plan_streams(
      {recordings()[0].path, garbage, dir() / "missing.raw", recordings()[2].path}, memory_index(), s, 3);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[0].error, "");
  EXPECT_EQ(results[3].error, "");
  EXPECT_EQ(results[1].error_kind, "format");
  EXPECT_NE(results[1].error.find("garbage_td.dat"), std::string::npos) << results[1].error;
  EXPECT_EQ(results[2].error_kind, "io");
  EXPECT_NE(results[2].error.find("missing.raw"), std::string::npos) << results[2].error;
  EXPECT_GT(results[0].plan.items, 0u);
}

TEST(StreamFiller, RealRecordingsAreReadWhole) {
  const auto real = test::real_data_dir();
  if (real.empty()) GTEST_SKIP() << "real recordings not found (../shared/data/real)";
  // Event counts from SOURCES.md.
  const std::vector<std::pair<std::string, std::uint64_t>> files = {{"evt3_gen41_expelliarmus.raw", 219596},
                                                                    {"evt2_gen3_faery.raw", 521252},
                                                                    {"evt2_gen3_faery_cd.dat", 521252},
                                                                    {"ncars_sample_td.dat", 2009}};
  std::vector<std::filesystem::path> paths;
  for (const auto& f : files) paths.push_back(real / f.first);
  for (SliceMode mode : {SliceMode::delta_t, SliceMode::n_events, SliceMode::mixed}) {
    StreamSlicing s;
    s.mode = mode;
    s.delta_t = 10'000;
    s.n_events = 20'000;
    s.num_tbins = 3;
    const auto plans = plan_all(paths, s);
    for (std::size_t i = 0; i < files.size(); ++i)
      EXPECT_EQ(plans[i].events, files[i].second) << files[i].first;
    // 90 x 160: an area factor of 8 for the Gen4.1 sensor, 16/3 for the VGA ones; the N-CARS file has no size
    // in its header and is read at the batch size. Counts survive up to the resize's rounding.
    const BatchShape shape{3, 2, 2, 90, 160};
    const auto epoch = run_epoch(paths, plans, s, 2, 2, shape);
    std::uint64_t expected_items = 0;
    for (const auto& p : plans) expected_items += p.items;
    std::uint64_t real_items = 0;
    for (const auto& items : epoch.items)
      for (const auto& it : items) real_items += !it.padding;
    EXPECT_EQ(real_items, expected_items);
    EXPECT_EQ(epoch.events, 219596u + 2 * 521252u + 2009u);
  }
}

#ifdef EVLOADER_WITH_HDF5
// A tensor file of `n` frames [2, kH, kW] whose values encode (frame, channel, pixel).
std::filesystem::path write_tensor_file(const std::string& name, int n, bool n_events,
                                        std::vector<float>& frames, std::vector<Timestamp>& last) {
  TensorFileInfo info;
  info.events_to_tensor = "histo";
  info.mode = n_events ? TensorMode::n_events : TensorMode::delta_t;
  info.delta_t = n_events ? 0 : 10'000;
  info.n_events = n_events ? 500 : 0;
  info.channels = 2;
  info.height = kH;
  info.width = kW;
  info.sensor = {kW, kH};
  if (!n_events) info.start_ts = 3'000'000;
  const std::size_t frame = 2u * kH * kW;
  frames.resize(frame * static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < frames.size(); ++i) frames[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f;
  last.clear();
  for (int f = 0; f < n; ++f) last.push_back(1000 + 333 * static_cast<Timestamp>(f));
  const auto path = dir() / name;
  TensorFileWriter w(path, info);
  w.write(frames, n_events ? std::span<const Timestamp>(last) : std::span<const Timestamp>());
  w.close();
  return path;
}

TEST(StreamFiller, TensorFilesStreamEveryFrameIncludingTheLastBlock) {
  std::vector<float> frames;
  std::vector<Timestamp> last;
  const std::size_t frame = 2u * kH * kW;
  for (bool n_events : {false, true}) {
    const auto path = write_tensor_file(n_events ? "t_nev.h5" : "t_dt.h5", 7, n_events, frames, last);
    StreamSlicing s;
    s.mode = n_events ? SliceMode::n_events : SliceMode::delta_t;
    s.delta_t = n_events ? 0 : 10'000;
    s.n_events = n_events ? 500 : 0;
    s.num_tbins = 3;
    const TensorStreamRequest request{"histo", 2, kH, kW};
    const StreamPlan plan = plan_tensor_stream(path, s, request);
    ASSERT_EQ(plan.items, 3u);  // 3 + 3 + 1 frames: metavision's HDF5Iterator would give 2
    for (auto [h, w] : {std::pair{kH, kW}, std::pair{24, 32}}) {
      const BatchShape shape{3, 1, 2, h, w};
      auto source = open_tensor_stream(path, s, plan, shape);
      std::vector<float> out(shape.elements());
      for (std::uint64_t k = 0; k < 3; ++k) {
        const BinSpan span = source->read(k, out.data(), shape.item_frame());
        for (int t = 0; t < 3; ++t) {
          const auto f = static_cast<std::size_t>(k * 3 + static_cast<std::uint64_t>(t));
          std::vector<float> want(shape.item_frame(), 0.0f);
          if (f < 7) area_resize(frames.data() + f * frame, kH, kW, want.data(), h, w, 2);
          EXPECT_TRUE(
              std::equal(want.begin(), want.end(), out.begin() + t * static_cast<long>(shape.item_frame())))
              << "tensor " << k << " frame " << t;
        }
        if (n_events) {
          EXPECT_EQ(span.begin, k == 0 ? 0 : last[k * 3 - 1]);
          EXPECT_EQ(span.end, last[std::min<std::size_t>(k * 3 + 2, 6)] + 1);
        } else {
          EXPECT_EQ(span.begin, 3'000'000 + static_cast<Timestamp>(k) * 30'000);
          EXPECT_EQ(span.end - span.begin, 30'000);
        }
      }
    }
    // What does not match is refused, naming the file.
    StreamSlicing other = s;
    if (n_events)
      other.n_events = 400;
    else
      other.delta_t = 5'000;
    EXPECT_THROW((void)plan_tensor_stream(path, other, request), ConfigError);
    EXPECT_THROW((void)plan_tensor_stream(path, s, TensorStreamRequest{"diff", 1, kH, kW}), ConfigError);
    StreamSlicing mixed = s;
    mixed.mode = SliceMode::mixed;
    mixed.delta_t = 10'000;
    mixed.n_events = 500;
    try {
      (void)plan_tensor_stream(path, mixed, request);
      FAIL() << "mixed mode accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(path.filename().string()), std::string::npos);
    }
  }
  // max_duration cuts a delta_t file at whole frames.
  const auto path = write_tensor_file("t_dt2.h5", 7, false, frames, last);
  StreamSlicing s;
  s.mode = SliceMode::delta_t;
  s.delta_t = 10'000;
  s.num_tbins = 2;
  s.max_duration = 25'000;
  const StreamPlan plan = plan_tensor_stream(path, s, TensorStreamRequest{"histo", 2, 0, 0});
  EXPECT_EQ(plan.bins, 3u);
  EXPECT_EQ(plan.items, 2u);
  EXPECT_EQ(plan.end, 3'030'000);
}
#endif

}  // namespace
}  // namespace evloader
