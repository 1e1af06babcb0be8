// SPDX-License-Identifier: Apache-2.0
#include "evloader/core/pod_buffer.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace evloader {
namespace {

TEST(PodBuffer, PrepareAndCommitAppendInPlace) {
  EventBuffer buffer;
  EventCD* out = buffer.prepare(3);
  out[0] = {1, 2, 1, 10};
  out[1] = {3, 4, 0, 11};
  buffer.commit(2);
  ASSERT_EQ(buffer.size(), 2u);
  EXPECT_EQ(buffer[1], (EventCD{3, 4, 0, 11}));
  EXPECT_GE(buffer.capacity(), 3u);
}

TEST(PodBuffer, GrowthKeepsContentAndEraseFrontShifts) {
  PodBuffer<int> buffer;
  for (int i = 0; i < 1000; ++i) buffer.push_back(i);
  buffer.erase_front(990);
  ASSERT_EQ(buffer.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(buffer[static_cast<std::size_t>(i)], 990 + i);
  buffer.erase_front(100);
  EXPECT_TRUE(buffer.empty());
}

TEST(PodBuffer, ClearKeepsCapacityForReuse) {
  PodBuffer<int> buffer(64);
  const int* before = buffer.data();
  buffer.append(std::vector<int>(50, 7));
  buffer.clear();
  buffer.append(std::vector<int>(60, 8));
  EXPECT_EQ(buffer.data(), before);
  EXPECT_EQ(buffer[59], 8);
}

TEST(PodBuffer, CopiesAreIndependent) {
  PodBuffer<int> a;
  a.push_back(1);
  PodBuffer<int> b = a;
  b[0] = 2;
  EXPECT_EQ(a[0], 1);
  EXPECT_EQ(b[0], 2);
}

}  // namespace
}  // namespace evloader

TEST(PodBuffer, HugeReservationsThrowInsteadOfWrapping) {
  evloader::PodBuffer<evloader::EventCD> buffer;
  EXPECT_THROW(buffer.reserve(std::numeric_limits<std::size_t>::max() / 4), std::bad_alloc);
  EXPECT_THROW(buffer.reserve((std::size_t{1} << 60) + 1), std::bad_alloc);
  buffer.reserve(8);
  buffer.commit(0);
  EXPECT_THROW((void)buffer.prepare(std::numeric_limits<std::size_t>::max() - 2), std::bad_alloc);
  EXPECT_GE(buffer.capacity(), 8u);
}
