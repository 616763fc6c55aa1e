// SPDX-License-Identifier: Apache-2.0
#include "util/secret.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace omni_proxmox::util {
namespace {

TEST(SecretTest, FormatsAsStarsAndRevealsOnlyOnRequest) {
  Secret<std::string> secret("f3a1-token-secret");
  EXPECT_EQ(fmt::format("token={}", secret), "token=***");
  EXPECT_EQ(secret.Reveal(), "f3a1-token-secret");
  EXPECT_FALSE(secret.empty());
  EXPECT_TRUE(Secret<std::string>().empty());
}

}  // namespace
}  // namespace omni_proxmox::util
