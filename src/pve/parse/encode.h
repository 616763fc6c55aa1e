// SPDX-License-Identifier: Apache-2.0
#pragma once

// Request encoding (pure): percent-encoding for path segments, query strings and
// application/x-www-form-urlencoded bodies. GET/DELETE parameters go in the query string, POST/PUT
// parameters in a form body; booleans are sent as 0/1 by the callers (FormBool()).

#include <string>
#include <string_view>

#include "pve/types.h"

namespace omni_proxmox::pve::parse {

// Percent-encodes everything except RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~).
std::string PercentEncode(std::string_view text);

// Encodes one URL path segment: unreserved characters and the RFC 3986 sub-delims ":@!$&'()*+,;="
// stay as they are (Proxmox clients send UPIDs and volume IDs raw); with keep_slash, '/' too (the
// volume part of a content path spans the rest of the path).
std::string EncodePathSegment(std::string_view text, bool keep_slash = false);

// "k1=v1&k2=v2", each part percent-encoded. Empty for no fields.
std::string FormEncode(const FormFields& fields);

// Copies `fields` with secret-bearing values ("password", anything with "secret" or "token" in the
// name) replaced by "***", for debug logs.
FormFields RedactFields(const FormFields& fields);

}  // namespace omni_proxmox::pve::parse
