// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/join_token.h"

#include "gtest/gtest.h"

#include "sim/omni/accounts.h"

namespace omni_proxmox::sim::omni {
namespace {

// The published vector (omni-protocol.md 5.2, from Omni's siderolink_test.go).
constexpr char kVectorJson[] =
    R"({"extra_data":{"omni.sidero.dev/infra-provider-id":"test","omni.sidero.dev/machine-request":"request1"},)"
    R"("signature":"zYkLTp9EHjypLlkdmff5vgP5HDWFKTQpFGo5DJvL5x0="})";

TEST(JoinTokenTest, AcceptsThePublishedVector) {
  auto claims = VerifyJoinToken(std::string("v2:") + Base64Encode(kVectorJson), "abcd");
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->version, 2);
  EXPECT_EQ(claims->extra_data.at(kProviderIdTokenKey), "test");
  EXPECT_EQ(claims->extra_data.at(kMachineRequestTokenKey), "request1");
}

TEST(JoinTokenTest, RefusesAWrongBaseTokenOrTamperedData) {
  EXPECT_EQ(VerifyJoinToken(std::string("v2:") + Base64Encode(kVectorJson), "abce").status().code(),
            absl::StatusCode::kPermissionDenied);
  std::string tampered = kVectorJson;
  tampered.replace(tampered.find("request1"), 8, "request2");
  EXPECT_EQ(VerifyJoinToken(std::string("v2:") + Base64Encode(tampered), "abcd").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(JoinTokenTest, RefusesMalformedTokens) {
  EXPECT_EQ(VerifyJoinToken("v2:!!!!", "abcd").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyJoinToken("v2:" + Base64Encode("[]"), "abcd").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyJoinToken("v2:" + Base64Encode(R"({"extra_data":{"a":1},"signature":""})"), "abcd").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(JoinTokenTest, PlainTokenMatchesOnlyItself) {
  EXPECT_TRUE(VerifyJoinToken("abcd", "abcd").ok());
  EXPECT_EQ(VerifyJoinToken("abcx", "abcd").status().code(), absl::StatusCode::kPermissionDenied);
}

TEST(JoinTokenTest, GoJsonEscapesHtmlAndSortsKeys) {
  EXPECT_EQ(GoJsonStringMap({{"b", "<&>"}, {"a", "x\"y\\\n"}}), R"({"a":"x\"y\\\n","b":"\u003c\u0026\u003e"})");
  EXPECT_EQ(GoJsonStringMap({{"k", std::string("\x01\xe2\x80\xa8", 4)}}), R"({"k":"\u0001\u2028"})");
  EXPECT_EQ(GoJsonStringMap({}), "{}");
}

TEST(JoinTokenTest, ExtractsTheTokenFromTheJoinConfig) {
  const std::string user_data =
      "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: "
      "https://127.0.0.1:8099?grpc_tunnel=true&jointoken=v2%3AeyJ4%3D%3D\n"
      "---\napiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: '[fdae:41e4:649b:9303::1]:8091'\n";
  auto token = ExtractJoinToken(user_data);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "v2:eyJ4==");
}

TEST(JoinTokenTest, ExtractsTheTokenFromAKernelArgument) {
  auto token = ExtractJoinToken("console=ttyS0 siderolink.api=https://omni:8090?jointoken=abcd talos.platform=nocloud");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "abcd");
}

TEST(JoinTokenTest, UserDataWithoutATokenIsRefusedWithAHint) {
  auto missing = ExtractJoinToken("#cloud-config\nhostname: x\n");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(missing.status().message()).find("SideroLinkConfig"), std::string::npos);
  auto no_param = ExtractJoinToken("kind: SideroLinkConfig\napiUrl: https://omni:8090\n");
  EXPECT_EQ(no_param.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace omni_proxmox::sim::omni
