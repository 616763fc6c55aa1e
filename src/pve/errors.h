// SPDX-License-Identifier: Apache-2.0
#pragma once

// Classification of Proxmox VE errors. Every error the client returns carries an ErrorKind in a
// Status payload, set once by the classifier (parse/error.h), so callers switch on kinds and never
// search messages for substrings.
//
//   kind               absl code           examples
//   kNotFound          NotFound            Configuration file '...' does not exist; volume_size_info on '...' failed
//   kAlreadyExists     AlreadyExists       unable to create VM N - VM N already exists on node 'X'
//   kLocked            Aborted             VM is locked (create); can't lock file '...' - got timeout
//   kNodeUnreachable   Unavailable         HTTP 595/596/597/599 from the forwarding layer
//   kTransient         Unavailable         502/503/504, got no worker upid, no quorum, connection failures
//   kAuth              Unauthenticated     401
//   kPermission        PermissionDenied    403 Permission check failed (path, priv)
//   kBadParameter      InvalidArgument     400 with per-parameter errors (ParameterErrors())
//   kTaskFailed        Unknown             a task ended with an unclassified error exit status
//   kTimeout           DeadlineExceeded    a request or task wait ran past its deadline
//   kTls               FailedPrecondition  certificate verification failed: fix caFile / insecureSkipVerify;
//                                          or the URL's scheme is not what the port speaks (https/http)
//   kUnsupported       Unimplemented       501 (unknown path or method)
//   kOther             Unknown             any other 500 (PVE's catch-all for handler errors)

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace omni_proxmox::pve {

enum class ErrorKind {
  kOk,
  kNotFound,
  kAlreadyExists,
  kLocked,
  kNodeUnreachable,
  kTransient,
  kAuth,
  kPermission,
  kBadParameter,
  kTaskFailed,
  kTimeout,
  kTls,
  kUnsupported,
  // Not sent: this replica may not change anything now (util::MutationGate). Never retried by the
  // client: the lease decides, not time.
  kFenced,
  kOther,
};

// "not-found", "locked", ... (stable; used in logs and JSON output).
std::string_view ErrorKindName(ErrorKind kind);

// The absl code used for a kind.
absl::StatusCode ErrorKindCode(ErrorKind kind);

// Builds a Status of `kind` with `message`, carrying the kind (and, when non-empty, per-parameter
// errors and the HTTP status) as payloads.
absl::Status MakeError(ErrorKind kind, std::string_view message,
                       const std::map<std::string, std::string>& parameter_errors = {}, int http_status = 0);

// The kind of an error returned by the pve module. For a Status without our payload (from another
// module), the kind is derived from its code. kOk for an OK status.
ErrorKind ClassifyError(const absl::Status& status);

// Per-parameter messages of a kBadParameter error (400 `errors` map): parameter -> message.
std::map<std::string, std::string> ParameterErrors(const absl::Status& status);

// The HTTP status behind an error, when it came from an HTTP reply.
std::optional<int> HttpStatusOf(const absl::Status& status);

// The last lines of a failed task's log, when the error came from WaitTask().
std::vector<std::string> TaskLogTail(const absl::Status& status);

// Attaches the last task-log lines to a task error.
void SetTaskLogTail(absl::Status& status, const std::vector<std::string>& lines);

// True for kinds that a retry may cure without any change (kTransient only; kNodeUnreachable is
// left to the caller's requeue, because a dead node takes up to 30 s per attempt to fail).
bool IsRetryable(ErrorKind kind);

}  // namespace omni_proxmox::pve
