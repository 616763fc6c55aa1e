// SPDX-License-Identifier: Apache-2.0
#pragma once

// The markers that tie a Proxmox VM to one MachineRequest of one provider of one Omni. Every VM
// we create carries them; nothing without them is ever modified or deleted. Two Omni instances
// whose providers share a provider ID on one Proxmox cluster tell their VMs apart by the instance
// marker. The format is ours and documented in docs/state-and-ownership.md. Pure.

#include <string>
#include <string_view>
#include <vector>

namespace omni_proxmox::provider {

// Tag on every VM made by omni-proxmox, whatever the provider ID.
inline constexpr std::string_view kManagedTag = "omni-proxmox";

// Whose something is: this provider ID of this Omni instance (InstanceIdOf: a stable,
// non-secret identity of the Omni we talk to). An empty instance matches nothing but markers
// without one (tests and tools that do not know it).
struct Scope {
  std::string provider_id;
  std::string instance;
};

// Proxmox lowercases tags and allows only [a-z0-9_-+.]; anything else becomes '_'.
std::string SanitizeTag(std::string_view text);

// "omni-provider.<provider-id>"
std::string ProviderTag(std::string_view provider_id);
// "omni-request.<request-id>"
std::string RequestTag(std::string_view request_id);
// "omni-set.<machine-request-set-id>"
std::string RequestSetTag(std::string_view request_set_id);
// "omni-instance.<instance>"
std::string InstanceTag(std::string_view instance);

// Splits a Proxmox `tags` value (separated by ';', ',' or white space) and lowercases it.
std::vector<std::string> SplitTags(std::string_view tags);

struct Ownership {
  std::string provider_id;
  std::string request_id;  // empty when the VM carries no request tag
  std::string request_set_id;
  std::string instance;  // empty on VMs made before the instance marker existed
};

// How a VM's markers relate to a scope.
enum class ScopeMatch {
  kNotOurs,        // no markers, or another provider ID
  kOtherInstance,  // this provider ID, another Omni: never touched
  kUnscoped,       // this provider ID, made before the instance marker existed
  kOurs,           // this provider ID and this Omni
};
ScopeMatch MatchScope(const Ownership& ownership, const Scope& scope);
// What a request of this Omni may claim and what counts as ours: kOurs, and kUnscoped (see IsOwnedBy).
inline bool OursOrUnscoped(ScopeMatch match) { return match == ScopeMatch::kOurs || match == ScopeMatch::kUnscoped; }

// Reads our markers from a VM's tags. Returns false when the VM is not one of ours (no
// managed tag or no provider tag).
bool ParseOwnership(std::string_view tags, Ownership& out);

// True when the VM's tags and name say it belongs to `request_id` of `scope`. Both the request
// tag and the VM name must match: a foreign VM that reuses a VMID, or one whose markers were
// edited, is never touched. A VM made before the instance marker existed (kUnscoped) counts for a
// request that exists in this Omni: request IDs carry a random suffix, so another Omni's request
// of the same ID does not happen. Garbage collection, which has no request to go by, takes only
// kOurs (gc.h).
bool IsOwnedBy(std::string_view tags, std::string_view vm_name, const Scope& scope, std::string_view request_id);

// A DNS-name-safe VM name for a request ID (Proxmox rejects underscores and leading or
// trailing dashes).
std::string VmNameFor(std::string_view request_id);

}  // namespace omni_proxmox::provider
