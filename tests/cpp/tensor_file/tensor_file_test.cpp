// SPDX-License-Identifier: Apache-2.0
// Tensor files: writer -> reader round trips, files in other layouts, bad files, parallel readers.
#include "evloader/preprocess/tensor_file.hpp"

#include <gtest/gtest.h>
#include <hdf5.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "evloader/core/error.hpp"
#include "evloader/preprocess/area_resize.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

namespace fs = std::filesystem;

fs::path temp_file(const std::string& name) { return test::temp_dir() / name; }

TensorFileInfo histo_info(int c = 2, int h = 8, int w = 12) {
  TensorFileInfo info;
  info.events_to_tensor = "histo";
  info.delta_t = 50000;
  info.channels = c;
  info.height = h;
  info.width = w;
  info.sensor = {w, h};
  info.kwargs["max_incr_per_pixel"] = 5.0;
  return info;
}

std::vector<float> random_frames(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng) < 0.7f ? 0.f : u(rng);
  return v;
}

std::vector<float> read_all(const TensorFileReader& r, int h = 0, int w = 0) {
  const auto& i = r.info();
  const int hh = h ? h : i.height, ww = w ? w : i.width;
  std::vector<float> out(static_cast<std::size_t>(r.num_frames()) * i.channels * hh * ww);
  r.read_frames(0, r.num_frames(), h, w, out);
  return out;
}

// --- raw HDF5 helpers for files "written by other tools" ------------------------------------------------
struct H5Id {
  hid_t id;
  herr_t (*close)(hid_t);
  ~H5Id() {
    if (id >= 0) close(id);
  }
};

void put_fixed_string(hid_t obj, const char* name, const std::string& s) {
  H5Id type{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(type.id, s.size());
  H5Id space{H5Screate(H5S_SCALAR), H5Sclose};
  H5Id attr{H5Acreate2(obj, name, type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  H5Awrite(attr.id, type.id, s.data());
}

void put_u32(hid_t obj, const char* name, std::uint32_t v) {
  H5Id space{H5Screate(H5S_SCALAR), H5Sclose};
  H5Id attr{H5Acreate2(obj, name, H5T_STD_U32LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  H5Awrite(attr.id, H5T_NATIVE_UINT32, &v);
}

enum class Layout { contiguous, multi_frame_chunks, shuffle_deflate, big_endian };

// A float32 [n, c, h, w] file in a layout our direct chunk path does not take, with minimal attributes.
void write_foreign(const fs::path& path, const std::vector<float>& frames, int n, int c, int h, int w,
                   Layout layout, bool with_name = true, bool with_delta_t = true) {
  H5Id file{H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose};
  const hsize_t dims[4] = {static_cast<hsize_t>(n), static_cast<hsize_t>(c), static_cast<hsize_t>(h),
                           static_cast<hsize_t>(w)};
  H5Id space{H5Screate_simple(4, dims, nullptr), H5Sclose};
  H5Id dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  hid_t ftype = H5T_IEEE_F32LE;
  if (layout == Layout::multi_frame_chunks) {
    const hsize_t chunk[4] = {2, 1, dims[2], dims[3]};
    H5Pset_chunk(dcpl.id, 4, chunk);
    H5Pset_deflate(dcpl.id, 6);
  } else if (layout == Layout::shuffle_deflate || layout == Layout::big_endian) {
    const hsize_t chunk[4] = {1, dims[1], dims[2], dims[3]};
    H5Pset_chunk(dcpl.id, 4, chunk);
    if (layout == Layout::shuffle_deflate) H5Pset_shuffle(dcpl.id);
    H5Pset_deflate(dcpl.id, 6);
    if (layout == Layout::big_endian) ftype = H5T_IEEE_F32BE;
  }
  H5Id data{H5Dcreate2(file.id, "data", ftype, space.id, H5P_DEFAULT, dcpl.id, H5P_DEFAULT), H5Dclose};
  H5Dwrite(data.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, frames.data());
  if (with_name) put_fixed_string(data.id, "events_to_tensor", "histo");
  if (with_delta_t) put_u32(data.id, "delta_t", 10000);
}

// --- round trips ---------------------------------------------------------------------------------------
TEST(TensorFile, Float32RoundTripKeepsValuesAndAttributes) {
  const auto path = temp_file("roundtrip_f32.h5");
  auto info = histo_info();
  info.sensor = {24, 16};
  info.start_ts = 913700000;
  info.kwargs["split_polarity"] = true;
  info.kwargs["negative_bit_length"] = std::int64_t{4};
  info.kwargs["note"] = std::string("made by a test");
  const std::size_t frame = 2 * 8 * 12;
  const auto frames = random_frames(frame * 7, 1);
  {
    TensorFileWriter w(path, info);
    w.write(std::span<const float>(frames.data(), frame * 3));
    w.write(std::span<const float>(frames.data() + frame * 3, frame * 4));
    EXPECT_EQ(w.index(), 7);
    w.close();
  }
  TensorFileReader r(path);
  EXPECT_EQ(r.num_frames(), 7);
  EXPECT_EQ(r.info().events_to_tensor, "histo");
  EXPECT_EQ(r.info().mode, TensorMode::delta_t);
  EXPECT_EQ(r.info().delta_t, 50000u);
  EXPECT_EQ(r.info().dtype, TensorDtype::float32);
  EXPECT_FALSE(r.info().store_as_uint8);
  EXPECT_EQ(r.info().start_ts, std::optional<Timestamp>(913700000));
  EXPECT_EQ(r.sensor_size(), (Geometry{24, 16}));
  EXPECT_EQ(r.duration(), 7 * 50000);
  ASSERT_EQ(r.info().kwargs.size(), 4u);
  EXPECT_EQ(std::get<double>(r.info().kwargs.at("max_incr_per_pixel")), 5.0);
  EXPECT_EQ(std::get<bool>(r.info().kwargs.at("split_polarity")), true);
  EXPECT_EQ(std::get<std::int64_t>(r.info().kwargs.at("negative_bit_length")), 4);
  EXPECT_EQ(std::get<std::string>(r.info().kwargs.at("note")), "made by a test");
  EXPECT_EQ(read_all(r), frames);
  std::vector<std::byte> raw(frame * 4 * 2);
  r.read_raw(5, 2, raw);
  EXPECT_EQ(std::memcmp(raw.data(), frames.data() + frame * 5, raw.size()), 0);
}

TEST(TensorFile, Uint8StorageRoundsAndReadsBackOver255) {
  const auto path = temp_file("roundtrip_u8.h5");
  auto info = histo_info(2, 4, 4);
  info.store_as_uint8 = true;
  std::vector<float> frames(2 * 4 * 4 * 2);
  for (std::size_t i = 0; i < frames.size(); ++i) frames[i] = static_cast<float>(i % 11) / 10.f;
  frames[0] = 0.5f / 255.f;  // half way: rounds to even (0)
  frames[1] = 1.5f / 255.f;  // -> 2
  {
    TensorFileWriter w(path, info);
    w.write(frames);
  }
  TensorFileReader r(path);
  EXPECT_EQ(r.info().dtype, TensorDtype::uint8);
  EXPECT_TRUE(r.info().store_as_uint8);
  std::vector<std::byte> raw(frames.size());
  r.read_raw(0, 2, raw);
  const auto back = read_all(r);
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const auto q = static_cast<std::uint8_t>(std::nearbyint(255.f * frames[i]));
    EXPECT_EQ(static_cast<std::uint8_t>(raw[i]), q) << i;
    EXPECT_EQ(back[i], static_cast<float>(q) / 255.f) << i;
  }
  EXPECT_EQ(static_cast<int>(raw[0]), 0);
  EXPECT_EQ(static_cast<int>(raw[1]), 2);
}

TEST(TensorFile, Uint8StorageRefusesValuesOutsideUnitRange) {
  auto info = histo_info(1, 2, 2);
  info.store_as_uint8 = true;
  TensorFileWriter w(temp_file("u8_bad.h5"), info);
  std::vector<float> frames = {0.f, 0.5f, 1.2f, 0.f};
  EXPECT_THROW(w.write(frames), ConfigError);
  frames[2] = std::nanf("");
  EXPECT_THROW(w.write(frames), ConfigError);
  info.dtype = TensorDtype::int8;
  EXPECT_THROW(TensorFileWriter(temp_file("u8_bad2.h5"), info), ConfigError);
}

TEST(TensorFile, NEventsModeStoresLastTimestamps) {
  const auto path = temp_file("n_events.h5");
  auto info = histo_info(2, 4, 6);
  info.mode = TensorMode::n_events;
  info.delta_t = 0;
  info.n_events = 1000;
  const auto frames = random_frames(3 * 48, 2);
  const std::vector<Timestamp> last = {1200, 2500, 3999};
  {
    TensorFileWriter w(path, info);
    EXPECT_THROW(w.write(frames), ConfigError);  // no timestamps
    w.write(frames.data(), 3, last);
  }
  TensorFileReader r(path);
  EXPECT_EQ(r.info().mode, TensorMode::n_events);
  EXPECT_EQ(r.info().n_events, 1000);
  EXPECT_EQ(r.info().delta_t, 0u);
  EXPECT_EQ(r.last_timestamps(), last);
  EXPECT_EQ(r.duration(), 3999);
  EXPECT_EQ(read_all(r), frames);
  std::vector<float> out(48);
  EXPECT_THROW(r.read_window(0, 10, 0, 0, out), ConfigError);
}

TEST(TensorFile, SetCursorDropsFramesAndCloseTrims) {
  const auto path = temp_file("cursor.h5");
  const auto frames = random_frames(5 * 2 * 8 * 12, 3);
  {
    TensorFileWriter w(path, histo_info(), {.compression_level = 1, .grow_by = 2, .compression_threads = 3});
    w.write(frames);
    w.set_cursor(3);
    EXPECT_THROW(w.set_cursor(4), ConfigError);
  }
  TensorFileReader r(path);
  EXPECT_EQ(r.num_frames(), 3);
  const auto back = read_all(r);
  EXPECT_TRUE(std::equal(back.begin(), back.end(), frames.begin()));
}

TEST(TensorFile, ZeroFramesAndCompressionThreads) {
  const auto path = temp_file("zeros_threads.h5");
  const std::size_t frame = 2 * 8 * 12;
  auto frames = random_frames(frame * 11, 11);
  for (int f : {0, 3, 4, 10}) std::fill_n(frames.begin() + f * frame, frame, 0.f);
  {
    TensorFileWriter w(path, histo_info(),
                       {.compression_level = 6, .grow_by = 100, .compression_threads = 4});
    w.write(std::span<const float>(frames.data(), frame * 2));
    w.write(std::span<const float>(frames.data() + frame * 2, frame * 9));
  }
  TensorFileReader r(path);
  EXPECT_EQ(read_all(r), frames);
  EXPECT_THROW(TensorFileWriter(temp_file("bad_threads.h5"), histo_info(),
                                {.compression_level = 4, .grow_by = 100, .compression_threads = 0}),
               ConfigError);
}

TEST(TensorFile, WindowsPastTheEndReadAsZeros) {
  const auto path = temp_file("window.h5");
  const std::size_t frame = 2 * 8 * 12;
  const auto frames = random_frames(frame * 4, 4);
  {
    TensorFileWriter w(path, histo_info());
    w.write(frames);
  }
  TensorFileReader r(path);
  // [120 ms, 320 ms) with delta_t 50 ms: frames 2..5 of which 4 and 5 do not exist.
  std::vector<float> out(frame * 4, -1.f);
  EXPECT_EQ(r.read_window(120000, 320000, 0, 0, out), 4);
  EXPECT_TRUE(std::equal(out.begin(), out.begin() + frame * 2, frames.begin() + frame * 2));
  EXPECT_TRUE(std::all_of(out.begin() + frame * 2, out.end(), [](float v) { return v == 0.f; }));
  std::vector<float> wrong(frame);
  EXPECT_THROW(r.read_window(0, 100000, 0, 0, wrong), ConfigError);
  EXPECT_THROW(r.read_window(-5, 100000, 0, 0, out), ConfigError);
  EXPECT_THROW(r.read_frames(-1, 1, 0, 0, wrong), ConfigError);
}

TEST(TensorFile, DownsampledReadsEqualAreaResizeOfTheFrames) {
  const auto path = temp_file("resize.h5");
  const int c = 2, h = 16, w = 24;
  auto info = histo_info(c, h, w);
  info.store_as_uint8 = true;
  std::vector<float> frames = random_frames(static_cast<std::size_t>(3) * c * h * w, 5);
  {
    TensorFileWriter wr(path, info);
    wr.write(frames);
  }
  TensorFileReader r(path);
  const auto full = read_all(r);
  for (auto [dh, dw] : {std::pair{8, 12}, std::pair{4, 6}, std::pair{5, 7}}) {
    const auto small = read_all(r, dh, dw);
    std::vector<float> expect(small.size());
    area_resize(full.data(), h, w, expect.data(), dh, dw, static_cast<std::size_t>(3 * c));
    EXPECT_EQ(small, expect) << dh << "x" << dw;
  }
  std::vector<float> out(static_cast<std::size_t>(c) * 32 * 48);
  EXPECT_THROW(r.read_frames(0, 1, 32, 48, out), ConfigError);
}

// --- request checks ------------------------------------------------------------------------------------
TEST(TensorFile, CheckNamesEachMismatch) {
  const auto path = temp_file("check.h5");
  auto info = histo_info(2, 180, 320);
  info.sensor = {1280, 720};
  { TensorFileWriter w(path, info); }
  TensorFileReader r(path);
  auto request = [](auto fill) {
    TensorRequest q;
    fill(q);
    return q;
  };
  EXPECT_NO_THROW(r.check(request([](TensorRequest& q) {
    q.events_to_tensor = "histo";
    q.mode = TensorMode::delta_t;
    q.delta_t = 50000;
    q.channels = 2;
    q.height = 90;
    q.width = 160;
  })));
  EXPECT_NO_THROW(r.check(request([](TensorRequest& q) {
    q.height = 180;
    q.width = 320;
  })));
  auto expect_error = [&](const TensorRequest& req, const std::string& needle) {
    try {
      r.check(req);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("check.h5"), std::string::npos) << e.what();
    }
  };
  expect_error(request([](TensorRequest& q) { q.events_to_tensor = "event_cube"; }), "event_cube");
  expect_error(request([](TensorRequest& q) { q.mode = TensorMode::n_events; }), "n_events");
  expect_error(request([](TensorRequest& q) { q.delta_t = 10000; }), "delta_t 10000");
  expect_error(request([](TensorRequest& q) { q.channels = 6; }), "but 6 were requested");
  expect_error(request([](TensorRequest& q) {
                 q.height = 240;
                 q.width = 427;
               }),
               "power of two");
  expect_error(request([](TensorRequest& q) {
                 q.height = 120;
                 q.width = 160;
               }),
               "power of two");
  expect_error(request([](TensorRequest& q) {
                 q.height = 360;
                 q.width = 640;
               }),
               "larger than the stored");
  expect_error(request([](TensorRequest& q) {
                 q.height = 90;
                 q.width = 0;
               }),
               "both");
}

// --- files written by other tools ----------------------------------------------------------------------
TEST(TensorFile, ReadsOtherLayoutsThroughTheFallback) {
  const int n = 3, c = 2, h = 6, w = 8;
  const auto frames = random_frames(static_cast<std::size_t>(n) * c * h * w, 6);
  for (Layout layout :
       {Layout::contiguous, Layout::multi_frame_chunks, Layout::shuffle_deflate, Layout::big_endian}) {
    const auto path = temp_file("foreign_" + std::to_string(static_cast<int>(layout)) + ".h5");
    write_foreign(path, frames, n, c, h, w, layout);
    TensorFileReader r(path);
    EXPECT_EQ(r.info().mode, TensorMode::delta_t);  // no mode attribute: delta_t
    EXPECT_EQ(r.info().delta_t, 10000u);
    EXPECT_EQ(r.sensor_size(), (Geometry{w, h}));  // no event_input_*: the stored size
    EXPECT_EQ(read_all(r), frames) << static_cast<int>(layout);
    std::vector<float> tail(static_cast<std::size_t>(3) * c * h * w, -1.f);
    r.read_frames(1, 3, 0, 0, tail);
    EXPECT_TRUE(std::equal(tail.begin(), tail.begin() + 2 * c * h * w, frames.begin() + c * h * w));
    EXPECT_EQ(tail.back(), 0.f);
  }
}

TEST(TensorFile, LegacyDownsamplingFactorGivesTheSensorSize) {
  const auto path = temp_file("legacy.h5");
  const auto frames = random_frames(2 * 6 * 8, 7);
  write_foreign(path, frames, 1, 2, 6, 8, Layout::contiguous);
  {
    H5Id file{H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose};
    H5Id data{H5Dopen2(file.id, "data", H5P_DEFAULT), H5Dclose};
    put_u32(data.id, "shift", 2);
  }
  EXPECT_EQ(TensorFileReader(path).sensor_size(), (Geometry{32, 24}));
  {
    H5Id file{H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose};
    H5Id data{H5Dopen2(file.id, "data", H5P_DEFAULT), H5Dclose};
    put_u32(data.id, "downsampling_factor", 1);  // takes precedence over shift
  }
  EXPECT_EQ(TensorFileReader(path).sensor_size(), (Geometry{16, 12}));
}

// --- bad files -----------------------------------------------------------------------------------------
template <class E>
void expect_error_naming(const fs::path& path, const std::string& needle) {
  try {
    TensorFileReader r(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(path.filename().string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(TensorFile, MissingAttributesAreFormatErrors) {
  const auto frames = random_frames(2 * 4 * 4, 8);
  write_foreign(temp_file("no_name.h5"), frames, 1, 2, 4, 4, Layout::contiguous, false, true);
  expect_error_naming<FormatError>(temp_file("no_name.h5"), "events_to_tensor");
  write_foreign(temp_file("no_dt.h5"), frames, 1, 2, 4, 4, Layout::contiguous, true, false);
  expect_error_naming<FormatError>(temp_file("no_dt.h5"), "delta_t");
}

TEST(TensorFile, NotATensorFile) {
  expect_error_naming<IoError>(temp_file("does_not_exist.h5"), "no such file");
  { std::ofstream(temp_file("text.h5")) << "hello, not hdf5"; }
  expect_error_naming<FormatError>(temp_file("text.h5"), "not an HDF5 file");
  { H5Id file{H5Fcreate(temp_file("empty.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose}; }
  expect_error_naming<FormatError>(temp_file("empty.h5"), "'data'");
}

TEST(TensorFile, CorruptChunkIsAFormatError) {
  const auto path = temp_file("corrupt.h5");
  const auto frames = random_frames(3 * 2 * 8 * 12, 9);
  {
    TensorFileWriter w(path, histo_info());
    w.write(frames);
  }
  haddr_t addr = 0;
  hsize_t size = 0;
  {
    H5Id file{H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose};
    H5Id data{H5Dopen2(file.id, "data", H5P_DEFAULT), H5Dclose};
    const hsize_t offset[4] = {1, 0, 0, 0};
    ASSERT_GE(H5Dget_chunk_info_by_coord(data.id, offset, nullptr, &addr, &size), 0);
  }
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(addr + size / 2));
    const char junk[8] = {'\x13', '\x37', '\x00', '\xff', '\x42', '\x24', '\x99', '\x11'};
    f.write(junk, sizeof junk);
  }
  TensorFileReader r(path);
  std::vector<float> one(2 * 8 * 12);
  EXPECT_NO_THROW(r.read_frames(0, 1, 0, 0, one));
  try {
    r.read_frames(1, 1, 0, 0, one);
    ADD_FAILURE() << "corrupt chunk not detected";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("frame 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("corrupt.h5"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(r.read_frames(2, 1, 0, 0, one));
}

TEST(TensorFile, WriterRefusesBadSpecs) {
  const auto path = temp_file("bad_spec.h5");
  auto info = histo_info();
  info.delta_t = 0;
  EXPECT_THROW(TensorFileWriter(path, info), ConfigError);
  info = histo_info();
  info.mode = TensorMode::n_events;
  EXPECT_THROW(TensorFileWriter(path, info), ConfigError);  // delta_t must be 0
  info = histo_info();
  info.sensor = {};
  EXPECT_THROW(TensorFileWriter(path, info), ConfigError);
  info = histo_info();
  info.kwargs["delta_t"] = 3.0;
  EXPECT_THROW(TensorFileWriter(path, info), ConfigError);
  info = histo_info();
  info.channels = 0;
  EXPECT_THROW(TensorFileWriter(path, info), ConfigError);
  EXPECT_THROW(TensorFileWriter(test::temp_dir() / "no_such_dir" / "x.h5", histo_info()), IoError);
  TensorFileWriter w(path, histo_info());
  std::vector<float> partial(10);
  EXPECT_THROW(w.write(partial), ConfigError);
}

// --- parallel readers ----------------------------------------------------------------------------------
TEST(TensorFile, ThreadsShareOneReader) {
  const auto path = temp_file("threads.h5");
  const int c = 2, h = 32, w = 48, n = 40;
  const std::size_t frame = static_cast<std::size_t>(c) * h * w;
  const auto frames = random_frames(frame * n, 10);
  {
    TensorFileWriter wr(path, histo_info(c, h, w));
    wr.write(frames);
  }
  const TensorFileReader r(path);
  std::vector<float> small_ref(static_cast<std::size_t>(n) * c * 8 * 12);
  area_resize(frames.data(), h, w, small_ref.data(), 8, 12, static_cast<std::size_t>(n * c));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int it = 0; it < 30; ++it) {
        const int first = static_cast<int>(rng() % n), count = 1 + static_cast<int>(rng() % 6);
        const bool small = rng() % 2;
        const int hh = small ? 8 : h, ww = small ? 12 : w;
        const std::size_t of = static_cast<std::size_t>(c) * hh * ww;
        std::vector<float> out(of * count);
        r.read_frames(first, count, small ? 8 : 0, small ? 12 : 0, out);
        const auto& ref = small ? small_ref : frames;
        for (int f = 0; f < count; ++f)
          for (std::size_t k = 0; k < of; ++k) {
            const float expect = first + f < n ? ref[(first + f) * of + k] : 0.f;
            if (out[f * of + k] != expect) ++mismatches;
          }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(TensorFile, WritersOnSeveralThreads) {
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      const auto path = temp_file("writer_thread_" + std::to_string(t) + ".h5");
      const auto frames = random_frames(20 * 2 * 8 * 12, static_cast<std::uint32_t>(100 + t));
      {
        TensorFileWriter w(path, histo_info());
        for (int f = 0; f < 20; ++f) w.write(std::span<const float>(frames.data() + f * 192, 192));
      }
      if (read_all(TensorFileReader(path)) != frames) ++mismatches;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// --- hostile metadata (found by fuzzing: tests/fuzz/regressions/hdf5_attributes/) ----------------------
template <class T>
void put_scalar(hid_t obj, const char* name, hid_t file_type, hid_t mem_type, T v) {
  H5Id space{H5Screate(H5S_SCALAR), H5Sclose};
  H5Id attr{H5Acreate2(obj, name, file_type, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  H5Awrite(attr.id, mem_type, &v);
}

// `data` [n, c, h, w] float32 in chunks of one frame, declared but never written (no storage: HDF5 reads
// fill values), named "histo"; `extra` adds attributes (and datasets).
template <class F>
void write_declared(const fs::path& path, hsize_t n, hsize_t c, hsize_t h, hsize_t w, F extra) {
  H5Id file{H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose};
  const hsize_t dims[4] = {n, c, h, w}, maxdims[4] = {H5S_UNLIMITED, c, h, w}, chunk[4] = {1, c, h, w};
  H5Id space{H5Screate_simple(4, dims, maxdims), H5Sclose};
  H5Id dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  H5Pset_chunk(dcpl.id, 4, chunk);
  H5Id data{H5Dcreate2(file.id, "data", H5T_IEEE_F32LE, space.id, H5P_DEFAULT, dcpl.id, H5P_DEFAULT),
            H5Dclose};
  ASSERT_GE(data.id, 0);
  put_fixed_string(data.id, "events_to_tensor", "histo");
  extra(file.id, data.id);
}

// A whole float beyond int64 used to be converted anyway (undefined behaviour; UBSan flagged it).
TEST(TensorFile, HugeFloatAttributesAreFormatErrors) {
  const auto path = temp_file("huge_float.h5");
  write_declared(path, 2, 1, 2, 2, [](hid_t, hid_t data) {
    put_scalar(data, "delta_t", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1e30);
  });
  expect_error_naming<FormatError>(path, "'delta_t' is not an integer");
  write_declared(path, 2, 1, 2, 2, [](hid_t, hid_t data) {
    put_u32(data, "delta_t", 1000);
    put_scalar(data, "start_ts", H5T_IEEE_F64BE, H5T_NATIVE_DOUBLE, -0x1p63);  // the lowest int64: kept
  });
  EXPECT_EQ(TensorFileReader(path).info().start_ts, std::numeric_limits<std::int64_t>::min());
  write_declared(path, 2, 1, 2, 2, [](hid_t, hid_t data) {
    put_u32(data, "delta_t", 1000);
    put_scalar(data, "start_ts", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0x1p63);
  });
  expect_error_naming<FormatError>(path, "'start_ts' is not an integer");
}

// 65536-wide frames << downsampling_factor 16 overflowed int (the sensor came out 0 wide).
TEST(TensorFile, DownsamplingBeyondAPlausibleSensorIsAFormatError) {
  const auto path = temp_file("huge_shift.h5");
  write_declared(path, 1, 1, 1, 65536, [](hid_t, hid_t data) {
    put_u32(data, "delta_t", 1000);
    put_u32(data, "downsampling_factor", 16);
  });
  expect_error_naming<FormatError>(path, "implausible sensor size 4294967296x65536");
  write_declared(path, 1, 1, 1, 64, [](hid_t, hid_t data) {
    put_u32(data, "delta_t", 1000);
    put_u32(data, "downsampling_factor", 14);
  });
  EXPECT_EQ(TensorFileReader(path).sensor_size(), (Geometry{64 << 14, 1 << 14}));
}

// num_frames * delta_t (duration()) overflowed for a frame count declared without storage.
TEST(TensorFile, FrameCountWhoseDurationOverflowsIsAFormatError) {
  const auto path = temp_file("huge_count.h5");
  write_declared(path, hsize_t{1} << 62, 1, 1, 1, [](hid_t, hid_t data) { put_u32(data, "delta_t", 1000); });
  expect_error_naming<FormatError>(path, "overflows");
  write_declared(path, hsize_t{1} << 40, 1, 1, 1, [](hid_t, hid_t data) { put_u32(data, "delta_t", 1000); });
  TensorFileReader r(path);  // unwritten frames are zeros, as before
  EXPECT_EQ(r.duration(), (std::int64_t{1} << 40) * 1000);
  std::vector<float> out(2, 1.f);
  r.read_frames((std::int64_t{1} << 40) - 1, 2, 0, 0, out);
  EXPECT_EQ(out, (std::vector<float>{0.f, 0.f}));
}

void put_vlen_string(hid_t obj, const char* name, const std::string& s) {
  H5Id type{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(type.id, H5T_VARIABLE);
  H5Id space{H5Screate(H5S_SCALAR), H5Sclose};
  H5Id attr{H5Acreate2(obj, name, type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  const char* p = s.c_str();
  H5Awrite(attr.id, type.id, &p);
}

// n_events mode: 'last_timestamps' resized to its declared extent (2^40 entries: bad_alloc) before the
// frames' entries were kept. Now only the frames' entries are read, and an extent its storage cannot
// hold is a FormatError.
TEST(TensorFile, LastTimestampsAreReadForTheFramesOnly) {
  const auto path = temp_file("huge_stamps.h5");
  auto stamps = [](hsize_t n, bool written) {
    return [n, written](hid_t file, hid_t data) {
      put_vlen_string(data, "mode", "n_events");
      put_scalar(data, "n_events", H5T_STD_I64LE, H5T_NATIVE_INT64, std::int64_t{5000});
      const hsize_t dims[1] = {n}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {4};
      H5Id space{H5Screate_simple(1, dims, maxdims), H5Sclose};
      H5Id dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
      H5Pset_chunk(dcpl.id, 1, chunk);
      H5Id ts{H5Dcreate2(file, "last_timestamps", H5T_STD_I64LE, space.id, H5P_DEFAULT, dcpl.id, H5P_DEFAULT),
              H5Dclose};
      if (written) {
        std::vector<std::int64_t> v(n);
        for (hsize_t i = 0; i < n; ++i) v[i] = static_cast<std::int64_t>(10 * (i + 1));
        H5Dwrite(ts.id, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
      }
    };
  };
  write_declared(path, hsize_t{1} << 40, 1, 2, 2, stamps(hsize_t{1} << 40, false));
  expect_error_naming<FormatError>(path, "more timestamps than a file of");
  write_declared(path, 2, 1, 2, 2, stamps(hsize_t{1} << 40, false));  // fill values for the 2 frames
  EXPECT_EQ(TensorFileReader(path).last_timestamps(), (std::vector<Timestamp>{0, 0}));
  write_declared(path, 2, 1, 2, 2, stamps(7, true));
  TensorFileReader r(path);
  EXPECT_EQ(r.last_timestamps(), (std::vector<Timestamp>{10, 20}));
  EXPECT_EQ(r.duration(), 20);
}

// Found by fuzzing: libhdf5 1.10 copies a whole chunk out of what it read without checking there were
// that many bytes, so an unfiltered chunk stored shorter than the chunk made H5Dread read past its own
// buffer (frames read through the fallback path, last_timestamps). Such chunks are FormatErrors now.
TEST(TensorFile, ShortUnfilteredChunksAreFormatErrors) {
  const auto path = temp_file("short_chunk.h5");
  auto short_chunk = [](hid_t dataset, std::size_t bytes) {
    std::vector<std::byte> raw(bytes);
    const hsize_t offset[4] = {0, 0, 0, 0};
    return H5Dwrite_chunk(dataset, H5P_DEFAULT, 0, offset, raw.size(), raw.data());
  };
  {  // big-endian frames (the fallback path), frame 0 stored with 10 of its 16 bytes
    H5Id file{H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose};
    const hsize_t dims[4] = {2, 1, 2, 2}, chunk[4] = {1, 1, 2, 2};
    H5Id space{H5Screate_simple(4, dims, nullptr), H5Sclose};
    H5Id dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
    H5Pset_chunk(dcpl.id, 4, chunk);
    H5Id data{H5Dcreate2(file.id, "data", H5T_IEEE_F32BE, space.id, H5P_DEFAULT, dcpl.id, H5P_DEFAULT),
              H5Dclose};
    put_fixed_string(data.id, "events_to_tensor", "histo");
    put_u32(data.id, "delta_t", 1000);
    ASSERT_GE(short_chunk(data.id, 10), 0);
  }
  {
    TensorFileReader r(path);
    std::vector<float> out(8);
    try {
      r.read_frames(0, 2, 0, 0, out);
      ADD_FAILURE() << "short chunk read";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("the chunk at (0, 0, 0, 0) stores 10 bytes for a chunk of 16"),
                std::string::npos)
          << e.what();
    }
    std::vector<float> second(4, 1.f);
    r.read_frames(1, 1, 0, 0, second);  // never written: zeros
    EXPECT_EQ(second, std::vector<float>(4, 0.f));
  }  // closed: the file is rewritten below

  write_declared(path, 2, 1, 2, 2, [&](hid_t file, hid_t data) {
    put_vlen_string(data, "mode", "n_events");
    const hsize_t dims[1] = {4}, chunk[1] = {4};
    H5Id space{H5Screate_simple(1, dims, nullptr), H5Sclose};
    H5Id dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
    H5Pset_chunk(dcpl.id, 1, chunk);
    H5Id ts{H5Dcreate2(file, "last_timestamps", H5T_STD_I64LE, space.id, H5P_DEFAULT, dcpl.id, H5P_DEFAULT),
            H5Dclose};
    std::vector<std::byte> raw(12);  // 4 timestamps need 32 bytes
    const hsize_t offset[1] = {0};
    ASSERT_GE(H5Dwrite_chunk(ts.id, H5P_DEFAULT, 0, offset, raw.size(), raw.data()), 0);
  });
  expect_error_naming<FormatError>(path,
                                   "'last_timestamps': the chunk at (0) stores 12 bytes for a chunk of 32");
}

// Found by fuzzing: reading a never-written frame (fill values through H5Dread) left a fill chunk in
// libhdf5's chunk cache; H5Dget_chunk_storage_size then reported a size for it, and the next read of that
// frame went to H5Dread_chunk, which threw "chunk address isn't defined". Repeated reads must agree.
TEST(TensorFile, NeverWrittenFrameReadsAsZerosEveryTime) {
  const auto path = temp_file("unwritten_frame.h5");
  write_declared(path, 3, 2, 3, 4, [](hid_t, hid_t data) {
    put_u32(data, "delta_t", 1000);
    const std::vector<float> ones(24, 1.f);
    for (hsize_t f = 0; f < 2; ++f) {  // frames 0 and 1 written, frame 2 never
      const hsize_t offset[4] = {f, 0, 0, 0};
      ASSERT_GE(H5Dwrite_chunk(data, H5P_DEFAULT, 0, offset, ones.size() * sizeof(float), ones.data()), 0);
    }
  });
  TensorFileReader r(path);
  std::vector<std::byte> raw(3 * 24 * sizeof(float));
  std::vector<float> expected(3 * 24, 1.f);
  std::fill(expected.begin() + 48, expected.end(), 0.f);
  for (int k = 0; k < 3; ++k) {
    r.read_raw(0, 3, raw);
    std::vector<float> frames(3 * 24, -1.f);
    r.read_frames(0, 3, 0, 0, frames);
    EXPECT_EQ(frames, expected);
    EXPECT_EQ(std::memcmp(frames.data(), raw.data(), raw.size()), 0);
    std::vector<float> small(3 * 2 * 1 * 2, -1.f);  // downscaled: through the conversion buffer
    r.read_frames(0, 3, 1, 2, small);
    EXPECT_EQ(small[small.size() - 1], 0.f);
    EXPECT_EQ(small[0], 1.f);
  }
}

// Found by fuzzing: a 129 KB file declaring 16M frames and a deflated 'last_timestamps' without one stored
// chunk passed the file-size bound (1100x the file for compressed data) and made the reader allocate
// 128 MiB of timestamps. The bound is now also the dataset's stored bytes (times 1 when unfiltered).
TEST(TensorFile, LastTimestampsBeyondTheirStoredBytesAreFormatErrors) {
  const auto path = temp_file("deflated_stamps.h5");
  auto stamps = [](hsize_t n, bool deflate, bool written) {
    return [=](hid_t file, hid_t data) {
      put_vlen_string(data, "mode", "n_events");
      const hsize_t dims[1] = {n}, chunk[1] = {1024};
      H5Id space{H5Screate_simple(1, dims, nullptr), H5Sclose};
      H5Id dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
      H5Pset_chunk(dcpl.id, 1, chunk);
      if (deflate) H5Pset_deflate(dcpl.id, 6);
      H5Id ts{H5Dcreate2(file, "last_timestamps", H5T_STD_I64LE, space.id, H5P_DEFAULT, dcpl.id, H5P_DEFAULT),
              H5Dclose};
      if (written) {
        std::vector<std::int64_t> v(n);
        for (hsize_t i = 0; i < n; ++i) v[i] = static_cast<std::int64_t>(i + 1);
        H5Dwrite(ts.id, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
      }
    };
  };
  const hsize_t frames = hsize_t{1} << 18;  // 2 MiB of timestamps: above the 1 MiB slack
  write_declared(path, frames, 1, 1, 1, stamps(frames, true, false));
  expect_error_naming<FormatError>(path, "it stores 0 bytes of them");
  write_declared(path, frames, 1, 1, 1, stamps(frames, true, true));  // stored deflated: read
  TensorFileReader r(path);
  ASSERT_EQ(r.last_timestamps().size(), frames);
  EXPECT_EQ(r.last_timestamps().back(), static_cast<Timestamp>(frames));
}

TEST(TensorFile, NegativeNEventsIsAFormatError) {
  const auto path = temp_file("negative_n_events.h5");
  write_declared(path, 1, 1, 2, 2, [](hid_t, hid_t data) {
    put_u32(data, "delta_t", 1000);
    put_scalar(data, "n_events", H5T_STD_I32LE, H5T_NATIVE_INT32, -5);
  });
  expect_error_naming<FormatError>(path, "'n_events' is negative");
}

TEST(TensorDtype, NamesRoundTrip) {
  for (auto d : {TensorDtype::uint8, TensorDtype::int8, TensorDtype::uint16, TensorDtype::int16,
                 TensorDtype::uint32, TensorDtype::int32, TensorDtype::float32, TensorDtype::float64})
    EXPECT_EQ(tensor_dtype_from_name(tensor_dtype_name(d)), d);
  EXPECT_THROW((void)tensor_dtype_from_name("complex64"), ConfigError);
}

}  // namespace
}  // namespace evloader
