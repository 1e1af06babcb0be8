// SPDX-License-Identifier: Apache-2.0
// Prints per-window statistics of a recording with the C++ reader API: read_raw FILE [WINDOW_US].
#include <cstdlib>
#include <evloader/io/event_reader.hpp>
#include <exception>
#include <iostream>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: read_raw FILE [WINDOW_US]\n";
    return 2;
  }
  try {
    const evloader::Timestamp window = argc > 2 ? std::atoll(argv[2]) : 100'000;
    auto reader = evloader::EventReader::open(argv[1]);
    const auto g = reader->geometry();
    std::cout << reader->encoding_name() << " " << g.width << "x" << g.height << ", " << reader->event_count()
              << " events over " << reader->duration() << " us\n";
    reader->seek_time(reader->first_timestamp());
    evloader::EventBuffer events;  // reused for every window
    while (!reader->is_done()) {
      const evloader::Timestamp start = reader->current_time();
      reader->load_delta_t(window, events);
      std::uint64_t on = 0;
      for (const evloader::EventCD& e : events) on += e.p;
      std::cout << "[" << start << ", " << start + window << ") " << events.size() << " events, " << on
                << " ON\n";
    }
    std::cout << "violations: " << reader->stats().summary() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
