// SPDX-License-Identifier: Apache-2.0
// Helpers of the HDF5 tests: raw chunk access and hand-made files through the HDF5 C API (under the
// process-wide lock, as the library does), and reading whole recordings.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "evloader/io/event_reader.hpp"
#include "io/hdf5/h5_util.hpp"
#include "preprocess/tensor_file/hdf5_lock.hpp"

namespace evloader::test {

struct StoredChunk {
  std::uint64_t first_event = 0;
  std::uint64_t address = 0;
  std::uint32_t filter_mask = 0;
  std::vector<std::byte> bytes;
};

/// Every stored chunk of a 1-D chunked dataset, in order.
inline std::vector<StoredChunk> stored_chunks(const std::filesystem::path& file, const char* dataset) {
  detail::Hdf5Lock lock;
  namespace h5 = detail::h5;
  h5::Handle f = h5::file(H5Fopen(file.string().c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  h5::Handle ds = h5::dataset(H5Dopen2(f.get(), dataset, H5P_DEFAULT));
  h5::Handle space = h5::space(H5Dget_space(ds.get()));
  hsize_t n_chunks = 0;
  H5Dget_num_chunks(ds.get(), space.get(), &n_chunks);
  std::vector<StoredChunk> out;
  for (hsize_t i = 0; i < n_chunks; ++i) {
    StoredChunk c;
    hsize_t offset[1] = {0}, size = 0;
    unsigned mask = 0;
    haddr_t addr = 0;
    H5Dget_chunk_info(ds.get(), space.get(), i, offset, &mask, &addr, &size);
    c.first_event = offset[0];
    c.address = addr;
    c.bytes.resize(size);
    std::uint32_t filters = 0;
    H5Dread_chunk(ds.get(), H5P_DEFAULT, offset, &filters, c.bytes.data());
    c.filter_mask = filters;
    out.push_back(std::move(c));
  }
  return out;
}

/// Overwrite bytes of the file at an absolute offset.
inline void patch_file(const std::filesystem::path& file, std::uint64_t offset,
                       const std::vector<std::byte>& bytes) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline ReaderOptions memory_index() {
  ReaderOptions o;
  o.index_storage = IndexStorage::memory;
  return o;
}

inline std::vector<EventCD> read_all_events(const std::filesystem::path& file,
                                            const ReaderOptions& options = memory_index()) {
  auto reader = EventReader::open(file, options);
  auto events = reader->load_all();
  return {events.begin(), events.end()};
}

}  // namespace evloader::test
