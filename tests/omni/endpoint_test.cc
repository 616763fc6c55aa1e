// SPDX-License-Identifier: Apache-2.0
#include "omni/endpoint.h"

#include <gtest/gtest.h>

namespace omni_proxmox::omni {
namespace {

TEST(ParseEndpoint, HttpsDefaultsTo443WithTls) {
  auto e = ParseEndpoint("https://acme.omni.siderolabs.io/some/path?x=1");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(e->tls);
  EXPECT_EQ(e->Target(), "acme.omni.siderolabs.io:443");
}

TEST(ParseEndpoint, HttpAndGrpcArePlaintext) {
  auto http = ParseEndpoint("http://localhost:8080/");
  ASSERT_TRUE(http.ok());
  EXPECT_FALSE(http->tls);
  EXPECT_EQ(http->Target(), "localhost:8080");
  auto grpc = ParseEndpoint("grpc://10.0.0.1");
  ASSERT_TRUE(grpc.ok());
  EXPECT_FALSE(grpc->tls);
  EXPECT_EQ(grpc->Target(), "10.0.0.1:80");
  auto v6 = ParseEndpoint("https://[::1]:8443");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->Target(), "[::1]:8443");
}

TEST(ParseEndpoint, RejectsWithAFix) {
  for (const char* bad : {"omni.example.com", "ftp://x", "https://", "https://h:0", "https://h:99999", "http://h:x",
                          "https://https://h/", "https://h:/", "https://[::1]:"}) {
    auto e = ParseEndpoint(bad);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(e.status().message()).find("use https://"), std::string::npos) << e.status();
  }
}

}  // namespace
}  // namespace omni_proxmox::omni
