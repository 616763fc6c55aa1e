// SPDX-License-Identifier: Apache-2.0
// The libcurl implementation of pve::Client.
//
// Connection reuse: a pool of curl easy handles (each keeps its connections across
// curl_easy_reset) that share one connection cache, DNS cache and TLS session cache through a
// CURLSH. A handle is used by one thread at a time, which is what libcurl requires.

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include <curl/curl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "pve/client.h"
#include "pve/errors.h"
#include "pve/parse/encode.h"
#include "pve/parse/error.h"
#include "pve/parse/json.h"
#include "pve/parse/responses.h"
#include "pve/scheme_probe.h"
#include "util/backoff.h"
#include "util/log.h"
#include "util/status_macros.h"

namespace omni_proxmox::pve {
namespace {

using std::chrono::milliseconds;

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Request {
  std::string method = "GET";
  std::string path;  // already encoded, starting with '/'
  FormFields query;
  FormFields form;
  // Multipart upload (POST .../upload): content field plus the file part named "filename".
  bool multipart = false;
  std::string upload_content;
  std::string upload_filename;
  std::string_view upload_bytes;
  bool idempotent = true;
  bool authenticate = true;
  milliseconds timeout{0};
};

struct Response {
  long status = 0;
  std::string reason;
  std::string body;
};

// One attempt's result. `reached_server` is false only when the connection was never
// established, which is the one case where a non-idempotent request may be retried.
struct Attempt {
  absl::Status status;
  Response response;
  bool reached_server = true;
};

struct Session {
  // Both are credentials: held as Secret so they cannot reach a log line by accident.
  util::Secret<std::string> ticket;
  util::Secret<std::string> csrf_token;
  util::Clock::MonotonicTime issued_at{};
  bool valid = false;
};

std::string Describe(const Request& r) { return fmt::format("{} {}", r.method, r.path); }

class HandlePool {
 public:
  HandlePool() {
    share_ = curl_share_init();
    curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &HandlePool::Lock);
    curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &HandlePool::Unlock);
    curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
  ~HandlePool() {
    for (CURL* h : free_) curl_easy_cleanup(h);
    curl_share_cleanup(share_);
  }
  HandlePool(const HandlePool&) = delete;
  HandlePool& operator=(const HandlePool&) = delete;

  CURL* Acquire() {
    {
      std::lock_guard lock(mutex_);
      if (!free_.empty()) {
        CURL* h = free_.back();
        free_.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }
  // `reuse` false: the handle is cleaned up instead of pooled. Its connections stay in the shared
  // cache either way.
  void Release(CURL* h, bool reuse) {
    if (h == nullptr) return;
    if (!reuse) {
      curl_easy_cleanup(h);
      return;
    }
    curl_easy_reset(h);
    std::lock_guard lock(mutex_);
    free_.push_back(h);
  }
  CURLSH* share() const { return share_; }

 private:
  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<HandlePool*>(user)->locks_[static_cast<std::size_t>(data) % kLocks].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<HandlePool*>(user)->locks_[static_cast<std::size_t>(data) % kLocks].unlock();
  }

  static constexpr std::size_t kLocks = 16;
  CURLSH* share_ = nullptr;
  std::array<std::mutex, kLocks> locks_;
  std::mutex mutex_;
  std::vector<CURL*> free_;
};

struct CallbackState {
  Response* response;
  bool too_large = false;
  const util::MutationGate* gate = nullptr;  // set for mutating requests
  absl::Status fenced;                       // why the gate refused, when it did
};

// Called by libcurl once connected, right before the request is sent: the last moment a replica
// that lost its lease can still keep a mutation from going out.
int CheckGateBeforeSending(void* user, char*, char*, int, int) {
  auto* state = static_cast<CallbackState*>(user);
  state->fenced = state->gate->Check();
  return state->fenced.ok() ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

size_t WriteBody(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<CallbackState*>(user);
  size_t n = size * count;
  if (state->response->body.size() + n > parse::kMaxBodyBytes) {
    state->too_large = true;
    return 0;
  }
  state->response->body.append(data, n);
  return n;
}

// Streams an upload's bytes from the caller's buffer: curl_mime_data would copy the whole file
// (each in-flight cidata upload held a second copy of its ISO).
struct UploadCursor {
  std::string_view bytes;
  std::size_t offset = 0;
};

size_t ReadUpload(char* buffer, size_t size, size_t count, void* user) {
  auto* cursor = static_cast<UploadCursor*>(user);
  const std::size_t n = std::min(size * count, cursor->bytes.size() - cursor->offset);
  std::memcpy(buffer, cursor->bytes.data() + cursor->offset, n);
  cursor->offset += n;
  return n;
}

// curl rewinds the part when it has to send the body again (e.g. after a redirect).
int SeekUpload(void* user, curl_off_t offset, int origin) {
  auto* cursor = static_cast<UploadCursor*>(user);
  const curl_off_t base = origin == SEEK_SET   ? 0
                          : origin == SEEK_CUR ? static_cast<curl_off_t>(cursor->offset)
                                               : static_cast<curl_off_t>(cursor->bytes.size());
  const curl_off_t target = base + offset;
  if (target < 0 || target > static_cast<curl_off_t>(cursor->bytes.size())) return CURL_SEEKFUNC_FAIL;
  cursor->offset = static_cast<std::size_t>(target);
  return CURL_SEEKFUNC_OK;
}

// Keeps the reason phrase of the last status line (after any 100 Continue): PVE puts the first
// line of its error message there, and for 401 and 595/596 that is all there is.
size_t ReadHeader(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<CallbackState*>(user);
  size_t n = size * count;
  std::string_view line(data, n);
  if (line.substr(0, 5) == "HTTP/") {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    std::size_t first = line.find(' ');
    std::size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
    state->response->reason = second == std::string_view::npos ? "" : std::string(line.substr(second + 1));
  }
  return n;
}

class HttpClient final : public Client {
 public:
  HttpClient(ClientOptions options, const util::Clock& clock) : options_(std::move(options)), clock_(clock) {
    if (!options_.sleep) options_.sleep = [](milliseconds d) { std::this_thread::sleep_for(d); };
    if (!options_.random) options_.random = std::make_shared<util::Random>(util::Random::SeedFromDevice());
    use_ticket_ = options_.token_id.empty();
  }

  absl::StatusOr<VersionInfo> Version() override {
    OP_ASSIGN_OR_RETURN(auto body, Call(Get("/version")));
    return parse::ParseVersion(body);
  }

  absl::StatusOr<Permissions> GetPermissions(std::string_view path) override {
    Request r = Get("/access/permissions");
    if (!path.empty()) r.query.emplace_back("path", std::string(path));
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParsePermissions(body);
  }

  absl::StatusOr<std::vector<Node>> ListNodes() override {
    OP_ASSIGN_OR_RETURN(auto body, Call(Get("/nodes")));
    return parse::ParseNodes(body);
  }

  absl::StatusOr<std::vector<ClusterResource>> ClusterResources(ResourceType type) override {
    Request r = Get("/cluster/resources");
    switch (type) {
      case ResourceType::kVm:
        r.query.emplace_back("type", "vm");
        break;
      case ResourceType::kStorage:
        r.query.emplace_back("type", "storage");
        break;
      case ResourceType::kNode:
        r.query.emplace_back("type", "node");
        break;
      case ResourceType::kAll:
        break;
    }
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseClusterResources(body);
  }

  absl::StatusOr<Vmid> NextId() override {
    OP_ASSIGN_OR_RETURN(auto body, Call(Get("/cluster/nextid")));
    return parse::ParseNextId(body);
  }

  absl::StatusOr<std::vector<NodeStorage>> NodeStorages(std::string_view node, std::string_view content,
                                                        bool enabled_only) override {
    OP_RETURN_IF_ERROR(CheckArgs(node));
    Request r = Get(fmt::format("/nodes/{}/storage", Seg(node)));
    if (!content.empty()) r.query.emplace_back("content", std::string(content));
    if (enabled_only) r.query.emplace_back("enabled", "1");
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseNodeStorages(body);
  }

  absl::StatusOr<std::vector<NetworkInterface>> NodeNetworks(std::string_view node, std::string_view type) override {
    OP_RETURN_IF_ERROR(CheckArgs(node));
    Request r = Get(fmt::format("/nodes/{}/network", Seg(node)));
    if (!type.empty()) r.query.emplace_back("type", std::string(type));
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseNetworkInterfaces(body);
  }

  absl::StatusOr<std::vector<HardwareMapping>> HardwareMappings(std::string_view kind) override {
    if (kind != "pci" && kind != "usb") {
      return MakeError(ErrorKind::kBadParameter, fmt::format("mapping kind '{}': use pci or usb", kind));
    }
    OP_ASSIGN_OR_RETURN(auto body, Call(Get(fmt::format("/cluster/mapping/{}", kind))));
    return parse::ParseHardwareMappings(body);
  }

  absl::StatusOr<std::vector<StorageVolume>> StorageContent(std::string_view node, std::string_view storage,
                                                            std::string_view content) override {
    OP_RETURN_IF_ERROR(CheckArgs(node, std::nullopt, storage));
    Request r = Get(fmt::format("/nodes/{}/storage/{}/content", Seg(node), Seg(storage)));
    if (!content.empty()) r.query.emplace_back("content", std::string(content));
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseStorageContent(body);
  }

  absl::StatusOr<VolumeInfo> GetVolume(std::string_view node, std::string_view storage,
                                       std::string_view volid) override {
    OP_RETURN_IF_ERROR(CheckArgs(node, std::nullopt, storage));
    OP_ASSIGN_OR_RETURN(auto body, Call(Get(fmt::format("/nodes/{}/storage/{}/content/{}", Seg(node), Seg(storage),
                                                        parse::EncodePathSegment(volid, true)))));
    return parse::ParseVolumeInfo(body);
  }

  absl::StatusOr<Upid> DownloadUrl(const DownloadUrlRequest& d) override {
    OP_RETURN_IF_ERROR(CheckArgs(d.node, std::nullopt, d.storage));
    if (d.checksum.empty() != d.checksum_algorithm.empty()) {
      return MakeError(ErrorKind::kBadParameter,
                       "download-url: checksum and checksum_algorithm must be given together (or neither)");
    }
    Request r = Post(fmt::format("/nodes/{}/storage/{}/download-url", Seg(d.node), Seg(d.storage)));
    r.form = {{"content", d.content}, {"filename", d.filename}, {"url", d.url}};
    if (!d.checksum.empty()) {
      r.form.emplace_back("checksum", d.checksum);
      r.form.emplace_back("checksum-algorithm", d.checksum_algorithm);
    }
    if (d.verify_certificates.has_value()) r.form.emplace_back("verify-certificates", FormBool(*d.verify_certificates));
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseUpidData(body, Describe(r));
  }

  absl::StatusOr<Upid> UploadIso(std::string_view node, std::string_view storage, std::string_view filename,
                                 std::string_view bytes) override {
    OP_RETURN_IF_ERROR(CheckArgs(node, std::nullopt, storage));
    Request r = Post(fmt::format("/nodes/{}/storage/{}/upload", Seg(node), Seg(storage)));
    r.multipart = true;
    r.upload_content = "iso";
    r.upload_filename = std::string(filename);
    r.upload_bytes = bytes;
    r.timeout = options_.upload_timeout;
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseUpidData(body, Describe(r));
  }

  absl::StatusOr<Upid> DeleteVolume(std::string_view node, std::string_view storage, std::string_view volid) override {
    OP_RETURN_IF_ERROR(CheckArgs(node, std::nullopt, storage));
    Request r = Delete(
        fmt::format("/nodes/{}/storage/{}/content/{}", Seg(node), Seg(storage), parse::EncodePathSegment(volid, true)));
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseUpidData(body, Describe(r));
  }

  absl::StatusOr<std::vector<VmStatus>> ListVms(std::string_view node) override {
    OP_RETURN_IF_ERROR(CheckArgs(node));
    OP_ASSIGN_OR_RETURN(auto body, Call(Get(fmt::format("/nodes/{}/qemu", Seg(node)))));
    return parse::ParseVmList(body);
  }

  absl::StatusOr<Upid> CreateVm(std::string_view node, Vmid vmid, const FormFields& params) override {
    OP_RETURN_IF_ERROR(CheckArgs(node, vmid));
    Request r = Post(fmt::format("/nodes/{}/qemu", Seg(node)));
    r.form.emplace_back("vmid", std::to_string(vmid));
    for (const auto& field : params) {
      if (field.first == "vmid") {
        return MakeError(ErrorKind::kBadParameter, "create vm: pass the vmid as an argument, not in params");
      }
      r.form.push_back(field);
    }
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseUpidData(body, Describe(r));
  }

  absl::StatusOr<VmConfig> GetVmConfig(std::string_view node, Vmid vmid) override {
    OP_RETURN_IF_ERROR(CheckArgs(node, vmid));
    OP_ASSIGN_OR_RETURN(auto body, Call(Get(fmt::format("/nodes/{}/qemu/{}/config", Seg(node), vmid))));
    return parse::ParseVmConfig(body);
  }

  absl::StatusOr<std::optional<Upid>> UpdateVmConfig(std::string_view node, Vmid vmid,
                                                     const FormFields& params) override {
    OP_RETURN_IF_ERROR(CheckArgs(node, vmid));
    Request r = Post(fmt::format("/nodes/{}/qemu/{}/config", Seg(node), vmid));
    r.form = params;
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseOptionalUpidData(body, Describe(r));
  }

  absl::StatusOr<VmStatus> GetVmStatus(std::string_view node, Vmid vmid) override {
    OP_RETURN_IF_ERROR(CheckArgs(node, vmid));
    OP_ASSIGN_OR_RETURN(auto body, Call(Get(fmt::format("/nodes/{}/qemu/{}/status/current", Seg(node), vmid))));
    return parse::ParseVmStatus(body);
  }

  absl::StatusOr<Upid> StartVm(std::string_view node, Vmid vmid) override { return Power(node, vmid, "start", {}); }
  absl::StatusOr<Upid> StopVm(std::string_view node, Vmid vmid) override { return Power(node, vmid, "stop", {}); }
  absl::StatusOr<Upid> ShutdownVm(std::string_view node, Vmid vmid, const ShutdownOptions& o) override {
    FormFields form;
    if (o.timeout.has_value()) form.emplace_back("timeout", std::to_string(o.timeout->count()));
    if (o.force_stop) form.emplace_back("forceStop", "1");
    return Power(node, vmid, "shutdown", form);
  }

  absl::StatusOr<Upid> DeleteVm(std::string_view node, Vmid vmid, bool purge,
                                bool destroy_unreferenced_disks) override {
    OP_RETURN_IF_ERROR(CheckArgs(node, vmid));
    Request r = Delete(fmt::format("/nodes/{}/qemu/{}", Seg(node), vmid));
    if (purge) r.query.emplace_back("purge", "1");
    if (destroy_unreferenced_disks) r.query.emplace_back("destroy-unreferenced-disks", "1");
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseUpidData(body, Describe(r));
  }

  absl::StatusOr<TaskStatus> GetTaskStatus(const Upid& upid) override {
    OP_ASSIGN_OR_RETURN(auto body, Call(Get(TaskPath(upid, "status"))));
    return parse::ParseTaskStatus(body);
  }

  absl::StatusOr<TaskLog> GetTaskLog(const Upid& upid, std::int64_t start, std::int64_t limit) override {
    Request r = Get(TaskPath(upid, "log"));
    r.query = {{"start", std::to_string(start)}, {"limit", std::to_string(limit)}};
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseTaskLog(body);
  }

  absl::StatusOr<std::vector<TaskStatus>> ListTasks(std::string_view node, std::optional<Vmid> vmid,
                                                    bool active_only) override {
    OP_RETURN_IF_ERROR(CheckArgs(node, vmid));
    Request r = Get(fmt::format("/nodes/{}/tasks", Seg(node)));
    if (vmid.has_value()) r.query.emplace_back("vmid", std::to_string(*vmid));
    r.query.emplace_back("source", active_only ? "active" : "all");
    r.query.emplace_back("limit", "500");
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseTaskList(body);
  }

  absl::StatusOr<TaskStatus> WaitTask(const Upid& upid, util::Clock::MonotonicTime deadline) override {
    milliseconds interval = options_.task_poll_initial;
    while (true) {
      OP_ASSIGN_OR_RETURN(TaskStatus status, GetTaskStatus(upid));
      if (!status.running) {
        if (status.Succeeded()) return status;
        return TaskFailure(upid, status);
      }
      auto now = clock_.Monotonic();
      if (now >= deadline) {
        return MakeError(ErrorKind::kTimeout,
                         fmt::format("task {} {} on node '{}' ({}) still running at the wait deadline", upid.type,
                                     upid.id, upid.node, upid.text));
      }
      auto left = std::chrono::duration_cast<milliseconds>(deadline - now) + milliseconds(1);
      options_.sleep(std::min(interval, left));
      interval = std::min(interval * 2, options_.task_poll_max);
    }
  }

 private:
  // Rejects arguments Proxmox would reject anyway (or that would change the path), without a
  // round trip: node names follow pve-node, VMIDs pve-vmid, storage IDs pve-storage-id.
  static absl::Status CheckArgs(std::string_view node, std::optional<Vmid> vmid = std::nullopt,
                                std::optional<std::string_view> storage = std::nullopt) {
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
    bool node_ok = !node.empty() && node.size() <= 64 && alnum(node.front()) && alnum(node.back());
    for (char c : node) node_ok = node_ok && (alnum(c) || c == '-');
    if (!node_ok) {
      return MakeError(ErrorKind::kBadParameter,
                       fmt::format("node '{}': not a valid node name (letters, digits and inner '-')", node));
    }
    if (vmid.has_value() && (*vmid < kMinVmid || *vmid > kMaxVmid)) {
      return MakeError(ErrorKind::kBadParameter, fmt::format("vmid {}: must be in 100..999999999", *vmid));
    }
    if (storage.has_value()) {
      bool storage_ok = !storage->empty() && storage->size() <= 64 &&
                        ((storage->front() >= 'a' && storage->front() <= 'z') ||
                         (storage->front() >= 'A' && storage->front() <= 'Z'));
      for (char c : *storage) storage_ok = storage_ok && (alnum(c) || c == '-' || c == '_' || c == '.');
      if (!storage_ok) {
        return MakeError(
            ErrorKind::kBadParameter,
            fmt::format("storage '{}': not a valid storage ID (a letter, then letters, digits, - _ .)", *storage));
      }
    }
    return absl::OkStatus();
  }

  static std::string Seg(std::string_view s) { return parse::EncodePathSegment(s); }
  static std::string TaskPath(const Upid& upid, std::string_view leaf) {
    // Tasks are only known on their own node: always ask the UPID's node.
    return fmt::format("/nodes/{}/tasks/{}/{}", Seg(upid.node), Seg(upid.text), leaf);
  }
  static Request Get(std::string path) {
    Request r;
    r.path = std::move(path);
    return r;
  }
  static Request Post(std::string path) {
    Request r;
    r.method = "POST";
    r.path = std::move(path);
    r.idempotent = false;
    return r;
  }
  static Request Delete(std::string path) {
    Request r;
    r.method = "DELETE";
    r.path = std::move(path);
    r.idempotent = false;
    return r;
  }

  absl::StatusOr<Upid> Power(std::string_view node, Vmid vmid, std::string_view action, FormFields form) {
    OP_RETURN_IF_ERROR(CheckArgs(node, vmid));
    Request r = Post(fmt::format("/nodes/{}/qemu/{}/status/{}", Seg(node), vmid, action));
    r.form = std::move(form);
    OP_ASSIGN_OR_RETURN(auto body, Call(r));
    return parse::ParseUpidData(body, Describe(r));
  }

  absl::Status TaskFailure(const Upid& upid, const TaskStatus& status) {
    std::string exit = status.exit_status.value_or("unexpected status");
    std::vector<std::string> tail;
    // The log's total is only known from a first read; then fetch just the last lines.
    if (options_.task_log_tail_lines > 0) {
      auto head = GetTaskLog(upid, 0, 1);
      if (head.ok()) {
        std::int64_t start = std::max<std::int64_t>(0, head->total - options_.task_log_tail_lines);
        auto log = GetTaskLog(upid, start, options_.task_log_tail_lines);
        if (log.ok()) {
          for (const auto& line : log->lines) tail.push_back(line.text.substr(0, 512));
        }
      }
    }
    ErrorKind kind = parse::ClassifyMessage(exit);
    if (kind == ErrorKind::kOther) kind = ErrorKind::kTaskFailed;
    std::string joined;
    for (const auto& line : tail) joined += fmt::format("{}{}", joined.empty() ? "" : " | ", line);
    absl::Status error =
        MakeError(kind, fmt::format("task {} {} on node '{}' failed: {}{}{}", upid.type, upid.id, upid.node, exit,
                                    tail.empty() ? "" : "; last log lines: ", joined));
    SetTaskLogTail(error, tail);
    return error;
  }

  // Runs a request with authentication and the retry policy; returns the body of a 2xx reply.
  absl::StatusOr<std::string> Call(const Request& request) {
    util::Backoff backoff(options_.retry.base_delay, options_.retry.max_delay, *options_.random);
    for (int attempt = 1;; ++attempt) {
      Attempt a = PerformAuthenticated(request);
      if (a.status.ok()) return std::move(a.response.body);
      ErrorKind kind = ClassifyError(a.status);
      bool may_retry = IsRetryable(kind) && (request.idempotent || !a.reached_server);
      if (!may_retry || attempt >= options_.retry.max_attempts) return a.status;
      milliseconds delay = backoff.Next();
      logger_->debug("{}: attempt {} failed ({}), retrying in {} ms", Describe(request), attempt, ErrorKindName(kind),
                     delay.count());
      options_.sleep(delay);
    }
  }

  Attempt PerformAuthenticated(const Request& request) {
    if (!request.authenticate || !use_ticket_) return Perform(request, nullptr);
    auto session = EnsureSession();
    if (!session.ok()) return Attempt{session.status(), {}, true};
    Attempt a = Perform(request, &*session);
    // A ticket can be refused before its nominal expiry (key rotation, clock skew, server
    // restart): log in again once and repeat the request, which the server did not run.
    if (!a.status.ok() && ClassifyError(a.status) == ErrorKind::kAuth) {
      Invalidate(session->ticket);
      auto fresh = EnsureSession();
      if (!fresh.ok()) return Attempt{fresh.status(), {}, true};
      a = Perform(request, &*fresh);
    }
    return a;
  }

  void Invalidate(const util::Secret<std::string>& ticket) {
    std::lock_guard lock(session_mutex_);
    if (session_.ticket == ticket) session_.valid = false;
  }

  // Returns a usable ticket, logging in or renewing as needed. Logins are serialized so that
  // concurrent callers do not each log in.
  absl::StatusOr<Session> EnsureSession() {
    std::lock_guard login_lock(login_mutex_);
    Session current;
    {
      std::lock_guard lock(session_mutex_);
      current = session_;
    }
    auto now = clock_.Monotonic();
    if (current.valid && now - current.issued_at < options_.ticket_renew_after) return current;
    if (current.valid) {
      // Renew with the ticket as the password, well before the 2 h expiry.
      auto renewed = Login(current.ticket, "renew ticket for");
      if (renewed.ok()) return Store(*renewed);
      logger_->info("ticket renewal for '{}' failed ({}); logging in with the password", options_.username,
                    ErrorKindName(ClassifyError(renewed.status())));
    }
    OP_ASSIGN_OR_RETURN(auto fresh, Login(options_.password, "log in as"));
    return Store(fresh);
  }

  Session Store(const parse::Ticket& ticket) {
    Session s;
    s.ticket = util::Secret<std::string>(ticket.ticket);
    s.csrf_token = util::Secret<std::string>(ticket.csrf_token);
    s.issued_at = clock_.Monotonic();
    s.valid = true;
    std::lock_guard lock(session_mutex_);
    session_ = s;
    return s;
  }

  absl::StatusOr<parse::Ticket> Login(const util::Secret<std::string>& password, std::string_view verb) {
    Request r = Post("/access/ticket");
    r.authenticate = false;
    r.form = {{"username", options_.username}, {"password", password.Reveal()}};
    Attempt a = Perform(r, nullptr);
    if (!a.status.ok()) {
      ErrorKind kind = ClassifyError(a.status);
      std::string why = kind == ErrorKind::kAuth ? "authentication failure (check username, realm and password)"
                                                 : std::string(a.status.message());
      return MakeError(kind, fmt::format("{} '{}': {}", verb, options_.username, why), {},
                       HttpStatusOf(a.status).value_or(0));
    }
    return parse::ParseTicket(a.response.body);
  }

  Attempt Perform(const Request& request, const Session* session) {
    Attempt result;
    CURL* h = pool_.Acquire();
    if (h == nullptr) {
      result.status = MakeError(ErrorKind::kTransient, "curl_easy_init failed");
      result.reached_server = false;
      return result;
    }
    std::string url = options_.base_url + request.path;
    if (!request.query.empty()) url += "?" + parse::FormEncode(request.query);
    CallbackState state{&result.response};
    if (request.method != "GET" && options_.mutation_gate != nullptr) {
      if (auto open = options_.mutation_gate->Check(); !open.ok()) {
        pool_.Release(h, /*reuse=*/true);
        result.status = MakeError(ErrorKind::kFenced,
                                  fmt::format("{}: not sent: {}", Describe(request), std::string(open.message())));
        result.reached_server = false;
        return result;
      }
      state.gate = options_.mutation_gate;
      curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, &CheckGateBeforeSending);
      curl_easy_setopt(h, CURLOPT_PREREQDATA, &state);
    }
    struct curl_slist* headers = nullptr;
    curl_mime* mime = nullptr;
    UploadCursor upload{request.upload_bytes};
    std::string body;

    curl_easy_setopt(h, CURLOPT_SHARE, pool_.share());
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
    milliseconds timeout = request.timeout.count() > 0 ? request.timeout : options_.request_timeout;
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &state);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &ReadHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &state);
    if (options_.insecure_skip_verify) {
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
      if (!options_.ca_file.empty()) {
        curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
        curl_easy_setopt(h, CURLOPT_CAPATH, nullptr);
      }
      if (!options_.ca_pem.empty()) {
        struct curl_blob blob;
        blob.data = const_cast<char*>(options_.ca_pem.data());
        blob.len = options_.ca_pem.size();
        blob.flags = CURL_BLOB_COPY;
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
        curl_easy_setopt(h, CURLOPT_CAPATH, nullptr);
      }
    }

    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "Expect:");
    std::string replica;
    if (!options_.replica.empty()) {
      replica = "X-Omni-Proxmox-Replica: " + options_.replica;
      headers = curl_slist_append(headers, replica.c_str());
    }
    // Auth headers and cookies are built here only and never logged.
    std::string auth;
    if (request.authenticate) {
      if (!use_ticket_) {
        auth = fmt::format("Authorization: PVEAPIToken={}={}", options_.token_id, options_.token_secret.Reveal());
        headers = curl_slist_append(headers, auth.c_str());
      } else if (session != nullptr) {
        auth = "Cookie: PVEAuthCookie=" + session->ticket.Reveal();
        headers = curl_slist_append(headers, auth.c_str());
        if (request.method != "GET") {
          std::string csrf = "CSRFPreventionToken: " + session->csrf_token.Reveal();
          headers = curl_slist_append(headers, csrf.c_str());
        }
      }
    }

    if (request.multipart) {
      mime = curl_mime_init(h);
      // PVE's streaming parser wants the fields first and the file part, named "filename", last.
      curl_mimepart* part = curl_mime_addpart(mime);
      curl_mime_name(part, "content");
      curl_mime_data(part, request.upload_content.c_str(), CURL_ZERO_TERMINATED);
      part = curl_mime_addpart(mime);
      curl_mime_name(part, "filename");
      curl_mime_filename(part, request.upload_filename.c_str());
      curl_mime_type(part, "application/octet-stream");
      curl_mime_data_cb(part, static_cast<curl_off_t>(request.upload_bytes.size()), &ReadUpload, &SeekUpload, nullptr,
                        &upload);
      curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
    } else if (request.method == "POST" || request.method == "PUT") {
      body = parse::FormEncode(request.form);
      headers = curl_slist_append(headers, "Content-Type: application/x-www-form-urlencoded");
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
      if (request.method == "PUT") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
    } else if (request.method == "DELETE") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);

    auto started = clock_.Monotonic();
    CURLcode code = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    long new_connections = 0;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &new_connections);
    curl_off_t handshake_done_us = 0;  // 0: no TLS handshake completed (always for http://)
    curl_easy_getinfo(h, CURLINFO_APPCONNECT_TIME_T, &handshake_done_us);
    result.response.status = status;
    curl_slist_free_all(headers);
    if (mime != nullptr) curl_mime_free(mime);
    // A handle that sent a multipart upload keeps libcurl's 64 KiB upload buffer until it is
    // cleaned up (curl_easy_reset does not free it): pooled, every handle that ever uploaded a
    // cidata ISO held one, ~2 MiB with 32 workers. Uploads are one per VM, so a fresh handle next
    // time costs nothing that matters.
    pool_.Release(h, /*reuse=*/!request.multipart);

    std::string what = Describe(request);
    auto elapsed = std::chrono::duration_cast<milliseconds>(clock_.Monotonic() - started);
    if (logger_->should_log(spdlog::level::debug)) {
      std::string shown = request.path;
      if (!request.query.empty()) shown += "?" + parse::FormEncode(parse::RedactFields(request.query));
      std::string form = parse::FormEncode(parse::RedactFields(request.form));
      logger_->debug("{} {}{}{} -> {}{}{} ({} ms, {} connection)", request.method, shown,
                     form.empty() ? "" : " form: ", form, status,
                     code == CURLE_OK ? "" : " curl: ", code == CURLE_OK ? "" : curl_easy_strerror(code),
                     elapsed.count(), new_connections > 0 ? "new" : "reused");
    }

    if (code == CURLE_ABORTED_BY_CALLBACK && !state.fenced.ok()) {
      result.status =
          MakeError(ErrorKind::kFenced, fmt::format("{}: not sent: {}", what, std::string(state.fenced.message())));
      result.reached_server = false;
      return result;
    }
    if (code != CURLE_OK && new_connections > 0 && handshake_done_us == 0) {
      if (auto mismatch = SchemeMismatch(code, what); !mismatch.ok()) {
        result.status = std::move(mismatch);
        result.reached_server = false;  // no HTTP request was understood
        return result;
      }
    }
    if (code != CURLE_OK) {
      result.status = TransportError(code, what, state.too_large, timeout);
      result.reached_server =
          !(code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_RESOLVE_PROXY);
      return result;
    }
    if (status < 200 || status > 299) {
      result.status =
          parse::ErrorFromHttp(static_cast<int>(status), result.response.reason, result.response.body, what);
    }
    return result;
  }

  // A new connection that failed before any HTTP reply, for a reason a scheme that does not match
  // the server explains: an https:// handshake that got no answer (a plain-http server waits for a
  // request line that never comes) or a garbled one, an http:// request a TLS server dropped. Asks
  // the port in the other scheme (scheme_probe.h) and returns a kTls error naming the fix when it
  // answers there; OK when it does not (the ordinary transport error applies).
  absl::Status SchemeMismatch(CURLcode code, const std::string& what) {
    const std::string& base = options_.base_url;
    const bool https = base.rfind("https://", 0) == 0;
    const bool suspicious = https ? code == CURLE_OPERATION_TIMEDOUT || code == CURLE_SSL_CONNECT_ERROR ||
                                        code == CURLE_RECV_ERROR || code == CURLE_GOT_NOTHING
                                  : code == CURLE_GOT_NOTHING || code == CURLE_RECV_ERROR;
    if (!suspicious) return absl::OkStatus();
    const milliseconds probe_timeout = std::min(options_.connect_timeout, milliseconds{2'000});
    const Speaks speaks = ProbeScheme(base, probe_timeout);
    if (https && speaks == Speaks::kPlainHttp) {
      return MakeError(ErrorKind::kTls,
                       fmt::format("{}: {} answers plain http, not TLS (the TLS handshake failed: {}): Proxmox serves "
                                   "its API over https on port 8006, so check the port in proxmox.url; only for a "
                                   "plain-http proxy write {}",
                                   what, base, curl_easy_strerror(code), WithOtherScheme(base)));
    }
    if (!https && speaks == Speaks::kTls) {
      return MakeError(ErrorKind::kTls,
                       fmt::format("{}: {} speaks TLS, not plain http (it closed the connection without a reply: "
                                   "{}): write {} in proxmox.url",
                                   what, base, curl_easy_strerror(code), WithOtherScheme(base)));
    }
    return absl::OkStatus();
  }

  absl::Status TransportError(CURLcode code, const std::string& what, bool too_large, milliseconds timeout) {
    std::string base = options_.base_url;
    switch (code) {
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_ISSUER_ERROR:
      case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return MakeError(ErrorKind::kTls,
                         fmt::format("{}: TLS verification of {} failed: {}; set proxmox.caFile to the CA that signed "
                                     "the Proxmox certificate (/etc/pve/pve-root-ca.pem), or insecureSkipVerify: true",
                                     what, base, curl_easy_strerror(code)));
      case CURLE_OPERATION_TIMEDOUT:
        return MakeError(ErrorKind::kTransient,
                         fmt::format("{}: no complete reply from {} within {} ms", what, base, timeout.count()));
      case CURLE_WRITE_ERROR:
        if (too_large) {
          return MakeError(ErrorKind::kOther,
                           fmt::format("{}: response larger than {} bytes", what, parse::kMaxBodyBytes));
        }
        [[fallthrough]];
      default:
        return MakeError(ErrorKind::kTransient, fmt::format("{}: {}: {}", what, base, curl_easy_strerror(code)));
    }
  }

  ClientOptions options_;
  const util::Clock& clock_;
  bool use_ticket_ = false;
  std::shared_ptr<spdlog::logger> logger_ = util::Logger("pve");
  HandlePool pool_;
  std::mutex login_mutex_;
  std::mutex session_mutex_;
  Session session_;
};

}  // namespace

absl::StatusOr<std::vector<NetworkInterface>> Client::NodeNetworks(std::string_view, std::string_view) {
  return MakeError(ErrorKind::kUnsupported, "this client does not list node networks");
}

absl::StatusOr<std::vector<HardwareMapping>> Client::HardwareMappings(std::string_view) {
  return MakeError(ErrorKind::kUnsupported, "this client does not list hardware mappings");
}

absl::StatusOr<std::unique_ptr<Client>> MakeHttpClient(const ClientOptions& options, const util::Clock& clock) {
  if (options.base_url.rfind("https://", 0) != 0 && options.base_url.rfind("http://", 0) != 0) {
    return MakeError(ErrorKind::kBadParameter,
                     fmt::format("proxmox url '{}': must start with https:// (e.g. https://pve.example:8006/api2/json)",
                                 options.base_url));
  }
  bool token = !options.token_id.empty() || !options.token_secret.empty();
  bool password = !options.username.empty() || !options.password.empty();
  if (token && (options.token_id.empty() || options.token_secret.empty())) {
    return MakeError(ErrorKind::kBadParameter, "proxmox token: set both tokenID and tokenSecret");
  }
  if (!token && (options.username.empty() || options.password.empty())) {
    return MakeError(ErrorKind::kBadParameter,
                     "proxmox credentials: set tokenID and tokenSecret (recommended), or username and password");
  }
  (void)password;
  if (!options.ca_file.empty()) {
    std::FILE* f = std::fopen(options.ca_file.c_str(), "rb");
    if (f == nullptr) {
      return MakeError(
          ErrorKind::kBadParameter,
          fmt::format("proxmox caFile '{}': cannot be read; point it at a PEM CA bundle", options.ca_file));
    }
    std::fclose(f);
  }
  if (options.retry.max_attempts < 1) {
    return MakeError(ErrorKind::kBadParameter, "retry.max_attempts must be at least 1");
  }
  GlobalInitOnce();
  if (options.base_url.rfind("http://", 0) == 0) {
    static std::once_flag warned_plain;
    std::call_once(warned_plain, [&] {
      util::Logger("pve")->warn("{} is plain http: credentials and tickets travel unencrypted; use https",
                                options.base_url);
    });
  }
  if (options.insecure_skip_verify) {
    static std::once_flag warned;
    std::call_once(warned, [&] {
      util::Logger("pve")->warn(
          "TLS certificate verification of {} is OFF (insecureSkipVerify: true); set caFile "
          "to the Proxmox CA instead",
          options.base_url);
    });
  }
  return std::unique_ptr<Client>(new HttpClient(options, clock));
}

}  // namespace omni_proxmox::pve
