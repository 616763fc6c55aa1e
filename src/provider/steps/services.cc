// SPDX-License-Identifier: Apache-2.0
#include "provider/steps/services.h"

namespace omni_proxmox::provider {

absl::StatusOr<std::string> BootAssets::EnsureSchematic(std::string_view yaml, std::string_view talos_version) {
  absl::MutexLock lock(&mutex_);
  const auto key = std::make_pair(std::string(yaml), std::string(talos_version));
  if (auto it = schematics_.find(key); it != schematics_.end()) return it->second;
  auto id = resolver_.EnsureSchematic(yaml, talos_version);
  if (id.ok()) schematics_.emplace(key, *id);
  return id;
}

absl::StatusOr<omni::BootAsset> BootAssets::Resolve(const omni::BootAssetRequest& request) {
  absl::MutexLock lock(&mutex_);
  return resolver_.Resolve(request);
}

absl::StatusOr<omni::ConnectionParams> JoinConfigCache::Get() {
  absl::MutexLock lock(&mutex_);
  const auto now = clock_.Monotonic();
  if (params_ && now - fetched_ < ttl_) return *params_;
  auto fetched = omni::FetchConnectionParams(state_, provider_id_);
  if (!fetched.ok()) return fetched.status();
  params_ = *fetched;
  fetched_ = now;
  return *params_;
}

absl::StatusOr<Scope> JoinConfigCache::OurScope() {
  auto params = Get();
  if (!params.ok()) return params.status();
  return Scope{.provider_id = provider_id_, .instance = omni::InstanceIdOf(*params)};
}

}  // namespace omni_proxmox::provider
