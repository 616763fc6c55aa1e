// SPDX-License-Identifier: Apache-2.0
#include "cli/validate/validate.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/validate/checks.h"
#include "util/text.h"

namespace omni_proxmox::cli::validate {
namespace {

constexpr std::string_view kUnderstood =
    "validate understands MachineClasses (metadata.type: MachineClasses.omni.sidero.dev, or kind: MachineClass), "
    "cluster templates (kind: Cluster, ControlPlane, Workers, Machine), the provider's config.yaml (a proxmox: "
    "section) and .env files (NAME=value lines)";

bool IsEnvFileName(std::string_view path) {
  const std::string name = std::filesystem::path(std::string(path)).filename().string();
  return name == ".env" || name.ends_with(".env") || name.starts_with(".env.");
}

bool IsTemplateKind(std::string_view kind) {
  return kind == "Cluster" || kind == "ControlPlane" || kind == "Workers" || kind == "Machine";
}

// What one YAML document is; empty when it is not understood (a finding says why).
std::string DocumentKind(const YAML::Node& doc, Sink& sink) {
  if (!doc.IsMap()) {
    sink.Error(doc.Mark(), fmt::format("this document is {}, not a map of fields", KindOf(doc)),
               std::string(kUnderstood));
    return "";
  }
  if (doc["proxmox"]) return kProviderConfigKind;
  const YAML::Node kind = doc["kind"];
  if (kind && kind.IsScalar()) {
    if (IsTemplateKind(kind.Scalar())) return kClusterTemplateKind;
    if (kind.Scalar() == "MachineClass") return kMachineClassKind;
    const std::vector<std::string> known = {"Cluster", "ControlPlane", "Workers", "Machine", "MachineClass"};
    std::string hint(kUnderstood);
    if (auto match = util::ClosestMatch(kind.Scalar(), known)) hint = fmt::format("did you mean '{}'?", *match);
    sink.Error(kind.Mark(), fmt::format("kind: '{}' is not a kind validate understands", kind.Scalar()), hint);
    return "";
  }
  const YAML::Node metadata = doc["metadata"];
  if (metadata && metadata.IsMap() && metadata["type"] && metadata["type"].IsScalar()) {
    if (Lower(metadata["type"].Scalar()) == "machineclasses.omni.sidero.dev") return kMachineClassKind;
    sink.Error(
        metadata["type"].Mark(),
        fmt::format("metadata.type: '{}' is not a resource type validate understands", metadata["type"].Scalar()),
        std::string(kUnderstood));
    return "";
  }
  sink.Error(doc.Mark(), "cannot tell what this document is (no kind, metadata.type or proxmox: section)",
             std::string(kUnderstood));
  return "";
}

std::string JoinKinds(const std::vector<std::string>& kinds) {
  std::vector<std::string> unique;
  for (const auto& kind : kinds) {
    if (std::find(unique.begin(), unique.end(), kind) == unique.end()) unique.push_back(kind);
  }
  if (unique.empty()) return kUnknownKind;
  return fmt::format("{}", fmt::join(unique, "+"));
}

void CheckYamlFile(const InputFile& input, std::size_t index, FileReport& report, Facts& facts) {
  Sink sink(report.findings);
  const FileInput file{input.path, input.content, index};
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(input.content);
  } catch (const YAML::ParserException& e) {
    sink.Error(e.mark, fmt::format("not valid YAML: {}", e.msg), "check the indentation and quoting on this line");
    report.kind = kUnknownKind;
    return;
  }
  std::vector<std::string> kinds;
  std::vector<YAML::Node> template_docs;
  bool other_docs = false;
  for (const auto& doc : docs) {
    if (doc.IsNull()) continue;  // an empty document, e.g. after a trailing ---
    const std::string kind = DocumentKind(doc, sink);
    kinds.push_back(kind.empty() ? kUnknownKind : kind);
    if (kind == kClusterTemplateKind) {
      template_docs.push_back(doc);
      continue;
    }
    other_docs = true;
    if (kind == kMachineClassKind) CheckMachineClass(doc, file, sink, facts);
    if (kind == kProviderConfigKind) CheckProviderConfig(doc, file, sink);
  }
  if (kinds.empty()) {
    sink.Add(Severity::kError, 0, 0, "the file is empty", std::string(kUnderstood));
  }
  if (!template_docs.empty()) {
    if (auto fixed = CheckClusterTemplate(template_docs, file, sink, facts)) report.fixed_template = *fixed;
    if (other_docs) {
      sink.Error(template_docs.front().Mark(),
                 "this file mixes cluster template documents with other documents; omnictl cluster template sync "
                 "rejects documents without a template kind",
                 "keep the template in a file of its own");
    }
  }
  report.kind = JoinKinds(kinds);
}

void CrossCheck(const Facts& facts, const std::vector<InputFile>& files, const Options& options, Report& report) {
  std::set<std::string> defined;
  for (const auto& c : facts.machine_classes) defined.insert(c.name);
  std::vector<std::string> paths;
  for (const auto& f : files) paths.push_back(f.path);
  for (const auto& ref : facts.class_references) {
    if (defined.contains(ref.name)) continue;
    std::vector<std::string> known(defined.begin(), defined.end());
    std::string hint =
        fmt::format("pass its file too, or create it with omnictl apply -f; given: {}", fmt::join(paths, ", "));
    if (auto match = util::ClosestMatch(ref.name, known)) hint = fmt::format("did you mean '{}'? ", *match) + hint;
    report.files[ref.place.file].findings.push_back(
        Finding{ref.place.line, ref.place.column, Severity::kWarning,
                fmt::format("machine class '{}' is not defined in the given files{}", ref.name,
                            defined.empty() ? "" : fmt::format(" (they define {})", fmt::join(known, ", "))),
                hint});
  }

  std::string expected = options.provider_id;
  std::string source = "--id";
  if (expected.empty() && facts.key_identity) {
    expected = facts.key_identity->provider_id;
    source = fmt::format("the key in {}", files[facts.key_identity->place.file].path);
  }
  for (const auto& use : facts.class_provider_ids) {
    std::vector<Finding>& out = report.files[use.place.file].findings;
    if (!expected.empty()) {
      if (use.name == expected) continue;
      if (Lower(use.name) == Lower(expected)) {
        out.push_back(Finding{use.place.line, use.place.column, Severity::kError,
                              fmt::format("providerid '{}' differs only in case from the provider's ID '{}' ({}); "
                                          "Omni compares IDs exactly, so no provider would serve this class",
                                          use.name, expected, source),
                              fmt::format("write providerid: {}", expected)});
      } else {
        out.push_back(Finding{use.place.line, use.place.column, Severity::kWarning,
                              fmt::format("providerid '{}' is not the provider's ID '{}' ({}); this class is served "
                                          "by provider '{}', not by this one",
                                          use.name, expected, source, use.name),
                              fmt::format("if the class is meant for this provider, write providerid: {}", expected)});
      }
    } else if (use.name != "proxmox" && Lower(use.name) == "proxmox") {
      out.push_back(Finding{use.place.line, use.place.column, Severity::kWarning,
                            fmt::format("providerid '{}': the provider's ID is 'proxmox' unless it runs with --id {}, "
                                        "and Omni compares IDs exactly",
                                        use.name, use.name),
                            "write providerid: proxmox, or give --id or the .env to check against the "
                            "provider's real ID"});
    }
  }
}

}  // namespace

YAML::Mark KeyMark(const YAML::Node& map, std::string_view key) {
  if (map.IsMap()) {
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == key) return it->first.Mark();
    }
  }
  return map.Mark();
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int Report::errors() const {
  int n = 0;
  for (const auto& file : files) {
    n += static_cast<int>(std::count_if(file.findings.begin(), file.findings.end(),
                                        [](const Finding& f) { return f.severity == Severity::kError; }));
  }
  return n;
}

int Report::warnings() const {
  int n = 0;
  for (const auto& file : files) {
    n += static_cast<int>(std::count_if(file.findings.begin(), file.findings.end(),
                                        [](const Finding& f) { return f.severity == Severity::kWarning; }));
  }
  return n;
}

Report Validate(const std::vector<InputFile>& files, const Options& options) {
  Report report;
  Facts facts;
  for (std::size_t i = 0; i < files.size(); ++i) {
    FileReport file_report;
    file_report.path = files[i].path;
    if (IsEnvFileName(files[i].path) || LooksLikeEnvFile(files[i].content)) {
      file_report.kind = kEnvKind;
      Sink sink(file_report.findings);
      CheckEnvFile(FileInput{files[i].path, files[i].content, i}, options, sink, facts);
    } else {
      CheckYamlFile(files[i], i, file_report, facts);
    }
    report.files.push_back(std::move(file_report));
  }
  CrossCheck(facts, files, options, report);
  for (auto& file : report.files) {
    std::stable_sort(file.findings.begin(), file.findings.end(), [](const Finding& a, const Finding& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
  }
  return report;
}

std::string FormatText(const Report& report) {
  std::string out;
  for (const auto& file : report.files) {
    for (const auto& f : file.findings) {
      const std::string where = f.line > 0 ? fmt::format("{}:{}:{}", file.path, f.line, f.column) : file.path;
      const auto newline = f.message.find('\n');
      out += fmt::format("{}: {}: {}", where, f.severity == Severity::kError ? "error" : "warning",
                         f.message.substr(0, newline));
      if (!f.hint.empty()) out += fmt::format(" ({})", f.hint);
      out += "\n";
      if (newline != std::string::npos) {
        std::size_t start = newline + 1;
        while (start <= f.message.size()) {
          auto end = f.message.find('\n', start);
          if (end == std::string::npos) end = f.message.size();
          out += fmt::format("    {}\n", f.message.substr(start, end - start));
          start = end + 1;
        }
      }
    }
  }
  for (const auto& file : report.files) {
    if (file.findings.empty()) out += fmt::format("{}: ok ({})\n", file.path, file.kind);
  }
  const int errors = report.errors();
  const int warnings = report.warnings();
  out += fmt::format("{} file{} checked: {} error{}, {} warning{}\n", report.files.size(),
                     report.files.size() == 1 ? "" : "s", errors, errors == 1 ? "" : "s", warnings,
                     warnings == 1 ? "" : "s");
  return out;
}

std::string FormatJson(const Report& report) {
  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  for (const auto& file : report.files) {
    nlohmann::ordered_json findings = nlohmann::ordered_json::array();
    for (const auto& f : file.findings) {
      findings.push_back({{"line", f.line},
                          {"column", f.column},
                          {"severity", f.severity == Severity::kError ? "error" : "warning"},
                          {"message", f.message},
                          {"hint", f.hint}});
    }
    nlohmann::ordered_json entry = {{"path", file.path}, {"kind", file.kind}, {"findings", findings}};
    if (!file.fixed_template.empty()) entry["fixed"] = file.fixed_template;
    files.push_back(std::move(entry));
  }
  nlohmann::ordered_json out = {{"files", files}, {"errors", report.errors()}, {"warnings", report.warnings()}};
  return out.dump(2) + "\n";
}

}  // namespace omni_proxmox::cli::validate
