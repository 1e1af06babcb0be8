// SPDX-License-Identifier: Apache-2.0
// Constructors of the concrete readers; EventReader::open dispatches to them.
#pragma once

#include <filesystem>
#include <memory>

#include "evloader/io/event_reader.hpp"

namespace evloader::detail {

std::unique_ptr<EventReader> make_raw_reader(const std::filesystem::path& path, const ReaderOptions& options);
std::unique_ptr<EventReader> make_dat_reader(const std::filesystem::path& path, const ReaderOptions& options);
std::unique_ptr<EventReader> make_hdf5_event_reader(const std::filesystem::path& path,
                                                    const ReaderOptions& options);
std::unique_ptr<EventReader> make_aedat4_reader(const std::filesystem::path& path,
                                                const ReaderOptions& options);

}  // namespace evloader::detail
