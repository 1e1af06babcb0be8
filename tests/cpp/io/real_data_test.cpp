// SPDX-License-Identifier: Apache-2.0
// The real recordings of ../shared/data/real through the reader API, against SOURCES.md's numbers.
#include <gtest/gtest.h>

#include "evloader/io/event_reader.hpp"
#include "support/test_paths.hpp"

namespace evloader {
namespace {

struct Reference {
  const char* file;
  std::uint64_t events;
  std::int64_t first_t, last_t, sum_x, sum_y, sum_p, sum_t;
  Geometry geometry;
};

std::string reference_name(const ::testing::TestParamInfo<Reference>& param) {
  std::string name = param.param.file;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

class RealRecording : public ::testing::TestWithParam<Reference> {};

TEST_P(RealRecording, MatchesReferenceNumbers) {
  const auto dir = test::real_data_dir();
  if (dir.empty()) GTEST_SKIP() << "../shared/data/real not found (set EVLOADER_DATA_DIR)";
  const Reference& ref = GetParam();
  ReaderOptions options;
  options.index_storage = IndexStorage::memory;
  auto reader = EventReader::open(dir / ref.file, options);
  EXPECT_EQ(reader->geometry(), ref.geometry);
  auto events = reader->load_all();
  ASSERT_EQ(events.size(), ref.events);
  std::int64_t sx = 0, sy = 0, sp = 0, st = 0;
  for (const auto& e : events) {
    sx += e.x;
    sy += e.y;
    sp += e.p;
    st += e.t;
  }
  EXPECT_EQ(events[0].t, ref.first_t);
  EXPECT_EQ(events[events.size() - 1].t, ref.last_t);
  EXPECT_EQ(sx, ref.sum_x);
  EXPECT_EQ(sy, ref.sum_y);
  EXPECT_EQ(sp, ref.sum_p);
  EXPECT_EQ(st, ref.sum_t);
  EXPECT_EQ(reader->stats().violations(), 0u) << reader->stats().summary();
  EXPECT_EQ(reader->event_count(), ref.events);
  EXPECT_EQ(reader->first_timestamp(), ref.first_t);
  EXPECT_EQ(reader->last_timestamp(), ref.last_t);
}

INSTANTIATE_TEST_SUITE_P(
    SharedData, RealRecording,
    ::testing::Values(Reference{"evt3_gen41_expelliarmus.raw",
                                219596,
                                11718656,
                                11727457,
                                159113225,
                                85638051,
                                115532,
                                2574324900467,
                                {1280, 720}},
                      Reference{"evt2_gen3_faery.raw",
                                521252,
                                913716224,
                                913812095,
                                128979953,
                                216346680,
                                185861,
                                476298094656969,
                                {640, 480}},
                      Reference{"ncars_sample_td.dat", 2009, 0, 99952, 93457, 40463, 1350, 98196680, {0, 0}},
                      Reference{"evt2_gen3_faery_cd.dat",
                                521252,
                                913716224,
                                913812095,
                                128979953,
                                216346680,
                                185861,
                                476298094656969,
                                {640, 480}}),
    reference_name);

}  // namespace
}  // namespace evloader
