// SPDX-License-Identifier: Apache-2.0
#pragma once

// A private certificate authority made in the test (OpenSSL): a CA certificate and a server
// certificate it signed for 127.0.0.1 and localhost, as a self-hosted Omni behind its own CA has.
// The CA is not self-usable as a server certificate, so a client that trusts only the server
// certificate, or only the system bundle, fails verification.

#include <string>

#include "absl/status/statusor.h"

namespace omni_proxmox::testing {

struct PrivateCa {
  std::string ca_pem;           // the CA's certificate: what --omni-ca-file names
  std::string server_cert_pem;  // signed by the CA, subjectAltName IP:127.0.0.1, DNS:localhost
  std::string server_key_pem;
};

// `name` goes into both subjects' CN, so two CAs of one test are told apart.
absl::StatusOr<PrivateCa> MakePrivateCa(const std::string& name = "omni-proxmox test CA");

}  // namespace omni_proxmox::testing
