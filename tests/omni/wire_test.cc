// SPDX-License-Identifier: Apache-2.0
// Field numbers of the hand-written protos, checked against bytes built by hand from the documented numbers
// (protocol notes §3), so a typo in proto/ cannot go unnoticed. The Go provider's MachineSpec numbers are
// what keeps state compatible across a switch of providers.
#include <gtest/gtest.h>

#include "cosi/state.pb.h"
#include "omni/management/management.pb.h"
#include "omni/specs/omni.pb.h"
#include "provider/machine.pb.h"

namespace omni_proxmox::omni {
namespace {

// A minimal protobuf writer: varint and length-delimited fields only.
class Wire {
 public:
  Wire& Varint(int field, uint64_t value) {
    Raw((static_cast<uint64_t>(field) << 3) | 0);
    Raw(value);
    return *this;
  }
  Wire& Bytes(int field, const std::string& value) {
    Raw((static_cast<uint64_t>(field) << 3) | 2);
    Raw(value.size());
    out_ += value;
    return *this;
  }
  Wire& Message(int field, const Wire& nested) { return Bytes(field, nested.out_); }
  const std::string& str() const { return out_; }

 private:
  void Raw(uint64_t v) {
    while (v >= 0x80) {
      out_ += static_cast<char>((v & 0x7F) | 0x80);
      v >>= 7;
    }
    out_ += static_cast<char>(v);
  }
  std::string out_;
};

template <typename T>
T Parse(const Wire& wire) {
  T message;
  EXPECT_TRUE(message.ParseFromString(wire.str()));
  // Every field must have been recognised: nothing left over as unknown.
  EXPECT_EQ(message.GetReflection()->GetUnknownFields(message).field_count(), 0) << message.GetTypeName();
  return message;
}

TEST(Wire, GoProviderMachineSpec) {
  auto m = Parse<provider::MachineSpec>(Wire()
                                            .Bytes(1, "uuid")
                                            .Bytes(2, "schematic")
                                            .Bytes(3, "v1.10.4")
                                            .Bytes(4, "local:iso/x.iso")
                                            .Bytes(5, "pve1")
                                            .Bytes(6, "UPID:upload")
                                            .Bytes(7, "UPID:create")
                                            .Bytes(8, "UPID:start")
                                            .Varint(11, 104));
  EXPECT_EQ(m.uuid(), "uuid");
  EXPECT_EQ(m.schematic(), "schematic");
  EXPECT_EQ(m.talos_version(), "v1.10.4");
  EXPECT_EQ(m.volume_id(), "local:iso/x.iso");
  EXPECT_EQ(m.node(), "pve1");
  EXPECT_EQ(m.volume_upload_task(), "UPID:upload");
  EXPECT_EQ(m.vm_create_task(), "UPID:create");
  EXPECT_EQ(m.vm_start_task(), "UPID:start");
  EXPECT_EQ(m.vmid(), 104);
}

TEST(Wire, OmniSpecs) {
  auto request = Parse<specs::MachineRequestSpec>(Wire()
                                                      .Bytes(1, "1.10.4")
                                                      .Message(2, Wire().Bytes(1, "name").Bytes(2, "image"))
                                                      .Bytes(3, "siderolabs/zfs")
                                                      .Bytes(4, "console=ttyS0")
                                                      .Message(5, Wire().Varint(1, 10).Bytes(2, "v"))
                                                      .Bytes(6, "cores: 2")
                                                      .Varint(7, 1));
  EXPECT_EQ(request.talos_version(), "1.10.4");
  EXPECT_EQ(request.overlay().name(), "name");
  EXPECT_EQ(request.overlay().image(), "image");
  EXPECT_EQ(request.extensions(0), "siderolabs/zfs");
  EXPECT_EQ(request.kernel_args(0), "console=ttyS0");
  EXPECT_EQ(request.meta_values(0).key(), 10u);
  EXPECT_EQ(request.meta_values(0).value(), "v");
  EXPECT_EQ(request.provider_data(), "cores: 2");
  EXPECT_EQ(request.grpc_tunnel(), specs::ENABLED);

  auto status =
      Parse<specs::MachineRequestStatusSpec>(Wire().Bytes(1, "uuid").Varint(2, 2).Bytes(3, "err").Bytes(4, "ok"));
  EXPECT_EQ(status.id(), "uuid");
  EXPECT_EQ(status.stage(), specs::MachineRequestStatusSpec::PROVISIONED);
  EXPECT_EQ(status.error(), "err");
  EXPECT_EQ(status.status(), "ok");

  auto provider = Parse<specs::InfraProviderStatusSpec>(
      Wire().Bytes(1, "{}").Bytes(2, "n").Bytes(3, "d").Bytes(4, "i").Bytes(5, "0.1"));
  EXPECT_EQ(provider.schema(), "{}");
  EXPECT_EQ(provider.icon(), "i");
  EXPECT_EQ(provider.version(), "0.1");

  auto health =
      Parse<specs::InfraProviderHealthStatusSpec>(Wire().Message(1, Wire().Varint(1, 1700000000)).Bytes(2, "down"));
  EXPECT_EQ(health.last_heartbeat_timestamp().seconds(), 1700000000);
  EXPECT_EQ(health.error(), "down");

  auto join =
      Parse<specs::ProviderJoinConfigSpec>(Wire().Message(1, Wire().Bytes(1, "arg").Bytes(2, "cfg")).Bytes(2, "token"));
  EXPECT_EQ(join.config().kernel_args(0), "arg");
  EXPECT_EQ(join.config().config(), "cfg");
  EXPECT_EQ(join.join_token(), "token");

  auto api = Parse<specs::SiderolinkAPIConfigSpec>(
      Wire().Bytes(1, "https://m").Bytes(2, "wg").Varint(3, 1).Varint(4, 8091).Varint(5, 8092));
  EXPECT_EQ(api.machine_api_advertised_url(), "https://m");
  EXPECT_EQ(api.wireguard_advertised_endpoint(), "wg");
  EXPECT_TRUE(api.enforce_grpc_tunnel());
  EXPECT_EQ(api.events_port(), 8091);
  EXPECT_EQ(api.logs_port(), 8092);

  auto legacy = Parse<specs::ConnectionParamsSpec>(Wire()
                                                       .Bytes(1, "args")
                                                       .Bytes(2, "https://api")
                                                       .Bytes(3, "wg")
                                                       .Bytes(4, "tok")
                                                       .Varint(5, 1)
                                                       .Varint(9, 8091)
                                                       .Varint(10, 8092));
  EXPECT_EQ(legacy.api_endpoint(), "https://api");
  EXPECT_EQ(legacy.join_token(), "tok");
  EXPECT_TRUE(legacy.use_grpc_tunnel());
  EXPECT_EQ(legacy.events_port(), 8091);
  EXPECT_EQ(legacy.logs_port(), 8092);

  auto patch = Parse<specs::ConfigPatchSpec>(Wire().Bytes(1, "data").Bytes(2, "zstd"));
  EXPECT_EQ(patch.data(), "data");
  EXPECT_EQ(patch.compressed_data(), "zstd");

  auto features = Parse<specs::FeaturesConfigSpec>(Wire().Bytes(5, "https://factory"));
  EXPECT_EQ(features.image_factory_base_url(), "https://factory");
}

TEST(Wire, CosiResourceAndWatch) {
  Wire metadata;
  metadata.Bytes(1, "ns").Bytes(2, "T").Bytes(3, "id").Bytes(4, "7").Bytes(5, "owner").Bytes(6, "tearingDown");
  metadata.Message(7, Wire().Varint(1, 1)).Message(8, Wire().Varint(1, 2)).Bytes(9, "fin");
  metadata.Message(10, Wire().Bytes(1, "lk").Bytes(2, "lv")).Message(11, Wire().Bytes(1, "ak").Bytes(2, "av"));
  Wire resource;
  resource.Message(1, metadata).Message(2, Wire().Bytes(1, "proto").Bytes(2, "yaml"));
  Wire event;
  event.Message(1, resource).Varint(2, 5).Message(3, resource).Bytes(4, "err").Bytes(5, "bm");
  auto response = Parse<cosi::resource::WatchResponse>(Wire().Message(1, event));
  const auto& e = response.event(0);
  EXPECT_EQ(e.event_type(), cosi::resource::NOOP);
  EXPECT_EQ(e.error(), "err");
  EXPECT_EQ(e.bookmark(), "bm");
  const auto& md = e.resource().metadata();
  EXPECT_EQ(md.namespace_(), "ns");
  EXPECT_EQ(md.version(), "7");
  EXPECT_EQ(md.owner(), "owner");
  EXPECT_EQ(md.phase(), "tearingDown");
  EXPECT_EQ(md.created().seconds(), 1);
  EXPECT_EQ(md.updated().seconds(), 2);
  EXPECT_EQ(md.finalizers(0), "fin");
  EXPECT_EQ(md.labels().at("lk"), "lv");
  EXPECT_EQ(md.annotations().at("ak"), "av");
  EXPECT_EQ(e.resource().spec().proto_spec(), "proto");
  EXPECT_EQ(e.old().spec().yaml_spec(), "yaml");

  Wire term;
  term.Bytes(1, "key").Varint(2, 3).Bytes(3, "a").Bytes(3, "b").Varint(5, 1);
  Wire options;
  options.Varint(1, 1).Varint(2, 4).Message(3, Wire().Message(1, term)).Message(4, Wire().Bytes(1, "^x"));
  options.Varint(5, 1).Bytes(6, "bm").Varint(7, 1);
  auto watch = Parse<cosi::resource::WatchRequest>(
      Wire().Bytes(1, "ns").Bytes(2, "T").Bytes(3, "id").Message(4, options).Varint(5, 1));
  EXPECT_EQ(watch.id(), "id");
  EXPECT_EQ(watch.api_version(), 1);
  EXPECT_TRUE(watch.options().bootstrap_contents());
  EXPECT_EQ(watch.options().tail_events(), 4);
  EXPECT_EQ(watch.options().label_query(0).terms(0).op(), cosi::resource::LabelTerm::IN);
  EXPECT_EQ(watch.options().label_query(0).terms(0).value_size(), 2);
  EXPECT_TRUE(watch.options().label_query(0).terms(0).invert());
  EXPECT_EQ(watch.options().id_query().regexp(), "^x");
  EXPECT_TRUE(watch.options().aggregated());
  EXPECT_EQ(watch.options().start_from_bookmark(), "bm");
  EXPECT_TRUE(watch.options().bootstrap_bookmark());

  auto update = Parse<cosi::resource::UpdateRequest>(
      Wire().Message(2, resource).Message(3, Wire().Bytes(1, "owner").Bytes(2, "running")));
  EXPECT_EQ(update.options().owner(), "owner");
  EXPECT_EQ(update.options().expected_phase(), "running");
  auto teardown = Parse<cosi::resource::TeardownResponse>(Wire().Varint(1, 1));
  EXPECT_TRUE(teardown.destroy_ready());
}

TEST(Wire, Management) {
  auto raw = Parse<management::CreateSchematicFromRawRequest>(Wire().Bytes(1, "yaml").Bytes(2, "1.10.4"));
  EXPECT_EQ(raw.raw_schematic(), "yaml");
  EXPECT_EQ(raw.talos_version(), "1.10.4");
  auto asset = Parse<management::GetBootAssetURLRequest>(Wire()
                                                             .Bytes(1, "1.10.4")
                                                             .Bytes(2, "id")
                                                             .Varint(3, 1)
                                                             .Varint(4, 2)
                                                             .Bytes(5, "nocloud")
                                                             .Bytes(6, "amd64")
                                                             .Bytes(7, "raw.xz")
                                                             .Varint(8, 1));
  EXPECT_EQ(asset.boot_asset_kind(), management::GetBootAssetURLRequest::ISO);
  EXPECT_EQ(asset.format(), "raw.xz");
  EXPECT_TRUE(asset.secure_boot());
  auto url =
      Parse<management::GetBootAssetURLResponse>(Wire()
                                                     .Bytes(1, "https://u")
                                                     .Message(2, Wire().Bytes(1, "Authorization").Bytes(2, "Basic x"))
                                                     .Bytes(3, "h")
                                                     .Bytes(4, "k"));
  EXPECT_EQ(url.headers().at("Authorization"), "Basic x");
  EXPECT_EQ(url.storage_key(), "k");
}

}  // namespace
}  // namespace omni_proxmox::omni
