// SPDX-License-Identifier: Apache-2.0
// The batch engine: worker threads fill the slots of chronological batches [T, N, C, H, W] in a schedule's
// order, with a bounded number of batches in flight and batch buffers reused through a pool.
//
// Determinism: an item's content depends only on the schedule, never on thread timing. A slot's stream is
// used by one worker at a time and in batch order (slot s of batch b waits for slot s of batch b-1), so
// every slot reads its recording sequentially; different slots and batches proceed in parallel.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "evloader/core/pod_buffer.hpp"
#include "evloader/loader/schedule.hpp"

namespace evloader {

struct BatchShape {
  int num_tbins = 0;   // T
  int batch_size = 0;  // N
  int channels = 0;    // C
  int height = 0;      // H
  int width = 0;       // W

  [[nodiscard]] std::size_t item_frame() const noexcept {
    return static_cast<std::size_t>(channels) * height * width;
  }
  [[nodiscard]] std::size_t elements() const noexcept {
    return static_cast<std::size_t>(num_tbins) * batch_size * item_frame();
  }
};

/// Reusable float32 buffers of one size. Shared by the engine and the batches it hands out, so a batch
/// still held by Python after the engine is gone frees its buffer safely.
class BufferPool {
 public:
  /// A batch buffer: mapped straight from the kernel (detail::allocate_bytes), so a pool that goes away
  /// with its engine (a new epoch order) gives its memory back instead of leaving it in malloc's heaps.
  using Buffer = std::unique_ptr<float[], detail::BlockDeleter>;
  explicit BufferPool(std::size_t elements) : elements_(elements) {}
  [[nodiscard]] Buffer acquire();
  void release(Buffer buffer) noexcept;
  [[nodiscard]] std::size_t allocated() const noexcept;  ///< buffers created so far (bounded by the prefetch)

 private:
  std::size_t elements_;
  mutable std::mutex mutex_;
  std::vector<Buffer> free_;
  std::size_t allocated_ = 0;
};

/// One batch: the tensor [T, N, C, H, W] (float32, C-contiguous) and what each slot read.
class Batch {
 public:
  Batch(std::size_t index, const BatchShape& shape, std::shared_ptr<BufferPool> pool);
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  [[nodiscard]] std::size_t index() const noexcept { return index_; }
  [[nodiscard]] const BatchShape& shape() const noexcept { return shape_; }
  [[nodiscard]] float* data() noexcept { return data_.get(); }
  /// Element offset of item (t, slot) in data().
  [[nodiscard]] std::size_t offset(int t, int slot) const noexcept {
    return (static_cast<std::size_t>(t) * shape_.batch_size + slot) * shape_.item_frame();
  }

  std::vector<ScheduleItem> items;             ///< [N]
  std::vector<std::uint8_t> frame_is_labeled;  ///< [T * N], row-major [t][slot]
  std::vector<std::shared_ptr<void>> labels;   ///< [N], whatever the label source produced (opaque here)

 private:
  std::size_t index_;
  BatchShape shape_;
  std::shared_ptr<BufferPool> pool_;
  BufferPool::Buffer data_;
};

/// Fills the slots of batches. Called from worker threads, but never twice at once for the same slot, and
/// for a given slot always in batch order, so implementations keep per-slot streams without locking.
class ItemFiller {
 public:
  virtual ~ItemFiller() = default;
  /// Called once per epoch before any fill (from the thread that starts the epoch).
  virtual void begin_epoch() {}
  /// Fill slot `slot` of `batch` for `item` (padding items too): write the T frames at
  /// batch.data() + batch.offset(t, slot), set batch.frame_is_labeled[t * N + slot] and batch.labels[slot].
  /// Exceptions propagate to the consumer's next().
  virtual void fill(const ScheduleItem& item, int slot, Batch& batch) = 0;
};

struct EngineOptions {
  int num_workers = 2;  ///< 0: batches are produced in the thread calling next()
  int prefetch = 2;     ///< batches produced ahead of the consumer (>= 1)
};

class Engine {
 public:
  Engine(std::shared_ptr<const Schedule> schedule, const BatchShape& shape,
         std::shared_ptr<ItemFiller> filler, const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Start producing from batch `first` (stops a running epoch first).
  void start(std::size_t first = 0);
  /// The next batch in order, or nullptr at the end of the epoch, after stop(), after an error and before
  /// start() (with or without workers). Rethrows a worker's exception (with the recording and time in its
  /// message) when the consumer reaches the batch that failed; a batch that cannot be allocated is a
  /// std::bad_alloc there too.
  [[nodiscard]] std::shared_ptr<Batch> next();
  /// Waits up to `timeout` until next() would return without waiting for the workers (the batch is ready,
  /// the epoch is over or stopped, or there are no workers). Lets a caller check for signals (Ctrl-C)
  /// between waits instead of blocking until a slow batch is done.
  [[nodiscard]] bool wait_ready(std::chrono::milliseconds timeout);
  /// Stop the workers and drop batches not yet delivered. Idempotent, safe from another thread than the
  /// consumer's; the engine can start() again. (The constructor refuses shapes whose size overflows.)
  void stop() noexcept;

  [[nodiscard]] std::size_t num_batches() const noexcept { return schedule_->num_batches(); }
  [[nodiscard]] const BufferPool& pool() const noexcept { return *pool_; }

 private:
  struct InFlight {
    std::shared_ptr<Batch> batch;
    int pending = 0;
    std::exception_ptr error;
  };

  void worker_loop();
  void run_task(std::size_t b, int slot);
  InFlight& in_flight(std::size_t b);  // requires mutex_
  void produce_synchronously(std::size_t b);

  std::shared_ptr<const Schedule> schedule_;
  BatchShape shape_;
  std::shared_ptr<ItemFiller> filler_;
  EngineOptions options_;
  std::shared_ptr<BufferPool> pool_;

  std::mutex mutex_;
  std::condition_variable wake_workers_;
  std::condition_variable wake_consumer_;
  std::condition_variable slot_done_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  std::size_t next_batch_ = 0;  // next task to hand out: (next_batch_, next_slot_)
  int next_slot_ = 0;
  std::size_t consumed_ = 0;            // batches delivered to the consumer
  std::vector<std::size_t> slot_next_;  // per slot: the batch whose turn it is
  std::map<std::size_t, InFlight> in_flight_;
};

}  // namespace evloader
