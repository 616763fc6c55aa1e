// SPDX-License-Identifier: Apache-2.0
// The stand-in's --state-dir: what Omni keeps in etcd across restarts (resources outside
// infra-provider-ephemeral, the service-account keys), plus what the stand-in itself must keep for
// a restart to look like Omni's (schematics of the fake factory, a self-signed TLS certificate,
// the ports). One JSON file, DIR/state.json, written whole to a temporary file and renamed, so a
// crash leaves the previous snapshot. It holds private keys: the directory is created 0700 and the
// file 0600.

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sim/omni/standin_impl.h"
#include "util/status_macros.h"

namespace omni_proxmox::sim::omni {
namespace {

using nlohmann::json;

constexpr int kFormatVersion = 1;

std::int64_t Nanos(util::Clock::SystemTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

util::Clock::SystemTime FromNanos(std::int64_t n) {
  return util::Clock::SystemTime{
      std::chrono::duration_cast<util::Clock::SystemTime::duration>(std::chrono::nanoseconds(n))};
}

json ResourceToJson(const Resource& r) {
  return {{"namespace", r.ns},
          {"type", r.type},
          {"id", r.id},
          {"version", r.version},
          {"owner", r.owner},
          {"phase", PhaseName(r.phase)},
          {"created_ns", Nanos(r.created)},
          {"updated_ns", Nanos(r.updated)},
          {"finalizers", r.finalizers},
          {"labels", r.labels},
          {"annotations", r.annotations},
          {"proto_spec", Base64Encode(r.proto_spec)},
          {"yaml_spec", r.yaml_spec}};
}

absl::StatusOr<Resource> ResourceFromJson(const json& j) {
  try {
    Resource r;
    r.ns = j.at("namespace").get<std::string>();
    r.type = j.at("type").get<std::string>();
    r.id = j.at("id").get<std::string>();
    r.version = j.at("version").get<std::uint64_t>();
    r.owner = j.at("owner").get<std::string>();
    OP_ASSIGN_OR_RETURN(r.phase, ParsePhase(j.at("phase").get<std::string>()));
    r.created = FromNanos(j.at("created_ns").get<std::int64_t>());
    r.updated = FromNanos(j.at("updated_ns").get<std::int64_t>());
    r.finalizers = j.at("finalizers").get<std::vector<std::string>>();
    r.labels = j.at("labels").get<Labels>();
    r.annotations = j.at("annotations").get<Labels>();
    OP_ASSIGN_OR_RETURN(r.proto_spec, Base64Decode(j.at("proto_spec").get<std::string>()));
    r.yaml_spec = j.at("yaml_spec").get<std::string>();
    return r;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(fmt::format("a resource entry is malformed: {}", e.what()));
  }
}

json KeyToJson(const IssuedKey& issued) {
  const GeneratedKey& k = issued.key;
  return {{"name", k.name},
          {"email", k.email},
          {"fingerprint", k.fingerprint},
          {"public_key", k.public_key_armored},
          {"encoded", k.encoded.Reveal()},
          {"expires_ns", Nanos(k.expires)},
          {"role", RoleName(issued.role)}};
}

absl::StatusOr<IssuedKey> KeyFromJson(const json& j) {
  try {
    IssuedKey issued;
    issued.key.name = j.at("name").get<std::string>();
    issued.key.email = j.at("email").get<std::string>();
    issued.key.fingerprint = j.at("fingerprint").get<std::string>();
    issued.key.public_key_armored = j.at("public_key").get<std::string>();
    issued.key.encoded = util::Secret<std::string>(j.at("encoded").get<std::string>());
    issued.key.expires = FromNanos(j.at("expires_ns").get<std::int64_t>());
    OP_ASSIGN_OR_RETURN(issued.role, ParseRole(j.at("role").get<std::string>()));
    return issued;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(fmt::format("a key entry is malformed: {}", e.what()));
  }
}

std::filesystem::path StatePath(const std::string& dir) { return std::filesystem::path(dir) / "state.json"; }

}  // namespace

absl::StatusOr<bool> StandIn::Impl::LoadState() {
  const auto path = StatePath(options_.state_dir);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return false;
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(fmt::format("state dir: cannot read {}", path.string()));
  std::stringstream text;
  text << in.rdbuf();
  const json snapshot = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  const auto fail = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        fmt::format("state dir: {} {}: remove the file to start a fresh Omni", path.string(), why));
  };
  if (!snapshot.is_object() || snapshot.value("format", 0) != kFormatVersion) return fail("is not a snapshot");
  const std::string provider = snapshot.value("provider_id", "");
  if (provider != options_.provider_id) {
    return absl::InvalidArgumentError(
        fmt::format("state dir {} belongs to provider '{}', not '{}': pass --provider-id {} or another --state-dir",
                    options_.state_dir, provider, options_.provider_id, provider));
  }
  for (const auto& entry : snapshot.value("keys", json::array())) {
    auto issued = KeyFromJson(entry);
    if (!issued.ok()) return fail(std::string(issued.status().message()));
    if (auto status = keys_.Register(issued->key, issued->role); !status.ok()) {
      log_->warn("state dir: key of {} not loaded: {}", issued->key.name, std::string(status.message()));
      continue;
    }
    if (issued->role == Role::kAdmin && issued->key.name == "admin") admin_key_ = issued->key;
    if (issued->key.name == "infra-provider:" + options_.provider_id) provider_key_ = issued->key;
    std::lock_guard lock(keys_mutex_);
    issued_[issued->key.name] = *issued;
  }
  if (admin_key_.fingerprint.empty() || provider_key_.fingerprint.empty()) {
    return fail("has no admin or provider key");
  }
  for (const auto& entry : snapshot.value("resources", json::array())) {
    auto resource = ResourceFromJson(entry);
    if (!resource.ok()) return fail(std::string(resource.status().message()));
    store_.Import(*std::move(resource));
  }
  loaded_schematics_ = snapshot.value("schematics", std::vector<std::string>{});
  if (options_.tls && options_.tls_cert_pem.empty()) {
    options_.tls_cert_pem = snapshot.value("tls_cert_pem", "");
    options_.tls_key_pem = snapshot.value("tls_key_pem", "");
  }
  if (options_.grpc_port == 0) options_.grpc_port = snapshot.value("grpc_port", 0);
  if (options_.factory_port == 0) options_.factory_port = snapshot.value("factory_port", 0);
  if (options_.control_port == 0) options_.control_port = snapshot.value("control_port", 0);
  log_->info("state dir: loaded {} resources and {} keys from {}", snapshot.value("resources", json::array()).size(),
             issued_.size(), path.string());
  return true;
}

absl::Status StandIn::Impl::SaveState() {
  json keys = json::array();
  {
    std::lock_guard lock(keys_mutex_);
    for (const auto& [name, issued] : issued_) keys.push_back(KeyToJson(issued));
  }
  json resources = json::array();
  for (const auto& r : store_.Export(kInfraProviderEphemeralNs)) resources.push_back(ResourceToJson(r));
  json snapshot = {{"format", kFormatVersion},
                   {"provider_id", options_.provider_id},
                   {"grpc_port", grpc_port_},
                   {"factory_port", factory_ ? factory_->port() : 0},
                   {"control_port", control_port_ < 0 ? 0 : control_port_},
                   {"keys", std::move(keys)},
                   {"resources", std::move(resources)},
                   {"schematics", factory_ ? factory_->Schematics() : std::vector<std::string>{}}};
  if (options_.tls) {
    snapshot["tls_cert_pem"] = options_.tls_cert_pem;
    snapshot["tls_key_pem"] = options_.tls_key_pem;
  }
  std::error_code ec;
  std::filesystem::create_directories(options_.state_dir, ec);
  if (ec) return absl::InvalidArgumentError(fmt::format("state dir '{}': {}", options_.state_dir, ec.message()));
  ::chmod(options_.state_dir.c_str(), 0700);
  const auto path = StatePath(options_.state_dir);
  const auto temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    ::chmod(temporary.c_str(), 0600);
    out << snapshot.dump() << "\n";
    out.close();
    if (!out) return absl::InternalError(fmt::format("state dir: cannot write {}", temporary));
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    return absl::InternalError(fmt::format("state dir: cannot rename {} to {}", temporary, path.string()));
  }
  return absl::OkStatus();
}

void StandIn::Impl::PersistLoop(std::stop_token stop) {
  std::uint64_t saved_changes = store_.change_count();
  std::uint64_t saved_keys = keys_epoch_;
  while (!stop.stop_requested()) {
    store_.WaitUntil(
        [&] { return stop.stop_requested() || store_.change_count() != saved_changes || keys_epoch_ != saved_keys; },
        std::chrono::seconds(1));
    if (stop.stop_requested()) return;  // the destructor writes the last snapshot
    if (store_.change_count() == saved_changes && keys_epoch_ == saved_keys) continue;
    saved_changes = store_.change_count();
    saved_keys = keys_epoch_;
    if (auto status = SaveState(); !status.ok()) log_->error("state dir: {}", std::string(status.message()));
  }
}

}  // namespace omni_proxmox::sim::omni
