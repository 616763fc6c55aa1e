// SPDX-License-Identifier: Apache-2.0
#include "omni/resource_cache.h"

#include <charconv>
#include <thread>

namespace omni_proxmox::omni {
namespace {

bool Matches(const LabelQuery& query, const std::map<std::string, std::string>& labels) {
  for (const auto& term : query) {
    auto it = labels.find(term.key);
    bool match = false;
    if (term.op == LabelTerm::Op::kExists) {
      match = it != labels.end();
    } else if (term.op == LabelTerm::Op::kEqual) {
      match = it != labels.end() && !term.values.empty() && it->second == term.values.front();
    }
    if (match == term.invert) return false;
  }
  return true;
}

bool Answerable(const LabelQuery& query) {
  for (const auto& term : query) {
    if (term.op != LabelTerm::Op::kExists && term.op != LabelTerm::Op::kEqual) return false;
  }
  return true;
}

// Tombstones kept per kind; far more than the destroys whose replies can be in flight at once.
constexpr std::size_t kMaxTombstones = 4096;

}  // namespace

std::uint64_t VersionNumber(const std::string& version) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(version.data(), version.data() + version.size(), value);
  if (error != std::errc() || end != version.data() + version.size()) return 0;
  return value;
}

ResourceCache::ResourceCache(StateClient& state) : state_(state) {}

ResourceCache::~ResourceCache() { Stop(); }

absl::Status ResourceCache::Watch(const std::string& ns, const std::string& type, LabelQuery labels, Handler handler) {
  const KindKey key{ns, type};
  {
    absl::MutexLock lock(&mutex_);
    kinds_[key].labels = labels;
  }
  WatchRequest request{ns, type, std::nullopt, labels, /*bootstrap_contents=*/true};
  auto watcher = state_.Watch(request, [this, key, handler](const WatchEvent& event) {
    const bool changed = Apply(key, event);
    if (handler) handler(event, !changed);
  });
  if (!watcher.ok()) return watcher.status();
  absl::MutexLock lock(&mutex_);
  kinds_[key].watcher = std::move(*watcher);
  return absl::OkStatus();
}

void ResourceCache::Stop() {
  std::vector<std::unique_ptr<Watcher>> watchers;
  {
    absl::MutexLock lock(&mutex_);
    for (auto& [key, kind] : kinds_) {
      if (kind.watcher) watchers.push_back(std::move(kind.watcher));
    }
  }
  // Outside the lock: a watcher joins its thread, which may be applying an event.
  watchers.clear();
}

void ResourceCache::Bury(KindCache& kind, const Resource& resource) {
  const std::string& id = resource.metadata.id;
  if (kind.destroyed.insert_or_assign(id, VersionNumber(resource.metadata.version)).second) {
    kind.destroyed_order.push_back(id);
  }
  while (kind.destroyed_order.size() > kMaxTombstones) {
    kind.destroyed.erase(kind.destroyed_order.front());
    kind.destroyed_order.pop_front();
  }
}

bool ResourceCache::Apply(const KindKey& key, const WatchEvent& event) {
  if (event.type != EventType::kCreated && event.type != EventType::kUpdated && event.type != EventType::kDestroyed) {
    return true;  // not about one resource: never an echo
  }
  const std::string& id = event.resource.metadata.id;
  absl::MutexLock lock(&mutex_);
  KindCache& kind = kinds_[key];
  auto& by_id = kind.by_id;
  auto it = by_id.find(id);
  if (event.type == EventType::kDestroyed) {
    Bury(kind, event.resource);
    if (it == by_id.end()) return false;  // our own destroy, already removed
    by_id.erase(it);
    return true;
  }
  if (event.type == EventType::kCreated) kind.destroyed.erase(id);  // a new incarnation
  if (it == by_id.end()) {
    by_id.emplace(id, event.resource);
    return true;
  }
  // A held entry is this incarnation (a new one begins after its Destroyed event, or with our own
  // Create): an event no newer than it is our own write's echo, a resync's replay, or older than a
  // reply we stored.
  if (VersionNumber(event.resource.metadata.version) <= VersionNumber(it->second.metadata.version)) return false;
  it->second = event.resource;
  return true;
}

bool ResourceCache::SyncedLocked(const KindCache& kind) const {
  if (!kind.watcher) return false;
  const WatchHealth health = kind.watcher->Health();
  return health.connected && health.bootstrapped;
}

absl::StatusOr<std::optional<Resource>> ResourceCache::Get(const ResourcePointer& pointer) {
  {
    absl::ReaderMutexLock lock(&mutex_);
    auto kind = kinds_.find({pointer.ns, pointer.type});
    if (kind != kinds_.end() && SyncedLocked(kind->second)) {
      auto it = kind->second.by_id.find(pointer.id);
      if (it == kind->second.by_id.end()) return std::nullopt;
      return it->second;
    }
  }
  auto read = state_.Get(pointer);
  absl::MutexLock lock(&mutex_);
  auto kind = kinds_.find({pointer.ns, pointer.type});
  if (read.status().code() == absl::StatusCode::kNotFound) {
    if (kind != kinds_.end()) kind->second.by_id.erase(pointer.id);
    return std::nullopt;
  }
  if (!read.ok()) return read.status();
  // Omni's answer is the truth now; a later stale event cannot undo it (Apply compares versions).
  if (kind != kinds_.end() && Matches(kind->second.labels, read->metadata.labels)) {
    kind->second.by_id.insert_or_assign(pointer.id, *read);
  }
  return std::optional<Resource>(*read);
}

absl::StatusOr<std::vector<Resource>> ResourceCache::List(const ListRequest& request) {
  if (Answerable(request.labels)) {
    absl::ReaderMutexLock lock(&mutex_);
    auto kind = kinds_.find({request.ns, request.type});
    if (kind != kinds_.end() && SyncedLocked(kind->second)) {
      std::vector<Resource> out;
      for (const auto& [id, resource] : kind->second.by_id) {
        if (Matches(request.labels, resource.metadata.labels)) out.push_back(resource);
      }
      return out;
    }
  }
  return state_.List(request);
}

void ResourceCache::Stored(const Resource& written, bool created) {
  absl::MutexLock lock(&mutex_);
  auto kind = kinds_.find({written.metadata.ns, written.metadata.type});
  if (kind == kinds_.end()) return;
  auto& destroyed = kind->second.destroyed;
  if (created) {
    destroyed.erase(written.metadata.id);
  } else if (auto tomb = destroyed.find(written.metadata.id);
             tomb != destroyed.end() && VersionNumber(written.metadata.version) <= tomb->second) {
    return;  // the watch already reported it destroyed
  }
  auto [it, inserted] = kind->second.by_id.try_emplace(written.metadata.id, written);
  if (inserted) return;
  // The watch may already have delivered a later version (Omni's own change right after ours).
  if (created || VersionNumber(written.metadata.version) > VersionNumber(it->second.metadata.version)) {
    it->second = written;
  }
}

void ResourceCache::Removed(const ResourcePointer& pointer) {
  absl::MutexLock lock(&mutex_);
  auto kind = kinds_.find({pointer.ns, pointer.type});
  if (kind != kinds_.end()) kind->second.by_id.erase(pointer.id);
}

bool ResourceCache::Synced() const {
  absl::ReaderMutexLock lock(&mutex_);
  for (const auto& [key, kind] : kinds_) {
    if (!SyncedLocked(kind)) return false;
  }
  return true;
}

bool ResourceCache::WaitForSync(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!Synced()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  return true;
}

std::size_t ResourceCache::Size() const {
  absl::ReaderMutexLock lock(&mutex_);
  std::size_t n = 0;
  for (const auto& [key, kind] : kinds_) n += kind.by_id.size();
  return n;
}

}  // namespace omni_proxmox::omni
