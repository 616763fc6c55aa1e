// SPDX-License-Identifier: Apache-2.0
#pragma once

// Helpers for driving the PVE simulator over real HTTP in tests: a thin cpp-httplib wrapper
// (deliberately not the product client), task polling on a ManualClock, and a cidata ISO builder.

#include <memory>
#include <string>

#include "nlohmann/json.hpp"

#include "httplib.h"
#include "sim/pve/simulator.h"
#include "util/clock.h"

namespace omni_proxmox::sim::pve::testing {

struct HttpResult {
  int status = 0;  // 0 when the connection failed or was dropped
  std::string reason;
  std::string body;
  std::map<std::string, std::string> headers;
  nlohmann::json json;  // parsed body, null when empty or not JSON

  // A copy, so that `for (auto& x : client.Get(...).data())` does not dangle.
  nlohmann::json data() const { return json["data"]; }
};

class SimClient {
 public:
  SimClient(const Simulator& sim, std::string authorization);
  // `path` is below /api2/json unless it starts with "/_sim" or "/api2".
  HttpResult Get(const std::string& path, const httplib::Headers& extra = {});
  HttpResult Delete(const std::string& path, const httplib::Headers& extra = {});
  HttpResult PostJson(const std::string& path, const nlohmann::json& body, const httplib::Headers& extra = {});
  HttpResult PutJson(const std::string& path, const nlohmann::json& body, const httplib::Headers& extra = {});
  HttpResult PostForm(const std::string& path, const std::string& body, const httplib::Headers& extra = {});
  HttpResult Raw(const std::string& method, const std::string& path, const std::string& body,
                 const std::string& content_type, const httplib::Headers& extra = {});
  void set_authorization(std::string authorization) { authorization_ = std::move(authorization); }

 private:
  std::string Full(const std::string& path) const;
  std::unique_ptr<httplib::Client> client_;
  std::string authorization_;
};

std::string TokenHeader(const Simulator& sim);

// Polls the task on its node, advancing `clock` one simulated second between polls, until it
// stops (deadline: 600 simulated seconds). Returns the exitstatus, or "timeout".
std::string WaitTask(SimClient& client, util::ManualClock& clock, const std::string& upid);

// The node field of a UPID.
std::string UpidNode(const std::string& upid);

// A NoCloud ISO labelled "cidata" with Rock Ridge names, built with libisofs.
std::string MakeCidataIso(const std::string& user_data, const std::string& meta_data);

// A multipart/form-data body; the file part is named `file_field`.
std::string MultipartBody(const std::string& boundary, const std::string& content, const std::string& file_field,
                          const std::string& filename, const std::string& data);

}  // namespace omni_proxmox::sim::pve::testing
