// SPDX-License-Identifier: Apache-2.0
#include "sim_test_util.h"

#include <cstdlib>
#include <cstring>

// libisofs declares struct burn_source itself only when libburn is not used.
#define LIBISOFS_WITHOUT_LIBBURN 1
#include "fmt/format.h"
#include <libisofs/libisofs.h>

namespace omni_proxmox::sim::pve::testing {
namespace {

HttpResult Convert(const httplib::Result& result) {
  HttpResult out;
  if (!result) return out;
  out.status = result->status;
  out.reason = result->reason;
  out.body = result->body;
  for (const auto& [key, value] : result->headers) out.headers[key] = value;
  if (!out.body.empty()) out.json = nlohmann::json::parse(out.body, nullptr, false);
  if (out.json.is_discarded()) out.json = nullptr;
  return out;
}

}  // namespace

SimClient::SimClient(const Simulator& sim, std::string authorization) : authorization_(std::move(authorization)) {
  client_ = std::make_unique<httplib::Client>(sim.base_url());
  if (sim.base_url().rfind("https", 0) == 0) {
    client_->enable_server_certificate_verification(false);
  }
  client_->set_read_timeout(30, 0);
  client_->set_keep_alive(true);
}

std::string SimClient::Full(const std::string& path) const {
  if (path.rfind("/_sim", 0) == 0 || path.rfind("/api2", 0) == 0) return path;
  return "/api2/json" + path;
}

HttpResult SimClient::Get(const std::string& path, const httplib::Headers& extra) {
  return Raw("GET", path, "", "", extra);
}
HttpResult SimClient::Delete(const std::string& path, const httplib::Headers& extra) {
  return Raw("DELETE", path, "", "", extra);
}
HttpResult SimClient::PostJson(const std::string& path, const nlohmann::json& body, const httplib::Headers& extra) {
  return Raw("POST", path, body.dump(), "application/json", extra);
}
HttpResult SimClient::PutJson(const std::string& path, const nlohmann::json& body, const httplib::Headers& extra) {
  return Raw("PUT", path, body.dump(), "application/json", extra);
}
HttpResult SimClient::PostForm(const std::string& path, const std::string& body, const httplib::Headers& extra) {
  return Raw("POST", path, body, "application/x-www-form-urlencoded", extra);
}

HttpResult SimClient::Raw(const std::string& method, const std::string& path, const std::string& body,
                          const std::string& content_type, const httplib::Headers& extra) {
  httplib::Request request;
  request.method = method;
  request.path = Full(path);
  request.headers = extra;
  if (!authorization_.empty() && request.headers.count("Authorization") == 0) {
    request.headers.emplace("Authorization", authorization_);
  }
  if (!body.empty() || method == "POST" || method == "PUT") {
    request.body = body;
    if (!content_type.empty()) request.headers.emplace("Content-Type", content_type);
  }
  return Convert(client_->send(request));
}

std::string TokenHeader(const Simulator& sim) {
  return fmt::format("PVEAPIToken={}={}", sim.default_token_id(), sim.default_token_secret());
}

std::string UpidNode(const std::string& upid) {
  std::size_t start = upid.find(':') + 1;
  return upid.substr(start, upid.find(':', start) - start);
}

std::string WaitTask(SimClient& client, util::ManualClock& clock, const std::string& upid) {
  std::string node = UpidNode(upid);
  for (int i = 0; i < 600; ++i) {
    auto result = client.Get(fmt::format("/nodes/{}/tasks/{}/status", node, upid));
    if (result.status != 200) return fmt::format("http {} {}", result.status, result.reason);
    if (result.data()["status"] == "stopped") return result.data()["exitstatus"].get<std::string>();
    clock.Advance(std::chrono::seconds(1));
  }
  return "timeout";
}

std::string MakeCidataIso(const std::string& user_data, const std::string& meta_data) {
  iso_init();
  IsoImage* image = nullptr;
  iso_image_new("cidata", &image);
  iso_image_set_volume_id(image, "cidata");
  for (const auto& [name, content] : {std::pair{"user-data", user_data}, std::pair{"meta-data", meta_data}}) {
    auto* buffer = static_cast<unsigned char*>(std::malloc(content.size() + 1));
    std::memcpy(buffer, content.data(), content.size());
    IsoStream* stream = nullptr;
    iso_memory_stream_new(buffer, content.size(), &stream);
    IsoFile* file = nullptr;
    iso_tree_add_new_file(iso_image_get_root(image), name, stream, &file);
  }
  IsoWriteOpts* opts = nullptr;
  iso_write_opts_new(&opts, 0);
  iso_write_opts_set_rockridge(opts, 1);
  burn_source* source = nullptr;
  iso_image_create_burn_source(image, opts, &source);
  std::string out;
  unsigned char sector[2048];
  while (true) {
    int n = source->read_xt != nullptr ? source->read_xt(source, sector, sizeof(sector))
                                       : source->read(source, sector, sizeof(sector));
    if (n <= 0) break;
    out.append(reinterpret_cast<char*>(sector), static_cast<std::size_t>(n));
  }
  source->free_data(source);
  std::free(source);
  iso_write_opts_free(opts);
  iso_image_unref(image);
  iso_finish();
  return out;
}

std::string MultipartBody(const std::string& boundary, const std::string& content, const std::string& file_field,
                          const std::string& filename, const std::string& data) {
  std::string body;
  body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n" + content + "\r\n";
  body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + file_field + "\"; filename=\"" + filename +
          "\"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + "\r\n";
  body += "--" + boundary + "--\r\n";
  return body;
}

}  // namespace omni_proxmox::sim::pve::testing
