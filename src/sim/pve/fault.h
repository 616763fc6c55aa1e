// SPDX-License-Identifier: Apache-2.0
#pragma once

// The fault the Proxmox simulator injects into matching requests (Simulator::SetFault, the scenario's
// `faults:` list and POST /_sim/fault). A plain value: copyable, thread-compatible.

#include <chrono>
#include <string>

namespace omni_proxmox::sim::pve {

// Fault injected into requests whose "<METHOD> <path>" matches a pattern (see Simulator::SetFault).
struct FaultSpec {
  double error_rate = 1.0;                  // probability in [0, 1] that a matching request is affected
  int status_code = 500;                    // answered status; 595/596 get an empty body like PVE's forwarder
  std::string message = "simulated fault";  // the reason phrase
  std::chrono::milliseconds latency{0};     // added before answering (real time, not simulated)
  bool drop_connection = false;             // close the socket without answering
  // Carry the request out first, then add the latency and drop or replace the answer: the client
  // cannot tell whether its create or delete happened (a proxy timeout, a connection lost mid-reply).
  bool after_effect = false;
};

}  // namespace omni_proxmox::sim::pve
