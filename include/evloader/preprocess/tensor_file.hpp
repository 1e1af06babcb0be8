// SPDX-License-Identifier: Apache-2.0
// Precomputed tensor files in Metavision's HDF5 layout: a writer, and a reader that many threads can share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "evloader/core/types.hpp"

namespace evloader {

/// How the frames of a tensor file were cut: every delta_t microseconds, or every n_events events.
enum class TensorMode { delta_t, n_events };

/// Element type of the stored frames (the `data` dataset).
enum class TensorDtype { uint8, int8, uint16, int16, uint32, int32, float32, float64 };

[[nodiscard]] std::size_t tensor_dtype_size(TensorDtype dtype) noexcept;
/// The numpy name: "uint8", "float32", ...
[[nodiscard]] std::string_view tensor_dtype_name(TensorDtype dtype) noexcept;
/// From a numpy name; ConfigError for anything else.
[[nodiscard]] TensorDtype tensor_dtype_from_name(std::string_view name);
[[nodiscard]] std::string_view mode_name(TensorMode mode) noexcept;

/// A scalar attribute of `data` other than the layout's own ones: the preprocessing kwargs
/// (max_incr_per_pixel, split_polarity, ...). Written the way h5py writes Python values: bool as h5py's
/// boolean enum, integers as int64, floats as float64, strings as variable-length UTF-8.
using TensorAttr = std::variant<bool, std::int64_t, double, std::string>;

/// Everything a tensor file says about itself (attributes of `data`, its shape and type).
struct TensorFileInfo {
  std::string events_to_tensor;  ///< preprocessing name (fixed-length bytes attribute, like np.string_)
  TensorMode mode = TensorMode::delta_t;
  std::uint32_t delta_t = 0;  ///< microseconds per frame; 0 in n_events mode
  std::int64_t n_events = 0;  ///< events per frame in n_events mode; 0 in delta_t mode
  int channels = 0;           ///< stored frame shape (C, H, W)
  int height = 0;
  int width = 0;
  Geometry sensor;  ///< event_input_width / event_input_height (sensor size the events came from)
  TensorDtype dtype = TensorDtype::float32;  ///< dtype of `data` (uint8 when store_as_uint8)
  bool store_as_uint8 = false;               ///< values stored as round(255 * x), read back as x / 255
  /// evloader's extension: absolute time (µs) of the start of frame 0; frame i covers
  /// [start_ts + i * delta_t, start_ts + (i + 1) * delta_t). Absent in Metavision's files (origin 0).
  std::optional<Timestamp> start_ts;
  std::map<std::string, TensorAttr> kwargs;  ///< every other scalar attribute, by name
};

/// What a consumer expects of a file; TensorFileReader::check() compares it with the file.
/// Zero / empty fields are not checked.
struct TensorRequest {
  std::string events_to_tensor;
  std::optional<TensorMode> mode;
  std::uint32_t delta_t = 0;
  std::int64_t n_events = 0;
  int channels = 0;
  /// Output size: must be the sensor size divided by a power of two (in both directions, as Metavision's
  /// check_input_power_2 requires) and at most the stored size. 0 = the stored size.
  int height = 0;
  int width = 0;
};

struct TensorFileWriterOptions {
  int compression_level = 4;   ///< gzip level 1..9 (h5py's default is 4)
  std::int64_t grow_by = 100;  ///< rows added to `data` at a time (trimmed on close)
  /// Threads compressing the frames of one write() call (gzip dominates the cost of writing: about 20 ms
  /// per 1280x720x2 float32 frame on one core). 1 = the calling thread only.
  int compression_threads = 1;
};

/// Writes a tensor file: dataset `data` [N, C, H, W], chunks (1, C, H, W), gzip, maxshape (None, C, H, W),
/// with the attributes of TensorFileInfo (and `last_timestamps` [N] int64 in n_events mode).
/// Frames are compressed outside the process-wide HDF5 lock, so writers of different files on different
/// threads run in parallel. One writer object is not thread-safe.
class TensorFileWriter {
 public:
  /// Creates (truncates) `path`. `info.dtype` is the dtype of the frames given to write(); with
  /// store_as_uint8 the frames are float32 in [0, 1] and the file stores uint8. info.sensor must be
  /// known; delta_t must be > 0 in delta_t mode and 0 in n_events mode (n_events > 0 there).
  /// start_ts, when set, is stored as the `start_ts` attribute. Throws ConfigError or IoError.
  TensorFileWriter(const std::filesystem::path& path, const TensorFileInfo& info,
                   const TensorFileWriterOptions& options = {});
  ~TensorFileWriter();  ///< closes (errors are swallowed: call close() to see them)
  TensorFileWriter(TensorFileWriter&&) noexcept;
  TensorFileWriter& operator=(TensorFileWriter&&) noexcept;

  /// Appends `count` frames of info.dtype (C * H * W elements each, C-contiguous) at the cursor.
  /// In n_events mode `last_timestamps` gives the time of the last event of each frame (count values).
  void write(const void* frames, std::int64_t count, std::span<const Timestamp> last_timestamps = {});
  void write(std::span<const float> frames, std::span<const Timestamp> last_timestamps = {});

  /// Moves the cursor back to `index` (<= the cursor): later writes overwrite, close() trims there.
  void set_cursor(std::int64_t index);
  [[nodiscard]] std::int64_t index() const noexcept;
  /// As the reader will see it: dtype is the stored dtype (uint8 with store_as_uint8).
  [[nodiscard]] const TensorFileInfo& info() const noexcept;
  /// The dtype write() takes (the info.dtype given to the constructor).
  [[nodiscard]] TensorDtype input_dtype() const noexcept;
  [[nodiscard]] const std::filesystem::path& path() const noexcept;

  /// Trims `data` to the frames written and closes the file. Later calls do nothing.
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Reads a tensor file written by TensorFileWriter, by Metavision's HDF5Writer, or by any tool that follows
/// the layout. The file is opened once; all const methods may be called from several threads at once:
/// HDF5 is entered only under the process-wide HDF5 lock, and only to fetch raw chunks; decompression
/// (libdeflate), type conversion and resizing run outside the lock, in parallel.
class TensorFileReader {
 public:
  /// Throws IoError (missing / unreadable), FormatError (not HDF5, no 4-D `data`, a missing or
  /// inconsistent attribute: events_to_tensor, delta_t (delta_t mode), mode, shape, last_timestamps in
  /// n_events mode). Every message names the file.
  explicit TensorFileReader(const std::filesystem::path& path);
  ~TensorFileReader();
  TensorFileReader(TensorFileReader&&) noexcept;
  TensorFileReader& operator=(TensorFileReader&&) noexcept;

  [[nodiscard]] const std::filesystem::path& path() const noexcept;
  [[nodiscard]] const TensorFileInfo& info() const noexcept;
  [[nodiscard]] std::int64_t num_frames() const noexcept;
  /// Metavision's get_duration: num_frames * delta_t (delta_t mode), the last of last_timestamps
  /// (n_events mode; 0 when empty).
  [[nodiscard]] Timestamp duration() const noexcept;
  /// Metavision's _get_original_size_file: event_input_width/height, or else the stored size shifted left
  /// by the legacy `downsampling_factor` (or `shift`) attribute.
  [[nodiscard]] Geometry sensor_size() const noexcept;
  /// n_events mode: time of the last event of each frame (empty in delta_t mode).
  [[nodiscard]] const std::vector<Timestamp>& last_timestamps() const noexcept;

  /// Throws ConfigError naming the file when the request does not match the file.
  void check(const TensorRequest& request) const;

  /// Frames [first, first + count) as float32 [count, C, height, width] into `out` (exactly that many
  /// floats): converted to float32, divided by 255 when store_as_uint8, then INTER_AREA-resized when
  /// height x width is smaller than the stored size (any factor; check() enforces powers of two).
  /// Frames at or past num_frames() are zeros (a window that runs past the end of the recording reads
  /// as "no events"). height/width 0 = stored size. ConfigError for first < 0, a larger size or a wrong
  /// `out` size; FormatError for a corrupt chunk.
  void read_frames(std::int64_t first, std::int64_t count, int height, int width, std::span<float> out) const;
  /// delta_t mode: frames [t0 / delta_t, t1 / delta_t) (times relative to frame 0, i.e. to start_ts) -
  /// Metavision's _load_hdf5 slice. Returns the number of frames; `out` must hold exactly that many.
  std::int64_t read_window(Timestamp t0, Timestamp t1, int height, int width, std::span<float> out) const;
  /// Frames as stored (info().dtype, no conversion) into `out` (count * C * H * W * dtype_size bytes);
  /// frames past the end are zero bytes.
  void read_raw(std::int64_t first, std::int64_t count, std::span<std::byte> out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace evloader
