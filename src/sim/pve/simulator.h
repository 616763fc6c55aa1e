// SPDX-License-Identifier: Apache-2.0
#pragma once

// A strict Proxmox VE API server for tests, demos and operators (issue #4).
//
// It serves the provider's endpoint subset under /api2/json, validates every request against the
// official PVE 9.2 schema (provider-subset.json) and reproduces the behaviours listed in the
// fidelity checklist of docs/pve-sim.md: error text in the reason phrase, hash-ordered lists,
// offline nodes answering 595, asynchronous tasks with locks, space accounting, and so on.
// It is an independent implementation of the contract: nothing here comes from src/pve/.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

#include "sim/pve/fault.h"
#include "sim/pve/journal.h"
#include "util/clock.h"

namespace omni_proxmox::sim::pve {

// What the simulator learned when a VM with a cloud-init (cidata) ISO attached was started.
struct VmBootInfo {
  std::string node;
  int vmid = 0;
  std::string name;
  std::string smbios_uuid;  // the uuid= of smbios1, lower case
  std::string user_data;    // the user-data file of the attached cidata ISO
  std::string meta_data;    // the meta-data file of the attached cidata ISO
  std::string iso_volid;    // the volume the data was read from, e.g. "local:iso/user-data-105.iso"
};

struct SimulatorOptions {
  std::string scenario_yaml;  // scenario document (YAML text); empty = built-in default 3-node cluster
  bool tls = false;           // https with a self-signed cert generated at start
  std::string bind_address = "127.0.0.1";
  int port = 0;                        // 0 = pick a free port
  double time_scale = 1.0;             // simulated clock speed
  std::uint64_t seed = 1;              // shuffles and fault injection
  const util::Clock* clock = nullptr;  // optional injected clock (e.g. util::ManualClock); overrides time_scale
  std::function<void(const VmBootInfo&)> on_vm_started;  // optional; called without the state lock held
  // The PVE schema used for validation; empty = the copy embedded in the binary at build time.
  std::string schema_path;
  // PVE >= 8.3 adds "message" to error bodies; false mimics older servers ({"data":null} only).
  bool error_message_field = true;
  // The mutation journal's clock (journal.h); nullptr = util::RealClock(), whose monotonic time the
  // Omni stand-in's journal and a test's own clock share. Not `clock`: that one is simulated.
  const util::Clock* journal_clock = nullptr;
};

// Owns the listening socket, its worker threads and the simulated cluster.
// Thread-safe: every method may be called from any thread while requests are being served.
class Simulator {
 public:
  // Parses the scenario, binds the socket and starts serving. Errors name the scenario field at fault.
  static absl::StatusOr<std::unique_ptr<Simulator>> Start(SimulatorOptions options);
  ~Simulator();  // stops the server and joins its threads
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  int port() const;
  std::string base_url() const;            // e.g. "http://127.0.0.1:PORT" (client appends /api2/json/...)
  std::string ca_certificate_pem() const;  // the self-signed cert when tls, for caFile tests; empty otherwise
  std::string default_token_id() const;    // "root@pam!omni" in the default scenario
  std::string default_token_secret() const;

  // The same document as GET /_sim/state: nodes, storages, volumes, VMs (full config and power
  // state), tasks and request counts per endpoint.
  nlohmann::json StateForTest() const;

  // Controls, the same as POST /_sim/<name>. Each returns NotFound for an unknown node or VMID.
  absl::Status SetNodeOnline(const std::string& node, bool online);
  absl::Status MigrateVm(int vmid, const std::string& to_node);
  absl::Status DeleteVmOutOfBand(int vmid);
  // Something outside the API (a backup, a hung migration) holds the VM's node-local flock for
  // `hold` of simulated time (0 releases it): every worker on the VM that would wait more than
  // 10 s for it ends with PVE's "can't lock file '/var/lock/qemu-server/lock-<id>.conf' - got
  // timeout", and a PUT of its config answers 500 with that text.
  absl::Status HoldVmLock(int vmid, std::chrono::milliseconds hold);
  // Injects a fault into requests whose "<METHOD> <path below /api2/json>" matches the glob
  // `endpoint_pattern` ('*' matches any run of characters), e.g. "POST /nodes/*/qemu".
  // A later call with the same pattern replaces the spec.
  void SetFault(const std::string& endpoint_pattern, FaultSpec spec);
  void ClearFaults();
  // Makes the next task of `type` (e.g. "qmstart") on `node` ("" = any) end with `error`
  // ("" = fail nothing; "WARNINGS" = end with "WARNINGS: 1" after logging a WARN line).
  void FailNextTask(const std::string& type, const std::string& node, const std::string& error);
  // Number of requests served for the endpoint template, e.g. "POST /nodes/{node}/qemu".
  std::uint64_t RequestCount(const std::string& endpoint) const;
  // Every mutating API request with the replica that sent it, by arrival (journal.h); the same as
  // GET /_sim/journal.
  const Journal& journal() const;
  // The raw bytes of a file stored on an ISO storage (uploaded or downloaded), if present.
  absl::StatusOr<std::string> VolumeContentForTest(const std::string& node, const std::string& volid) const;

  class Impl;

 private:
  explicit Simulator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace omni_proxmox::sim::pve
