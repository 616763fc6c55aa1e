// SPDX-License-Identifier: Apache-2.0
#include "pve/errors.h"

#include <charconv>

#include "absl/strings/cord.h"

namespace omni_proxmox::pve {
namespace {

constexpr char kKindUrl[] = "type.omni-proxmox/pve.ErrorKind";
constexpr char kParamsUrl[] = "type.omni-proxmox/pve.ParameterErrors";
constexpr char kHttpUrl[] = "type.omni-proxmox/pve.HttpStatus";
constexpr char kTaskLogUrl[] = "type.omni-proxmox/pve.TaskLogTail";

struct KindInfo {
  ErrorKind kind;
  std::string_view name;
  absl::StatusCode code;
};

constexpr KindInfo kKinds[] = {
    {ErrorKind::kOk, "ok", absl::StatusCode::kOk},
    {ErrorKind::kNotFound, "not-found", absl::StatusCode::kNotFound},
    {ErrorKind::kAlreadyExists, "already-exists", absl::StatusCode::kAlreadyExists},
    {ErrorKind::kLocked, "locked", absl::StatusCode::kAborted},
    {ErrorKind::kNodeUnreachable, "node-unreachable", absl::StatusCode::kUnavailable},
    {ErrorKind::kTransient, "transient", absl::StatusCode::kUnavailable},
    {ErrorKind::kAuth, "auth", absl::StatusCode::kUnauthenticated},
    {ErrorKind::kPermission, "permission", absl::StatusCode::kPermissionDenied},
    {ErrorKind::kBadParameter, "bad-parameter", absl::StatusCode::kInvalidArgument},
    {ErrorKind::kTaskFailed, "task-failed", absl::StatusCode::kUnknown},
    {ErrorKind::kTimeout, "timeout", absl::StatusCode::kDeadlineExceeded},
    {ErrorKind::kTls, "tls", absl::StatusCode::kFailedPrecondition},
    {ErrorKind::kUnsupported, "unsupported", absl::StatusCode::kUnimplemented},
    {ErrorKind::kFenced, "fenced", absl::StatusCode::kAborted},
    {ErrorKind::kOther, "other", absl::StatusCode::kUnknown},
};

absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Payloads hold NUL-separated strings; NULs inside values (never sent by PVE) become spaces.
std::string JoinNul(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& part : parts) {
    for (char c : part) out.push_back(c == '\0' ? ' ' : c);
    out.push_back('\0');
  }
  return out;
}

std::vector<std::string> SplitNul(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\0', start);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::optional<std::string> Payload(const absl::Status& status, const char* url) {
  auto cord = status.GetPayload(url);
  if (!cord.has_value()) return std::nullopt;
  return std::string(*cord);
}

}  // namespace

std::string_view ErrorKindName(ErrorKind kind) {
  for (const auto& info : kKinds) {
    if (info.kind == kind) return info.name;
  }
  return "other";
}

absl::StatusCode ErrorKindCode(ErrorKind kind) {
  for (const auto& info : kKinds) {
    if (info.kind == kind) return info.code;
  }
  return absl::StatusCode::kUnknown;
}

absl::Status MakeError(ErrorKind kind, std::string_view message,
                       const std::map<std::string, std::string>& parameter_errors, int http_status) {
  absl::StatusCode code = ErrorKindCode(kind);
  if (code == absl::StatusCode::kOk) code = absl::StatusCode::kUnknown;
  absl::Status status(code, Sv(message));
  status.SetPayload(kKindUrl, absl::Cord(Sv(ErrorKindName(kind))));
  if (!parameter_errors.empty()) {
    std::vector<std::string> flat;
    for (const auto& [key, value] : parameter_errors) {
      flat.push_back(key);
      flat.push_back(value);
    }
    status.SetPayload(kParamsUrl, absl::Cord(JoinNul(flat)));
  }
  if (http_status != 0) status.SetPayload(kHttpUrl, absl::Cord(std::to_string(http_status)));
  return status;
}

ErrorKind ClassifyError(const absl::Status& status) {
  if (status.ok()) return ErrorKind::kOk;
  if (auto name = Payload(status, kKindUrl)) {
    for (const auto& info : kKinds) {
      if (info.name == *name) return info.kind;
    }
  }
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return ErrorKind::kNotFound;
    case absl::StatusCode::kAlreadyExists:
      return ErrorKind::kAlreadyExists;
    case absl::StatusCode::kAborted:
      return ErrorKind::kLocked;
    case absl::StatusCode::kUnavailable:
      return ErrorKind::kTransient;
    case absl::StatusCode::kUnauthenticated:
      return ErrorKind::kAuth;
    case absl::StatusCode::kPermissionDenied:
      return ErrorKind::kPermission;
    case absl::StatusCode::kInvalidArgument:
      return ErrorKind::kBadParameter;
    case absl::StatusCode::kDeadlineExceeded:
      return ErrorKind::kTimeout;
    case absl::StatusCode::kUnimplemented:
      return ErrorKind::kUnsupported;
    default:
      return ErrorKind::kOther;
  }
}

std::map<std::string, std::string> ParameterErrors(const absl::Status& status) {
  std::map<std::string, std::string> out;
  auto text = Payload(status, kParamsUrl);
  if (!text.has_value()) return out;
  auto parts = SplitNul(*text);
  for (std::size_t i = 0; i + 1 < parts.size(); i += 2) out[parts[i]] = parts[i + 1];
  return out;
}

std::optional<int> HttpStatusOf(const absl::Status& status) {
  auto text = Payload(status, kHttpUrl);
  if (!text.has_value()) return std::nullopt;
  int value = 0;
  auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || ptr != text->data() + text->size()) return std::nullopt;
  return value;
}

std::vector<std::string> TaskLogTail(const absl::Status& status) {
  auto text = Payload(status, kTaskLogUrl);
  if (!text.has_value()) return {};
  return SplitNul(*text);
}

void SetTaskLogTail(absl::Status& status, const std::vector<std::string>& lines) {
  if (status.ok()) return;
  status.SetPayload(kTaskLogUrl, absl::Cord(JoinNul(lines)));
}

bool IsRetryable(ErrorKind kind) { return kind == ErrorKind::kTransient; }

}  // namespace omni_proxmox::pve
