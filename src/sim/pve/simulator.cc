// SPDX-License-Identifier: Apache-2.0
// The simulator's core: start-up, request decoding (forms, JSON and multipart bodies), routing against the
// official schema, node and parameter checks, permission specs, rendering in PVE's shape, the ticker that
// completes tasks, and the public Simulator API. The endpoint families register their routes here
// (see internal/impl.h for which file owns which endpoints).

#include "sim/pve/simulator.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <regex>

#include "fmt/format.h"

#include "sim/pve/internal/impl.h"
#include "sim/pve/internal/text.h"
#include "util/status_macros.h"

namespace omni_proxmox::sim::pve {
namespace {

using std::chrono::milliseconds;

// Serializes with object keys in a random order, like Perl hashes.
void DumpShuffled(const Json& value, std::mt19937_64& rng, std::string& out) {
  if (value.is_object()) {
    std::vector<const std::string*> keys;
    for (const auto& [key, unused] : value.items()) keys.push_back(&key);
    std::shuffle(keys.begin(), keys.end(), rng);
    out += '{';
    bool first = true;
    for (const auto* key : keys) {
      if (!first) out += ',';
      first = false;
      out += Json(*key).dump();
      out += ':';
      DumpShuffled(value.at(*key), rng, out);
    }
    out += '}';
  } else if (value.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& item : value) {
      if (!first) out += ',';
      first = false;
      DumpShuffled(item, rng, out);
    }
    out += ']';
  } else {
    out += value.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}

struct MultipartPart {
  std::string name;
  std::string filename;
  bool has_filename = false;
  std::string data;
};

std::optional<std::vector<MultipartPart>> ParseMultipart(const std::string& body, const std::string& content_type) {
  std::size_t b = content_type.find("boundary=");
  if (b == std::string::npos) return std::nullopt;
  std::string boundary = content_type.substr(b + 9);
  if (auto semi = boundary.find(';'); semi != std::string::npos) boundary = boundary.substr(0, semi);
  if (boundary.size() >= 2 && boundary.front() == '"') boundary = boundary.substr(1, boundary.size() - 2);
  std::string delimiter = "--" + boundary;
  std::vector<MultipartPart> parts;
  std::size_t pos = body.find(delimiter);
  if (pos == std::string::npos) return std::nullopt;
  while (true) {
    pos += delimiter.size();
    if (body.compare(pos, 2, "--") == 0) break;
    if (body.compare(pos, 2, "\r\n") != 0) return std::nullopt;
    pos += 2;
    std::size_t head_end = body.find("\r\n\r\n", pos);
    if (head_end == std::string::npos) return std::nullopt;
    std::string head = body.substr(pos, head_end - pos);
    std::size_t next = body.find("\r\n" + delimiter, head_end + 4);
    if (next == std::string::npos) return std::nullopt;
    MultipartPart part;
    part.data = body.substr(head_end + 4, next - head_end - 4);
    static const std::regex name_re(R"re(\bname="([^"]*)")re", std::regex::icase);
    static const std::regex file_re(R"re(\bfilename="([^"]*)")re", std::regex::icase);
    std::smatch match;
    for (const auto& line : SplitAny(head, "\r\n")) {
      if (Lower(line).rfind("content-disposition:", 0) != 0) continue;
      if (std::regex_search(line, match, name_re)) part.name = match[1];
      if (std::regex_search(line, match, file_re)) {
        part.filename = match[1];
        part.has_filename = true;
      }
    }
    parts.push_back(std::move(part));
    pos = next + 2;
  }
  return parts;
}

}  // namespace

absl::Status Simulator::Impl::Init() {
  if (options_.clock != nullptr) {
    clock_ = options_.clock;
  } else {
    if (!(options_.time_scale > 0)) {
      return absl::InvalidArgumentError(fmt::format("time_scale {} must be > 0 (1 = real time)", options_.time_scale));
    }
    owned_clock_ = std::make_unique<util::ScaledClock>(options_.time_scale);
    clock_ = owned_clock_.get();
  }
  state_rng_.seed(options_.seed);
  std::string schema_text = EmbeddedPveSchema();
  if (!options_.schema_path.empty()) {
    FILE* file = std::fopen(options_.schema_path.c_str(), "rb");
    if (file == nullptr) {
      return absl::NotFoundError(fmt::format("schema_path '{}' cannot be read", options_.schema_path));
    }
    schema_text.clear();
    char buffer[65536];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof(buffer), file)) > 0;) schema_text.append(buffer, n);
    std::fclose(file);
  }
  OP_ASSIGN_OR_RETURN(schema_, Schema::Load(schema_text));
  OP_RETURN_IF_ERROR(LoadScenario(options_.scenario_yaml));
  std::string key(32, '\0');
  for (auto& c : key) c = static_cast<char>(state_rng_() & 0xff);
  ticket_key_ = key;
  next_pid_ = static_cast<int>(0x1000 + state_rng_() % 0x10000);
  RegisterHandlers();
  if (options_.tls) {
    OP_ASSIGN_OR_RETURN(tls_, GenerateSelfSignedCertificate("pve-sim"));
  }
  OP_RETURN_IF_ERROR(server_.Start(
      options_.bind_address, options_.port, options_.tls ? &tls_ : nullptr, [this](const HttpRequest& request) {
        const Journal::Arrival arrival = journal_.Stamp();
        HttpResponse response = Handle(request);
        journal_.Record(arrival, request.method, request.path, request.Header("x-omni-proxmox-replica"),
                        response.drop_connection ? 0 : response.status);
        return response;
      }));
  ticker_ = std::jthread([this](std::stop_token stop) { TickLoop(stop); });
  return absl::OkStatus();
}

void Simulator::Impl::TickLoop(std::stop_token stop) {
  // Completes tasks whose simulated time is up even when nobody polls, so on_vm_started fires.
  std::mutex wait_mutex;
  std::condition_variable_any wake;
  while (!stop.stop_requested()) {
    {
      std::unique_lock wait_lock(wait_mutex);
      wake.wait_for(wait_lock, stop, milliseconds(20), [] { return false; });
    }
    std::vector<VmBootInfo> boots;
    {
      std::lock_guard lock(mutex_);
      AdvanceLocked();
      boots.swap(pending_boots_);
    }
    if (options_.on_vm_started) {
      for (const auto& boot : boots) options_.on_vm_started(boot);
    }
  }
}

void Simulator::Impl::RegisterHandlers() {
  AddAccessRoutes(handlers_);
  AddClusterRoutes(handlers_);
  AddNodeRoutes(handlers_);
  AddStorageRoutes(handlers_);
  AddQemuRoutes(handlers_);
  AddTaskRoutes(handlers_);
}

HttpResponse Simulator::Impl::Handle(const HttpRequest& request) {
  std::mt19937_64 rng(random_.Uniform(~0ULL));
  Reply reply;
  if (request.path.rfind("/_sim/", 0) == 0) {
    reply = HandleSim(request);
  } else if (std::optional<FaultSpec> fault = DrawFault(request)) {
    reply = ServeFaulted(request, *fault, rng);
  } else {
    reply = Dispatch(request, rng);
  }
  std::vector<VmBootInfo> boots;
  {
    std::lock_guard lock(mutex_);
    boots.swap(pending_boots_);
  }
  if (options_.on_vm_started) {
    for (const auto& boot : boots) options_.on_vm_started(boot);
  }
  if (reply.delay.count() > 0) std::this_thread::sleep_for(reply.delay);
  return Render(reply, rng);
}

HttpResponse Simulator::Impl::Render(const Reply& reply, std::mt19937_64& rng) const {
  HttpResponse response;
  response.status = reply.status;
  if (reply.drop) {
    response.drop_connection = true;
    return response;
  }
  if (reply.status == 200) {
    response.reason = "OK";
    Json body = {{"data", reply.data}};
    if (reply.total) body["total"] = *reply.total;
    DumpShuffled(body, rng, response.body);
    response.headers.emplace_back("Content-Type", "application/json;charset=UTF-8");
  } else {
    std::string reason = reply.message.substr(0, reply.message.find('\n'));
    response.reason = reason.empty() ? "Error" : reason;
    if (!reply.empty_body) {
      Json body = {{"data", nullptr}};
      if (options_.error_message_field) {
        body["message"] = reply.message.empty() || reply.message.back() == '\n' ? reply.message : reply.message + "\n";
      }
      if (!reply.errors.is_null()) body["errors"] = reply.errors;
      DumpShuffled(body, rng, response.body);
      response.headers.emplace_back("Content-Type", "application/json;charset=UTF-8");
    }
  }
  response.headers.emplace_back("Cache-Control", "max-age=0");
  response.headers.emplace_back("Server", "pve-api-daemon/3.0 (omni-proxmox pve-sim)");
  return response;
}

Reply Simulator::Impl::Dispatch(const HttpRequest& request, std::mt19937_64& rng) {
  if (request.path.rfind("/api2/json/", 0) != 0 && request.path != "/api2/json") {
    return Error(501, fmt::format("Method '{} {}' not implemented", request.method, request.path));
  }
  std::string path = request.path.substr(10);
  if (path.empty()) path = "/";
  if (request.method != "POST" && request.method != "PUT" && !request.body.empty()) {
    return Error(501, fmt::format("Unexpected content for method '{}'", request.method));
  }
  RouteMatch match = schema_->Match(request.method, path);
  {
    std::lock_guard lock(mutex_);
    ++request_counts_[match.endpoint != nullptr ? match.endpoint->Key() : "(unknown)"];
  }
  if (match.endpoint == nullptr) {
    return Error(501, fmt::format("Method '{} {}' not implemented", request.method, path));
  }
  Call call;
  call.http = &request;
  call.endpoint = match.endpoint;
  call.rng.seed(rng());
  bool is_ticket = match.endpoint->Key() == "POST /access/ticket";
  if (!is_ticket) {
    if (auto failure = Authenticate(request, *match.endpoint, call.auth)) return *failure;
    if (!match.endpoint->allow_token && !call.auth.tokenname.empty()) {
      return Error(403, fmt::format("Permission check failed (URI '{}' not available with API token, need proper "
                                    "ticket.\n)",
                                    path));
    }
  }
  if (auto failure = ExtractParams(request, match, call)) return *failure;

  // Node checks come before validation: PVE forwards to the node, which then validates.
  if (call.Has("node") && match.endpoint->path_template.rfind("/nodes/{node}", 0) == 0) {
    const auto* node_schema = schema_->ParamSchema(*match.endpoint, "node");
    if (node_schema != nullptr) {
      if (auto error = schema_->CheckValue(*node_schema, call.Get("node"), "node")) return ParamError1("node", *error);
    }
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(call.Get("node"));
    if (it == nodes_.end()) {
      const std::string& name = call.Get("node");
      return Error(500, fmt::format("hostname lookup '{}' failed - failed to get address info for: {}: Name or "
                                    "service not known",
                                    name, name));
    }
    if (!it->second.online && match.endpoint->proxied_to_node) {
      Reply reply = Error(595, "Connection refused");
      reply.empty_body = true;
      reply.delay = offline_delay_;
      return reply;
    }
  }
  if (auto errors = schema_->Validate(*match.endpoint, call.params); !errors.empty()) return ParamError(errors);

  auto handler = handlers_.find(match.endpoint->Key());
  if (handler == handlers_.end()) {
    return Error(501, fmt::format("Method '{} {}' not implemented", request.method, path));
  }
  std::lock_guard lock(mutex_);
  AdvanceLocked();
  if (!is_ticket) {
    const Json& permissions = (*match.endpoint->definition)["permissions"];
    if (auto it = permissions.find("check"); it != permissions.end()) {
      if (auto denied = CheckPermissionSpec(*it, call)) return *denied;
    }
  }
  return (this->*(handler->second))(call);
}

std::optional<Reply> Simulator::Impl::ExtractParams(const HttpRequest& request, const RouteMatch& match, Call& call) {
  std::map<std::string, std::string> params;
  if ((request.method == "POST" || request.method == "PUT") && !request.body.empty()) {
    std::string media = MediaType(request.Header("content-type"));
    bool upload = match.endpoint->path_template == "/nodes/{node}/storage/{storage}/upload";
    if (media == "application/x-www-form-urlencoded") {
      params = ParseForm(request.body);
    } else if (media == "application/json") {
      Json body;
      try {
        body = Json::parse(request.body);
      } catch (const std::exception&) {
        return Error(400, "malformed JSON string");
      }
      if (!body.is_object()) return Error(400, "malformed JSON string: expected an object");
      for (const auto& [key, value] : body.items()) {
        if (value.is_null()) continue;
        if (value.is_boolean()) {
          params[key] = value.get<bool>() ? "1" : "0";
        } else if (value.is_string()) {
          params[key] = value.get<std::string>();
        } else if (value.is_number()) {
          params[key] = value.dump();
        } else {
          params[key] = value.dump();  // arrays/objects fail validation like PVE's type check
        }
      }
    } else if (upload && media == "multipart/form-data") {
      auto parts = ParseMultipart(request.body, request.Header("content-type"));
      if (!parts) return Error(400, "unable to parse multipart/form-data body");
      for (auto& part : *parts) {
        if (part.has_filename) {
          call.upload_field = part.name;
          call.upload_filename = part.filename;
          call.upload_data = std::move(part.data);
          break;  // PVE's streaming parser stops at the file part
        }
        params[part.name] = part.data;
      }
      if (call.upload_field.empty()) return Error(400, "missing file part 'filename' in multipart upload");
      if (call.upload_field != "filename") {
        return Error(500, fmt::format("wrong field name '{}' for file upload, expected 'filename'", call.upload_field));
      }
      params["filename"] = call.upload_filename;
    } else {
      return Error(506, fmt::format("upload 'Content-Type '{}' not implemented", request.Header("content-type")));
    }
  }
  for (auto& [key, value] : ParseForm(request.query)) params[key] = value;  // the query overrides the body
  params.erase("_dc");
  for (const auto& [key, value] : match.path_params) {
    auto it = params.find(key);
    if (it != params.end() && it->second != value) {
      return Error(400, "duplicate parameter (already defined in URI) with conflicting values!");
    }
    params[key] = value;
  }
  call.params = std::move(params);
  return std::nullopt;
}

// ---- public API ----

Simulator::Simulator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Simulator::~Simulator() {
  impl_->ticker_.request_stop();
  if (impl_->ticker_.joinable()) impl_->ticker_.join();
  impl_->server_.Stop();
}

absl::StatusOr<std::unique_ptr<Simulator>> Simulator::Start(SimulatorOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  OP_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Simulator>(new Simulator(std::move(impl)));
}

int Simulator::port() const { return impl_->server_.port(); }

std::string Simulator::base_url() const {
  std::string host = impl_->options_.bind_address;
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return fmt::format("{}://{}:{}", impl_->options_.tls ? "https" : "http", host, port());
}

std::string Simulator::ca_certificate_pem() const { return impl_->tls_.certificate_pem; }
std::string Simulator::default_token_id() const { return impl_->default_token_id_; }
std::string Simulator::default_token_secret() const { return impl_->default_token_secret_; }
nlohmann::json Simulator::StateForTest() const { return impl_->State(); }
absl::Status Simulator::SetNodeOnline(const std::string& node, bool online) {
  return impl_->SetNodeOnline(node, online);
}
absl::Status Simulator::MigrateVm(int vmid, const std::string& to_node) { return impl_->MigrateVm(vmid, to_node); }
absl::Status Simulator::DeleteVmOutOfBand(int vmid) { return impl_->DeleteVmOutOfBand(vmid); }
absl::Status Simulator::HoldVmLock(int vmid, std::chrono::milliseconds hold) { return impl_->HoldVmLock(vmid, hold); }
void Simulator::SetFault(const std::string& endpoint_pattern, FaultSpec spec) {
  impl_->SetFault(endpoint_pattern, std::move(spec));
}
void Simulator::ClearFaults() { impl_->ClearFaults(); }
void Simulator::FailNextTask(const std::string& type, const std::string& node, const std::string& error) {
  impl_->FailNextTask(type, node, error);
}
std::uint64_t Simulator::RequestCount(const std::string& endpoint) const { return impl_->RequestCount(endpoint); }
const Journal& Simulator::journal() const { return impl_->journal_; }
absl::StatusOr<std::string> Simulator::VolumeContentForTest(const std::string& node, const std::string& volid) const {
  return impl_->VolumeContent(node, volid);
}

}  // namespace omni_proxmox::sim::pve
