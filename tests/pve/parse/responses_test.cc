// SPDX-License-Identifier: Apache-2.0
#include "pve/parse/responses.h"

#include <gtest/gtest.h>

#include "pve/errors.h"

namespace omni_proxmox::pve::parse {
namespace {

TEST(ResponsesTest, NextIdAcceptsStringAndNumber) {
  EXPECT_EQ(ParseNextId(R"({"data":"100"})").value(), 100);
  EXPECT_EQ(ParseNextId(R"({"data":4242})").value(), 4242);
  EXPECT_FALSE(ParseNextId(R"({"data":"abc"})").ok());
  EXPECT_FALSE(ParseNextId(R"({"data":"5"})").ok());
  EXPECT_FALSE(ParseNextId(R"({"data":null})").ok());
}

TEST(ResponsesTest, NodesKeepMissingStatisticsMissing) {
  auto nodes = ParseNodes(R"({"data":[
    {"node":"pve2","id":"node/pve2","type":"node","status":"offline","maxcpu":16,"maxmem":"68719476736"},
    {"node":"pve1","id":"node/pve1","type":"node","status":"online","cpu":0.25,"maxcpu":16,"mem":1024,
     "maxmem":68719476736,"uptime":"321"},
    {"node":"pve3","status":"unknown"}]})");
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 3u);
  const Node& offline = (*nodes)[0];
  EXPECT_EQ(offline.status, NodeStatus::kOffline);
  EXPECT_EQ(offline.max_mem_bytes, 68719476736);
  EXPECT_FALSE(offline.mem_bytes.has_value());
  EXPECT_FALSE(offline.cpu_fraction.has_value());
  const Node& online = (*nodes)[1];
  EXPECT_EQ(online.status, NodeStatus::kOnline);
  EXPECT_DOUBLE_EQ(*online.cpu_fraction, 0.25);
  EXPECT_EQ(online.uptime_seconds, 321);
  EXPECT_EQ((*nodes)[2].status, NodeStatus::kUnknown);
  EXPECT_FALSE((*nodes)[2].max_cpu.has_value());
}

TEST(ResponsesTest, StoragesSplitContentAndReadFlags) {
  auto storages = ParseNodeStorages(R"({"data":[
    {"storage":"local","type":"dir","content":"vztmpl,iso,backup","shared":0,"enabled":1,"active":1,
     "total":93985794048,"used":"39187787776","avail":54798006272,"used_fraction":0.41},
    {"storage":"nas","type":"nfs","content":"images","shared":1,"enabled":0,"active":0,"total":0}]})");
  ASSERT_TRUE(storages.ok()) << storages.status();
  ASSERT_EQ(storages->size(), 2u);
  EXPECT_TRUE((*storages)[0].HasContent("iso"));
  EXPECT_FALSE((*storages)[0].HasContent("images"));
  EXPECT_EQ((*storages)[0].content.size(), 3u);
  EXPECT_TRUE((*storages)[0].enabled);
  EXPECT_EQ((*storages)[0].used_bytes, 39187787776);
  EXPECT_TRUE((*storages)[1].shared);
  EXPECT_FALSE((*storages)[1].enabled);
}

TEST(ResponsesTest, VmConfigKeepsValuesAsText) {
  auto config = ParseVmConfig(R"({"data":{"name":"talos-abc","cores":2,"memory":"4096","onboot":1,
    "net0":"virtio=BC:24:11:5E:3A:01,bridge=vmbr0,firewall=1","digest":"abc123","balloon":0}})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->digest, "abc123");
  EXPECT_EQ(config->Get("memory"), "4096");
  EXPECT_EQ(config->Get("cores"), "2");
  EXPECT_EQ(config->Get("onboot"), "1");
  EXPECT_EQ(config->Get("balloon"), "0");
  EXPECT_FALSE(config->Get("digest").has_value());
  EXPECT_FALSE(config->Get("missing").has_value());
}

TEST(ResponsesTest, VmStatusAndList) {
  auto status = ParseVmStatus(R"({"data":{"vmid":105,"name":"x","status":"running","qmpstatus":"running",
    "pid":123,"cpus":2,"maxmem":4294967296,"lock":"create","tags":"a;b","agent":1,"ha":{"managed":0}}})");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->vmid, 105);
  EXPECT_EQ(status->lock, "create");
  EXPECT_EQ(status->pid, 123);
  EXPECT_TRUE(status->agent);
  auto list = ParseVmList(R"({"data":[{"vmid":"101","status":"stopped"},{"vmid":102,"status":"running"}]})");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].vmid, 101);
  EXPECT_FALSE((*list)[0].pid.has_value());
}

TEST(ResponsesTest, ClusterResources) {
  auto resources = ParseClusterResources(R"({"data":[
    {"id":"qemu/105","type":"qemu","vmid":105,"node":"pve1","name":"a","status":"running","tags":"x;y","template":0},
    {"id":"storage/pve1/local","type":"storage","storage":"local","node":"pve1","plugintype":"dir",
     "content":"iso,images","shared":0,"status":"available","disk":1,"maxdisk":2}]})");
  ASSERT_TRUE(resources.ok()) << resources.status();
  ASSERT_EQ(resources->size(), 2u);
  EXPECT_EQ((*resources)[0].vmid, 105);
  EXPECT_EQ((*resources)[0].tags, "x;y");
  EXPECT_EQ((*resources)[1].plugin_type, "dir");
  EXPECT_EQ((*resources)[1].content, (std::vector<std::string>{"iso", "images"}));
  EXPECT_FALSE((*resources)[1].vmid.has_value());
}

TEST(ResponsesTest, TaskStatusAndSuccessRule) {
  auto running = ParseTaskStatus(R"({"data":{"upid":"U","node":"pve1","status":"running","type":"qmstart"}})");
  ASSERT_TRUE(running.ok());
  EXPECT_TRUE(running->running);
  EXPECT_FALSE(running->Succeeded());
  auto ok = ParseTaskStatus(
      R"({"data":{"upid":"U","status":"stopped","exitstatus":"OK","user":"root@pam","tokenid":"omni"}})");
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->Succeeded());
  EXPECT_EQ(ok->user, "root@pam!omni");
  auto warn = ParseTaskStatus(R"({"data":{"status":"stopped","exitstatus":"WARNINGS: 2"}})");
  EXPECT_TRUE(warn->Succeeded());
  EXPECT_EQ(warn->Warnings(), 2);
  auto failed = ParseTaskStatus(R"({"data":{"status":"stopped","exitstatus":"VM 105 already running"}})");
  EXPECT_FALSE(failed->Succeeded());
  auto odd = ParseTaskStatus(R"({"data":{"status":"stopped","exitstatus":"WARNINGS: many"}})");
  EXPECT_FALSE(odd->Succeeded());
  auto missing = ParseTaskStatus(R"({"data":{"status":"stopped"}})");
  EXPECT_FALSE(missing->Succeeded());
  EXPECT_FALSE(ParseTaskStatus(R"({"data":{"status":"weird"}})").ok());
}

TEST(ResponsesTest, TaskList) {
  auto list = ParseTaskList(R"({"data":[
    {"upid":"UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmcreate:105:root@pam!omni:","node":"pve1","type":"qmcreate",
     "id":"105","user":"root@pam!omni","starttime":1718000000},
    {"upid":"UPID:pve1:0000ABCE:00F1E2D3:66B0C0DF:qmstart:104:root@pam:","node":"pve1","type":"qmstart","id":"104",
     "user":"root@pam","starttime":1718000001,"endtime":1718000005,"status":"WARNINGS: 1"},
    {"node":"pve1"}],"total":3})");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_TRUE((*list)[0].running);
  EXPECT_EQ((*list)[0].user, "root@pam!omni");
  EXPECT_FALSE((*list)[1].running);
  EXPECT_TRUE((*list)[1].Succeeded());
  EXPECT_EQ((*list)[1].end_time_unix, 1718000005);
}

TEST(ResponsesTest, TaskLogWithTotal) {
  auto log = ParseTaskLog(R"({"data":[{"n":1,"t":"starting"},{"n":2,"t":"TASK OK"}],"total":2})");
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->total, 2);
  ASSERT_EQ(log->lines.size(), 2u);
  EXPECT_EQ(log->lines[1].text, "TASK OK");
}

TEST(ResponsesTest, PermissionsAndVersionAndTicket) {
  auto perms = ParsePermissions(R"({"data":{"/":{"Sys.Audit":1},"/vms":{"VM.Allocate":0}}})");
  ASSERT_TRUE(perms.ok());
  EXPECT_TRUE((*perms)["/"]["Sys.Audit"]);
  EXPECT_FALSE((*perms)["/vms"]["VM.Allocate"]);
  EXPECT_TRUE(ParsePermissions(R"({"data":{}})")->empty());
  EXPECT_EQ(ParseVersion(R"({"data":{"version":"9.2.11","release":"9.2","repoid":"ab"}})")->release, "9.2");
  auto ticket = ParseTicket(R"({"data":{"username":"root@pam","ticket":"PVE:root@pam:4EEC61E2::sig",
    "CSRFPreventionToken":"4EEC61E2:tok"}})");
  ASSERT_TRUE(ticket.ok());
  EXPECT_EQ(ticket->csrf_token, "4EEC61E2:tok");
  auto tfa = ParseTicket(R"({"data":{"username":"root@pam","ticket":"half","CSRFPreventionToken":"x","NeedTFA":1}})");
  EXPECT_EQ(ClassifyError(tfa.status()), ErrorKind::kAuth);
}

TEST(ResponsesTest, UpidData) {
  auto upid = ParseUpidData(R"({"data":"UPID:pve1:0000ABCD:00F1E2D3:66B0C0DE:qmstart:105:root@pam:"})", "POST x");
  ASSERT_TRUE(upid.ok()) << upid.status();
  EXPECT_EQ(upid->type, "qmstart");
  EXPECT_FALSE(ParseUpidData(R"({"data":null})", "POST x").ok());
  auto none = ParseOptionalUpidData(R"({"data":null})", "POST x");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(ResponsesTest, RejectsMalformedAndTooDeepBodies) {
  EXPECT_FALSE(ParseNodes("not json").ok());
  EXPECT_FALSE(ParseNodes(R"({"data":{}})").ok());
  EXPECT_FALSE(ParseNodes(R"([1,2])").ok());
  std::string deep = R"({"data":)" + std::string(100, '[') + std::string(100, ']') + "}";
  auto result = ParseNodes(deep);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(std::string(result.status().message()).find("deeper"), std::string::npos) << result.status();
  // Missing data is tolerated as null for permissions but not for lists.
  EXPECT_FALSE(ParseNodes("{}").ok());
}

TEST(ResponsesTest, SplitCommaList) {
  EXPECT_EQ(SplitCommaList("iso, vztmpl,,backup"), (std::vector<std::string>{"iso", "vztmpl", "backup"}));
  EXPECT_TRUE(SplitCommaList("").empty());
}

TEST(ResponsesTest, NetworkInterfacesReadBridgesAndVlanAwareness) {
  auto list = ParseNetworkInterfaces(R"({"data":[{"iface":"vmbr0","type":"bridge","active":1,"bridge_vlan_aware":1},)"
                                     R"({"iface":"vmbr1","type":"OVSBridge"},{"type":"eth"}]})");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);  // an entry without iface is dropped
  EXPECT_EQ((*list)[0].iface, "vmbr0");
  EXPECT_TRUE((*list)[0].active);
  EXPECT_TRUE((*list)[0].vlan_aware);
  EXPECT_EQ((*list)[1].type, "OVSBridge");
  EXPECT_FALSE((*list)[1].vlan_aware);
}

TEST(ResponsesTest, HardwareMappingsCollectTheNodesOfTheirMapEntries) {
  auto list = ParseHardwareMappings(
      R"({"data":[{"id":"gpu","description":"","map":["id=10de:2204,node=pve1,path=0000:01:00.0",)"
      R"("node=pve2,path=0000:02:00.0,id=10de:2204"]},{"id":"empty","map":[]}]})");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "gpu");
  EXPECT_EQ((*list)[0].nodes, (std::vector<std::string>{"pve1", "pve2"}));
  EXPECT_TRUE((*list)[1].nodes.empty());
  EXPECT_FALSE(ParseHardwareMappings(R"({"data":{}})").ok());
}

}  // namespace
}  // namespace omni_proxmox::pve::parse
