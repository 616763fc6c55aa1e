#include "omni/specs.h"

#include <fmt/format.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

namespace omni_proxmox::omni {

std::string ProviderNamespace(std::string_view provider_id) { return fmt::format("infra-provider:{}", provider_id); }
std::string ProviderMachineType(std::string_view provider_id) {
  return fmt::format("Machine.{}.infraprovider.sidero.dev", provider_id);
}
std::string ProvisionControllerName(std::string_view provider_id) {
  return fmt::format("{}.ProvisionController", provider_id);
}
std::string HealthControllerName(std::string_view provider_id) {
  return fmt::format("{}.ProviderHealthStatusController", provider_id);
}

absl::Status DecodeSpec(const Resource& resource, google::protobuf::Message& out) {
  if (!out.ParseFromString(resource.proto_spec)) {
    return absl::DataLossError(fmt::format("{} '{}' in namespace '{}': spec does not parse as {}",
                                           resource.metadata.type, resource.metadata.id, resource.metadata.ns,
                                           out.GetDescriptor()->full_name()));
  }
  return absl::OkStatus();
}

void EncodeSpec(const google::protobuf::Message& spec, Resource& resource) {
  resource.proto_spec = spec.SerializeAsString();
  // Readability only (Omni re-renders known types): JSON with proto field names, shown as block YAML.
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(spec, &json, options).ok()) {
    resource.yaml_spec.clear();
    return;
  }
  try {
    YAML::Node node = YAML::Load(json);
    if (node.size() == 0) {
      resource.yaml_spec = "{}\n";
      return;
    }
    YAML::Emitter emitter;
    emitter << YAML::Block << node;
    resource.yaml_spec = std::string(emitter.c_str()) + "\n";
  } catch (const YAML::Exception&) {
    resource.yaml_spec = json;
  }
}

}  // namespace omni_proxmox::omni
