// SPDX-License-Identifier: Apache-2.0
#include "cel/checker.h"

#include <string>

#include <gtest/gtest.h>

#include "cel/cel.h"
#include "cel/parser.h"

namespace omni_proxmox::cel {
namespace {

// The Go provider's environment: exactly four variables, no extensions, no constants.
Env GoProviderEnv() {
  Env env;
  env.AddVariable("name", Type::String());
  env.AddVariable("node", Type::String());
  env.AddVariable("storageType", Type::String());
  env.AddVariable("availableSpace", Type::Uint());
  return env;
}

std::string CompileError(const Env& env, std::string_view src) {
  auto program = Compile(env, src);
  return program.ok() ? "<ok>" : std::string(program.status().message());
}

std::string TypeOf(const Env& env, std::string_view src) {
  auto program = Compile(env, src);
  if (!program.ok()) return "error: " + std::string(program.status().message());
  return program->result_type().ToString();
}

TEST(CheckerTest, TypeIsATypeDenotationInTheGoEnvironment) {
  EXPECT_EQ(CompileError(GoProviderEnv(), R"(type == "rbd" && name == "vm_ssd")"),
            "ERROR: <input>:1:6: found no matching overload for '_==_' applied to '(type(type), string)'\n"
            " | type == \"rbd\" && name == \"vm_ssd\"\n"
            " | .....^");
}

TEST(CheckerTest, HomogeneousNumericOverloads) {
  const Env env = GoProviderEnv();
  EXPECT_EQ(CompileError(env, "availableSpace > 100 * 1024 * 1024 * 1024"),
            "ERROR: <input>:1:16: found no matching overload for '_>_' applied to '(uint, int)'\n"
            " | availableSpace > 100 * 1024 * 1024 * 1024\n"
            " | ...............^");
  EXPECT_NE(CompileError(env, "availableSpace > 1.5e9").find("applied to '(uint, double)'"), std::string::npos);
  EXPECT_NE(CompileError(env, "name.size() > 3u").find("'_>_' applied to '(int, uint)'"), std::string::npos);
  EXPECT_NE(CompileError(env, "storageType == 1").find("'_==_' applied to '(string, int)'"), std::string::npos);
  EXPECT_NE(CompileError(env, "1 + 1u").find("'_+_' applied to '(int, uint)'"), std::string::npos);
  // The documented workarounds compile.
  EXPECT_EQ(CompileError(env, "dyn(availableSpace) > 100"), "<ok>");
  EXPECT_EQ(CompileError(env, "int(availableSpace) > 100"), "<ok>");
  EXPECT_EQ(CompileError(env, "availableSpace > uint(100)"), "<ok>");
  EXPECT_EQ(CompileError(env, "availableSpace > 100u * 1024u * 1024u * 1024u"), "<ok>");
}

TEST(CheckerTest, CrossTypeComparisonsAreAnOption) {
  Env env = GoProviderEnv();
  env.check.cross_type_numeric_comparisons = true;
  EXPECT_EQ(CompileError(env, "availableSpace > 100"), "<ok>");
  EXPECT_NE(CompileError(env, "availableSpace + 100 > 0u"), "<ok>");  // arithmetic stays homogeneous
}

TEST(CheckerTest, UndeclaredReferences) {
  const Env env = GoProviderEnv();
  EXPECT_EQ(CompileError(env, R"(nme == "local-lvm")"),
            "ERROR: <input>:1:1: undeclared reference to 'nme' (in container '')\n"
            " | nme == \"local-lvm\"\n"
            " | ^");
  EXPECT_NE(CompileError(env, "GiB > 0u").find("undeclared reference to 'GiB'"), std::string::npos);
  EXPECT_NE(CompileError(env, "name.lowerAscii() == 'x'").find("undeclared reference to 'lowerAscii'"),
            std::string::npos);
  EXPECT_NE(CompileError(env, "frobnicate(name)").find("undeclared reference to 'frobnicate'"), std::string::npos);
}

TEST(CheckerTest, NoMatchingOverloadShapes) {
  const Env env = GoProviderEnv();
  EXPECT_NE(CompileError(env, R"("lvm" in name)").find("'@in' applied to '(string, string)'"), std::string::npos);
  EXPECT_NE(CompileError(env, R"(name == "a" ? true : 1)").find("'_?_:_' applied to '(bool, bool, int)'"),
            std::string::npos);
  EXPECT_NE(CompileError(env, "null == name").find("'_==_' applied to '(null, string)'"), std::string::npos);
  EXPECT_NE(CompileError(env, "name.contains(1)").find("'contains' applied to 'string.(int)'"), std::string::npos);
  EXPECT_NE(CompileError(env, "!name").find("'!_' applied to '(string)'"), std::string::npos);
}

TEST(CheckerTest, FieldSelectionOnNonMaps) {
  EXPECT_EQ(CompileError(GoProviderEnv(), "has(name.x)"),
            "ERROR: <input>:1:9: type 'string' does not support field selection\n | has(name.x)\n | ........^");
}

TEST(CheckerTest, ResultTypes) {
  const Env env = GoProviderEnv();
  EXPECT_EQ(TypeOf(env, "name"), "string");
  EXPECT_EQ(TypeOf(env, "availableSpace"), "uint");
  EXPECT_EQ(TypeOf(env, "dyn(true)"), "dyn");
  EXPECT_EQ(TypeOf(env, "[true][0]"), "bool");
  EXPECT_EQ(TypeOf(env, "name == 'x' ? 'yes' : 'no'"), "string");
  EXPECT_EQ(TypeOf(env, "[1, 2]"), "list(int)");
  EXPECT_EQ(TypeOf(env, "[1, 'a']"), "list(dyn)");
  EXPECT_EQ(TypeOf(env, "{'a': 1u}"), "map(string, uint)");
  EXPECT_EQ(TypeOf(env, "{'a': 1u}['a']"), "uint");
  EXPECT_EQ(TypeOf(env, "[1, 2].map(x, x * 2)"), "list(int)");
  EXPECT_EQ(TypeOf(env, "[1, 2].filter(x, x > 1)"), "list(int)");
  EXPECT_EQ(TypeOf(env, "['a'].exists(x, x == name)"), "bool");
  EXPECT_EQ(TypeOf(env, "type(1)"), "type(int)");
  EXPECT_EQ(TypeOf(env, "type(1) == int"), "bool");
  EXPECT_EQ(TypeOf(env, "size(name)"), "int");
}

TEST(CheckerTest, ComprehensionTyping) {
  const Env env = GoProviderEnv();
  EXPECT_NE(CompileError(env, "name.all(x, x)").find("cannot be the range of a comprehension"), std::string::npos);
  EXPECT_NE(CompileError(env, "[1, 2].all(x, x)").find("no matching overload for '_&&_' applied to '(bool, int)'"),
            std::string::npos);
  // The iteration variable shadows a global and is scoped to the macro.
  EXPECT_EQ(TypeOf(env, "[1, 2].exists(name, name > 1) && name == 'x'"), "bool");
  EXPECT_NE(CompileError(env, "[1].all(x, x > 0) && x > 0").find("undeclared reference to 'x'"), std::string::npos);
}

TEST(CheckerTest, SeveralIssuesAreReportedTogether) {
  auto program = Compile(GoProviderEnv(), "a == 1 || b == 2");
  ASSERT_FALSE(program.ok());
  const std::string msg(program.status().message());
  EXPECT_NE(msg.find("1:1: undeclared reference to 'a'"), std::string::npos);
  EXPECT_NE(msg.find("1:11: undeclared reference to 'b'"), std::string::npos);
  EXPECT_EQ(program.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CheckerTest, TypeToString) {
  EXPECT_EQ(Type::Map(Type::String(), Type::List(Type::Uint())).ToString(), "map(string, list(uint))");
  EXPECT_EQ(Type::TypeOf(Type::Int()).ToString(), "type(int)");
  EXPECT_EQ(Type::Null().ToString(), "null");
}

}  // namespace
}  // namespace omni_proxmox::cel
