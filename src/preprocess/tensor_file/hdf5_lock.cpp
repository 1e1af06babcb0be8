// SPDX-License-Identifier: Apache-2.0
// The process-wide HDF5 mutex shared by the tensor-file and HDF5 event-file code.
#include "preprocess/tensor_file/hdf5_lock.hpp"

#include <hdf5.h>

namespace evloader::detail {

std::mutex& hdf5_mutex() {
  static std::mutex mutex;
  return mutex;
}

Hdf5Lock::Hdf5Lock() : guard_(hdf5_mutex()) {
  // No HDF5 clean-up at process exit: after a close that failed (a full disk), libhdf5's atexit handler
  // closes the broken file again and crashes the process (status 139 instead of the error we reported).
  // evloader closes every file it opens itself. Must run before the library initialises; later it is a
  // harmless no-op (another user of this libhdf5 started it first).
  static const bool no_atexit = (H5dont_atexit() >= 0);
  (void)no_atexit;
  // Thread-safe HDF5 builds keep the error-printing setting per thread, so silence it once per thread.
  thread_local bool silenced = false;
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

}  // namespace evloader::detail
