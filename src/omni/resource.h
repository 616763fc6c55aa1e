// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "util/clock.h"

// A COSI resource without protobuf types: metadata plus the opaque spec bytes and their YAML rendering.
namespace omni_proxmox::omni {

inline constexpr std::string_view kPhaseRunning = "running";
inline constexpr std::string_view kPhaseTearingDown = "tearingDown";
inline constexpr std::string_view kVersionUndefined = "undefined";

struct ResourcePointer {
  std::string ns;
  std::string type;
  std::string id;
  friend bool operator==(const ResourcePointer&, const ResourcePointer&) = default;
};

struct Metadata {
  std::string ns;
  std::string type;
  std::string id;
  std::string version{kVersionUndefined};  // decimal, or "undefined" before Create
  std::string owner;
  std::string phase{kPhaseRunning};  // "running" or "tearingDown"
  util::Clock::SystemTime created{};
  util::Clock::SystemTime updated{};
  std::vector<std::string> finalizers;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  friend bool operator==(const Metadata&, const Metadata&) = default;
};

struct Resource {
  Metadata metadata;
  std::string proto_spec;  // protobuf-encoded typed spec: what Omni acts on
  std::string yaml_spec;   // readable rendering for omnictl
  friend bool operator==(const Resource&, const Resource&) = default;

  ResourcePointer pointer() const { return {metadata.ns, metadata.type, metadata.id}; }
  bool tearing_down() const { return metadata.phase == kPhaseTearingDown; }
  bool HasFinalizer(std::string_view finalizer) const {
    for (const auto& f : metadata.finalizers) {
      if (f == finalizer) return true;
    }
    return false;
  }
};

}  // namespace omni_proxmox::omni
