// SPDX-License-Identifier: Apache-2.0
#include "pve/parse/encode.h"

#include <gtest/gtest.h>

namespace omni_proxmox::pve::parse {
namespace {

TEST(EncodeTest, PercentEncodesReservedCharacters) {
  EXPECT_EQ(PercentEncode("abc-._~XYZ019"), "abc-._~XYZ019");
  EXPECT_EQ(PercentEncode("a b+c=d&e/f:g"), "a%20b%2Bc%3Dd%26e%2Ff%3Ag");
  EXPECT_EQ(PercentEncode("\xff"), "%FF");
}

TEST(EncodeTest, FormEncodesInOrder) {
  FormFields fields = {
      {"vmid", "105"}, {"net0", "virtio,bridge=vmbr0,firewall=1"}, {"onboot", FormBool(true)}, {"tags", "a;b"}};
  EXPECT_EQ(FormEncode(fields), "vmid=105&net0=virtio%2Cbridge%3Dvmbr0%2Cfirewall%3D1&onboot=1&tags=a%3Bb");
  EXPECT_EQ(FormEncode({}), "");
  EXPECT_EQ(FormBool(false), "0");
}

TEST(EncodeTest, PathSegmentsKeepUpidAndVolidReadable) {
  EXPECT_EQ(EncodePathSegment("UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmcreate:105:root@pam!omni:"),
            "UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmcreate:105:root@pam!omni:");
  EXPECT_EQ(EncodePathSegment("local:iso/a b.iso", true), "local:iso/a%20b.iso");
  EXPECT_EQ(EncodePathSegment("local:iso/x.iso"), "local:iso%2Fx.iso");
  EXPECT_EQ(EncodePathSegment("a?b#c"), "a%3Fb%23c");
}

TEST(EncodeTest, RedactsSecretFields) {
  FormFields fields = {
      {"username", "root@pam"}, {"password", "hunter2"}, {"cipassword", "x"}, {"tokenSecret", "s"}, {"name", "vm"}};
  auto redacted = RedactFields(fields);
  EXPECT_EQ(FormEncode(redacted),
            "username=root%40pam&password=%2A%2A%2A&cipassword=%2A%2A%2A&tokenSecret=%2A%2A%2A&name=vm");
}

}  // namespace
}  // namespace omni_proxmox::pve::parse
