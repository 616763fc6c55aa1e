// SPDX-License-Identifier: Apache-2.0
// MachineClass documents. The COSI form is what `omnictl apply -f` takes:
//
//   metadata: {namespace: default, type: MachineClasses.omni.sidero.dev, id: worker}
//   spec:
//     autoprovision:
//       providerid: proxmox
//       providerdata: |          # YAML inside a string: checked by the provider's own parser
//         cores: 4
//
// The older form of the Go provider's README (apiVersion/kind: MachineClass, spec.provider,
// spec.config as a map) is checked the same way and flagged, because omnictl does not accept it.

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>

#include "cli/validate/checks.h"
#include "provider/model/providerdata.h"
#include "util/text.h"

namespace omni_proxmox::cli::validate {
namespace {

constexpr std::string_view kMachineClassType = "MachineClasses.omni.sidero.dev";

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto end = text.find('\n', start);
    if (end == std::string_view::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

int IndentOf(std::string_view line) {
  int n = 0;
  while (n < static_cast<int>(line.size()) && line[n] == ' ') ++n;
  return n;
}

bool IsBlank(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

bool IsComment(std::string_view line) {
  const auto first = line.find_first_not_of(" \t");
  return first != std::string_view::npos && line[first] == '#';
}

// "ERROR: <input>:1:18: message" -> {1, 18}; {0, 0} when the text has no CEL position.
std::pair<int, int> CelPosition(std::string_view line) {
  constexpr std::string_view kMarker = "<input>:";
  const auto at = line.find(kMarker);
  if (at == std::string_view::npos) return {0, 0};
  int values[2] = {0, 0};
  std::size_t i = at + kMarker.size();
  for (int& value : values) {
    std::size_t digits = 0;
    while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) {
      value = value * 10 + (line[i] - '0');
      ++i;
      ++digits;
    }
    if (digits == 0) return {0, 0};
    if (i < line.size() && line[i] == ':') ++i;
  }
  return {values[0], values[1]};
}

// Turns one providerdata diagnostic into a finding at its position in the file. CEL compile
// errors ("is not a valid selector:\nERROR: <input>:1:18: ...\n | source\n | ...^\nhint: ...")
// become one headline at the exact column of the selector, the source and caret as detail lines,
// and the hint lines as the hint.
Finding ToFinding(const provider::Diagnostic& d, const EmbeddedYaml& embedded, std::string_view file_text) {
  Finding f;
  f.severity = d.severity == provider::Diagnostic::Severity::kError ? Severity::kError : Severity::kWarning;
  std::vector<std::string> detail;
  std::vector<std::string> hints;
  std::string headline;
  int cel_column = 0;
  for (const auto line : SplitLines(d.message)) {
    if (line.starts_with("hint: ")) {
      hints.emplace_back(line.substr(6));
    } else if (line.starts_with("ERROR: ")) {
      const auto [cel_line, column] = CelPosition(line);
      if (cel_line == 1) cel_column = column;
      // Keep the message after "ERROR: <input>:L:C: ".
      std::string_view rest = line.substr(7);
      if (const auto colon = rest.find(": "); rest.starts_with("<input>:") && colon != std::string_view::npos) {
        rest = rest.substr(colon + 2);
      }
      if (headline.empty()) {
        headline = std::string(rest);
      } else {
        headline += (headline.ends_with(":") ? " " : "; ") + std::string(rest);
      }
    } else if (headline.empty()) {
      headline = std::string(line);
    } else {
      detail.emplace_back(line);
    }
  }
  // The parser's messages put the fix after "; ": that part becomes the hint.
  if (const auto semicolon = headline.find("; "); semicolon != std::string::npos) {
    hints.insert(hints.begin(), headline.substr(semicolon + 2));
    headline.resize(semicolon);
  }
  const std::string path = d.path == "providerdata" ? "providerdata" : fmt::format("providerdata.{}", d.path);
  f.message = fmt::format("{}: {}", path, headline);
  for (const auto& line : detail) f.message += "\n" + line;
  f.hint = fmt::format("{}", fmt::join(hints, "; "));

  if (d.line > 0 && embedded.first_line > 0) {
    f.line = embedded.first_line + d.line - 1;
    f.column = embedded.indent + d.column;
    if (cel_column > 0) {
      // The selector value starts at f.column; a quoted value adds its opening quote.
      const auto lines = SplitLines(file_text);
      int offset = cel_column - 1;
      if (f.line - 1 < static_cast<int>(lines.size())) {
        const auto source_line = lines[f.line - 1];
        const auto at = static_cast<std::size_t>(f.column - 1);
        if (at < source_line.size() && (source_line[at] == '"' || source_line[at] == '\'')) ++offset;
      }
      f.column += offset;
    }
  } else {
    f.line = Sink::Line(embedded.origin);
    f.column = Sink::Column(embedded.origin);
    if (d.line > 0) {
      f.message +=
          fmt::format("\n(at line {}, column {} of the providerdata text; {})", d.line, d.column, embedded.origin_note);
    }
  }
  return f;
}

void CheckProviderData(const EmbeddedYaml& embedded, const FileInput& file, Sink& sink) {
  const auto result = provider::ParseProviderData(embedded.text);
  for (const auto& d : result.diagnostics) {
    Finding f = ToFinding(d, embedded, file.text);
    sink.Add(f.severity, f.line, f.column, std::move(f.message), std::move(f.hint));
  }
}

bool IsResourceId(std::string_view id) {
  if (id.empty() || id.size() > 253) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

void CheckUnknownKeys(const YAML::Node& map, const std::vector<std::string>& known, std::string_view where,
                      Sink& sink) {
  for (auto it = map.begin(); it != map.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string hint;
    if (auto match = util::ClosestMatch(key, known)) {
      hint = fmt::format("did you mean '{}'?", *match);
    } else {
      hint = fmt::format("known keys: {}", fmt::join(known, ", "));
    }
    sink.Error(it->first.Mark(), fmt::format("{}.{}: unknown key; Omni rejects the resource", where, key), hint);
  }
}

void CheckKernelArgs(const YAML::Node& node, Sink& sink) {
  if (!node.IsSequence()) {
    sink.Error(node.Mark(),
               fmt::format("spec.autoprovision.kernelargs: must be a list of strings, not {}", KindOf(node)),
               "write kernelargs: [\"console=ttyS0\"]");
    return;
  }
  for (std::size_t i = 0; i < node.size(); ++i) {
    if (!node[i].IsScalar()) {
      sink.Error(node[i].Mark(),
                 fmt::format("spec.autoprovision.kernelargs[{}]: must be a string, not {}", i, KindOf(node[i])),
                 "write each argument as one string, e.g. - talos.dashboard.disabled=1");
    }
  }
}

void CheckMetaValues(const YAML::Node& node, Sink& sink) {
  if (!node.IsSequence()) {
    sink.Error(node.Mark(), fmt::format("spec.autoprovision.metavalues: must be a list, not {}", KindOf(node)),
               "write metavalues: [{key: 10, value: \"...\"}]");
    return;
  }
  for (std::size_t i = 0; i < node.size(); ++i) {
    const YAML::Node& item = node[i];
    const std::string where = fmt::format("spec.autoprovision.metavalues[{}]", i);
    if (!item.IsMap()) {
      sink.Error(item.Mark(), fmt::format("{}: must be a map with key and value, not {}", where, KindOf(item)),
                 "write - {key: 10, value: \"...\"}");
      continue;
    }
    CheckUnknownKeys(item, {"key", "value"}, where, sink);
    const YAML::Node key = item["key"];
    if (!key) {
      sink.Error(item.Mark(), fmt::format("{}.key: missing", where), "give the Talos META key, a number from 0 to 255");
    } else {
      const std::string text = key.IsScalar() ? key.Scalar() : std::string();
      const bool digits = !text.empty() && text.size() <= 3 &&
                          std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits || std::stoi(text) > 255) {
        sink.Error(key.Mark(), fmt::format("{}.key: {} is not a Talos META key", where, KindOf(key)),
                   "use a number from 0 to 255");
      }
    }
    const YAML::Node value = item["value"];
    if (!value) {
      sink.Error(item.Mark(), fmt::format("{}.value: missing", where), "give the string to store under the key");
    } else if (!value.IsScalar()) {
      sink.Error(value.Mark(), fmt::format("{}.value: must be a string, not {}", where, KindOf(value)));
    }
  }
}

// The ID under metadata, recorded for the cross-check with cluster templates.
void RecordClass(const YAML::Node& metadata, std::string_view id_key, const FileInput& file, Sink& sink, Facts& facts) {
  const YAML::Node id = metadata[std::string(id_key)];
  if (!id || !id.IsScalar() || id.Scalar().empty()) {
    sink.Error(metadata.Mark(), fmt::format("metadata.{}: missing; it is the class name templates refer to", id_key),
               fmt::format("add {}: worker, using letters, digits, '-', '_' and '.'", id_key));
    return;
  }
  if (!IsResourceId(id.Scalar())) {
    sink.Error(id.Mark(), fmt::format("metadata.{}: '{}' is not a valid resource ID", id_key, id.Scalar()),
               "use letters, digits, '-', '_' and '.' only");
  }
  facts.machine_classes.push_back({id.Scalar(), {file.index, Sink::Line(id.Mark()), Sink::Column(id.Mark())}});
}

void RecordProviderId(const YAML::Node& node, std::string_view where, const FileInput& file, Sink& sink, Facts& facts,
                      const YAML::Mark& parent) {
  if (!node || !node.IsScalar() || node.Scalar().empty()) {
    sink.Error(node ? node.Mark() : parent,
               fmt::format("{}: missing; Omni sends requests for this class to the "
                           "provider with this ID",
                           where),
               "write providerid: proxmox, the provider's --id (proxmox by default)");
    return;
  }
  facts.class_provider_ids.push_back({node.Scalar(), {file.index, Sink::Line(node.Mark()), Sink::Column(node.Mark())}});
}

void CheckProviderDataNode(const YAML::Node& node, std::string_view where, const FileInput& file, Sink& sink) {
  if (node.IsScalar()) {
    CheckProviderData(EmbeddedFromScalar(node, file.text), file, sink);
  } else if (node.IsMap()) {
    sink.Error(node.Mark(), fmt::format("{}: must be a string holding YAML, not a map", where),
               "write 'providerdata: |' and indent the keys under it");
  } else {
    sink.Error(node.Mark(), fmt::format("{}: must be a string holding YAML, not {}", where, KindOf(node)),
               "write 'providerdata: |' followed by cores, memory, disk_size and storage_selector, indented");
  }
}

void CheckCosiForm(const YAML::Node& doc, const FileInput& file, Sink& sink, Facts& facts) {
  CheckUnknownKeys(doc, {"metadata", "spec"}, "document", sink);
  const YAML::Node metadata = doc["metadata"];
  const YAML::Node type = metadata["type"];
  if (type.Scalar() != kMachineClassType) {
    sink.Error(type.Mark(),
               fmt::format("metadata.type: '{}' differs in case from {}", type.Scalar(), kMachineClassType),
               fmt::format("write type: {}; resource types are case-sensitive", kMachineClassType));
  }
  const YAML::Node ns = metadata["namespace"];
  if (!ns) {
    sink.Warning(metadata.Mark(), "metadata.namespace: missing; MachineClasses live in namespace default",
                 "add namespace: default");
  } else if (!ns.IsScalar() || ns.Scalar() != "default") {
    sink.Error(ns.Mark(), fmt::format("metadata.namespace: {} is not where Omni keeps MachineClasses", KindOf(ns)),
               "write namespace: default");
  }
  RecordClass(metadata, "id", file, sink, facts);

  const YAML::Node spec = doc["spec"];
  if (!spec || !spec.IsMap()) {
    sink.Error(spec ? spec.Mark() : doc.Mark(), "spec: missing; an auto-provisioning class needs spec.autoprovision",
               "add spec.autoprovision with providerid and providerdata");
    return;
  }
  if (spec["matchlabels"] && !spec["autoprovision"]) return;  // a manual class: nothing of ours to check
  const YAML::Node autoprovision = spec["autoprovision"];
  if (!autoprovision || !autoprovision.IsMap()) {
    sink.Error(autoprovision ? autoprovision.Mark() : KeyMark(doc, "spec"),
               "spec.autoprovision: missing; the provider only serves auto-provisioning classes",
               "add spec.autoprovision with providerid and providerdata");
    return;
  }
  CheckUnknownKeys(autoprovision, {"providerid", "providerdata", "kernelargs", "metavalues", "grpctunnel"},
                   "spec.autoprovision", sink);
  RecordProviderId(autoprovision["providerid"], "spec.autoprovision.providerid", file, sink, facts,
                   KeyMark(spec, "autoprovision"));
  if (const YAML::Node data = autoprovision["providerdata"]) {
    CheckProviderDataNode(data, "spec.autoprovision.providerdata", file, sink);
  } else {
    sink.Error(KeyMark(spec, "autoprovision"), "spec.autoprovision.providerdata: missing; it says what VMs to create",
               "add 'providerdata: |' with cores, memory, disk_size and storage_selector");
  }
  if (const YAML::Node args = autoprovision["kernelargs"]; args && !args.IsNull()) CheckKernelArgs(args, sink);
  if (const YAML::Node meta = autoprovision["metavalues"]; meta && !meta.IsNull()) CheckMetaValues(meta, sink);
}

void CheckOlderForm(const YAML::Node& doc, const FileInput& file, Sink& sink, Facts& facts) {
  sink.Warning(KeyMark(doc, "kind"),
               "kind: MachineClass is the Go provider README's form, which omnictl does not accept",
               fmt::format("write metadata: {{namespace: default, type: {}, id: NAME}} and spec.autoprovision with "
                           "providerid and providerdata: |, as in docs/examples/machineclass-worker.yaml",
                           kMachineClassType));
  const YAML::Node metadata = doc["metadata"];
  if (!metadata || !metadata.IsMap()) {
    sink.Error(doc.Mark(), "metadata: missing; it names the class", "add metadata: {name: worker}");
  } else {
    RecordClass(metadata, metadata["id"] ? "id" : "name", file, sink, facts);
  }
  const YAML::Node spec = doc["spec"];
  if (!spec || !spec.IsMap()) {
    sink.Error(doc.Mark(), "spec: missing", "add spec.autoprovision with providerid and providerdata");
    return;
  }
  if (spec["autoprovision"]) {
    const YAML::Node autoprovision = spec["autoprovision"];
    RecordProviderId(autoprovision["providerid"], "spec.autoprovision.providerid", file, sink, facts,
                     KeyMark(spec, "autoprovision"));
    if (autoprovision["providerdata"]) {
      CheckProviderDataNode(autoprovision["providerdata"], "spec.autoprovision.providerdata", file, sink);
    }
    return;
  }
  RecordProviderId(spec["provider"], "spec.provider", file, sink, facts, spec.Mark());
  const YAML::Node config = spec["config"];
  if (!config) {
    sink.Error(spec.Mark(), "spec.config: missing; it says what VMs to create",
               "add cores, memory, disk_size and storage_selector");
  } else if (config.IsMap()) {
    CheckProviderData(EmbeddedFromMap(config, file.text), file, sink);
  } else {
    CheckProviderDataNode(config, "spec.config", file, sink);
  }
}

}  // namespace

EmbeddedYaml EmbeddedFromScalar(const YAML::Node& scalar, std::string_view file_text) {
  EmbeddedYaml out;
  out.text = scalar.Scalar();
  out.origin = scalar.Mark();
  out.origin_note = "write it as a literal block (providerdata: |) for exact positions";
  const YAML::Mark mark = scalar.Mark();
  if (mark.is_null() || mark.pos < 0 || static_cast<std::size_t>(mark.pos) >= file_text.size() ||
      file_text[mark.pos] != '|') {
    return out;
  }
  // Header: '|' then an optional chomping indicator and indentation digit, in either order.
  std::size_t i = mark.pos + 1;
  int explicit_indent = 0;
  for (int n = 0; n < 2 && i < file_text.size(); ++n, ++i) {
    const char c = file_text[i];
    if (c >= '1' && c <= '9') {
      explicit_indent = c - '0';
    } else if (c != '-' && c != '+') {
      break;
    }
  }
  const auto lines = SplitLines(file_text);
  const int header_line = mark.line;  // 0-based
  int indent = 0;
  if (explicit_indent > 0) {
    indent = IndentOf(lines[header_line]) + explicit_indent;
  } else {
    for (std::size_t l = header_line + 1; l < lines.size(); ++l) {
      if (!IsBlank(lines[l])) {
        indent = IndentOf(lines[l]);
        break;
      }
    }
  }
  out.first_line = header_line + 2;  // the line after the header, 1-based
  out.indent = indent;
  return out;
}

EmbeddedYaml EmbeddedFromMap(const YAML::Node& map, std::string_view file_text) {
  EmbeddedYaml out;
  out.origin = map.Mark();
  out.origin_note = "a flow map {...} has no line structure to map";
  const YAML::Mark mark = map.Mark();
  const auto lines = SplitLines(file_text);
  if (mark.is_null() || mark.line >= static_cast<int>(lines.size()) ||
      static_cast<std::size_t>(mark.column) >= lines[mark.line].size() || lines[mark.line][mark.column] == '{') {
    out.text = YAML::Dump(map);
    return out;
  }
  const int indent = mark.column;
  std::string text(lines[mark.line].substr(indent));
  for (std::size_t l = mark.line + 1; l < lines.size(); ++l) {
    const auto line = lines[l];
    if (line.starts_with("---") || line.starts_with("...")) break;
    if (!IsBlank(line) && !IsComment(line) && IndentOf(line) < indent) break;
    text += "\n";
    text += IndentOf(line) >= indent ? std::string(line.substr(indent)) : std::string();
  }
  out.text = std::move(text);
  out.first_line = mark.line + 1;
  out.indent = indent;
  return out;
}

void CheckMachineClass(const YAML::Node& doc, const FileInput& file, Sink& sink, Facts& facts) {
  if (doc["kind"] && doc["kind"].IsScalar() && doc["kind"].Scalar() == "MachineClass") {
    CheckOlderForm(doc, file, sink, facts);
  } else {
    CheckCosiForm(doc, file, sink, facts);
  }
}

}  // namespace omni_proxmox::cli::validate
