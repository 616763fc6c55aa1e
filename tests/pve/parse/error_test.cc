// SPDX-License-Identifier: Apache-2.0
#include "pve/parse/error.h"

#include <gtest/gtest.h>

namespace omni_proxmox::pve::parse {
namespace {

struct Case {
  int status;
  const char* reason;
  const char* body;
  ErrorKind kind;
  absl::StatusCode code;
};

TEST(ErrorFromHttpTest, ClassifiesEveryErrorClass) {
  const Case cases[] = {
      {500, "Configuration file 'nodes/pve1/qemu-server/105.conf' does not exist",
       R"({"data":null,"message":"Configuration file 'nodes/pve1/qemu-server/105.conf' does not exist\n"})",
       ErrorKind::kNotFound, absl::StatusCode::kNotFound},
      {500, "Configuration file 'nodes/pve1/qemu-server/105.conf' does not exist", "", ErrorKind::kNotFound,
       absl::StatusCode::kNotFound},
      {500, "volume_size_info on 'local:iso/x.iso' failed - no format", R"({"data":null})", ErrorKind::kNotFound,
       absl::StatusCode::kNotFound},
      {500, "unable to create VM 105 - VM 105 already exists on node 'pve2'", "", ErrorKind::kAlreadyExists,
       absl::StatusCode::kAlreadyExists},
      {500, "VM is locked (create)", "", ErrorKind::kLocked, absl::StatusCode::kAborted},
      {500, "can't lock file '/var/lock/qemu-server/lock-105.conf' - got timeout", "", ErrorKind::kLocked,
       absl::StatusCode::kAborted},
      {595, "Connection refused", "", ErrorKind::kNodeUnreachable, absl::StatusCode::kUnavailable},
      {596, "Broken pipe", "", ErrorKind::kNodeUnreachable, absl::StatusCode::kUnavailable},
      {401, "No ticket", "", ErrorKind::kAuth, absl::StatusCode::kUnauthenticated},
      {401, "authentication failure", R"({"data":null})", ErrorKind::kAuth, absl::StatusCode::kUnauthenticated},
      {403, "Permission check failed (/vms/105, VM.Allocate)", R"({"data":null})", ErrorKind::kPermission,
       absl::StatusCode::kPermissionDenied},
      {500, "got no worker upid - start worker failed", "", ErrorKind::kTransient, absl::StatusCode::kUnavailable},
      {500, "cluster not ready - no quorum?", "", ErrorKind::kTransient, absl::StatusCode::kUnavailable},
      {503, "Service Unavailable", "", ErrorKind::kTransient, absl::StatusCode::kUnavailable},
      {501, "Method 'GET /nodes/pve1/foo' not implemented", "", ErrorKind::kUnsupported,
       absl::StatusCode::kUnimplemented},
      {500, "VM 105 is running - destroy failed", "", ErrorKind::kOther, absl::StatusCode::kUnknown},
      {500, "hostname lookup 'bogus' failed - failed to get address info for: bogus: Name or service not known", "",
       ErrorKind::kNotFound, absl::StatusCode::kNotFound},
  };
  for (const auto& c : cases) {
    absl::Status s = ErrorFromHttp(c.status, c.reason, c.body, "GET /x");
    EXPECT_EQ(ClassifyError(s), c.kind) << c.status << " " << c.reason << ": " << s;
    EXPECT_EQ(s.code(), c.code) << c.reason;
    EXPECT_EQ(HttpStatusOf(s), c.status);
    EXPECT_NE(std::string(s.message()).find("GET /x"), std::string::npos);
  }
}

TEST(ErrorFromHttpTest, BadParameterCarriesPerFieldErrors) {
  absl::Status s = ErrorFromHttp(
      400, "Parameter verification failed.",
      R"({"data":null,"message":"Parameter verification failed.\n","errors":{"name":"invalid format - value does not look like a valid DNS name\n","memory":"type check ('integer') failed - got 'lots'"}})",
      "POST /nodes/pve1/qemu");
  EXPECT_EQ(ClassifyError(s), ErrorKind::kBadParameter);
  auto errors = ParameterErrors(s);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors["name"], "invalid format - value does not look like a valid DNS name");
  EXPECT_EQ(errors["memory"], "type check ('integer') failed - got 'lots'");
  std::string message(s.message());
  EXPECT_NE(message.find("name: invalid format"), std::string::npos) << message;
  EXPECT_NE(message.find("Parameter verification failed."), std::string::npos) << message;
}

TEST(ErrorFromHttpTest, NextIdConflictIsAlreadyExists) {
  absl::Status s = ErrorFromHttp(400, "Parameter verification failed.",
                                 R"({"errors":{"vmid":"VM 100 already exists"},"data":null})", "GET /cluster/nextid");
  EXPECT_EQ(ClassifyError(s), ErrorKind::kAlreadyExists);
  EXPECT_EQ(ParameterErrors(s).at("vmid"), "VM 100 already exists");
}

TEST(ErrorFromHttpTest, TaskOnWrongNodeIsNotFound) {
  absl::Status s = ErrorFromHttp(400, "Parameter verification failed.", R"({"errors":{"upid":"no such task"}})",
                                 "GET /nodes/pve2/tasks/x/status");
  EXPECT_EQ(ClassifyError(s), ErrorKind::kNotFound);
}

TEST(ErrorFromHttpTest, PrefersTheFullBodyMessageOverTheReasonPhrase) {
  absl::Status s = ErrorFromHttp(500, "first line", R"({"data":null,"message":"first line\nsecond line\n"})", "X");
  EXPECT_NE(std::string(s.message()).find("first line\nsecond line"), std::string::npos) << s;
}

TEST(ErrorFromHttpTest, FallsBackToPlainTextBodyAndStatus) {
  absl::Status plain = ErrorFromHttp(501, "", "Unexpected content for method 'DELETE'", "DELETE /x");
  EXPECT_NE(std::string(plain.message()).find("Unexpected content"), std::string::npos) << plain;
  absl::Status bare = ErrorFromHttp(599, "", "", "GET /x");
  EXPECT_EQ(ClassifyError(bare), ErrorKind::kNodeUnreachable);
  EXPECT_NE(std::string(bare.message()).find("HTTP 599"), std::string::npos) << bare;
}

TEST(ClassifyMessageTest, TaskExitStatuses) {
  EXPECT_EQ(ClassifyMessage("unable to create VM 105 - volume local:iso/x.iso does not exist"), ErrorKind::kNotFound);
  EXPECT_EQ(ClassifyMessage("refusing to override existing file '/var/lib/vz/template/iso/a.iso'"),
            ErrorKind::kAlreadyExists);
  EXPECT_EQ(ClassifyMessage("unable to find configuration file for VM 105 on node 'pve1'"), ErrorKind::kNotFound);
  EXPECT_EQ(ClassifyMessage("bridge 'vmbr9' does not exist"), ErrorKind::kNotFound);
  EXPECT_EQ(ClassifyMessage("VM quit/powerdown failed - got timeout"), ErrorKind::kOther);
  EXPECT_EQ(ClassifyMessage("download failed: exit code 8"), ErrorKind::kOther);
}

}  // namespace
}  // namespace omni_proxmox::pve::parse
