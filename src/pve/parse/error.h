// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string_view>

#include "absl/status/status.h"

#include "pve/errors.h"

namespace omni_proxmox::pve::parse {

// Classifies a Proxmox error text: an HTTP reason phrase, a body `message`, or a task exit
// status. Returns kOther for texts with no specific meaning. Pure.
ErrorKind ClassifyMessage(std::string_view message);

// The error for a non-2xx HTTP reply. Reads the reason phrase (the message's first line, which is
// all some PVE errors carry: 401, 595/596 and pre-8.3 500s have empty bodies) and the body's
// `message` and `errors` map when present. `context` ("GET /nodes/pve1/qemu/105/config") is
// prepended to the message. Bounded: bodies over 1 MiB are not parsed. Pure.
absl::Status ErrorFromHttp(int http_status, std::string_view reason, std::string_view body, std::string_view context);

}  // namespace omni_proxmox::pve::parse
