// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "omni/call_monitor.h"
#include "omni/keys.h"
#include "util/clock.h"
#include "util/mutation_gate.h"
#include "util/random.h"

namespace omni_proxmox::omni {

// How to reach and authenticate to Omni; shared by the State and Management clients.
struct ClientOptions {
  // Omni API URL (§1.1): https://host[:port] (TLS) or http://host:port / grpc://host:port (h2c).
  std::string endpoint;
  // Skip TLS certificate verification (--insecure-skip-verify).
  bool insecure_skip_verify = false;
  // PEM roots to trust (tests); empty: the file tls_roots.h resolves from tls_ca_file and the
  // environment (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, SSL_CERT_FILE), else the system bundle.
  std::string tls_root_certs_pem;
  // A CA bundle to trust instead of the system one (--omni-ca-file); `tls_ca_file_origin` names
  // the flag or variable it came from, for errors.
  std::string tls_ca_file;
  std::string tls_ca_file_origin = "--omni-ca-file";
  // The service-account key that signs every call.
  ServiceAccountKey key;
  // Refuse keys whose name does not start with "infra-provider:" (on when running as a provider).
  bool require_infra_provider_key = true;
  // Sent as "providerid" on COSI State calls; defaults to the ID in the key name.
  std::string provider_id;
  // Time source for signatures and health; must outlive the client.
  const util::Clock* clock = &util::RealClock();
  // Jitter for reconnect backoff; must outlive the client. Null: the client seeds its own.
  util::Random* random = nullptr;
  // Deadline of each unary call and of each List stream.
  std::chrono::milliseconds call_timeout{30'000};
  // Watch reconnect backoff (capped exponential with jitter); never gives up. Capped at 10 s so a
  // watch notices new work soon after an Omni restart (with a 60 s cap, watches were up to 50 s
  // behind); a waiting watch also reconnects at once when any other call is answered.
  std::chrono::milliseconds reconnect_base{500};
  std::chrono::milliseconds reconnect_max{10'000};
  // Attempts of a read-modify-write on version conflicts (FailedPrecondition) before giving up.
  int conflict_attempts = 10;
  // gRPC client keepalive ping interval (the Go client pings every minute).
  std::chrono::milliseconds keepalive{60'000};
  // Sent as x-omni-proxmox-replica metadata on every call when set, so a stand-in can tell two
  // replicas apart (Omni ignores it).
  std::string replica;
  // Asked right before every mutating call (Create, Update, Destroy, Teardown, and the schematic
  // create) goes out; a closed gate fails the call with Aborted and nothing is sent. May be null;
  // must outlive the client.
  const util::MutationGate* mutation_gate = nullptr;
  // Shared by every client of one process, so refusals of the key are counted once and an answer
  // to any client re-arms every waiting watch. Null: the client makes its own.
  std::shared_ptr<CallMonitor> monitor;
};

}  // namespace omni_proxmox::omni
