// SPDX-License-Identifier: Apache-2.0
// The batch engine under concurrency (meant for ThreadSanitizer builds, fast in Release): real slot sources
// on small generated recordings and a tensor file, 1 to 8 workers, early stops and restarts, exceptions from
// the label callback and from the sources at various batches, engines created and destroyed in a loop with
// batches still held after the engine is gone. Every batch is checked against tensors computed from the event
// vectors.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/dat.hpp"
#include "evloader/io/raw_writer.hpp"
#include "evloader/loader/engine.hpp"
#include "evloader/loader/slot_filler.hpp"
#include "evloader/loader/sources.hpp"
#include "evloader/loader/stream_filler.hpp"
#include "evloader/preprocess/preprocessor.hpp"
#ifdef EVLOADER_WITH_HDF5
#include "evloader/preprocess/tensor_file.hpp"
#endif
#include "support/event_gen.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

constexpr int kW = 32;
constexpr int kH = 24;
constexpr int kT = 4;
constexpr int kC = 2;                  // histo
constexpr Timestamp kDeltaT = 10'000;  // µs per bin
constexpr Timestamp kTensorOrigin = 5'000;
constexpr int kTensorFrames = 23;

// The recordings every test reads: three event files (EVT3, EVT2, DAT) and, with HDF5, a tensor file.
struct Dataset {
  std::vector<std::filesystem::path> paths;
  std::vector<std::vector<EventCD>> events;  // empty for the tensor file
  std::vector<bool> tensor_file;
  std::vector<ScheduleRecording> spans;
};

float tensor_value(std::int64_t frame, int c, int y, int x) {
  return static_cast<float>((frame * 7 + c * 3 + y * 5 + x) % 17) / 16.0f;
}

const Dataset& dataset() {
  static const Dataset d = [] {
    Dataset out;
    const auto dir = test::temp_dir() / "engine_stress";
    std::filesystem::create_directories(dir);
    test::StreamShape shape;
    shape.width = kW;
    shape.height = kH;
    shape.max_gap_us = 1200;
    const auto add_events = [&](const std::string& name, std::size_t n, std::uint32_t seed) {
      auto events = test::random_events(n, seed, shape);
      const auto path = dir / name;
      if (path.extension() == ".dat") {
        DatWriter w(path, {kW, kH});
        w.write(events);
      } else {
        RawWriter w(path, name.find("evt2") != std::string::npos ? RawEncoding::evt2 : RawEncoding::evt3,
                    {kW, kH});
        w.write(events);
      }
      out.paths.push_back(path);
      out.spans.push_back({0, events.back().t + 1});
      out.events.push_back(std::move(events));
      out.tensor_file.push_back(false);
    };
    add_events("a_evt3.raw", 4000, 11);
    add_events("b_evt2.raw", 3000, 12);
    add_events("c_td.dat", 3500, 13);
#ifdef EVLOADER_WITH_HDF5
    const auto path = dir / "d_histo.h5";
    TensorFileInfo info;
    info.events_to_tensor = "histo";
    info.mode = TensorMode::delta_t;
    info.delta_t = static_cast<std::uint32_t>(kDeltaT);
    info.channels = kC;
    info.height = kH;
    info.width = kW;
    info.sensor = {kW, kH};
    info.start_ts = kTensorOrigin;
    std::vector<float> frames;
    for (int f = 0; f < kTensorFrames; ++f)
      for (int c = 0; c < kC; ++c)
        for (int y = 0; y < kH; ++y)
          for (int x = 0; x < kW; ++x) frames.push_back(tensor_value(f, c, y, x));
    TensorFileWriter w(path, info);
    w.write(frames);
    w.close();
    out.paths.push_back(path);
    out.spans.push_back({kTensorOrigin, kTensorOrigin + kTensorFrames * kDeltaT});
    out.events.emplace_back();
    out.tensor_file.push_back(true);
#endif
    return out;
  }();
  return d;
}

std::shared_ptr<const Preprocessor> histo() {
  static const std::shared_ptr<const Preprocessor> p = make_preprocessor("histo");
  return p;
}

std::shared_ptr<const Schedule> make_schedule(int max_consecutive_batch = 0, bool shuffle = false,
                                              std::uint64_t seed = 0) {
  ScheduleOptions o;
  o.delta_t = kDeltaT;
  o.num_tbins = kT;
  o.batch_size = 3;
  o.padding = true;
  o.max_consecutive_batch = max_consecutive_batch;
  o.shuffle = shuffle;
  o.seed = seed;
  return std::make_shared<Schedule>(dataset().spans, o);
}

BatchShape shape_of(const Schedule& s) { return {kT, s.batch_size(), kC, kH, kW}; }

// The frames of one item, [T, C, H, W], from the event vectors or the tensor formula (not from the readers).
std::vector<float> expected_item(const ScheduleItem& item) {
  const std::size_t frame = static_cast<std::size_t>(kC) * kH * kW;
  std::vector<float> out(frame * kT, 0.0f);
  if (item.padding) return out;
  const Dataset& d = dataset();
  const auto r = static_cast<std::size_t>(item.recording);
  if (d.tensor_file[r]) {
    const std::int64_t first = (item.start - kTensorOrigin) / kDeltaT;
    const std::int64_t end = (item.start + item.duration - kTensorOrigin) / kDeltaT;
    for (std::int64_t t = 0; t < kT; ++t)
      if (first + t < end && first + t < kTensorFrames)
        for (int c = 0; c < kC; ++c)
          for (int y = 0; y < kH; ++y)
            for (int x = 0; x < kW; ++x)
              out[((static_cast<std::size_t>(t) * kC + c) * kH + y) * kW + x] =
                  tensor_value(first + t, c, y, x);
    return out;
  }
  std::vector<EventCD> window;
  for (EventCD e : d.events[r])
    if (e.t >= item.start && e.t < item.start + item.duration) {
      e.t -= item.start;
      window.push_back(e);
    }
  histo()->run(window, TensorView(out.data(), {kT, kC, kH, kW}), item.duration, 0, true);
  return out;
}

// Every batch of a schedule, as the engine must produce it (frames of item (t, slot) at offset (t * N +
// slot)).
std::vector<std::vector<float>> expected_batches(const Schedule& s) {
  const BatchShape shape = shape_of(s);
  const std::size_t frame = shape.item_frame();
  std::vector<std::vector<float>> out;
  for (std::size_t b = 0; b < s.num_batches(); ++b) {
    std::vector<float> batch(shape.elements());
    for (int slot = 0; slot < shape.batch_size; ++slot) {
      const auto item = expected_item(s.at(b, slot));
      for (int t = 0; t < kT; ++t)
        std::copy_n(item.data() + static_cast<std::size_t>(t) * frame, frame,
                    batch.data() + (static_cast<std::size_t>(t) * shape.batch_size + slot) * frame);
    }
    out.push_back(std::move(batch));
  }
  return out;
}

// A schedule with its expected batches, computed once per test binary.
struct Reference {
  std::shared_ptr<const Schedule> schedule;
  std::vector<std::vector<float>> batches;
};

const Reference& reference(int variant = 0) {
  static const std::vector<Reference> refs = [] {
    std::vector<Reference> out;
    for (auto s : {make_schedule(), make_schedule(2, true, 7), make_schedule(3, false)})
      out.push_back({s, expected_batches(*s)});
    return out;
  }();
  return refs.at(static_cast<std::size_t>(variant));
}

// Faults injected into the sources and the label callback, matched by what an item is (never by timing), so
// that the failing batch is known in advance.
struct Faults {
  std::atomic<int> open_recording{-1};  // the factory throws for this recording
  std::atomic<int> read_recording{-1};  // read() throws for this recording at read_start ...
  std::atomic<Timestamp> read_start{-1};
  std::atomic<bool> read_after{false};  // ... after the real read (the source has moved on) or before
  std::atomic<long> label_batch{-1};    // the label callback throws at (label_batch, label_slot)
  std::atomic<int> label_slot{0};

  void clear() {
    open_recording = -1;
    read_recording = -1;
    read_start = -1;
    label_batch = -1;
  }
};

class FaultySource final : public TensorSource {
 public:
  FaultySource(std::unique_ptr<TensorSource> inner, int recording, std::shared_ptr<Faults> faults)
      : inner_(std::move(inner)), recording_(recording), faults_(std::move(faults)) {}
  void read(Timestamp start, Timestamp duration, float* out, std::size_t t_stride) override {
    const bool fail = faults_->read_recording == recording_ && faults_->read_start == start;
    const bool after = faults_->read_after;
    if (fail && !after) throw FormatError("injected read failure before reading " + where(start));
    inner_->read(start, duration, out, t_stride);
    if (fail) throw FormatError("injected read failure after reading " + where(start));
  }

 private:
  std::string where(Timestamp start) const {
    return "recording " + std::to_string(recording_) + " at " + std::to_string(start);
  }
  std::unique_ptr<TensorSource> inner_;
  int recording_;
  std::shared_ptr<Faults> faults_;
};

TensorSourceFactory real_sources(const BatchShape& shape, std::shared_ptr<Faults> faults,
                                 IndexStorage storage = IndexStorage::memory) {
  return [shape, faults, storage](int r) -> std::unique_ptr<TensorSource> {
    if (faults->open_recording == r) throw IoError("injected open failure of recording " + std::to_string(r));
    const Dataset& d = dataset();
    const auto& path = d.paths.at(static_cast<std::size_t>(r));
    std::unique_ptr<TensorSource> inner;
    if (d.tensor_file[static_cast<std::size_t>(r)]) {
      inner = open_tensor_file_source(path, kDeltaT, shape);
    } else {
      ReaderOptions options;
      options.index_storage = storage;
      inner = open_event_source(path, options, histo(), 0, shape);
    }
    return std::make_unique<FaultySource>(std::move(inner), r, faults);
  };
}

// Labels derived from the item only: the start time and recording as an opaque value, every third bin
// (in the recording's clock) labeled.
std::int64_t label_value(const ScheduleItem& item) { return item.recording * 1'000'000'000LL + item.start; }
bool bin_labeled(const ScheduleItem& item, int t) {
  return !item.padding && ((item.start / kDeltaT) + t) % 3 == 0;
}

LabelFunction labels(std::shared_ptr<Faults> faults) {
  return [faults](const ScheduleItem& item, int slot, Batch& batch) {
    if (faults->label_batch == static_cast<long>(batch.index()) && faults->label_slot == slot)
      throw std::runtime_error("injected label failure at batch " + std::to_string(batch.index()) + " slot " +
                               std::to_string(slot));
    const int n = batch.shape().batch_size;
    for (int t = 0; t < batch.shape().num_tbins; ++t)
      batch.frame_is_labeled[static_cast<std::size_t>(t * n + slot)] = bin_labeled(item, t);
    batch.labels[static_cast<std::size_t>(slot)] =
        item.padding ? nullptr : std::make_shared<std::int64_t>(label_value(item));
  };
}

// Checks a batch against the reference: index, items, frames, labels and the labeled-frame mask.
void check_batch(const Reference& ref, Batch& batch, std::size_t expected_index) {
  ASSERT_EQ(batch.index(), expected_index);
  ASSERT_LT(expected_index, ref.batches.size());
  const auto& want = ref.batches[expected_index];
  ASSERT_EQ(batch.shape().elements(), want.size());
  EXPECT_TRUE(std::equal(want.begin(), want.end(), batch.data())) << "frames of batch " << expected_index;
  const int n = batch.shape().batch_size;
  for (int slot = 0; slot < n; ++slot) {
    const ScheduleItem item = ref.schedule->at(expected_index, slot);
    const auto s = static_cast<std::size_t>(slot);
    EXPECT_EQ(batch.items[s].start, item.start);
    EXPECT_EQ(batch.items[s].recording, item.recording);
    if (item.padding) {
      EXPECT_EQ(batch.labels[s], nullptr);
    } else {
      ASSERT_NE(batch.labels[s], nullptr);
      EXPECT_EQ(*std::static_pointer_cast<std::int64_t>(batch.labels[s]), label_value(item));
    }
    for (int t = 0; t < kT; ++t)
      EXPECT_EQ(batch.frame_is_labeled[static_cast<std::size_t>(t * n + slot)], bin_labeled(item, t) ? 1 : 0);
  }
}

struct SlotLoader {
  std::shared_ptr<Faults> faults = std::make_shared<Faults>();
  std::shared_ptr<SlotFiller> filler;
  std::unique_ptr<Engine> engine;

  SlotLoader(const Reference& ref, int workers, int prefetch, IndexStorage storage = IndexStorage::memory) {
    const BatchShape shape = shape_of(*ref.schedule);
    filler =
        std::make_shared<SlotFiller>(shape.batch_size, real_sources(shape, faults, storage), labels(faults));
    engine = std::make_unique<Engine>(ref.schedule, shape, filler, EngineOptions{workers, prefetch});
  }
};

// Reads batches from `first` to the end of the epoch, checking each; returns how many.
std::size_t read_rest(const Reference& ref, Engine& engine, std::size_t first) {
  std::size_t b = first;
  while (auto batch = engine.next()) {
    check_batch(ref, *batch, b);
    ++b;
  }
  EXPECT_EQ(b, ref.batches.size());
  return b - first;
}

// next() where a batch must come: fails the test (GoogleTest reports the exception) rather than dereferencing
// nullptr.
std::shared_ptr<Batch> next_batch(Engine& engine) {
  auto batch = engine.next();
  if (!batch) throw std::logic_error("the epoch ended early");
  return batch;
}

constexpr int kWorkers[] = {0, 1, 2, 4, 8};

TEST(EngineStress, RealSourcesGiveTheExpectedBatchesForAnyNumberOfWorkers) {
  for (int variant = 0; variant < 3; ++variant) {
    const Reference& ref = reference(variant);
    ASSERT_GE(ref.batches.size(), 6u);
    for (int workers : kWorkers) {
      SCOPED_TRACE(testing::Message() << "variant " << variant << ", " << workers << " workers");
      SlotLoader loader(ref, workers, 1 + workers % 3);
      for (int epoch = 0; epoch < 2; ++epoch) {  // the second epoch reuses the open streams and buffers
        loader.engine->start();
        read_rest(ref, *loader.engine, 0);
      }
      EXPECT_LE(loader.engine->pool().allocated(), static_cast<std::size_t>(1 + workers % 3) + 2);
    }
  }
}

TEST(EngineStress, BatchesHeldByTheConsumerKeepTheirContent) {
  const Reference& ref = reference(1);
  for (int workers : {1, 4, 8}) {
    SlotLoader loader(ref, workers, 1);
    loader.engine->start();
    std::vector<std::shared_ptr<Batch>> held;
    while (auto batch = loader.engine->next()) held.push_back(batch);
    ASSERT_EQ(held.size(), ref.batches.size());
    loader.engine->start();  // a second epoch must not write into buffers still held
    read_rest(ref, *loader.engine, 0);
    for (std::size_t b = 0; b < held.size(); ++b) check_batch(ref, *held[b], b);
  }
}

TEST(EngineStress, StopsEarlyAndStartsAgainFromAnotherBatch) {
  const Reference& ref = reference(2);
  const std::size_t total = ref.batches.size();
  for (int workers : kWorkers) {
    for (std::size_t taken = 0; taken < 4; ++taken) {
      SCOPED_TRACE(testing::Message() << workers << " workers, stop after " << taken << " batches");
      SlotLoader loader(ref, workers, 2);
      Engine& engine = *loader.engine;
      engine.start();
      for (std::size_t b = 0; b < taken; ++b) {
        auto batch = engine.next();
        ASSERT_NE(batch, nullptr);
        check_batch(ref, *batch, b);
      }
      engine.stop();
      EXPECT_EQ(engine.next(), nullptr);  // stopped: nothing more until start()
      engine.stop();                      // idempotent
      const std::size_t first = (taken * 3 + 1) % total;
      engine.start(first);
      read_rest(ref, engine, first);
      // Backwards, without stopping first (start() stops the running epoch), then again after a few batches.
      engine.start(taken);
      for (std::size_t b = taken; b < std::min(total, taken + 2); ++b)
        check_batch(ref, *next_batch(engine), b);
      engine.start(0);
      read_rest(ref, engine, 0);
      engine.start(total);  // past the end: an empty epoch
      EXPECT_EQ(engine.next(), nullptr);
    }
  }
}

TEST(EngineStress, DestroyedMidEpochWhileWorkersFill) {
  const Reference& ref = reference(0);
  for (int workers : kWorkers) {
    for (std::size_t taken : {0u, 1u, 3u}) {
      SCOPED_TRACE(testing::Message() << workers << " workers, destroyed after " << taken << " batches");
      std::shared_ptr<Batch> last;
      {
        SlotLoader loader(ref, workers, 3);
        loader.engine->start(taken % 2);
        for (std::size_t b = 0; b < taken; ++b) last = loader.engine->next();
      }
      if (taken > 0) {
        ASSERT_NE(last, nullptr);
        check_batch(ref, *last, taken % 2 + taken - 1);  // outlives its engine, filler and sources
      }
    }
  }
}

// Items of a schedule that are not padding: (batch, slot) in batch order.
std::vector<std::pair<std::size_t, int>> data_items(const Schedule& s) {
  std::vector<std::pair<std::size_t, int>> out;
  for (std::size_t b = 0; b < s.num_batches(); ++b)
    for (int slot = 0; slot < s.batch_size(); ++slot)
      if (!s.at(b, slot).padding) out.emplace_back(b, slot);
  return out;
}

// Reads up to the batch that must fail, checks the error reaches next() there, then that the engine reads a
// whole epoch (and a partial one from `failing`) once the fault is gone.
template <class E>
void expect_failure_at(const Reference& ref, SlotLoader& loader, std::size_t failing,
                       const std::string& what) {
  Engine& engine = *loader.engine;
  engine.start();
  for (std::size_t b = 0; b < failing; ++b) {
    auto batch = engine.next();
    ASSERT_NE(batch, nullptr) << "batch " << b;
    check_batch(ref, *batch, b);
  }
  try {
    (void)engine.next();
    ADD_FAILURE() << "no exception at batch " << failing;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
  EXPECT_EQ(engine.next(), nullptr);  // the epoch ended with the error
  loader.faults->clear();
  engine.start(failing);
  read_rest(ref, engine, failing);
  engine.start();
  read_rest(ref, engine, 0);
}

TEST(EngineStress, LabelCallbackErrorsReachNextAtTheirBatch) {
  const Reference& ref = reference(0);
  const std::size_t total = ref.batches.size();
  for (int workers : kWorkers) {
    for (std::size_t failing : {std::size_t{0}, std::size_t{2}, total / 2, total - 1}) {
      const int slot = static_cast<int>(failing % 3);
      SCOPED_TRACE(testing::Message() << workers << " workers, label failure at batch " << failing);
      SlotLoader loader(ref, workers, 2);
      loader.faults->label_batch = static_cast<long>(failing);
      loader.faults->label_slot = slot;
      expect_failure_at<std::runtime_error>(
          ref, loader, failing,
          "injected label failure at batch " + std::to_string(failing) + " slot " + std::to_string(slot));
    }
  }
}

TEST(EngineStress, SourceErrorsReachNextAtTheirBatch) {
  const Reference& ref = reference(1);
  const auto items = data_items(*ref.schedule);
  ASSERT_GE(items.size(), 8u);
  int round = 0;
  for (int workers : kWorkers) {
    for (std::size_t k : {std::size_t{0}, items.size() / 3, items.size() / 2, items.size() - 1}) {
      const auto [failing, slot] = items[k];
      const ScheduleItem item = ref.schedule->at(failing, slot);
      SCOPED_TRACE(testing::Message() << workers << " workers, read failure at batch " << failing);
      SlotLoader loader(ref, workers, 1 + round % 3);
      loader.faults->read_recording = item.recording;
      loader.faults->read_start = item.start;
      loader.faults->read_after = round++ % 2 == 1;
      expect_failure_at<FormatError>(
          ref, loader, failing,
          "recording " + std::to_string(item.recording) + " at " + std::to_string(item.start));
    }
  }
}

TEST(EngineStress, SourceOpenErrorsReachNextAtTheFirstBatchOfTheRecording) {
  const Reference& ref = reference(2);
  for (int workers : kWorkers) {
    for (int r = 0; r < static_cast<int>(dataset().paths.size()); ++r) {
      std::size_t failing = ref.batches.size();
      for (std::size_t b = 0; b < ref.batches.size() && failing == ref.batches.size(); ++b)
        for (int slot = 0; slot < ref.schedule->batch_size(); ++slot)
          if (ref.schedule->at(b, slot).recording == r) failing = b;
      ASSERT_LT(failing, ref.batches.size());
      SCOPED_TRACE(testing::Message() << workers << " workers, recording " << r << " cannot be opened");
      SlotLoader loader(ref, workers, 2);
      loader.faults->open_recording = r;
      expect_failure_at<IoError>(ref, loader, failing,
                                 "injected open failure of recording " + std::to_string(r));
    }
  }
}

TEST(EngineStress, SlotLoadersCreatedAndDestroyedInALoop) {
  std::mt19937 rng(2024);
  std::vector<std::shared_ptr<Batch>> held;  // batches kept past their engine
  std::vector<std::pair<int, std::size_t>> held_refs;
  for (int i = 0; i < 50; ++i) {
    const int variant = i % 3;
    const Reference& ref = reference(variant);
    const int workers = kWorkers[rng() % 5];
    const int prefetch = 1 + static_cast<int>(rng() % 3);
    // Sidecar indexes now and then: slots opening the same recording at once race to write its index.
    const IndexStorage storage = i % 5 == 4 ? IndexStorage::sidecar : IndexStorage::memory;
    SCOPED_TRACE(testing::Message() << "iteration " << i << ", " << workers << " workers");
    SlotLoader loader(ref, workers, prefetch, storage);
    const std::size_t first = rng() % 2 == 0 ? 0 : rng() % ref.batches.size();
    loader.engine->start(first);
    switch (i % 4) {
      case 0: read_rest(ref, *loader.engine, first); break;
      case 1:  // destroyed mid-epoch
        for (std::size_t b = first; b < std::min(ref.batches.size(), first + rng() % 4); ++b)
          check_batch(ref, *next_batch(*loader.engine), b);
        break;
      case 2: break;  // destroyed right after start(), workers busy
      case 3:         // batches kept by the consumer after the engine is gone
        for (std::size_t b = first; b < std::min(ref.batches.size(), first + 1 + rng() % 3); ++b) {
          held.push_back(loader.engine->next());
          held_refs.emplace_back(variant, b);
        }
        break;
    }
  }
  ASSERT_FALSE(held.empty());
  for (std::size_t k = 0; k < held.size(); ++k) {
    ASSERT_NE(held[k], nullptr);
    check_batch(reference(held_refs[k].first), *held[k], held_refs[k].second);
  }
}

// Holds every fill until released, so that an engine can be stopped while fills are running.
class GatedFiller final : public ItemFiller {
 public:
  void fill(const ScheduleItem& /*item*/, int slot, Batch& batch) override {
    {
      std::unique_lock lock(mutex_);
      ++waiting_;
      changed_.notify_all();
      changed_.wait(lock, [&] { return open_; });
    }
    for (int t = 0; t < batch.shape().num_tbins; ++t)
      std::fill_n(batch.data() + batch.offset(t, slot), batch.shape().item_frame(), 1.0f);
  }
  bool wait_for_a_fill() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::seconds(20), [&] { return waiting_ > 0; });
  }
  void release() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int waiting_ = 0;
  bool open_ = false;
};

TEST(EngineStress, StopFromOtherThreadsWhileNextWaitsOrFills) {
  const Reference& ref = reference(0);
  for (int workers : kWorkers) {
    SCOPED_TRACE(testing::Message() << workers << " workers");
    auto filler = std::make_shared<GatedFiller>();
    Engine engine(ref.schedule, shape_of(*ref.schedule), filler, {workers, 2});
    engine.start();
    std::shared_ptr<Batch> got;
    // Without workers the consumer's own thread fills; with workers it waits for them.
    std::thread consumer([&] { got = engine.next(); });
    ASSERT_TRUE(filler->wait_for_a_fill());
    // Two stops at once, while a fill is held: each returns, neither joins a thread twice, and the batch the
    // consumer (or a worker) is filling is not freed under it.
    std::thread stop1([&] { engine.stop(); });
    std::thread stop2([&] { engine.stop(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    filler->release();
    stop1.join();
    stop2.join();
    consumer.join();
    if (got) {  // only when it was complete before the stops took effect
      EXPECT_EQ(got->index(), 0u);
    }
    EXPECT_EQ(engine.next(), nullptr);
    engine.start();
    std::size_t n = 0;
    while (auto batch = engine.next()) {
      EXPECT_EQ(batch->index(), n++);
      EXPECT_EQ(batch->data()[batch->shape().elements() - 1], 1.0f);
    }
    EXPECT_EQ(n, ref.batches.size());
  }
}

TEST(EngineStress, ShapesTooLargeToAddressAreRefused) {
  const Reference& ref = reference(0);
  const int n = ref.schedule->batch_size();
  // 2 x (2^31-1)^2 floats per frame: the element count wraps size_t (and would give a small buffer).
  for (const BatchShape& shape :
       {BatchShape{kT, n, 2, 2147483647, 2147483647}, BatchShape{kT, n, 1, 2147483647, 2147483647},
        BatchShape{kT, n, -1, kH, kW}}) {
    EXPECT_THROW(Engine(ref.schedule, shape, std::make_shared<GatedFiller>(), {2, 2}), ConfigError);
  }
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizedAllocator = true;  // their operator new aborts rather than throw std::bad_alloc
#else
constexpr bool kSanitizedAllocator = false;
#endif

TEST(EngineStress, ABatchThatCannotBeAllocatedIsAnErrorAtNext) {
  if (kSanitizedAllocator) GTEST_SKIP() << "ASan and TSan abort on a failed operator new";
  const Reference& ref = reference(0);
  // 3 x 2^48 bytes: more than the 47-bit address space, so the allocation fails even with overcommit.
  const BatchShape huge{kT, ref.schedule->batch_size(), 1, 1 << 22, 1 << 22};
  for (int workers : kWorkers) {
    SCOPED_TRACE(testing::Message() << workers << " workers");
    Engine engine(ref.schedule, huge, std::make_shared<GatedFiller>(), {workers, 2});
    for (int epoch = 0; epoch < 2; ++epoch) {  // on a worker thread this used to terminate the process
      engine.start();
      EXPECT_THROW((void)engine.next(), std::bad_alloc);
      EXPECT_EQ(engine.next(), nullptr);
    }
  }
}

// --- The streaming loader's filler on the same event files -------------------------------------------------

struct StreamSetup {
  std::vector<std::filesystem::path> paths;
  std::vector<StreamPlan> plans;
  StreamSlicing slicing;
  std::shared_ptr<const StreamSchedule> schedule;
  BatchShape shape;
  std::vector<std::vector<float>> reference;  // from a run without workers
};

// Fails tensor `index` of recording `recording` (matched by what is read, not by timing).
struct StreamFaults {
  std::atomic<int> recording{-1};
  std::atomic<std::uint64_t> index{0};
};

class FaultyStream final : public StreamTensorSource {
 public:
  FaultyStream(std::unique_ptr<StreamTensorSource> inner, int recording, std::shared_ptr<StreamFaults> faults)
      : inner_(std::move(inner)), recording_(recording), faults_(std::move(faults)) {}
  BinSpan read(std::uint64_t index, float* out, std::size_t t_stride) override {
    if (faults_->recording == recording_ && faults_->index == index)
      throw FormatError("injected stream failure at tensor " + std::to_string(index));
    return inner_->read(index, out, t_stride);
  }
  [[nodiscard]] std::uint64_t events_read() const noexcept override { return inner_->events_read(); }

 private:
  std::unique_ptr<StreamTensorSource> inner_;
  int recording_;
  std::shared_ptr<StreamFaults> faults_;
};

struct StreamLoader {
  std::shared_ptr<StreamFaults> faults = std::make_shared<StreamFaults>();
  std::shared_ptr<StreamFiller> filler;
  std::unique_ptr<Engine> engine;

  StreamLoader(const StreamSetup& s, int workers, int prefetch,
               OnStreamError on_error = OnStreamError::raise) {
    std::vector<std::string> names;
    for (const auto& p : s.paths) names.push_back(p.string());
    StreamKernelFactory kernel = [](int h, int w) { return make_native_stream_kernel(histo(), kC, h, w); };
    ReaderOptions options;
    options.index_storage = IndexStorage::memory;
    StreamSourceFactory open = [setup = &s, kernel, options, f = faults](int r) {
      const auto i = static_cast<std::size_t>(r);
      return std::make_unique<FaultyStream>(
          open_event_stream(setup->paths[i], options, setup->slicing, setup->plans[i], kernel, setup->shape),
          r, f);
    };
    filler = std::make_shared<StreamFiller>(s.schedule, open, nullptr, on_error, names);
    engine = std::make_unique<Engine>(s.schedule->engine_schedule(), s.shape, filler,
                                      EngineOptions{workers, prefetch});
  }
};

const StreamSetup& stream_setup() {
  static const StreamSetup setup = [] {
    StreamSetup s;
    for (std::size_t r = 0; r < dataset().paths.size(); ++r)
      if (!dataset().tensor_file[r]) s.paths.push_back(dataset().paths[r]);
    s.slicing.mode = SliceMode::delta_t;
    s.slicing.delta_t = kDeltaT;
    s.slicing.num_tbins = kT;
    ReaderOptions options;
    options.index_storage = IndexStorage::memory;
    std::vector<std::uint64_t> items;
    for (const auto& result : plan_streams(s.paths, options, s.slicing, 2)) {
      EXPECT_EQ(result.error, "");
      s.plans.push_back(result.plan);
      items.push_back(result.plan.items);
    }
    s.schedule = std::make_shared<StreamSchedule>(items, 2, StreamPadding::zeros);
    s.shape = {kT, 2, kC, kH / 2, kW / 2};  // area-downscaled from the sensor's 32 x 24
    return s;
  }();
  return setup;
}

const std::vector<std::vector<float>>& stream_reference() {
  static const std::vector<std::vector<float>> ref = [] {
    StreamLoader loader(stream_setup(), 0, 1);
    loader.engine->start();
    std::vector<std::vector<float>> out;
    double sum = 0;
    while (auto batch = loader.engine->next()) {
      out.emplace_back(batch->data(), batch->data() + batch->shape().elements());
      for (float v : out.back()) sum += v;
    }
    EXPECT_GT(sum, 0.0);
    return out;
  }();
  return ref;
}

void check_stream_batch(Batch& batch, std::size_t b) {
  const auto& ref = stream_reference();
  ASSERT_EQ(batch.index(), b);
  ASSERT_LT(b, ref.size());
  EXPECT_TRUE(std::equal(ref[b].begin(), ref[b].end(), batch.data())) << "batch " << b;
}

TEST(EngineStress, StreamLoadersCreatedAndDestroyedInALoop) {
  const StreamSetup& setup = stream_setup();
  const std::size_t total = stream_reference().size();
  ASSERT_GE(total, 5u);
  ASSERT_EQ(total, setup.schedule->num_batches());
  std::mt19937 rng(77);
  std::vector<std::pair<std::shared_ptr<Batch>, std::size_t>> held;
  for (int i = 0; i < 50; ++i) {
    const int workers = kWorkers[rng() % 5];
    SCOPED_TRACE(testing::Message() << "iteration " << i << ", " << workers << " workers");
    StreamLoader loader(setup, workers, 1 + static_cast<int>(rng() % 3));
    Engine& engine = *loader.engine;
    engine.start();
    std::size_t b = 0;
    switch (i % 5) {
      case 0:
        while (auto batch = engine.next()) check_stream_batch(*batch, b++);
        EXPECT_EQ(b, total);
        break;
      case 1:  // destroyed mid-epoch
        for (std::size_t k = rng() % 4; k > 0; --k) check_stream_batch(*next_batch(engine), b++);
        break;
      case 2: break;  // destroyed right after start()
      case 3:         // batches kept past the engine
        for (std::size_t k = 1 + rng() % 3; k > 0; --k) {
          held.emplace_back(engine.next(), b);
          ++b;
        }
        break;
      case 4: {  // a recording fails: the error reaches next() at its batch, the engine reads again after
        const std::uint64_t index = rng() % 3;
        const int recording = static_cast<int>(rng() % setup.paths.size());
        std::size_t failing = total;
        for (std::size_t k = 0; k < total && failing == total; ++k)
          for (int slot = 0; slot < setup.schedule->batch_size(); ++slot) {
            const StreamItem item = setup.schedule->at(k, slot);
            if (item.recording == recording && item.index == index) failing = k;
          }
        if (failing == total) break;
        loader.faults->recording = recording;
        loader.faults->index = index;
        engine.start();
        for (; b < failing; ++b) check_stream_batch(*next_batch(engine), b);
        EXPECT_THROW((void)engine.next(), FormatError);
        loader.faults->recording = -1;
        engine.start(failing / 2);  // every stream is at its tensor again, whatever it read before
        for (b = failing / 2; auto batch = engine.next(); ++b) check_stream_batch(*batch, b);
        EXPECT_EQ(b, total);
        break;
      }
    }
  }
  ASSERT_FALSE(held.empty());
  for (const auto& [batch, b] : held) {
    ASSERT_NE(batch, nullptr);
    check_stream_batch(*batch, b);
  }
}

TEST(EngineStress, SkippedStreamsWarnWhileWorkersRun) {
  const StreamSetup& setup = stream_setup();
  for (int workers : kWorkers) {
    StreamLoader loader(setup, workers, 2, OnStreamError::skip);
    loader.faults->recording = 1;
    loader.faults->index = 1;
    for (int epoch = 0; epoch < 2; ++epoch) {
      loader.engine->start();
      std::size_t batches = 0;
      std::size_t warnings = 0;
      while (auto batch = loader.engine->next()) {
        ++batches;
        warnings += loader.filler->take_warnings().size();  // taken while workers may add more
        for (int slot = 0; slot < batch->shape().batch_size; ++slot) {
          const ScheduleItem& item = batch->items[static_cast<std::size_t>(slot)];
          EXPECT_FALSE(item.recording == 1 && item.entry >= 1) << "a skipped tensor was delivered";
        }
      }
      warnings += loader.filler->take_warnings().size();
      EXPECT_EQ(batches, setup.schedule->num_batches());
      EXPECT_EQ(warnings, 1u) << workers << " workers, epoch " << epoch;
    }
  }
}

}  // namespace
}  // namespace evloader
