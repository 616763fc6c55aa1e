// SPDX-License-Identifier: Apache-2.0
// Storage endpoints: GET /storage (the datacenter storage config) and, per node, GET /nodes/{node}/storage,
// .../storage/{storage}/status, .../content, .../content/{volume} (GET and DELETE), POST .../download-url and
// POST .../upload, with PVE's space accounting (shared storages count once, local ones per node).

#include <algorithm>
#include <cctype>
#include <regex>

#include "fmt/format.h"
#include <openssl/evp.h>

#include "sim/pve/internal/impl.h"
#include "sim/pve/internal/text.h"

namespace omni_proxmox::sim::pve {
namespace {

using std::chrono::seconds;

std::string VolumePath(const StorageState& storage, const Volume& volume) {
  std::string name = volume.volid.substr(volume.volid.find(':') + 1);
  if (volume.content == "iso") return storage.path + "/template/iso/" + name.substr(4);
  if (volume.content == "vztmpl") return storage.path + "/template/cache/" + name.substr(7);
  if (volume.content == "import") return storage.path + "/import/" + name.substr(7);
  if (storage.FileBased()) return storage.path + "/images/" + name;
  return "/dev/" + storage.id + "/" + name;
}

std::string NormalizeFilename(const std::string& filename) {
  std::string name =
      filename.substr(filename.find_last_of("/\\") == std::string::npos ? 0 : filename.find_last_of("/\\") + 1);
  for (auto& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') c = '_';
  }
  return name;
}

bool ExtensionAllowed(const std::string& content, const std::string& filename) {
  static const std::regex iso_re(R"(.+\.(iso|img)$)", std::regex::icase);
  static const std::regex vztmpl_re(R"(.+\.tar\.(gz|xz|zst|bz2)$)", std::regex::icase);
  static const std::regex import_re(R"(.+\.(ova|ovf|qcow2|raw|vmdk|img)$)", std::regex::icase);
  if (content == "iso") return std::regex_match(filename, iso_re);
  if (content == "vztmpl") return std::regex_match(filename, vztmpl_re);
  return std::regex_match(filename, import_re);
}

std::string ContentDir(const std::string& content) { return content == "vztmpl" ? "vztmpl" : content; }

}  // namespace

void Simulator::Impl::AddStorageRoutes(Routes& routes) {
  routes["GET /storage"] = &Impl::GetStorageConfig;
  routes["GET /nodes/{node}/storage"] = &Impl::GetNodeStorage;
  routes["GET /nodes/{node}/storage/{storage}/status"] = &Impl::GetStorageStatus;
  routes["GET /nodes/{node}/storage/{storage}/content"] = &Impl::GetContent;
  routes["GET /nodes/{node}/storage/{storage}/content/{volume}"] = &Impl::GetVolume;
  routes["DELETE /nodes/{node}/storage/{storage}/content/{volume}"] = &Impl::DeleteVolume;
  routes["POST /nodes/{node}/storage/{storage}/download-url"] = &Impl::PostDownloadUrl;
  routes["POST /nodes/{node}/storage/{storage}/upload"] = &Impl::PostUpload;
}

std::int64_t Simulator::Impl::UsedBytesLocked(const StorageState& storage, const std::string& node) const {
  std::string scope = ScopeOf(storage, node);
  std::int64_t used = 0;
  for (const auto& volume : volumes_) {
    if (volume.storage == storage.id && volume.scope == scope) used += volume.size;
  }
  return used;
}

Volume* Simulator::Impl::FindVolumeLocked(const std::string& volid, const std::string& node) {
  std::size_t colon = volid.find(':');
  if (colon == std::string::npos) return nullptr;
  auto storage = storages_.find(volid.substr(0, colon));
  if (storage == storages_.end()) return nullptr;
  std::string scope = ScopeOf(storage->second, node);
  for (auto& volume : volumes_) {
    if (volume.volid == volid && volume.scope == scope) return &volume;
  }
  return nullptr;
}

std::optional<Reply> Simulator::Impl::StorageOnNode(const std::string& storage_id, const std::string& node,
                                                    const StorageState** out) const {
  auto it = storages_.find(storage_id);
  if (it == storages_.end()) return Error(500, fmt::format("storage '{}' does not exist", storage_id));
  if (it->second.disabled) return Error(500, fmt::format("storage '{}' is disabled", storage_id));
  if (!it->second.EnabledOn(node)) {
    return Error(500, fmt::format("storage '{}' is not available on node '{}'", storage_id, node));
  }
  *out = &it->second;
  return std::nullopt;
}

Json Simulator::Impl::StorageStatus(const StorageState& storage, const std::string& node) const {
  bool enabled = storage.EnabledOn(node);
  Json entry = {{"storage", storage.id},
                {"type", storage.type},
                {"content", Join(storage.content, ",")},
                {"shared", storage.shared ? 1 : 0},
                {"enabled", enabled ? 1 : 0},
                {"active", enabled ? 1 : 0},
                {"total", 0},
                {"used", 0},
                {"avail", 0}};
  if (enabled) {
    std::int64_t used = UsedBytesLocked(storage, node);
    entry["total"] = storage.size_bytes;
    entry["used"] = used;
    entry["avail"] = std::max<std::int64_t>(0, storage.size_bytes - used);
    if (storage.size_bytes > 0) {
      entry["used_fraction"] = static_cast<double>(used) / static_cast<double>(storage.size_bytes);
    }
  }
  return entry;
}

Reply Simulator::Impl::GetStorageConfig(Call& call) {
  Json list = Json::array();
  std::vector<std::string> order = storage_order_;
  std::shuffle(order.begin(), order.end(), call.rng);
  for (const auto& id : order) {
    const auto& storage = storages_.at(id);
    if (call.Has("type") && storage.type != call.Get("type")) continue;
    if (!HasPriv(call.auth, "/storage/" + id, "Datastore.Audit") &&
        !HasPriv(call.auth, "/storage/" + id, "Datastore.AllocateSpace")) {
      continue;
    }
    Json entry = {
        {"storage", id}, {"type", storage.type}, {"content", Join(storage.content, ",")}, {"digest", storage.digest}};
    if (!storage.path.empty()) entry["path"] = storage.path;
    if (storage.type == "lvmthin") {
      entry["vgname"] = "pve";
      entry["thinpool"] = "data";
    } else if (storage.type == "lvm") {
      entry["vgname"] = storage.id;
    }
    if (storage.type == "nfs") {
      entry["server"] = "10.0.0.100";
      entry["export"] = "/export/" + id;
    }
    if (storage.shared) entry["shared"] = 1;
    if (storage.disabled) entry["disable"] = 1;
    if (!storage.nodes.empty()) entry["nodes"] = Join({storage.nodes.begin(), storage.nodes.end()}, ",");
    list.push_back(entry);
  }
  return Ok(list);
}

Reply Simulator::Impl::GetNodeStorage(Call& call) {
  const std::string node = call.Get("node");
  if (call.Has("storage") && storages_.count(call.Get("storage")) == 0) {
    return ParamError1("storage", "No such storage.");
  }
  Json list = Json::array();
  std::vector<std::string> order = storage_order_;
  std::shuffle(order.begin(), order.end(), call.rng);
  for (const auto& id : order) {
    const auto& storage = storages_.at(id);
    if (call.Has("storage") && id != call.Get("storage")) continue;
    if (!HasPriv(call.auth, "/storage/" + id, "Datastore.Audit") &&
        !HasPriv(call.auth, "/storage/" + id, "Datastore.AllocateSpace")) {
      continue;
    }
    bool enabled = storage.EnabledOn(node);
    if (call.Has("content")) {
      bool all = true;
      for (const auto& kind : SplitAny(call.Get("content"), ",;")) all = all && storage.HasContent(kind);
      if (!all || !enabled) continue;
    }
    if (call.Has("enabled") && call.Flag("enabled") && !enabled) continue;
    if (call.Has("target") && !storage.EnabledOn(call.Get("target"))) continue;
    Json entry = StorageStatus(storage, node);
    if (call.Flag("format")) {
      entry["format"] =
          Json::array({storage.FileBased() ? Json({{"raw", 1}, {"qcow2", 1}, {"vmdk", 1}}) : Json({{"raw", 1}}),
                       storage.FileBased() ? "qcow2" : "raw"});
      entry["select_existing"] = storage.FileBased() ? 0 : 1;
    }
    list.push_back(entry);
  }
  return Ok(list);
}

Reply Simulator::Impl::GetStorageStatus(Call& call) {
  auto it = storages_.find(call.Get("storage"));
  if (it == storages_.end()) return ParamError1("storage", "No such storage.");
  Json entry = StorageStatus(it->second, call.Get("node"));
  entry.erase("storage");
  entry.erase("used_fraction");
  return Ok(entry);
}

Reply Simulator::Impl::GetContent(Call& call) {
  const std::string node = call.Get("node");
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(call.Get("storage"), node, &storage)) return *failure;
  std::string scope = ScopeOf(*storage, node);
  std::vector<const Volume*> found;
  for (const auto& volume : volumes_) {
    if (volume.storage != storage->id || volume.scope != scope) continue;
    if (call.Has("content") && volume.content != call.Get("content")) continue;
    if (call.Has("vmid") && volume.vmid != call.Int("vmid")) continue;
    found.push_back(&volume);
  }
  std::sort(found.begin(), found.end(),
            [](const Volume* a, const Volume* b) { return Lower(a->volid) < Lower(b->volid); });
  Json list = Json::array();
  for (const auto* volume : found) {
    Json entry = {{"volid", volume->volid},
                  {"content", volume->content},
                  {"format", volume->format},
                  {"size", volume->size},
                  {"ctime", volume->ctime}};
    if (volume->vmid != 0) {
      entry["vmid"] = volume->vmid;
      entry["used"] = volume->content == "images" && storage->thin ? 0 : volume->size;
    }
    list.push_back(entry);
  }
  return Ok(list);
}

Reply Simulator::Impl::GetVolume(Call& call) {
  const std::string node = call.Get("node");
  std::string storage_id = call.Get("storage");
  std::string volume = call.Get("volume");
  std::string volid = volume;
  if (std::size_t colon = volume.find(':'); colon != std::string::npos) {
    if (volume.substr(0, colon) != storage_id) {
      return ParamError1("volume",
                         fmt::format("storage ID mismatch ({} != {})\n", volume.substr(0, colon), storage_id));
    }
  } else {
    volid = storage_id + ":" + volume;
  }
  if (!HasPriv(call.auth, "/storage/" + storage_id, "Datastore.Audit") &&
      !HasPriv(call.auth, "/storage/" + storage_id, "Datastore.AllocateSpace")) {
    return Error(
        403, fmt::format("Permission check failed (/storage/{}, Datastore.Audit|Datastore.AllocateSpace)", storage_id));
  }
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(storage_id, node, &storage)) return *failure;
  Volume* found = FindVolumeLocked(volid, node);
  if (found == nullptr) return Error(500, fmt::format("volume_size_info on '{}' failed - no format", volid));
  return Ok({{"path", VolumePath(*storage, *found)},
             {"size", found->size},
             {"used", found->size},
             {"format", found->format}});
}

Reply Simulator::Impl::DeleteVolume(Call& call) {
  const std::string node = call.Get("node");
  std::string storage_id = call.Get("storage");
  std::string volid = call.Get("volume");
  if (volid.find(':') == std::string::npos) volid = storage_id + ":" + volid;
  if (!HasPriv(call.auth, "/storage/" + storage_id, "Datastore.Allocate")) {
    return Error(403, fmt::format("Permission check failed (/storage/{}, Datastore.Allocate)", storage_id));
  }
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(storage_id, node, &storage)) return *failure;
  Volume* volume = FindVolumeLocked(volid, node);
  int owner = volume != nullptr ? volume->vmid : 0;
  std::string scope = ScopeOf(*storage, node);
  Task& task = NewTaskLocked(node, "imgdel", owner != 0 ? fmt::format("{}@{}", owner, storage_id) : storage_id,
                             call.auth, DurationOf("imgdel"));
  task.finish = [this, volid, scope](Task& t) -> std::string {
    auto it = std::find_if(volumes_.begin(), volumes_.end(),
                           [&](const Volume& v) { return v.volid == volid && v.scope == scope; });
    if (it == volumes_.end()) return fmt::format("volume '{}' does not exist", volid);
    t.log.push_back(fmt::format("Removed volume '{}'", volid));
    volumes_.erase(it);
    return "";
  };
  if (call.Has("delay") && DurationOf("imgdel") <= seconds(call.Int("delay"))) {
    task.endtime = Now();
    FinishTaskLocked(task);
    if (task.exitstatus == "OK") return Ok(nullptr);
    return Error(500, task.exitstatus);
  }
  return Ok(task.upid);
}

Reply Simulator::Impl::PostDownloadUrl(Call& call) {
  const std::string node = call.Get("node");
  const std::string content = call.Get("content");
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(call.Get("storage"), node, &storage)) return *failure;
  if (!storage->FileBased()) {
    return Error(500, fmt::format("can't upload to storage type '{}', not a file based storage!", storage->type));
  }
  if (!storage->HasContent(content)) {
    return Error(500, fmt::format("storage '{}' is not configured for content-type '{}'", storage->id, content));
  }
  std::string filename = NormalizeFilename(call.Get("filename"));
  if (!ExtensionAllowed(content, filename)) return ParamError1("filename", "wrong file extension");
  std::string url = call.Get("url");
  std::string volid = fmt::format("{}:{}/{}", storage->id, ContentDir(content), filename);
  std::string scope = ScopeOf(*storage, node);
  std::string storage_id = storage->id;
  std::string algorithm = call.Get("checksum-algorithm");
  std::string checksum = Lower(call.Get("checksum"));
  Volume probe;
  probe.volid = volid;
  probe.content = content;
  std::string dest = VolumePath(*storage, probe);
  Task& task = NewTaskLocked(node, "download", filename, call.auth, DurationOf("download"));
  // The existence check happens when the task starts.
  if (Volume* existing = FindVolumeLocked(volid, node); existing != nullptr) {
    if (checksum.empty()) {
      task.forced_error = fmt::format("refusing to override existing file '{}'", dest);
    } else {
      auto known = existing->checksums.find(algorithm);
      if (known == existing->checksums.end() || known->second == checksum) {
        existing->checksums[algorithm] = checksum;
        task.log.push_back("OK, got correct file already, no need to download");
        task.endtime = Now();
        FinishTaskLocked(task);
        return Ok(task.upid);
      }
      task.forced_error = fmt::format("checksum mismatch: got '{}' != expect '{}', aborting", known->second, checksum);
    }
  }
  DownloadSpec spec;
  if (auto it = downloads_.find(url); it != downloads_.end()) spec = it->second;
  task.log.push_back(fmt::format("downloading {} to {}", url, dest));
  task.finish = [this, spec, url, dest, volid, scope, storage_id, content, algorithm, checksum,
                 node](Task& t) -> std::string {
    if (!spec.fail.empty()) return "download failed: " + spec.fail;
    const auto& storage = storages_.at(storage_id);
    std::int64_t free = storage.size_bytes - UsedBytesLocked(storage, node);
    if (spec.size > free) return fmt::format("download failed: {}: No space left on device", dest + ".tmp_dwnl");
    t.log.push_back(fmt::format("Length: {} [application/x-iso9660-image]", spec.size));
    Volume volume;
    volume.volid = volid;
    volume.storage = storage_id;
    volume.scope = scope;
    volume.content = content;
    volume.format = content == "iso" ? "iso" : content == "vztmpl" ? "tgz" : "raw";
    volume.size = spec.size;
    volume.ctime = NowUnix();
    volume.checksums = spec.checksums;
    if (!checksum.empty()) {
      auto known = spec.checksums.find(algorithm);
      if (known != spec.checksums.end() && known->second != checksum) {
        return fmt::format("checksum mismatch: got '{}' != expect '{}', aborting", known->second, checksum);
      }
      t.log.push_back(fmt::format("calculating checksum of '{}'...", dest + ".tmp_dwnl"));
      t.log.push_back(fmt::format("checksum verified"));
      volume.checksums[algorithm] = checksum;
    }
    // Two downloads of one name both rename into place: the later one wins.
    volumes_.erase(std::remove_if(volumes_.begin(), volumes_.end(),
                                  [&](const Volume& v) { return v.volid == volid && v.scope == scope; }),
                   volumes_.end());
    volumes_.push_back(std::move(volume));
    t.log.push_back(fmt::format("download of '{}' to '{}' finished", url, dest));
    return "";
  };
  return Ok(task.upid);
}

Reply Simulator::Impl::PostUpload(Call& call) {
  const std::string node = call.Get("node");
  const std::string content = call.Get("content");
  const StorageState* storage = nullptr;
  if (auto failure = StorageOnNode(call.Get("storage"), node, &storage)) return *failure;
  if (!storage->HasContent(content)) {
    return Error(500, fmt::format("storage '{}' does not support '{}' content", storage->id, content));
  }
  if (!storage->FileBased()) {
    return Error(500, fmt::format("can't upload to storage type '{}', not a file based storage!", storage->type));
  }
  std::string filename = NormalizeFilename(call.upload_filename);
  if (!ExtensionAllowed(content, filename)) return ParamError1("filename", "wrong file extension");
  std::string volid = fmt::format("{}:{}/{}", storage->id, ContentDir(content), filename);
  std::string scope = ScopeOf(*storage, node);
  std::string storage_id = storage->id;
  std::string algorithm = call.Get("checksum-algorithm");
  std::string checksum = Lower(call.Get("checksum"));
  Task& task = NewTaskLocked(node, "imgcopy", "", call.auth, DurationOf("imgcopy"));
  std::string data = std::move(call.upload_data);
  task.log.push_back(fmt::format("starting file import from: /var/tmp/pveupload-{}", DigestHex(EVP_md5(), volid)));
  task.finish = [this, volid, scope, storage_id, content, algorithm, checksum, data = std::move(data),
                 node](Task& t) -> std::string {
    Volume volume;
    volume.volid = volid;
    volume.storage = storage_id;
    volume.scope = scope;
    volume.content = content;
    volume.format = content == "iso" ? "iso" : "raw";
    volume.size = static_cast<std::int64_t>(data.size());
    volume.ctime = NowUnix();
    volume.data = data;
    for (const auto& [name, md] : std::vector<std::pair<std::string, const EVP_MD*>>{
             {"md5", EVP_md5()}, {"sha1", EVP_sha1()}, {"sha256", EVP_sha256()}, {"sha512", EVP_sha512()}}) {
      volume.checksums[name] = DigestHex(md, data);
    }
    if (!checksum.empty()) {
      auto known = volume.checksums.find(algorithm);
      if (known != volume.checksums.end() && known->second != checksum) {
        return fmt::format("checksum mismatch: got '{}' != expect '{}'", known->second, checksum);
      }
    }
    const auto& storage = storages_.at(storage_id);
    // The upload overwrites an existing file silently.
    volumes_.erase(std::remove_if(volumes_.begin(), volumes_.end(),
                                  [&](const Volume& v) { return v.volid == volid && v.scope == scope; }),
                   volumes_.end());
    if (volume.size > storage.size_bytes - UsedBytesLocked(storage, node))
      return "import failed: No space left on device";
    t.log.push_back(fmt::format("target node: {}", node));
    t.log.push_back(fmt::format("file size is: {}", volume.size));
    volumes_.push_back(std::move(volume));
    t.log.push_back("finished file import successfully");
    return "";
  };
  return Ok(task.upid);
}

}  // namespace omni_proxmox::sim::pve
