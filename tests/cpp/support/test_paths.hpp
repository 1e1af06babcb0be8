// SPDX-License-Identifier: Apache-2.0
// Where the real recordings live (../shared/data/real next to the checkout, or EVLOADER_DATA_DIR).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#ifndef EVLOADER_SOURCE_DIR
#define EVLOADER_SOURCE_DIR "."
#endif

namespace evloader::test {

/// Folder of the real recordings, or an empty path when absent (tests then GTEST_SKIP()).
inline std::filesystem::path real_data_dir() {
  if (const char* env = std::getenv("EVLOADER_DATA_DIR")) return env;
  auto dir = std::filesystem::path(EVLOADER_SOURCE_DIR) / ".." / "shared" / "data" / "real";
  return std::filesystem::exists(dir) ? std::filesystem::weakly_canonical(dir) : std::filesystem::path{};
}

/// A fresh temporary folder per test binary run.
inline std::filesystem::path temp_dir() {
  auto dir = std::filesystem::temp_directory_path() / ("evloader_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace evloader::test

#include <unistd.h>
