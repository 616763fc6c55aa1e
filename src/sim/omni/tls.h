// SPDX-License-Identifier: Apache-2.0
#pragma once

// A self-signed certificate for the stand-in's optional TLS (OpenSSL).

#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace omni_proxmox::sim::omni {

// Returns {certificate PEM, private key PEM}: ECDSA P-256, valid from a day ago for a year by the
// system clock (TLS peers check validity against their own real clock, not an injected one), with
// subjectAltName IP/DNS `host` (IP when it parses as one) plus DNS:localhost and IP:127.0.0.1, and
// CA:TRUE so clients can use it directly as their trust root.
absl::StatusOr<std::pair<std::string, std::string>> SelfSignedCertificate(const std::string& host);

}  // namespace omni_proxmox::sim::omni
