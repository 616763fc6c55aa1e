// SPDX-License-Identifier: Apache-2.0
// omni::CallMonitor on simulated time: what a refused key does to the count, the log and the
// start-up handler, and which answers wake a waiting watch.

#include "omni/call_monitor.h"

#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "util/clock.h"
#include "util/log.h"

namespace omni_proxmox::omni {
namespace {

using ::testing::HasSubstr;

const KeyIdentity kKey{.endpoint = "https://omni.example:443",
                       .name = "infra-provider:proxmox",
                       .identity = "proxmox@infra-provider.serviceaccount.omni.sidero.dev",
                       .fingerprint = "0123abcd"};

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

class CallMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(util::InitLogging({.format = util::LogFormat::kConsole, .level = "info", .output = &log_}).ok());
  }
  void TearDown() override { (void)util::InitLogging({}); }

  std::ostringstream log_;
  util::ManualClock clock_;
  CallMonitor monitor_{clock_, std::chrono::seconds{30}};
};

TEST_F(CallMonitorTest, ARefusalNamesTheKeyAndTheEndpointAndIsCounted) {
  auto refused =
      monitor_.Record(absl::UnauthenticatedError("get X: invalid signature"), "/cosi.resource.State/Get", kKey);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(refused.message(),
            "get X: invalid signature (Omni at https://omni.example:443 does not accept the key "
            "'infra-provider:proxmox', fingerprint 0123abcd)");
  EXPECT_EQ(monitor_.auth_failures(), 1u);
  EXPECT_THAT(log_.str(), HasSubstr("warn"));
  EXPECT_THAT(log_.str(), HasSubstr("user ID proxmox@infra-provider.serviceaccount.omni.sidero.dev"));
  EXPECT_THAT(log_.str(), HasSubstr("omnictl infraprovider create proxmox"));
  // Other answers pass through unchanged and are not counted.
  const auto missing = absl::NotFoundError("get Y: not found");
  EXPECT_EQ(monitor_.Record(missing, "/cosi.resource.State/Get", kKey), missing);
  EXPECT_EQ(monitor_.auth_failures(), 1u);
}

TEST_F(CallMonitorTest, ABurstOfRefusalsIsOneWarningPerInterval) {
  for (int i = 0; i < 50; ++i) {
    (void)monitor_.Record(absl::UnauthenticatedError("invalid signature"), "/cosi.resource.State/Get", kKey);
  }
  EXPECT_EQ(monitor_.auth_failures(), 50u);
  EXPECT_EQ(Count(log_.str(), "does not accept the key"), 1) << log_.str();
  clock_.Advance(std::chrono::seconds{31});
  (void)monitor_.Record(absl::UnauthenticatedError("invalid signature"), "/cosi.resource.State/Get", kKey);
  EXPECT_EQ(Count(log_.str(), "does not accept the key"), 2) << log_.str();
  EXPECT_THAT(log_.str(), HasSubstr("49 more refusals since the last line"));
}

TEST_F(CallMonitorTest, ARefusalBeforeAnyAcceptanceGoesToTheStartUpHandlerOnce) {
  std::vector<std::string> reported;
  monitor_.OnRejectedFromTheStart([&](const std::string& description) { reported.push_back(description); });
  // Unreachable is not an answer about the key.
  (void)monitor_.Record(absl::UnavailableError("connection refused"), "/cosi.resource.State/Get", kKey);
  EXPECT_FALSE(monitor_.ever_accepted());
  (void)monitor_.Record(absl::UnauthenticatedError("invalid signature"), "/cosi.resource.State/Get", kKey);
  (void)monitor_.Record(absl::UnauthenticatedError("invalid signature"), "/cosi.resource.State/Get", kKey);
  ASSERT_EQ(reported.size(), 1u);
  EXPECT_THAT(reported[0], HasSubstr("belongs to another Omni"));
  EXPECT_THAT(reported[0], HasSubstr("Omni at https://omni.example:443"));
}

TEST_F(CallMonitorTest, ARefusalAfterAnAcceptanceIsNotForTheStartUpHandler) {
  int reported = 0;
  monitor_.OnRejectedFromTheStart([&](const std::string&) { ++reported; });
  // PermissionDenied: Omni checked the signature, then the rules.
  (void)monitor_.Record(absl::PermissionDeniedError("not registered"), "/cosi.resource.State/Get", kKey);
  EXPECT_TRUE(monitor_.ever_accepted());
  (void)monitor_.Record(absl::UnauthenticatedError("invalid signature"), "/cosi.resource.State/Get", kKey);
  EXPECT_EQ(reported, 0);
  EXPECT_EQ(monitor_.auth_failures(), 1u);
}

TEST_F(CallMonitorTest, AnswersWakeSubscribersAndUnreachableDoesNot) {
  int woken = 0;
  const int id = monitor_.Subscribe([&] { ++woken; });
  (void)monitor_.Record(absl::UnavailableError("connection refused"), "/cosi.resource.State/Get", kKey);
  (void)monitor_.Record(absl::DeadlineExceededError("deadline"), "/cosi.resource.State/Get", kKey);
  EXPECT_EQ(woken, 0);
  (void)monitor_.Record(absl::OkStatus(), "/cosi.resource.State/Update", kKey);
  (void)monitor_.Record(absl::UnauthenticatedError("invalid signature"), "/cosi.resource.State/Get", kKey);
  EXPECT_EQ(woken, 2);
  monitor_.Unsubscribe(id);
  (void)monitor_.Record(absl::OkStatus(), "/cosi.resource.State/Update", kKey);
  EXPECT_EQ(woken, 2);
}

}  // namespace
}  // namespace omni_proxmox::omni
