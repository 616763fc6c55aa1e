// SPDX-License-Identifier: Apache-2.0
#include "omni/join_config.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include "omni/encoding.h"
#include "omni/specs.h"
#include "omni/specs/omni.pb.h"
#include "omni/state_client.h"
#include "util/escape.h"
#include "util/status_macros.h"

namespace omni_proxmox::omni {
namespace {

// Go url.ParseQuery's unescape of a query component ('+' is space).
std::string QueryUnescape(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> AddQuery(std::string_view url, const std::map<std::string, std::string>& params) {
  if (url.find("://") == std::string_view::npos) {
    return absl::InvalidArgumentError(fmt::format("machine API URL '{}' has no scheme", url));
  }
  std::string_view base = url.substr(0, url.find('#'));
  std::multimap<std::string, std::string> values;
  if (auto q = base.find('?'); q != std::string_view::npos) {
    std::string_view query = base.substr(q + 1);
    base = base.substr(0, q);
    while (!query.empty()) {
      auto amp = query.find('&');
      std::string_view part = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (part.empty()) continue;
      auto eq = part.find('=');
      values.emplace(QueryUnescape(part.substr(0, eq)),
                     eq == std::string_view::npos ? "" : QueryUnescape(part.substr(eq + 1)));
    }
  }
  for (const auto& [key, value] : params) {
    values.erase(key);  // url.Values.Set replaces
    values.emplace(key, value);
  }
  std::string out(base);
  char sep = '?';
  for (const auto& [key, value] : values) {
    out += sep;
    sep = '&';
    out += GoQueryEscape(key);
    out += '=';
    out += GoQueryEscape(value);
  }
  return out;
}

absl::StatusOr<std::string> EncodeJoinToken(std::string_view base, const std::map<std::string, std::string>& extra,
                                            int version) {
  if (base.empty()) return absl::InvalidArgumentError("join token: the base token is empty");
  if (base.substr(0, 3) == "v1:" || base.substr(0, 3) == "v2:" || extra.empty()) return std::string(base);
  if (version != 1 && version != 2) {
    return absl::InvalidArgumentError(fmt::format("join token: version {} is not 1 or 2", version));
  }
  std::string extra_json = GoJsonStringMap(extra);
  std::string signature = Base64Encode(HmacSha256(base, extra_json));
  std::string token_json =
      fmt::format("{{\"extra_data\":{},\"signature\":{}}}", extra_json, util::GoJsonQuote(signature));
  return fmt::format("v{}:{}", version, Base64Encode(token_json));
}

absl::StatusOr<JoinArgs> BuildJoinArgs(const ConnectionParams& params, std::string_view provider_id,
                                       std::optional<std::string> request_id, bool grpc_tunnel) {
  if (params.api_url.empty()) {
    return absl::FailedPreconditionError("join config: Omni reported an empty machine API URL");
  }
  std::map<std::string, std::string> extra{{std::string(kLabelInfraProviderId), std::string(provider_id)}};
  if (request_id) extra.emplace(std::string(kLabelMachineRequest), *request_id);
  OP_ASSIGN_OR_RETURN(std::string token,
                      EncodeJoinToken(params.join_token.Reveal(), extra, params.mode == JoinMode::kV2 ? 2 : 1));
  std::map<std::string, std::string> query{{"jointoken", token}};
  if (grpc_tunnel || params.enforce_grpc_tunnel) query.emplace("grpc_tunnel", "true");
  JoinArgs args;
  OP_ASSIGN_OR_RETURN(args.api_url, AddQuery(params.api_url, query));
  std::string events = fmt::format("[{}]:{}", kSideroLinkHost, params.events_port);
  std::string logs = fmt::format("tcp://[{}]:{}", kSideroLinkHost, params.logs_port);
  args.kernel_args = {fmt::format("siderolink.api={}", args.api_url), fmt::format("talos.events.sink={}", events),
                      fmt::format("talos.logging.kernel={}", logs)};
  // The URL needs no quoting in YAML (no ': ' or leading indicator); the bracketed endpoint does.
  args.config = fmt::format(
      "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: {}\n---\napiVersion: v1alpha1\nkind: "
      "EventSinkConfig\nendpoint: '{}'\n---\napiVersion: v1alpha1\nkind: KmsgLogConfig\nname: omni-kmsg\nurl: "
      "{}\n",
      args.api_url, events, logs);
  return args;
}

absl::StatusOr<ConnectionParams> FetchConnectionParams(StateClient& state, std::string_view provider_id) {
  OP_ASSIGN_OR_RETURN(
      auto definitions,
      state.List({.ns = std::string(kNamespaceMeta), .type = std::string(kTypeResourceDefinition), .labels = {}}));
  bool v2 = false;
  for (const auto& definition : definitions) {
    if (definition.metadata.id == "providerjoinconfigs.omni.sidero.dev") v2 = true;
  }
  ConnectionParams params;
  if (v2) {
    params.mode = JoinMode::kV2;
    OP_ASSIGN_OR_RETURN(Resource join, state.Get({std::string(kNamespaceInfraProvider),
                                                  std::string(kTypeProviderJoinConfig), std::string(provider_id)}));
    specs::ProviderJoinConfigSpec join_spec;
    OP_RETURN_IF_ERROR(DecodeSpec(join, join_spec));
    OP_ASSIGN_OR_RETURN(Resource api, state.Get({std::string(kNamespaceDefault), std::string(kTypeSiderolinkAPIConfig),
                                                 "siderolink-config"}));
    specs::SiderolinkAPIConfigSpec api_spec;
    OP_RETURN_IF_ERROR(DecodeSpec(api, api_spec));
    params.join_token = util::Secret<std::string>(join_spec.join_token());
    params.api_url = api_spec.machine_api_advertised_url();
    params.events_port = api_spec.events_port();
    params.logs_port = api_spec.logs_port();
    params.enforce_grpc_tunnel = api_spec.enforce_grpc_tunnel();
  } else {
    params.mode = JoinMode::kLegacy;
    OP_ASSIGN_OR_RETURN(Resource legacy, state.Get({std::string(kNamespaceDefault), std::string(kTypeConnectionParams),
                                                    "siderolink-config"}));
    specs::ConnectionParamsSpec spec;
    OP_RETURN_IF_ERROR(DecodeSpec(legacy, spec));
    params.join_token = util::Secret<std::string>(spec.join_token());
    params.api_url = spec.api_endpoint();
    params.events_port = spec.events_port();
    params.logs_port = spec.logs_port();
    params.enforce_grpc_tunnel = spec.use_grpc_tunnel();
  }
  if (params.join_token.empty()) {
    return absl::FailedPreconditionError("join config: Omni reported an empty join token");
  }
  return params;
}

std::string InstanceIdOf(const ConnectionParams& params) { return InstanceIdOfJoinToken(params.join_token.Reveal()); }

std::string InstanceIdOfJoinToken(std::string_view join_token) {
  const std::string input = "omni-proxmox instance\n" + std::string(join_token);
  unsigned char digest[EVP_MAX_MD_SIZE] = {};
  unsigned int length = 0;
  EVP_Digest(input.data(), input.size(), digest, &length, EVP_sha256(), nullptr);
  std::string hex;
  for (int i = 0; i < 6; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

}  // namespace omni_proxmox::omni
