// SPDX-License-Identifier: Apache-2.0
#pragma once

// The Proxmox VE API client: an abstract interface with typed calls (types.h) and an HTTPS
// implementation (libcurl + OpenSSL) made by MakeHttpClient().
//
// Every error carries an ErrorKind (errors.h); use ClassifyError() rather than reading messages.
// Calls are thread-safe. Worker-starting calls return the task's Upid; wait for it with WaitTask(),
// which polls on the UPID's own node.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "pve/types.h"
#include "util/clock.h"
#include "util/mutation_gate.h"
#include "util/random.h"
#include "util/secret.h"

namespace omni_proxmox::pve {

// Retries of transient failures (ErrorKind::kTransient): capped exponential backoff with full
// jitter (util::Backoff). Idempotent calls (GET) retry any transient failure; non-idempotent
// calls (POST/PUT/DELETE) retry only when the request provably never reached the server (the
// connection could not be established), never blindly.
struct RetryPolicy {
  int max_attempts = 4;  // including the first
  std::chrono::milliseconds base_delay{200};
  std::chrono::milliseconds max_delay{5000};
};

struct ClientOptions {
  // https://host:8006/api2/json (no trailing slash).
  std::string base_url;

  // Authentication: an API token (preferred), or a user and password for tickets.
  std::string token_id;  // USER@REALM!TOKENID
  util::Secret<std::string> token_secret;
  std::string username;  // full user ID, USER@REALM
  util::Secret<std::string> password;

  // TLS. Verification is on unless insecure_skip_verify; ca_file / ca_pem pin the trusted CAs
  // (instead of the system store).
  bool insecure_skip_verify = false;
  std::string ca_file;
  std::string ca_pem;

  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds request_timeout{60'000};
  std::chrono::milliseconds upload_timeout{600'000};

  // Tickets are valid for < 2 h; renew (with the ticket itself as password) once this old.
  std::chrono::seconds ticket_renew_after{3600};

  RetryPolicy retry;

  // WaitTask polling: starts at the first interval and backs off to the max.
  std::chrono::milliseconds task_poll_initial{250};
  std::chrono::milliseconds task_poll_max{2000};
  // Lines of the task log attached to a failed task's error.
  int task_log_tail_lines = 10;

  // How the client waits between retries and task polls. Default: std::this_thread::sleep_for.
  // Tests inject a function that advances a ManualClock instead of sleeping.
  std::function<void(std::chrono::milliseconds)> sleep;
  // Jitter source. Default: seeded from the device.
  std::shared_ptr<util::Random> random;

  std::string user_agent = "omni-proxmox";
  // Sent as X-Omni-Proxmox-Replica on every request when set, so a simulator can tell two replicas
  // apart (Proxmox ignores it).
  std::string replica;
  // Asked right before every mutating request (POST, PUT, DELETE) goes out; a closed gate fails
  // the call with kFenced and nothing is sent. May be null; must outlive the client.
  const util::MutationGate* mutation_gate = nullptr;
};

class Client {
 public:
  virtual ~Client() = default;

  // GET /version: connectivity and authentication probe.
  virtual absl::StatusOr<VersionInfo> Version() = 0;
  // GET /access/permissions[?path=]: the caller's effective privileges.
  virtual absl::StatusOr<Permissions> GetPermissions(std::string_view path = "") = 0;

  // GET /nodes.
  virtual absl::StatusOr<std::vector<Node>> ListNodes() = 0;
  // GET /cluster/resources[?type=].
  virtual absl::StatusOr<std::vector<ClusterResource>> ClusterResources(ResourceType type) = 0;
  // GET /cluster/nextid: a candidate VMID (reserves nothing; retry create on kAlreadyExists).
  virtual absl::StatusOr<Vmid> NextId() = 0;

  // GET /nodes/{node}/storage[?content=][&enabled=1].
  virtual absl::StatusOr<std::vector<NodeStorage>> NodeStorages(std::string_view node, std::string_view content = "",
                                                                bool enabled_only = false) = 0;
  // GET /nodes/{node}/storage/{storage}/content[?content=].
  virtual absl::StatusOr<std::vector<StorageVolume>> StorageContent(std::string_view node, std::string_view storage,
                                                                    std::string_view content = "") = 0;
  // GET /nodes/{node}/storage/{storage}/content/{volid}. kNotFound when the volume is missing.
  virtual absl::StatusOr<VolumeInfo> GetVolume(std::string_view node, std::string_view storage,
                                               std::string_view volid) = 0;
  // POST /nodes/{node}/storage/{storage}/download-url.
  virtual absl::StatusOr<Upid> DownloadUrl(const DownloadUrlRequest& request) = 0;
  // POST /nodes/{node}/storage/{storage}/upload (multipart, content=iso).
  virtual absl::StatusOr<Upid> UploadIso(std::string_view node, std::string_view storage, std::string_view filename,
                                         std::string_view bytes) = 0;
  // DELETE /nodes/{node}/storage/{storage}/content/{volid}.
  virtual absl::StatusOr<Upid> DeleteVolume(std::string_view node, std::string_view storage,
                                            std::string_view volid) = 0;

  // GET /nodes/{node}/network[?type=]: the node's interfaces (type "any_bridge" for bridges only).
  // Not pure: wrappers that only `run` uses need not forward it; they answer Unimplemented.
  virtual absl::StatusOr<std::vector<NetworkInterface>> NodeNetworks(std::string_view node,
                                                                     std::string_view type = "any_bridge");
  // GET /cluster/mapping/{kind} with kind "pci" or "usb": the resource mappings the caller may see.
  virtual absl::StatusOr<std::vector<HardwareMapping>> HardwareMappings(std::string_view kind);

  // GET /nodes/{node}/qemu.
  virtual absl::StatusOr<std::vector<VmStatus>> ListVms(std::string_view node) = 0;
  // POST /nodes/{node}/qemu with vmid=<vmid> and `params` (must not contain vmid).
  virtual absl::StatusOr<Upid> CreateVm(std::string_view node, Vmid vmid, const FormFields& params) = 0;
  // GET /nodes/{node}/qemu/{vmid}/config.
  virtual absl::StatusOr<VmConfig> GetVmConfig(std::string_view node, Vmid vmid) = 0;
  // POST /nodes/{node}/qemu/{vmid}/config: a qmconfig task (nullopt when the server finished it
  // synchronously).
  virtual absl::StatusOr<std::optional<Upid>> UpdateVmConfig(std::string_view node, Vmid vmid,
                                                             const FormFields& params) = 0;
  // GET /nodes/{node}/qemu/{vmid}/status/current.
  virtual absl::StatusOr<VmStatus> GetVmStatus(std::string_view node, Vmid vmid) = 0;
  // POST /nodes/{node}/qemu/{vmid}/status/{start,stop,shutdown}.
  virtual absl::StatusOr<Upid> StartVm(std::string_view node, Vmid vmid) = 0;
  virtual absl::StatusOr<Upid> StopVm(std::string_view node, Vmid vmid) = 0;
  virtual absl::StatusOr<Upid> ShutdownVm(std::string_view node, Vmid vmid, const ShutdownOptions& options = {}) = 0;
  // DELETE /nodes/{node}/qemu/{vmid}?purge=&destroy-unreferenced-disks=.
  virtual absl::StatusOr<Upid> DeleteVm(std::string_view node, Vmid vmid, bool purge,
                                        bool destroy_unreferenced_disks) = 0;

  // GET /nodes/{upid.node}/tasks/{upid}/status.
  virtual absl::StatusOr<TaskStatus> GetTaskStatus(const Upid& upid) = 0;
  // GET /nodes/{upid.node}/tasks/{upid}/log?start=&limit= (limit 0 = all lines).
  virtual absl::StatusOr<TaskLog> GetTaskLog(const Upid& upid, std::int64_t start = 0, std::int64_t limit = 50) = 0;
  // GET /nodes/{node}/tasks[?vmid=][&source=active]: newest first. Finds tasks still in flight
  // after a provider restart.
  virtual absl::StatusOr<std::vector<TaskStatus>> ListTasks(std::string_view node, std::optional<Vmid> vmid,
                                                            bool active_only) = 0;
  // Polls the task until it stops or `deadline` (on the client's clock) passes. Returns the final
  // status when it ended with OK or WARNINGS: n. A failed task gives an error whose kind is
  // classified from the exit status (kLocked, kAlreadyExists, kNotFound, ... or kTaskFailed) and
  // that carries the last log lines (TaskLogTail()); a passed deadline gives kTimeout.
  virtual absl::StatusOr<TaskStatus> WaitTask(const Upid& upid, util::Clock::MonotonicTime deadline) = 0;
};

// Makes the HTTPS client. Fails with kBadParameter when the options are unusable (no URL, no or
// partial credentials, unreadable caFile). Logs a warning (once per process) when TLS
// verification is off. `clock` must outlive the client.
absl::StatusOr<std::unique_ptr<Client>> MakeHttpClient(const ClientOptions& options, const util::Clock& clock);

}  // namespace omni_proxmox::pve
