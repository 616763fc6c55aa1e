// SPDX-License-Identifier: Apache-2.0
#include "omni/schematic.h"

#include <algorithm>
#include <set>

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "omni/encoding.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "util/status_macros.h"

namespace omni_proxmox::omni {
namespace {

std::string TrimSlash(std::string_view url) {
  while (!url.empty() && url.back() == '/') url.remove_suffix(1);
  return std::string(url);
}

std::string WithV(std::string_view version) {
  if (!version.empty() && version.front() == 'v') return std::string(version);
  return fmt::format("v{}", version);
}

size_t AppendBody(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

}  // namespace

absl::StatusOr<std::string> BuildSchematicYaml(const SchematicRequest& request, const SchematicOptions& options) {
  std::vector<std::string> kernel_args = request.kernel_args;
  kernel_args.insert(kernel_args.end(), options.connection_kernel_args.begin(), options.connection_kernel_args.end());
  std::sort(kernel_args.begin(), kernel_args.end());
  kernel_args.insert(kernel_args.end(), options.extra_kernel_args.begin(), options.extra_kernel_args.end());

  std::set<std::string> extensions(request.extensions.begin(), request.extensions.end());
  extensions.insert(options.extra_extensions.begin(), options.extra_extensions.end());
  extensions.insert(std::string(kQemuGuestAgentExtension));

  std::vector<std::pair<uint32_t, std::string>> meta = request.meta_values;
  for (const auto& [key, value] : options.extra_meta_values) {
    // Compared by value, not by capturing the binding: clang 14 (the fuzz build's compiler) cannot capture one.
    auto it = std::find_if(meta.begin(), meta.end(), [wanted = key](const auto& m) { return m.first == wanted; });
    if (it != meta.end()) {
      it->second = value;
    } else {
      meta.emplace_back(key, value);
    }
  }
  for (const auto& [key, value] : meta) {
    if (key > 255) {
      return absl::InvalidArgumentError(
          fmt::format("schematic: meta key {} does not fit in a byte (Talos META keys are 0-255)", key));
    }
  }
  const std::optional<Overlay>& overlay = options.overlay ? options.overlay : request.overlay;

  YAML::Emitter out;
  out << YAML::BeginMap;
  if (overlay && (!overlay->image.empty() || !overlay->name.empty())) {
    out << YAML::Key << "overlay" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "image" << YAML::Value << overlay->image;
    out << YAML::Key << "name" << YAML::Value << overlay->name;
    out << YAML::EndMap;
  }
  out << YAML::Key << "customization" << YAML::Value << YAML::BeginMap;
  if (!kernel_args.empty()) {
    out << YAML::Key << "extraKernelArgs" << YAML::Value << YAML::BeginSeq;
    for (const auto& arg : kernel_args) out << arg;
    out << YAML::EndSeq;
  }
  if (!meta.empty()) {
    out << YAML::Key << "meta" << YAML::Value << YAML::BeginSeq;
    for (const auto& [key, value] : meta) {
      out << YAML::BeginMap << YAML::Key << "key" << YAML::Value << key << YAML::Key << "value" << YAML::Value << value
          << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  out << YAML::Key << "systemExtensions" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "officialExtensions" << YAML::Value << YAML::BeginSeq;
  for (const auto& extension : extensions) out << extension;
  out << YAML::EndSeq << YAML::EndMap;
  out << YAML::EndMap << YAML::EndMap;
  if (!out.good()) return absl::InternalError(fmt::format("schematic: YAML emitter: {}", out.GetLastError()));
  return std::string(out.c_str()) + "\n";
}

absl::StatusOr<std::string> BuildBootAssetUrl(std::string_view factory_base_url, const BootAssetRequest& request) {
  if (request.schematic_id.empty()) return absl::InvalidArgumentError("boot asset: schematic ID is empty");
  if (request.talos_version.empty()) return absl::InvalidArgumentError("boot asset: Talos version is empty");
  std::string base = TrimSlash(factory_base_url);
  std::string stem =
      fmt::format("{}-{}{}", request.platform, request.architecture, request.secure_boot ? "-secureboot" : "");
  switch (request.kind) {
    case BootAssetRequest::Kind::kIso:
      return fmt::format("{}/image/{}/{}/{}.iso", base, request.schematic_id, WithV(request.talos_version), stem);
    case BootAssetRequest::Kind::kDisk:
      if (request.format.empty()) {
        return absl::InvalidArgumentError("boot asset: a disk image needs a format (e.g. raw.xz, qcow2)");
      }
      return fmt::format("{}/image/{}/{}/{}.{}", base, request.schematic_id, WithV(request.talos_version), stem,
                         request.format);
    case BootAssetRequest::Kind::kPxe: {
      auto scheme_end = base.find("://");
      if (scheme_end == std::string::npos) {
        return absl::InvalidArgumentError(fmt::format("boot asset: factory URL '{}' has no scheme", base));
      }
      std::string pxe_base = base.substr(0, scheme_end + 3) + "pxe." + base.substr(scheme_end + 3);
      return fmt::format("{}/pxe/{}/{}/{}", pxe_base, request.schematic_id, WithV(request.talos_version), stem);
    }
  }
  return absl::InvalidArgumentError("boot asset: unknown kind");
}

absl::StatusOr<std::string> PostSchematicToFactory(std::string_view factory_base_url, std::string_view yaml,
                                                   std::chrono::milliseconds timeout) {
  std::string url = TrimSlash(factory_base_url) + "/schematics";
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("image factory: curl_easy_init failed");
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> guard(curl, &curl_easy_cleanup);
  std::string body;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/yaml");
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers_guard(headers, &curl_slist_free_all);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, yaml.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(yaml.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(fmt::format("image factory POST {}: {}", url, curl_easy_strerror(rc)));
  }
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  if (code == 400) {
    return absl::InvalidArgumentError(fmt::format("image factory rejected the schematic: {}", body));
  }
  if (code < 200 || code >= 300) {
    return absl::UnavailableError(fmt::format("image factory POST {}: HTTP {}: {}", url, code, body.substr(0, 200)));
  }
  try {
    auto json = nlohmann::json::parse(body);
    std::string id = json.at("id").get<std::string>();
    if (id.empty()) throw std::runtime_error("empty");
    return id;
  } catch (const std::exception&) {
    return absl::DataLossError(
        fmt::format("image factory POST {}: expected JSON {{\"id\": ...}}, got '{}'", url, body.substr(0, 200)));
  }
}

absl::StatusOr<std::string> FetchImageFactoryBaseUrl(StateClient& state) {
  auto features = state.Get({std::string(kNamespaceDefault), std::string(kTypeFeaturesConfig), "features-config"});
  if (features.status().code() == absl::StatusCode::kNotFound) return std::string(kDefaultImageFactoryUrl);
  if (!features.ok()) return features.status();
  specs::FeaturesConfigSpec spec;
  OP_RETURN_IF_ERROR(DecodeSpec(*features, spec));
  if (spec.image_factory_base_url().empty()) return std::string(kDefaultImageFactoryUrl);
  return TrimSlash(spec.image_factory_base_url());
}

BootAssetResolver::BootAssetResolver(ManagementClient& management, std::string factory_base_url,
                                     std::chrono::milliseconds factory_timeout)
    : management_(management), factory_base_url_(std::move(factory_base_url)), factory_timeout_(factory_timeout) {}

absl::StatusOr<std::string> BootAssetResolver::EnsureSchematic(std::string_view yaml, std::string_view talos_version) {
  if (!schematic_rpc_missing_) {
    auto id = management_.CreateSchematicFromRaw(yaml, talos_version);
    if (id.status().code() != absl::StatusCode::kUnimplemented) return id;
    schematic_rpc_missing_ = true;  // Omni before 1.8
  }
  return PostSchematicToFactory(factory_base_url_, yaml, factory_timeout_);
}

absl::StatusOr<BootAsset> BootAssetResolver::Resolve(const BootAssetRequest& request) {
  if (!boot_asset_rpc_missing_) {
    auto asset = management_.GetBootAssetURL(request);
    if (asset.status().code() != absl::StatusCode::kUnimplemented) return asset;
    boot_asset_rpc_missing_ = true;
  }
  BootAsset asset;
  OP_ASSIGN_OR_RETURN(asset.url, BuildBootAssetUrl(factory_base_url_, request));
  asset.image_factory_host = factory_base_url_;
  asset.storage_key = Sha256Hex(asset.url);
  return asset;
}

}  // namespace omni_proxmox::omni
