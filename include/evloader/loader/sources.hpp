// SPDX-License-Identifier: Apache-2.0
// The two kinds of slot streams of the SequentialDataLoader: event recordings turned into tensors by a
// preprocessing kernel, and precomputed tensor files read (and area-resized) frame by frame.
#pragma once

#include <filesystem>
#include <memory>

#include "evloader/io/event_reader.hpp"
#include "evloader/loader/slot_filler.hpp"
#include "evloader/preprocess/preprocessor.hpp"

namespace evloader {

/// Reads windows [start, start + duration) of an event recording (opened once) and accumulates them with
/// `preprocessor` into T frames of C x H x W, coordinates divided by 2^downsampling_factor. Consecutive
/// windows are read sequentially; any other window seeks through the time index.
[[nodiscard]] std::unique_ptr<TensorSource> open_event_source(
    const std::filesystem::path& path, const ReaderOptions& reader_options,
    std::shared_ptr<const Preprocessor> preprocessor, int downsampling_factor, const BatchShape& shape);

/// Reads frames [ (start - origin) / delta_t, (start + duration - origin) / delta_t ) of a precomputed
/// tensor file (origin: its start_ts attribute, else 0), area-resized to H x W, /255 when stored as uint8.
/// Throws ConfigError naming the file when its delta_t, channels or size do not fit the request.
[[nodiscard]] std::unique_ptr<TensorSource> open_tensor_file_source(const std::filesystem::path& path,
                                                                    Timestamp delta_t,
                                                                    const BatchShape& shape);

}  // namespace evloader
