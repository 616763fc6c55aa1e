// SPDX-License-Identifier: Apache-2.0
#include "sim/omni/accounts.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <rnp/rnp.h>
#include <rnp/rnp_err.h>

namespace omni_proxmox::sim::omni {
namespace {

using std::chrono::seconds;

constexpr auto kTimestampSkew = std::chrono::minutes(5);
constexpr auto kMaxKeyLifetime = std::chrono::hours(24 * 365) + std::chrono::minutes(1);

std::int64_t UnixSeconds(util::Clock::SystemTime t) {
  return std::chrono::duration_cast<seconds>(t.time_since_epoch()).count();
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

absl::Status RnpError(const char* what, rnp_result_t rc) {
  return absl::InternalError(fmt::format("librnp {}: {} (0x{:x})", what, rnp_result_to_string(rc), rc));
}

// RAII holders for the librnp handles used here.
struct FfiHandle {
  rnp_ffi_t ffi = nullptr;
  ~FfiHandle() {
    if (ffi != nullptr) rnp_ffi_destroy(ffi);
  }
};
struct KeyHandle {
  rnp_key_handle_t key = nullptr;
  ~KeyHandle() {
    if (key != nullptr) rnp_key_handle_destroy(key);
  }
};
struct OutputHandle {
  rnp_output_t output = nullptr;
  ~OutputHandle() {
    if (output != nullptr) rnp_output_destroy(output);
  }
};
struct InputHandle {
  rnp_input_t input = nullptr;
  ~InputHandle() {
    if (input != nullptr) rnp_input_destroy(input);
  }
};
struct GenerateHandle {
  rnp_op_generate_t op = nullptr;
  ~GenerateHandle() {
    if (op != nullptr) rnp_op_generate_destroy(op);
  }
};
struct VerifyHandle {
  rnp_op_verify_t op = nullptr;
  ~VerifyHandle() {
    if (op != nullptr) rnp_op_verify_destroy(op);
  }
};

absl::StatusOr<std::string> Export(rnp_key_handle_t key, std::uint32_t flags) {
  OutputHandle out;
  if (auto rc = rnp_output_to_memory(&out.output, 0); rc != RNP_SUCCESS) return RnpError("output", rc);
  if (auto rc = rnp_key_export(key, out.output, flags); rc != RNP_SUCCESS) return RnpError("export key", rc);
  std::uint8_t* buf = nullptr;
  std::size_t len = 0;
  if (auto rc = rnp_output_memory_get_buf(out.output, &buf, &len, false); rc != RNP_SUCCESS) {
    return RnpError("output buffer", rc);
  }
  return std::string(reinterpret_cast<const char*>(buf), len);
}

absl::StatusOr<std::string> Fingerprint(rnp_key_handle_t key) {
  char* fprint = nullptr;
  if (auto rc = rnp_key_get_fprint(key, &fprint); rc != RNP_SUCCESS) return RnpError("fingerprint", rc);
  std::string out = Lower(fprint);
  rnp_buffer_destroy(fprint);
  return out;
}

absl::Status Generate(rnp_op_generate_t op, const char* what) {
  if (auto rc = rnp_op_generate_execute(op); rc != RNP_SUCCESS) return RnpError(what, rc);
  return absl::OkStatus();
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kNone:
      return "None";
    case Role::kInfraProvider:
      return "InfraProvider";
    case Role::kReader:
      return "Reader";
    case Role::kOperator:
      return "Operator";
    case Role::kAdmin:
      return "Admin";
  }
  return "None";
}

absl::StatusOr<Role> ParseRole(const std::string& name) {
  for (Role role : {Role::kInfraProvider, Role::kReader, Role::kOperator, Role::kAdmin}) {
    if (name == RoleName(role)) return role;
  }
  return absl::InvalidArgumentError(
      fmt::format("role '{}': use Reader, Operator or Admin (InfraProvider is for infra providers)", name));
}

const std::vector<std::string>& SignedHeaderNames() {
  static const std::vector<std::string> names = {
      "x-sidero-timestamp", "nodes", "selectors",    "fieldSelectors", "runtime", "context", "cluster",
      "namespace",          "uid",   "authorization"};
  return names;
}

std::string Base64Encode(const std::string& bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                            (static_cast<unsigned char>(bytes[i + 1]) << 8) | static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const std::uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const std::uint32_t v =
        (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

absl::StatusOr<std::string> Base64Decode(const std::string& text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (text.size() % 4 != 0) return absl::InvalidArgumentError("base64: length is not a multiple of 4");
  std::string out;
  for (std::size_t i = 0; i < text.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=' && i + 4 == text.size() && j >= 2) {
        v[j] = 0;
        ++pad;
        continue;
      }
      if (pad > 0 || (v[j] = value(c)) < 0) return absl::InvalidArgumentError("base64: invalid character");
    }
    const std::uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out += static_cast<char>((n >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

absl::StatusOr<GeneratedKey> GenerateServiceAccountKey(const std::string& account_name, const std::string& user_name,
                                                       const std::string& email, std::chrono::seconds lifetime,
                                                       util::Clock::SystemTime now) {
  if (lifetime.count() <= 0 || lifetime > kMaxKeyLifetime) {
    return absl::InvalidArgumentError(
        fmt::format("key lifetime {}s: must be positive and at most 365 days, as Omni requires", lifetime.count()));
  }
  FfiHandle ffi;
  if (auto rc = rnp_ffi_create(&ffi.ffi, "GPG", "GPG"); rc != RNP_SUCCESS) return RnpError("ffi", rc);
  // Key creation time follows the injected clock.
  rnp_set_timestamp(ffi.ffi, static_cast<std::uint64_t>(UnixSeconds(now)));

  KeyHandle primary;
  {
    GenerateHandle op;
    if (auto rc = rnp_op_generate_create(&op.op, ffi.ffi, "EDDSA"); rc != RNP_SUCCESS) return RnpError("generate", rc);
    const std::string uid = fmt::format("{} (sim) <{}>", user_name, email);
    rnp_op_generate_set_userid(op.op, uid.c_str());
    rnp_op_generate_set_expiration(op.op, static_cast<std::uint32_t>(lifetime.count()));
    rnp_op_generate_add_usage(op.op, "sign");
    rnp_op_generate_add_usage(op.op, "certify");
    rnp_op_generate_set_hash(op.op, "SHA256");
    if (auto status = Generate(op.op, "generate primary key"); !status.ok()) return status;
    if (auto rc = rnp_op_generate_get_key(op.op, &primary.key); rc != RNP_SUCCESS) return RnpError("get key", rc);
  }
  {
    GenerateHandle op;
    if (auto rc = rnp_op_generate_subkey_create(&op.op, ffi.ffi, primary.key, "ECDH"); rc != RNP_SUCCESS) {
      return RnpError("generate subkey", rc);
    }
    rnp_op_generate_set_curve(op.op, "Curve25519");
    rnp_op_generate_add_usage(op.op, "encrypt");
    rnp_op_generate_set_expiration(op.op, static_cast<std::uint32_t>(lifetime.count()));
    if (auto status = Generate(op.op, "generate subkey"); !status.ok()) return status;
  }

  auto secret = Export(primary.key, RNP_KEY_EXPORT_ARMORED | RNP_KEY_EXPORT_SECRET | RNP_KEY_EXPORT_SUBKEYS);
  if (!secret.ok()) return secret.status();
  auto pub = Export(primary.key, RNP_KEY_EXPORT_ARMORED | RNP_KEY_EXPORT_PUBLIC | RNP_KEY_EXPORT_SUBKEYS);
  if (!pub.ok()) return pub.status();
  auto fingerprint = Fingerprint(primary.key);
  if (!fingerprint.ok()) return fingerprint.status();

  GeneratedKey key;
  nlohmann::json json = {{"name", account_name}, {"pgp_key", *secret}};
  key.encoded = util::Secret<std::string>(Base64Encode(json.dump()));
  key.name = account_name;
  key.email = email;
  key.fingerprint = *fingerprint;
  key.public_key_armored = *pub;
  key.expires = now + lifetime;
  return key;
}

absl::StatusOr<GeneratedKey> GenerateInfraProviderKey(const std::string& provider_id, util::Clock::SystemTime now,
                                                      std::chrono::seconds lifetime) {
  return GenerateServiceAccountKey("infra-provider:" + provider_id, provider_id,
                                   provider_id + kInfraProviderEmailSuffix, lifetime, now);
}

// One librnp FFI per registered key, so a signature can only verify against the key its
// header names.
struct KeyRegistry::Ffi {
  std::map<std::string, std::unique_ptr<FfiHandle>> by_fingerprint;
};

KeyRegistry::KeyRegistry(const util::Clock& clock) : clock_(clock), ffi_(std::make_unique<Ffi>()) {}

KeyRegistry::~KeyRegistry() = default;

absl::Status KeyRegistry::Register(const GeneratedKey& key, Role role) {
  const auto now = clock_.Now();
  if (key.expires <= now) return absl::InvalidArgumentError("public key: already expired: generate a new key");
  if (key.expires - now > kMaxKeyLifetime) {
    return absl::InvalidArgumentError("public key: lifetime exceeds 365 days: generate it with a shorter ttl");
  }
  const bool infra_email = key.email.size() > std::string(kInfraProviderEmailSuffix).size() &&
                           key.email.ends_with(kInfraProviderEmailSuffix);
  if ((role == Role::kInfraProvider) != infra_email) {
    return absl::InvalidArgumentError(fmt::format(
        "service account '{}': infra-provider accounts must have role InfraProvider and an email ending in {}",
        key.name, kInfraProviderEmailSuffix));
  }
  if (role == Role::kInfraProvider && !key.name.starts_with("infra-provider:")) {
    return absl::InvalidArgumentError(
        fmt::format("service account '{}': infra-provider account names start with 'infra-provider:'", key.name));
  }

  auto handle = std::make_unique<FfiHandle>();
  if (auto rc = rnp_ffi_create(&handle->ffi, "GPG", "GPG"); rc != RNP_SUCCESS) return RnpError("ffi", rc);
  rnp_set_timestamp(handle->ffi, static_cast<std::uint64_t>(UnixSeconds(now)));
  InputHandle input;
  if (auto rc =
          rnp_input_from_memory(&input.input, reinterpret_cast<const std::uint8_t*>(key.public_key_armored.data()),
                                key.public_key_armored.size(), false);
      rc != RNP_SUCCESS) {
    return RnpError("input", rc);
  }
  if (auto rc = rnp_import_keys(handle->ffi, input.input, RNP_LOAD_SAVE_PUBLIC_KEYS, nullptr); rc != RNP_SUCCESS) {
    return absl::InvalidArgumentError(
        fmt::format("public key of '{}': librnp cannot import it: {}", key.name, rnp_result_to_string(rc)));
  }
  KeyHandle located;
  if (auto rc = rnp_locate_key(handle->ffi, "fingerprint", key.fingerprint.c_str(), &located.key);
      rc != RNP_SUCCESS || located.key == nullptr) {
    return absl::InvalidArgumentError(
        fmt::format("public key of '{}': fingerprint {} is not in the armored key", key.name, key.fingerprint));
  }
  rnp_set_timestamp(handle->ffi, 0);

  std::lock_guard lock(mutex_);
  keys_[key.fingerprint] = RegisteredKey{key.fingerprint, key.email, role, key.expires, true, false};
  ffi_->by_fingerprint[key.fingerprint] = std::move(handle);
  return absl::OkStatus();
}

absl::Status KeyRegistry::Revoke(const std::string& fingerprint) {
  std::lock_guard lock(mutex_);
  auto it = keys_.find(Lower(fingerprint));
  if (it == keys_.end()) return absl::NotFoundError(fmt::format("public key {} is not registered", fingerprint));
  it->second.revoked = true;
  return absl::OkStatus();
}

int KeyRegistry::RemoveAccount(const std::string& email) {
  std::lock_guard lock(mutex_);
  int removed = 0;
  for (auto it = keys_.begin(); it != keys_.end();) {
    if (it->second.email != email) {
      ++it;
      continue;
    }
    ffi_->by_fingerprint.erase(it->first);
    it = keys_.erase(it);
    ++removed;
  }
  return removed;
}

std::vector<RegisteredKey> KeyRegistry::Keys() const {
  std::lock_guard lock(mutex_);
  std::vector<RegisteredKey> out;
  for (const auto& [fp, key] : keys_) out.push_back(key);
  return out;
}

namespace {
// "key <fingerprint> of <identity>" as the signature header claims it, so a refusal names the key
// whatever check failed (two Omnis answering on one address each refuse the other's keys).
std::string ClaimedKey(const Metadata& metadata) {
  auto [begin, end] = metadata.equal_range("x-sidero-signature");
  if (begin == end) return "unsigned call";
  std::vector<std::string> parts;
  for (std::size_t start = 0; parts.size() < 3;) {
    auto space = begin->second.find(' ', start);
    parts.push_back(begin->second.substr(start, space == std::string::npos ? std::string::npos : space - start));
    if (space == std::string::npos) break;
    start = space + 1;
  }
  if (parts.size() < 3) return "malformed signature header";
  return fmt::format("key {} of {}", parts[2], parts[1]);
}
}  // namespace

absl::StatusOr<Caller> KeyRegistry::Verify(const std::string& method, const Metadata& metadata,
                                           std::string* reason) const {
  auto caller = VerifyDetailed(method, metadata);
  if (caller.ok()) return caller;
  if (reason != nullptr) *reason = fmt::format("{}: {}", ClaimedKey(metadata), std::string(caller.status().message()));
  return absl::UnauthenticatedError("invalid signature");
}

absl::StatusOr<Caller> KeyRegistry::VerifyDetailed(const std::string& method, const Metadata& metadata) const {
  auto single = [&](const std::string& key) -> absl::StatusOr<std::string> {
    auto [begin, end] = metadata.equal_range(key);
    if (begin == end) return absl::UnauthenticatedError(fmt::format("missing {} header", key));
    if (std::next(begin) != end) return absl::UnauthenticatedError(fmt::format("more than one {} header", key));
    return begin->second;
  };
  auto header = single("x-sidero-signature");
  if (!header.ok()) return header.status();
  std::vector<std::string> parts;
  for (std::size_t start = 0;;) {
    auto space = header->find(' ', start);
    parts.push_back(header->substr(start, space == std::string::npos ? std::string::npos : space - start));
    if (space == std::string::npos) break;
    start = space + 1;
  }
  if (parts.size() != 4) return absl::UnauthenticatedError("signature header does not have 4 space-separated fields");
  if (parts[0] != "siderov1")
    return absl::UnauthenticatedError(fmt::format("unknown signature version '{}'", parts[0]));
  const std::string fingerprint = parts[2];

  RegisteredKey key;
  {
    std::lock_guard lock(mutex_);
    auto it = keys_.find(fingerprint);
    if (it == keys_.end()) return absl::UnauthenticatedError(fmt::format("unknown key fingerprint {}", fingerprint));
    key = it->second;
  }
  const auto now = clock_.Now();
  if (key.revoked) return absl::UnauthenticatedError("public key revoked");
  if (!key.confirmed) return absl::UnauthenticatedError("public key not confirmed");
  if (key.expires <= now) return absl::UnauthenticatedError("public key expired");

  auto timestamp = single("x-sidero-timestamp");
  if (!timestamp.ok()) return timestamp.status();
  std::int64_t ts = 0;
  auto [ptr, ec] = std::from_chars(timestamp->data(), timestamp->data() + timestamp->size(), ts);
  if (ec != std::errc() || ptr != timestamp->data() + timestamp->size()) {
    return absl::UnauthenticatedError(fmt::format("timestamp '{}' is not decimal Unix seconds", *timestamp));
  }
  const std::int64_t skew = UnixSeconds(now) - ts;
  if (skew > std::chrono::duration_cast<seconds>(kTimestampSkew).count() ||
      -skew > std::chrono::duration_cast<seconds>(kTimestampSkew).count()) {
    return absl::UnauthenticatedError(fmt::format("timestamp is {}s away from server time (max 300s)", skew));
  }

  auto payload = single("x-sidero-payload");
  if (!payload.ok()) return payload.status();
  nlohmann::json parsed = nlohmann::json::parse(*payload, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) return absl::UnauthenticatedError("payload is not a JSON object");
  if (!parsed.contains("method") || !parsed["method"].is_string() || parsed["method"].get<std::string>() != method) {
    return absl::UnauthenticatedError(fmt::format("payload method does not match {}", method));
  }
  const nlohmann::json empty_object = nlohmann::json::object();
  const nlohmann::json* headers = &empty_object;
  if (parsed.contains("headers") && !parsed["headers"].is_null()) {
    if (!parsed["headers"].is_object()) return absl::UnauthenticatedError("payload headers is not an object");
    headers = &parsed["headers"];
  }
  for (const auto& name : SignedHeaderNames()) {
    // Received metadata keys are lowercase, so the mixed-case "fieldSelectors" never has values.
    std::vector<std::string> received;
    auto [begin, end] = metadata.equal_range(name);
    for (auto it = begin; it != end; ++it) received.push_back(it->second);
    const bool signed_absent = !headers->contains(name) || (*headers)[name].is_null();
    if (signed_absent) {
      if (!received.empty()) return absl::UnauthenticatedError(fmt::format("header {} was not signed", name));
      continue;
    }
    const auto& value = (*headers)[name];
    if (!value.is_array()) return absl::UnauthenticatedError(fmt::format("payload header {} is not a list", name));
    // Go's DeepEqual: an empty list never equals an absent header.
    if (received.empty()) return absl::UnauthenticatedError(fmt::format("signed header {} was not sent", name));
    std::vector<std::string> signed_values;
    for (const auto& v : value) {
      if (!v.is_string()) return absl::UnauthenticatedError(fmt::format("payload header {} has a non-string", name));
      signed_values.push_back(v.get<std::string>());
    }
    if (signed_values != received) {
      return absl::UnauthenticatedError(fmt::format("header {} differs from its signed value", name));
    }
  }

  auto signature = Base64Decode(parts[3]);
  if (!signature.ok()) return absl::UnauthenticatedError("signature is not base64");
  // gopenpgp verifies at "now" and retries a little in the future, tolerating a signature
  // created slightly ahead of the server clock.
  const auto lifetime_half = std::chrono::duration_cast<seconds>((key.expires - now) / 2);
  auto verified = VerifyDetachedSignature(fingerprint, *payload, *signature, seconds(0));
  if (!verified.ok()) {
    verified = VerifyDetachedSignature(fingerprint, *payload, *signature,
                                       std::min(std::chrono::duration_cast<seconds>(kTimestampSkew), lifetime_half));
  }
  if (!verified.ok()) return verified;

  Caller caller;
  caller.email = key.email;
  caller.role = key.role;
  if (key.email.ends_with(kInfraProviderEmailSuffix)) {
    caller.provider_id = key.email.substr(0, key.email.size() - std::string(kInfraProviderEmailSuffix).size());
  }
  return caller;
}

absl::Status KeyRegistry::VerifyDetachedSignature(const std::string& fingerprint, const std::string& payload,
                                                  const std::string& signature, seconds verify_at_offset) const {
  std::lock_guard lock(mutex_);
  auto it = ffi_->by_fingerprint.find(fingerprint);
  if (it == ffi_->by_fingerprint.end()) return absl::UnauthenticatedError("no verification key");
  rnp_ffi_t ffi = it->second->ffi;
  rnp_set_timestamp(ffi, static_cast<std::uint64_t>(UnixSeconds(clock_.Now() + verify_at_offset)));
  InputHandle data;
  InputHandle sig;
  rnp_input_from_memory(&data.input, reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size(), false);
  rnp_input_from_memory(&sig.input, reinterpret_cast<const std::uint8_t*>(signature.data()), signature.size(), false);
  VerifyHandle op;
  absl::Status result = absl::OkStatus();
  if (auto rc = rnp_op_verify_detached_create(&op.op, ffi, data.input, sig.input); rc != RNP_SUCCESS) {
    result = absl::UnauthenticatedError(fmt::format("signature unreadable: {}", rnp_result_to_string(rc)));
  } else if (auto rc2 = rnp_op_verify_execute(op.op); rc2 != RNP_SUCCESS) {
    result = absl::UnauthenticatedError(fmt::format("signature does not verify: {}", rnp_result_to_string(rc2)));
  } else {
    std::size_t count = 0;
    rnp_op_verify_get_signature_count(op.op, &count);
    if (count != 1) result = absl::UnauthenticatedError(fmt::format("expected 1 signature, found {}", count));
  }
  rnp_set_timestamp(ffi, 0);
  return result;
}

}  // namespace omni_proxmox::sim::omni
