// SPDX-License-Identifier: Apache-2.0
// HDF5 event file writer in OpenEB's layout: CD chunks ECF-encoded outside the HDF5 lock and stored
// with H5Dwrite_chunk; indexes built with OpenEB's 2 ms rule so Metavision can seek in our files.
#include "evloader/io/hdf5_event_writer.hpp"

#include <limits>

#include "evloader/core/error.hpp"
#include "io/hdf5/h5_util.hpp"
#include "preprocess/tensor_file/hdf5_lock.hpp"

namespace evloader {

namespace {

using detail::Hdf5Lock;
namespace h5 = detail::h5;

struct IndexRecord {
  std::uint64_t id;
  std::int64_t ts;
};
static_assert(sizeof(IndexRecord) == 16);

// OpenEB's index table: entry 0 = (0, -1); entry k >= 1 = (id, ts relative to the first event) of the
// first event of the most recent non-empty 2 ms period before period k (repeated over empty periods);
// a closing entry for the last period.
class IndexBuilder {
 public:
  template <class Event>
  void add(std::span<const Event> events) {
    for (const Event& e : events) {
      if (!started_) {
        offset_ = -e.t;
        started_ = true;
      }
      const std::int64_t t = e.t + offset_;
      const std::uint64_t period = static_cast<std::uint64_t>(t) / kPeriodUs + 1;
      while (period > count_) {
        if (event_id_ != period_id_) {
          last_id_ = period_id_;
          last_ts_ = period_ts_;
        }
        pending_.push_back({last_id_, last_ts_});
        ++count_;
        period_id_ = event_id_;
        period_ts_ = t;
      }
      ++event_id_;
    }
  }
  void finish() {
    if (count_ > 0) {
      pending_.push_back({period_id_, period_ts_});
      ++count_;
    }
  }
  [[nodiscard]] bool started() const noexcept { return started_; }
  [[nodiscard]] std::int64_t offset() const noexcept { return offset_; }
  std::vector<IndexRecord>& pending() noexcept { return pending_; }

 private:
  static constexpr std::uint64_t kPeriodUs = 2000;
  std::uint64_t count_ = 0, event_id_ = 0, period_id_ = 0, last_id_ = 0;
  std::int64_t period_ts_ = -1, last_ts_ = -1, offset_ = 0;
  bool started_ = false;
  std::vector<IndexRecord> pending_;
};

}  // namespace

struct Hdf5EventWriter::Impl {
  struct Handles {
    h5::Handle file, cd, cd_index, trig, trig_index, cd_type, trig_type, index_type;
    Handles() = default;
    Handles(const Handles&) = delete;
    Handles& operator=(const Handles&) = delete;
    ~Handles() { reset(); }
    void reset() {
      Hdf5Lock lock;
      for (h5::Handle* handle :
           {&trig_index, &trig, &cd_index, &cd, &index_type, &trig_type, &cd_type, &file})
        handle->reset();
    }
  };

  std::filesystem::path path;
  Hdf5WriterOptions options;
  Handles h;
  std::vector<EventCD> pending_cd;
  std::vector<EventExtTrigger> pending_triggers;
  std::vector<std::byte> encoded;
  std::uint64_t cd_in_file = 0, index_in_file = 0, triggers_in_file = 0, trigger_index_in_file = 0;
  std::uint64_t cd_total = 0, triggers_total = 0;
  Timestamp last_cd_t = std::numeric_limits<Timestamp>::min();
  Timestamp last_trigger_t = std::numeric_limits<Timestamp>::min();
  IndexBuilder cd_index, trigger_index;
  bool closed = false;

  [[noreturn]] void fail(const std::string& what) const {
    throw_io_error(path, what + (h5::last_error().empty() ? "" : ": " + h5::last_error()));
  }

  h5::Handle create_dataset(const char* name, hid_t type, bool ecf) {
    hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {options.chunk_events};
    h5::Handle space = h5::space(H5Screate_simple(1, dims, maxdims));
    h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
    H5Pset_chunk(dcpl.get(), 1, chunk);
    if (ecf && H5Pset_filter(dcpl.get(), static_cast<H5Z_filter_t>(ecf::kFilterId), H5Z_FLAG_OPTIONAL, 0,
                             nullptr) < 0)
      fail("cannot add the ECF filter to /CD/events");
    h5::Handle ds =
        h5::dataset(H5Dcreate2(h.file.get(), name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    if (!ds) fail(std::string("cannot create ") + name);
    return ds;
  }

  void open() {
    // Registered before taking the lock (register_filter() locks): H5Dcreate then knows the filter.
    ecf::register_filter();
    Hdf5Lock lock;
    h5::Handle fapl = h5::plist(H5Pcreate(H5P_FILE_ACCESS));
    H5Pset_file_locking(fapl.get(), false, true);
    h.file = h5::file(H5Fcreate(path.string().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
    if (!h.file) fail("cannot create the HDF5 file");
    h.cd_type = h5::event_cd_type();
    h.trig_type = h5::trigger_type();
    h.index_type = h5::index_type();
    for (const char* group : {"/CD", "/EXT_TRIGGER"}) {
      h5::Handle g = h5::group(H5Gcreate2(h.file.get(), group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
      if (!g) fail(std::string("cannot create the group ") + group);
    }
    h.cd = create_dataset("/CD/events", h.cd_type.get(), true);
    h.cd_index = create_dataset("/CD/indexes", h.index_type.get(), false);
    h.trig = create_dataset("/EXT_TRIGGER/events", h.trig_type.get(), false);
    h.trig_index = create_dataset("/EXT_TRIGGER/indexes", h.index_type.get(), false);
    set_attribute_locked("version", "1.0");
    if (options.geometry.known())
      set_attribute_locked(
          "geometry", std::to_string(options.geometry.width) + "x" + std::to_string(options.geometry.height));
    for (const auto& [key, value] : options.attributes) set_attribute_locked(key, value);
  }

  void set_attribute_locked(const std::string& key, const std::string& value) {
    h5::Handle root = h5::group(H5Gopen2(h.file.get(), "/", H5P_DEFAULT));
    if (!root || !h5::write_string_attribute(root.get(), key, value))
      fail("cannot write the root attribute '" + key + "'");
  }

  // Records appended at the end of an unfiltered 1-D dataset (indexes, triggers); caller holds the lock.
  void append_locked(hid_t ds, hid_t type, std::uint64_t& in_file, const void* data, std::size_t n,
                     const char* name) {
    if (n == 0) return;
    hsize_t new_size[1] = {in_file + n};
    if (H5Dset_extent(ds, new_size) < 0) fail(std::string("cannot extend ") + name);
    h5::Handle file_space = h5::space(H5Dget_space(ds));
    hsize_t start[1] = {in_file}, count[1] = {n};
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
    h5::Handle mem_space = h5::space(H5Screate_simple(1, count, nullptr));
    if (H5Dwrite(ds, type, mem_space.get(), file_space.get(), H5P_DEFAULT, data) < 0)
      fail(std::string("cannot write ") + name);
    in_file += n;
  }

  void flush_index(IndexBuilder& index, hid_t ds, std::uint64_t& in_file, const char* name, bool all) {
    auto& pending = index.pending();
    const std::size_t n = all ? pending.size() : pending.size() / options.chunk_events * options.chunk_events;
    if (n == 0) return;
    {
      Hdf5Lock lock;
      append_locked(ds, h.index_type.get(), in_file, pending.data(), n, name);
    }
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
  }

  // One CD chunk: encoded here, outside the lock, then stored as is (filter mask 0 = ECF applied).
  void write_cd_chunk(std::span<const EventCD> events) {
    encoded.resize(ecf::max_encoded_size(events.size()));
    encoded.resize(ecf::encode(events, encoded.data(), options.mode));
    Hdf5Lock lock;
    hsize_t new_size[1] = {cd_in_file + events.size()};
    if (H5Dset_extent(h.cd.get(), new_size) < 0) fail("cannot extend /CD/events");
    hsize_t offset[1] = {cd_in_file};
    if (H5Dwrite_chunk(h.cd.get(), H5P_DEFAULT, 0, offset, encoded.size(), encoded.data()) < 0)
      fail("cannot write a /CD/events chunk");
    cd_in_file += events.size();
  }

  void write(std::span<const EventCD> events) {
    if (closed) throw ConfigError("Hdf5EventWriter: write() after close()");
    const Geometry g = options.geometry;
    Timestamp prev = last_cd_t;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const EventCD& e = events[i];
      if (e.t < prev)
        throw ConfigError("Hdf5EventWriter: events must be sorted by t (event " +
                          std::to_string(cd_total + i) + " has t=" + std::to_string(e.t) + " after " +
                          std::to_string(prev) + ")");
      if (e.x >= 2048 || e.y >= 2048 || (g.known() && (e.x >= g.width || e.y >= g.height)))
        throw ConfigError("Hdf5EventWriter: event " + std::to_string(cd_total + i) + " at (" +
                          std::to_string(e.x) + ", " + std::to_string(e.y) + ") lies outside the sensor");
      if (e.p != 0 && e.p != 1)
        throw ConfigError("Hdf5EventWriter: polarity must be 0 or 1, event " + std::to_string(cd_total + i) +
                          " has " + std::to_string(e.p));
      prev = e.t;
    }
    last_cd_t = prev;
    cd_index.add(events);
    cd_total += events.size();
    const std::size_t chunk = options.chunk_events;
    std::size_t i = 0;
    // Fill the pending chunk first; then whole chunks straight from the caller's array.
    if (!pending_cd.empty()) {
      const std::size_t take = std::min(chunk - pending_cd.size(), events.size());
      pending_cd.insert(pending_cd.end(), events.begin(), events.begin() + static_cast<std::ptrdiff_t>(take));
      i = take;
      if (pending_cd.size() == chunk) {
        write_cd_chunk(pending_cd);
        pending_cd.clear();
      }
    }
    for (; events.size() - i >= chunk; i += chunk) write_cd_chunk(events.subspan(i, chunk));
    pending_cd.insert(pending_cd.end(), events.begin() + static_cast<std::ptrdiff_t>(i), events.end());
    flush_index(cd_index, h.cd_index.get(), index_in_file, "/CD/indexes", false);
  }

  void write_triggers(std::span<const EventExtTrigger> triggers) {
    if (closed) throw ConfigError("Hdf5EventWriter: write_triggers() after close()");
    Timestamp prev = last_trigger_t;
    for (std::size_t i = 0; i < triggers.size(); ++i) {
      if (triggers[i].t < prev)
        throw ConfigError("Hdf5EventWriter: triggers must be sorted by t (trigger " +
                          std::to_string(triggers_total + i) + ")");
      prev = triggers[i].t;
    }
    last_trigger_t = prev;
    trigger_index.add(triggers);
    triggers_total += triggers.size();
    pending_triggers.insert(pending_triggers.end(), triggers.begin(), triggers.end());
    if (pending_triggers.size() >= options.chunk_events) {
      const std::size_t n = pending_triggers.size() / options.chunk_events * options.chunk_events;
      {
        Hdf5Lock lock;
        append_locked(h.trig.get(), h.trig_type.get(), triggers_in_file, pending_triggers.data(), n,
                      "/EXT_TRIGGER/events");
      }
      pending_triggers.erase(pending_triggers.begin(),
                             pending_triggers.begin() + static_cast<std::ptrdiff_t>(n));
    }
    flush_index(trigger_index, h.trig_index.get(), trigger_index_in_file, "/EXT_TRIGGER/indexes", false);
  }

  void close() {
    if (closed) return;
    closed = true;
    if (!pending_cd.empty()) write_cd_chunk(pending_cd);
    pending_cd.clear();
    cd_index.finish();
    trigger_index.finish();
    flush_index(cd_index, h.cd_index.get(), index_in_file, "/CD/indexes", true);
    flush_index(trigger_index, h.trig_index.get(), trigger_index_in_file, "/EXT_TRIGGER/indexes", true);
    {
      Hdf5Lock lock;
      append_locked(h.trig.get(), h.trig_type.get(), triggers_in_file, pending_triggers.data(),
                    pending_triggers.size(), "/EXT_TRIGGER/events");
      pending_triggers.clear();
      // OpenEB stores "offset" = -(first t) on each index table that saw events.
      if (cd_index.started() &&
          !h5::write_string_attribute(h.cd_index.get(), "offset", std::to_string(cd_index.offset())))
        fail("cannot write /CD/indexes offset");
      if (trigger_index.started() &&
          !h5::write_string_attribute(h.trig_index.get(), "offset", std::to_string(trigger_index.offset())))
        fail("cannot write /EXT_TRIGGER/indexes offset");
      if (H5Fflush(h.file.get(), H5F_SCOPE_GLOBAL) < 0) fail("cannot flush the HDF5 file");
    }
    h.reset();
  }
};

Hdf5EventWriter::Hdf5EventWriter(const std::filesystem::path& path, const Hdf5WriterOptions& options)
    : path_(path), impl_(std::make_unique<Impl>()) {
  if (options.chunk_events < 1 || options.chunk_events > ecf::kMaxChunkEvents)
    throw ConfigError("Hdf5EventWriter: chunk_events must be in 1..65535, got " +
                      std::to_string(options.chunk_events));
  if (options.geometry.width < 0 || options.geometry.height < 0 || options.geometry.width > 2048 ||
      options.geometry.height > 2048)
    throw ConfigError("Hdf5EventWriter: ECF stores sensors up to 2048x2048, got " +
                      std::to_string(options.geometry.width) + "x" + std::to_string(options.geometry.height));
  impl_->path = path;
  impl_->options = options;
  impl_->open();
}

Hdf5EventWriter::~Hdf5EventWriter() {
  try {
    close();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; close() reports errors
  }
}

void Hdf5EventWriter::write(std::span<const EventCD> events) { impl_->write(events); }
void Hdf5EventWriter::write_triggers(std::span<const EventExtTrigger> triggers) {
  impl_->write_triggers(triggers);
}

void Hdf5EventWriter::set_attribute(const std::string& key, const std::string& value) {
  if (impl_->closed) throw ConfigError("Hdf5EventWriter: set_attribute() after close()");
  Hdf5Lock lock;
  impl_->set_attribute_locked(key, value);
}

void Hdf5EventWriter::close() {
  if (!impl_->closed) {
    try {
      impl_->close();
    } catch (...) {
      impl_->h.reset();
      throw;
    }
  }
}

std::uint64_t Hdf5EventWriter::events_written() const noexcept { return impl_->cd_total; }
std::uint64_t Hdf5EventWriter::triggers_written() const noexcept { return impl_->triggers_total; }

}  // namespace evloader
