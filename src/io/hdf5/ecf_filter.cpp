// SPDX-License-Identifier: Apache-2.0
// The ECF codec as an HDF5 filter (id 0x8ECF). The callback calls only malloc/free, never an HDF5
// function, so the same H5Z_class2_t serves our libhdf5 and any other copy in the process (h5py's).
#include <hdf5.h>

#include <cstdlib>

#include "evloader/io/ecf.hpp"
#include "io/hdf5/ecf_internal.hpp"
#include "preprocess/tensor_file/hdf5_lock.hpp"

namespace evloader::ecf {

namespace {

// HDF5's filter contract: on success replace *buf (malloc'd, freed with free) and return the number of
// valid bytes in it; on failure leave *buf alone and return 0. HDF5 frees or reuses the buffer with the
// C library's free/realloc (H5MM in release builds), hence malloc here and nothing else.
std::size_t ecf_filter(unsigned int flags, std::size_t /*cd_nelmts*/, const unsigned int* /*cd_values*/,
                       std::size_t nbytes, std::size_t* buf_size, void** buf) noexcept {
  if (buf == nullptr || *buf == nullptr || buf_size == nullptr) return 0;
  if (flags & H5Z_FLAG_REVERSE) {
    const auto* in = static_cast<const std::uint8_t*>(*buf);
    ChunkHeader header;
    detail::DecodeError error;
    // An empty chunk holds no record: a success would return 0 bytes, which HDF5 reads as a failure
    // anyway, so refuse it before touching *buf.
    if (!detail::parse_header(in, nbytes, header, error) || header.event_count == 0) return 0;
    const std::size_t bytes = header.event_count * sizeof(EventCD);
    void* out = std::malloc(bytes);
    if (out == nullptr) return 0;
    std::size_t n = 0;
    if (!detail::try_decode(in, nbytes, static_cast<EventCD*>(out), header.event_count, n, error)) {
      std::free(out);
      return 0;
    }
    std::free(*buf);
    *buf = out;
    *buf_size = bytes;
    return n * sizeof(EventCD);
  }
  // Encode: HDF5 hands over a whole chunk, with fill values (t = 0) past the dataset's end, so times
  // below the running maximum are stored as that maximum, as the reference filter does.
  if (nbytes % sizeof(EventCD) != 0) return 0;
  std::span<const EventCD> events(static_cast<const EventCD*>(*buf), nbytes / sizeof(EventCD));
  if (detail::validate(events, false) != nullptr) return 0;
  const std::size_t capacity = max_encoded_size(events.size());
  void* out = std::malloc(capacity);
  if (out == nullptr) return 0;
  const std::size_t size =
      detail::encode_unchecked(events, static_cast<std::uint8_t*>(out), detail::choose(events));
  std::free(*buf);
  *buf = out;
  *buf_size = capacity;
  return size;
}

const H5Z_class2_t kFilterClass = {
    H5Z_CLASS_T_VERS,
    static_cast<H5Z_filter_t>(kFilterId),
    1,  // encoder present
    1,  // decoder present
    "ECF (Prophesee event compression, evloader)",
    nullptr,  // can_apply
    nullptr,  // set_local
    &ecf_filter,
};

}  // namespace

const void* h5z_filter_class() noexcept { return &kFilterClass; }

bool register_filter() {
  evloader::detail::Hdf5Lock lock;
  if (H5Zfilter_avail(static_cast<H5Z_filter_t>(kFilterId)) > 0) return true;
  return H5Zregister(&kFilterClass) >= 0;
}

}  // namespace evloader::ecf
