// SPDX-License-Identifier: Apache-2.0
#include "evloader/loader/engine.hpp"

#include <algorithm>
#include <limits>
#include <string>

#include "evloader/core/error.hpp"

namespace evloader {

BufferPool::Buffer BufferPool::acquire() {
  {
    std::lock_guard lock(mutex_);
    if (!free_.empty()) {
      auto buffer = std::move(free_.back());
      free_.pop_back();
      return buffer;
    }
    ++allocated_;
  }
  // Uninitialised: fillers write every element.
  const std::size_t bytes = elements_ * sizeof(float);
  return Buffer(static_cast<float*>(detail::allocate_bytes(bytes)), detail::BlockDeleter{bytes});
}

void BufferPool::release(Buffer buffer) noexcept {
  if (!buffer) return;
  std::lock_guard lock(mutex_);
  free_.push_back(std::move(buffer));
}

std::size_t BufferPool::allocated() const noexcept {
  std::lock_guard lock(mutex_);
  return allocated_;
}

Batch::Batch(std::size_t index, const BatchShape& shape, std::shared_ptr<BufferPool> pool)
    : index_(index), shape_(shape), pool_(std::move(pool)), data_(pool_->acquire()) {
  frame_is_labeled.assign(static_cast<std::size_t>(shape.num_tbins) * shape.batch_size, 0);
  labels.resize(static_cast<std::size_t>(shape.batch_size));
}

Batch::~Batch() { pool_->release(std::move(data_)); }

Engine::Engine(std::shared_ptr<const Schedule> schedule, const BatchShape& shape,
               std::shared_ptr<ItemFiller> filler, const EngineOptions& options)
    : schedule_(std::move(schedule)), shape_(shape), filler_(std::move(filler)), options_(options) {
  if (options_.num_workers < 0) throw ConfigError("num_workers must be >= 0");
  if (options_.prefetch < 1) throw ConfigError("prefetch must be >= 1");
  if (shape_.batch_size != schedule_->batch_size() && schedule_->num_batches() > 0)
    throw ConfigError("the batch shape and the schedule disagree on the batch size");
  // A size taken from a hostile header must not wrap BatchShape::elements() into a small buffer that the
  // fillers then overrun: refuse what cannot be counted in bytes (what merely does not fit in memory is a
  // std::bad_alloc at next()).
  std::size_t elements = 1;
  const std::string dims = std::to_string(shape_.num_tbins) + " x " + std::to_string(shape_.batch_size) +
                           " x " + std::to_string(shape_.channels) + " x " + std::to_string(shape_.height) +
                           " x " + std::to_string(shape_.width);
  for (int d : {shape_.num_tbins, shape_.batch_size, shape_.channels, shape_.height, shape_.width}) {
    if (d < 0) throw ConfigError("a batch of " + dims + " values: dimensions must be >= 0");
    if (__builtin_mul_overflow(elements, static_cast<std::size_t>(d), &elements) ||
        elements > std::numeric_limits<std::size_t>::max() / sizeof(float))
      throw ConfigError("a batch of " + dims + " float32 values is too large to be addressed");
  }
  pool_ = std::make_shared<BufferPool>(shape_.elements());
  // Not started: next() returns nullptr until start() (it would otherwise wait for workers that do not
  // exist).
  stopping_ = true;
}

Engine::~Engine() { stop(); }

void Engine::start(std::size_t first) {
  stop();
  {
    std::lock_guard lock(mutex_);
    next_batch_ = first;
    next_slot_ = 0;
    consumed_ = first;
    slot_next_.assign(static_cast<std::size_t>(shape_.batch_size), first);
  }
  // Stays stopped when the filler or a thread cannot start: next() then ends the epoch instead of waiting.
  filler_->begin_epoch();
  try {
    std::lock_guard lock(mutex_);  // workers_ is only touched under the lock: stop() may come from any thread
    stopping_ = false;
    for (int i = 0; i < options_.num_workers; ++i) workers_.emplace_back([this] { worker_loop(); });
  } catch (...) {
    stop();
    throw;
  }
}

void Engine::stop() noexcept {
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    workers.swap(workers_);  // a concurrent stop() finds none left to join
  }
  wake_workers_.notify_all();
  slot_done_.notify_all();
  wake_consumer_.notify_all();
  for (auto& w : workers) w.join();
  std::map<std::size_t, InFlight> dropped;
  {
    std::lock_guard lock(mutex_);
    dropped.swap(in_flight_);
  }
  // Destroyed outside the lock: the labels of a dropped batch may be Python objects whose release takes the
  // GIL, which must never be waited for while holding the engine's mutex.
}

Engine::InFlight& Engine::in_flight(std::size_t b) {
  auto it = in_flight_.find(b);
  if (it != in_flight_.end()) return it->second;
  InFlight& f = in_flight_[b];
  f.pending = shape_.batch_size;
  try {
    f.batch = std::make_shared<Batch>(b, shape_, pool_);
    f.batch->items = schedule_->batch(b);
  } catch (...) {
    // Typically std::bad_alloc for a huge batch: delivered by next() at this batch like a filler's error
    // (thrown on a worker thread it would terminate the process).
    f.batch.reset();
    f.error = std::current_exception();
  }
  return f;
}

void Engine::worker_loop() {
  std::unique_lock lock(mutex_);
  const std::size_t total = schedule_->num_batches();
  while (true) {
    // Bounded prefetch: never start a batch more than `prefetch` ahead of the consumer.
    wake_workers_.wait(lock, [&] {
      return stopping_ ||
             (next_batch_ < total && next_batch_ < consumed_ + static_cast<std::size_t>(options_.prefetch));
    });
    if (stopping_) return;
    const std::size_t b = next_batch_;
    const int slot = next_slot_;
    if (++next_slot_ == shape_.batch_size) {
      next_slot_ = 0;
      ++next_batch_;
    }
    std::shared_ptr<Batch> batch = in_flight(b).batch;
    // The slot's stream is free once the previous batch's item of this slot is done. That item was handed
    // out before ours, so it is running or finished: this wait always ends.
    slot_done_.wait(lock, [&] { return stopping_ || slot_next_[static_cast<std::size_t>(slot)] == b; });
    if (stopping_) return;
    lock.unlock();
    std::exception_ptr error;
    if (batch) {  // null when the batch could not be made: its error is already recorded
      try {
        filler_->fill(batch->items[static_cast<std::size_t>(slot)], slot, *batch);
      } catch (...) {
        error = std::current_exception();
      }
    }
    lock.lock();
    slot_next_[static_cast<std::size_t>(slot)] = b + 1;
    slot_done_.notify_all();
    auto it = in_flight_.find(b);
    if (it == in_flight_.end()) continue;  // dropped by stop()
    if (error && !it->second.error) it->second.error = error;
    if (--it->second.pending == 0) wake_consumer_.notify_all();
  }
}

void Engine::produce_synchronously(std::size_t b) {
  // The batch is held here, not through its in_flight_ entry, which a stop() from another thread may drop.
  std::shared_ptr<Batch> batch;
  {
    std::lock_guard lock(mutex_);
    InFlight& f = in_flight(b);
    if (f.error) std::rethrow_exception(f.error);
    batch = f.batch;
  }
  for (int slot = 0; slot < shape_.batch_size; ++slot) {
    filler_->fill(batch->items[static_cast<std::size_t>(slot)], slot, *batch);
    std::lock_guard lock(mutex_);
    auto it = in_flight_.find(b);
    if (it == in_flight_.end()) return;  // stopped meanwhile: next() returns nullptr
    --it->second.pending;
  }
}

bool Engine::wait_ready(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (options_.num_workers == 0) return true;
  return wake_consumer_.wait_for(lock, timeout, [&] {
    if (stopping_ || consumed_ >= schedule_->num_batches()) return true;
    auto it = in_flight_.find(consumed_);
    return it != in_flight_.end() && it->second.pending == 0;
  });
}

std::shared_ptr<Batch> Engine::next() {
  const std::size_t total = schedule_->num_batches();
  std::unique_lock lock(mutex_);
  // Stopped (by stop(), an error, or never started): the epoch is over until start(), with or without
  // workers.
  if (consumed_ >= total || stopping_) return nullptr;
  if (options_.num_workers == 0) {
    const std::size_t b = consumed_;
    lock.unlock();
    try {
      produce_synchronously(b);
    } catch (...) {
      stop();  // as with workers: the epoch ends at the failing batch
      throw;
    }
    lock.lock();
  }
  wake_consumer_.wait(lock, [&] {
    if (stopping_) return true;
    auto it = in_flight_.find(consumed_);
    return it != in_flight_.end() && it->second.pending == 0;
  });
  auto it = in_flight_.find(consumed_);
  if (it == in_flight_.end() || it->second.pending != 0) return nullptr;  // stopped
  InFlight done = std::move(it->second);
  in_flight_.erase(it);
  ++consumed_;
  lock.unlock();
  wake_workers_.notify_all();
  if (done.error) {
    stop();
    std::rethrow_exception(done.error);
  }
  return std::move(done.batch);
}

}  // namespace evloader
