// SPDX-License-Identifier: Apache-2.0
// Replays inputs through a fuzz harness without libFuzzer: the program CI builds with g++ (and with
// ASan/UBSan) to run every corpus file and every kept crash reproducer. Arguments are files or folders;
// options starting with '-' (libFuzzer's, such as -runs=0) are ignored so both builds share a command line.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

int replay_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A copy of exactly the file's size, so ASan sees reads past the end of the input.
  std::vector<std::uint8_t> input(bytes.begin(), bytes.end());
  auto* data = input.empty() ? nullptr : input.data();
  LLVMFuzzerTestOneInput(data, input.size());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t replayed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg(argv[i]);
    if (argv[i][0] == '-') continue;
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::recursive_directory_iterator(arg))
        if (entry.is_regular_file()) files.push_back(entry.path());
      std::sort(files.begin(), files.end());
      for (const auto& file : files) replayed += replay_file(file);
    } else if (std::filesystem::is_regular_file(arg, ec)) {
      replayed += replay_file(arg);
    }
  }
  std::printf("replayed %zu inputs\n", replayed);
  return 0;
}
