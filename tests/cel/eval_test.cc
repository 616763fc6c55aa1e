// SPDX-License-Identifier: Apache-2.0
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "cel/cel.h"

namespace omni_proxmox::cel {
namespace {

// Evaluates `src` in an environment with x (int), u (uint), s (string) and d (dyn), checked unless `check` is
// false. Returns the DebugString of the result ("error: ..." for errors) or "compile: ..." on compile errors.
std::string Eval(std::string_view src, bool check = true) {
  Env env;
  const int x = env.AddVariable("x", Type::Int());
  const int u = env.AddVariable("u", Type::Uint());
  const int s = env.AddVariable("s", Type::String());
  const int d = env.AddVariable("d", Type::Dyn());
  env.type_check = check;
  env.check.string_extensions = true;
  auto program = Compile(env, src);
  if (!program.ok()) return "compile: " + std::string(program.status().message());
  VectorActivation act(env);
  act.Set(x, Value::Int(7));
  act.Set(u, Value::Uint(200));
  act.Set(s, Value::String("mañana"));
  act.Set(d, Value::Int(1));
  return program->Evaluate(act).DebugString();
}

TEST(EvalTest, CheckedIntegerOverflow) {
  EXPECT_EQ(Eval("9223372036854775807 + 1 > 0"), "error: integer overflow");
  EXPECT_EQ(Eval("-9223372036854775808 - 1"), "error: integer overflow");
  EXPECT_EQ(Eval("-9223372036854775808 * -1"), "error: integer overflow");
  EXPECT_EQ(Eval("-9223372036854775808 / -1"), "error: integer overflow");
  EXPECT_EQ(Eval("-9223372036854775808 % -1"), "error: integer overflow");
  EXPECT_EQ(Eval("-(x - 7 - 9223372036854775807 - 1)"), "error: integer overflow");
  EXPECT_EQ(Eval("0u - 1u"), "error: unsigned integer overflow");
  EXPECT_EQ(Eval("18446744073709551615u + 1u"), "error: unsigned integer overflow");
  EXPECT_EQ(Eval("u - 300u * 1024u * 1024u * 1024u > 0u"), "error: unsigned integer overflow");
  EXPECT_EQ(Eval("x / 0"), "error: division by zero");
  EXPECT_EQ(Eval("u / 0u"), "error: division by zero");
  EXPECT_EQ(Eval("x % 0"), "error: modulus by zero");
  EXPECT_EQ(Eval("-3 % 5"), "-3");
  EXPECT_EQ(Eval("43 % -5"), "3");
  EXPECT_EQ(Eval("-7 / 2"), "-3");
  EXPECT_EQ(Eval("15.75 / 0.0"), "+Inf");
}

TEST(EvalTest, LogicAbsorbsErrorsOnEitherSide) {
  EXPECT_EQ(Eval("1/0 == 0 || s == 'mañana'"), "true");
  EXPECT_EQ(Eval("s == 'mañana' || 1/0 == 0"), "true");
  EXPECT_EQ(Eval("1/0 == 0 && s == 'nope'"), "false");
  EXPECT_EQ(Eval("s == 'nope' && 1/0 == 0"), "false");
  EXPECT_EQ(Eval("1/0 == 0 || s == 'x'"), "error: division by zero");
  EXPECT_EQ(Eval("true && 1/0 == 0"), "error: division by zero");
  EXPECT_EQ(Eval("false || 1/0 == 0"), "error: division by zero");
  EXPECT_EQ(Eval("x / 0 > 4 ? 'baz' : 'quux'"), "error: division by zero");
  EXPECT_EQ(Eval("x > 4 ? 'baz' : string(x / 0)"), "\"baz\"");
  // Unchecked: non-bool operands are absorbed the same way, and unknown names are runtime errors.
  EXPECT_EQ(Eval("'horses' || true", false), "true");
  EXPECT_EQ(Eval("false && 32", false), "false");
  EXPECT_EQ(Eval("undeclared || true", false), "true");
  EXPECT_EQ(Eval("f_unknown(17) || true", false), "true");
  EXPECT_EQ(Eval("f_unknown(17)", false), "error: undeclared reference to 'f_unknown'");
  EXPECT_EQ(Eval("!'x'", false), "error: no matching overload for '!_' applied to '(string)'");
}

TEST(EvalTest, HeterogeneousEqualityAndOrdering) {
  EXPECT_EQ(Eval("dyn(1) == 1u"), "true");
  EXPECT_EQ(Eval("dyn(1u) == 1.0"), "true");
  EXPECT_EQ(Eval("[1.0, 2.0, 3] == [1u, 2, 3u]"), "true");
  EXPECT_EQ(Eval("dyn('a') == 1"), "false");
  EXPECT_EQ(Eval("dyn(2) < 2.5"), "true");
  EXPECT_EQ(Eval("dyn(u) > 100"), "true");
  EXPECT_EQ(Eval("dyn(-1) < 0u"), "true");
  EXPECT_EQ(Eval("dyn(9223372036854775807) < 9223372036854775808.0"), "false");
  EXPECT_EQ(Eval("dyn(18446744073709551615u) < 18446744073709590000.0"), "true");
  EXPECT_EQ(Eval("0.0/0.0 == 0.0/0.0"), "false");
  EXPECT_EQ(Eval("'elem' in [1, 'elem', 2]"), "true");
  EXPECT_EQ(Eval("3.0 in {1: 1, 2: 2, 3u: 3}"), "true");
  EXPECT_EQ(Eval("{'a': 1, 'b': 2} == {'b': 2, 'a': 1}"), "true");
  EXPECT_EQ(Eval("dyn('a') < 1"), "error: no matching overload for '_<_' applied to '(string, int)'");
}

TEST(EvalTest, StringsAreCodePoints) {
  EXPECT_EQ(Eval("size(s)"), "6");
  EXPECT_EQ(Eval("s.size()"), "6");
  EXPECT_EQ(Eval("size(b'ma\\xc3\\xb1')"), "4");
  EXPECT_EQ(Eval("s.startsWith('ma') && s.endsWith('ana') && s.contains('ñ')"), "true");
  EXPECT_EQ(Eval("'abc' < 'abd' && b'a' < b'b'"), "true");
}

TEST(EvalTest, MatchesUsesRe2PartialMatch) {
  EXPECT_EQ(Eval("'hubba'.matches('ubb')"), "true");
  EXPECT_EQ(Eval("s.matches('a+ñ+a+')"), "true");
  EXPECT_EQ(Eval("matches(s, '^mañ')"), "true");
  EXPECT_EQ(Eval("s.matches('(?i)MAÑANA')"), "true");
  EXPECT_EQ(Eval("s.matches('\\\\pL+')"), "true");
  EXPECT_EQ(Eval("s.matches('^x')"), "false");
  // A bad pattern is a runtime error (as in cel-go), both for constant and computed patterns.
  EXPECT_EQ(Eval("s.matches('(')"), "error: error parsing regexp: missing ): (");
  EXPECT_EQ(Eval("s.matches(s + '(')"), "error: error parsing regexp: missing ): mañana(");
  EXPECT_EQ(Eval("s.matches('(') || true"), "true");
}

TEST(EvalTest, Conversions) {
  EXPECT_EQ(Eval("int('-42')"), "-42");
  EXPECT_EQ(Eval("int(' 42')"), "error: cannot convert string ' 42' to int");
  EXPECT_EQ(Eval("int(2.9)"), "2");
  EXPECT_EQ(Eval("int(-2.9)"), "-2");
  EXPECT_EQ(Eval("int(9223372036854775807u)"), "9223372036854775807");
  EXPECT_EQ(Eval("int(9223372036854775808u)"), "error: integer overflow");
  EXPECT_EQ(Eval("int(1e19)"), "error: integer overflow: double out of int range");
  EXPECT_EQ(Eval("uint(-1)"), "error: unsigned integer overflow");
  EXPECT_EQ(Eval("uint('18446744073709551615')"), "18446744073709551615u");
  EXPECT_EQ(Eval("double('1e3')"), "1000");
  EXPECT_EQ(Eval("string(-4.5e-3)"), "\"-0.0045\"");
  EXPECT_EQ(Eval("string(1000000.0)"), "\"1e+06\"");
  EXPECT_EQ(Eval("string(123.456)"), "\"123.456\"");
  EXPECT_EQ(Eval("string(9876u)"), "\"9876\"");
  EXPECT_EQ(Eval("string(b'\\xff')"), "error: invalid UTF-8 in bytes, cannot convert to string");
  EXPECT_EQ(Eval("bytes('ñ')"), "b\"\xc3\xb1\"");
  EXPECT_EQ(Eval("bool('True') && !bool('f')"), "true");
  EXPECT_EQ(Eval("bool('TrUe')"), "error: cannot convert string 'TrUe' to bool");
  EXPECT_EQ(Eval("type(1u) == uint && type(type(1)) == type"), "true");
  EXPECT_EQ(Eval("type(s)"), "string");
  EXPECT_EQ(Eval("dyn([1])[0] + 1"), "2");
}

TEST(EvalTest, ListsMapsAndMacros) {
  EXPECT_EQ(Eval("[1, 2] + [3]"), "[1, 2, 3]");
  EXPECT_EQ(Eval("[1, 2][2]"), "error: index out of range: 2 (list size 2)");
  EXPECT_EQ(Eval("{'other': 1u}[s] > 0u"), "error: no such key: mañana");
  EXPECT_EQ(Eval("{'a': {'b': 1}}.a.b"), "1");
  EXPECT_EQ(Eval("{'a': 1}.c"), "error: no such key: c");
  EXPECT_EQ(Eval("has({'a': 1}.a) && !has({'a': 1}.c)"), "true");
  EXPECT_EQ(Eval("{'a': 1, 'a': 2}", false), "error: Failed with repeated key: \"a\"");
  EXPECT_EQ(Eval("[1, 2, 3].all(i, i > 0)"), "true");
  EXPECT_EQ(Eval("[1, 2, 3].exists(i, i > 2)"), "true");
  EXPECT_EQ(Eval("[1, 2, 3].exists_one(i, i > 1)"), "false");
  EXPECT_EQ(Eval("[1, 2, 3].map(i, i * 2)"), "[2, 4, 6]");
  EXPECT_EQ(Eval("[1, 2, 3].map(i, i > 1, i * 2)"), "[4, 6]");
  EXPECT_EQ(Eval("[1, 2, 3].filter(i, i != 2)"), "[1, 3]");
  EXPECT_EQ(Eval("{'a': 1, 'b': 2}.map(k, k)"), "[\"a\", \"b\"]");
  // all/exists absorb errors like && / ||; exists_one, map and filter are strict.
  EXPECT_EQ(Eval("[0, 1].all(i, 1 / i > 5)"), "false");
  EXPECT_EQ(Eval("[0, 1].exists(i, 1 / i == 1)"), "true");
  EXPECT_EQ(Eval("[0, 1].all(i, 1 / i == 1)"), "error: division by zero");
  EXPECT_EQ(Eval("[0, 1].exists_one(i, 1 / i == 1)"), "error: division by zero");
  // Nested comprehensions with shadowing.
  EXPECT_EQ(Eval("[[1], [2, 3]].map(x, x.map(x, x + 1))"), "[[2], [3, 4]]");
}

TEST(EvalTest, StringExtensions) {
  EXPECT_EQ(Eval("'Local-LVM'.lowerAscii()"), "\"local-lvm\"");
  EXPECT_EQ(Eval("'ceph-ssd'.upperAscii()"), "\"CEPH-SSD\"");
  EXPECT_EQ(Eval("'  \\t fast \\n'.trim()"), "\"fast\"");
  EXPECT_EQ(Eval("'a,b,c'.split(',')"), "[\"a\", \"b\", \"c\"]");
  EXPECT_EQ(Eval("'a,b,c'.split(',', 2)"), "[\"a\", \"b,c\"]");
  EXPECT_EQ(Eval("['a', 'b'].join('-')"), "\"a-b\"");
  EXPECT_EQ(Eval("['a', 'b'].join()"), "\"ab\"");
  EXPECT_EQ(Eval("'vm-ssd-1'.replace('-', '_')"), "\"vm_ssd_1\"");
  EXPECT_EQ(Eval("'vm-ssd-1'.replace('-', '_', 1)"), "\"vm_ssd-1\"");
  EXPECT_EQ(Eval("s.indexOf('ñ')"), "2");
  EXPECT_EQ(Eval("s.indexOf('a', 2)"), "3");
  EXPECT_EQ(Eval("s.lastIndexOf('a')"), "5");
  EXPECT_EQ(Eval("s.indexOf('a', 9)"), "error: index out of range: 9");
  EXPECT_EQ(Eval("s.substring(2)"), "\"ñana\"");
  EXPECT_EQ(Eval("s.substring(2, 3)"), "\"ñ\"");
  EXPECT_EQ(Eval("s.substring(3, 2)"), "error: invalid substring range. start: 3, end: 2");
  EXPECT_EQ(Eval("s.charAt(2)"), "\"ñ\"");
  EXPECT_EQ(Eval("'abc'.reverse()"), "\"cba\"");
}

// A bound string need not be valid UTF-8 (it comes from the embedder): the extensions see each invalid byte as
// U+FFFD, as cel-go's do (Go's []rune conversion), and size() still counts it as one code point.
TEST(EvalTest, StringExtensionsReadInvalidBytesAsReplacementCharacters) {
  Env env;
  const int s = env.AddVariable("s", Type::String());
  env.check.string_extensions = true;
  VectorActivation act(env);
  const std::string bad =
      "a\xff\xc3"
      "b";  // a stray byte, then a lead byte whose continuation is missing
  act.Set(s, Value::StringView(bad));
  auto eval = [&](std::string_view src) {
    auto program = Compile(env, src);
    return program.ok() ? program->Evaluate(act).DebugString() : std::string(program.status().message());
  };
  EXPECT_EQ(eval("s.charAt(1)"), "\"\xef\xbf\xbd\"");
  EXPECT_EQ(eval("s.reverse()"),
            "\"b\xef\xbf\xbd\xef\xbf\xbd"
            "a\"");
  EXPECT_EQ(eval("s.indexOf('b')"), "3");
  EXPECT_EQ(eval("size(s)"), "4");
}

TEST(EvalTest, ConstantsAreFoldedButErrorsStayRuntime) {
  Env env;
  env.AddConstant("GiB", Value::Uint(1ull << 30));
  auto program = Compile(env, "100u * GiB");
  ASSERT_TRUE(program.ok());
  VectorActivation act(env);
  EXPECT_EQ(program->Evaluate(act).DebugString(), "107374182400u");
  auto err = Compile(env, "false && 1 / 0 == 0");
  ASSERT_TRUE(err.ok());  // not a compile error
  EXPECT_EQ(err->Evaluate(act).DebugString(), "false");
}

TEST(EvalTest, ComprehensionWorkIsBounded) {
  Env env;
  auto nested = Compile(env,
                        "[0,1,2,3,4,5,6,7,8,9].all(a, [0,1,2,3,4,5,6,7,8,9].all(b, "
                        "[0,1,2,3,4,5,6,7,8,9].all(c, [0,1,2,3,4,5,6,7,8,9].all(d, a + b + c + d >= 0))))");
  ASSERT_TRUE(nested.ok());
  VectorActivation act(env);
  EXPECT_EQ(nested->Evaluate(act).DebugString(), "error: comprehension iteration limit exceeded");
  env.max_comprehension_iterations = 20000;
  auto allowed = Compile(env, nested->source());
  EXPECT_EQ(allowed->Evaluate(act).DebugString(), "true");
}

TEST(EvalTest, UnboundVariableIsAnError) {
  Env env;
  env.AddVariable("x", Type::Int());
  auto program = Compile(env, "x > 1 || true");
  ASSERT_TRUE(program.ok());
  VectorActivation act(env);
  EXPECT_EQ(program->Evaluate(act).DebugString(), "true");
  auto strict = Compile(env, "x > 1");
  EXPECT_EQ(strict->Evaluate(act).DebugString(), "error: no value bound to variable 'x'");
}

TEST(EvalTest, OwnDetachesFromProgramAndActivation) {
  Value kept;
  {
    Env env;
    const int s = env.AddVariable("s", Type::String());
    auto program = Compile(env, "[s, 'const', {'k': s}]");
    ASSERT_TRUE(program.ok());
    std::string text = "temporary";
    VectorActivation act(env);
    act.Set(s, Value::StringView(text));
    kept = program->Evaluate(act).Own();
    text.assign("XXXXXXXXX");
  }
  EXPECT_EQ(kept.DebugString(), "[\"temporary\", \"const\", {\"k\": \"temporary\"}]");
}

TEST(EvalTest, ProgramIsSharedAcrossThreads) {
  Env env;
  const int x = env.AddVariable("x", Type::Int());
  auto program = Compile(env, "[1, 2, 3].map(i, i * x).exists(v, v == 3 * x) && string(x).matches('^[0-9]+$')");
  ASSERT_TRUE(program.ok());
  const Program shared = *program;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        VectorActivation act(env);
        act.Set(x, Value::Int(t * 1000 + i));
        const Value v = shared.Evaluate(act);
        if (v.kind() != Kind::kBool || !v.bool_value()) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(EvalTest, FormatDoubleMatchesGo) {
  EXPECT_EQ(FormatDouble(0.1), "0.1");
  EXPECT_EQ(FormatDouble(1e21), "1e+21");
  EXPECT_EQ(FormatDouble(123456.0), "123456");
  EXPECT_EQ(FormatDouble(1234567.0), "1.234567e+06");
  EXPECT_EQ(FormatDouble(0.0001), "0.0001");
  EXPECT_EQ(FormatDouble(0.00001), "1e-05");
  EXPECT_EQ(FormatDouble(-0.0), "-0");
}

}  // namespace
}  // namespace omni_proxmox::cel
