// SPDX-License-Identifier: Apache-2.0
// Fuzzes the providerdata parser (provider::ParseProviderData) with arbitrary YAML text.
//
// Invariants checked beyond "no crash, no sanitizer report, no hang":
//  - the parser never throws (yaml-cpp does; ParseProviderData promises not to);
//  - a result is ok exactly when no diagnostic is an error, and every error explains itself;
//  - parsing is deterministic (the same text gives the same diagnostics).

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "provider/model/providerdata.h"

namespace {

namespace provider = omni_proxmox::provider;

void Require(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);
  const provider::ParseResult result = provider::ParseProviderData(yaml);
  bool has_error = false;
  for (const auto& diagnostic : result.diagnostics) {
    Require(!diagnostic.message.empty());
    Require(diagnostic.line >= 0 && diagnostic.column >= 0);
    if (diagnostic.severity == provider::Diagnostic::Severity::kError) has_error = true;
    (void)diagnostic.ToString();
  }
  Require(result.ok() == !has_error);
  if (!result.ok()) Require(!result.ErrorSummary().empty());

  const provider::ParseResult again = provider::ParseProviderData(yaml);
  Require(again.ok() == result.ok());
  Require(again.diagnostics.size() == result.diagnostics.size());
  for (std::size_t i = 0; i < result.diagnostics.size(); ++i) {
    Require(again.diagnostics[i].ToString() == result.diagnostics[i].ToString());
  }
  return 0;
}
