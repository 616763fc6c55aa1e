// SPDX-License-Identifier: Apache-2.0
// EncodeSpec's readable yaml_spec (src/omni/specs.h): it must read back, with any YAML parser, as
// exactly the JSON rendering of the spec, whatever the strings hold.
#include "omni/specs.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "omni/specs/omni.pb.h"

namespace omni_proxmox::omni {
namespace {

// YAML as the JSON value it denotes; scalars stay strings unless the YAML had them plain and
// they are numbers or booleans (what a YAML 1.2 core-schema reader does).
nlohmann::json ToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& entry : node) out[entry.first.as<std::string>()] = ToJson(entry.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(ToJson(item));
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string text = node.as<std::string>();
      if (node.Tag() == "?") {  // plain
        if (text == "true" || text == "false") return text == "true";
        auto number = nlohmann::json::parse(text, nullptr, false);
        if (!number.is_discarded() && number.is_number()) return number;
      }
      return text;
    }
    default:
      return nullptr;
  }
}

nlohmann::json AsJson(const google::protobuf::Message& spec) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(spec, &json, options).ok());
  return nlohmann::json::parse(json);
}

TEST(EncodeSpecTest, YamlSpecReadsBackAsTheSpec) {
  specs::MachineRequestSpec spec;
  spec.set_talos_version("v1.10.4");
  spec.mutable_overlay()->set_name("rpi_generic");
  spec.mutable_overlay()->set_image("siderolabs/sbc-raspberrypi");
  spec.add_extensions("siderolabs/qemu-guest-agent");
  spec.add_extensions("yes");    // a YAML 1.1 boolean if written plain
  spec.add_extensions("12345");  // a number if written plain
  spec.add_kernel_args("console=ttyS0");
  spec.add_kernel_args("- dash: and colon #hash");
  auto* meta = spec.add_meta_values();
  meta->set_key(10);
  meta->set_value("line one\nline \"two\"\ttabbed \\ backslash, ünïcode");
  spec.add_meta_values()->set_key(11);
  spec.set_provider_data("cores: 2\nstorage_selector: 'type == \"rbd\"'\n");
  spec.set_grpc_tunnel(specs::ENABLED);

  Resource resource;
  EncodeSpec(spec, resource);
  ASSERT_FALSE(resource.yaml_spec.empty());
  EXPECT_EQ(resource.yaml_spec.back(), '\n');
  YAML::Node parsed = YAML::Load(resource.yaml_spec);
  EXPECT_EQ(ToJson(parsed), AsJson(spec)) << resource.yaml_spec;
  // Block style, readable: simple values stay plain.
  EXPECT_NE(resource.yaml_spec.find("talos_version: v1.10.4\n"), std::string::npos) << resource.yaml_spec;
  EXPECT_NE(resource.yaml_spec.find("overlay:\n  name: rpi_generic\n"), std::string::npos) << resource.yaml_spec;

  specs::MachineRequestSpec decoded;
  ASSERT_TRUE(DecodeSpec(resource, decoded).ok());
  EXPECT_EQ(decoded.SerializeAsString(), spec.SerializeAsString());
}

TEST(EncodeSpecTest, EmptySpecIsAnEmptyMapping) {
  specs::MachineRequestStatusSpec spec;
  Resource resource;
  EncodeSpec(spec, resource);
  EXPECT_EQ(resource.yaml_spec, "{}\n");
  EXPECT_TRUE(YAML::Load(resource.yaml_spec).IsMap());
}

}  // namespace
}  // namespace omni_proxmox::omni
