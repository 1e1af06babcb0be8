// SPDX-License-Identifier: Apache-2.0
// Throughput of every preprocessing kernel (Mev/s, CPU time) on a real 1280x720 recording, at 1280x720
// (downsampling 0) and 640x360 (downsampling 1), into a reused output, with the zero fill of the output
// (what reset=True costs before any event) as the floor.
//
// Events: evt3_gen41_expelliarmus.raw (Gen4.1, 1280x720, 219,596 events over 8.8 ms) repeated with its
// timestamps shifted per copy to >= 1 M events (about 44 ms), made relative to the window start: one
// loader window of T = 5 bins at the recording's own event rate.
//
// Run: evloader_preprocess_bench [--benchmark_filter=...] (defaults: 5 repetitions, medians reported).
// Data: EVLOADER_DATA_DIR, else ../shared/data/real next to the source tree; skipped when absent.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "evloader/core/pod_buffer.hpp"
#include "evloader/io/event_reader.hpp"
#include "evloader/preprocess/preprocessor.hpp"

#ifndef EVLOADER_SOURCE_DIR
#define EVLOADER_SOURCE_DIR "."
#endif

namespace {

namespace fs = std::filesystem;
using evloader::EventCD;

constexpr std::size_t kMinEvents = 1'000'000;
constexpr std::int64_t kBins = 5;

fs::path data_dir() {
  if (const char* env = std::getenv("EVLOADER_DATA_DIR")) return fs::exists(env) ? fs::path(env) : fs::path{};
  const fs::path p = fs::path(EVLOADER_SOURCE_DIR).parent_path() / "shared" / "data" / "real";
  return fs::exists(p) ? p : fs::path{};
}

struct Window {
  std::vector<EventCD> events;
  evloader::Timestamp total = 0;
};

const Window& window() {
  static const Window w = [] {
    Window out;
    const fs::path dir = data_dir();
    if (dir.empty()) return out;
    auto reader = evloader::open_reader(dir / "evt3_gen41_expelliarmus.raw");
    const evloader::EventBuffer all = reader->load_all();
    if (all.empty()) return out;
    const evloader::Timestamp t0 = all[0].t;
    const evloader::Timestamp span = all[all.size() - 1].t - t0 + 1;
    for (evloader::Timestamp shift = 0; out.events.size() < kMinEvents; shift += span)
      for (const EventCD& e : all) out.events.push_back({e.x, e.y, e.p, e.t - t0 + shift});
    out.total = out.events.back().t + 1;
    return out;
  }();
  return w;
}

// Registry dtype, float32 for quantized kernels with downsampling (as CDProcessor allocates).
evloader::DType dtype_for(const evloader::Preprocessor& p, int ds) {
  return p.accepts_dtype(p.dtype(), ds) ? p.dtype() : evloader::DType::float32;
}

void bm_kernel(benchmark::State& state, std::string name, int ds) {
  const Window& w = window();
  if (w.events.empty()) {
    state.SkipWithError("real recordings not found (EVLOADER_DATA_DIR or ../shared/data/real)");
    return;
  }
  const auto pre = evloader::make_preprocessor(name);
  const evloader::DType dtype = dtype_for(*pre, ds);
  const std::array<std::int64_t, 4> shape{kBins, pre->channels(), 720 >> ds, 1280 >> ds};
  std::vector<std::byte> storage(static_cast<std::size_t>(shape[0] * shape[1] * shape[2] * shape[3]) *
                                 evloader::dtype_size(dtype));
  const evloader::TensorView out(storage.data(), dtype, shape);
  for (auto _ : state) {
    pre->run(w.events, out, w.total, ds, true);
    benchmark::DoNotOptimize(storage.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(w.events.size()));
  state.counters["out_MB"] = static_cast<double>(storage.size()) / 1e6;
}

// The memset that reset=True does, sized like the histo output (the floor under every kernel).
void bm_zero_fill(benchmark::State& state, int ds, int channels) {
  const Window& w = window();
  std::vector<float> storage(static_cast<std::size_t>(kBins * channels * (720 >> ds) * (1280 >> ds)));
  for (auto _ : state) {
    std::memset(storage.data(), 0, storage.size() * sizeof(float));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(w.events.size()));
}

void register_all() {
  for (int ds : {0, 1}) {
    const std::string geometry = ds == 0 ? "1280x720" : "640x360";
    for (const std::string& name : evloader::preprocessor_names())
      benchmark::RegisterBenchmark(("preprocess/" + geometry + "/" + name).c_str(), bm_kernel, name, ds)
          ->Unit(benchmark::kMillisecond);
    for (int channels : {2, 6})
      benchmark::RegisterBenchmark(("zero_fill/" + geometry + "/C" + std::to_string(channels)).c_str(),
                                   bm_zero_fill, ds, channels)
          ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Medians of 5 repetitions unless the command line says otherwise.
  std::vector<char*> args(argv, argv + argc);
  std::string reps = "--benchmark_repetitions=5", agg = "--benchmark_report_aggregates_only=true";
  bool has_reps = false;
  for (int i = 1; i < argc; ++i) has_reps |= std::strncmp(argv[i], "--benchmark_repetitions", 23) == 0;
  if (!has_reps) {
    args.push_back(reps.data());
    args.push_back(agg.data());
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  register_all();
  if (!window().events.empty())
    std::printf("window: %zu events over %lld us (evt3_gen41_expelliarmus.raw repeated), T = %lld\n",
                window().events.size(), static_cast<long long>(window().total),
                static_cast<long long>(kBins));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
