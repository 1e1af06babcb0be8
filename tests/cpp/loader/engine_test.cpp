// SPDX-License-Identifier: Apache-2.0
#include "evloader/loader/engine.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

namespace evloader {
namespace {

constexpr Timestamp kMs = 1000;

std::shared_ptr<const Schedule> make_schedule(int batch_size = 3) {
  std::vector<ScheduleRecording> recs;
  for (int i = 0; i < 7; ++i) recs.push_back({0, (300 + 170 * i) * kMs});
  ScheduleOptions o;
  o.delta_t = 20 * kMs;
  o.num_tbins = 5;
  o.batch_size = batch_size;
  o.padding = true;
  return std::make_shared<Schedule>(recs, o);
}

// Writes values derived from the item only, sleeping at random so that thread timing varies, and checks
// that each slot is visited in batch order and never by two threads at once.
class FakeFiller : public ItemFiller {
 public:
  explicit FakeFiller(int slots)
      : last_batch_(static_cast<std::size_t>(slots)), busy_(static_cast<std::size_t>(slots)) {}
  void begin_epoch() override {
    for (auto& b : last_batch_) b = -1;
  }
  void fill(const ScheduleItem& item, int slot, Batch& batch) override {
    auto s = static_cast<std::size_t>(slot);
    if (busy_[s].exchange(true)) order_violations++;
    if (static_cast<long>(batch.index()) <= last_batch_[s] && last_batch_[s] >= 0) order_violations++;
    last_batch_[s] = static_cast<long>(batch.index());
    if (fail_at_batch >= 0 && static_cast<long>(batch.index()) == fail_at_batch && slot == 1)
      throw std::runtime_error("bad recording at batch " + std::to_string(batch.index()));
    thread_local std::mt19937 rng(std::random_device{}());
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
    const auto& shape = batch.shape();
    for (int t = 0; t < shape.num_tbins; ++t) {
      float* out = batch.data() + batch.offset(t, slot);
      const float value =
          item.padding ? 0.0f : static_cast<float>(item.recording * 1000 + item.start / kMs + t);
      std::fill(out, out + shape.item_frame(), value);
      batch.frame_is_labeled[static_cast<std::size_t>(t * shape.batch_size + slot)] =
          !item.padding && t % 2 == 0;
    }
    busy_[s] = false;
  }
  std::atomic<int> order_violations{0};
  long fail_at_batch = -1;

 private:
  std::vector<long> last_batch_;
  std::vector<std::atomic<bool>> busy_;
};

BatchShape shape_for(const Schedule& s) { return {s.options().num_tbins, s.batch_size(), 2, 4, 5}; }

std::vector<std::vector<float>> run_epoch(int workers, int prefetch = 2) {
  auto schedule = make_schedule();
  auto filler = std::make_shared<FakeFiller>(schedule->batch_size());
  Engine engine(schedule, shape_for(*schedule), filler, {workers, prefetch});
  engine.start();
  std::vector<std::vector<float>> out;
  while (auto batch = engine.next()) {
    EXPECT_EQ(batch->index(), out.size());
    out.emplace_back(batch->data(), batch->data() + batch->shape().elements());
  }
  EXPECT_EQ(filler->order_violations.load(), 0);
  EXPECT_LE(engine.pool().allocated(), static_cast<std::size_t>(prefetch) + 2);
  return out;
}

TEST(Engine, BatchesAreIdenticalForAnyNumberOfWorkers) {
  auto reference = run_epoch(0);
  ASSERT_EQ(reference.size(), make_schedule()->num_batches());
  for (int workers : {1, 2, 4}) EXPECT_EQ(run_epoch(workers), reference) << workers << " workers";
  EXPECT_EQ(run_epoch(3, 1), reference);
  EXPECT_EQ(run_epoch(4, 6), reference);
}

TEST(Engine, ItemsMatchTheSchedule) {
  auto schedule = make_schedule();
  auto filler = std::make_shared<FakeFiller>(schedule->batch_size());
  Engine engine(schedule, shape_for(*schedule), filler, {2, 2});
  engine.start();
  while (auto batch = engine.next()) {
    for (int slot = 0; slot < batch->shape().batch_size; ++slot) {
      const auto item = schedule->at(batch->index(), slot);
      EXPECT_EQ(batch->items[static_cast<std::size_t>(slot)].start, item.start);
      const float expected =
          item.padding ? 0.0f : static_cast<float>(item.recording * 1000 + item.start / kMs + 3);
      EXPECT_EQ(batch->data()[batch->offset(3, slot)], expected);
    }
  }
}

TEST(Engine, WorkerErrorReachesNextAtTheFailingBatchAndTheEngineRestarts) {
  for (int workers : {0, 2}) {
    auto schedule = make_schedule();
    auto filler = std::make_shared<FakeFiller>(schedule->batch_size());
    filler->fail_at_batch = 4;
    Engine engine(schedule, shape_for(*schedule), filler, {workers, 3});
    engine.start();
    for (std::size_t b = 0; b < 4; ++b) ASSERT_NE(engine.next(), nullptr);
    try {
      (void)engine.next();
      FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "bad recording at batch 4");
    }
    filler->fail_at_batch = -1;
    engine.start();
    std::size_t n = 0;
    while (engine.next()) ++n;
    EXPECT_EQ(n, schedule->num_batches());
  }
}

TEST(Engine, StopsEarlyAndResumesFromABatch) {
  auto schedule = make_schedule();
  auto reference = run_epoch(0);
  auto filler = std::make_shared<FakeFiller>(schedule->batch_size());
  Engine engine(schedule, shape_for(*schedule), filler, {2, 2});
  engine.start();
  (void)engine.next();
  engine.stop();
  engine.start(5);
  auto batch = engine.next();
  ASSERT_NE(batch, nullptr);
  EXPECT_EQ(batch->index(), 5u);
  EXPECT_EQ(std::vector<float>(batch->data(), batch->data() + batch->shape().elements()), reference[5]);
}

TEST(Engine, ConsumerHoldingBatchesDoesNotDeadlock) {
  auto schedule = make_schedule();
  auto filler = std::make_shared<FakeFiller>(schedule->batch_size());
  Engine engine(schedule, shape_for(*schedule), filler, {2, 1});
  engine.start();
  std::vector<std::shared_ptr<Batch>> held;
  while (auto batch = engine.next()) held.push_back(batch);
  EXPECT_EQ(held.size(), schedule->num_batches());
}

TEST(Engine, DestroyedMidEpochAndBatchesOutliveIt) {
  for (int i = 0; i < 20; ++i) {
    auto schedule = make_schedule();
    std::shared_ptr<Batch> kept;
    {
      Engine engine(schedule, shape_for(*schedule), std::make_shared<FakeFiller>(schedule->batch_size()),
                    {3, 2});
      engine.start();
      kept = engine.next();
    }
    ASSERT_NE(kept, nullptr);
    EXPECT_EQ(kept->index(), 0u);
  }
}

// A filler that blocks until released: wait_ready() must time out while the batch is being filled, then
// report it ready, and report a stopped or finished epoch as ready (next() then returns at once).
class GateFiller : public ItemFiller {
 public:
  void fill(const ScheduleItem&, int, Batch&) override {
    std::unique_lock lock(mutex_);
    opened_.wait(lock, [&] { return open_; });
  }
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    opened_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = false;
};

TEST(Engine, WaitReadyTimesOutWhileTheBatchIsFilledAndReportsItReady) {
  auto schedule = make_schedule();
  auto filler = std::make_shared<GateFiller>();
  Engine engine(schedule, shape_for(*schedule), filler, {2, 2});
  engine.start();
  EXPECT_FALSE(engine.wait_ready(std::chrono::milliseconds(20)));
  filler->open();
  EXPECT_TRUE(engine.wait_ready(std::chrono::seconds(10)));
  std::size_t n = 0;
  while (engine.next()) ++n;
  EXPECT_EQ(n, schedule->num_batches());
  EXPECT_TRUE(engine.wait_ready(std::chrono::milliseconds(0)));  // epoch over: next() would not wait

  auto gate = std::make_shared<GateFiller>();
  Engine stopped(schedule, shape_for(*schedule), gate, {1, 1});
  stopped.start();
  EXPECT_FALSE(stopped.wait_ready(std::chrono::milliseconds(10)));
  gate->open();  // let the worker finish its item so that stop() can join it
  stopped.stop();
  EXPECT_TRUE(stopped.wait_ready(std::chrono::milliseconds(0)));
  EXPECT_EQ(stopped.next(), nullptr);
}

}  // namespace
}  // namespace evloader
