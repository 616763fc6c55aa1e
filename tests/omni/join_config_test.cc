// SPDX-License-Identifier: Apache-2.0
#include "omni/join_config.h"

#include <gtest/gtest.h>

#include "omni/encoding.h"

namespace omni_proxmox::omni {
namespace {

TEST(JoinToken, MatchesOmniTestVector) {
  // OMNI client/pkg/siderolink/siderolink_test.go: base "abcd", provider "test", request "request1", v2.
  auto token = EncodeJoinToken(
      "abcd", {{"omni.sidero.dev/infra-provider-id", "test"}, {"omni.sidero.dev/machine-request", "request1"}}, 2);
  ASSERT_TRUE(token.ok()) << token.status();
  ASSERT_EQ(token->substr(0, 3), "v2:");
  auto json = Base64Decode(token->substr(3));
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(
      *json,
      R"({"extra_data":{"omni.sidero.dev/infra-provider-id":"test","omni.sidero.dev/machine-request":"request1"},)"
      R"("signature":"zYkLTp9EHjypLlkdmff5vgP5HDWFKTQpFGo5DJvL5x0="})");
}

TEST(JoinToken, PassThroughAndErrors) {
  EXPECT_EQ(*EncodeJoinToken("v1:already", {{"a", "b"}}, 2), "v1:already");
  EXPECT_EQ(*EncodeJoinToken("plain", {}, 2), "plain");
  EXPECT_EQ(EncodeJoinToken("", {{"a", "b"}}, 2).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeJoinToken("x", {{"a", "b"}}, 3).status().code(), absl::StatusCode::kInvalidArgument);
  // Legacy tokens are version 1 and HTML-sensitive characters are escaped before the HMAC.
  auto legacy = EncodeJoinToken("k", {{"a", "<&>"}}, 1);
  ASSERT_TRUE(legacy.ok());
  auto json = Base64Decode(legacy->substr(3));
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(legacy->substr(0, 3), "v1:");
  EXPECT_NE(json->find(R"({"a":"\u003c\u0026\u003e"})"), std::string::npos) << *json;
  EXPECT_NE(json->find(Base64Encode(HmacSha256("k", R"({"a":"\u003c\u0026\u003e"})"))), std::string::npos);
}

ConnectionParams Params(std::string url) {
  ConnectionParams p;
  p.mode = JoinMode::kV2;
  p.api_url = std::move(url);
  p.join_token = util::Secret<std::string>("abcd");
  p.events_port = 8091;
  p.logs_port = 8092;
  return p;
}

TEST(JoinArgs, KernelArgsAndConfigText) {
  auto args = BuildJoinArgs(Params("https://127.0.0.1:8099"), "test", "request1", /*grpc_tunnel=*/true);
  ASSERT_TRUE(args.ok()) << args.status();
  auto token = *EncodeJoinToken(
      "abcd", {{"omni.sidero.dev/infra-provider-id", "test"}, {"omni.sidero.dev/machine-request", "request1"}}, 2);
  std::string url = "https://127.0.0.1:8099?grpc_tunnel=true&jointoken=" + GoQueryEscape(token);
  EXPECT_EQ(args->api_url, url);
  ASSERT_EQ(args->kernel_args.size(), 3u);
  EXPECT_EQ(args->kernel_args[0], "siderolink.api=" + url);
  EXPECT_EQ(args->kernel_args[1], "talos.events.sink=[fdae:41e4:649b:9303::1]:8091");
  EXPECT_EQ(args->kernel_args[2], "talos.logging.kernel=tcp://[fdae:41e4:649b:9303::1]:8092");
  EXPECT_NE(url.find("jointoken=v2%3A"), std::string::npos);
  EXPECT_EQ(
      args->config,
      "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: " + url +
          "\n---\napiVersion: v1alpha1\nkind: EventSinkConfig\nendpoint: '[fdae:41e4:649b:9303::1]:8091'\n---\n"
          "apiVersion: v1alpha1\nkind: KmsgLogConfig\nname: omni-kmsg\nurl: tcp://[fdae:41e4:649b:9303::1]:8092\n");
}

TEST(JoinArgs, DocumentedFixtureWithoutExtraData) {
  // The OMNI fixture: a v1/v2-prefixed token is used unchanged, so the text is exactly the documented one.
  ConnectionParams p = Params("https://127.0.0.1:8099");
  p.join_token = util::Secret<std::string>("v2:abcd");
  p.mode = JoinMode::kLegacy;
  auto args = BuildJoinArgs(p, "test", std::nullopt, false);
  ASSERT_TRUE(args.ok());
  EXPECT_EQ(args->api_url, "https://127.0.0.1:8099?jointoken=v2%3Aabcd");
}

TEST(AddQuery, KeepsExistingParamsSortedAndEscaped) {
  EXPECT_EQ(*AddQuery("https://h:1/p?z=1&a=x%20y", {{"m", "a/b"}}), "https://h:1/p?a=x+y&m=a%2Fb&z=1");
  EXPECT_EQ(*AddQuery("https://h?jointoken=old", {{"jointoken", "new"}}), "https://h?jointoken=new");
  EXPECT_FALSE(AddQuery("no-scheme", {}).ok());
}

}  // namespace
}  // namespace omni_proxmox::omni
