// SPDX-License-Identifier: Apache-2.0
// Conversions between wire resources and omni::Resource (src/omni/internal/convert.h).
#include "omni/internal/convert.h"

#include <chrono>

#include <gtest/gtest.h>

#include "cosi/resource.pb.h"

namespace omni_proxmox::omni {
namespace {

using SystemTime = util::Clock::SystemTime;

cosi::resource::Resource WithTimes(std::int64_t created_seconds, std::int64_t updated_seconds) {
  cosi::resource::Resource proto;
  proto.mutable_metadata()->set_id("r1");
  // ToProto fills an empty version and phase with Omni's defaults; set them so the round trip is exact.
  proto.mutable_metadata()->set_version("1");
  proto.mutable_metadata()->set_phase("running");
  proto.mutable_metadata()->mutable_created()->set_seconds(created_seconds);
  proto.mutable_metadata()->mutable_created()->set_nanos(999'999'999);
  proto.mutable_metadata()->mutable_updated()->set_seconds(updated_seconds);
  return proto;
}

TEST(ConvertTest, TimestampsRoundTripToTheNanosecond) {
  const Resource resource = internal::FromProto(WithTimes(1'795'509'135, 0));
  EXPECT_EQ(resource.metadata.created.time_since_epoch(),
            std::chrono::seconds{1'795'509'135} + std::chrono::nanoseconds{999'999'999});
  EXPECT_EQ(internal::FromProto(internal::ToProto(resource)), resource);
}

// Found by fuzz/cosi_fuzz: seconds beyond what 64-bit nanoseconds hold (years past 2262, allowed by
// protobuf's Timestamp up to 9999) overflowed a signed multiplication. They now saturate.
TEST(ConvertTest, TimestampsOutsideTheClockRangeSaturate) {
  const Resource year_9999 = internal::FromProto(WithTimes(253'402'300'799, -62'135'596'800));
  EXPECT_EQ(year_9999.metadata.created, SystemTime::max());
  EXPECT_EQ(year_9999.metadata.updated, SystemTime::min());
  const Resource fuzzed = internal::FromProto(WithTimes(17'633'201'039, -17'633'201'039));
  EXPECT_EQ(fuzzed.metadata.created, SystemTime::max());
  EXPECT_EQ(fuzzed.metadata.updated, SystemTime::min());
  // Saturated times survive a write-back unchanged.
  EXPECT_EQ(internal::FromProto(internal::ToProto(fuzzed)), fuzzed);
}

}  // namespace
}  // namespace omni_proxmox::omni
