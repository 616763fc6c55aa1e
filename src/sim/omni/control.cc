// SPDX-License-Identifier: Apache-2.0
// The stand-in's HTTP control endpoint: StandIn's controls for shells (curl) and demos
// (docs/omni-sim.md). Unauthenticated by design, so it should listen on loopback only.

#include <httplib.h>

#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "omni/specs/omni.pb.h"
#include "sim/omni/standin_impl.h"

namespace omni_proxmox::sim::omni {

namespace {

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kUnimplemented:
      return 501;
    default:
      return 500;
  }
}

void Reply(httplib::Response& res, const absl::Status& status) {
  res.status = HttpStatusFor(status);
  res.set_content(status.ok() ? std::string("ok\n") : std::string(status.message()) + "\n", "text/plain");
}

}  // namespace

absl::Status StandIn::Impl::StartControl(StandIn& standin) {
  if (options_.control_port < 0) return absl::OkStatus();
  control_ = std::make_unique<httplib::Server>();
  auto* self = &standin;
  control_->Put(R"(/machine-classes/([^/]+))", [self](const httplib::Request& req, httplib::Response& res) {
    Reply(res, self->ApplyMachineClass(req.matches[1], req.body));
  });
  auto scale = [self](const httplib::Request& req, httplib::Response& res) {
    const std::string klass = req.get_param_value("machine_class");
    const std::string count_text = req.get_param_value("count");
    int count = -1;
    auto [ptr, ec] = std::from_chars(count_text.data(), count_text.data() + count_text.size(), count);
    if (klass.empty() || ec != std::errc() || ptr != count_text.data() + count_text.size()) {
      Reply(res, absl::InvalidArgumentError("query: need ?machine_class=<class>&count=<n>"));
      return;
    }
    Reply(res, self->ScaleMachineRequestSet(req.matches[1], klass, count));
  };
  control_->Put(R"(/machine-request-sets/([^/]+))", scale);
  control_->Post(R"(/machine-request-sets/([^/]+))", scale);
  control_->Post(R"(/machines/([^/]+)/join)", [self](const httplib::Request& req, httplib::Response& res) {
    Reply(res, self->MachineJoined(req.body, req.matches[1]));
  });
  control_->Put(R"(/machine-requests/([^/]+))", [self](const httplib::Request& req, httplib::Response& res) {
    Reply(res, self->PlantMachineRequest(req.matches[1], req.body, req.get_param_value("machine_request_set")));
  });
  control_->Post(R"(/service-accounts/([^/]+))", [self](const httplib::Request& req, httplib::Response& res) {
    auto role = ParseRole(req.has_param("role") ? req.get_param_value("role") : "Reader");
    if (!role.ok()) {
      Reply(res, role.status());
      return;
    }
    auto key = self->CreateServiceAccount(req.matches[1], *role);
    if (!key.ok()) {
      Reply(res, key.status());
      return;
    }
    res.set_content(*key + "\n", "text/plain");
  });
  control_->Delete(R"(/service-accounts/([^/]+))", [self](const httplib::Request& req, httplib::Response& res) {
    Reply(res, self->DestroyServiceAccount(req.matches[1]));
  });
  control_->Delete(R"(/infra-providers/([^/]+))", [self](const httplib::Request& req, httplib::Response& res) {
    Reply(res, self->DeleteInfraProvider(req.matches[1]));
  });
  // The mutation journal and lease history (journal.h), for checkers of two-replica runs.
  control_->Get("/journal", [self](const httplib::Request&, httplib::Response& res) {
    res.set_content(self->journal().ToJson().dump() + "\n", "application/json");
  });
  control_->Post("/cluster-templates", [self](const httplib::Request& req, httplib::Response& res) {
    auto name = self->SyncClusterTemplate(req.body);
    if (!name.ok()) {
      Reply(res, name.status());
      return;
    }
    res.set_content(fmt::format("cluster {} synced\n", *name), "text/plain");
  });
  control_->Delete(R"(/clusters/([^/]+))", [self](const httplib::Request& req, httplib::Response& res) {
    Reply(res, self->DeleteCluster(req.matches[1]));
  });
  control_->Get("/status", [self](const httplib::Request&, httplib::Response& res) {
    nlohmann::json requests = nlohmann::json::array();
    const auto listed = self->state().List(kInfraProviderNs, kMachineRequestType);
    for (const auto& r : listed.value_or(std::vector<Resource>{})) {
      nlohmann::json item = {{"id", r.id}, {"phase", PhaseName(r.phase)}, {"finalizers", r.finalizers}};
      auto status = self->state().Get(kInfraProviderNs, kMachineRequestStatusType, r.id);
      specs::MachineRequestStatusSpec spec;
      if (status.ok() && spec.ParseFromString(status->proto_spec)) {
        item["stage"] = specs::MachineRequestStatusSpec::Stage_Name(spec.stage());
        item["status"] = spec.status();
        item["error"] = spec.error();
        item["uuid"] = spec.id();
      }
      requests.push_back(item);
    }
    nlohmann::json joined = nlohmann::json::array();
    for (const auto& m : self->JoinedMachines()) {
      joined.push_back({{"uuid", m.uuid}, {"machine_request", m.machine_request}, {"provider_id", m.provider_id}});
    }
    nlohmann::json body = {
        {"grpc_endpoint", self->grpc_endpoint()}, {"factory_url", self->factory_url()},
        {"provider_id", self->provider_id()},     {"provider_connected", self->ProviderConnected(self->provider_id())},
        {"machine_requests", requests},           {"joined_machines", joined}};
    res.set_content(body.dump(2) + "\n", "application/json");
  });
  int port = options_.control_port;
  if (port == 0) {
    port = control_->bind_to_any_port(options_.bind_address);
    if (port < 0) return absl::UnavailableError(fmt::format("control endpoint: cannot bind {}", options_.bind_address));
  } else if (!control_->bind_to_port(options_.bind_address, port)) {
    return absl::UnavailableError(
        fmt::format("control endpoint: cannot bind {}:{}: is the port in use?", options_.bind_address, port));
  }
  control_port_ = port;
  control_thread_ = std::thread([this] { control_->listen_after_bind(); });
  // httplib's stop() is a no-op until the listen loop runs; wait for it so an early shutdown cannot hang.
  return WaitUntilListening(*control_, "control endpoint");
}

}  // namespace omni_proxmox::sim::omni
