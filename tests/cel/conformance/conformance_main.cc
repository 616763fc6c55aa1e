// SPDX-License-Identifier: Apache-2.0
// Runs the official CEL conformance suite (google/cel-spec tests/simple/testdata) against our engine.
//
//   cel-conformance [--data DIR] [--files basic,comparisons,...] [--skip FILE] [--min-pass N] [--verbose]
//
// Loads each <file>.textproto with protobuf TextFormat into our own copy of the SimpleTestFile schema, compiles
// each test (type-checked unless disable_check), evaluates it with the test's bindings and compares the result the
// way the cel-go and cel-cpp runners do: an unset matcher means `true`, eval_error means "any error", maps compare
// order-insensitively and NaN equals NaN. Prints per-file counts and a final "N passed, M failed" line; exits 1
// when fewer than --min-pass tests pass or any test fails when --min-pass is not given.

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <google/protobuf/empty.pb.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "cel/cel.h"
#include "cel/expr/conformance/test/simple.pb.h"

namespace {

namespace cel = omni_proxmox::cel;
namespace pb = ::cel::expr;
namespace pbt = ::cel::expr::conformance::test;

const char* const kCoreFiles[] = {"basic", "comparisons", "conversions", "fields", "fp_math",  "integer_math",
                                  "lists", "logic",       "macros",      "parse",  "plumbing", "string"};

// Tests of the core files we skip on top of skip_storage_profile.txt, with the reason. Keep this list short.
const std::pair<const char*, const char*> kProjectSkips[] = {
    {"string_ext/format", "string.format() is not implemented (not useful in selectors)"},
    {"string_ext/format_errors", "string.format() is not implemented"},
    {"string_ext/quote", "strings.quote() is not implemented (namespaced function)"},
};

// Any payloads (TestAllTypes messages) only occur in tests we skip; parse them as opaque placeholders so the
// files load without a full copy of test_all_types.proto.
class PlaceholderFinder : public google::protobuf::TextFormat::Finder {
 public:
  const google::protobuf::Descriptor* FindAnyType(const google::protobuf::Message&, const std::string&,
                                                  const std::string&) const override {
    return google::protobuf::Empty::descriptor();
  }
};

// Reports parse errors; drops the warnings about fields of the placeholder Any payloads.
class QuietCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    std::cerr << "cel-conformance: " << line + 1 << ":" << column + 1 << ": " << message << "\n";
  }
  void AddWarning(int, int, const std::string&) override {}
};

cel::Type ConvertType(const pb::Type& t) {
  switch (t.type_kind_case()) {
    case pb::Type::kPrimitive:
      switch (t.primitive()) {
        case pb::Type::BOOL:
          return cel::Type::Bool();
        case pb::Type::INT64:
          return cel::Type::Int();
        case pb::Type::UINT64:
          return cel::Type::Uint();
        case pb::Type::DOUBLE:
          return cel::Type::Double();
        case pb::Type::STRING:
          return cel::Type::String();
        case pb::Type::BYTES:
          return cel::Type::Bytes();
        default:
          return cel::Type::Dyn();
      }
    case pb::Type::kNull:
      return cel::Type::Null();
    case pb::Type::kListType:
      return cel::Type::List(ConvertType(t.list_type().elem_type()));
    case pb::Type::kMapType:
      return cel::Type::Map(ConvertType(t.map_type().key_type()), ConvertType(t.map_type().value_type()));
    case pb::Type::kType:
      return cel::Type::TypeOf(ConvertType(t.type()));
    default:
      return cel::Type::Dyn();
  }
}

bool ConvertValue(const pb::Value& v, cel::Value& out) {
  switch (v.kind_case()) {
    case pb::Value::kNullValue:
      out = cel::Value::Null();
      return true;
    case pb::Value::kBoolValue:
      out = cel::Value::Bool(v.bool_value());
      return true;
    case pb::Value::kInt64Value:
      out = cel::Value::Int(v.int64_value());
      return true;
    case pb::Value::kUint64Value:
      out = cel::Value::Uint(v.uint64_value());
      return true;
    case pb::Value::kDoubleValue:
      out = cel::Value::Double(v.double_value());
      return true;
    case pb::Value::kStringValue:
      out = cel::Value::String(v.string_value());
      return true;
    case pb::Value::kBytesValue:
      out = cel::Value::Bytes(v.bytes_value());
      return true;
    case pb::Value::kTypeValue: {
      // Type values are compared by name; keep the name alive for the process (few distinct names).
      static std::set<std::string> names;
      out = cel::Value::TypeName(*names.insert(v.type_value()).first);
      return true;
    }
    case pb::Value::kListValue: {
      cel::ListRep list;
      for (const auto& e : v.list_value().values()) {
        cel::Value item;
        if (!ConvertValue(e, item)) return false;
        list.push_back(std::move(item));
      }
      out = cel::Value::List(std::move(list));
      return true;
    }
    case pb::Value::kMapValue: {
      cel::MapRep map;
      for (const auto& e : v.map_value().entries()) {
        cel::Value k, val;
        if (!ConvertValue(e.key(), k) || !ConvertValue(e.value(), val)) return false;
        map.emplace_back(std::move(k), std::move(val));
      }
      out = cel::Value::MakeMap(std::move(map));
      return !out.IsError();
    }
    default:
      return false;  // enums, messages
  }
}

// Exact equality for matching results: kinds must agree (1 != 1u here), NaN equals NaN, maps are unordered.
bool Same(const cel::Value& a, const cel::Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case cel::Kind::kNull:
      return true;
    case cel::Kind::kBool:
      return a.bool_value() == b.bool_value();
    case cel::Kind::kInt:
      return a.int_value() == b.int_value();
    case cel::Kind::kUint:
      return a.uint_value() == b.uint_value();
    case cel::Kind::kDouble:
      return (std::isnan(a.double_value()) && std::isnan(b.double_value())) || a.double_value() == b.double_value();
    case cel::Kind::kString:
    case cel::Kind::kBytes:
    case cel::Kind::kType:
    case cel::Kind::kError:
      return a.text() == b.text();
    case cel::Kind::kList:
      if (a.list().size() != b.list().size()) return false;
      for (std::size_t i = 0; i < a.list().size(); ++i) {
        if (!Same(a.list()[i], b.list()[i])) return false;
      }
      return true;
    case cel::Kind::kMap:
      if (a.map().size() != b.map().size()) return false;
      for (const auto& [k, v] : a.map()) {
        bool found = false;
        for (const auto& [k2, v2] : b.map()) {
          if (Same(k, k2)) {
            found = Same(v, v2);
            break;
          }
        }
        if (!found) return false;
      }
      return true;
  }
  return false;
}

struct Outcome {
  bool pass = false;
  std::string detail;
};

Outcome RunTest(const pbt::SimpleTest& test, bool cross_type) {
  cel::Env env;
  env.type_check = !test.disable_check();
  env.parse.enable_macros = !test.disable_macros();
  env.check.string_extensions = true;
  env.check.cross_type_numeric_comparisons = cross_type;
  std::map<std::string, int> slots;
  for (const auto& decl : test.type_env()) {
    if (decl.has_ident()) slots[decl.name()] = env.AddVariable(decl.name(), ConvertType(decl.ident().type()));
  }
  for (const auto& [name, value] : test.bindings()) {
    if (!slots.count(name)) slots[name] = env.AddVariable(name, cel::Type::Dyn());
  }
  auto program = cel::Compile(env, test.expr());
  if (!program.ok()) return {false, "compile error: " + std::string(program.status().message())};
  if (test.check_only()) return {true, ""};

  cel::VectorActivation activation(env);
  for (const auto& [name, value] : test.bindings()) {
    if (!value.has_value()) return {false, "unsupported binding kind"};
    cel::Value v;
    if (!ConvertValue(value.value(), v)) return {false, "unsupported binding value"};
    activation.Set(slots[name], std::move(v));
  }
  const cel::Value result = program->Evaluate(activation);
  switch (test.result_matcher_case()) {
    case pbt::SimpleTest::kEvalError:
    case pbt::SimpleTest::kAnyEvalErrors:
      if (result.IsError()) return {true, ""};
      return {false, "expected an error, got " + result.DebugString()};
    case pbt::SimpleTest::kValue:
    case pbt::SimpleTest::RESULT_MATCHER_NOT_SET:
    case pbt::SimpleTest::kTypedResult: {
      cel::Value want = cel::Value::Bool(true);
      const pb::Value* expected = test.has_value()          ? &test.value()
                                  : test.has_typed_result() ? &test.typed_result().result()
                                                            : nullptr;
      if (expected != nullptr && !ConvertValue(*expected, want)) return {false, "unsupported expected value"};
      if (Same(result, want)) return {true, ""};
      return {false, "got " + result.DebugString() + ", want " + want.DebugString()};
    }
    default:
      return {false, "unsupported matcher (unknowns)"};
  }
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// The skip entry matching `key` (the key itself or a prefix ending at '/'), or nullptr.
const std::string* Skipped(const std::vector<std::string>& skips, const std::string& key) {
  for (const auto& s : skips) {
    if (key == s || (key.size() > s.size() && key.compare(0, s.size(), s) == 0 && key[s.size()] == '/')) {
      return &s;
    }
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  std::string data = std::string(OP_SHARED_DIR) + "/cel-spec-data";
  std::vector<std::string> files(std::begin(kCoreFiles), std::end(kCoreFiles));
  std::string skip_file;
  bool skip_file_set = false;
  long min_pass = -1;
  bool verbose = false;
  bool cross_type = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "cel-conformance: " << arg << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--data") {
      data = next();
    } else if (arg == "--files") {
      files = Split(next(), ',');
    } else if (arg == "--skip") {
      skip_file = next();
      skip_file_set = true;
    } else if (arg == "--min-pass") {
      min_pass = std::strtol(next().c_str(), nullptr, 10);
    } else if (arg == "--verbose" || arg == "-v") {
      verbose = true;
    } else if (arg == "--no-cross-type-comparisons") {
      cross_type = false;
    } else {
      std::cerr << "usage: cel-conformance [--data DIR] [--files a,b] [--skip FILE|none] [--min-pass N] "
                   "[--verbose] [--no-cross-type-comparisons]\n";
      return 2;
    }
  }
  if (!skip_file_set) skip_file = data + "/skip_storage_profile.txt";

  std::vector<std::string> skips;
  if (skip_file != "none") {
    std::ifstream in(skip_file);
    if (!in) {
      std::cerr << "cel-conformance: cannot read skip list " << skip_file << "\n";
      return 2;
    }
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      skips.push_back(line.substr(0, line.find_first_of(" \t")));
    }
  }
  for (const auto& [key, why] : kProjectSkips) skips.emplace_back(key);

  long passed = 0, failed = 0, skipped = 0;
  std::map<std::string, long> project_skip_hits;
  for (const auto& file : files) {
    const std::string path = data + "/tests/simple/testdata/" + file + ".textproto";
    std::ifstream in(path);
    if (!in) {
      std::cerr << "cel-conformance: cannot read " << path << "\n";
      return 2;
    }
    std::stringstream buf;
    buf << in.rdbuf();
    pbt::SimpleTestFile suite;
    google::protobuf::TextFormat::Parser parser;
    PlaceholderFinder finder;
    parser.SetFinder(&finder);
    parser.AllowUnknownField(true);
    QuietCollector collector;
    parser.RecordErrorsTo(&collector);
    if (!parser.ParseFromString(buf.str(), &suite)) {
      std::cerr << "cel-conformance: cannot parse " << path << "\n";
      return 2;
    }
    long file_pass = 0, file_fail = 0, file_skip = 0;
    for (const auto& section : suite.section()) {
      for (const auto& test : section.test()) {
        const std::string key = suite.name() + "/" + section.name() + "/" + test.name();
        if (const std::string* entry = Skipped(skips, key)) {
          ++file_skip;
          for (const auto& [prefix, why] : kProjectSkips) {
            if (*entry == prefix) ++project_skip_hits[prefix];
          }
          continue;
        }
        const Outcome outcome = RunTest(test, cross_type);
        if (outcome.pass) {
          ++file_pass;
        } else {
          ++file_fail;
          if (verbose) std::cout << "FAIL " << key << ": " << test.expr() << "\n    " << outcome.detail << "\n";
        }
      }
    }
    std::cout << file << ": " << file_pass << " passed, " << file_fail << " failed, " << file_skip << " skipped\n";
    passed += file_pass;
    failed += file_fail;
    skipped += file_skip;
  }
  long project_skipped = 0;
  for (const auto& [key, count] : project_skip_hits) project_skipped += count;
  std::cout << "skipped " << skipped << ": " << skipped - project_skipped << " listed in " << skip_file << "\n";
  for (const auto& [key, why] : kProjectSkips) {
    if (project_skip_hits.count(key)) std::cout << "  " << project_skip_hits[key] << " " << key << ": " << why << "\n";
  }
  std::cout << passed << " passed, " << failed << " failed\n";
  if (min_pass >= 0) return passed >= min_pass ? 0 : 1;
  return failed == 0 ? 0 : 1;
}
