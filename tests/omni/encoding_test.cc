// SPDX-License-Identifier: Apache-2.0
#include "omni/encoding.h"

#include <gtest/gtest.h>

namespace omni_proxmox::omni {
namespace {

TEST(Base64, RoundTripsAllLengths) {
  std::string data;
  for (int i = 0; i < 70; ++i) {
    data.push_back(static_cast<char>(i * 37));
    auto decoded = Base64Decode(Base64Encode(data));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, data);
  }
  EXPECT_EQ(Base64Encode("abcd"), "YWJjZA==");
  EXPECT_EQ(Base64Encode("\xfb\xff"), "+/8=");
}

TEST(Base64, RejectsNonStandardInput) {
  EXPECT_FALSE(Base64Decode("YWJjZA").ok());      // no padding
  EXPECT_FALSE(Base64Decode("YW-jZA==").ok());    // URL alphabet
  EXPECT_FALSE(Base64Decode("YWJj\nZA==").ok());  // whitespace
  EXPECT_FALSE(Base64Decode("YW=jZA==").ok());    // padding in the middle
}

TEST(GoJson, MapKeysSortedAndValuesEscaped) {
  EXPECT_EQ(GoJsonStringMap({{"b", "2"}, {"a", "1"}, {"B", "3"}}), R"({"B":"3","a":"1","b":"2"})");
  EXPECT_EQ(GoJsonStringMap({{"k<", "v\xff"}}), R"({"k\u003c":"v\ufffd"})");
  EXPECT_EQ(GoJsonStringMap({}), "{}");
}

TEST(GoQueryEscape, MatchesUrlQueryEscape) {
  EXPECT_EQ(GoQueryEscape("v2:ab+c/d=="), "v2%3Aab%2Bc%2Fd%3D%3D");
  EXPECT_EQ(GoQueryEscape("a b~_.-"), "a+b~_.-");
}

TEST(Hmac, KnownVector) {
  // RFC 4231 test case 2.
  std::string mac = HmacSha256("Jefe", "what do ya want for nothing?");
  EXPECT_EQ(Base64Encode(mac), "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace omni_proxmox::omni
