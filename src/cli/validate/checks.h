// SPDX-License-Identifier: Apache-2.0
#pragma once

// Internal to validate/: the per-kind checkers and what they share. Each checker reports into a
// Sink bound to one file and records facts that only the whole set of files can judge (which
// machine classes exist, which provider IDs classes name) for the cross-checks in validate.cc.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "cli/validate/validate.h"
#include "provider/model/yaml_kind.h"

namespace omni_proxmox::cli::validate {

// Collects the findings of one file.
class Sink {
 public:
  explicit Sink(std::vector<Finding>& out) : out_(out) {}

  void Error(const YAML::Mark& mark, std::string message, std::string hint = "") {
    Add(Severity::kError, Line(mark), Column(mark), std::move(message), std::move(hint));
  }
  void Warning(const YAML::Mark& mark, std::string message, std::string hint = "") {
    Add(Severity::kWarning, Line(mark), Column(mark), std::move(message), std::move(hint));
  }
  void Add(Severity severity, int line, int column, std::string message, std::string hint) {
    out_.push_back(Finding{line, column, severity, std::move(message), std::move(hint)});
  }

  static int Line(const YAML::Mark& mark) { return mark.is_null() ? 0 : mark.line + 1; }
  static int Column(const YAML::Mark& mark) { return mark.is_null() ? 0 : mark.column + 1; }

 private:
  std::vector<Finding>& out_;
};

// A position in one of the given files.
struct Place {
  std::size_t file = 0;
  int line = 0;
  int column = 0;
};

// Facts gathered from every file for the cross-checks.
struct Facts {
  struct Named {
    std::string name;
    Place place;
  };
  std::vector<Named> machine_classes;     // MachineClass ids defined
  std::vector<Named> class_references;    // machineClass names used by cluster templates
  std::vector<Named> class_provider_ids;  // providerid of each MachineClass
  struct KeyIdentity {
    std::string provider_id;
    Place place;
  };
  std::optional<KeyIdentity> key_identity;  // the infra provider key found in a .env
};

// The file being checked: its text (for positions inside embedded YAML) and its index.
struct FileInput {
  std::string_view path;
  std::string_view text;
  std::size_t index = 0;
};

// A MachineClass document, in the COSI form or the older apiVersion/kind form.
void CheckMachineClass(const YAML::Node& doc, const FileInput& file, Sink& sink, Facts& facts);

// All cluster template documents of one file (kind Cluster, ControlPlane, Workers, Machine).
// Returns the equivalent multi-document template when the file uses the single-document form.
std::optional<std::string> CheckClusterTemplate(const std::vector<YAML::Node>& docs, const FileInput& file, Sink& sink,
                                                Facts& facts);

// A document with a `proxmox:` section: the provider's config.yaml.
void CheckProviderConfig(const YAML::Node& doc, const FileInput& file, Sink& sink);

// A compose .env file.
void CheckEnvFile(const FileInput& file, const Options& options, Sink& sink, Facts& facts);

// True when every meaningful line is KEY=value (a .env, which YAML would read as one string).
bool LooksLikeEnvFile(std::string_view text);

// Helpers shared by the checkers.
inline std::string KindOf(const YAML::Node& node) { return provider::DescribeYamlKind(node); }
YAML::Mark KeyMark(const YAML::Node& map, std::string_view key);  // the key's own position, else the map's
std::string Lower(std::string_view text);

// Embedded YAML (providerdata) and how its positions map back to the file.
struct EmbeddedYaml {
  std::string text;
  int first_line = 0;       // file line (1-based) of the text's first line; 0: positions cannot be mapped
  int indent = 0;           // columns to add to a column inside the text
  YAML::Mark origin;        // the embedded value's own position, used when mapping is impossible
  std::string origin_note;  // how the value is written, for messages when mapping is impossible
};
// A string value: exact mapping for literal block scalars (`|`, `|-`, `|+`, `|2`).
EmbeddedYaml EmbeddedFromScalar(const YAML::Node& scalar, std::string_view file_text);
// A block map written inline (the older form's spec.config): the block's own lines, dedented.
EmbeddedYaml EmbeddedFromMap(const YAML::Node& map, std::string_view file_text);

}  // namespace omni_proxmox::cli::validate
