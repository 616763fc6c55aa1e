// SPDX-License-Identifier: Apache-2.0
#include "pve/errors.h"

#include <gtest/gtest.h>

namespace omni_proxmox::pve {
namespace {

TEST(ErrorsTest, KindSurvivesAsPayload) {
  absl::Status s = MakeError(ErrorKind::kLocked, "VM is locked (create)", {}, 500);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ClassifyError(s), ErrorKind::kLocked);
  EXPECT_EQ(HttpStatusOf(s), 500);
  EXPECT_EQ(ErrorKindName(ClassifyError(s)), "locked");
  // Both transient and node-unreachable use Unavailable; the payload tells them apart.
  EXPECT_EQ(ClassifyError(MakeError(ErrorKind::kNodeUnreachable, "x")), ErrorKind::kNodeUnreachable);
  EXPECT_EQ(ClassifyError(MakeError(ErrorKind::kTransient, "x")), ErrorKind::kTransient);
}

TEST(ErrorsTest, ForeignStatusesClassifyByCode) {
  EXPECT_EQ(ClassifyError(absl::OkStatus()), ErrorKind::kOk);
  EXPECT_EQ(ClassifyError(absl::NotFoundError("x")), ErrorKind::kNotFound);
  EXPECT_EQ(ClassifyError(absl::UnavailableError("x")), ErrorKind::kTransient);
  EXPECT_EQ(ClassifyError(absl::DeadlineExceededError("x")), ErrorKind::kTimeout);
  EXPECT_EQ(ClassifyError(absl::InternalError("x")), ErrorKind::kOther);
  EXPECT_FALSE(HttpStatusOf(absl::InternalError("x")).has_value());
}

TEST(ErrorsTest, ParameterErrorsAndTaskLogRoundTrip) {
  absl::Status s = MakeError(ErrorKind::kBadParameter, "bad", {{"a", "x"}, {"b", ""}, {"c", "with\0nul"}});
  auto errors = ParameterErrors(s);
  EXPECT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors["a"], "x");
  EXPECT_EQ(errors["b"], "");
  SetTaskLogTail(s, {"line 1", "", "TASK ERROR: boom"});
  EXPECT_EQ(TaskLogTail(s), (std::vector<std::string>{"line 1", "", "TASK ERROR: boom"}));
  EXPECT_TRUE(ParameterErrors(absl::OkStatus()).empty());
}

TEST(ErrorsTest, OnlyTransientIsRetryable) {
  EXPECT_TRUE(IsRetryable(ErrorKind::kTransient));
  for (ErrorKind k : {ErrorKind::kNotFound, ErrorKind::kAlreadyExists, ErrorKind::kLocked, ErrorKind::kAuth,
                      ErrorKind::kPermission, ErrorKind::kBadParameter, ErrorKind::kNodeUnreachable,
                      ErrorKind::kTaskFailed, ErrorKind::kTls, ErrorKind::kOther}) {
    EXPECT_FALSE(IsRetryable(k)) << ErrorKindName(k);
  }
}

}  // namespace
}  // namespace omni_proxmox::pve
