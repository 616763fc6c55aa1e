// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/factory.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include "util/status_macros.h"

namespace omni_proxmox::sim::omni {
namespace {

absl::Status CheckKeys(const YAML::Node& node, const std::string& path, const std::set<std::string>& allowed) {
  if (!node.IsMap()) return absl::InvalidArgumentError(fmt::format("{}: expected a mapping", path));
  for (const auto& entry : node) {
    const auto key = entry.first.as<std::string>();
    if (allowed.count(key) == 0) {
      return absl::InvalidArgumentError(fmt::format("{}: unknown field '{}'", path.empty() ? "schematic" : path, key));
    }
  }
  return absl::OkStatus();
}

// "<platform>-<arch>[-secureboot].<ext>" for images; PXE scripts are not served here.
bool KnownImageFile(const std::string& file) {
  static const std::set<std::string> kExtensions = {"iso", "raw.xz", "raw.zst", "qcow2", "tar.gz",
                                                    "vhd", "vmdk",   "raw",     "ova"};
  auto dash = file.find('-');
  auto dot = file.find('.');
  if (dash == std::string::npos || dot == std::string::npos || dash > dot || dash == 0) return false;
  return kExtensions.count(file.substr(dot + 1)) != 0;
}

}  // namespace

absl::Status WaitUntilListening(const httplib::Server& server, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!server.is_running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::UnavailableError(fmt::format("{}: the HTTP server did not start listening", what));
    }
    std::this_thread::yield();
  }
  return absl::OkStatus();
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", digest[i]);
  return out;
}

absl::Status ValidateSchematic(const std::string& yaml) {
  try {
    YAML::Node root = YAML::Load(yaml);
    if (root.IsNull()) return absl::OkStatus();
    if (auto status = CheckKeys(root, "", {"overlay", "customization"}); !status.ok()) return status;
    if (root["overlay"]) {
      if (auto status = CheckKeys(root["overlay"], "overlay", {"image", "name", "options"}); !status.ok()) {
        return status;
      }
    }
    if (const auto custom = root["customization"]) {
      if (auto status = CheckKeys(custom, "customization",
                                  {"extraKernelArgs", "meta", "systemExtensions", "embeddedMachineConfiguration",
                                   "bootloader", "secureboot", "diskImage"});
          !status.ok()) {
        return status;
      }
      if (custom["systemExtensions"]) {
        if (auto status =
                CheckKeys(custom["systemExtensions"], "customization.systemExtensions", {"officialExtensions"});
            !status.ok()) {
          return status;
        }
      }
      if (custom["extraKernelArgs"] && !custom["extraKernelArgs"].IsSequence()) {
        return absl::InvalidArgumentError("customization.extraKernelArgs: expected a list of strings");
      }
      if (const auto meta = custom["meta"]) {
        if (!meta.IsSequence()) return absl::InvalidArgumentError("customization.meta: expected a list");
        for (const auto& item : meta) {
          if (auto status = CheckKeys(item, "customization.meta[]", {"key", "value"}); !status.ok()) return status;
        }
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("schematic is not YAML: {}", e.what()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FakeImageFactory>> FakeImageFactory::Start(const std::string& bind_address, int port) {
  std::unique_ptr<FakeImageFactory> factory(new FakeImageFactory());
  factory->host_ = bind_address;
  factory->server_ = std::make_unique<httplib::Server>();
  auto* self = factory.get();
  auto& server = *factory->server_;

  server.Post("/schematics", [self](const httplib::Request& req, httplib::Response& res) {
    auto id = self->PutSchematic(req.body);
    if (!id.ok()) {
      res.status = 400;
      res.set_content(std::string(id.status().message()), "text/plain");
      return;
    }
    res.status = 201;
    res.set_content(nlohmann::json{{"id", *id}}.dump() + "\n", "application/json");
  });
  server.Get(R"(/schematics/([0-9a-f]{64}))", [self](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(self->mutex_);
    auto it = self->schematics_.find(req.matches[1]);
    if (it == self->schematics_.end()) {
      res.status = 404;
      res.set_content("schematic not found", "text/plain");
      return;
    }
    res.set_content(it->second, "application/yaml");
  });
  auto image = [self](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    const std::string version = req.matches[2];
    const std::string file = req.matches[3];
    if (!self->HasSchematic(id)) {
      res.status = 404;
      res.set_content(fmt::format("schematic {} not found: POST it to /schematics first", id), "text/plain");
      return;
    }
    if (!KnownImageFile(file)) {
      res.status = 404;
      res.set_content(fmt::format("unknown image file '{}': expected <platform>-<arch>[-secureboot].<ext>", file),
                      "text/plain");
      return;
    }
    if (req.method == "GET") ++self->downloads_;
    res.set_content(ImageBody(id, version, file), "application/octet-stream");
  };
  const char* kImagePath = R"(/image/([0-9a-f]{64})/(v?[0-9]+\.[0-9]+\.[0-9]+[^/]*)/([^/]+))";
  server.Get(kImagePath, image);

  UseExclusivePort(server);
  if (port == 0) {
    port = server.bind_to_any_port(bind_address);
    if (port < 0) return absl::UnavailableError(fmt::format("image factory: cannot bind {}", bind_address));
  } else if (!server.bind_to_port(bind_address, port)) {
    return absl::UnavailableError(
        fmt::format("image factory: cannot listen on {}:{}: address already in use, or not an address of this host",
                    bind_address, port));
  }
  factory->port_ = port;
  factory->thread_ = std::thread([self] { self->server_->listen_after_bind(); });
  // httplib's stop() is a no-op until the listen loop runs; wait for it so an early shutdown cannot hang.
  OP_RETURN_IF_ERROR(WaitUntilListening(server, "image factory"));
  return factory;
}

void UseExclusivePort(httplib::Server& server) {
  server.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
}

std::vector<std::string> FakeImageFactory::Schematics() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  for (const auto& [id, yaml] : schematics_) out.push_back(yaml);
  return out;
}

FakeImageFactory::~FakeImageFactory() { Stop(); }

void FakeImageFactory::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string FakeImageFactory::url() const { return fmt::format("http://{}:{}", host_, port_); }

absl::StatusOr<std::string> FakeImageFactory::PutSchematic(const std::string& yaml) {
  if (auto status = ValidateSchematic(yaml); !status.ok()) {
    return absl::InvalidArgumentError(fmt::format("invalid schematic: {}", std::string(status.message())));
  }
  std::string id = Sha256Hex(yaml);
  std::lock_guard lock(mutex_);
  schematics_[id] = yaml;
  return id;
}

bool FakeImageFactory::HasSchematic(const std::string& id) const {
  std::lock_guard lock(mutex_);
  return schematics_.count(id) != 0;
}

std::string FakeImageFactory::ImageBody(const std::string& id, const std::string& version, const std::string& file) {
  return fmt::format("fake talos image: schematic={} version={} file={}\n", id, version, file);
}

}  // namespace omni_proxmox::sim::omni
