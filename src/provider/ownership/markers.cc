// SPDX-License-Identifier: Apache-2.0
#include "provider/ownership/markers.h"

#include <algorithm>

#include <fmt/format.h>

namespace omni_proxmox::provider {

std::string SanitizeTag(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    const bool ok = (lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9') || lower == '_' || lower == '-' ||
                    lower == '+' || lower == '.';
    out += ok ? lower : '_';
  }
  return out;
}

std::string ProviderTag(std::string_view provider_id) { return "omni-provider." + SanitizeTag(provider_id); }
std::string RequestTag(std::string_view request_id) { return "omni-request." + SanitizeTag(request_id); }
std::string RequestSetTag(std::string_view request_set_id) { return "omni-set." + SanitizeTag(request_set_id); }
std::string InstanceTag(std::string_view instance) { return "omni-instance." + SanitizeTag(instance); }

std::vector<std::string> SplitTags(std::string_view tags) {
  std::vector<std::string> out;
  std::string current;
  for (char c : tags) {
    if (c == ';' || c == ',' || c == ' ' || c == '\t' || c == '\n') {
      if (!current.empty()) out.push_back(std::move(current));
      current.clear();
    } else {
      current += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
  }
  if (!current.empty()) out.push_back(std::move(current));
  return out;
}

bool ParseOwnership(std::string_view tags, Ownership& out) {
  bool managed = false;
  Ownership ownership;
  for (const auto& tag : SplitTags(tags)) {
    if (tag == kManagedTag) {
      managed = true;
    } else if (tag.starts_with("omni-provider.")) {
      ownership.provider_id = tag.substr(14);
    } else if (tag.starts_with("omni-request.")) {
      ownership.request_id = tag.substr(13);
    } else if (tag.starts_with("omni-set.")) {
      ownership.request_set_id = tag.substr(9);
    } else if (tag.starts_with("omni-instance.")) {
      ownership.instance = tag.substr(14);
    }
  }
  if (!managed || ownership.provider_id.empty()) return false;
  out = std::move(ownership);
  return true;
}

ScopeMatch MatchScope(const Ownership& ownership, const Scope& scope) {
  if (ownership.provider_id != SanitizeTag(scope.provider_id)) return ScopeMatch::kNotOurs;
  if (ownership.instance.empty()) return ScopeMatch::kUnscoped;
  return ownership.instance == SanitizeTag(scope.instance) ? ScopeMatch::kOurs : ScopeMatch::kOtherInstance;
}

bool IsOwnedBy(std::string_view tags, std::string_view vm_name, const Scope& scope, std::string_view request_id) {
  Ownership ownership;
  if (!ParseOwnership(tags, ownership)) return false;
  return OursOrUnscoped(MatchScope(ownership, scope)) && ownership.request_id == SanitizeTag(request_id) &&
         vm_name == VmNameFor(request_id);
}

std::string VmNameFor(std::string_view request_id) {
  std::string name;
  name.reserve(request_id.size());
  for (char c : request_id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    name += ok ? c : '-';
  }
  while (!name.empty() && (name.front() == '-' || name.front() == '.')) name.erase(name.begin());
  while (!name.empty() && (name.back() == '-' || name.back() == '.')) name.pop_back();
  if (name.empty()) name = "omni-machine";
  return name;
}

}  // namespace omni_proxmox::provider
