// SPDX-License-Identifier: Apache-2.0
// Reader of Metavision HDF5 event files (formats.md §3): /CD/events chunks are fetched raw with
// H5Dread_chunk under the process-wide HDF5 lock and ECF-decoded outside it, so readers in several
// threads decode in parallel; /EXT_TRIGGER/events is merged into the block stream by time.
#include <algorithm>
#include <charconv>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/io/ecf.hpp"
#include "evloader/io/file.hpp"
#include "io/detail/readers.hpp"
#include "io/hdf5/ecf_internal.hpp"
#include "io/hdf5/h5_util.hpp"
#include "preprocess/tensor_file/hdf5_lock.hpp"

namespace evloader::detail {

namespace {

// About 64 Ki events per block (4 chunks of OpenEB's 16384): one lock round trip per block, small
// enough that a seek decodes little.
constexpr std::uint64_t kBlockEvents = 64 * 1024;
// See check_extent(): most records a byte of the file can stand for, and the extent allowed beyond that.
constexpr long double kMaxCompressionRatio = 1100;
constexpr long double kStorageSlackBytes = 1 << 20;

std::uint64_t mix(std::uint64_t h, std::uint64_t v) { return (h ^ v) * 1099511628211ull; }

__extension__ using Uint128 = unsigned __int128;  // GCC and Clang; __extension__ keeps -Wpedantic quiet

std::optional<std::int64_t> parse_int(const std::string& text) {
  std::int64_t v = 0;
  const char* b = text.data();
  const char* e = b + text.size();
  while (b < e && *b == ' ') ++b;
  auto [ptr, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || ptr == b) return std::nullopt;
  return v;
}

// "WxH" (the "geometry" attribute) or "NAME;height=H;width=W" (the "format" attribute).
Geometry geometry_from_attributes(const std::map<std::string, std::string>& attrs) {
  Geometry g;
  if (auto it = attrs.find("geometry"); it != attrs.end()) {
    const std::string& s = it->second;
    const auto x = s.find('x');
    if (x != std::string::npos) {
      auto w = parse_int(s.substr(0, x)), h = parse_int(s.substr(x + 1));
      if (w && h && *w > 0 && *h > 0 && *w < (1 << 20) && *h < (1 << 20))
        return {static_cast<int>(*w), static_cast<int>(*h)};
    }
  }
  if (auto it = attrs.find("format"); it != attrs.end()) {
    const std::string& s = it->second;
    auto option = [&](const std::string& key) -> std::optional<std::int64_t> {
      std::size_t pos = 0;
      while ((pos = s.find(';', pos)) != std::string::npos) {
        ++pos;
        if (s.compare(pos, key.size() + 1, key + "=") == 0) {
          const std::size_t end = s.find(';', pos);
          return parse_int(
              s.substr(pos + key.size() + 1, end == std::string::npos ? end : end - pos - key.size() - 1));
        }
      }
      return std::nullopt;
    };
    auto w = option("width"), h = option("height");
    if (w && h && *w > 0 && *h > 0 && *w < (1 << 20) && *h < (1 << 20))
      g = {static_cast<int>(*w), static_cast<int>(*h)};
  }
  return g;
}

class Hdf5EventReader final : public EventReader {
 public:
  Hdf5EventReader(const std::filesystem::path& path, const ReaderOptions& options)
      : EventReader(path, options), file_info_(path) {
    open();
    rewind_source();
    finish_open();
  }

  FileFormat format() const noexcept override { return FileFormat::hdf5; }
  std::string encoding_name() const override { return ecf_ ? "HDF5 (ECF)" : "HDF5"; }
  const DecodeStats& stats() const noexcept override { return stats_; }

 protected:
  bool decode_next_block(EventBuffer& cd, TriggerBuffer& triggers) override {
    if (next_event_ >= n_events_) {
      flush_triggers(triggers, std::numeric_limits<Timestamp>::max());
      return false;
    }
    const std::size_t from = cd.size();
    const std::uint64_t first = next_event_;
    if (direct_) {
      read_chunks_direct(cd);
    } else {
      read_hyperslab(cd);
    }
    Timestamp block_max = std::numeric_limits<Timestamp>::min();
    for (std::size_t i = from; i < cd.size(); ++i) block_max = std::max(block_max, cd[i].t);
    check_events(cd, from, first);
    stats_.cd_events += cd.size() - from;
    if (next_event_ >= n_events_) block_max = std::numeric_limits<Timestamp>::max();
    flush_triggers(triggers, block_max);
    return true;
  }

  // The time index stores the dataset position in state.time. Its byte_offset must stay within the file
  // and never decrease (the index loader checks both), and only the start may equal the first entry's
  // (the base class rewinds for that one): the event position scaled to [1, file size], 0 at the start.
  IndexEntry source_position() const override {
    IndexEntry e;
    const std::uint64_t size = file_info_.size();
    if (next_event_ > 0 && n_events_ > 0 && size > 0) {
      const auto scaled = static_cast<Uint128>(next_event_) * (size - 1) / n_events_;
      e.byte_offset = 1 + static_cast<std::uint64_t>(scaled);
    }
    e.state.time = static_cast<std::int64_t>(next_event_);
    e.state.time_base = static_cast<std::int64_t>(trigger_cursor_);
    e.state.last_event_t = last_event_t_;
    return e;
  }

  void restore_source(const IndexEntry& position) override {
    next_event_ = std::min<std::uint64_t>(
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, position.state.time)), n_events_);
    trigger_cursor_ = std::min<std::size_t>(
        static_cast<std::size_t>(std::max<std::int64_t>(0, position.state.time_base)), all_triggers_.size());
    last_event_t_ = position.state.last_event_t;
  }

  void rewind_source() override {
    next_event_ = 0;
    trigger_cursor_ = 0;
    last_event_t_ = std::numeric_limits<Timestamp>::min();
  }

  std::uint64_t data_size() const noexcept override { return file_info_.size(); }

  // Exact: the dataset's length (events outside the geometry, dropped, are the only difference).
  std::uint64_t estimated_remaining_events() const noexcept override { return n_events_ - next_event_; }

  IndexKey index_key() const override {
    IndexKey key;
    key.file_size = file_info_.size();
    key.mtime_ns = file_info_.mtime_ns();
    std::uint64_t h = 1469598103934665603ull;
    h = mix(h, static_cast<std::uint64_t>(geometry_.width));
    h = mix(h, static_cast<std::uint64_t>(geometry_.height));
    h = mix(h, options_.decode_triggers ? 1 : 0);
    h = mix(h, 0x48444635ECF00002ull);  // bump when the HDF5 decoding semantics change
    key.decode_signature = h;
    return key;
  }

  // The SDK subtracts the root attribute "time_shift" when time shifting is on, only if it is positive.
  Timestamp probe_metavision_shift() override { return time_shift_attr_ > 0 ? time_shift_attr_ : 0; }

 private:
  [[noreturn]] void fail(std::int64_t byte_offset, const std::string& what) const {
    throw_format_error(path_, byte_offset, what);
  }

  void open() {
    Hdf5Lock lock;
    const std::string name = path_.string();
    if (H5Fis_hdf5(name.c_str()) <= 0) fail(0, "not an HDF5 file (no HDF5 signature)");
    h5::Handle fapl = h5::plist(H5Pcreate(H5P_FILE_ACCESS));
    // Read-only opens need no lock file; some network file systems refuse locks altogether.
    H5Pset_file_locking(fapl.get(), false, true);
    file_ = h5::file(H5Fopen(name.c_str(), H5F_ACC_RDONLY, fapl.get()));
    if (!file_) fail(0, "HDF5 cannot open it: " + h5::last_error());

    if (!h5::path_exists(file_.get(), "/CD/events")) {
      if (h5::path_exists(file_.get(), "/data"))
        fail(-1,
             "this is a precomputed tensor file (dataset 'data'), not an HDF5 event file (no /CD/events): "
             "open it with evloader's tensor file reader");
      fail(-1, "not a Metavision HDF5 event file: no /CD/events dataset");
    }
    h5::Handle root = h5::group(H5Gopen2(file_.get(), "/", H5P_DEFAULT));
    if (root) header_ = h5::read_attributes(root.get());
    if (auto it = header_.find("time_shift"); it != header_.end())
      time_shift_attr_ = parse_int(it->second).value_or(0);
    geometry_ = options_.geometry.value_or(geometry_from_attributes(header_));

    cd_ = h5::dataset(H5Dopen2(file_.get(), "/CD/events", H5P_DEFAULT));
    if (!cd_) fail(-1, "cannot open /CD/events: " + h5::last_error());
    inspect_cd_dataset();
    if (options_.decode_triggers && h5::path_exists(file_.get(), "/EXT_TRIGGER/events")) read_triggers();
  }

  // A dataset's extent can be declared without storage (HDF5 reads fill values there): a file of a few
  // KiB could claim 2^60 events, and reading or reserving them would exhaust memory (or overflow the size
  // of a buffer). No codec stores records more densely than kMaxCompressionRatio (deflate's ceiling is
  // about 1032:1, ECF's about 48:1), so claims beyond that many times the file's size are refused. The
  // file's size, not H5Dget_storage_size(): that walks the whole chunk index, which a hostile file makes
  // as long as it likes (one chunk stored at index 2^35 of an extensible array: minutes).
  void check_extent(std::uint64_t records, std::size_t record_bytes, const char* name) const {
    const std::uint64_t size = file_info_.size();
    if (static_cast<long double>(records) * record_bytes >
        static_cast<long double>(size) * kMaxCompressionRatio + kStorageSlackBytes)
      fail(-1, std::string(name) + " declares " + std::to_string(records) + " records, more than a file of " +
                   std::to_string(size) + " bytes can hold");
  }

  void inspect_cd_dataset() {
    h5::Handle sp = h5::space(H5Dget_space(cd_.get()));
    if (H5Sget_simple_extent_ndims(sp.get()) != 1) fail(-1, "/CD/events is not one-dimensional");
    hsize_t dims[1] = {0};
    H5Sget_simple_extent_dims(sp.get(), dims, nullptr);
    n_events_ = dims[0];
    check_extent(n_events_, sizeof(EventCD), "/CD/events");

    h5::Handle file_type = h5::type(H5Dget_type(cd_.get()));
    if (H5Tget_class(file_type.get()) != H5T_COMPOUND)
      fail(-1, "/CD/events is not a compound dataset of (x, y, p, t) events");
    for (const char* field : {"x", "y", "p", "t"})
      if (H5Tget_member_index(file_type.get(), field) < 0)
        fail(-1, std::string("/CD/events lacks the event field '") + field + "'");
    mem_type_ = h5::event_cd_type();
    const bool same_layout = H5Tequal(file_type.get(), mem_type_.get()) > 0;

    h5::Handle dcpl = h5::plist(H5Dget_create_plist(cd_.get()));
    const bool chunked = H5Pget_layout(dcpl.get()) == H5D_CHUNKED;
    bool other_filters = false;
    const int nfilters = H5Pget_nfilters(dcpl.get());
    for (int i = 0; i < nfilters; ++i) {
      unsigned flags = 0;
      std::size_t nelmts = 0;
      unsigned config = 0;
      const H5Z_filter_t id =
          H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nelmts, nullptr, 0, nullptr, &config);
      if (id == static_cast<H5Z_filter_t>(ecf::kFilterId)) {
        ecf_ = true;
      } else {
        other_filters = true;
      }
    }
    if (chunked) {
      hsize_t chunk[1] = {0};
      if (H5Pget_chunk(dcpl.get(), 1, chunk) != 1 || chunk[0] == 0) fail(-1, "/CD/events has no chunk size");
      chunk_events_ = chunk[0];
    }
    // The fast path reads chunks as stored: it needs the exact Metavision record layout and at most the
    // ECF filter. Anything else (contiguous data, other filters, another field layout) goes through
    // H5Dread, which converts types and runs the filters itself.
    direct_ = chunked && same_layout && !other_filters;
    // ECF chunks are only ever decoded here. ECF decodes to Metavision's 16-byte records, meaningless in
    // another layout; and through H5Dread, a chunk announcing fewer events than the chunk holds makes
    // libhdf5 1.10 copy a whole chunk out of the filter's shorter buffer (a heap over-read).
    if (ecf_ && !direct_)
      fail(-1,
           "/CD/events: the ECF filter is only supported alone, on Metavision's 16-byte (x, y, p, t) "
           "records");
    check_chunks_ = !direct_ && chunked && nfilters == 0;
  }

  // libhdf5 1.10 copies a whole chunk out of the bytes it read (or inflated) without checking that there
  // were that many: an unfiltered chunk stored shorter than the chunk (a damaged or hostile file) makes
  // H5Dread read past its own buffer. Before HDF5 reads an unfiltered 1-D chunked dataset, each stored
  // chunk must hold exactly its bytes (unstored ones read as fill values). Filtered chunks that inflate to
  // less are libhdf5's problem too, and cannot be checked without inflating them.
  void check_raw_chunks(hid_t dataset, std::uint64_t chunk_records, std::uint64_t first_record,
                        std::uint64_t records, const char* name) const {
    h5::Handle type = h5::type(H5Dget_type(dataset));
    const std::uint64_t bytes = chunk_records * H5Tget_size(type.get());
    const std::uint64_t end = first_record + records;
    for (std::uint64_t first = first_record / chunk_records * chunk_records; first < end;
         first += chunk_records) {
      // The chunk index's size (H5Dget_chunk_storage_size reports the nominal size of unfiltered chunks).
      hsize_t offset[1] = {first}, stored = 0;
      unsigned mask = 0;
      haddr_t addr = HADDR_UNDEF;
      if (H5Dget_chunk_info_by_coord(dataset, offset, &mask, &addr, &stored) < 0 || addr == HADDR_UNDEF) {
        H5Eclear2(H5E_DEFAULT);  // never written
        continue;
      }
      if (stored != 0 && stored != bytes)
        fail(-1, std::string(name) + " chunk " + std::to_string(first / chunk_records) + " stores " +
                     std::to_string(stored) + " bytes for a chunk of " + std::to_string(bytes));
    }
  }

  void read_triggers() {
    h5::Handle ds = h5::dataset(H5Dopen2(file_.get(), "/EXT_TRIGGER/events", H5P_DEFAULT));
    if (!ds) fail(-1, "cannot open /EXT_TRIGGER/events: " + h5::last_error());
    h5::Handle sp = h5::space(H5Dget_space(ds.get()));
    if (H5Sget_simple_extent_ndims(sp.get()) != 1) fail(-1, "/EXT_TRIGGER/events is not one-dimensional");
    hsize_t dims[1] = {0};
    H5Sget_simple_extent_dims(sp.get(), dims, nullptr);
    if (dims[0] == 0) return;
    check_extent(dims[0], sizeof(EventExtTrigger), "/EXT_TRIGGER/events");
    h5::Handle file_type = h5::type(H5Dget_type(ds.get()));
    for (const char* field : {"p", "t", "id"})
      if (H5Tget_class(file_type.get()) != H5T_COMPOUND || H5Tget_member_index(file_type.get(), field) < 0)
        fail(-1, std::string("/EXT_TRIGGER/events lacks the trigger field '") + field + "'");
    h5::Handle dcpl = h5::plist(H5Dget_create_plist(ds.get()));
    hsize_t chunk[1] = {0};
    if (H5Pget_layout(dcpl.get()) == H5D_CHUNKED && H5Pget_nfilters(dcpl.get()) == 0 &&
        H5Pget_chunk(dcpl.get(), 1, chunk) == 1 && chunk[0] > 0)
      check_raw_chunks(ds.get(), chunk[0], 0, dims[0], "/EXT_TRIGGER/events");
    h5::Handle mem = h5::trigger_type();
    EventExtTrigger* out = all_triggers_.prepare(static_cast<std::size_t>(dims[0]));
    if (H5Dread(ds.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
      fail(-1, "cannot read /EXT_TRIGGER/events: " + h5::last_error());
    all_triggers_.commit(static_cast<std::size_t>(dims[0]));
  }

  // Fast path: whole chunks as stored, decoded here after the lock is released.
  void read_chunks_direct(EventBuffer& cd) {
    const std::uint64_t per_block = std::max<std::uint64_t>(1, kBlockEvents / chunk_events_);
    const std::uint64_t chunks_left = (n_events_ - next_event_ + chunk_events_ - 1) / chunk_events_;
    const std::size_t count = static_cast<std::size_t>(std::min(per_block, chunks_left));
    if (raw_.size() < count) raw_.resize(count);
    {
      Hdf5Lock lock;
      for (std::size_t k = 0; k < count; ++k) {
        RawChunk& chunk = raw_[k];
        chunk.first_event = next_event_ + k * chunk_events_;
        hsize_t offset[1] = {chunk.first_event};
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0;
        if (H5Dget_chunk_info_by_coord(cd_.get(), offset, &mask, &addr, &size) < 0)
          fail(-1, chunk_name(chunk.first_event) + ": cannot locate it: " + h5::last_error());
        if (addr == HADDR_UNDEF || size == 0)
          fail(-1, chunk_name(chunk.first_event) + " is not stored (the file is incomplete)");
        chunk.address = static_cast<std::int64_t>(addr);
        chunk.bytes.resize(static_cast<std::size_t>(size));
        std::uint32_t filters = 0;
        if (H5Dread_chunk(cd_.get(), H5P_DEFAULT, offset, &filters, chunk.bytes.data()) < 0)
          fail(chunk.address, chunk_name(chunk.first_event) + ": cannot read it: " + h5::last_error());
        chunk.filter_mask = filters;
      }
    }
    for (std::size_t k = 0; k < count; ++k) decode_chunk(raw_[k], cd);
    next_event_ = std::min(n_events_, next_event_ + count * chunk_events_);
  }

  struct RawChunk {
    std::uint64_t first_event = 0;
    std::int64_t address = -1;
    std::uint32_t filter_mask = 0;
    std::vector<std::uint8_t> bytes;
  };

  std::string chunk_name(std::uint64_t first_event) const {
    return "/CD/events chunk " + std::to_string(first_event / chunk_events_) + " (events " +
           std::to_string(first_event) + "..)";
  }

  void decode_chunk(const RawChunk& chunk, EventBuffer& cd) {
    const std::uint64_t expected = std::min<std::uint64_t>(chunk_events_, n_events_ - chunk.first_event);
    const std::size_t size = chunk.bytes.size();
    stats_.bytes += size;
    // Filter mask bit 0: the (optional) ECF filter was skipped for this chunk, the records are raw.
    if (!ecf_ || (chunk.filter_mask & 1u)) {
      if (size < expected * sizeof(EventCD))
        fail(chunk.address, chunk_name(chunk.first_event) + ": uncompressed chunk of " +
                                std::to_string(size) + " bytes, too short for its " +
                                std::to_string(expected) + " events");
      cd.append({reinterpret_cast<const EventCD*>(chunk.bytes.data()), static_cast<std::size_t>(expected)});
      return;
    }
    ecf::ChunkHeader header;
    ecf::detail::DecodeError error;
    const auto* data = chunk.bytes.data();
    if (!ecf::detail::parse_header(data, size, header, error))
      fail(chunk.address, chunk_name(chunk.first_event) + ": ECF " + error.what);
    if (header.event_count < expected || header.event_count > chunk_events_)
      fail(chunk.address, chunk_name(chunk.first_event) + ": ECF chunk holds " +
                              std::to_string(header.event_count) + " events where the dataset needs " +
                              std::to_string(expected) + " (chunk size " + std::to_string(chunk_events_) +
                              ")");
    std::size_t n = 0;
    EventCD* out = cd.prepare(header.event_count);
    if (!ecf::detail::try_decode(data, size, out, header.event_count, n, error))
      fail(chunk.address + static_cast<std::int64_t>(error.offset),
           chunk_name(chunk.first_event) + ": ECF " + error.what + " (byte " + std::to_string(error.offset) +
               " of the " + std::to_string(size) + "-byte chunk)");
    cd.commit(static_cast<std::size_t>(expected));
  }

  // General path: HDF5 reads (and converts, and filters) a hyperslab itself, all under the lock.
  void read_hyperslab(EventBuffer& cd) {
    const std::uint64_t count = std::min<std::uint64_t>(kBlockEvents, n_events_ - next_event_);
    EventCD* out = cd.prepare(static_cast<std::size_t>(count));
    {
      Hdf5Lock lock;
      if (check_chunks_) check_raw_chunks(cd_.get(), chunk_events_, next_event_, count, "/CD/events");
      h5::Handle file_space = h5::space(H5Dget_space(cd_.get()));
      hsize_t start[1] = {next_event_}, n[1] = {count};
      H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, n, nullptr);
      h5::Handle mem_space = h5::space(H5Screate_simple(1, n, nullptr));
      if (H5Dread(cd_.get(), mem_type_.get(), mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0)
        fail(-1, "cannot read /CD/events events " + std::to_string(next_event_) + ".." +
                     std::to_string(next_event_ + count) + ": " + h5::last_error());
    }
    cd.commit(static_cast<std::size_t>(count));
    stats_.bytes += count * sizeof(EventCD);
    next_event_ += count;
  }

  // Drop (and count) events outside the sensor, count time going backwards, as the RAW readers do.
  void check_events(EventBuffer& cd, std::size_t from, std::uint64_t first_event) {
    EventCD* e = cd.data() + from;
    const std::size_t n = cd.size() - from;
    Timestamp prev = last_event_t_;
    std::uint64_t backwards = 0;
    bool outside = false;
    const unsigned w = geometry_.known() ? static_cast<unsigned>(geometry_.width) : 65536u;
    const unsigned h = geometry_.known() ? static_cast<unsigned>(geometry_.height) : 65536u;
    for (std::size_t i = 0; i < n; ++i) {
      outside |= (e[i].x >= w) | (e[i].y >= h);
      backwards += e[i].t < prev;
      prev = e[i].t;
    }
    std::uint64_t dropped = 0;
    if (outside) {
      std::size_t keep = 0;
      backwards = 0;
      prev = last_event_t_;
      for (std::size_t i = 0; i < n; ++i) {
        const EventCD ev = e[i];
        if (ev.x >= w || ev.y >= h) {
          if (options_.on_violation == OnViolation::raise)
            fail(-1, "/CD/events event " + std::to_string(first_event + i) + " at (" + std::to_string(ev.x) +
                         ", " + std::to_string(ev.y) + ") lies outside the " +
                         std::to_string(geometry_.width) + "x" + std::to_string(geometry_.height) +
                         " sensor");
          ++dropped;
          continue;
        }
        backwards += ev.t < prev;
        prev = ev.t;
        e[keep++] = ev;
      }
      cd.truncate(from + keep);
    }
    if (backwards && options_.on_violation == OnViolation::raise) {
      Timestamp p = last_event_t_;
      for (std::size_t i = 0; i < cd.size() - from; ++i) {
        if (e[i].t < p)
          fail(-1, "/CD/events: time goes backwards at event " + std::to_string(first_event + i) + " (" +
                       std::to_string(e[i].t) + " after " + std::to_string(p) + ")");
        p = e[i].t;
      }
    }
    stats_.out_of_bounds += dropped;
    stats_.time_backwards += backwards;
    last_event_t_ = prev;
  }

  // Triggers up to the block's last time join the block, so they come out close to their CD events.
  void flush_triggers(TriggerBuffer& triggers, Timestamp up_to) {
    const std::size_t begin = trigger_cursor_;
    while (trigger_cursor_ < all_triggers_.size() && all_triggers_[trigger_cursor_].t <= up_to)
      ++trigger_cursor_;
    if (up_to == std::numeric_limits<Timestamp>::max()) trigger_cursor_ = all_triggers_.size();
    triggers.append({all_triggers_.data() + begin, trigger_cursor_ - begin});
    stats_.trigger_events += trigger_cursor_ - begin;
  }

  // HDF5 identifiers must be released under the lock, also when the constructor throws.
  struct Handles {
    h5::Handle file, cd, mem_type;
    Handles() = default;
    Handles(const Handles&) = delete;
    Handles& operator=(const Handles&) = delete;
    ~Handles() {
      Hdf5Lock lock;
      mem_type.reset();
      cd.reset();
      file.reset();
    }
  };

  File file_info_;
  Handles h5_;
  h5::Handle& file_ = h5_.file;
  h5::Handle& cd_ = h5_.cd;
  h5::Handle& mem_type_ = h5_.mem_type;
  std::uint64_t n_events_ = 0;
  std::uint64_t chunk_events_ = 1;
  bool ecf_ = false;
  bool direct_ = false;
  bool check_chunks_ = false;  // unfiltered chunks read by H5Dread: check their stored sizes first
  Timestamp time_shift_attr_ = 0;
  TriggerBuffer all_triggers_;
  std::size_t trigger_cursor_ = 0;
  std::uint64_t next_event_ = 0;
  Timestamp last_event_t_ = std::numeric_limits<Timestamp>::min();
  std::vector<RawChunk> raw_;
  DecodeStats stats_{};
};

}  // namespace

std::unique_ptr<EventReader> make_hdf5_event_reader(const std::filesystem::path& path,
                                                    const ReaderOptions& options) {
  return std::make_unique<Hdf5EventReader>(path, options);
}

}  // namespace evloader::detail
