// SPDX-License-Identifier: Apache-2.0
// Built when EVLOADER_WITH_HDF5 is OFF: HDF5 files are refused with a clear message.
#include "evloader/core/error.hpp"
#include "io/detail/readers.hpp"

namespace evloader::detail {
std::unique_ptr<EventReader> make_hdf5_event_reader(const std::filesystem::path& path, const ReaderOptions&) {
  throw_format_error(path, 0, "HDF5 event files need evloader built with EVLOADER_WITH_HDF5=ON");
}
}  // namespace evloader::detail
