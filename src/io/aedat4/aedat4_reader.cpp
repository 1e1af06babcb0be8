// SPDX-License-Identifier: Apache-2.0
// PLACEHOLDER: replaced by the AEDAT4 reader.
#include "evloader/core/error.hpp"
#include "io/detail/readers.hpp"

namespace evloader::detail {
std::unique_ptr<EventReader> make_aedat4_reader(const std::filesystem::path& path, const ReaderOptions&) {
  throw_format_error(path, 0, "AEDAT4 files are not supported yet");
}
}  // namespace evloader::detail
