// SPDX-License-Identifier: Apache-2.0
#pragma once

// `omni-proxmox validate`: checks the files an operator writes (MachineClasses, cluster
// templates, the provider's config.yaml and the compose .env) the way Omni and the provider
// will read them, before anything is applied. Findings carry the file position they are about,
// including positions inside the providerdata YAML embedded in a MachineClass.
//
// Reads no files itself except those a config.yaml refers to (caFile, tokenSecretFile,
// passwordFile) and a cluster template's patch files, whose absence is reported as a warning.
// Never puts a secret (key, token, password) into a finding.

#include <string>
#include <utility>
#include <vector>

namespace omni_proxmox::cli::validate {

enum class Severity { kError, kWarning };

struct Finding {
  int line = 0;  // 1-based position in the file; 0 when the finding is about the whole file
  int column = 0;
  Severity severity = Severity::kError;
  std::string message;  // first line says what is wrong; further lines show the source (a selector and its caret)
  std::string hint;     // how to fix it; may be empty
};

// What a file was recognised as. A file holding documents of several kinds gets them joined by '+'.
inline constexpr const char* kMachineClassKind = "machine-class";
inline constexpr const char* kClusterTemplateKind = "cluster-template";
inline constexpr const char* kProviderConfigKind = "provider-config";
inline constexpr const char* kEnvKind = "env";
inline constexpr const char* kUnknownKind = "unknown";

struct FileReport {
  std::string path;
  std::string kind;
  std::vector<Finding> findings;  // in file order
  // For a cluster template in the single-document form: the equivalent multi-document template.
  std::string fixed_template;
};

struct InputFile {
  std::string path;
  std::string content;
};

struct Options {
  // The ID the provider runs with. Empty: the identity of an infra provider key found in a given
  // .env, else only the case check against the default ID "proxmox".
  std::string provider_id;
};

struct Report {
  std::vector<FileReport> files;  // in the order given

  int errors() const;
  int warnings() const;
};

// Validates the files together: machine classes named by a cluster template are looked up among
// all of them, and a MachineClass's providerid is compared with the provider ID.
Report Validate(const std::vector<InputFile>& files, const Options& options);

// One line per finding, "file:line:column: error|warning: message (hint)", further message lines
// indented below it, then a line per clean file and a summary.
std::string FormatText(const Report& report);

// {"files":[{"path","kind","findings":[{"line","column","severity","message","hint"}],"fixed"?}],
//  "errors":N,"warnings":M}
std::string FormatJson(const Report& report);

}  // namespace omni_proxmox::cli::validate
