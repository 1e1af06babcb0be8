// SPDX-License-Identifier: Apache-2.0
// The one process-wide lock around every HDF5 library call made by evloader.
#pragma once

#include <mutex>

namespace evloader::detail {

/// Every HDF5 call in evloader (tensor files, HDF5 event files) runs while holding this mutex: Debian's
/// and many other builds of libhdf5 are not thread-safe, and even thread-safe builds serialise every call
/// behind one global lock. Hold it only for the HDF5 calls themselves; decompress and compute outside.
std::mutex& hdf5_mutex();

/// Locks hdf5_mutex() and, the first time on each thread, turns off HDF5's automatic printing of error
/// stacks to stderr (evloader reports HDF5 failures as exceptions that name the file instead).
class Hdf5Lock {
 public:
  Hdf5Lock();
  Hdf5Lock(const Hdf5Lock&) = delete;
  Hdf5Lock& operator=(const Hdf5Lock&) = delete;

 private:
  std::lock_guard<std::mutex> guard_;
};

}  // namespace evloader::detail
