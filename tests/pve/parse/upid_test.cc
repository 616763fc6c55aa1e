// SPDX-License-Identifier: Apache-2.0
#include "pve/parse/upid.h"

#include <gtest/gtest.h>

#include "pve/errors.h"

namespace omni_proxmox::pve::parse {
namespace {

TEST(UpidTest, ParsesTokenTask) {
  auto upid = ParseUpid("UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmcreate:105:root@pam!omni:");
  ASSERT_TRUE(upid.ok()) << upid.status();
  EXPECT_EQ(upid->node, "pve1");
  EXPECT_EQ(upid->pid, 0xABCDu);
  EXPECT_EQ(upid->pstart, 0xF1E2D3u);
  EXPECT_EQ(upid->start_time_unix, 0x66B0C0DE);
  EXPECT_EQ(upid->type, "qmcreate");
  EXPECT_EQ(upid->id, "105");
  EXPECT_EQ(upid->user, "root@pam!omni");
  EXPECT_EQ(upid->text, "UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmcreate:105:root@pam!omni:");
}

TEST(UpidTest, AcceptsNineDigitPstartAndEmptyId) {
  auto upid = ParseUpid("UPID:node-2:000FF1FD:110F9374C:630D702C:imgcopy::root@pam:");
  ASSERT_TRUE(upid.ok()) << upid.status();
  EXPECT_EQ(upid->pstart, 0x110F9374Cull);
  EXPECT_EQ(upid->id, "");
  EXPECT_EQ(upid->type, "imgcopy");
}

TEST(UpidTest, RejectsMalformed) {
  const char* bad[] = {
      "",
      "UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmcreate:105:root@pam",       // no trailing colon
      "UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmcreate:105:root@pam:done",  // marker after last colon
      "UPID:pve1:ABCD:00F1E2D3:66B0C0DE:qmcreate:105:root@pam:",          // short pid
      "UPID:pve1:0000ABCG:00F1E2D3:66B0C0DE:qmcreate:105:root@pam:",      // non-hex
      "UPID:-pve1:0000ABCD:00F1E2D3:66B0C0DE:qmcreate:105:root@pam:",     // bad node
      "UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE::105:root@pam:",              // empty type
      "UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmcreate:1/5:root@pam:",      // slash in id
      "UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmcreate:105::",              // empty user
      "XPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmcreate:105:root@pam:",
  };
  for (const char* text : bad) {
    auto upid = ParseUpid(text);
    EXPECT_FALSE(upid.ok()) << text;
    EXPECT_EQ(ClassifyError(upid.status()), ErrorKind::kBadParameter) << text;
  }
  EXPECT_FALSE(ParseUpid(std::string(2000, 'U')).ok());
}

TEST(UpidTest, ErrorNamesTheField) {
  auto upid = ParseUpid("UPID:pve1:0000ABCD:0F1E2D3:66B0C0DE:qmcreate:105:root@pam:");
  ASSERT_FALSE(upid.ok());
  EXPECT_NE(std::string(upid.status().message()).find("pstart"), std::string::npos) << upid.status();
}

}  // namespace
}  // namespace omni_proxmox::pve::parse
