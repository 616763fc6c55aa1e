// SPDX-License-Identifier: Apache-2.0
#pragma once

// A fake Talos Image Factory over plain HTTP (cpp-httplib), answering the routes a provider uses
// (siderolabs/image-factory internal/frontend/http): POST /schematics -> 201 {"id": sha256(body)},
// GET /schematics/<id>, and GET/HEAD /image/<id>/<version>/<file> -> a small file.
// Thread-safe; the server runs on its own thread until Stop() or destruction.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace omni_proxmox::sim::omni {

// Returns once `server`'s listen loop runs (stop() before that would be lost), or Unavailable after 10 s.
absl::Status WaitUntilListening(const httplib::Server& server, const char* what);

// httplib sets SO_REUSEPORT by default, which lets a second server bind the same port and split
// the connections with the first; this keeps SO_REUSEADDR only, so a busy port is refused.
void UseExclusivePort(httplib::Server& server);

// Lowercase hex SHA-256.
std::string Sha256Hex(const std::string& data);

// Checks a schematic YAML the way the factory's strict unmarshal does: only known fields.
absl::Status ValidateSchematic(const std::string& yaml);

class FakeImageFactory {
 public:
  // Binds `bind_address:port` (0 = a free port) and starts serving.
  static absl::StatusOr<std::unique_ptr<FakeImageFactory>> Start(const std::string& bind_address, int port);
  ~FakeImageFactory();

  std::string url() const;  // "http://host:port"
  int port() const { return port_; }
  // Stores a schematic as POST /schematics does; returns its ID.
  absl::StatusOr<std::string> PutSchematic(const std::string& yaml);
  bool HasSchematic(const std::string& id) const;
  // Every stored schematic's YAML (for the stand-in's --state-dir snapshot).
  std::vector<std::string> Schematics() const;
  // How many image downloads (GET) were served, for tests.
  int downloads() const { return downloads_; }
  // The body served for an image path.
  static std::string ImageBody(const std::string& id, const std::string& version, const std::string& file);

 private:
  FakeImageFactory() = default;
  void Stop();

  std::string host_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::map<std::string, std::string> schematics_;
  std::atomic<int> downloads_{0};
};

}  // namespace omni_proxmox::sim::omni
