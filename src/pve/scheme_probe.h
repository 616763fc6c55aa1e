// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the server behind a Proxmox URL speaks, asked only after a request failed before any HTTP
// reply: an https:// URL whose TLS handshake got no answer or a garbled one, or an http:// URL
// whose server closed the connection without a reply. The answer turns a timeout or "Server
// returned nothing" into "this port speaks plain http" / "this port speaks TLS". Internal to pve/.

#include <chrono>
#include <string>

namespace omni_proxmox::pve {

enum class Speaks { kUnknown, kPlainHttp, kTls };

// Asks `base_url`'s host and port in the other scheme: for an https:// URL, whether a plain HTTP
// GET gets an HTTP status line; for an http:// URL, whether a TLS handshake completes (the
// certificate is not checked: only the protocol matters). Bounded by `timeout`; kUnknown when
// neither answers.
Speaks ProbeScheme(const std::string& base_url, std::chrono::milliseconds timeout);

// `base_url` with its scheme switched (https:// <-> http://).
std::string WithOtherScheme(const std::string& base_url);

}  // namespace omni_proxmox::pve
