// SPDX-License-Identifier: Apache-2.0
#include "provider/cloudinit/cidata.h"

#include <array>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <semaphore>

#include <fmt/format.h>
#include <openssl/evp.h>
// We read libisofs' burn_source ourselves instead of linking libburn; this define makes libisofs.h
// declare the struct (a copy of libburn's stable API).
#define LIBISOFS_WITHOUT_LIBBURN 1
#include "absl/status/status.h"
#include <libisofs/libisofs.h>

#include "util/status_macros.h"

namespace omni_proxmox::provider {
namespace {

// Every timestamp in the image: 2000-01-01T00:00:00Z. A fixed value (rather than "now") is what
// makes the image, and therefore its hashed file name, reproducible.
constexpr std::time_t kFixedTime = 946684800;
// The same instant in the 16-digit form libisofs copies verbatim into the volume descriptors,
// which avoids any time zone conversion of the creation/modification dates.
constexpr char kFixedVolumeTime[] = "2000010100000000";
constexpr char kVolumeId[] = "cidata";
constexpr int kIsoBlockBytes = 2048;
// libisofs' writer thread hands blocks to us through a ring buffer of 2 MiB by default, calloc'd
// per image: with a few dozen cidata builds in flight that was the provider's largest peak heap
// consumer (10.5 MiB in the 100-VM scale run). An image with a typical join config is ~75 KiB and
// we drain the ring as fast as it fills, so libisofs' minimum (32 blocks, 64 KiB) costs at most a
// few more hand-offs (a build still takes ~0.1 ms).
constexpr std::size_t kWriterRingBlocks = 32;

// True when `value` reads back from YAML as the same string without quotes: it starts with a
// letter (so it cannot be a number, a timestamp, an anchor or an indicator), uses only
// [A-Za-z0-9._-], and is not a word YAML 1.1 readers turn into a boolean or null.
bool IsPlainYamlSafe(std::string_view value) {
  auto is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (value.empty() || !is_letter(value.front())) return false;
  for (char c : value) {
    if (!is_letter(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.') return false;
  }
  std::string lower;
  for (char c : value) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  static constexpr std::array<std::string_view, 11> kReserved = {"true", "false", "yes", "no",  "on", "off",
                                                                 "null", "y",     "n",   "nan", "inf"};
  for (std::string_view word : kReserved) {
    if (lower == word) return false;
  }
  return true;
}

std::string YamlScalar(std::string_view value) {
  if (IsPlainYamlSafe(value)) return std::string(value);
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
  return out;
}

bool IsHostnameLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

absl::Status ValidateHostname(std::string_view hostname) {
  if (hostname.size() > 253) {
    return absl::InvalidArgumentError(fmt::format(
        "cidata hostname: {} bytes is longer than the 253 allowed; use a shorter host name", hostname.size()));
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = hostname.find('.', start);
    const std::string_view label =
        hostname.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return absl::InvalidArgumentError(
          fmt::format("cidata hostname '{}': each dot-separated label must be 1-63 characters and must not start "
                      "or end with '-'; use an RFC 1123 host name",
                      hostname));
    }
    for (char c : label) {
      if (!IsHostnameLabelChar(c)) {
        return absl::InvalidArgumentError(fmt::format(
            "cidata hostname '{}': character '{}' is not allowed; use letters, digits, '-' and '.'", hostname, c));
      }
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return absl::OkStatus();
}

// Building an image is ~0.1 ms of pure CPU work, so running more builds at once than a small
// machine has cores gains nothing; but each costs a libisofs writer thread (libisofs has
// 64 KiB stack frames), its ring and the image tree. When a node's Talos ISO lands,
// dozens of reconcile workers reach the cidata step together: unbounded, that burst was ~3 MiB
// of the provider's peak RSS in the 100-VM scale run.
class BuildSlot {
 public:
  BuildSlot() { Slots().acquire(); }
  ~BuildSlot() { Slots().release(); }
  BuildSlot(const BuildSlot&) = delete;
  BuildSlot& operator=(const BuildSlot&) = delete;

 private:
  static constexpr std::ptrdiff_t kConcurrentBuilds = 2;
  static std::counting_semaphore<kConcurrentBuilds>& Slots() {
    static std::counting_semaphore<kConcurrentBuilds> slots(kConcurrentBuilds);
    return slots;
  }
};

// libisofs keeps process-wide state (message queue, character set), so it is set up once and
// never torn down: iso_finish() would pull it away from a concurrent build.
absl::Status InitLibisofs() {
  static const int result = [] {
    // bit0: do not read the locale from LC_* variables; our file names are ASCII anyway.
    const int rc = iso_init_with_flag(1);
    if (rc >= 0) {
      // Never print to stderr; errors are reported through the return codes we turn into Status.
      iso_set_msgs_severities(const_cast<char*>("NEVER"), const_cast<char*>("NEVER"), const_cast<char*>("libisofs"));
    }
    return rc;
  }();
  if (result < 0) {
    return absl::InternalError(fmt::format("cidata iso: libisofs initialisation failed: {}", iso_error_to_msg(result)));
  }
  return absl::OkStatus();
}

absl::Status IsoError(std::string_view what, int rc) {
  return absl::InternalError(
      fmt::format("cidata iso: {}: {} (libisofs error {:#x})", what, iso_error_to_msg(rc), static_cast<unsigned>(rc)));
}

struct ImageDeleter {
  void operator()(IsoImage* image) const { iso_image_unref(image); }
};
struct OptsDeleter {
  void operator()(IsoWriteOpts* opts) const { iso_write_opts_free(opts); }
};
struct BurnSourceDeleter {
  // libburn's burn_source_free() does exactly this; we do not link libburn. free_data stops and
  // joins libisofs' writer thread if it is still running (e.g. after a read error).
  void operator()(burn_source* source) const {
    if (source->free_data != nullptr) source->free_data(source);
    std::free(source);
  }
};

void FixNode(IsoNode* node, mode_t mode) {
  iso_node_set_permissions(node, mode);
  iso_node_set_uid(node, 0);
  iso_node_set_gid(node, 0);
  iso_node_set_mtime(node, kFixedTime);
  iso_node_set_atime(node, kFixedTime);
  iso_node_set_ctime(node, kFixedTime);
}

absl::Status AddFile(IsoImage* image, IsoDir* root, const char* name, const std::string& data) {
  // The memory stream takes ownership of a malloc'ed buffer and free()s it. malloc(0) may return
  // null, so always allocate at least one byte.
  auto* buffer = static_cast<unsigned char*>(std::malloc(data.empty() ? 1 : data.size()));
  if (buffer == nullptr) return absl::ResourceExhaustedError(fmt::format("cidata iso: out of memory for {}", name));
  if (!data.empty()) std::memcpy(buffer, data.data(), data.size());
  IsoStream* stream = nullptr;
  int rc = iso_memory_stream_new(buffer, data.size(), &stream);
  if (rc < 0) {
    std::free(buffer);
    return IsoError(fmt::format("create stream for {}", name), rc);
  }
  IsoFile* file = nullptr;
  rc = iso_image_add_new_file(image, root, name, stream, &file);
  if (rc < 0) {
    iso_stream_unref(stream);
    return IsoError(fmt::format("add {}", name), rc);
  }
  FixNode(reinterpret_cast<IsoNode*>(file), 0444);
  return absl::OkStatus();
}

}  // namespace

std::string RenderMetaData(const CidataContent& content) {
  std::string out = fmt::format("instance-id: {}\n", YamlScalar(content.instance_id));
  if (!content.hostname.empty()) {
    const std::string host = YamlScalar(content.hostname);
    out += fmt::format("local-hostname: {}\nhostname: {}\n", host, host);
  }
  return out;
}

std::string DefaultNetworkConfig() {
  return "version: 2\n"
         "ethernets:\n"
         "  all-ethernet:\n"
         "    match:\n"
         "      name: \"e*\"\n"
         "    dhcp4: true\n";
}

absl::Status ValidateCidataContent(const CidataContent& content) {
  if (content.user_data.empty()) {
    return absl::InvalidArgumentError("cidata user_data: empty; pass the Omni join config (RenderJoinConfig)");
  }
  if (content.user_data.size() > kMaxCidataUserDataBytes) {
    return absl::InvalidArgumentError(
        fmt::format("cidata user_data: {} bytes exceeds the {} byte limit; the join "
                    "config must not carry a full machine config",
                    content.user_data.size(), kMaxCidataUserDataBytes));
  }
  if (content.instance_id.empty()) {
    return absl::InvalidArgumentError("cidata instance_id: empty; use the MachineRequest ID");
  }
  if (content.instance_id.size() > kMaxCidataInstanceIdBytes) {
    return absl::InvalidArgumentError(fmt::format("cidata instance_id: {} bytes exceeds the {} byte limit",
                                                  content.instance_id.size(), kMaxCidataInstanceIdBytes));
  }
  for (unsigned char c : content.instance_id) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(
          fmt::format("cidata instance_id: byte {:#04x} is not printable ASCII; use the MachineRequest ID",
                      static_cast<unsigned>(c)));
    }
  }
  if (!content.hostname.empty()) OP_RETURN_IF_ERROR(ValidateHostname(content.hostname));
  return absl::OkStatus();
}

absl::StatusOr<std::string> BuildCidataIso(const CidataContent& content) {
  OP_RETURN_IF_ERROR(ValidateCidataContent(content));
  OP_RETURN_IF_ERROR(InitLibisofs());
  const BuildSlot slot;

  IsoImage* raw_image = nullptr;
  int rc = iso_image_new(kVolumeId, &raw_image);
  if (rc < 0) return IsoError("create image", rc);
  std::unique_ptr<IsoImage, ImageDeleter> image(raw_image);
  iso_image_set_volume_id(image.get(), kVolumeId);
  iso_image_set_volset_id(image.get(), kVolumeId);
  IsoDir* root = iso_image_get_root(image.get());
  FixNode(reinterpret_cast<IsoNode*>(root), 0555);

  OP_RETURN_IF_ERROR(AddFile(image.get(), root, "user-data", content.user_data));
  OP_RETURN_IF_ERROR(AddFile(image.get(), root, "meta-data", RenderMetaData(content)));
  OP_RETURN_IF_ERROR(AddFile(image.get(), root, "network-config",
                             content.network_config.empty() ? DefaultNetworkConfig() : content.network_config));

  IsoWriteOpts* raw_opts = nullptr;
  rc = iso_write_opts_new(&raw_opts, 0);
  if (rc < 0) return IsoError("create write options", rc);
  std::unique_ptr<IsoWriteOpts, OptsDeleter> opts(raw_opts);
  // Level 2 allows ISO 9660 names up to 31 characters; the real names come from Rock Ridge and
  // Joliet, which is what Linux (and so Talos) and other readers use.
  const int option_rcs[] = {
      iso_write_opts_set_iso_level(opts.get(), 2),
      iso_write_opts_set_rockridge(opts.get(), 1),
      iso_write_opts_set_joliet(opts.get(), 1),
      // Keep the volume id lower-case "cidata", the label the Go provider (go-diskfs) and
      // genisoimage -V write; strict d-characters would turn it into "CIDATA".
      iso_write_opts_set_relaxed_vol_atts(opts.get(), 1),
      // Joliet names exactly "user-data" etc. (no ";1" version, no forced "."), as mkisofs writes
      // them; readers that use Joliet (isoinfo -J, Windows) look files up by those names.
      iso_write_opts_set_omit_version_numbers(opts.get(), 2),
      iso_write_opts_set_no_force_dots(opts.get(), 2),
      iso_write_opts_set_always_gmt(opts.get(), 1),
      iso_write_opts_set_dir_rec_mtime(opts.get(), 7),
      iso_write_opts_set_replace_timestamps(opts.get(), 2),
      iso_write_opts_set_default_timestamp(opts.get(), kFixedTime),
      iso_write_opts_set_replace_mode(opts.get(), 2, 2, 2, 2),
      iso_write_opts_set_default_dir_mode(opts.get(), 0555),
      iso_write_opts_set_default_file_mode(opts.get(), 0444),
      iso_write_opts_set_default_uid(opts.get(), 0),
      iso_write_opts_set_default_gid(opts.get(), 0),
      iso_write_opts_set_pvd_times(opts.get(), kFixedTime, kFixedTime, 0, 0, const_cast<char*>(kFixedVolumeTime)),
      iso_write_opts_set_fifo_size(opts.get(), kWriterRingBlocks),
  };
  for (int option_rc : option_rcs) {
    if (option_rc < 0) return IsoError("set write options", option_rc);
  }

  burn_source* raw_source = nullptr;
  rc = iso_image_create_burn_source(image.get(), opts.get(), &raw_source);
  if (rc < 0) return IsoError("start image writer", rc);
  std::unique_ptr<burn_source, BurnSourceDeleter> source(raw_source);

  std::string out;
  const off_t expected = source->get_size(source.get());
  if (expected > 0) out.reserve(static_cast<std::size_t>(expected));
  unsigned char block[kIsoBlockBytes];
  while (true) {
    // libisofs hands out a version 1 burn_source, whose read_xt replaces the legacy read.
    const int n = source->read != nullptr ? source->read(source.get(), block, kIsoBlockBytes)
                                          : source->read_xt(source.get(), block, kIsoBlockBytes);
    if (n < 0) return absl::InternalError("cidata iso: libisofs writer failed while producing the image");
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(block), static_cast<std::size_t>(n));
    if (n < kIsoBlockBytes) break;
  }
  if (expected > 0 && out.size() != static_cast<std::size_t>(expected)) {
    return absl::InternalError(fmt::format("cidata iso: libisofs produced {} bytes, announced {}", out.size(),
                                           static_cast<long long>(expected)));
  }
  return out;
}

std::string CidataIsoFileName(std::string_view request_id, const std::string& iso_bytes) {
  std::string id;
  for (char c : request_id.substr(0, 64)) {
    const bool keep =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    id += keep ? c : '-';
  }
  if (id.empty()) id = "unnamed";
  unsigned char digest[EVP_MAX_MD_SIZE] = {};
  unsigned int digest_len = 0;
  // SHA-256 of an in-memory buffer fails only when OpenSSL cannot allocate, and this process would
  // not survive that anyway; the zeroed digest keeps the name well-formed even then.
  EVP_Digest(iso_bytes.data(), iso_bytes.size(), digest, &digest_len, EVP_sha256(), nullptr);
  return fmt::format("omni-cidata-{}-{:02x}{:02x}{:02x}{:02x}.iso", id, digest[0], digest[1], digest[2], digest[3]);
}

}  // namespace omni_proxmox::provider
