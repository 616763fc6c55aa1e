// SPDX-License-Identifier: Apache-2.0
// Cluster templates as `omnictl cluster template sync` reads them: one YAML stream of documents,
// exactly one `kind: Cluster`, exactly one `kind: ControlPlane`, any number of uniquely named
// `kind: Workers`, and `kind: Machine` documents for machines the sets list. Omni decodes each
// document strictly, so an unknown field fails the whole sync; we say so at the field.
//
// The single-document form (controlPlane: and workers: nested under kind: Cluster) appears in
// the operator document but is rejected by Omni with "field controlPlane not found in type
// models.Cluster"; we explain that and build the equivalent multi-document template.

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

#include "cli/validate/checks.h"
#include "util/text.h"

namespace omni_proxmox::cli::validate {
namespace {

const std::vector<std::string> kClusterKeys = {"kind",  "name",     "labels",  "annotations",      "kubernetes",
                                               "talos", "features", "patches", "systemExtensions", "kernelArgs"};
const std::vector<std::string> kMachineSetKeys = {"kind",           "name",     "labels",           "annotations",
                                                  "bootstrapSpec",  "machines", "machineClass",     "updateStrategy",
                                                  "deleteStrategy", "patches",  "systemExtensions", "kernelArgs"};
const std::vector<std::string> kMachineKeys = {"kind",    "name",    "labels",           "annotations", "locked",
                                               "install", "patches", "systemExtensions", "kernelArgs"};
const std::vector<std::string> kPatchKeys = {"file", "name", "idOverride", "labels", "annotations", "inline"};
const std::vector<std::string> kTemplateKinds = {"Cluster", "ControlPlane", "Workers", "Machine"};

// Omni reserves this label and annotation prefix for itself.
constexpr std::string_view kSystemLabelPrefix = "omni.sidero.dev/";
// Omni's ID of the control plane machine set; a worker set may not take it.
constexpr std::string_view kControlPlanesName = "control-planes";

bool IsTemplateName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

// "v1.30.1", "1.30.1", with an optional "-pre.1" / "+build" suffix.
bool IsSemver(std::string_view text, bool& has_v) {
  has_v = text.starts_with('v');
  if (has_v) text.remove_prefix(1);
  int parts = 0;
  std::size_t i = 0;
  while (parts < 3) {
    std::size_t digits = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      ++i;
      ++digits;
    }
    if (digits == 0) return false;
    ++parts;
    if (parts < 3) {
      if (i >= text.size() || text[i] != '.') return false;
      ++i;
    }
  }
  if (i == text.size()) return true;
  if (text[i] != '-' && text[i] != '+') return false;
  return std::all_of(
             text.begin() + static_cast<long>(i) + 1, text.end(),
             [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+'; }) &&
         i + 1 < text.size();
}

class TemplateChecker {
 public:
  TemplateChecker(const FileInput& file, Sink& sink, Facts& facts) : file_(file), sink_(sink), facts_(facts) {}

  std::optional<std::string> Check(const std::vector<YAML::Node>& docs);

 private:
  void UnknownKeys(const YAML::Node& map, const std::vector<std::string>& known, std::string_view where,
                   std::string_view model, const std::set<std::string>& skip = {});
  void CheckDescriptors(const YAML::Node& doc, std::string_view where);
  void CheckStringList(const YAML::Node& node, std::string_view where, std::string_view example);
  void CheckPatches(const YAML::Node& node, std::string_view where);
  void CheckCluster(const YAML::Node& doc);
  void CheckVersions(const YAML::Node& doc);
  void CheckFeatures(const YAML::Node& node);
  void CheckMachineSet(const YAML::Node& doc, bool control_plane);
  void CheckMachineClassRef(const YAML::Node& node, std::string_view where);
  void CheckStrategy(const YAML::Node& node, std::string_view where);
  void CheckMachine(const YAML::Node& doc);
  void RecordClassReference(const YAML::Node& name);
  std::string BuildMultiDocument(const std::vector<YAML::Node>& docs, const YAML::Node& cluster) const;

  const FileInput& file_;
  Sink& sink_;
  Facts& facts_;
  std::vector<std::pair<std::string, YAML::Mark>> listed_machines_;  // from ControlPlane/Workers machines
  std::set<std::string> worker_machines_;
};

void TemplateChecker::UnknownKeys(const YAML::Node& map, const std::vector<std::string>& known, std::string_view where,
                                  std::string_view model, const std::set<std::string>& skip) {
  for (auto it = map.begin(); it != map.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (skip.contains(key) || std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string hint;
    if (auto match = util::ClosestMatch(key, known)) {
      hint = fmt::format("did you mean '{}'?", *match);
    } else {
      hint = fmt::format("known fields: {}", fmt::join(known, ", "));
    }
    const std::string path = where.empty() ? key : fmt::format("{}.{}", where, key);
    std::string message = fmt::format("{}: unknown field; Omni rejects the template", path);
    if (!model.empty()) message += fmt::format(": field {} not found in type {}", key, model);
    sink_.Error(it->first.Mark(), std::move(message), std::move(hint));
  }
}

void TemplateChecker::CheckDescriptors(const YAML::Node& doc, std::string_view where) {
  for (const char* field : {"labels", "annotations"}) {
    const YAML::Node node = doc[field];
    if (!node || node.IsNull()) continue;
    const std::string path = where.empty() ? field : fmt::format("{}.{}", where, field);
    if (!node.IsMap()) {
      sink_.Error(node.Mark(), fmt::format("{}: must be a map of strings, not {}", path, KindOf(node)),
                  fmt::format("write {}: {{my-key: my-value}}", field));
      continue;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string key = it->first.Scalar();
      if (key.starts_with(kSystemLabelPrefix)) {
        sink_.Error(it->first.Mark(),
                    fmt::format("{}.{}: the prefix {} is reserved for Omni", path, key, kSystemLabelPrefix),
                    "choose a key without that prefix");
      }
      if (!it->second.IsScalar()) {
        sink_.Error(it->second.Mark(), fmt::format("{}.{}: must be a string, not {}", path, key, KindOf(it->second)));
      }
    }
  }
}

void TemplateChecker::CheckStringList(const YAML::Node& node, std::string_view where, std::string_view example) {
  if (!node || node.IsNull()) return;
  if (!node.IsSequence()) {
    sink_.Error(node.Mark(), fmt::format("{}: must be a list of strings, not {}", where, KindOf(node)),
                fmt::format("write {}: [{}]", where.substr(where.rfind('.') + 1), example));
    return;
  }
  for (std::size_t i = 0; i < node.size(); ++i) {
    if (!node[i].IsScalar()) {
      sink_.Error(node[i].Mark(), fmt::format("{}[{}]: must be a string, not {}", where, i, KindOf(node[i])),
                  fmt::format("for example - {}", example));
    }
  }
}

void TemplateChecker::CheckPatches(const YAML::Node& node, std::string_view where) {
  if (!node || node.IsNull()) return;
  if (!node.IsSequence()) {
    sink_.Error(node.Mark(), fmt::format("{}: must be a list of patches, not {}", where, KindOf(node)),
                "write patches: [{name: my-patch, inline: {...}}]");
    return;
  }
  for (std::size_t i = 0; i < node.size(); ++i) {
    const YAML::Node patch = node[i];
    const std::string path = fmt::format("{}[{}]", where, i);
    if (!patch.IsMap()) {
      sink_.Error(patch.Mark(), fmt::format("{}: must be a map with file or inline, not {}", path, KindOf(patch)));
      continue;
    }
    UnknownKeys(patch, kPatchKeys, path, "");
    CheckDescriptors(patch, path);
    const bool has_file = patch["file"] && !patch["file"].IsNull();
    const bool has_inline = patch["inline"] && !patch["inline"].IsNull();
    if (has_file == has_inline) {
      sink_.Error(patch.Mark(),
                  fmt::format("{}: {}", path, has_file ? "has both file and inline" : "has neither file nor inline"),
                  "give exactly one: file: patches/x.yaml, or inline: with the Talos config patch");
      continue;
    }
    if (has_inline) {
      if (!patch["inline"].IsMap()) {
        sink_.Error(patch["inline"].Mark(), fmt::format("{}.inline: must be a Talos config patch (a map), not {}", path,
                                                        KindOf(patch["inline"])));
      }
      if (!patch["name"] && !patch["idOverride"]) {
        sink_.Error(patch.Mark(), fmt::format("{}: an inline patch needs a name (or idOverride)", path),
                    "add name: my-patch");
      }
    } else if (patch["file"].IsScalar()) {
      // omnictl reads patch files relative to the directory it runs in; operators run it next to the template.
      const std::filesystem::path template_dir = std::filesystem::path(std::string(file_.path)).parent_path();
      const std::string patch_file = patch["file"].Scalar();
      std::error_code ec;
      if (!std::filesystem::exists(template_dir / patch_file, ec) && !std::filesystem::exists(patch_file, ec)) {
        sink_.Warning(
            patch["file"].Mark(),
            fmt::format("{}.file: '{}' not found next to the template or in the current directory", path, patch_file),
            "omnictl reads patch files relative to the directory it runs in");
      }
    }
  }
}

void TemplateChecker::CheckVersions(const YAML::Node& doc) {
  struct Component {
    const char* key;
    const char* name;
    const char* example;
    bool needs_v;
  };
  for (const Component& c :
       {Component{"kubernetes", "Kubernetes", "v1.30.1", false}, Component{"talos", "Talos", "v1.8.3", true}}) {
    const YAML::Node section = doc[c.key];
    if (!section || section.IsNull()) {
      sink_.Error(doc.Mark(), fmt::format("{}.version: missing; the cluster needs a {} version", c.key, c.name),
                  fmt::format("add {}: {{version: {}}}", c.key, c.example));
      continue;
    }
    if (!section.IsMap()) {
      sink_.Error(section.Mark(), fmt::format("{}: must be a map with version, not {}", c.key, KindOf(section)),
                  fmt::format("write {}: {{version: {}}}", c.key, c.example));
      continue;
    }
    UnknownKeys(section, {"version"}, c.key, c.needs_v ? "models.TalosCluster" : "models.KubernetesCluster");
    const YAML::Node version = section["version"];
    if (!version || !version.IsScalar() || version.Scalar().empty()) {
      sink_.Error(version ? version.Mark() : section.Mark(), fmt::format("{}.version: missing", c.key),
                  fmt::format("write version: {}", c.example));
      continue;
    }
    bool has_v = false;
    const std::string& text = version.Scalar();
    if (!IsSemver(text, has_v)) {
      sink_.Error(version.Mark(), fmt::format("{}.version: '{}' is not a {} version", c.key, text, c.name),
                  fmt::format("write the full version, e.g. {}{}", c.example,
                              c.needs_v ? "" : fmt::format(" or {}", std::string_view(c.example).substr(1))));
    } else if (c.needs_v && !has_v) {
      sink_.Error(version.Mark(),
                  fmt::format("{}.version: '{}' lacks the v prefix Omni requires for {} versions", c.key, text, c.name),
                  fmt::format("write v{}", text));
    }
  }
}

void TemplateChecker::CheckFeatures(const YAML::Node& node) {
  if (!node || node.IsNull()) return;
  if (!node.IsMap()) {
    sink_.Error(node.Mark(), fmt::format("features: must be a map, not {}", KindOf(node)),
                "write features: {diskEncryption: true}");
    return;
  }
  const std::vector<std::string> flags = {"diskEncryption", "enableWorkloadProxy", "useEmbeddedDiscoveryService"};
  std::vector<std::string> known = flags;
  known.push_back("backupConfiguration");
  UnknownKeys(node, known, "features", "models.Features");
  for (const auto& flag : flags) {
    const YAML::Node value = node[flag];
    bool parsed = false;
    if (value && !value.IsNull() && (!value.IsScalar() || !YAML::convert<bool>::decode(value, parsed))) {
      sink_.Error(value.Mark(), fmt::format("features.{}: must be true or false, not {}", flag, KindOf(value)));
    }
  }
  const YAML::Node backup = node["backupConfiguration"];
  if (backup && backup.IsMap()) {
    UnknownKeys(backup, {"interval"}, "features.backupConfiguration", "models.BackupConfiguration");
    const YAML::Node interval = backup["interval"];
    if (interval && interval.IsScalar()) {
      const std::string& text = interval.Scalar();
      const bool ok = !text.empty() && std::isdigit(static_cast<unsigned char>(text.front())) &&
                      std::string_view("hms").find(text.back()) != std::string_view::npos;
      if (!ok) {
        sink_.Error(interval.Mark(), fmt::format("features.backupConfiguration.interval: '{}' is not a duration", text),
                    "write e.g. 1h, 30m or 1h30m");
      }
    }
  }
}

void TemplateChecker::CheckCluster(const YAML::Node& doc) {
  UnknownKeys(doc, kClusterKeys, "", "models.Cluster", {"controlPlane", "workers"});
  const YAML::Node name = doc["name"];
  if (!name || !name.IsScalar() || name.Scalar().empty()) {
    sink_.Error(name ? name.Mark() : doc.Mark(), "name: missing; it is the cluster's ID",
                "add name: my-cluster, using letters, digits, '-' and '_'");
  } else if (!IsTemplateName(name.Scalar())) {
    sink_.Error(name.Mark(), fmt::format("name: '{}' is not a valid cluster name", name.Scalar()),
                "use letters, digits, '-' and '_' only");
  }
  CheckDescriptors(doc, "");
  CheckVersions(doc);
  CheckFeatures(doc["features"]);
  CheckPatches(doc["patches"], "patches");
  CheckStringList(doc["systemExtensions"], "systemExtensions", "siderolabs/qemu-guest-agent");
  CheckStringList(doc["kernelArgs"], "kernelArgs", "talos.dashboard.disabled=1");
}

void TemplateChecker::RecordClassReference(const YAML::Node& name) {
  facts_.class_references.push_back({name.Scalar(), {file_.index, Sink::Line(name.Mark()), Sink::Column(name.Mark())}});
}

void TemplateChecker::CheckMachineClassRef(const YAML::Node& node, std::string_view where) {
  if (!node.IsMap()) {
    sink_.Error(node.Mark(), fmt::format("{}: must be a map with name and size, not {}", where, KindOf(node)),
                "write machineClass: {name: worker, size: 3}");
    return;
  }
  UnknownKeys(node, {"name", "size"}, where, "models.MachineClassConfig");
  const YAML::Node name = node["name"];
  if (!name || !name.IsScalar() || name.Scalar().empty()) {
    sink_.Error(name ? name.Mark() : node.Mark(), fmt::format("{}.name: missing", where),
                "give the id of a MachineClass");
  } else {
    RecordClassReference(name);
  }
  const YAML::Node size = node["size"];
  if (!size || size.IsNull()) {
    sink_.Error(node.Mark(), fmt::format("{}.size: missing; without it the set gets no machines", where),
                "give the number of machines, or unlimited");
    return;
  }
  const std::string text = size.IsScalar() ? size.Scalar() : std::string();
  const bool keyword = text == "unlimited" || text == "infinity" || text == "\u221e" || text == "Unlimited";
  const bool digits = !text.empty() && text.size() <= 9 &&
                      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!keyword && !digits) {
    sink_.Error(size.Mark(), fmt::format("{}.size: {} is not a machine count", where, KindOf(size)),
                "write a whole number such as 3, or unlimited");
  }
}

void TemplateChecker::CheckStrategy(const YAML::Node& node, std::string_view where) {
  if (!node || node.IsNull()) return;
  if (!node.IsMap()) {
    sink_.Error(node.Mark(), fmt::format("{}: must be a map, not {}", where, KindOf(node)),
                "write type: Rolling and rolling: {maxParallelism: 1}");
    return;
  }
  UnknownKeys(node, {"type", "rolling"}, where, "models.UpdateStrategyConfig");
  const YAML::Node type = node["type"];
  if (type && (!type.IsScalar() || (type.Scalar() != "Rolling" && type.Scalar() != "Unset"))) {
    sink_.Error(type.Mark(), fmt::format("{}.type: {} is not a strategy", where, KindOf(type)), "use Rolling or Unset");
  }
  const YAML::Node rolling = node["rolling"];
  if (rolling && rolling.IsMap()) {
    UnknownKeys(rolling, {"maxParallelism"}, fmt::format("{}.rolling", where), "models.RollingUpdateStrategyConfig");
  }
}

void TemplateChecker::CheckMachineSet(const YAML::Node& doc, bool control_plane) {
  const std::string kind = control_plane ? "ControlPlane" : "Workers";
  UnknownKeys(doc, kMachineSetKeys, "", control_plane ? "models.ControlPlane" : "models.Workers");
  CheckDescriptors(doc, "");
  if (!control_plane && doc["bootstrapSpec"]) {
    sink_.Error(KeyMark(doc, "bootstrapSpec"), "bootstrapSpec: only the ControlPlane may restore from a backup",
                "remove bootstrapSpec from the Workers document");
  }
  const YAML::Node machines = doc["machines"];
  const YAML::Node machine_class = doc["machineClass"];
  const bool has_machines = machines && !machines.IsNull();
  const bool has_class = machine_class && !machine_class.IsNull();
  if (has_machines && has_class) {
    sink_.Error(KeyMark(doc, "machines"),
                fmt::format("kind: {} has both machines and machineClass; a machine set uses one of them", kind),
                "keep machineClass for machines the provider creates");
  } else if (!has_machines && !has_class) {
    if (control_plane) {
      sink_.Error(doc.Mark(), "kind: ControlPlane has neither machineClass nor machines; the cluster would have none",
                  "add machineClass: {name: control-plane, size: 3}");
    } else {
      sink_.Warning(doc.Mark(), "kind: Workers has neither machineClass nor machines; the set stays empty",
                    "add machineClass: {name: worker, size: 2}");
    }
  }
  if (has_class) {
    CheckMachineClassRef(machine_class, "machineClass");
    const YAML::Node size = machine_class["size"];
    if (control_plane && size && size.IsScalar() && !size.Scalar().empty() &&
        std::all_of(size.Scalar().begin(), size.Scalar().end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        size.Scalar().size() <= 9 && std::stoi(size.Scalar()) % 2 == 0) {
      sink_.Warning(size.Mark(),
                    fmt::format("machineClass.size: {} control plane machines cannot keep etcd quorum any better "
                                "than {}",
                                size.Scalar(), std::max(1, std::stoi(size.Scalar()) - 1)),
                    "use an odd number: 1, 3 or 5");
    }
  }
  if (has_machines) {
    if (!machines.IsSequence()) {
      sink_.Error(machines.Mark(), fmt::format("machines: must be a list of machine IDs, not {}", KindOf(machines)));
    } else {
      for (std::size_t i = 0; i < machines.size(); ++i) {
        if (!machines[i].IsScalar()) {
          sink_.Error(machines[i].Mark(),
                      fmt::format("machines[{}]: must be a machine ID, not {}", i, KindOf(machines[i])));
          continue;
        }
        listed_machines_.emplace_back(machines[i].Scalar(), machines[i].Mark());
        if (!control_plane) worker_machines_.insert(machines[i].Scalar());
      }
    }
  }
  CheckStrategy(doc["updateStrategy"], "updateStrategy");
  CheckStrategy(doc["deleteStrategy"], "deleteStrategy");
  CheckPatches(doc["patches"], "patches");
  CheckStringList(doc["systemExtensions"], "systemExtensions", "siderolabs/qemu-guest-agent");
  CheckStringList(doc["kernelArgs"], "kernelArgs", "talos.dashboard.disabled=1");
}

void TemplateChecker::CheckMachine(const YAML::Node& doc) {
  UnknownKeys(doc, kMachineKeys, "", "models.Machine");
  CheckDescriptors(doc, "");
  const YAML::Node name = doc["name"];
  if (!name || !name.IsScalar() || name.Scalar().empty()) {
    sink_.Error(doc.Mark(), "kind: Machine needs name: the machine's ID", "add name: <machine UUID>");
  } else {
    const bool listed = std::any_of(listed_machines_.begin(), listed_machines_.end(),
                                    [&](const auto& m) { return m.first == name.Scalar(); });
    if (!listed) {
      sink_.Error(name.Mark(),
                  fmt::format("machine '{}' is not listed by the ControlPlane or any Workers document", name.Scalar()),
                  "add it to a machines: list, or remove this document");
    }
    const YAML::Node locked = doc["locked"];
    bool is_locked = false;
    if (locked && locked.IsScalar() && YAML::convert<bool>::decode(locked, is_locked) && is_locked && listed &&
        !worker_machines_.contains(name.Scalar())) {
      sink_.Error(locked.Mark(), fmt::format("machine '{}': only worker machines can be locked", name.Scalar()),
                  "set locked: false");
    }
  }
  const YAML::Node install = doc["install"];
  if (install && install.IsMap()) UnknownKeys(install, {"disk"}, "install", "");
  CheckPatches(doc["patches"], "patches");
  CheckStringList(doc["systemExtensions"], "systemExtensions", "siderolabs/qemu-guest-agent");
  CheckStringList(doc["kernelArgs"], "kernelArgs", "talos.dashboard.disabled=1");
}

// The nested controlPlane:/workers: value as a ControlPlane/Workers document.
YAML::Node ToMachineSetDocument(const YAML::Node& nested, const char* kind) {
  YAML::Node out(YAML::NodeType::Map);
  out["kind"] = kind;
  if (nested.IsScalar()) {
    out["machineClass"]["name"] = nested.Scalar();
    return out;
  }
  if (!nested.IsMap()) return out;
  if (nested["name"]) out["name"] = YAML::Clone(nested["name"]);
  YAML::Node size;
  for (const char* key : {"size", "count", "replicas"}) {
    if (nested[key]) size = YAML::Clone(nested[key]);
  }
  const YAML::Node machine_class = nested["machineClass"];
  if (machine_class && machine_class.IsScalar()) {
    out["machineClass"]["name"] = machine_class.Scalar();
    if (size.IsDefined() && !size.IsNull()) out["machineClass"]["size"] = size;
  } else if (machine_class && machine_class.IsMap()) {
    out["machineClass"] = YAML::Clone(machine_class);
    if (!machine_class["size"] && size.IsDefined() && !size.IsNull()) out["machineClass"]["size"] = size;
  }
  for (auto it = nested.begin(); it != nested.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key == "name" || key == "machineClass" || key == "size" || key == "count" || key == "replicas" ||
        key == "kind") {
      continue;
    }
    out[key] = YAML::Clone(it->second);
  }
  return out;
}

std::string TemplateChecker::BuildMultiDocument(const std::vector<YAML::Node>& docs, const YAML::Node& cluster) const {
  std::vector<YAML::Node> out;
  YAML::Node top(YAML::NodeType::Map);
  for (auto it = cluster.begin(); it != cluster.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key != "controlPlane" && key != "workers") top[key] = YAML::Clone(it->second);
  }
  // Omni wants Talos versions with their v prefix; adding it is the one value change the rewrite makes.
  if (top["talos"].IsMap() && top["talos"]["version"].IsScalar()) {
    bool has_v = false;
    const std::string version = top["talos"]["version"].Scalar();
    if (IsSemver(version, has_v) && !has_v) top["talos"]["version"] = "v" + version;
  }
  out.push_back(top);
  if (const YAML::Node cp = cluster["controlPlane"]) out.push_back(ToMachineSetDocument(cp, "ControlPlane"));
  if (const YAML::Node workers = cluster["workers"]) {
    if (workers.IsSequence()) {
      for (const auto& set : workers) out.push_back(ToMachineSetDocument(set, "Workers"));
    } else {
      out.push_back(ToMachineSetDocument(workers, "Workers"));
    }
  }
  for (const auto& doc : docs) {
    if (doc.IsMap() && doc["kind"] && doc["kind"].Scalar() != "Cluster") out.push_back(doc);
  }
  std::string text = fmt::format(
      "# {} in the multi-document form Omni's cluster templates take (comments are not carried over).\n", file_.path);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i > 0) text += "---\n";
    YAML::Emitter emitter;
    emitter << out[i];
    text += emitter.c_str();
    text += "\n";
  }
  return text;
}

std::optional<std::string> TemplateChecker::Check(const std::vector<YAML::Node>& docs) {
  std::vector<YAML::Node> clusters;
  std::vector<YAML::Node> control_planes;
  std::map<std::string, YAML::Mark> worker_names;
  for (const auto& doc : docs) {
    const std::string kind = doc["kind"].Scalar();
    if (kind == "Cluster") {
      clusters.push_back(doc);
    } else if (kind == "ControlPlane") {
      control_planes.push_back(doc);
      CheckMachineSet(doc, true);
    } else if (kind == "Workers") {
      CheckMachineSet(doc, false);
      const YAML::Node name = doc["name"];
      const std::string set_name = name && name.IsScalar() ? name.Scalar() : "workers";
      const YAML::Mark mark = name ? name.Mark() : doc.Mark();
      if (set_name == kControlPlanesName) {
        sink_.Error(mark, fmt::format("name: '{}' is reserved for the control plane", set_name),
                    "choose another worker set name");
      } else if (!IsTemplateName(set_name)) {
        sink_.Error(mark, fmt::format("name: '{}' is not a valid worker set name", set_name),
                    "use letters, digits, '-' and '_' only");
      }
      if (auto [it, inserted] = worker_names.emplace(set_name, mark); !inserted) {
        sink_.Error(mark,
                    fmt::format("a second kind: Workers named '{}' (the first is on line {}); names must be unique",
                                set_name, it->second.line + 1),
                    name ? "rename one of them" : "give each Workers document its own name:");
      }
    }
  }
  // Machine documents refer to machines listed by the sets, so they are checked after them.
  for (const auto& doc : docs) {
    if (doc["kind"].Scalar() == "Machine") CheckMachine(doc);
  }

  bool single_document_form = false;
  for (const auto& cluster : clusters) {
    CheckCluster(cluster);
    for (const char* key : {"controlPlane", "workers"}) {
      const YAML::Node nested = cluster[key];
      if (!nested) continue;
      single_document_form = true;
      sink_.Error(KeyMark(cluster, key),
                  fmt::format("{}: Omni rejects the single-document form with \"field {} not found in type "
                              "models.Cluster\"; the control plane and each worker set are documents of their own "
                              "(kind: ControlPlane, kind: Workers) after ---",
                              key, key),
                  fmt::format("run 'omni-proxmox validate --fix {}' to print the multi-document template", file_.path));
      // Record the classes it names so the cross-check still covers them.
      const auto record = [&](const YAML::Node& set) {
        if (!set.IsMap()) return;
        const YAML::Node machine_class = set["machineClass"];
        if (machine_class && machine_class.IsScalar()) RecordClassReference(machine_class);
        if (machine_class && machine_class.IsMap() && machine_class["name"]) {
          RecordClassReference(machine_class["name"]);
        }
      };
      if (nested.IsSequence()) {
        for (const auto& set : nested) record(set);
      } else {
        record(nested);
      }
    }
  }

  const YAML::Mark start = docs.front().Mark();
  if (clusters.empty()) {
    sink_.Error(start, "the template has no kind: Cluster document",
                "add a document with kind: Cluster, name, "
                "kubernetes.version and talos.version");
  } else if (clusters.size() > 1) {
    sink_.Error(clusters[1].Mark(), "a template holds exactly one kind: Cluster document; this is a second one",
                "put each cluster in its own file");
  }
  if (control_planes.empty() && !single_document_form) {
    sink_.Error(start, "the template has no kind: ControlPlane document",
                "add a document after ---: kind: ControlPlane with machineClass: {name: control-plane, size: 3}");
  } else if (control_planes.size() > 1) {
    sink_.Error(control_planes[1].Mark(),
                "a template holds exactly one kind: ControlPlane document (Omni: template should contain 1 "
                "controlplane); this is a second one",
                "keep one ControlPlane; pin workers instead with several Workers documents");
  }
  if (single_document_form && clusters.size() == 1) return BuildMultiDocument(docs, clusters.front());
  return std::nullopt;
}

}  // namespace

std::optional<std::string> CheckClusterTemplate(const std::vector<YAML::Node>& docs, const FileInput& file, Sink& sink,
                                                Facts& facts) {
  if (docs.empty()) return std::nullopt;
  TemplateChecker checker(file, sink, facts);
  return checker.Check(docs);
}

}  // namespace omni_proxmox::cli::validate
