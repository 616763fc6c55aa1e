// SPDX-License-Identifier: Apache-2.0
// Deterministic robustness sweep over every decoder: truncations and random byte flips of valid
// bodies must give a value or a Status, never a crash (run under ASan/UBSan in make asan-test).
// The libFuzzer targets explore further; this keeps the property in the ordinary suite.

#include <gtest/gtest.h>

#include "pve/parse/error.h"
#include "pve/parse/responses.h"
#include "pve/parse/upid.h"
#include "util/random.h"

namespace omni_proxmox::pve::parse {
namespace {

const char* const kSeeds[] = {
    R"({"data":[{"node":"pve1","status":"online","cpu":0.1,"maxmem":"1024","uptime":5}]})",
    R"({"data":[{"storage":"local","content":"iso,images","enabled":1,"total":10,"used":"5"}]})",
    R"({"data":{"vmid":105,"status":"running","pid":"12","agent":1,"lock":"create"}})",
    R"({"data":{"memory":"4096","cores":2,"digest":"ab","net0":"virtio,bridge=vmbr0"}})",
    R"({"data":{"upid":"U","status":"stopped","exitstatus":"WARNINGS: 3","tokenid":"x"}})",
    R"({"data":[{"n":1,"t":"TASK OK"}],"total":1})",
    R"({"data":"UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmstart:105:root@pam!omni:"})",
    R"({"data":{"/":{"Sys.Audit":1}}})",
    R"({"data":"100"})",
    R"({"data":null,"message":"x\n","errors":{"a":"b\n","c":1}})",
    R"({"data":{"ticket":"PVE:a:1::s","CSRFPreventionToken":"1:t","username":"a"}})",
};

void DecodeAll(const std::string& body) {
  (void)ParseTicket(body);
  (void)ParseVersion(body);
  (void)ParsePermissions(body);
  (void)ParseNodes(body);
  (void)ParseClusterResources(body);
  (void)ParseNextId(body);
  (void)ParseNodeStorages(body);
  (void)ParseStorageContent(body);
  (void)ParseVolumeInfo(body);
  (void)ParseVmStatus(body);
  (void)ParseVmList(body);
  (void)ParseVmConfig(body);
  (void)ParseTaskStatus(body);
  (void)ParseTaskList(body);
  (void)ParseTaskLog(body);
  (void)ParseUpidData(body, "x");
  (void)ParseOptionalUpidData(body, "x");
  (void)ParseUpid(body);
  (void)ErrorFromHttp(500, body, body, "x");
  (void)ClassifyMessage(body);
}

TEST(RobustnessTest, TruncationsAndByteFlipsNeverCrash) {
  util::Random random(20261124);
  int decoded = 0;
  for (const char* seed : kSeeds) {
    std::string body(seed);
    for (std::size_t cut = 0; cut <= body.size(); ++cut) DecodeAll(body.substr(0, cut));
    for (int round = 0; round < 300; ++round) {
      std::string mutated = body;
      int flips = 1 + static_cast<int>(random.Uniform(4));
      for (int f = 0; f < flips; ++f) {
        mutated[random.Uniform(mutated.size())] = static_cast<char>(random.Uniform(256));
      }
      DecodeAll(mutated);
      ++decoded;
    }
  }
  EXPECT_EQ(decoded, 300 * static_cast<int>(std::size(kSeeds)));
  // The unmutated seeds still decode, so the sweep exercised the success paths too.
  EXPECT_TRUE(ParseNodes(kSeeds[0]).ok());
  EXPECT_TRUE(ParseTaskStatus(kSeeds[4])->Succeeded());
}

}  // namespace
}  // namespace omni_proxmox::pve::parse
