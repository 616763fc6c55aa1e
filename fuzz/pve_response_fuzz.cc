// SPDX-License-Identifier: Apache-2.0
// Fuzzes the Proxmox VE reply decoders (src/pve/parse) with arbitrary bytes as the body the client
// would receive: every response parser, the UPID decoder, and the error-reply classifier.
//
// Invariants checked beyond "no crash, no sanitizer report, no hang" (which is most of the point:
// these run on bytes from the network):
//  - a failed parse is an error status with a message (the client logs and returns it);
//  - a parsed UPID keeps its text verbatim, and that text parses to the same fields again;
//  - an HTTP error reply always becomes a non-OK status.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pve/parse/error.h"
#include "pve/parse/responses.h"
#include "pve/parse/upid.h"

namespace {

namespace parse = omni_proxmox::pve::parse;

void Require(bool condition) {
  if (!condition) std::abort();
}

template <typename T>
void CheckFailure(const absl::StatusOr<T>& result) {
  if (!result.ok()) Require(!result.status().message().empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  CheckFailure(parse::ParseTicket(body));
  CheckFailure(parse::ParseVersion(body));
  CheckFailure(parse::ParsePermissions(body));
  CheckFailure(parse::ParseNodes(body));
  CheckFailure(parse::ParseClusterResources(body));
  CheckFailure(parse::ParseNextId(body));
  CheckFailure(parse::ParseNodeStorages(body));
  CheckFailure(parse::ParseStorageContent(body));
  CheckFailure(parse::ParseVolumeInfo(body));
  CheckFailure(parse::ParseVmStatus(body));
  CheckFailure(parse::ParseVmList(body));
  CheckFailure(parse::ParseVmConfig(body));
  CheckFailure(parse::ParseTaskStatus(body));
  CheckFailure(parse::ParseTaskLog(body));
  CheckFailure(parse::ParseTaskList(body));
  CheckFailure(parse::ParseUpidData(body, "POST /nodes/pve1/qemu"));
  CheckFailure(parse::ParseOptionalUpidData(body, "POST /nodes/pve1/qemu/100/config"));
  (void)parse::SplitCommaList(body);

  auto upid = parse::ParseUpid(body);
  if (upid.ok()) {
    auto reparsed = parse::ParseUpid(upid->text);
    Require(reparsed.ok());
    Require(reparsed->node == upid->node && reparsed->pid == upid->pid && reparsed->pstart == upid->pstart &&
            reparsed->start_time_unix == upid->start_time_unix && reparsed->type == upid->type &&
            reparsed->id == upid->id && reparsed->user == upid->user);
  }

  // An error reply: the first line is the reason phrase, the rest the body.
  const std::size_t newline = body.find('\n');
  const std::string_view reason = body.substr(0, newline);
  const std::string_view error_body = newline == std::string_view::npos ? std::string_view() : body.substr(newline + 1);
  (void)parse::ClassifyMessage(body);
  for (int http_status : {400, 500, 595}) {
    Require(!parse::ErrorFromHttp(http_status, reason, error_body, "GET /nodes").ok());
  }
  return 0;
}
