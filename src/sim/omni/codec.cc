// SPDX-License-Identifier: Apache-2.0
#include <charconv>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include "cosi/meta.pb.h"
#include "omni/specs/omni.pb.h"
#include "sim/omni/standin_impl.h"

namespace omni_proxmox::sim::omni {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// Typed specs for the types Omni registers: Omni decodes proto_spec for these (refusing garbage)
// and regenerates yaml_spec; other types are stored verbatim.
std::unique_ptr<google::protobuf::Message> NewSpec(const std::string& type) {
  if (type == kMachineRequestType) return std::make_unique<specs::MachineRequestSpec>();
  if (type == kMachineRequestStatusType) return std::make_unique<specs::MachineRequestStatusSpec>();
  if (type == kInfraProviderType) return std::make_unique<specs::InfraProviderSpec>();
  if (type == kInfraProviderStatusType) return std::make_unique<specs::InfraProviderStatusSpec>();
  if (type == kInfraProviderHealthStatusType) return std::make_unique<specs::InfraProviderHealthStatusSpec>();
  if (type == kProviderJoinConfigType) return std::make_unique<specs::ProviderJoinConfigSpec>();
  if (type == kSiderolinkApiConfigType) return std::make_unique<specs::SiderolinkAPIConfigSpec>();
  if (type == kConnectionParamsType) return std::make_unique<specs::ConnectionParamsSpec>();
  if (type == kConfigPatchRequestType) return std::make_unique<specs::ConfigPatchSpec>();
  if (type == kInfraMachineRegistrationType) return std::make_unique<specs::MachineRegistrationSpec>();
  if (type == kFeaturesConfigType) return std::make_unique<specs::FeaturesConfigSpec>();
  if (type == kMachineType) return std::make_unique<specs::MachineSpec>();
  if (type == kMachineClassType) return std::make_unique<specs::MachineClassSpec>();
  if (type == kMachineRequestSetType) return std::make_unique<specs::MachineRequestSetSpec>();
  if (type == kClusterType) return std::make_unique<specs::ClusterSpec>();
  if (type == kMachineSetType) return std::make_unique<specs::MachineSetSpec>();
  if (type == kMachineSetStatusType) return std::make_unique<specs::MachineSetStatusSpec>();
  if (type == kMachineSetNodeType) return std::make_unique<specs::MachineSetNodeSpec>();
  if (type == kClusterMachineRequestStatusType) return std::make_unique<specs::ClusterMachineRequestStatusSpec>();
  if (type == kLinkType) return std::make_unique<specs::SiderolinkSpec>();
  if (type == kResourceDefinitionType) return std::make_unique<pb::meta::ResourceDefinitionSpec>();
  if (type == kNamespaceType) return std::make_unique<pb::meta::NamespaceSpec>();
  return nullptr;
}

std::string RenderYaml(const google::protobuf::Message& message) {
  // JSON is YAML; Omni renders YAML for humans only, so the exact style does not matter.
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

// Decodes and re-renders a known type's spec. InvalidArgument names the field on bad bytes.
absl::Status NormalizeSpec(Resource& resource) {
  auto spec = NewSpec(resource.type);
  if (!spec) return absl::OkStatus();
  if (!spec->ParseFromString(resource.proto_spec)) {
    return absl::InvalidArgumentError(fmt::format("spec.proto_spec of {} is not a valid {}: encode the typed spec",
                                                  resource.type, spec->GetTypeName()));
  }
  if (resource.type == kConfigPatchRequestType) {
    const auto& patch = static_cast<const specs::ConfigPatchSpec&>(*spec);
    if (!patch.data().empty() && !patch.compressed_data().empty()) {
      return absl::InvalidArgumentError("ConfigPatchSpec: set either data or compressed_data, never both");
    }
  }
  resource.yaml_spec = RenderYaml(*spec);
  return absl::OkStatus();
}

bool SpecsEqual(const std::string& type, const std::string& a, const std::string& b) {
  auto left = NewSpec(type);
  auto right = NewSpec(type);
  if (!left || !left->ParseFromString(a) || !right->ParseFromString(b)) return a == b;
  return google::protobuf::util::MessageDifferencer::Equals(*left, *right);
}

google::protobuf::Timestamp ToTimestamp(util::Clock::SystemTime t) {
  google::protobuf::Timestamp ts;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  ts.set_seconds(ns / 1'000'000'000);
  ts.set_nanos(static_cast<int>(ns % 1'000'000'000));
  return ts;
}

util::Clock::SystemTime FromTimestamp(const google::protobuf::Timestamp& ts) {
  return util::Clock::SystemTime{std::chrono::duration_cast<util::Clock::SystemTime::duration>(
      std::chrono::seconds(ts.seconds()) + std::chrono::nanoseconds(ts.nanos()))};
}

void ToProto(const Resource& r, pb::Resource* out) {
  auto* md = out->mutable_metadata();
  md->set_namespace_(r.ns);
  md->set_type(r.type);
  md->set_id(r.id);
  md->set_version(r.version == 0 ? "undefined" : std::to_string(r.version));
  md->set_owner(r.owner);
  md->set_phase(PhaseName(r.phase));
  if (r.version != 0) {
    *md->mutable_created() = ToTimestamp(r.created);
    *md->mutable_updated() = ToTimestamp(r.updated);
  }
  for (const auto& f : r.finalizers) md->add_finalizers(f);
  for (const auto& [k, v] : r.labels) (*md->mutable_labels())[k] = v;
  for (const auto& [k, v] : r.annotations) (*md->mutable_annotations())[k] = v;
  out->mutable_spec()->set_proto_spec(r.proto_spec);
  out->mutable_spec()->set_yaml_spec(r.yaml_spec);
}

absl::StatusOr<Resource> FromProto(const pb::Resource& in, const char* field) {
  if (!in.has_metadata()) return absl::InvalidArgumentError(fmt::format("{}.metadata is missing", field));
  if (!in.has_spec()) return absl::InvalidArgumentError(fmt::format("{}.spec is missing: always send a spec", field));
  const auto& md = in.metadata();
  Resource r;
  r.ns = md.namespace_();
  r.type = md.type();
  r.id = md.id();
  if (r.ns.empty() || r.type.empty() || r.id.empty()) {
    return absl::InvalidArgumentError(fmt::format("{}.metadata: namespace, type and id are required", field));
  }
  if (md.version() == "undefined") {
    r.version = 0;
  } else {
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(md.version().data(), md.version().data() + md.version().size(), v);
    if (md.version().empty() || ec != std::errc() || ptr != md.version().data() + md.version().size()) {
      return absl::InvalidArgumentError(fmt::format(
          "{}.metadata.version '{}': send \"undefined\" on create or the version you read", field, md.version()));
    }
    r.version = v;
  }
  r.owner = md.owner();
  auto phase = ParsePhase(md.phase());
  if (!phase.ok())
    return absl::InvalidArgumentError(fmt::format("{}.{}", field, std::string(phase.status().message())));
  r.phase = *phase;
  r.finalizers.assign(md.finalizers().begin(), md.finalizers().end());
  for (const auto& [k, v] : md.labels()) r.labels[k] = v;
  for (const auto& [k, v] : md.annotations()) r.annotations[k] = v;
  r.proto_spec = in.spec().proto_spec();
  r.yaml_spec = in.spec().yaml_spec();
  if (md.has_created()) r.created = FromTimestamp(md.created());
  if (md.has_updated()) r.updated = FromTimestamp(md.updated());
  return r;
}

ResourceFilter FilterFromProto(const google::protobuf::RepeatedPtrField<pb::LabelQuery>& queries,
                               const pb::IDQuery* id_query) {
  ResourceFilter filter;
  for (const auto& q : queries) {
    LabelQuery query;
    for (const auto& t : q.terms()) {
      LabelTerm term;
      term.key = t.key();
      term.op = static_cast<LabelOp>(t.op());
      term.values.assign(t.value().begin(), t.value().end());
      term.invert = t.invert();
      query.terms.push_back(std::move(term));
    }
    filter.label_queries.push_back(std::move(query));
  }
  if (id_query != nullptr) filter.id_regexp = id_query->regexp();
  return filter;
}

// Confines a filter to resources labelled for `provider_id` (Omni's shared-namespace rule).
void ConfineToProvider(ResourceFilter& filter, const std::string& provider_id) {
  LabelTerm term{kProviderIdLabel, LabelOp::kEqual, {provider_id}, false};
  if (filter.label_queries.empty()) filter.label_queries.push_back({});
  for (auto& query : filter.label_queries) query.terms.push_back(term);
}

bool LabelledFor(const Resource& r, const std::string& provider_id) {
  auto it = r.labels.find(kProviderIdLabel);
  return it != r.labels.end() && it->second == provider_id;
}

std::string RandomString(util::Random& random, int n, const char* alphabet) {
  const std::string chars = alphabet;
  std::string out;
  for (int i = 0; i < n; ++i) out += chars[random.Uniform(chars.size())];
  return out;
}

Metadata ClientMetadata(const grpc::ServerContext& ctx) {
  Metadata md;
  for (const auto& [k, v] : ctx.client_metadata()) {
    md.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
  }
  return md;
}

std::string ReplicaOf(const Metadata& metadata) {
  auto it = metadata.find("x-omni-proxmox-replica");
  return it == metadata.end() ? std::string() : it->second;
}

}  // namespace omni_proxmox::sim::omni
