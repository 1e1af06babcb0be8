// SPDX-License-Identifier: Apache-2.0
// NumPy .npy reading/writing with structured dtypes (formats.md §4) and EventBbox box files on top of it.
#include "evloader/io/npy.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>

#include "evloader/core/error.hpp"

namespace evloader {

static_assert(std::endian::native == std::endian::little, "'=' byte order is read as little-endian");

std::size_t NpyField::total_size() const noexcept {
  std::size_t n = size;
  for (std::size_t d : shape) n *= d;
  return n;
}

std::size_t NpyArray::count() const noexcept {
  std::size_t n = 1;
  for (std::size_t d : shape) n *= d;
  return n;
}

const NpyField* NpyArray::field(const std::string& name) const noexcept {
  for (const NpyField& f : fields)
    if (f.name == name) return &f;
  return nullptr;
}

namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
// Bounds that keep every size computation far from overflow while allowing any real file.
constexpr std::size_t kMaxElementSize = std::size_t{1} << 40;
constexpr int kMaxDepth = 32;

// Checked multiplication/addition: false on overflow (or when the result passes `limit`).
bool mul_ok(std::size_t a, std::size_t b, std::size_t& out, std::size_t limit = SIZE_MAX) {
  if (a != 0 && b > limit / a) return false;
  out = a * b;
  return true;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// ---- A Python literal, as much of it as numpy's header dict uses ------------------------------------------

struct PyValue {
  enum class Kind { string, integer, boolean, none, tuple, list, dict };
  Kind kind = Kind::none;
  std::string text;            // string (UTF-8)
  std::int64_t integer = 0;    // integer
  bool boolean = false;        // boolean
  std::vector<PyValue> items;  // tuple / list; dict: key, value, key, value...
  std::size_t offset = 0;      // absolute byte offset of the value, for messages
};

class LiteralParser {
 public:
  LiteralParser(std::string_view text, std::size_t base, const std::string& origin, bool utf8)
      : text_(text), base_(base), origin_(origin), utf8_(utf8) {}

  PyValue parse_document() {
    PyValue v = parse_value(0);
    skip_space();
    if (pos_ != text_.size()) fail("unexpected text after the header dictionary");
    return v;
  }

  [[noreturn]] void fail_at(std::size_t offset, const std::string& what) const {
    throw_format_error(origin_, static_cast<std::int64_t>(offset), "bad .npy header: " + what);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { fail_at(base_ + pos_, what); }

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool at_end() const { return pos_ >= text_.size(); }

  PyValue parse_value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    skip_space();
    if (at_end()) fail("header ends where a value was expected");
    const char c = peek();
    if (c == '{') return parse_dict(depth);
    if (c == '[') return parse_sequence(depth, ']', PyValue::Kind::list);
    if (c == '(') return parse_sequence(depth, ')', PyValue::Kind::tuple);
    if (c == '\'' || c == '"') return parse_string();
    if (c == 'u' && pos_ + 1 < text_.size() && (text_[pos_ + 1] == '\'' || text_[pos_ + 1] == '"')) {
      ++pos_;  // Python 2 era u'...' literals
      return parse_string();
    }
    if ((c >= '0' && c <= '9') || c == '-' || c == '+') return parse_integer();
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') return parse_name();
    fail(std::string("unexpected character '") + c + "'");
  }

  PyValue parse_name() {
    PyValue v;
    v.offset = base_ + pos_;
    const std::size_t start = pos_;
    while (!at_end() && (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '_')) ++pos_;
    const std::string_view word = text_.substr(start, pos_ - start);
    if (word == "True" || word == "False") {
      v.kind = PyValue::Kind::boolean;
      v.boolean = word == "True";
    } else if (word == "None") {
      v.kind = PyValue::Kind::none;
    } else {
      fail_at(v.offset, "unknown name '" + std::string(word) + "'");
    }
    return v;
  }

  PyValue parse_integer() {
    PyValue v;
    v.kind = PyValue::Kind::integer;
    v.offset = base_ + pos_;
    bool negative = false;
    if (peek() == '-' || peek() == '+') {
      negative = peek() == '-';
      ++pos_;
    }
    if (at_end() || peek() < '0' || peek() > '9') fail("a sign must be followed by digits");
    std::uint64_t magnitude = 0;
    while (!at_end() && peek() >= '0' && peek() <= '9') {
      const auto digit = static_cast<std::uint64_t>(peek() - '0');
      if (magnitude > (static_cast<std::uint64_t>(INT64_MAX) - digit) / 10)
        fail_at(v.offset, "integer does not fit in 64 bits");
      magnitude = magnitude * 10 + digit;
      ++pos_;
    }
    if (peek() == 'L' || peek() == 'l') ++pos_;  // Python 2 long literals, e.g. (3L,) in old files
    v.integer = negative ? -static_cast<std::int64_t>(magnitude) : static_cast<std::int64_t>(magnitude);
    return v;
  }

  std::uint32_t parse_hex(std::size_t digits) {
    std::uint32_t cp = 0;
    for (std::size_t i = 0; i < digits; ++i) {
      if (at_end()) fail("truncated escape sequence");
      const char h = text_[pos_++];
      std::uint32_t d = 0;
      if (h >= '0' && h <= '9')
        d = static_cast<std::uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f')
        d = static_cast<std::uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        d = static_cast<std::uint32_t>(h - 'A' + 10);
      else
        fail("bad hexadecimal digit in escape sequence");
      cp = cp * 16 + d;
    }
    if (cp > 0x10FFFF) fail("escape sequence beyond U+10FFFF");
    return cp;
  }

  PyValue parse_string() {
    PyValue v;
    v.kind = PyValue::Kind::string;
    v.offset = base_ + pos_;
    const char quote = text_[pos_++];
    while (true) {
      if (at_end()) fail_at(v.offset, "unterminated string");
      const char c = text_[pos_++];
      if (c == quote) break;
      if (c == '\n') fail_at(v.offset, "unterminated string (line break inside)");
      if (c == '\\') {
        if (at_end()) fail_at(v.offset, "unterminated string");
        const char e = text_[pos_++];
        switch (e) {
          case '\\': v.text.push_back('\\'); break;
          case '\'': v.text.push_back('\''); break;
          case '"': v.text.push_back('"'); break;
          case 'n': v.text.push_back('\n'); break;
          case 't': v.text.push_back('\t'); break;
          case 'r': v.text.push_back('\r'); break;
          case '0': v.text.push_back('\0'); break;
          case '\n': break;  // line continuation
          case 'x': append_utf8(v.text, parse_hex(2)); break;
          case 'u': append_utf8(v.text, parse_hex(4)); break;
          case 'U': append_utf8(v.text, parse_hex(8)); break;
          default:  // Python keeps unknown escapes literally
            v.text.push_back('\\');
            v.text.push_back(e);
        }
        continue;
      }
      const auto byte = static_cast<unsigned char>(c);
      if (byte >= 0x80 && !utf8_)
        append_utf8(v.text, byte);  // v1/v2 headers are latin-1: one byte is one code point
      else
        v.text.push_back(c);
    }
    return v;
  }

  PyValue parse_sequence(int depth, char close, PyValue::Kind kind) {
    PyValue v;
    v.kind = kind;
    v.offset = base_ + pos_;
    ++pos_;  // opening bracket
    bool saw_comma = false;
    while (true) {
      skip_space();
      if (at_end()) fail_at(v.offset, std::string("missing closing '") + close + "'");
      if (peek() == close) {
        ++pos_;
        break;
      }
      if (!v.items.empty() && !saw_comma) fail("expected ',' or closing bracket");
      v.items.push_back(parse_value(depth + 1));
      skip_space();
      saw_comma = peek() == ',';
      if (saw_comma) ++pos_;
    }
    // Python: "(x)" is x itself, only "(x,)" is a one-element tuple.
    if (kind == PyValue::Kind::tuple && v.items.size() == 1 && !saw_comma) return std::move(v.items[0]);
    return v;
  }

  PyValue parse_dict(int depth) {
    PyValue v;
    v.kind = PyValue::Kind::dict;
    v.offset = base_ + pos_;
    ++pos_;
    bool saw_comma = true;
    while (true) {
      skip_space();
      if (at_end()) fail_at(v.offset, "missing closing '}'");
      if (peek() == '}') {
        ++pos_;
        break;
      }
      if (!saw_comma) fail("expected ',' or '}'");
      v.items.push_back(parse_value(depth + 1));
      skip_space();
      if (peek() != ':') fail("expected ':' in dictionary");
      ++pos_;
      v.items.push_back(parse_value(depth + 1));
      skip_space();
      saw_comma = peek() == ',';
      if (saw_comma) ++pos_;
    }
    return v;
  }

  std::string_view text_;
  std::size_t base_;
  const std::string& origin_;
  bool utf8_;
  std::size_t pos_ = 0;
};

// ---- dtype descriptions ---------------------------------------------------------------------------------

class DescrReader {
 public:
  explicit DescrReader(const LiteralParser& parser) : parser_(parser) {}

  // A type string such as '<f4', '|u1', 'u1', '>M8[us]', '|V4', '<U10', '?'.
  NpyField parse_typestr(const PyValue& v) const {
    if (v.kind != PyValue::Kind::string) parser_.fail_at(v.offset, "a dtype must be a type string");
    const std::string& s = v.text;
    NpyField f;
    std::size_t i = 0;
    char order = '\0';
    if (i < s.size() && (s[i] == '<' || s[i] == '>' || s[i] == '|' || s[i] == '=')) order = s[i++];
    if (i >= s.size()) parser_.fail_at(v.offset, "empty type string '" + s + "'");
    char kind = s[i++];
    if (kind == 'O') parser_.fail_at(v.offset, "object dtype (pickled Python objects) is not supported");
    std::size_t count = 0;
    bool has_digits = false;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      count = count * 10 + static_cast<std::size_t>(s[i++] - '0');
      has_digits = true;
      if (count > kMaxElementSize) parser_.fail_at(v.offset, "type size too large in '" + s + "'");
    }
    if (kind == '?') {
      if (has_digits) parser_.fail_at(v.offset, "bad type string '" + s + "'");
      kind = 'b';
      count = 1;
      has_digits = true;
    }
    if (kind == 'a') kind = 'S';  // old alias of bytes strings
    if ((kind == 'M' || kind == 'm') && i < s.size() && s[i] == '[') {
      const std::size_t close = s.find(']', i);
      if (close == std::string::npos) parser_.fail_at(v.offset, "unterminated time unit in '" + s + "'");
      i = close + 1;
    }
    if (i != s.size() || !has_digits) parser_.fail_at(v.offset, "bad type string '" + s + "'");
    auto valid = [&](std::initializer_list<std::size_t> sizes) {
      return std::find(sizes.begin(), sizes.end(), count) != sizes.end();
    };
    std::size_t bytes = count;
    switch (kind) {
      case 'b':
        if (!valid({1})) bad_size(v, s);
        break;
      case 'i':
      case 'u':
        if (!valid({1, 2, 4, 8})) bad_size(v, s);
        break;
      case 'f':
        if (!valid({2, 4, 8, 16})) bad_size(v, s);
        break;
      case 'c':
        if (!valid({8, 16, 32})) bad_size(v, s);
        break;
      case 'M':
      case 'm':
        if (!valid({8})) bad_size(v, s);
        break;
      case 'V':
      case 'S': break;
      case 'U': bytes = count * 4; break;  // count is in UCS-4 characters
      default: parser_.fail_at(v.offset, "unknown dtype kind in '" + s + "'");
    }
    f.kind = kind;
    f.size = bytes;
    if (order == '\0') order = (bytes <= 1 || kind == 'V' || kind == 'S') ? '|' : '=';
    f.byte_order = order;
    return f;
  }

  // The list form: [(name, type[, shape]), ...], fields laid out one after the other.
  std::vector<NpyField> parse_struct(const PyValue& list, std::size_t& itemsize) const {
    std::vector<NpyField> fields;
    std::size_t offset = 0;
    for (const PyValue& entry : list.items) {
      if ((entry.kind != PyValue::Kind::tuple && entry.kind != PyValue::Kind::list) ||
          (entry.items.size() != 2 && entry.items.size() != 3))
        parser_.fail_at(entry.offset, "a structured dtype entry must be (name, type) or (name, type, shape)");
      const PyValue& name = entry.items[0];
      const PyValue& type = entry.items[1];
      NpyField f;
      if (name.kind == PyValue::Kind::string) {
        f.name = name.text;
      } else if (name.kind == PyValue::Kind::tuple && name.items.size() == 2 &&
                 name.items[1].kind == PyValue::Kind::string) {
        f.name = name.items[1].text;  // (title, name): the title is only an alias
      } else {
        parser_.fail_at(name.offset, "a field name must be a string or a (title, name) tuple");
      }
      if (type.kind == PyValue::Kind::list) {
        std::size_t sub_size = 0;
        auto children = parse_struct(type, sub_size);
        f.kind = 'V';
        f.byte_order = '|';
        f.size = sub_size;
        f.children = std::move(children);
      } else {
        NpyField t = parse_typestr(type);
        f.kind = t.kind;
        f.byte_order = t.byte_order;
        f.size = t.size;
      }
      if (entry.items.size() == 3) f.shape = parse_shape(entry.items[2], true);
      std::size_t total = f.size;
      for (std::size_t d : f.shape)
        if (!mul_ok(total, d, total, kMaxElementSize))
          parser_.fail_at(entry.offset, "field '" + f.name + "' is too large");
      if (!f.name.empty())
        for (const NpyField& other : fields)
          if (other.name == f.name) parser_.fail_at(entry.offset, "duplicate field name '" + f.name + "'");
      f.offset = offset;
      offset += total;
      if (offset > kMaxElementSize) parser_.fail_at(entry.offset, "record size too large");
      fields.push_back(std::move(f));
    }
    itemsize = offset;
    return fields;
  }

  // A shape: a tuple of non-negative ints (a bare int is also accepted for sub-array shapes).
  std::vector<std::size_t> parse_shape(const PyValue& v, bool allow_int) const {
    std::vector<std::size_t> shape;
    if (allow_int && v.kind == PyValue::Kind::integer) {
      if (v.integer < 0) parser_.fail_at(v.offset, "negative dimension");
      shape.push_back(static_cast<std::size_t>(v.integer));
      return shape;
    }
    if (v.kind != PyValue::Kind::tuple) parser_.fail_at(v.offset, "a shape must be a tuple");
    for (const PyValue& d : v.items) {
      if (d.kind != PyValue::Kind::integer || d.integer < 0)
        parser_.fail_at(d.offset, "a shape must hold non-negative integers");
      shape.push_back(static_cast<std::size_t>(d.integer));
    }
    return shape;
  }

 private:
  [[noreturn]] void bad_size(const PyValue& v, const std::string& s) const {
    parser_.fail_at(v.offset, "unsupported size in type string '" + s + "'");
  }

  const LiteralParser& parser_;
};

struct Preamble {
  std::size_t header_start = 0;  // first byte of the header text
  std::size_t header_len = 0;
  bool utf8 = false;
};

// Magic, version and header length; `bytes` needs only the first 12 bytes.
Preamble parse_preamble(std::span<const std::byte> bytes, const std::string& origin) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 10 || std::memcmp(p, kMagic.data(), kMagic.size()) != 0)
    throw_format_error(origin, 0, "not a .npy file (bad magic or too short)");
  const unsigned major = p[6], minor = p[7];
  Preamble pre;
  if (major == 1 && minor == 0) {
    pre.header_start = 10;
    pre.header_len = std::size_t{p[8]} | (std::size_t{p[9]} << 8);
  } else if ((major == 2 || major == 3) && minor == 0) {
    if (bytes.size() < 12) throw_format_error(origin, 8, "truncated .npy header length");
    pre.header_start = 12;
    pre.header_len = std::size_t{p[8]} | (std::size_t{p[9]} << 8) | (std::size_t{p[10]} << 16) |
                     (std::size_t{p[11]} << 24);
    pre.utf8 = major == 3;
  } else {
    throw_format_error(origin, 6,
                       "unsupported .npy version " + std::to_string(major) + "." + std::to_string(minor));
  }
  return pre;
}

// Interprets the header text; fills everything except `data`. Returns the number of data bytes.
std::size_t parse_header_text(std::string_view text, const Preamble& pre, const std::string& origin,
                              NpyArray& array) {
  LiteralParser parser(text, pre.header_start, origin, pre.utf8);
  const PyValue dict = parser.parse_document();
  if (dict.kind != PyValue::Kind::dict) parser.fail_at(dict.offset, "the header must be a dictionary");
  const PyValue* descr = nullptr;
  const PyValue* fortran = nullptr;
  const PyValue* shape = nullptr;
  for (std::size_t i = 0; i + 1 < dict.items.size(); i += 2) {
    const PyValue& key = dict.items[i];
    const PyValue* value = &dict.items[i + 1];
    if (key.kind != PyValue::Kind::string) parser.fail_at(key.offset, "dictionary keys must be strings");
    if (key.text == "descr")
      descr = value;
    else if (key.text == "fortran_order")
      fortran = value;
    else if (key.text == "shape")
      shape = value;
    else
      parser.fail_at(key.offset, "unexpected key '" + key.text + "'");  // numpy refuses them too
  }
  if (descr == nullptr || fortran == nullptr || shape == nullptr)
    parser.fail_at(dict.offset, "the header needs the keys 'descr', 'fortran_order' and 'shape'");

  DescrReader reader(parser);
  if (descr->kind == PyValue::Kind::list) {
    array.structured = true;
    array.fields = reader.parse_struct(*descr, array.itemsize);
  } else {
    array.structured = false;
    array.fields = {reader.parse_typestr(*descr)};
    array.itemsize = array.fields[0].size;
  }
  if (fortran->kind != PyValue::Kind::boolean)
    parser.fail_at(fortran->offset, "'fortran_order' must be a bool");
  array.fortran_order = fortran->boolean;
  array.shape = reader.parse_shape(*shape, false);
  std::size_t total = array.itemsize;
  std::size_t elements = 1;
  for (std::size_t d : array.shape)
    if (!mul_ok(elements, d, elements) || !mul_ok(total, d, total))
      parser.fail_at(shape->offset, "the shape's size overflows");
  if (total > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()))
    parser.fail_at(shape->offset, "the shape's size overflows");
  return total;
}

}  // namespace

NpyArray parse_npy(std::span<const std::byte> bytes, const std::string& origin) {
  const Preamble pre = parse_preamble(bytes, origin);
  if (bytes.size() - pre.header_start < pre.header_len)
    throw_format_error(origin, static_cast<std::int64_t>(bytes.size()), "file ends inside the .npy header");
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + pre.header_start, pre.header_len);
  NpyArray array;
  const std::size_t data_bytes = parse_header_text(text, pre, origin, array);
  const std::size_t data_start = pre.header_start + pre.header_len;
  const std::size_t available = bytes.size() - data_start;
  if (available < data_bytes)
    throw_format_error(origin, static_cast<std::int64_t>(bytes.size()),
                       "data section holds " + std::to_string(available) + " bytes, the header declares " +
                           std::to_string(data_bytes));
  array.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(data_start),
                    bytes.begin() + static_cast<std::ptrdiff_t>(data_start + data_bytes));
  return array;
}

NpyArray read_npy(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw_io_error(path, "no such file");
  if (std::filesystem::is_directory(status)) throw_io_error(path, "is a directory, not a .npy file");
  const std::uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw_io_error(path, "cannot get the file size: " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_io_error(path, "cannot open file");
  const std::string origin = path.string();

  // Read the header first, then the data straight into the array (no second copy of a large file).
  std::vector<std::byte> head(static_cast<std::size_t>(std::min<std::uint64_t>(12, file_size)));
  in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  if (static_cast<std::size_t>(in.gcount()) != head.size()) throw_io_error(path, "read failed");
  const Preamble pre = parse_preamble(head, origin);
  if (file_size - pre.header_start < pre.header_len)
    throw_format_error(origin, static_cast<std::int64_t>(file_size), "file ends inside the .npy header");
  const std::size_t data_start = pre.header_start + pre.header_len;
  std::string text(pre.header_len, '\0');
  in.seekg(static_cast<std::streamoff>(pre.header_start));
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (static_cast<std::size_t>(in.gcount()) != text.size()) throw_io_error(path, "read failed");
  NpyArray array;
  const std::size_t data_bytes = parse_header_text(text, pre, origin, array);
  const std::uint64_t available = file_size - data_start;
  if (available < data_bytes)
    throw_format_error(origin, static_cast<std::int64_t>(file_size),
                       "data section holds " + std::to_string(available) + " bytes, the header declares " +
                           std::to_string(data_bytes));
  array.data.resize(data_bytes);
  in.read(reinterpret_cast<char*>(array.data.data()), static_cast<std::streamsize>(data_bytes));
  if (static_cast<std::size_t>(in.gcount()) != data_bytes) throw_io_error(path, "read failed");
  return array;
}

// ---- writing ----------------------------------------------------------------------------------------------

namespace {

// A Python string literal that ast.literal_eval (numpy's header reader) turns back into `s`.
std::string py_repr(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    const auto b = static_cast<unsigned char>(c);
    if (c == '\\' || c == '\'') {
      out.push_back('\\');
      out.push_back(c);
    } else if (b < 0x20 || b == 0x7F) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 15]);
    } else {
      out.push_back(c);  // UTF-8 bytes pass through (the file becomes version 3)
    }
  }
  out.push_back('\'');
  return out;
}

std::string shape_repr(const std::vector<std::size_t>& shape) {
  std::string out = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  if (shape.size() == 1) out += ",";
  out += ")";
  return out;
}

std::string typestr(const NpyField& f) {
  constexpr std::string_view kKinds = "biufcVSUMm";
  if (kKinds.find(f.kind) == std::string_view::npos)
    throw ConfigError(std::string("write_npy: unsupported dtype kind '") + f.kind + "' for field '" + f.name +
                      "'");
  char order = f.byte_order;
  if (order == '=') order = '<';
  if (order != '<' && order != '>' && order != '|')
    throw ConfigError(std::string("write_npy: bad byte order '") + order + "' for field '" + f.name + "'");
  std::size_t count = f.size;
  if (f.kind == 'U') {
    if (f.size % 4 != 0) throw ConfigError("write_npy: 'U' field size must be a multiple of 4: " + f.name);
    count = f.size / 4;
  }
  if (f.size == 0 && f.kind != 'V' && f.kind != 'S' && f.kind != 'U')
    throw ConfigError("write_npy: zero-sized field '" + f.name + "'");
  return py_repr(std::string(1, order) + f.kind + std::to_string(count));
}

std::string pad_entry(std::size_t n) { return "('', '|V" + std::to_string(n) + "')"; }

// The list form of a record of `itemsize` bytes: fields by offset, gaps and unnamed fields as padding.
std::string struct_descr(const std::vector<NpyField>& fields, std::size_t itemsize, int depth) {
  if (depth > kMaxDepth) throw ConfigError("write_npy: nested structs too deep");
  std::vector<const NpyField*> order;
  for (const NpyField& f : fields) order.push_back(&f);
  std::stable_sort(order.begin(), order.end(),
                   [](const NpyField* a, const NpyField* b) { return a->offset < b->offset; });
  std::vector<std::string> entries;
  std::size_t pos = 0;
  std::size_t pending_pad = 0;  // padding is merged so numpy sees one '|Vn' per gap
  auto flush_pad = [&] {
    if (pending_pad != 0) entries.push_back(pad_entry(pending_pad));
    pending_pad = 0;
  };
  for (const NpyField* f : order) {
    const std::size_t size = f->total_size();
    if (f->offset < pos || f->offset > itemsize || size > itemsize - f->offset)
      throw ConfigError("write_npy: field '" + f->name + "' overlaps another field or passes the record end");
    pending_pad += f->offset - pos;
    pos = f->offset + size;
    if (f->name.empty()) {
      pending_pad += size;
      continue;
    }
    flush_pad();
    std::string entry = "(" + py_repr(f->name) + ", ";
    if (!f->children.empty())
      entry += struct_descr(f->children, f->size, depth + 1);
    else
      entry += typestr(*f);
    if (!f->shape.empty()) entry += ", " + shape_repr(f->shape);
    entry += ")";
    entries.push_back(std::move(entry));
  }
  pending_pad += itemsize - pos;
  flush_pad();
  std::string out = "[";
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (i > 0) out += ", ";
    out += entries[i];
  }
  return out + "]";
}

}  // namespace

void write_npy(const std::filesystem::path& path, const std::vector<NpyField>& fields, std::size_t itemsize,
               const std::vector<std::size_t>& shape, std::span<const std::byte> data) {
  if (fields.empty()) throw ConfigError("write_npy: no fields given");
  std::size_t expected = itemsize;
  for (std::size_t d : shape)
    if (!mul_ok(expected, d, expected)) throw ConfigError("write_npy: shape too large");
  if (expected != data.size())
    throw ConfigError("write_npy: " + std::to_string(data.size()) +
                      " data bytes given, the shape and itemsize need " + std::to_string(expected));
  // One unnamed field spanning the record is a plain dtype ('<f4'); everything else is a structured list.
  const NpyField& first = fields.front();
  const bool plain = fields.size() == 1 && first.name.empty() && first.offset == 0 && first.shape.empty() &&
                     first.children.empty() && first.size == itemsize;
  const std::string descr = plain ? typestr(first) : struct_descr(fields, itemsize, 0);

  std::string dict = "{'descr': " + descr + ", 'fortran_order': False, 'shape': " + shape_repr(shape) + ", }";
  const bool ascii =
      std::all_of(dict.begin(), dict.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  unsigned major = ascii ? 1 : 3;
  std::size_t prefix = major == 1 ? 10 : 12;
  if (major == 1 && prefix + dict.size() + 1 > 65535) {
    major = 2;
    prefix = 12;
  }
  // numpy pads with spaces so that the data starts 64-byte aligned, and ends the header with '\n'.
  const std::size_t unpadded = prefix + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict.push_back('\n');
  if (dict.size() > 0xFFFFFFFFu) throw ConfigError("write_npy: header too large");

  std::string head(kMagic);
  head.push_back(static_cast<char>(major));
  head.push_back('\0');
  const std::size_t len = dict.size();
  head.push_back(static_cast<char>(len & 0xFF));
  head.push_back(static_cast<char>((len >> 8) & 0xFF));
  if (major != 1) {
    head.push_back(static_cast<char>((len >> 16) & 0xFF));
    head.push_back(static_cast<char>((len >> 24) & 0xFF));
  }
  head += dict;

  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw_io_error(path, "is a directory");
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw_io_error(path, "cannot create file");
  out.write(head.data(), static_cast<std::streamsize>(head.size()));
  if (!data.empty())
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  out.close();
  if (out.fail()) throw_io_error(path, "write failed");
}

// ---- boxes ------------------------------------------------------------------------------------------------

namespace {

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (h >> 15) & 1u;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  const std::uint32_t mant = h & 0x3FFu;
  float value;
  if (exp == 0)
    value = std::ldexp(static_cast<float>(mant), -24);
  else if (exp == 31)
    value = mant == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  else
    value = std::ldexp(static_cast<float>(mant | 0x400u), static_cast<int>(exp) - 25);
  return sign ? -value : value;
}

// Float to integer the way a careful astype would: NaN -> 0, out of range saturates (never UB).
std::int64_t float_to_int(double v) {
  if (std::isnan(v)) return 0;
  if (v >= 9223372036854775807.0) return std::numeric_limits<std::int64_t>::max();
  if (v <= -9223372036854775808.0) return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(v);
}

// Reads one numeric field of any width/byte order; the value is kept both as an integer and as a double so
// each destination converts from the representation that loses nothing.
class FieldReader {
 public:
  FieldReader() = default;
  FieldReader(const NpyField& f, const std::string& origin)
      : present_(true), offset_(f.offset), size_(f.size) {
    const bool numeric = f.kind == 'i' || f.kind == 'u' || f.kind == 'f' || f.kind == 'b';
    const bool sized = f.kind == 'f' ? (f.size == 2 || f.size == 4 || f.size == 8)
                                     : (f.size == 1 || f.size == 2 || f.size == 4 || f.size == 8);
    if (!numeric || !sized || !f.shape.empty() || !f.children.empty())
      throw_format_error(origin, -1,
                         "box field '" + f.name + "' has an unsupported type (need a scalar int or float)");
    kind_ = f.kind == 'b' ? 'u' : f.kind;
    swap_ = f.byte_order == '>' && f.size > 1;
  }
  bool present() const { return present_; }

  std::int64_t as_int(const std::byte* rec) const {
    if (kind_ == 'f') return float_to_int(as_double(rec));
    const std::uint64_t raw = load(rec);
    if (kind_ == 'u' || size_ == 8) return static_cast<std::int64_t>(raw);
    const unsigned shift = static_cast<unsigned>(64 - 8 * size_);
    return static_cast<std::int64_t>(raw << shift) >> shift;  // sign-extend
  }

  double as_double(const std::byte* rec) const {
    const std::uint64_t raw = load(rec);
    if (kind_ == 'f') {
      if (size_ == 2) return half_to_float(static_cast<std::uint16_t>(raw));
      if (size_ == 4) return std::bit_cast<float>(static_cast<std::uint32_t>(raw));
      return std::bit_cast<double>(raw);
    }
    if (kind_ == 'u') return static_cast<double>(raw);
    return static_cast<double>(as_int(rec));
  }

 private:
  std::uint64_t load(const std::byte* rec) const {
    std::uint64_t v = 0;
    std::memcpy(&v, rec + offset_, size_);  // little-endian host: low bytes land in the low bits
    if (swap_) v = __builtin_bswap64(v) >> (64 - 8 * size_);
    return v;
  }

  bool present_ = false;
  std::size_t offset_ = 0;
  std::size_t size_ = 0;
  char kind_ = 'u';
  bool swap_ = false;
};

bool is_native_bbox_layout(const NpyArray& a) {
  struct Expect {
    const char* name;
    char kind;
    std::size_t size, offset;
  };
  static constexpr Expect kLayout[] = {{"t", 'i', 8, 0},         {"x", 'f', 4, 8},
                                       {"y", 'f', 4, 12},        {"w", 'f', 4, 16},
                                       {"h", 'f', 4, 20},        {"class_id", 'u', 4, 24},
                                       {"track_id", 'u', 4, 28}, {"class_confidence", 'f', 4, 32}};
  if (a.itemsize != sizeof(EventBbox)) return false;
  for (const Expect& e : kLayout) {
    const NpyField* f = a.field(e.name);
    if (f == nullptr || f->kind != e.kind || f->size != e.size || f->offset != e.offset ||
        !f->shape.empty() || f->byte_order == '>')
      return false;
  }
  return true;
}

}  // namespace

std::vector<EventBbox> boxes_from_npy(const NpyArray& array, const std::string& origin) {
  if (!array.structured) throw_format_error(origin, -1, "box files need a structured dtype");
  if (array.shape.size() != 1)
    throw_format_error(
        origin, -1,
        "box arrays must be 1-D, this one has " + std::to_string(array.shape.size()) + " dimensions");
  const std::size_t n = array.shape[0];
  for (const NpyField& f : array.fields)
    if (f.offset > array.itemsize || f.total_size() > array.itemsize - f.offset)
      throw_format_error(origin, -1, "field '" + f.name + "' lies outside the record");
  std::size_t needed = 0;
  if (!mul_ok(array.itemsize, n, needed) || array.data.size() < needed)
    throw_format_error(origin, -1, "data holds fewer bytes than the shape needs");
  // Records of 0 bytes hold no box fields: a huge count of them costs nothing in the file but must not
  // become a huge allocation here. With nonzero records the count is bounded by the data read.
  if (array.itemsize == 0 && n != 0)
    throw_format_error(origin, -1, "box records have 0 bytes (no t, x, y, w, h, class_id fields)");

  if (is_native_bbox_layout(array)) {
    std::vector<EventBbox> boxes(n);
    if (n != 0) std::memcpy(boxes.data(), array.data.data(), n * sizeof(EventBbox));
    for (EventBbox& b : boxes) b.padding_ = 0;
    return boxes;
  }
  auto find = [&](std::initializer_list<const char*> names, bool required) {
    for (const char* name : names)
      if (const NpyField* f = array.field(name)) return FieldReader(*f, origin);
    if (required)
      throw_format_error(origin, -1, std::string("box field '") + *names.begin() + "' is missing");
    return FieldReader();
  };
  const FieldReader t = find({"t", "ts"}, true);
  const FieldReader x = find({"x"}, true);
  const FieldReader y = find({"y"}, true);
  const FieldReader w = find({"w"}, true);
  const FieldReader h = find({"h"}, true);
  const FieldReader class_id = find({"class_id"}, true);
  const FieldReader track_id = find({"track_id"}, false);
  const FieldReader confidence = find({"class_confidence", "confidence"}, false);
  std::vector<EventBbox> boxes(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::byte* rec = array.data.data() + i * array.itemsize;
    EventBbox& b = boxes[i];
    b.t = t.as_int(rec);
    b.x = static_cast<float>(x.as_double(rec));
    b.y = static_cast<float>(y.as_double(rec));
    b.w = static_cast<float>(w.as_double(rec));
    b.h = static_cast<float>(h.as_double(rec));
    b.class_id = static_cast<std::uint32_t>(class_id.as_int(rec));  // modular, like numpy's astype
    b.track_id = track_id.present() ? static_cast<std::uint32_t>(track_id.as_int(rec)) : 0u;
    b.class_confidence = confidence.present() ? static_cast<float>(confidence.as_double(rec)) : 1.0f;
    b.padding_ = 0;
  }
  return boxes;
}

std::vector<EventBbox> read_boxes_npy(const std::filesystem::path& path) {
  return boxes_from_npy(read_npy(path), path.string());
}

void write_boxes_npy(const std::filesystem::path& path, std::span<const EventBbox> boxes) {
  auto field = [](const char* name, char kind, std::size_t offset) {
    NpyField f;
    f.name = name;
    f.kind = kind;
    f.byte_order = '<';
    f.size = kind == 'i' ? 8 : 4;
    f.offset = offset;
    return f;
  };
  const std::vector<NpyField> fields = {field("t", 'i', 0),         field("x", 'f', 8),
                                        field("y", 'f', 12),        field("w", 'f', 16),
                                        field("h", 'f', 20),        field("class_id", 'u', 24),
                                        field("track_id", 'u', 28), field("class_confidence", 'f', 32)};
  // Copy so the tail padding is written as zeros whatever the caller left in it.
  std::vector<EventBbox> copy(boxes.begin(), boxes.end());
  for (EventBbox& b : copy) b.padding_ = 0;
  write_npy(path, fields, sizeof(EventBbox), {copy.size()}, std::as_bytes(std::span<const EventBbox>(copy)));
}

}  // namespace evloader
