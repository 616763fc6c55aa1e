// SPDX-License-Identifier: Apache-2.0
// Access: authentication of every API request (PVEAuthCookie tickets with their CSRF token, PVEAPIToken
// secrets), the ACL model (roles, propagation, privilege-separated tokens) and the schema's permission specs.
// Endpoints: POST /access/ticket, GET /access/permissions.

#include <algorithm>
#include <cctype>
#include <iterator>

#include "fmt/format.h"
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sim/pve/http_server.h"
#include "sim/pve/internal/impl.h"
#include "sim/pve/internal/text.h"

namespace omni_proxmox::sim::pve {
namespace {

using std::chrono::duration_cast;
using std::chrono::seconds;

constexpr auto kTicketLifetime = std::chrono::hours(2);

std::string Base64(const unsigned char* data, std::size_t size) {
  std::string out(4 * ((size + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string HmacBase64(const std::string& key, const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(text.data()),
       text.size(), digest, &length);
  return Base64(digest, length);
}

std::string CookieValue(const std::string& cookies, const std::string& name) {
  for (auto part : SplitAny(cookies, ";")) {
    std::size_t start = part.find_first_not_of(' ');
    if (start == std::string::npos) continue;
    part = part.substr(start);
    if (part.rfind(name + "=", 0) == 0) return PercentDecode(part.substr(name.size() + 1), false);
  }
  return "";
}

}  // namespace

const std::vector<std::string>& AllPrivileges() {
  static const std::vector<std::string> privileges = {"Datastore.Allocate",
                                                      "Datastore.AllocateSpace",
                                                      "Datastore.AllocateTemplate",
                                                      "Datastore.Audit",
                                                      "Group.Allocate",
                                                      "Mapping.Audit",
                                                      "Mapping.Modify",
                                                      "Mapping.Use",
                                                      "Permissions.Modify",
                                                      "Pool.Allocate",
                                                      "Pool.Audit",
                                                      "Realm.Allocate",
                                                      "Realm.AllocateUser",
                                                      "SDN.Allocate",
                                                      "SDN.Audit",
                                                      "SDN.Use",
                                                      "Sys.AccessNetwork",
                                                      "Sys.Audit",
                                                      "Sys.Console",
                                                      "Sys.Incoming",
                                                      "Sys.Modify",
                                                      "Sys.PowerMgmt",
                                                      "Sys.Syslog",
                                                      "User.Modify",
                                                      "VM.Allocate",
                                                      "VM.Audit",
                                                      "VM.Backup",
                                                      "VM.Clone",
                                                      "VM.Config.CDROM",
                                                      "VM.Config.CPU",
                                                      "VM.Config.Cloudinit",
                                                      "VM.Config.Disk",
                                                      "VM.Config.HWType",
                                                      "VM.Config.Memory",
                                                      "VM.Config.Network",
                                                      "VM.Config.Options",
                                                      "VM.Console",
                                                      "VM.GuestAgent.Audit",
                                                      "VM.GuestAgent.FileRead",
                                                      "VM.GuestAgent.FileSystemMgmt",
                                                      "VM.GuestAgent.FileWrite",
                                                      "VM.GuestAgent.Unrestricted",
                                                      "VM.Migrate",
                                                      "VM.PowerMgmt",
                                                      "VM.Replicate",
                                                      "VM.Snapshot",
                                                      "VM.Snapshot.Rollback"};
  return privileges;
}

std::set<std::string> BuiltinRole(const std::string& role, bool& found) {
  found = true;
  const auto& all = AllPrivileges();
  auto with_prefix = [&](std::initializer_list<const char*> prefixes, std::initializer_list<const char*> extra) {
    std::set<std::string> out(extra.begin(), extra.end());
    for (const auto& priv : all) {
      for (const char* prefix : prefixes) {
        if (priv.rfind(prefix, 0) == 0) out.insert(priv);
      }
    }
    return out;
  };
  if (role == "Administrator") return {all.begin(), all.end()};
  if (role == "NoAccess") return {};
  if (role == "PVEAuditor") {
    return {"Datastore.Audit", "Mapping.Audit", "Pool.Audit", "SDN.Audit", "Sys.Audit", "VM.Audit"};
  }
  if (role == "PVEVMAdmin") return with_prefix({"VM."}, {"Datastore.AllocateSpace", "SDN.Use", "Mapping.Use"});
  if (role == "PVEVMUser") {
    return {"VM.Audit", "VM.Backup", "VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.PowerMgmt"};
  }
  if (role == "PVEDatastoreAdmin") return with_prefix({"Datastore."}, {});
  if (role == "PVEDatastoreUser") return {"Datastore.AllocateSpace", "Datastore.Audit"};
  if (role == "PVESDNUser") return {"SDN.Audit", "SDN.Use"};
  if (role == "PVEMappingUser") return {"Mapping.Audit", "Mapping.Use"};
  found = false;
  return {};
}

void Simulator::Impl::AddAccessRoutes(Routes& routes) {
  routes["POST /access/ticket"] = &Impl::PostTicket;
  routes["GET /access/permissions"] = &Impl::GetPermissions;
}

std::optional<Reply> Simulator::Impl::Authenticate(const HttpRequest& request, const Endpoint& endpoint,
                                                   AuthContext& auth) {
  auto fail = [&](const std::string& message) {
    Reply reply = Error(401, message);
    reply.empty_body = true;
    reply.delay = auth_failure_delay_;
    return reply;
  };
  std::string ticket = CookieValue(request.Header("cookie"), "PVEAuthCookie");
  std::string authorization = request.Header("authorization");
  if (ticket.empty() && authorization.rfind("PVEAuthCookie=", 0) == 0) {
    ticket = PercentDecode(authorization.substr(14), false);
  }
  std::lock_guard lock(mutex_);
  if (!ticket.empty()) {
    // PVE:<userid>:<hex time>::<signature>
    auto parts = SplitAny(ticket, ":");
    std::size_t sig = ticket.rfind("::");
    if (parts.size() < 4 || parts[0] != "PVE" || sig == std::string::npos) return fail("Authentication failed!");
    std::string userid = PercentDecode(parts[1], false);
    std::string signed_part = ticket.substr(0, sig);
    if (HmacBase64(ticket_key_, signed_part) != ticket.substr(sig + 2)) return fail("Authentication failed!");
    std::int64_t issued = std::strtoll(parts[2].c_str(), nullptr, 16);
    std::int64_t age = NowUnix() - issued;
    if (age < -300 || age >= duration_cast<seconds>(kTicketLifetime).count()) return fail("Authentication failed!");
    auto user = users_.find(userid);
    if (user == users_.end() || !user->second.enabled) return fail("Authentication failed!");
    auth.authid = auth.userid = userid;
    auth.via_ticket = true;
    bool upload = endpoint.path_template == "/nodes/{node}/storage/{storage}/upload";
    if (request.method != "GET" && !upload) {
      std::string csrf = request.Header("csrfpreventiontoken");
      std::size_t colon = csrf.find(':');
      bool ok = colon != std::string::npos &&
                HmacBase64(ticket_key_, "CSRF:" + csrf.substr(0, colon) + ":" + userid) == csrf.substr(colon + 1);
      if (ok) {
        std::int64_t csrf_age = NowUnix() - std::strtoll(csrf.substr(0, colon).c_str(), nullptr, 16);
        ok = csrf_age > -300 && csrf_age < duration_cast<seconds>(kTicketLifetime).count();
      }
      if (!ok) return fail("Permission denied - invalid csrf token");
    }
    return std::nullopt;
  }
  // (?:^|\s)PVEAPIToken(?:=| )([^;]*), matched by hand because it runs on every request.
  std::size_t at = std::string::npos;
  for (std::size_t pos = authorization.find("PVEAPIToken"); pos != std::string::npos;
       pos = authorization.find("PVEAPIToken", pos + 1)) {
    bool boundary = pos == 0 || std::isspace(static_cast<unsigned char>(authorization[pos - 1]));
    std::size_t next = pos + 11;
    if (boundary && next < authorization.size() && (authorization[next] == '=' || authorization[next] == ' ')) {
      at = next + 1;
      break;
    }
  }
  if (at != std::string::npos) {
    std::string value = PercentDecode(authorization.substr(at, authorization.find(';', at) - at), false);
    std::size_t eq = value.rfind('=');
    if (eq == std::string::npos) return fail("Authentication failed!");
    std::string tokenid = value.substr(0, eq);
    std::string secret = value.substr(eq + 1);
    auto token = tokens_.find(tokenid);
    if (token == tokens_.end() || token->second.secret != secret) return fail("Authentication failed!");
    if (token->second.expire != 0 && token->second.expire <= NowUnix()) return fail("Authentication failed!");
    auto user = users_.find(token->second.userid);
    if (user == users_.end() || !user->second.enabled) return fail("Authentication failed!");
    auth.authid = tokenid;
    auth.userid = token->second.userid;
    auth.tokenname = tokenid.substr(tokenid.find('!') + 1);
    return std::nullopt;
  }
  return fail("No ticket");
}

std::set<std::string> Simulator::Impl::UserPrivsLocked(const std::string& ugid, const std::string& path) const {
  // Walk from "/" down to `path`; the deepest level with entries for `ugid` replaces what came
  // from above, and entries without propagate apply only on their own path (PVE's ACL model).
  std::vector<std::string> levels = {"/"};
  std::string prefix;
  for (const auto& part : SplitAny(path, "/")) {
    prefix += "/" + part;
    levels.push_back(prefix);
  }
  std::set<std::string> privs;
  for (const auto& level : levels) {
    std::set<std::string> here;
    bool any = false;
    for (const auto& acl : acls_) {
      if (acl.path != level || acl.ugid != ugid) continue;
      if (!acl.propagate && level != levels.back()) continue;
      any = true;
      here.insert(acl.privs.begin(), acl.privs.end());
    }
    if (any) privs = std::move(here);
  }
  return privs;
}

std::set<std::string> Simulator::Impl::PrivsLocked(const std::string& authid, const std::string& path) const {
  std::size_t bang = authid.find('!');
  std::string userid = authid.substr(0, bang);
  std::set<std::string> user_privs;
  if (userid == "root@pam") {
    user_privs = {AllPrivileges().begin(), AllPrivileges().end()};
  } else {
    user_privs = UserPrivsLocked(userid, path);
  }
  if (bang == std::string::npos) return user_privs;
  auto token = tokens_.find(authid);
  if (token == tokens_.end()) return {};
  if (!token->second.privsep) return user_privs;
  std::set<std::string> token_privs = UserPrivsLocked(authid, path);
  std::set<std::string> both;
  std::set_intersection(user_privs.begin(), user_privs.end(), token_privs.begin(), token_privs.end(),
                        std::inserter(both, both.begin()));
  return both;
}

std::string Simulator::Impl::SubstitutePath(const std::string& path, const Call& call) const {
  std::string out = path;
  for (const auto& [key, value] : call.params) {
    std::string placeholder = "{" + key + "}";
    for (std::size_t pos; (pos = out.find(placeholder)) != std::string::npos;)
      out.replace(pos, placeholder.size(), value);
  }
  return out;
}

std::optional<Reply> Simulator::Impl::CheckPermissionSpec(const Json& check, const Call& call) const {
  if (!check.is_array() || check.empty() || !check[0].is_string()) return std::nullopt;
  std::string kind = check[0].get<std::string>();
  if (kind == "perm" && check.size() >= 3) {
    std::string path = SubstitutePath(check[1].get<std::string>(), call);
    bool any = check.size() >= 5 && check[3] == "any";
    auto privs = PrivsLocked(call.auth.authid, path);
    std::vector<std::string> wanted;
    for (const auto& priv : check[2]) wanted.push_back(priv.get<std::string>());
    if (any) {
      for (const auto& priv : wanted) {
        if (privs.count(priv) != 0) return std::nullopt;
      }
      return Error(403, fmt::format("Permission check failed ({}, {})", path, Join(wanted, "|")));
    }
    for (const auto& priv : wanted) {
      if (privs.count(priv) == 0) return Error(403, fmt::format("Permission check failed ({}, {})", path, priv));
    }
    return std::nullopt;
  }
  if (kind == "and") {
    for (std::size_t i = 1; i < check.size(); ++i) {
      if (auto denied = CheckPermissionSpec(check[i], call)) return denied;
    }
    return std::nullopt;
  }
  if (kind == "or") {
    std::optional<Reply> first;
    for (std::size_t i = 1; i < check.size(); ++i) {
      auto denied = CheckPermissionSpec(check[i], call);
      if (!denied) return std::nullopt;
      if (!first) first = denied;
    }
    return first;
  }
  return std::nullopt;  // userid-param and friends: checked by the handler
}

Reply Simulator::Impl::PostTicket(Call& call) {
  auto fail = [&] {
    Reply reply = Error(401, "authentication failure");
    reply.delay = auth_failure_delay_;
    return reply;
  };
  std::string userid = call.Get("username");
  if (call.Has("realm") && userid.find('@') == std::string::npos) userid += "@" + call.Get("realm");
  auto user = users_.find(userid);
  if (user == users_.end() || !user->second.enabled) return fail();
  std::string password = call.Get("password");
  bool ok = !user->second.password.empty() && password == user->second.password;
  if (!ok && password.rfind("PVE:", 0) == 0) {
    // Renewal: the password is a still-valid ticket of the same user.
    std::size_t sig = password.rfind("::");
    auto parts = SplitAny(password, ":");
    if (sig != std::string::npos && parts.size() >= 4 && PercentDecode(parts[1], false) == userid &&
        HmacBase64(ticket_key_, password.substr(0, sig)) == password.substr(sig + 2)) {
      std::int64_t age = NowUnix() - std::strtoll(parts[2].c_str(), nullptr, 16);
      ok = age > -300 && age < duration_cast<seconds>(kTicketLifetime).count();
    }
  }
  if (!ok) return fail();
  AuthContext auth;
  auth.authid = auth.userid = userid;
  if (call.Has("path")) {
    auto privs = PrivsLocked(userid, call.Get("path"));
    for (const auto& priv : SplitAny(call.Get("privs"), ",; ")) {
      if (privs.count(priv) == 0)
        return Error(403, fmt::format("Permission check failed ({}, {})", call.Get("path"), priv));
    }
  }
  std::string stamp = Hex8(static_cast<std::uint64_t>(NowUnix()));
  std::string escaped_user;
  for (char c : userid) escaped_user += c == ':' ? std::string("%3A") : std::string(1, c);
  std::string unsigned_ticket = fmt::format("PVE:{}:{}", escaped_user, stamp);
  std::string ticket = unsigned_ticket + "::" + HmacBase64(ticket_key_, unsigned_ticket);
  std::string csrf = stamp + ":" + HmacBase64(ticket_key_, "CSRF:" + stamp + ":" + userid);
  Json cap = Json::object();
  for (const auto& [group, path] : std::vector<std::pair<std::string, std::string>>{{"vms", "/vms"},
                                                                                    {"storage", "/storage"},
                                                                                    {"nodes", "/nodes"},
                                                                                    {"access", "/access"},
                                                                                    {"dc", "/"},
                                                                                    {"sdn", "/sdn"},
                                                                                    {"mapping", "/mapping"}}) {
    Json privs = Json::object();
    for (const auto& priv : PrivsLocked(userid, path)) privs[priv] = 1;
    cap[group] = privs;
  }
  Json data = {{"username", userid}, {"ticket", ticket}, {"CSRFPreventionToken", csrf}, {"cap", cap}};
  if (PrivsLocked(userid, "/").count("Sys.Audit") != 0) data["clustername"] = cluster_name_;
  return Ok(data);
}

Reply Simulator::Impl::GetPermissions(Call& call) {
  std::string target = call.Get("userid", call.auth.authid);
  if (target != call.auth.authid) {
    bool own_token = target.rfind(call.auth.userid + "!", 0) == 0 && call.auth.tokenname.empty();
    if (!own_token && !HasPriv(call.auth, "/access", "Sys.Audit")) {
      return Error(403, "Permission check failed (/access, Sys.Audit)");
    }
  }
  std::vector<std::string> paths;
  if (call.Has("path")) {
    paths = {call.Get("path")};
  } else {
    paths = {"/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"};
    for (const auto& acl : acls_) {
      if (std::find(paths.begin(), paths.end(), acl.path) == paths.end()) paths.push_back(acl.path);
    }
  }
  Json data = Json::object();
  for (const auto& path : paths) {
    auto privs = PrivsLocked(target, path);
    if (privs.empty()) continue;
    Json entry = Json::object();
    for (const auto& priv : privs) entry[priv] = 1;
    data[path] = entry;
  }
  return Ok(data);
}

}  // namespace omni_proxmox::sim::pve
