// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/state_store.h"

#include <algorithm>
#include <charconv>
#include <utility>

#include <fmt/format.h>
#include <re2/re2.h>

namespace omni_proxmox::sim::omni {
namespace {

std::string Describe(const std::string& ns, const std::string& type, const std::string& id) {
  return fmt::format("resource {}({}@{})", type, ns, id);
}

std::optional<std::int64_t> ParseInt(const std::string& text) {
  std::int64_t value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return value;
}

}  // namespace

const char* PhaseName(Phase phase) { return phase == Phase::kRunning ? "running" : "tearingDown"; }

absl::StatusOr<Phase> ParsePhase(const std::string& text) {
  if (text == "running") return Phase::kRunning;
  if (text == "tearingDown") return Phase::kTearingDown;
  return absl::InvalidArgumentError(
      fmt::format("metadata.phase: unknown phase '{}': use 'running' or 'tearingDown'", text));
}

bool Resource::HasFinalizer(const std::string& finalizer) const {
  return std::find(finalizers.begin(), finalizers.end(), finalizer) != finalizers.end();
}

Resource Resource::Tombstone(std::string ns, std::string type) {
  Resource tombstone;
  tombstone.ns = std::move(ns);
  tombstone.type = std::move(type);
  return tombstone;
}

bool LabelTerm::Matches(const Labels& labels) const {
  auto it = labels.find(key);
  const bool present = it != labels.end();
  bool result = false;
  switch (op) {
    case LabelOp::kExists:
      result = present;
      break;
    case LabelOp::kNotExists:
      result = !present;
      break;
    case LabelOp::kEqual:
      result = present && !values.empty() && it->second == values[0];
      break;
    case LabelOp::kIn:
      result = present && std::find(values.begin(), values.end(), it->second) != values.end();
      break;
    case LabelOp::kLt:
      result = present && !values.empty() && it->second < values[0];
      break;
    case LabelOp::kLte:
      result = present && !values.empty() && it->second <= values[0];
      break;
    case LabelOp::kLtNumeric:
    case LabelOp::kLteNumeric: {
      if (!present || values.empty()) break;
      auto left = ParseInt(it->second);
      auto right = ParseInt(values[0]);
      if (!left || !right) break;
      result = op == LabelOp::kLtNumeric ? *left < *right : *left <= *right;
      break;
    }
  }
  return result != invert;
}

bool LabelQuery::Matches(const Labels& labels) const {
  return std::all_of(terms.begin(), terms.end(), [&](const LabelTerm& term) { return term.Matches(labels); });
}

absl::Status ResourceFilter::Validate() const {
  if (id_regexp.empty()) return absl::OkStatus();
  RE2 re(id_regexp, RE2::Quiet);
  if (!re.ok()) {
    return absl::InvalidArgumentError(fmt::format("id_query.regexp: '{}' does not compile: {}", id_regexp, re.error()));
  }
  return absl::OkStatus();
}

bool ResourceFilter::Matches(const Resource& resource) const {
  if (!id_regexp.empty()) {
    RE2 re(id_regexp, RE2::Quiet);
    if (!re.ok() || !RE2::PartialMatch(resource.id, re)) return false;
  }
  if (label_queries.empty()) return true;
  return std::any_of(label_queries.begin(), label_queries.end(),
                     [&](const LabelQuery& query) { return query.Matches(resource.labels); });
}

// ---------------------------------------------------------------------------------------------
// Watcher

Watcher::Watcher(StateStore& store, std::string ns, std::string type, WatchOptions options)
    : store_(store), ns_(std::move(ns)), type_(std::move(type)), options_(std::move(options)) {}

Watcher::~Watcher() = default;

void Watcher::Cancel() {
  cancelled_ = true;
  store_.WakeAll();
}

bool Watcher::cancelled() const { return cancelled_; }

std::vector<Event> Watcher::Next(std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::unique_lock lock(store_.mutex_);
  for (;;) {
    if (cancelled_) return {};
    if (!ready_.empty()) {
      auto batch = std::move(ready_.front());
      ready_.pop_front();
      return batch;
    }
    if (overrun_) return {};
    const auto* collection = store_.FindCollection(ns_, type_);
    const std::int64_t write_pos = collection != nullptr ? collection->write_pos : 0;
    if (collection != nullptr && pos_ < write_pos) {
      if (pos_ < collection->first) {
        // The log no longer holds what this watcher has not read: end it, as RT does.
        overrun_ = true;
        Event event;
        event.type = EventType::kErrored;
        event.resource = Resource::Tombstone(ns_, type_);
        event.error = fmt::format("buffer overrun: namespace \"{}\" type \"{}\", write pos {}, pos {}, capacity {}",
                                  ns_, type_, write_pos, pos_, store_.log_capacity_);
        return {std::move(event)};
      }
      std::vector<Event> events;
      for (; pos_ < write_pos; ++pos_) {
        Event event = collection->log[static_cast<std::size_t>(pos_ - collection->first)];
        if (options_.id) {
          if (event.resource.id == *options_.id) events.push_back(std::move(event));
          continue;
        }
        const bool new_matches = options_.filter.Matches(event.resource);
        if (event.type == EventType::kUpdated) {
          const bool old_matches = event.old && options_.filter.Matches(*event.old);
          if (old_matches && !new_matches) {
            event.type = EventType::kDestroyed;
            event.old.reset();
          } else if (!old_matches && new_matches) {
            event.type = EventType::kCreated;
            event.old.reset();
          } else if (!new_matches) {
            continue;
          }
          events.push_back(std::move(event));
        } else if (new_matches) {
          events.push_back(std::move(event));
        }
      }
      if (!events.empty()) {
        if (options_.aggregated) return events;
        for (auto& event : events) ready_.push_back({std::move(event)});
        continue;
      }
    }
    if (store_.changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      if (!ready_.empty()) continue;
      return {};
    }
  }
}

// ---------------------------------------------------------------------------------------------
// StateStore

StateStore::StateStore(const util::Clock& clock, std::uint64_t cookie, std::size_t log_capacity)
    : clock_(clock), cookie_(cookie), log_capacity_(std::max<std::size_t>(log_capacity, 1)) {}

StateStore::~StateStore() = default;

StateStore::Collection& StateStore::CollectionFor(const std::string& ns, const std::string& type) {
  return collections_[{ns, type}];
}

const StateStore::Collection* StateStore::FindCollection(const std::string& ns, const std::string& type) const {
  auto it = collections_.find({ns, type});
  return it == collections_.end() ? nullptr : &it->second;
}

void StateStore::Publish(Collection& collection, Event event) {
  event.bookmark = EncodeBookmark(collection.write_pos);
  if (publish_hook_) publish_hook_(event);
  collection.log.push_back(std::move(event));
  ++collection.write_pos;
  while (collection.log.size() > log_capacity_) {
    collection.log.pop_front();
    ++collection.first;
  }
  ++change_count_;
  changed_.notify_all();
}

std::string StateStore::EncodeBookmark(std::int64_t pos) const {
  std::string out(16, '\0');
  const auto upos = static_cast<std::uint64_t>(pos);
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>((cookie_ >> (56 - 8 * i)) & 0xff);
    out[8 + i] = static_cast<char>((upos >> (56 - 8 * i)) & 0xff);
  }
  return out;
}

std::optional<std::int64_t> StateStore::DecodeBookmark(const std::string& bookmark) const {
  if (bookmark.size() != 16) return std::nullopt;
  std::uint64_t cookie = 0;
  std::uint64_t pos = 0;
  for (int i = 0; i < 8; ++i) {
    cookie = (cookie << 8) | static_cast<unsigned char>(bookmark[i]);
    pos = (pos << 8) | static_cast<unsigned char>(bookmark[8 + i]);
  }
  if (cookie != cookie_) return std::nullopt;
  return static_cast<std::int64_t>(pos);
}

absl::StatusOr<Resource> StateStore::Get(const std::string& ns, const std::string& type, const std::string& id) const {
  std::lock_guard lock(mutex_);
  const auto* collection = FindCollection(ns, type);
  if (collection != nullptr) {
    auto it = collection->items.find(id);
    if (it != collection->items.end()) return it->second;
  }
  return absl::NotFoundError(fmt::format("{} doesn't exist", Describe(ns, type, id)));
}

absl::StatusOr<std::vector<Resource>> StateStore::List(const std::string& ns, const std::string& type,
                                                       const ResourceFilter& filter) const {
  if (auto status = filter.Validate(); !status.ok()) return status;
  std::lock_guard lock(mutex_);
  std::vector<Resource> out;
  if (const auto* collection = FindCollection(ns, type)) {
    for (const auto& [id, resource] : collection->items) {  // std::map: already sorted by ID
      if (filter.Matches(resource)) out.push_back(resource);
    }
  }
  return out;
}

absl::StatusOr<Resource> StateStore::Create(Resource resource, const std::string& owner, bool keep_timestamps) {
  if (!resource.owner.empty() && resource.owner != owner) {
    return absl::InvalidArgumentError(
        fmt::format("create {}: metadata.owner '{}' differs from options.owner '{}': send the same owner in both",
                    Describe(resource.ns, resource.type, resource.id), resource.owner, owner));
  }
  std::lock_guard lock(mutex_);
  auto& collection = CollectionFor(resource.ns, resource.type);
  if (collection.items.count(resource.id) != 0) {
    return absl::AlreadyExistsError(
        fmt::format("{} already exists", Describe(resource.ns, resource.type, resource.id)));
  }
  resource.owner = owner;
  resource.version = 1;
  if (!keep_timestamps) {
    resource.created = clock_.Now();
    resource.updated = resource.created;
  }
  collection.items[resource.id] = resource;
  Event event;
  event.type = EventType::kCreated;
  event.resource = resource;
  Publish(collection, std::move(event));
  return resource;
}

absl::StatusOr<Resource> StateStore::Update(Resource resource, const std::string& owner,
                                            std::optional<Phase> expected_phase) {
  std::lock_guard lock(mutex_);
  auto& collection = CollectionFor(resource.ns, resource.type);
  auto it = collection.items.find(resource.id);
  if (it == collection.items.end()) {
    return absl::NotFoundError(fmt::format("{} doesn't exist", Describe(resource.ns, resource.type, resource.id)));
  }
  const Resource& current = it->second;
  if (current.owner != owner) {
    return absl::PermissionDeniedError(
        fmt::format("{} is owned by \"{}\"", Describe(resource.ns, resource.type, resource.id), current.owner));
  }
  if (current.version != resource.version) {
    return absl::FailedPreconditionError(fmt::format(
        "{} update conflict: expected version '{}', actual version '{}'",
        Describe(resource.ns, resource.type, resource.id),
        resource.version == 0 ? std::string("undefined") : std::to_string(resource.version), current.version));
  }
  if (expected_phase && current.phase != *expected_phase) {
    return absl::InvalidArgumentError(fmt::format(
        "{} is not in phase {}", Describe(resource.ns, resource.type, resource.id), PhaseName(*expected_phase)));
  }
  Resource old = current;
  resource.version = current.version + 1;
  resource.created = current.created;
  resource.updated = clock_.Now();
  it->second = resource;
  Event event;
  event.type = EventType::kUpdated;
  event.resource = resource;
  event.old = std::move(old);
  Publish(collection, std::move(event));
  return resource;
}

std::vector<Resource> StateStore::Export(const std::string& skip_ns) const {
  std::lock_guard lock(mutex_);
  std::vector<Resource> out;
  for (const auto& [key, collection] : collections_) {
    if (key.first == skip_ns) continue;
    for (const auto& [id, resource] : collection.items) out.push_back(resource);
  }
  return out;
}

void StateStore::Import(Resource resource) {
  std::lock_guard lock(mutex_);
  auto& collection = CollectionFor(resource.ns, resource.type);
  const std::string id = resource.id;
  collection.items[id] = std::move(resource);
  ++change_count_;
}

absl::Status StateStore::Destroy(const std::string& ns, const std::string& type, const std::string& id,
                                 const std::string& owner) {
  std::lock_guard lock(mutex_);
  auto& collection = CollectionFor(ns, type);
  auto it = collection.items.find(id);
  if (it == collection.items.end()) {
    return absl::NotFoundError(fmt::format("{} doesn't exist", Describe(ns, type, id)));
  }
  if (it->second.owner != owner) {
    return absl::PermissionDeniedError(fmt::format("{} is owned by \"{}\"", Describe(ns, type, id), it->second.owner));
  }
  if (!it->second.finalizers.empty()) {
    std::string list;
    for (const auto& finalizer : it->second.finalizers) list += (list.empty() ? "" : ", ") + finalizer;
    return absl::FailedPreconditionError(fmt::format("{} has pending finalizers: {}", Describe(ns, type, id), list));
  }
  Event event;
  event.type = EventType::kDestroyed;
  event.resource = std::move(it->second);
  collection.items.erase(it);
  Publish(collection, std::move(event));
  return absl::OkStatus();
}

absl::StatusOr<bool> StateStore::Teardown(const std::string& ns, const std::string& type, const std::string& id,
                                          const std::string& owner) {
  std::lock_guard lock(mutex_);
  auto& collection = CollectionFor(ns, type);
  auto it = collection.items.find(id);
  if (it == collection.items.end()) {
    return absl::NotFoundError(fmt::format("{} doesn't exist", Describe(ns, type, id)));
  }
  // Like cosi-project/runtime: the owner is checked only when the phase changes, so any writer may
  // ask whether an already tearing-down resource is ready to destroy.
  if (it->second.phase == Phase::kRunning) {
    if (it->second.owner != owner) {
      return absl::PermissionDeniedError(
          fmt::format("{} is owned by \"{}\"", Describe(ns, type, id), it->second.owner));
    }
    Resource old = it->second;
    it->second.phase = Phase::kTearingDown;
    it->second.version += 1;
    it->second.updated = clock_.Now();
    Event event;
    event.type = EventType::kUpdated;
    event.resource = it->second;
    event.old = std::move(old);
    Publish(collection, std::move(event));
  }
  return it->second.finalizers.empty();
}

absl::StatusOr<Resource> StateStore::Modify(const std::string& ns, const std::string& type, const std::string& id,
                                            const std::function<bool(Resource&)>& mutate) {
  std::lock_guard lock(mutex_);
  auto& collection = CollectionFor(ns, type);
  auto it = collection.items.find(id);
  if (it == collection.items.end()) {
    return absl::NotFoundError(fmt::format("{} doesn't exist", Describe(ns, type, id)));
  }
  Resource copy = it->second;
  if (!mutate(copy)) return it->second;
  copy.ns = ns;
  copy.type = type;
  copy.id = id;
  copy.version = it->second.version + 1;
  copy.created = it->second.created;
  copy.updated = clock_.Now();
  Event event;
  event.type = EventType::kUpdated;
  event.old = std::move(it->second);
  it->second = copy;
  event.resource = std::move(copy);
  Publish(collection, std::move(event));
  return it->second;
}

absl::StatusOr<std::unique_ptr<Watcher>> StateStore::Watch(const std::string& ns, const std::string& type,
                                                           WatchOptions options) {
  if (options.tail_events > 0 && options.start_from_bookmark) {
    return absl::InvalidArgumentError("watch: cannot use both tail_events and start_from_bookmark; pick one");
  }
  if (options.bootstrap_contents && (options.tail_events > 0 || options.start_from_bookmark)) {
    return absl::InvalidArgumentError(
        "watch: cannot use bootstrap_contents with tail_events or start_from_bookmark; pick one");
  }
  if (options.id && (options.bootstrap_contents || options.bootstrap_bookmark)) {
    return absl::InvalidArgumentError(
        "watch: bootstrap_contents and bootstrap_bookmark apply to kind watches only: leave id unset");
  }
  if (auto status = options.filter.Validate(); !status.ok()) return status;

  std::unique_ptr<Watcher> watcher(new Watcher(*this, ns, type, options));
  std::lock_guard lock(mutex_);
  auto& collection = CollectionFor(ns, type);
  std::int64_t pos = collection.write_pos;
  const std::int64_t oldest = collection.first;

  if (options.start_from_bookmark) {
    auto decoded = DecodeBookmark(*options.start_from_bookmark);
    const std::int64_t lowest = options.id ? 0 : -1;
    if (!decoded || *decoded < lowest || *decoded < oldest - 1 || *decoded >= collection.write_pos) {
      return absl::FailedPreconditionError("invalid watch bookmark: start again without start_from_bookmark");
    }
    pos = *decoded + 1;  // the bookmarked event itself was already delivered
  } else if (options.tail_events > 0) {
    if (options.id) {
      int found = 0;
      while (pos > oldest && found < options.tail_events) {
        if (collection.log[static_cast<std::size_t>(pos - 1 - oldest)].resource.id == *options.id) ++found;
        --pos;
      }
    } else {
      pos = std::max(oldest, pos - options.tail_events);
    }
  } else if (options.id) {
    Event initial;
    auto it = collection.items.find(*options.id);
    if (it != collection.items.end()) {
      initial.type = EventType::kCreated;
      initial.resource = it->second;
    } else {
      initial.type = EventType::kDestroyed;
      initial.resource = Resource::Tombstone(ns, type);
      initial.resource.id = *options.id;
    }
    watcher->ready_.push_back({std::move(initial)});
  }

  if (!options.id) {
    std::vector<Event> bootstrap;
    if (options.bootstrap_contents) {
      for (const auto& [id, resource] : collection.items) {
        if (!options.filter.Matches(resource)) continue;
        Event event;
        event.type = EventType::kCreated;
        event.resource = resource;
        bootstrap.push_back(std::move(event));
      }
      Event done;
      done.type = EventType::kBootstrapped;
      done.resource = Resource::Tombstone(ns, type);
      done.bookmark = EncodeBookmark(pos - 1);
      bootstrap.push_back(std::move(done));
      if (options.aggregated) {
        watcher->ready_.push_back(std::move(bootstrap));
      } else {
        for (auto& event : bootstrap) watcher->ready_.push_back({std::move(event)});
      }
    }
    if (options.bootstrap_bookmark) {
      Event noop;
      noop.type = EventType::kNoop;
      noop.resource = Resource::Tombstone(ns, type);
      noop.bookmark = EncodeBookmark(pos - 1);
      watcher->ready_.push_back({std::move(noop)});
    }
  }
  watcher->pos_ = pos;
  return watcher;
}

bool StateStore::WaitUntil(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mutex_);
  for (;;) {
    const std::uint64_t seen = change_count_;
    const std::uint64_t seen_wake = wake_epoch_;
    lock.unlock();
    if (predicate()) return true;
    lock.lock();
    // Only sleep if nothing changed (and nobody called WakeAll) while the predicate ran unlocked.
    while (change_count_ == seen && wake_epoch_ == seen_wake) {
      if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
        lock.unlock();
        return predicate();
      }
    }
  }
}

void StateStore::ForgetAsIfRestarted(std::uint64_t new_cookie, const std::string& ephemeral_ns) {
  std::lock_guard lock(mutex_);
  cookie_ = new_cookie;
  for (auto it = collections_.begin(); it != collections_.end();) {
    it = it->first.first == ephemeral_ns ? collections_.erase(it) : std::next(it);
  }
  ++change_count_;
  changed_.notify_all();
}

void StateStore::WakeAll() {
  std::lock_guard lock(mutex_);
  ++wake_epoch_;
  changed_.notify_all();
}

std::uint64_t StateStore::change_count() const {
  std::lock_guard lock(mutex_);
  return change_count_;
}

}  // namespace omni_proxmox::sim::omni
