// SPDX-License-Identifier: Apache-2.0
// PLACEHOLDER: replaced by the HDF5 event file reader.
#include "evloader/core/error.hpp"
#include "io/detail/readers.hpp"

namespace evloader::detail {
std::unique_ptr<EventReader> make_hdf5_event_reader(const std::filesystem::path& path, const ReaderOptions&) {
  throw_format_error(path, 0, "HDF5 event files are not supported yet");
}
}  // namespace evloader::detail
