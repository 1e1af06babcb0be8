// SPDX-License-Identifier: Apache-2.0
// The preprocessing registry: names, channel counts and default kwargs of metavision_ml 4.2.1, kwarg
// validation, and the output checks shared by every kernel.
#include "evloader/preprocess/preprocessor.hpp"

#include <array>
#include <cmath>
#include <cstring>
#include <optional>
#include <set>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "evloader/core/error.hpp"
#include "kernels.hpp"

namespace evloader {

namespace {

namespace pd = preprocess_detail;

constexpr int kMaxDownsampling = 30;
constexpr std::array<DType, 7> kAllDTypes{DType::float32, DType::float64, DType::int8, DType::uint8,
                                          DType::int16,   DType::int32,   DType::int64};

enum class Kind { diff, diff_quantized, histo, histo_quantized, timesurface, event_cube, multi_timesurface };

struct Entry {
  std::string_view name;
  int channels;
  Kind kind;
};

// Registry order of the reference's PREPROCESSING_DICT.
constexpr std::array<Entry, 8> kRegistry{{
    {"diff", 1, Kind::diff},
    {"diff_quantized", 1, Kind::diff_quantized},
    {"histo", 2, Kind::histo},
    {"histo_quantized", 2, Kind::histo_quantized},
    {"timesurface", 2, Kind::timesurface},
    {"event_cube", 6, Kind::event_cube},
    {"event_cube_paper", 10, Kind::event_cube},
    {"multi_channel_timesurface", 6, Kind::multi_timesurface},
}};

const Entry& find_entry(std::string_view name) {
  for (const Entry& e : kRegistry)
    if (e.name == name) return e;
  std::string known;
  for (const Entry& e : kRegistry) known += (known.empty() ? "" : ", ") + std::string(e.name);
  throw ConfigError("unknown preprocessing '" + std::string(name) + "' (known: " + known + ")");
}

Kwargs defaults_of(const Entry& e) {
  using std::int64_t;
  switch (e.kind) {
    case Kind::diff:
    case Kind::histo:
      return {{"preprocess_dtype", std::string("float32")}, {"max_incr_per_pixel", int64_t{5}}};
    case Kind::diff_quantized:
      return {{"preprocess_dtype", std::string("int8")},
              {"negative_bit_length", int64_t{8}},
              {"normalization", false}};
    case Kind::histo_quantized:
      return {{"preprocess_dtype", std::string("uint8")},
              {"negative_bit_length", int64_t{4}},
              {"total_bit_length", int64_t{8}},
              {"normalization", false}};
    case Kind::timesurface:
    case Kind::multi_timesurface: return {{"preprocess_dtype", std::string("float32")}};
    case Kind::event_cube:
      if (e.name == "event_cube_paper")
        return {{"preprocess_dtype", std::string("float32")},
                {"split_polarity", true},
                {"max_incr_per_pixel", 255.0 / 4}};
      return {{"preprocess_dtype", std::string("float32")},
              {"split_polarity", true},
              {"max_incr_per_pixel", int64_t{5}}};
  }
  return {};
}

// Keys a kernel accepts beyond its registry defaults: the reference's time surfaces take **kwargs and
// ignore what they do not use; we accept the keys that other preprocessings' kwargs carry there.
std::set<std::string, std::less<>> extra_keys(Kind kind) {
  switch (kind) {
    case Kind::timesurface:
    case Kind::multi_timesurface: return {"normed", "max_incr_per_pixel"};
    default: return {};
  }
}

std::string describe(const KwargValue& v) {
  struct {
    std::string operator()(std::monostate) const { return "None"; }
    std::string operator()(bool b) const { return b ? "True" : "False"; }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return std::to_string(d); }
    std::string operator()(const std::string& s) const { return "'" + s + "'"; }
  } visitor;
  return std::visit(visitor, v);
}

// Typed access to merged kwargs, with errors that name the preprocessing and the key.
class KwargReader {
 public:
  KwargReader(std::string_view name, const Kwargs& kwargs) : name_(name), kwargs_(kwargs) {}

  [[nodiscard]] const KwargValue* find(std::string_view key) const {
    auto it = kwargs_.find(key);
    return it == kwargs_.end() ? nullptr : &it->second;
  }

  // A positive finite number, or None (nullopt: the reference's normaliser is then 1).
  [[nodiscard]] std::optional<double> positive_or_none(std::string_view key) const {
    const KwargValue* v = find(key);
    if (v == nullptr || std::holds_alternative<std::monostate>(*v)) return std::nullopt;
    double d = 0;
    if (const auto* i = std::get_if<std::int64_t>(v)) {
      d = static_cast<double>(*i);
    } else if (const auto* f = std::get_if<double>(v)) {
      d = *f;
    } else {
      fail(key, *v, "must be a number or None");
    }
    if (!(d > 0) || !std::isfinite(d)) fail(key, *v, "must be > 0");
    return d;
  }

  [[nodiscard]] bool boolean(std::string_view key, bool fallback) const {
    const KwargValue* v = find(key);
    if (v == nullptr) return fallback;
    if (const auto* b = std::get_if<bool>(v)) return *b;
    if (const auto* i = std::get_if<std::int64_t>(v)) return *i != 0;
    fail(key, *v, "must be a bool");
  }

  [[nodiscard]] int integer(std::string_view key, int lo, int hi) const {
    const KwargValue* v = find(key);
    if (v == nullptr) fail(key, KwargValue{}, "is required");
    std::int64_t i = 0;
    if (const auto* pi = std::get_if<std::int64_t>(v)) {
      i = *pi;
    } else if (const auto* f = std::get_if<double>(v);
               f != nullptr && std::floor(*f) == *f && std::abs(*f) < 1e9) {
      i = static_cast<std::int64_t>(*f);
    } else {
      fail(key, *v, "must be an integer");
    }
    if (i < lo || i > hi)
      fail(key, *v, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int>(i);
  }

  [[nodiscard]] DType dtype() const {
    const KwargValue* v = find("preprocess_dtype");
    const auto* s = v == nullptr ? nullptr : std::get_if<std::string>(v);
    if (s == nullptr)
      fail("preprocess_dtype", v ? *v : KwargValue{}, "must be a dtype name such as 'float32'");
    auto d = dtype_from_name(*s);
    if (!d) fail("preprocess_dtype", *v, "is not one of float32, float64, int8, uint8, int16, int32, int64");
    return *d;
  }

  [[noreturn]] void fail(std::string_view key, const KwargValue& v, const std::string& why) const {
    throw ConfigError(std::string(name_) + ": " + std::string(key) + " " + why + ", got " + describe(v));
  }

 private:
  std::string_view name_;
  const Kwargs& kwargs_;
};

// Outputs much larger than the caches (multi-channel tensors at full HD: 110-185 MB) are zeroed with
// streaming stores, which skip reading every line before overwriting it (measured 15% faster for a whole
// multi-channel time surface at 1280x720); smaller ones with memset, which leaves them in cache for the
// kernel.
constexpr std::size_t kStreamingZeroBytes = std::size_t{64} << 20;

void zero(const TensorView& out) {
  const std::size_t bytes = out.nbytes();
#if defined(__SSE2__)
  if (bytes >= kStreamingZeroBytes) {
    auto* p = static_cast<std::byte*>(out.data);
    // numpy and std::vector give 16-byte aligned storage; align anyway
    const auto head = static_cast<std::size_t>((16 - reinterpret_cast<std::uintptr_t>(p) % 16) % 16);
    std::memset(p, 0, head);
    std::size_t i = head;
    const __m128i z = _mm_setzero_si128();
    for (; i + 64 <= bytes; i += 64) {
      _mm_stream_si128(reinterpret_cast<__m128i*>(p + i), z);
      _mm_stream_si128(reinterpret_cast<__m128i*>(p + i + 16), z);
      _mm_stream_si128(reinterpret_cast<__m128i*>(p + i + 32), z);
      _mm_stream_si128(reinterpret_cast<__m128i*>(p + i + 48), z);
    }
    std::memset(p + i, 0, bytes - i);
    _mm_sfence();
    return;
  }
#endif
  std::memset(out.data, 0, bytes);
}

std::string dtype_list(const Preprocessor& p, int ds) {
  std::string out;
  for (DType d : kAllDTypes)
    if (p.accepts_dtype(d, ds)) out += (out.empty() ? "" : ", ") + std::string(dtype_name(d));
  return out.empty() ? "none" : out;
}

// histo and diff: saturating increments of k = 1 / (max_incr_per_pixel * 4^ds).
class IncrementPreprocessor final : public Preprocessor {
 public:
  IncrementPreprocessor(const Entry& e, DType dtype, Kwargs kwargs, std::optional<double> max_incr)
      : Preprocessor(std::string(e.name), e.channels, dtype, std::move(kwargs)),
        is_diff_(e.kind == Kind::diff),
        max_incr_(max_incr) {}

  bool accepts_channels(std::int64_t c) const noexcept override { return c == channels(); }
  bool accepts_dtype(DType d, int) const noexcept override {
    // diff writes negative values: the reference asserts a signed or float dtype.
    return !is_diff_ || d != DType::uint8;
  }

 protected:
  std::string channel_rule() const override { return "exactly " + std::to_string(channels()); }
  void run_checked(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds,
                   bool reset) const override {
    const double k = max_incr_ ? 1.0 / (*max_incr_ * std::ldexp(1.0, 2 * ds)) : 1.0;
    if (is_diff_) {
      if (reset) zero(out);
      pd::diff(events, out, total, ds, k);
    } else {
      pd::histo(events, out, total, ds, k, reset);  // with reset it writes every cell itself
    }
  }

 private:
  bool is_diff_;
  std::optional<double> max_incr_;
};

class TimesurfacePreprocessor final : public Preprocessor {
 public:
  TimesurfacePreprocessor(const Entry& e, DType dtype, Kwargs kwargs, bool normed)
      : Preprocessor(std::string(e.name), e.channels, dtype, std::move(kwargs)),
        multi_(e.kind == Kind::multi_timesurface),
        normed_(normed) {}

  bool accepts_channels(std::int64_t c) const noexcept override {
    return multi_ ? c >= 2 && c % 2 == 0 : c == 2;
  }
  bool accepts_dtype(DType d, int) const noexcept override {
    // The reference asserts float for the multi-channel surface, float or >= 4-byte ints for the other.
    return dtype_is_floating(d) || (!multi_ && dtype_size(d) >= 4);
  }

 protected:
  std::string channel_rule() const override { return multi_ ? "an even count >= 2" : "exactly 2"; }
  void run_checked(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds,
                   bool reset) const override {
    if (reset) zero(out);
    pd::timesurface(events, out, total, ds, normed_);
  }

 private:
  bool multi_;
  bool normed_;  // the multi-channel surface always normalises, as the reference's
};

class EventCubePreprocessor final : public Preprocessor {
 public:
  EventCubePreprocessor(const Entry& e, DType dtype, Kwargs kwargs, bool split,
                        std::optional<double> max_incr)
      : Preprocessor(std::string(e.name), e.channels, dtype, std::move(kwargs)),
        split_(split),
        max_incr_(max_incr) {}

  bool accepts_channels(std::int64_t c) const noexcept override { return c >= 1 && (!split_ || c % 2 == 0); }
  bool accepts_dtype(DType d, int) const noexcept override { return dtype_is_floating(d); }

 protected:
  std::string channel_rule() const override {
    return split_ ? "an even count (pairs of OFF, ON micro-bins)" : "at least 1";
  }
  void run_checked(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds,
                   bool reset) const override {
    if (reset) zero(out);
    const double k = max_incr_ ? 1.0 / (*max_incr_ * std::ldexp(1.0, 2 * ds)) : 1.0;
    pd::event_cube(events, out, total, ds, split_, k);
  }

 private:
  bool split_;
  std::optional<double> max_incr_;
};

class QuantizedPreprocessor final : public Preprocessor {
 public:
  QuantizedPreprocessor(const Entry& e, DType dtype, Kwargs kwargs, int nbl, int tbl, bool normalization)
      : Preprocessor(std::string(e.name), e.channels, dtype, std::move(kwargs)),
        is_diff_(e.kind == Kind::diff_quantized),
        nbl_(nbl),
        tbl_(tbl),
        normalization_(normalization) {}

  bool accepts_channels(std::int64_t c) const noexcept override { return c == channels(); }
  bool accepts_dtype(DType d, int ds) const noexcept override {
    // Raw counters at full resolution: the reference asserts int8 (diff) / uint8 (histo); averaged or
    // normalised counters need a float dtype.
    if (ds == 0 && !normalization_) return d == (is_diff_ ? DType::int8 : DType::uint8);
    return dtype_is_floating(d);
  }

 protected:
  std::string channel_rule() const override { return "exactly " + std::to_string(channels()); }
  void run_checked(std::span<const EventCD> events, const TensorView& out, Timestamp total, int ds,
                   bool reset) const override {
    if (reset) zero(out);
    if (is_diff_) {
      pd::diff_quantized(events, out, total, ds, nbl_, normalization_, reset);
    } else {
      pd::histo_quantized(events, out, total, ds, nbl_, tbl_, normalization_, reset);
    }
  }

 private:
  bool is_diff_;
  int nbl_;
  int tbl_;
  bool normalization_;
};

}  // namespace

void Preprocessor::check(const TensorView& out, Timestamp total_tbins_delta_t, int downsampling_factor,
                         bool has_events) const {
  const auto& s = out.shape;
  if (downsampling_factor < 0 || downsampling_factor > kMaxDownsampling)
    throw ConfigError(name_ + ": downsampling_factor must be in [0, " + std::to_string(kMaxDownsampling) +
                      "], got " + std::to_string(downsampling_factor));
  if (s[0] < 1 || s[1] < 1 || s[2] < 1 || s[3] < 1)
    throw ConfigError(name_ + ": output shape [" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + ", " +
                      std::to_string(s[2]) + ", " + std::to_string(s[3]) +
                      "] is not a [T, C, H, W] tensor with every dimension >= 1");
  if (out.data == nullptr) throw ConfigError(name_ + ": output has no data");
  if (!accepts_channels(s[1]))
    throw ConfigError(name_ + ": output has " + std::to_string(s[1]) + " channels, expected " +
                      channel_rule());
  if (!accepts_dtype(out.dtype, downsampling_factor))
    throw ConfigError(name_ + ": output dtype " + std::string(dtype_name(out.dtype)) +
                      " is not allowed with downsampling_factor " + std::to_string(downsampling_factor) +
                      " (allowed: " + dtype_list(*this, downsampling_factor) + ")");
  if (has_events && total_tbins_delta_t <= 0)
    throw ConfigError(name_ + ": total_tbins_delta_t must be > 0, got " +
                      std::to_string(total_tbins_delta_t));
}

void Preprocessor::run(std::span<const EventCD> events, const TensorView& out, Timestamp total_tbins_delta_t,
                       int downsampling_factor, bool reset) const {
  check(out, total_tbins_delta_t, downsampling_factor, !events.empty());
  // Even without events the kernel runs: it zeroes the output (reset), and quantized kernels rescale it
  // (pooling, normalisation).
  run_checked(events, out, total_tbins_delta_t, downsampling_factor, reset);
}

std::unique_ptr<Preprocessor> make_preprocessor(std::string_view name, const Kwargs& kwargs) {
  const Entry& e = find_entry(name);
  Kwargs merged = defaults_of(e);
  const auto extras = extra_keys(e.kind);
  for (const auto& [key, value] : kwargs) {
    if (!merged.contains(key) && !extras.contains(key)) {
      std::string accepted;
      for (const auto& [k, v] : defaults_of(e)) accepted += (accepted.empty() ? "" : ", ") + k;
      for (const auto& k : extras) accepted += ", " + k;
      throw ConfigError(std::string(name) + ": unknown kwarg '" + key + "' (accepted: " + accepted + ")");
    }
    merged[key] = value;
  }
  const KwargReader r(e.name, merged);
  const DType dtype = r.dtype();
  std::unique_ptr<Preprocessor> p;
  switch (e.kind) {
    case Kind::diff:
    case Kind::histo:
      p = std::make_unique<IncrementPreprocessor>(e, dtype, merged, r.positive_or_none("max_incr_per_pixel"));
      break;
    case Kind::timesurface:
    case Kind::multi_timesurface: {
      if (r.find("max_incr_per_pixel")) (void)r.positive_or_none("max_incr_per_pixel");  // type check only
      const bool normed =
          r.boolean("normed", true);  // type-checked for both; the multi-channel one ignores it
      p = std::make_unique<TimesurfacePreprocessor>(e, dtype, merged,
                                                    e.kind == Kind::timesurface ? normed : true);
      break;
    }
    case Kind::event_cube:
      p = std::make_unique<EventCubePreprocessor>(e, dtype, merged, r.boolean("split_polarity", true),
                                                  r.positive_or_none("max_incr_per_pixel"));
      break;
    case Kind::diff_quantized:
      p = std::make_unique<QuantizedPreprocessor>(e, dtype, merged, r.integer("negative_bit_length", 2, 8), 8,
                                                  r.boolean("normalization", false));
      break;
    case Kind::histo_quantized: {
      const int tbl = r.integer("total_bit_length", 1, 8);
      const int nbl = r.integer("negative_bit_length", 0, 8);
      if (nbl > tbl)
        r.fail("negative_bit_length", merged.at("negative_bit_length"),
               "must be <= total_bit_length (" + std::to_string(tbl) + ")");
      p = std::make_unique<QuantizedPreprocessor>(e, dtype, merged, nbl, tbl,
                                                  r.boolean("normalization", false));
      break;
    }
  }
  // The dtype the loaders will allocate must be one the kernel can write for some downsampling factor
  // (quantized kernels: ds 0 without normalisation wants int8/uint8, the rest floats).
  if (!p->accepts_dtype(dtype, 0) && !p->accepts_dtype(dtype, 1))
    throw ConfigError(
        std::string(name) + ": preprocess_dtype " + std::string(dtype_name(dtype)) +
        " cannot be written by this preprocessing (allowed: " + dtype_list(*p, 0) +
        (dtype_list(*p, 0) == dtype_list(*p, 1) ? "" : "; with downsampling: " + dtype_list(*p, 1)) + ")");
  return p;
}

const std::vector<std::string>& preprocessor_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const Entry& e : kRegistry) out.emplace_back(e.name);
    return out;
  }();
  return names;
}

Kwargs preprocessor_default_kwargs(std::string_view name) { return defaults_of(find_entry(name)); }

int preprocessor_channels(std::string_view name) { return find_entry(name).channels; }

}  // namespace evloader
