// SPDX-License-Identifier: Apache-2.0
#include "evloader/io/raw_format.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"

namespace evloader {

namespace {

constexpr int kMaxRawSide = 2048;

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

std::optional<int> parse_int(const std::string& s) {
  int value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return value;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    std::size_t pos = s.find(sep, start);
    out.push_back(s.substr(start, pos - start));
    if (pos == std::string::npos) break;
    start = pos + 1;
  }
  return out;
}

struct SystemInfo {
  RawEncoding encoding;
  Geometry geometry;
};

// Prophesee boards by decimal system_ID (formats.md §1.1 table).
std::optional<SystemInfo> lookup_system_id(int id) {
  static const std::map<int, SystemInfo> table = [] {
    std::map<int, SystemInfo> t;
    for (int i : {21, 23, 25, 28, 29, 33, 34, 35, 41, 151, 153, 161, 162})
      t[i] = {RawEncoding::evt2, {640, 480}};
    for (int i : {26, 31, 39}) t[i] = {RawEncoding::evt2, {1280, 720}};
    for (int i : {30, 46}) t[i] = {RawEncoding::evt3, {1280, 720}};
    t[40] = {RawEncoding::evt3, {640, 480}};
    for (int i : {48, 49, 50}) t[i] = {RawEncoding::evt3, {1280, 720}};
    return t;
  }();
  auto it = table.find(id);
  if (it == table.end()) return std::nullopt;
  return it->second;
}

bool integrator_is_prophesee_or_absent(const FileHeader& header) {
  bool any = false;
  for (const char* key : {"integrator_name", "camera_integrator_name", "plugin_integrator_name"}) {
    if (auto v = header.get(key)) {
      any = true;
      if (upper(*v) == "PROPHESEE") return true;
    }
  }
  return !any;
}

}  // namespace

std::optional<RawEncoding> parse_encoding_name(const std::string& name) {
  std::string n = upper(name);
  if (n == "EVT3" || n == "EVT3.0" || n == "3.0" || n == "EVT30") return RawEncoding::evt3;
  if (n == "EVT2" || n == "EVT2.0" || n == "2.0" || n == "EVT20") return RawEncoding::evt2;
  if (n == "EVT21" || n == "EVT2.1" || n == "2.1") return RawEncoding::evt21;
  return std::nullopt;
}

std::optional<Geometry> parse_geometry(const std::string& text) {
  auto parts = split(text, 'x');
  if (parts.size() != 2) return std::nullopt;
  auto w = parse_int(parts[0]);
  auto h = parse_int(parts[1]);
  if (!w || !h || *w <= 0 || *h <= 0) return std::nullopt;
  return Geometry{*w, *h};
}

RawFormat resolve_raw_format(const FileHeader& header, const RawFormatOverride& user,
                             const std::filesystem::path& origin) {
  auto fail = [&](const std::string& what) { throw_format_error(origin, 0, what); };

  std::optional<RawEncoding> encoding;
  std::optional<Geometry> geometry;
  std::optional<Evt21Order> order;

  if (auto format = header.get("format")) {
    auto parts = split(*format, ';');
    encoding = parse_encoding_name(parts[0]);
    if (!encoding && !user.encoding)
      fail("unsupported RAW encoding '" + parts[0] + "' (evloader reads EVT2, EVT21 and EVT3)");
    std::optional<int> w, h;
    for (std::size_t i = 1; i < parts.size(); ++i) {
      auto eq = parts[i].find('=');
      if (eq == std::string::npos) continue;
      std::string key = parts[i].substr(0, eq), value = parts[i].substr(eq + 1);
      if (key == "height") h = parse_int(value);
      if (key == "width") w = parse_int(value);
      if (key == "endianness") order = value == "legacy" ? Evt21Order::legacy : Evt21Order::little;
    }
    if (w && h && *w > 0 && *h > 0) geometry = Geometry{*w, *h};
  }
  if (!encoding) {
    if (auto evt = header.get("evt")) {
      encoding = parse_encoding_name(*evt);
      if (!encoding && !user.encoding) fail("unsupported RAW encoding 'evt " + *evt + "'");
    }
  }
  if (auto g = header.get("geometry")) {
    auto parsed = parse_geometry(*g);
    if (!parsed && !user.geometry) fail("malformed geometry '" + *g + "' (expected WIDTHxHEIGHT)");
    if (parsed && geometry && *parsed != *geometry && !user.geometry)
      fail("the 'format' and 'geometry' header keys disagree on the sensor size");
    if (!geometry) geometry = parsed;
  }
  std::optional<int> system_id;
  if (auto sid = header.get("system_ID")) system_id = parse_int(*sid);
  if (system_id && integrator_is_prophesee_or_absent(header)) {
    if (auto info = lookup_system_id(*system_id)) {
      if (!encoding) encoding = info->encoding;
      if (!geometry) geometry = info->geometry;
    }
  }
  if (!order) {
    if (auto e = header.get("endianness")) order = *e == "legacy" ? Evt21Order::legacy : Evt21Order::little;
  }
  // OpenEB assumes the legacy word order for Prophesee boards older than SYSTEM_EVK2_SAPHIR (0x37).
  if (!order && system_id && *system_id < 0x37 && integrator_is_prophesee_or_absent(header))
    order = Evt21Order::legacy;

  // EVT 2.0/2.1/3.0 words address 11 bits: a larger sensor size is a damaged or hostile header, and frames
  // or histograms sized from it could ask for gigabytes.
  if (geometry && !user.geometry && (geometry->width > kMaxRawSide || geometry->height > kMaxRawSide))
    fail("sensor size " + std::to_string(geometry->width) + "x" + std::to_string(geometry->height) +
         " in the header is larger than RAW words can address (" + std::to_string(kMaxRawSide) + "x" +
         std::to_string(kMaxRawSide) + ")");

  RawFormat out;
  if (user.encoding) encoding = user.encoding;
  if (!encoding)
    fail(
        "cannot tell the RAW encoding: the header has no 'format' or 'evt' key and no known system_ID "
        "(pass the encoding explicitly)");
  out.encoding = *encoding;
  out.geometry = user.geometry.value_or(geometry.value_or(Geometry{}));
  out.evt21_order = user.evt21_order.value_or(order.value_or(Evt21Order::little));
  return out;
}

}  // namespace evloader
