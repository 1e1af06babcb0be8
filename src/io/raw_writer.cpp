// SPDX-License-Identifier: Apache-2.0
#include "evloader/io/raw_writer.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>

#include "evloader/core/error.hpp"
#include "evloader/io/header.hpp"

namespace evloader {

namespace {

std::string now_text() {
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
  return text;
}

}  // namespace

RawWriter::RawWriter(const std::filesystem::path& path, RawEncoding encoding, Geometry geometry,
                     const std::vector<std::pair<std::string, std::string>>& extra_header,
                     Evt21Order evt21_order)
    : path_(path), geometry_(geometry), encoder_(make_encoder(encoding, evt21_order)) {
  if (!geometry.known() || geometry.width > 2048 || geometry.height > 2048)
    throw ConfigError("RawWriter: geometry must be between 1x1 and 2048x2048, got " +
                      std::to_string(geometry.width) + "x" + std::to_string(geometry.height));
  std::string name = to_string(encoding);
  std::string format = name;
  if (encoding == RawEncoding::evt21)
    format += evt21_order == Evt21Order::legacy ? ";endianness=legacy" : ";endianness=little";
  format += ";height=" + std::to_string(geometry.height) + ";width=" + std::to_string(geometry.width);
  const char* evt = encoding == RawEncoding::evt3 ? "3.0" : encoding == RawEncoding::evt2 ? "2.0" : "2.1";
  // OpenEB writes its header keys sorted; a map gives the same order, and extra keys override ours.
  std::map<std::string, std::string> keys = {
      {"camera_integrator_name", "evloader"},
      {"date", now_text()},
      {"evt", evt},
      {"format", format},
      {"geometry", std::to_string(geometry.width) + "x" + std::to_string(geometry.height)},
      {"plugin_integrator_name", "evloader"},
  };
  for (const auto& [k, v] : extra_header) {
    if (k.empty() || k.find_first_of(" \n\r") != std::string::npos ||
        v.find_first_of("\n\r") != std::string::npos)
      throw ConfigError("RawWriter: header key '" + k + "' or its value contains spaces or line breaks");
    keys[k] = v;
  }
  out_.open(path, std::ios::binary | std::ios::trunc);
  if (!out_) throw_io_error(path, "cannot create file");
  std::string header = format_header({keys.begin(), keys.end()}, true);
  out_.write(header.data(), static_cast<std::streamsize>(header.size()));
  if (!out_) throw_io_error(path, "write failed");
}

RawWriter::~RawWriter() {
  try {
    close();
  } catch (...) {  // destructors never throw; call close() to see errors
  }
}

void RawWriter::write(std::span<const EventCD> events, std::span<const EventExtTrigger> triggers) {
  if (closed_) throw ConfigError("RawWriter: write after close");
  for (const EventCD& e : events)
    if (e.x >= geometry_.width || e.y >= geometry_.height)
      throw ConfigError("RawWriter: event at x=" + std::to_string(e.x) + " y=" + std::to_string(e.y) +
                        " lies outside the geometry " + std::to_string(geometry_.width) + "x" +
                        std::to_string(geometry_.height));
  encoder_->encode(events, triggers, words_);
  events_written_ += events.size();
  flush_words();
}

void RawWriter::flush_words() {
  if (words_.empty()) return;
  out_.write(reinterpret_cast<const char*>(words_.data()), static_cast<std::streamsize>(words_.size()));
  words_.clear();
  if (!out_) throw_io_error(path_, "write failed (disk full?)");
}

void RawWriter::close() {
  if (closed_) return;
  closed_ = true;
  encoder_->finish(words_);
  flush_words();
  out_.close();
  if (!out_) throw_io_error(path_, "close failed");
}

}  // namespace evloader
