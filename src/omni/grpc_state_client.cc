// SPDX-License-Identifier: Apache-2.0
// cosi.resource.State over gRPC: MakeGrpcStateClient.
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <stop_token>
#include <thread>

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "cosi/state.grpc.pb.h"
#include "omni/internal/connection.h"
#include "omni/internal/convert.h"
#include "omni/state_client.h"
#include "util/backoff.h"
#include "util/log.h"
#include "util/status_macros.h"

namespace omni_proxmox::omni {
namespace {

namespace pb = cosi::resource;
using internal::Connection;

constexpr std::string_view kGet = "/cosi.resource.State/Get";
constexpr std::string_view kList = "/cosi.resource.State/List";
constexpr std::string_view kCreate = "/cosi.resource.State/Create";
constexpr std::string_view kUpdate = "/cosi.resource.State/Update";
constexpr std::string_view kDestroy = "/cosi.resource.State/Destroy";
constexpr std::string_view kWatch = "/cosi.resource.State/Watch";
constexpr std::string_view kTeardown = "/cosi.resource.State/Teardown";

std::string Describe(std::string_view verb, const ResourcePointer& p) {
  return fmt::format("{} {} '{}' in namespace '{}'", verb, p.type, p.id, p.ns);
}

// One running Watch stream with resume/resync. Its thread is the only reader of the stream and the only
// caller of the callback; health_ and context_ are shared with the owner under mutex_.
class GrpcWatcher final : public Watcher {
 public:
  GrpcWatcher(std::shared_ptr<Connection> connection, WatchRequest request, WatchCallback callback)
      : connection_(std::move(connection)),
        stub_(pb::State::NewStub(connection_->channel())),
        request_(std::move(request)),
        callback_(std::move(callback)) {
    thread_ = std::jthread([this](std::stop_token stop) { Run(stop); });
  }

  ~GrpcWatcher() override {
    thread_.request_stop();
    {
      std::lock_guard lock(mutex_);
      if (context_ != nullptr) context_->TryCancel();
    }
    wake_.notify_all();
    thread_.join();
  }

  WatchHealth Health() const override {
    std::lock_guard lock(mutex_);
    return health_;
  }

 private:
  bool kind_watch() const { return !request_.id.has_value(); }

  void Run(std::stop_token stop) {
    auto log = util::Logger("omni");
    util::Backoff backoff(connection_->options().reconnect_base, connection_->options().reconnect_max,
                          connection_->random());
    std::optional<std::string> bookmark;
    bool first_open = true;
    while (!stop.stop_requested()) {
      // A full resync (bootstrap again, then drop what vanished) unless we can resume from a bookmark.
      bool resync = !bookmark.has_value();
      absl::Status result = RunStream(stop, bookmark, resync, first_open, backoff);
      const std::uint64_t answers_at_end = connection_->monitor().answers();
      first_open = false;
      if (stop.stop_requested()) break;
      bool invalid_bookmark = result.code() == absl::StatusCode::kFailedPrecondition;
      if (invalid_bookmark) bookmark.reset();
      {
        std::lock_guard lock(mutex_);
        health_.connected = false;
        health_.last_error = std::string(result.message());
        ++health_.reconnects;
      }
      auto delay = backoff.Next();
      log->warn("{}; reconnecting in {} ms{}, or as soon as Omni answers another call", std::string(result.message()),
                delay.count(), bookmark ? " from the last bookmark" : " with a full resync");
      // Only a watch that lost Omni is brought back by an answer elsewhere; one refused for its own
      // reasons waits its backoff.
      const bool lost_omni =
          result.code() == absl::StatusCode::kUnavailable || result.code() == absl::StatusCode::kDeadlineExceeded;
      WaitToReconnect(stop, delay, lost_omni ? std::optional(answers_at_end) : std::nullopt);
    }
  }

  // Waits `delay`, or less when Omni answers another call meanwhile (after an Omni restart the
  // heartbeat is answered first): the watch then reopens at once, though never sooner than
  // kRearmFloor after it ended, so a watch refused for its own reasons cannot spin.
  // `answers_at_end`: the monitor's answer count when the stream ended (nullopt: no early wake-up),
  // so an answer that came before the subscription counts too.
  void WaitToReconnect(const std::stop_token& stop, std::chrono::milliseconds delay,
                       std::optional<std::uint64_t> answers_at_end) {
    constexpr std::chrono::milliseconds kRearmFloor{500};
    const auto deadline = std::chrono::steady_clock::now() + delay;
    const auto floor = std::chrono::steady_clock::now() + std::min(delay, kRearmFloor);
    if (!answers_at_end) {
      std::unique_lock lock(mutex_);
      wake_.wait_until(lock, stop, deadline, [] { return false; });
      return;
    }
    bool answered = false;
    const int subscription = connection_->monitor().Subscribe([this, &answered] {
      std::lock_guard lock(mutex_);
      answered = true;
      wake_.notify_all();
    });
    {
      std::lock_guard lock(mutex_);
      answered = answered || connection_->monitor().answers() != *answers_at_end;
    }
    {
      std::unique_lock lock(mutex_);
      wake_.wait_until(lock, stop, floor, [] { return false; });
      wake_.wait_until(lock, stop, deadline, [&answered] { return answered; });
    }
    connection_->monitor().Unsubscribe(subscription);
  }

  // Opens one stream and pumps it until it ends. Returns why it ended.
  absl::Status RunStream(const std::stop_token& stop, std::optional<std::string>& bookmark, bool resync,
                         bool first_open, util::Backoff& backoff) {
    auto context = std::make_unique<grpc::ClientContext>();
    // Signed at every open: the timestamp must be fresh.
    OP_RETURN_IF_ERROR(connection_->Prepare(*context, kWatch, /*state_call=*/true, /*streaming=*/true));
    pb::WatchRequest req;
    req.set_namespace_(request_.ns);
    req.set_type(request_.type);
    if (request_.id) req.set_id(*request_.id);
    req.set_api_version(1);
    auto* options = req.mutable_options();
    options->set_aggregated(true);
    if (!request_.labels.empty()) internal::ToProto(request_.labels, *options->add_label_query());
    bool bootstrapping = false;
    if (resync) {
      bootstrapping = kind_watch() && request_.bootstrap_contents;
      options->set_bootstrap_contents(bootstrapping);
      // Ask for a bookmark right away so that even a quiet stream can be resumed (kind watches only; the
      // option is refused for single-resource watches).
      options->set_bootstrap_bookmark(kind_watch());
    } else {
      options->set_start_from_bookmark(*bookmark);
    }
    bool replaying = resync && !first_open && bootstrapping;
    {
      std::lock_guard lock(mutex_);
      if (stop.stop_requested()) return absl::CancelledError("watch stopped");
      context_ = context.get();
      health_.bootstrapped = health_.bootstrapped && !bootstrapping;
    }
    auto reader = stub_->Watch(context.get(), req);
    std::set<std::string> seen;  // IDs replayed during a resync
    pb::WatchResponse response;
    bool established = false;
    absl::Status ended = absl::OkStatus();
    while (ended.ok() && reader->Read(&response)) {
      if (!established) {
        established = true;
        backoff.Reset();
        (void)connection_->Finish(grpc::Status::OK, kWatch, "");  // Omni answers: re-arms other waiting watches
        std::lock_guard lock(mutex_);
        health_.connected = true;
        health_.last_error.clear();
        if (replaying) ++health_.resyncs;  // counted once the replay actually starts
        if (!bootstrapping) health_.bootstrapped = true;
      }
      for (const auto& event : response.event()) {
        if (event.has_bookmark()) bookmark = event.bookmark();
        switch (event.event_type()) {
          case pb::CREATED:
          case pb::UPDATED:
          case pb::DESTROYED: {
            WatchEvent out;
            out.resource = internal::FromProto(event.resource());
            if (event.has_old()) out.old = internal::FromProto(event.old());
            const std::string& id = out.resource.metadata.id;
            if (event.event_type() == pb::DESTROYED) {
              out.type = EventType::kDestroyed;
              known_.erase(id);
            } else {
              // A resync replays everything as CREATED; what we already knew is an update to the consumer.
              bool was_known = known_.contains(id);
              out.type = event.event_type() == pb::UPDATED || (replaying && was_known) ? EventType::kUpdated
                                                                                       : EventType::kCreated;
              known_[id] = out.resource;
              if (replaying) seen.insert(id);
            }
            callback_(out);
            break;
          }
          case pb::BOOTSTRAPPED: {
            if (replaying) {
              // Resources deleted while we were away never produce an event: synthesize them.
              for (auto it = known_.begin(); it != known_.end();) {
                if (seen.contains(it->first)) {
                  ++it;
                  continue;
                }
                WatchEvent gone{EventType::kDestroyed, it->second, std::nullopt, ""};
                it = known_.erase(it);
                callback_(gone);
              }
              replaying = false;
            }
            {
              std::lock_guard lock(mutex_);
              health_.bootstrapped = true;
            }
            callback_(WatchEvent{EventType::kBootstrapped, {}, std::nullopt, ""});
            break;
          }
          case pb::ERRORED: {
            std::string error = event.has_error() ? event.error() : "unknown watch error";
            callback_(WatchEvent{EventType::kErrored, {}, std::nullopt, error});
            ended = absl::UnavailableError(fmt::format("watch errored: {}", error));
            break;
          }
          case pb::NOOP:
          default:
            break;  // bookmark carrier only
        }
      }
    }
    if (!ended.ok()) context->TryCancel();  // we stop reading: end the stream before Finish
    grpc::Status finished = reader->Finish();
    {
      std::lock_guard lock(mutex_);
      context_ = nullptr;
    }
    if (!ended.ok()) return ended;
    if (finished.ok()) return absl::UnavailableError("watch stream closed by the server");
    return connection_->Finish(finished, kWatch, fmt::format("watch {} in namespace '{}'", request_.type, request_.ns));
  }

  std::shared_ptr<Connection> connection_;
  std::unique_ptr<pb::State::Stub> stub_;
  WatchRequest request_;
  WatchCallback callback_;
  std::map<std::string, Resource> known_;  // watch thread only

  mutable std::mutex mutex_;
  std::condition_variable_any wake_;
  grpc::ClientContext* context_ = nullptr;  // guarded by mutex_
  WatchHealth health_;                      // guarded by mutex_
  std::jthread thread_;
};

class GrpcStateClient final : public StateClient {
 public:
  explicit GrpcStateClient(std::shared_ptr<Connection> connection)
      : connection_(std::move(connection)), stub_(pb::State::NewStub(connection_->channel())) {
    conflict_attempts_ = connection_->options().conflict_attempts;
  }

  absl::StatusOr<Resource> Get(const ResourcePointer& pointer) override {
    OP_ASSIGN_OR_RETURN(pb::Resource raw, GetRaw(pointer));
    return internal::FromProto(raw);
  }

  absl::StatusOr<std::vector<Resource>> List(const ListRequest& request) override {
    grpc::ClientContext context;
    OP_RETURN_IF_ERROR(connection_->Prepare(context, kList, true, false));
    pb::ListRequest req;
    req.set_namespace_(request.ns);
    req.set_type(request.type);
    auto* options = req.mutable_options();
    if (!request.labels.empty()) internal::ToProto(request.labels, *options->add_label_query());
    auto reader = stub_->List(&context, req);
    std::vector<Resource> out;
    pb::ListResponse response;
    while (reader->Read(&response)) out.push_back(internal::FromProto(response.resource()));
    OP_RETURN_IF_ERROR(connection_->Finish(reader->Finish(), kList,
                                           fmt::format("list {} in namespace '{}'", request.type, request.ns)));
    return out;
  }

  absl::StatusOr<Resource> Create(const Resource& resource, std::string_view owner) override {
    pb::CreateRequest req;
    // Omni keeps the timestamps a Create sends (omni-protocol.md section 8): stamp what the caller
    // left unset with the time of creation, as the Go client's resource.NewMetadata does.
    Resource stamped = resource;
    const auto now = connection_->options().clock->Now();
    if (stamped.metadata.created == util::Clock::SystemTime{}) stamped.metadata.created = now;
    if (stamped.metadata.updated == util::Clock::SystemTime{}) stamped.metadata.updated = now;
    *req.mutable_resource() = internal::ToProto(stamped);
    auto* md = req.mutable_resource()->mutable_metadata();
    md->set_version(std::string(kVersionUndefined));
    md->set_owner(std::string(owner));
    req.mutable_options()->set_owner(std::string(owner));
    grpc::ClientContext context;
    OP_RETURN_IF_ERROR(connection_->Prepare(context, kCreate, true, false));
    pb::CreateResponse response;
    OP_RETURN_IF_ERROR(
        connection_->Finish(stub_->Create(&context, req, &response), kCreate, Describe("create", resource.pointer())));
    return internal::FromProto(response.resource());
  }

  absl::StatusOr<Resource> Update(const Resource& resource, std::string_view owner,
                                  std::optional<std::string_view> expected_phase) override {
    if (resource.metadata.version.empty() || resource.metadata.version == kVersionUndefined) {
      return absl::InvalidArgumentError(fmt::format("{}: metadata.version must be the current version read from Omni",
                                                    Describe("update", resource.pointer())));
    }
    pb::UpdateRequest req;
    *req.mutable_new_resource() = internal::ToProto(resource);
    req.mutable_new_resource()->mutable_metadata()->set_owner(std::string(owner));
    return UpdateRaw(std::move(req), owner, expected_phase);
  }

  absl::Status Destroy(const ResourcePointer& pointer, std::string_view owner) override {
    pb::DestroyRequest req;
    req.set_namespace_(pointer.ns);
    req.set_type(pointer.type);
    req.set_id(pointer.id);
    req.mutable_options()->set_owner(std::string(owner));
    grpc::ClientContext context;
    OP_RETURN_IF_ERROR(connection_->Prepare(context, kDestroy, true, false));
    pb::DestroyResponse response;
    return connection_->Finish(stub_->Destroy(&context, req, &response), kDestroy, Describe("destroy", pointer));
  }

  absl::StatusOr<bool> Teardown(const ResourcePointer& pointer, std::string_view owner) override {
    if (!teardown_unimplemented_.load()) {
      pb::TeardownRequest req;
      req.set_namespace_(pointer.ns);
      req.set_type(pointer.type);
      req.set_id(pointer.id);
      req.mutable_options()->set_owner(std::string(owner));
      grpc::ClientContext context;
      OP_RETURN_IF_ERROR(connection_->Prepare(context, kTeardown, true, false));
      pb::TeardownResponse response;
      const absl::Status status =
          connection_->Finish(stub_->Teardown(&context, req, &response), kTeardown, Describe("tear down", pointer));
      if (status.ok()) return response.destroy_ready();
      if (status.code() != absl::StatusCode::kUnimplemented) return status;
      // Omni before 1.8 / COSI runtime before 1.16: remember, and use Get+Update from now on.
      teardown_unimplemented_.store(true);
    }
    for (int attempt = 0; attempt < std::max(1, conflict_attempts_); ++attempt) {
      OP_ASSIGN_OR_RETURN(pb::Resource current, GetRaw(pointer));
      if (current.metadata().phase() == kPhaseTearingDown) return current.metadata().finalizers_size() == 0;
      pb::UpdateRequest req;
      *req.mutable_new_resource() = current;
      req.mutable_new_resource()->mutable_metadata()->set_phase(std::string(kPhaseTearingDown));
      req.mutable_new_resource()->mutable_metadata()->set_owner(std::string(owner));
      auto updated = UpdateRaw(std::move(req), owner, kPhaseRunning);
      if (updated.ok()) return updated->metadata.finalizers.empty();
      if (!IsRetryableWrite(updated.status())) return updated.status();
    }
    return absl::AbortedError(
        fmt::format("{}: still conflicting after {} attempts", Describe("tear down", pointer), conflict_attempts_));
  }

  absl::StatusOr<Resource> AddFinalizer(const ResourcePointer& pointer, std::string_view finalizer) override {
    return EditFinalizers(pointer, finalizer, /*add=*/true);
  }

  absl::StatusOr<Resource> RemoveFinalizer(const ResourcePointer& pointer, std::string_view finalizer) override {
    return EditFinalizers(pointer, finalizer, /*add=*/false);
  }

  absl::StatusOr<std::unique_ptr<Watcher>> Watch(WatchRequest request, WatchCallback callback) override {
    if (request.ns.empty() || request.type.empty()) {
      return absl::InvalidArgumentError("watch: namespace and type are required");
    }
    if (!callback) return absl::InvalidArgumentError("watch: a callback is required");
    return std::unique_ptr<Watcher>(new GrpcWatcher(connection_, std::move(request), std::move(callback)));
  }

 private:
  absl::StatusOr<pb::Resource> GetRaw(const ResourcePointer& pointer) {
    pb::GetRequest req;
    req.set_namespace_(pointer.ns);
    req.set_type(pointer.type);
    req.set_id(pointer.id);
    req.mutable_options();
    grpc::ClientContext context;
    OP_RETURN_IF_ERROR(connection_->Prepare(context, kGet, true, false));
    pb::GetResponse response;
    OP_RETURN_IF_ERROR(connection_->Finish(stub_->Get(&context, req, &response), kGet, Describe("get", pointer)));
    return std::move(*response.mutable_resource());
  }

  absl::StatusOr<Resource> UpdateRaw(pb::UpdateRequest req, std::string_view owner,
                                     std::optional<std::string_view> expected_phase) {
    req.mutable_options()->set_owner(std::string(owner));
    if (expected_phase) req.mutable_options()->set_expected_phase(std::string(*expected_phase));
    req.mutable_new_resource()->mutable_spec();  // always present on the wire
    const auto& md = req.new_resource().metadata();
    ResourcePointer pointer{md.namespace_(), md.type(), md.id()};
    grpc::ClientContext context;
    OP_RETURN_IF_ERROR(connection_->Prepare(context, kUpdate, true, false));
    pb::UpdateResponse response;
    OP_RETURN_IF_ERROR(
        connection_->Finish(stub_->Update(&context, req, &response), kUpdate, Describe("update", pointer)));
    return internal::FromProto(response.resource());
  }

  // Works on the raw message so that everything but the finalizers goes back byte-for-byte (Omni allows
  // a provider to change nothing else on MachineRequests).
  absl::StatusOr<Resource> EditFinalizers(const ResourcePointer& pointer, std::string_view finalizer, bool add) {
    for (int attempt = 0; attempt < std::max(1, conflict_attempts_); ++attempt) {
      OP_ASSIGN_OR_RETURN(pb::Resource current, GetRaw(pointer));
      auto* finalizers = current.mutable_metadata()->mutable_finalizers();
      auto it = std::find(finalizers->begin(), finalizers->end(), finalizer);
      bool present = it != finalizers->end();
      if (present == add) return internal::FromProto(current);
      if (add) {
        finalizers->Add(std::string(finalizer));
      } else {
        finalizers->erase(it);
      }
      std::string owner = current.metadata().owner();
      pb::UpdateRequest req;
      *req.mutable_new_resource() = std::move(current);
      auto updated = UpdateRaw(std::move(req), owner, std::nullopt);
      if (updated.ok() || !IsRetryableWrite(updated.status())) return updated;
    }
    return absl::AbortedError(fmt::format("{}: still conflicting after {} attempts",
                                          Describe(add ? "add finalizer to" : "remove finalizer from", pointer),
                                          conflict_attempts_));
  }

  std::shared_ptr<Connection> connection_;
  std::unique_ptr<pb::State::Stub> stub_;
  std::atomic<bool> teardown_unimplemented_{false};
};

}  // namespace

absl::StatusOr<std::unique_ptr<StateClient>> MakeGrpcStateClient(const ClientOptions& options) {
  OP_ASSIGN_OR_RETURN(auto connection, Connection::Create(options));
  return std::unique_ptr<StateClient>(new GrpcStateClient(std::move(connection)));
}

}  // namespace omni_proxmox::omni
