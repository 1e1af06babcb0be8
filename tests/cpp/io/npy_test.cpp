// SPDX-License-Identifier: Apache-2.0
// .npy files: hand-made headers of every version and dtype form, malformed-header fuzzing, writer output,
// and box files in the legacy Gen1 and the 40-byte EventBbox layouts.
#include "evloader/io/npy.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

namespace fs = std::filesystem;

fs::path temp_file(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return test::temp_dir() / (std::string(info->test_suite_name()) + "_" + info->name() + "_" + name);
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::span<const std::byte> as_span(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Magic, version, header length, then the header text padded with spaces and '\n' to a multiple of 64 bytes,
// as numpy lays it out; then the data bytes.
std::string npy(int major, const std::string& header, const std::string& data = {}) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string text = header;
  text.append((64 - (prefix + text.size() + 1) % 64) % 64, ' ');
  text.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  for (std::size_t i = 0; i < (major == 1 ? 2u : 4u); ++i)
    out.push_back(static_cast<char>(text.size() >> (8 * i)));
  return out + text + data;
}

// Value bytes in either byte order, built byte by byte.
template <class T>
std::string le(T value) {
  std::string out(sizeof(T), '\0');
  std::memcpy(out.data(), &value, sizeof(T));
  static_assert(std::endian::native == std::endian::little);
  return out;
}
template <class T>
std::string be(T value) {
  std::string out = le(value);
  return {out.rbegin(), out.rend()};
}

NpyArray parse(const std::string& bytes) { return parse_npy(as_span(bytes), "mem.npy"); }

void expect_format_error(const std::string& bytes, const std::string& needle = {}) {
  try {
    (void)parse(bytes);
    ADD_FAILURE() << "expected FormatError for: " << bytes.substr(0, 160);
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("mem.npy"), std::string::npos) << msg;
    EXPECT_NE(msg.find("at byte"), std::string::npos) << msg;
    if (!needle.empty()) {
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  }
}

const std::string kBboxDescr =
    "[('t', '<i8'), ('x', '<f4'), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), ('class_id', '<u4'), "
    "('track_id', '<u4'), ('class_confidence', '<f4'), ('', '|V4')]";

std::string bbox_record(std::int64_t t, float x, float y, float w, float h, std::uint32_t cls,
                        std::uint32_t track, float conf) {
  return le(t) + le(x) + le(y) + le(w) + le(h) + le(cls) + le(track) + le(conf) +
         std::string("\xAA\xBB\xCC\xDD");
}

// ---- headers ----------------------------------------------------------------------------------------------

TEST(NpyParse, Version1PlainDtype) {
  const std::string data = le(1.5f) + le(-2.0f) + le(3.0f) + le(4.0f) + le(5.0f) + le(6.25f);
  const NpyArray a = parse(npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data));
  EXPECT_FALSE(a.structured);
  EXPECT_FALSE(a.fortran_order);
  ASSERT_EQ(a.fields.size(), 1u);
  EXPECT_EQ(a.fields[0].name, "");
  EXPECT_EQ(a.fields[0].kind, 'f');
  EXPECT_EQ(a.fields[0].byte_order, '<');
  EXPECT_EQ(a.fields[0].size, 4u);
  EXPECT_EQ(a.itemsize, 4u);
  EXPECT_EQ(a.shape, (std::vector<std::size_t>{2, 3}));
  EXPECT_EQ(a.count(), 6u);
  ASSERT_EQ(a.data.size(), 24u);
  EXPECT_EQ(std::memcmp(a.data.data(), data.data(), 24), 0);
}

TEST(NpyParse, ScalarShapeAndExtraTrailingData) {
  const NpyArray a =
      parse(npy(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (), }", le(std::int64_t{-7}) + "xx"));
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.count(), 1u);
  EXPECT_EQ(a.data.size(), 8u);  // bytes after the declared data are not part of the array
}

TEST(NpyParse, Version2And3Headers) {
  const NpyArray v2 = parse(npy(2, "{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }",
                                le(std::int16_t{1}) + le(std::int16_t{2}) + le(std::int16_t{-3})));
  EXPECT_EQ(v2.shape, (std::vector<std::size_t>{3}));
  EXPECT_EQ(v2.itemsize, 2u);
  EXPECT_EQ(v2.data.size(), 6u);
  // Version 3 is UTF-8; versions 1 and 2 are latin-1 (numpy writes 'é' as the single byte 0xE9 in v1).
  const NpyArray v3 =
      parse(npy(3, "{'descr': [('\xC3\xA9', '<f4')], 'fortran_order': False, 'shape': (1,), }", le(1.0f)));
  const NpyArray v1 =
      parse(npy(1, "{'descr': [('\xE9', '<f4')], 'fortran_order': False, 'shape': (1,), }", le(1.0f)));
  ASSERT_EQ(v3.fields.size(), 1u);
  ASSERT_EQ(v1.fields.size(), 1u);
  EXPECT_EQ(v3.fields[0].name, "\xC3\xA9");
  EXPECT_EQ(v1.fields[0].name, "\xC3\xA9");
  EXPECT_TRUE(v1.structured);
}

TEST(NpyParse, NewBoxLayoutWithPaddingField) {
  const std::string data = bbox_record(100, 1, 2, 3, 4, 5, 6, 0.5f);
  const NpyArray a =
      parse(npy(1, "{'descr': " + kBboxDescr + ", 'fortran_order': False, 'shape': (1,), }", data));
  EXPECT_TRUE(a.structured);
  EXPECT_EQ(a.itemsize, 40u);
  ASSERT_EQ(a.fields.size(), 9u);
  const std::vector<std::pair<std::string, std::size_t>> expected = {
      {"t", 0},  {"x", 8},         {"y", 12},        {"w", 16},
      {"h", 20}, {"class_id", 24}, {"track_id", 28}, {"class_confidence", 32},
      {"", 36}};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(a.fields[i].name, expected[i].first);
    EXPECT_EQ(a.fields[i].offset, expected[i].second);
  }
  EXPECT_EQ(a.fields[8].kind, 'V');
  EXPECT_EQ(a.fields[8].size, 4u);
  ASSERT_NE(a.field("class_confidence"), nullptr);
  EXPECT_EQ(a.field("nope"), nullptr);
  const auto boxes = boxes_from_npy(a, "mem.npy");
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0], (EventBbox{100, 1, 2, 3, 4, 5, 6, 0.5f, 0}));  // padding bytes not carried over
}

TEST(NpyParse, Gen1LegacyBoxLayoutIsConverted) {
  // Packed, itemsize 33: ts u8, x y w h f4, class_id u1, confidence f4, track_id u4.
  const std::string descr =
      "[('ts', '<u8'), ('x', '<f4'), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), ('class_id', 'u1'), "
      "('confidence', '<f4'), ('track_id', '<u4')]";
  std::string data;
  data += le(std::uint64_t{49999}) + le(10.5f) + le(20.f) + le(30.f) + le(40.f) + std::string(1, '\x01') +
          le(0.75f) + le(std::uint32_t{12});
  data += le(std::uint64_t{1} << 40) + le(-1.f) + le(0.f) + le(1.f) + le(2.f) + std::string(1, '\xFF') +
          le(1.f) + le(std::uint32_t{4000000000u});
  const NpyArray a = parse(npy(1, "{'descr': " + descr + ", 'fortran_order': False, 'shape': (2,), }", data));
  EXPECT_EQ(a.itemsize, 33u);
  EXPECT_EQ(a.field("class_id")->offset, 24u);
  EXPECT_EQ(a.field("class_id")->byte_order, '|');
  EXPECT_EQ(a.field("confidence")->offset, 25u);
  EXPECT_EQ(a.field("track_id")->offset, 29u);
  const auto boxes = boxes_from_npy(a, "mem.npy");
  ASSERT_EQ(boxes.size(), 2u);
  EXPECT_EQ(boxes[0], (EventBbox{49999, 10.5f, 20.f, 30.f, 40.f, 1, 12, 0.75f, 0}));
  EXPECT_EQ(boxes[1], (EventBbox{std::int64_t{1} << 40, -1.f, 0.f, 1.f, 2.f, 255, 4000000000u, 1.f, 0}));
}

TEST(NpyParse, NestedStructsTitlesAndSubarrays) {
  const std::string header =
      "{'descr': [(('my title', 'a'), '<i4'), (\"b\", \">f8\", (2, 3)), ('n', [('p', 'u1'), ('q', [('r', "
      "'>i2')])]), ('s', '|S5'), ('u', '<U3'), ('d', '<M8[us]'), ('ok', '?')], 'fortran_order': False, "
      "'shape': (2,), }";
  const NpyArray a = parse(npy(1, header, std::string(2 * 87, '\x11')));
  ASSERT_EQ(a.fields.size(), 7u);
  EXPECT_EQ(a.fields[0].name, "a");
  EXPECT_EQ(a.fields[1].name, "b");
  EXPECT_EQ(a.fields[1].offset, 4u);
  EXPECT_EQ(a.fields[1].byte_order, '>');
  EXPECT_EQ(a.fields[1].size, 8u);
  EXPECT_EQ(a.fields[1].shape, (std::vector<std::size_t>{2, 3}));
  EXPECT_EQ(a.fields[1].total_size(), 48u);
  const NpyField& n = a.fields[2];
  EXPECT_EQ(n.offset, 52u);
  EXPECT_EQ(n.kind, 'V');
  EXPECT_EQ(n.size, 3u);
  ASSERT_EQ(n.children.size(), 2u);
  EXPECT_EQ(n.children[1].name, "q");
  EXPECT_EQ(n.children[1].offset, 1u);
  ASSERT_EQ(n.children[1].children.size(), 1u);
  EXPECT_EQ(n.children[1].children[0].byte_order, '>');
  EXPECT_EQ(a.fields[3].offset, 55u);
  EXPECT_EQ(a.fields[3].kind, 'S');
  EXPECT_EQ(a.fields[4].offset, 60u);
  EXPECT_EQ(a.fields[4].size, 12u);  // 3 UCS-4 characters
  EXPECT_EQ(a.fields[5].kind, 'M');
  EXPECT_EQ(a.fields[5].offset, 72u);
  EXPECT_EQ(a.fields[6].kind, 'b');
  EXPECT_EQ(a.fields[6].offset, 80u);
  EXPECT_EQ(a.itemsize, 81u);
  EXPECT_EQ(a.data.size(), 162u);
}

TEST(NpyParse, AcceptsPythonLiteralVariants) {
  // Double quotes, keys in another order, no trailing comma, Python 2 long ints, escapes, fortran order.
  const NpyArray a = parse(npy(1,
                               "{\"shape\": (2L, 1), \"fortran_order\": True, \"descr\": [('it\\'s', '<u2'), "
                               "(\"\\x41\\u00e9\", 'i1')]}",
                               std::string(6, '\0')));
  EXPECT_TRUE(a.fortran_order);
  EXPECT_EQ(a.shape, (std::vector<std::size_t>{2, 1}));
  ASSERT_EQ(a.fields.size(), 2u);
  EXPECT_EQ(a.fields[0].name, "it's");
  EXPECT_EQ(a.fields[1].name, "A\xC3\xA9");
  EXPECT_EQ(a.itemsize, 3u);
}

TEST(NpyParse, RejectsMalformedHeaders) {
  const std::string ok_tail = ", 'fortran_order': False, 'shape': (1,), }";
  expect_format_error("", "bad magic");
  expect_format_error("\x93NUMPY\x01", "bad magic");
  expect_format_error("\x93NUMPZ\x01\x00\x10\x00" + std::string(16, ' '), "bad magic");
  expect_format_error(npy(4, "{'descr': '<f4'" + ok_tail, le(1.f)), "version");
  std::string truncated = npy(1, "{'descr': '<f4'" + ok_tail, le(1.f));
  expect_format_error(truncated.substr(0, 40), "ends inside");
  expect_format_error(truncated.substr(0, 11));
  expect_format_error(truncated.substr(0, truncated.size() - 1), "data section");
  expect_format_error(npy(1, "{'descr': '<f4"), "unterminated string");
  expect_format_error(npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), "), "missing closing");
  expect_format_error(npy(1, "{'descr': '|O'" + ok_tail, "12345678"), "object");
  expect_format_error(npy(1, "{'descr': [('a', '<i4'), ('b', '|O')]" + ok_tail, "12345678"), "object");
  expect_format_error(npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"),
                      "overflow");
  expect_format_error(npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }"),
                      "64 bits");
  expect_format_error(npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }"), "non-negative");
  expect_format_error(npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': [1], }"), "tuple");
  expect_format_error(npy(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }"), "bool");
  expect_format_error(npy(1, "{'descr': '<f4', 'shape': (1,), }"), "keys");
  expect_format_error(npy(1, "{'descr': '<f4', 'extra': 1" + ok_tail), "unexpected key");
  expect_format_error(npy(1, "{'descr': '<i3'" + ok_tail), "unsupported size");
  expect_format_error(npy(1, "{'descr': '<q8'" + ok_tail), "unknown dtype kind");
  expect_format_error(npy(1, "{'descr': '<f'" + ok_tail), "bad type string");
  expect_format_error(npy(1, "{'descr': [('a', '<i4'), ('a', '<i4')]" + ok_tail), "duplicate");
  expect_format_error(npy(1, "{'descr': [('a')]" + ok_tail), "structured dtype entry");
  expect_format_error(npy(1, "{'descr': [(1, '<i4')]" + ok_tail), "field name");
  expect_format_error(npy(1, "{'descr': '<f4' 'fortran_order': False}"), "expected ','");
  expect_format_error(npy(1, "['descr', '<f4']"), "dictionary");
  expect_format_error(npy(1, "{'descr': '<f4'" + ok_tail + " junk"), "after the header");
  expect_format_error(npy(1, std::string(200, '[') + std::string(200, ']')), "nesting");
  // The offset points into the header: the unterminated string starts at byte 10 + 10.
  expect_format_error(npy(1, "{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }"), "at byte");
  try {
    (void)parse(npy(1, "{'descr': \"<f4" + ok_tail));
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("at byte 20"), std::string::npos) << e.what();
  }
}

TEST(NpyParse, FuzzRandomMutationsNeverCrash) {
  const std::vector<std::string> seeds = {
      npy(1, "{'descr': " + kBboxDescr + ", 'fortran_order': False, 'shape': (2,), }",
          bbox_record(1, 2, 3, 4, 5, 6, 7, 8) + bbox_record(9, 10, 11, 12, 13, 14, 15, 16)),
      npy(1,
          "{'descr': [(('t', 'a'), '<i4'), ('b', '>f8', (2, 3)), ('n', [('p', 'u1'), ('q', [('r', "
          "'>i2')])])], "
          "'fortran_order': True, 'shape': (1, 1), }",
          std::string(55, '\x01')),
      npy(3, "{'descr': '<U2', 'fortran_order': False, 'shape': (3,), }", std::string(24, 'a')),
  };
  const std::string alphabet = "()[]{}'\",: 0123456789-<>|=uifVSUOMbL\\x\n\x93";
  std::mt19937 rng(20240607);
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const std::size_t pos = rng() % s.size();
      const char c = rng() % 2 ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng());
      switch (rng() % 5) {
        case 0: s[pos] = c; break;
        case 1: s.insert(s.begin() + static_cast<std::ptrdiff_t>(pos), c); break;
        case 2: s.erase(pos, 1 + rng() % 3); break;
        case 3: s.resize(pos); break;
        default: s[pos] = static_cast<char>(s[pos] ^ (1 << (rng() % 8))); break;
      }
    }
    try {
      const NpyArray a = parse(s);
      EXPECT_EQ(a.data.size(), a.itemsize * a.count());
      ++parsed;
    } catch (const FormatError&) {
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 100);  // the mutations must not all be trivially fatal
  EXPECT_GT(rejected, 1000);
}

// ---- writer -----------------------------------------------------------------------------------------------

NpyField make_field(const std::string& name, char order, char kind, std::size_t size, std::size_t offset,
                    std::vector<std::size_t> shape = {}, std::vector<NpyField> children = {}) {
  NpyField f;
  f.name = name;
  f.byte_order = order;
  f.kind = kind;
  f.size = size;
  f.offset = offset;
  f.shape = std::move(shape);
  f.children = std::move(children);
  return f;
}

TEST(NpyWrite, PlainArrayHeaderLayout) {
  const fs::path path = temp_file("a.npy");
  const std::string data = le(1.f) + le(2.f) + le(3.f);
  write_npy(path, {make_field("", '<', 'f', 4, 0)}, 4, {3}, as_span(data));
  const std::string bytes = read_file(path);
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
  // 10 + 57 + 1 bytes do not fit in 64, so the header is padded to 128: length field 118.
  ASSERT_EQ(dict.size(), 57u);
  ASSERT_EQ(bytes.size(), 128u + 12u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8), 118);
  EXPECT_EQ(bytes.substr(10, dict.size()), dict);
  EXPECT_EQ(bytes.substr(10 + dict.size(), 128 - 11 - dict.size()), std::string(128 - 11 - dict.size(), ' '));
  EXPECT_EQ(bytes[127], '\n');
  EXPECT_EQ(bytes.substr(128), data);

  write_npy(path, {make_field("", '<', 'i', 8, 0)}, 8, {}, as_span(le(std::int64_t{5})));
  EXPECT_NE(read_file(path).find("'shape': (), }"), std::string::npos);
  write_npy(path, {make_field("", '>', 'u', 2, 0)}, 2, {2, 0, 3}, {});
  EXPECT_NE(read_file(path).find("{'descr': '>u2', 'fortran_order': False, 'shape': (2, 0, 3), }"),
            std::string::npos);
}

TEST(NpyWrite, StructuredWithGapsNestingAndUnicodeRoundTrips) {
  const fs::path path = temp_file("s.npy");
  const std::vector<NpyField> fields = {
      make_field("a", '<', 'u', 2, 0), make_field("b", '>', 'f', 8, 4, {2}),
      make_field("s", '|', 'V', 8, 20, {},
                 {make_field("c", '|', 'i', 1, 0), make_field("d", '<', 'u', 4, 2)}),
      make_field("h\xC3\xA9", '=', 'i', 2, 28)};
  std::string data(96, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  write_npy(path, fields, 32, {3}, as_span(data));
  const std::string bytes = read_file(path);
  EXPECT_EQ(bytes[6], '\x03');  // a non-ASCII name needs the UTF-8 version
  EXPECT_EQ((bytes.size() - data.size()) % 64, 0u);
  // The descr numpy accepts (checked against numpy 1.x during development): gaps become ('', '|Vn').
  EXPECT_NE(
      bytes.find("{'descr': [('a', '<u2'), ('', '|V2'), ('b', '>f8', (2,)), ('s', [('c', '|i1'), ('', "
                 "'|V1'), ('d', '<u4'), ('', '|V2')]), ('h\xC3\xA9', '<i2'), ('', '|V2')], 'fortran_order': "
                 "False, 'shape': (3,), }"),
      std::string::npos)
      << bytes;
  const NpyArray a = read_npy(path);
  EXPECT_EQ(a.itemsize, 32u);
  EXPECT_EQ(a.shape, (std::vector<std::size_t>{3}));
  EXPECT_EQ(a.field("a")->offset, 0u);
  EXPECT_EQ(a.field("b")->offset, 4u);
  EXPECT_EQ(a.field("b")->shape, (std::vector<std::size_t>{2}));
  EXPECT_EQ(a.field("s")->offset, 20u);
  ASSERT_EQ(a.field("s")->children.size(), 4u);  // c, padding, d, padding
  EXPECT_EQ(a.field("s")->children[2].name, "d");
  EXPECT_EQ(a.field("s")->children[2].offset, 2u);
  EXPECT_EQ(a.field("h\xC3\xA9")->offset, 28u);
  ASSERT_EQ(a.data.size(), data.size());
  EXPECT_EQ(std::memcmp(a.data.data(), data.data(), data.size()), 0);
}

TEST(NpyWrite, RejectsInconsistentArguments) {
  const fs::path path = temp_file("bad.npy");
  const std::string four(4, '\0');
  EXPECT_THROW(write_npy(path, {make_field("", '<', 'f', 4, 0)}, 4, {2}, as_span(four)), ConfigError);
  EXPECT_THROW(write_npy(path, {}, 4, {1}, as_span(four)), ConfigError);
  EXPECT_THROW(write_npy(path, {make_field("a", '<', 'i', 4, 0), make_field("b", '<', 'i', 2, 2)}, 4, {1},
                         as_span(four)),
               ConfigError);  // overlap
  EXPECT_THROW(write_npy(path, {make_field("a", '<', 'i', 4, 2)}, 4, {1}, as_span(four)), ConfigError);
  EXPECT_THROW(write_npy(path, {make_field("", '|', 'O', 4, 0)}, 4, {1}, as_span(four)), ConfigError);
  EXPECT_THROW(write_npy(test::temp_dir(), {make_field("", '<', 'f', 4, 0)}, 4, {1}, as_span(four)), IoError);
  EXPECT_THROW(write_npy(test::temp_dir() / "missing_dir" / "x.npy", {make_field("", '<', 'f', 4, 0)}, 4, {1},
                         as_span(four)),
               IoError);
}

// ---- read_npy ---------------------------------------------------------------------------------------------

TEST(NpyFile, ReadMatchesParseAndReportsErrors) {
  const fs::path path = temp_file("a.npy");
  const std::string bytes = npy(2, "{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }", "abcd");
  write_file(path, bytes);
  const NpyArray from_file = read_npy(path);
  const NpyArray from_mem = parse(bytes);
  EXPECT_EQ(from_file.data, from_mem.data);
  EXPECT_EQ(from_file.shape, from_mem.shape);
  EXPECT_EQ(from_file.itemsize, 2u);

  write_file(path, bytes.substr(0, bytes.size() - 1));
  try {
    (void)read_npy(path);
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
  write_file(path, bytes.substr(0, 30));
  EXPECT_THROW((void)read_npy(path), FormatError);
  write_file(path, "");
  EXPECT_THROW((void)read_npy(path), FormatError);
  EXPECT_THROW((void)read_npy(test::temp_dir()), IoError);
  EXPECT_THROW((void)read_npy(test::temp_dir() / "nope.npy"), IoError);
}

// ---- boxes ------------------------------------------------------------------------------------------------

TEST(NpyBoxes, WriteReadRoundTrip) {
  const fs::path path = temp_file("rec_bbox.npy");
  std::mt19937 rng(5);
  std::vector<EventBbox> boxes;
  for (int i = 0; i < 100; ++i)
    boxes.push_back({i * 50000 - 7, static_cast<float>(rng() % 1280) + 0.25f, static_cast<float>(rng() % 720),
                     10.5f, 20.f, static_cast<std::uint32_t>(rng() % 7), static_cast<std::uint32_t>(i),
                     static_cast<float>(rng() % 100) / 100.f, 0});
  std::vector<EventBbox> dirty = boxes;
  for (auto& b : dirty) b.padding_ = 0xDEADBEEF;
  write_boxes_npy(path, dirty);
  const std::string bytes = read_file(path);
  EXPECT_EQ(bytes.substr(10, 10 + kBboxDescr.size()), "{'descr': " + kBboxDescr);
  EXPECT_EQ(bytes.size(), 256u + 100u * 40u);                       // header padded to 256 bytes
  EXPECT_EQ(bytes.substr(bytes.size() - 4), std::string(4, '\0'));  // padding written as zeros
  EXPECT_EQ(read_boxes_npy(path), boxes);

  write_boxes_npy(path, {});
  EXPECT_TRUE(read_boxes_npy(path).empty());
}

TEST(NpyBoxes, ConvertsAnyIntAndFloatWidthAndByteOrder) {
  const std::string descr =
      "[('t', '>i4'), ('x', '<f8'), ('y', '>f4'), ('w', '<i2'), ('h', '|u1'), ('class_id', '>u8'), "
      "('track_id', '>u2'), ('class_confidence', '<f2'), ('junk', '|S3')]";
  std::string data;
  data += be(std::int32_t{-123456}) + le(12.5) + be(-3.25f) + le(std::int16_t{-4}) + std::string(1, '\xC8') +
          be(std::uint64_t{6}) + be(std::uint16_t{65535}) + le(std::uint16_t{0x3C00}) /* 1.0 */ + "abc";
  data += be(std::int32_t{7}) + le(0.0) + be(1e6f) + le(std::int16_t{300}) + std::string(1, '\x00') +
          be(std::uint64_t{0}) + be(std::uint16_t{1}) + le(std::uint16_t{0x3800}) /* 0.5 */ + "def";
  const NpyArray a = parse(npy(1, "{'descr': " + descr + ", 'fortran_order': False, 'shape': (2,), }", data));
  const auto boxes = boxes_from_npy(a, "mem.npy");
  ASSERT_EQ(boxes.size(), 2u);
  EXPECT_EQ(boxes[0], (EventBbox{-123456, 12.5f, -3.25f, -4.f, 200.f, 6, 65535, 1.0f, 0}));
  EXPECT_EQ(boxes[1], (EventBbox{7, 0.f, 1e6f, 300.f, 0.f, 0, 1, 0.5f, 0}));
}

TEST(NpyBoxes, FloatTimestampsAndSignedIntsConverted) {
  const std::string descr =
      "[('ts', '<f8'), ('x', '<i8'), ('y', '<u4'), ('w', '<f4'), ('h', '<f4'), ('class_id', '<i1'), "
      "('confidence', '<f8')]";
  const std::string data = le(1234.9) + le(std::int64_t{-5}) + le(std::uint32_t{7}) + le(1.f) + le(2.f) +
                           std::string(1, '\xFF') + le(0.125);
  const auto boxes = boxes_from_npy(
      parse(npy(1, "{'descr': " + descr + ", 'fortran_order': False, 'shape': (1,), }", data)), "mem.npy");
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].t, 1234);  // truncated toward zero, like astype
  EXPECT_EQ(boxes[0].x, -5.f);
  EXPECT_EQ(boxes[0].class_id, 0xFFFFFFFFu);  // -1 wraps, like astype
  EXPECT_EQ(boxes[0].track_id, 0u);           // missing -> 0
  EXPECT_EQ(boxes[0].class_confidence, 0.125f);
}

TEST(NpyBoxes, MissingOptionalFieldsGetDefaults) {
  const std::string descr =
      "[('t', '<i8'), ('x', '<f4'), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), ('class_id', '<u4')]";
  const std::string data = le(std::int64_t{9}) + le(1.f) + le(2.f) + le(3.f) + le(4.f) + le(std::uint32_t{2});
  const auto boxes = boxes_from_npy(
      parse(npy(1, "{'descr': " + descr + ", 'fortran_order': False, 'shape': (1,), }", data)), "mem.npy");
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0], (EventBbox{9, 1, 2, 3, 4, 2, 0, 1.0f, 0}));
}

TEST(NpyBoxes, MissingRequiredFieldIsFormatError) {
  const std::vector<std::string> names = {"t", "x", "y", "w", "h", "class_id"};
  for (const std::string& missing : names) {
    std::string descr = "[";
    for (const std::string& n : names)
      if (n != missing) descr += "('" + n + "', '<f4'), ";
    descr += "]";
    const NpyArray a = parse(
        npy(1, "{'descr': " + descr + ", 'fortran_order': False, 'shape': (1,), }", std::string(20, '\0')));
    try {
      (void)boxes_from_npy(a, "mem.npy");
      ADD_FAILURE() << "no error for missing " << missing;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("'" + missing + "'"), std::string::npos) << e.what();
    }
  }
}

TEST(NpyBoxes, RequiresOneDimensionalStructuredNumericArray) {
  const std::string two_d = npy(1, "{'descr': " + kBboxDescr + ", 'fortran_order': False, 'shape': (1, 1), }",
                                bbox_record(1, 1, 1, 1, 1, 1, 1, 1));
  EXPECT_THROW((void)boxes_from_npy(parse(two_d), "mem.npy"), FormatError);
  const std::string plain =
      npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (10,), }", std::string(40, 'a'));
  EXPECT_THROW((void)boxes_from_npy(parse(plain), "mem.npy"), FormatError);
  const std::string subarray = npy(
      1,
      "{'descr': [('t', '<i8'), ('x', '<f4', (2,)), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), ('class_id', "
      "'<u4')], 'fortran_order': False, 'shape': (1,), }",
      std::string(32, '\0'));
  EXPECT_THROW((void)boxes_from_npy(parse(subarray), "mem.npy"), FormatError);
  const std::string text_field =
      npy(1,
          "{'descr': [('t', '<i8'), ('x', '|S4'), ('y', '<f4'), ('w', '<f4'), ('h', '<f4'), ('class_id', "
          "'<u4')], 'fortran_order': False, 'shape': (1,), }",
          std::string(28, '\0'));
  EXPECT_THROW((void)boxes_from_npy(parse(text_field), "mem.npy"), FormatError);
  // A 1-D array is the same in C and Fortran order.
  const std::string fortran = npy(1, "{'descr': " + kBboxDescr + ", 'fortran_order': True, 'shape': (1,), }",
                                  bbox_record(3, 1, 1, 1, 1, 1, 1, 1));
  EXPECT_EQ(boxes_from_npy(parse(fortran), "mem.npy").at(0).t, 3);
  // An array assembled by hand with too few data bytes is refused, not read out of bounds.
  NpyArray short_data = parse(fortran);
  short_data.data.resize(39);
  EXPECT_THROW((void)boxes_from_npy(short_data, "mem.npy"), FormatError);
}

// Fuzz finding (regressions/npy/boxes-*-huge-count): records of 0 bytes need no data however many there
// are, so a header could ask for 2^60 boxes from a 128-byte file and the conversion allocated them first.
TEST(NpyBoxes, ZeroByteRecordsWithAHugeCountAreRefusedWithoutAllocating) {
  for (const std::string descr : {"[]", "[('t', '|V0')]", "[('', '|V0')]"}) {
    const std::string bytes =
        npy(1, "{'descr': " + descr + ", 'fortran_order': False, 'shape': (1152921504606846976,), }");
    const NpyArray array = parse(bytes);  // valid .npy: numpy reads it too
    EXPECT_EQ(array.itemsize, 0u);
    EXPECT_TRUE(array.data.empty());
    try {
      (void)boxes_from_npy(array, "mem.npy");
      ADD_FAILURE() << "expected FormatError for " << descr;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("mem.npy"), std::string::npos) << e.what();
    }
  }
  // Zero boxes of zero bytes, or a missing field with many records, are ordinary errors or results.
  EXPECT_THROW((void)boxes_from_npy(parse(npy(1,
                                              "{'descr': [('t', '<i8')], 'fortran_order': False, "
                                              "'shape': (2,), }",
                                              std::string(16, '\0'))),
                                    "mem.npy"),
               FormatError);
}

}  // namespace
}  // namespace evloader
