// SPDX-License-Identifier: Apache-2.0
#include "sim/pve/schema.h"

#include "gtest/gtest.h"

#include "httplib.h"
#include "sim/pve/simulator.h"
#include "sim_test_util.h"

namespace omni_proxmox::sim::pve {
namespace {

class SchemaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto schema = Schema::Load(EmbeddedPveSchema());
    ASSERT_TRUE(schema.ok()) << schema.status();
    schema_ = std::move(*schema);
  }
  ParamErrors Validate(const std::string& method, const std::string& path,
                       const std::map<std::string, std::string>& params) {
    const Endpoint* endpoint = schema_->Find(method, path);
    EXPECT_NE(endpoint, nullptr) << method << " " << path;
    return schema_->Validate(*endpoint, params);
  }
  std::unique_ptr<Schema> schema_;
};

// The 33 method entries of provider-subset.json plus the three read-only ones `plan` uses
// (node network, PCI and USB mappings), copied from the whole schema at build time.
TEST_F(SchemaTest, LoadsAllProviderEndpoints) {
  EXPECT_EQ(schema_->endpoints().size(), 36u);
  EXPECT_NE(schema_->Find("GET", "/nodes/{node}/network"), nullptr);
  EXPECT_NE(schema_->Find("GET", "/cluster/mapping/pci"), nullptr);
  EXPECT_NE(schema_->Find("GET", "/cluster/mapping/usb"), nullptr);
}

TEST_F(SchemaTest, VolumeTakesTheRestOfThePath) {
  auto match = schema_->Match("GET", "/nodes/pve1/storage/local/content/local:iso/a/b.iso");
  ASSERT_NE(match.endpoint, nullptr);
  EXPECT_EQ(match.endpoint->path_template, "/nodes/{node}/storage/{storage}/content/{volume}");
  EXPECT_EQ(match.path_params["volume"], "local:iso/a/b.iso");
  EXPECT_EQ(match.path_params["storage"], "local");
}

TEST_F(SchemaTest, UnknownMethodOnKnownPath) {
  auto match = schema_->Match("PATCH", "/nodes/pve1/qemu");
  EXPECT_EQ(match.endpoint, nullptr);
  EXPECT_TRUE(match.path_exists);
}

TEST_F(SchemaTest, ValidCreateRequestOfTheOmniProvider) {
  auto errors = Validate("POST", "/nodes/{node}/qemu",
                         {{"node", "pve1"},
                          {"vmid", "105"},
                          {"name", "talos-abc"},
                          {"cores", "2"},
                          {"sockets", "1"},
                          {"memory", "4096"},
                          {"cpu", "x86-64-v2-AES"},
                          {"scsihw", "virtio-scsi-single"},
                          {"scsi0", "local-lvm:40,iothread=1,ssd=1,discard=on,cache=none,aio=native"},
                          {"ide2", "local:iso/talos.iso,media=cdrom"},
                          {"net0", "virtio,bridge=vmbr0,firewall=1,tag=20"},
                          {"onboot", "1"},
                          {"agent", "enabled=true"},
                          {"smbios1", "uuid=3f0c1111-2222-4333-8444-555566667777"},
                          {"tags", "omni;machine-request.abc"},
                          {"hostpci0", "mapping=gpu,pcie=1"},
                          {"machine", "q35"},
                          {"boot", "order=scsi0;ide2;net0"},
                          {"balloon", "0"},
                          {"numa", "0"}});
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
}

TEST_F(SchemaTest, NetWithMacAsModelAlias) {
  EXPECT_TRUE(Validate("POST", "/nodes/{node}/qemu",
                       {{"node", "pve1"}, {"vmid", "105"}, {"net0", "virtio=BC:24:11:00:00:01,bridge=vmbr0"}})
                  .empty());
  auto errors = Validate("POST", "/nodes/{node}/qemu",
                         {{"node", "pve1"}, {"vmid", "105"}, {"net0", "virtio=zz:24:11:00:00:01,bridge=vmbr0"}});
  EXPECT_EQ(errors.count("net0"), 1u);
}

TEST_F(SchemaTest, RangesAndPatterns) {
  auto errors = Validate("POST", "/nodes/{node}/qemu",
                         {{"node", "pve1"}, {"vmid", "1000000000"}, {"net0", "virtio,bridge=vmbr0,tag=5000"}});
  EXPECT_EQ(errors["vmid"], "value must have a maximum value of 999999999");
  EXPECT_NE(errors["net0"].find("net0.tag: value must have a maximum value of 4094"), std::string::npos);
  auto tasks = Validate("GET", "/nodes/{node}/tasks", {{"node", "pve1"}, {"source", "sometimes"}});
  EXPECT_EQ(tasks["source"], "value 'sometimes' does not have a value in the enumeration 'archive, active, all'");
}

TEST_F(SchemaTest, DeleteAndConfigParameters) {
  EXPECT_TRUE(Validate("DELETE", "/nodes/{node}/qemu/{vmid}",
                       {{"node", "pve1"}, {"vmid", "100"}, {"purge", "1"}, {"destroy-unreferenced-disks", "1"}})
                  .empty());
  auto errors = Validate("POST", "/nodes/{node}/qemu/{vmid}/config",
                         {{"node", "pve1"}, {"vmid", "100"}, {"delete", "net0,Bad Key"}});
  EXPECT_EQ(errors.count("delete"), 1u);
}

// Every endpoint of the official subset is served: none answers "not implemented".
TEST(SimulatorCoverageTest, EveryProviderEndpointIsImplemented) {
  auto schema = Schema::Load(EmbeddedPveSchema());
  ASSERT_TRUE(schema.ok());
  SimulatorOptions options;
  auto sim = Simulator::Start(options);
  ASSERT_TRUE(sim.ok());
  testing::SimClient client(**sim, testing::TokenHeader(**sim));
  for (const auto& endpoint : (*schema)->endpoints()) {
    std::string path = endpoint.path_template;
    for (const auto& [placeholder, value] : std::vector<std::pair<std::string, std::string>>{
             {"{node}", "pve1"},
             {"{vmid}", "100"},
             {"{storage}", "local"},
             {"{volume}", "local:iso/x.iso"},
             {"{upid}", "UPID:pve1:00001234:00001234:5F000000:qmstart:100:root@pam:"}}) {
      for (std::size_t pos; (pos = path.find(placeholder)) != std::string::npos;) {
        path.replace(pos, placeholder.size(), value);
      }
    }
    auto result = endpoint.method == "GET" || endpoint.method == "DELETE"
                      ? client.Raw(endpoint.method, path, "", "")
                      : client.Raw(endpoint.method, path, "{}", "application/json");
    EXPECT_NE(result.status, 501) << endpoint.Key() << ": " << result.reason;
    EXPECT_NE(result.status, 0) << endpoint.Key();
  }
}

}  // namespace
}  // namespace omni_proxmox::sim::pve
