// SPDX-License-Identifier: Apache-2.0
#include "cel/parser.h"

#include <string>

#include <gtest/gtest.h>

namespace omni_proxmox::cel {
namespace {

std::string ParseError(std::string_view src, const ParseOptions& options = {}) {
  ParseResult r = Parse(src, options);
  if (r.issues.empty()) return "<ok>";
  return FormatIssues(src, r.issues);
}

const Expr& Root(const ParseResult& r) {
  EXPECT_TRUE(r.issues.empty()) << (r.issues.empty() ? "" : r.issues[0].message);
  return *r.expr;
}

TEST(ParserTest, PrecedenceBuildsExpectedCalls) {
  ParseResult r = Parse("a || b && c == 1 + 2 * -3");
  const Expr& e = Root(r);
  ASSERT_EQ(e.kind, ExprKind::kCall);
  EXPECT_EQ(e.name, "_||_");
  const Expr& andx = *e.args[1];
  EXPECT_EQ(andx.name, "_&&_");
  const Expr& eq = *andx.args[1];
  EXPECT_EQ(eq.name, "_==_");
  const Expr& add = *eq.args[1];
  EXPECT_EQ(add.name, "_+_");
  const Expr& mul = *add.args[1];
  EXPECT_EQ(mul.name, "_*_");
  // A minus directly before a literal is part of the literal.
  ASSERT_EQ(mul.args[1]->kind, ExprKind::kConst);
  EXPECT_EQ(mul.args[1]->constant.int_value(), -3);
}

TEST(ParserTest, ConditionalIsRightAssociative) {
  ParseResult r = Parse("a ? b : c ? d : e");
  const Expr& e = Root(r);
  EXPECT_EQ(e.name, "_?_:_");
  EXPECT_EQ(e.args[2]->name, "_?_:_");
}

TEST(ParserTest, InIsARelation) {
  ParseResult r = Parse("name in ['a', 'b',]");
  const Expr& e = Root(r);
  EXPECT_EQ(e.name, "@in");
  EXPECT_EQ(e.args[1]->kind, ExprKind::kList);
  EXPECT_EQ(e.args[1]->args.size(), 2u);
}

TEST(ParserTest, PositionsOnEveryNode) {
  ParseResult r = Parse("name == 'x' &&\n  node.startsWith('pve')");
  const Expr& e = Root(r);
  EXPECT_EQ(e.pos.line, 1);
  EXPECT_EQ(e.pos.column, 12);  // the && operator
  const Expr& call = *e.args[1];
  EXPECT_EQ(call.name, "startsWith");
  EXPECT_EQ(call.pos.line, 2);
  EXPECT_EQ(call.target->pos.line, 2);
  EXPECT_EQ(call.target->pos.column, 2);
  EXPECT_EQ(call.args[0]->pos.column, 18);
}

TEST(ParserTest, ColumnsCountCodePoints) {
  ParseResult r = Parse("'ñañ' == x");
  EXPECT_EQ(Root(r).pos.column, 6);
}

TEST(ParserTest, StringLiteralForms) {
  struct Case {
    const char* src;
    std::string want;
  };
  const Case cases[] = {
      {R"("a\tb")", "a\tb"},
      {R"('\x41\101\u00e9\U0001F600')", "AA\xc3\xa9\xf0\x9f\x98\x80"},
      {R"(r'\n\x41')", R"(\n\x41)"},
      {R"('''line1
line2''')",
       "line1\nline2"},
      {R"("""a "quoted" b""")", "a \"quoted\" b"},
      {R"('\\ \? \" \' \`')", "\\ ? \" ' `"},
  };
  for (const auto& c : cases) {
    ParseResult r = Parse(c.src);
    const Expr& e = Root(r);
    ASSERT_EQ(e.kind, ExprKind::kConst) << c.src;
    EXPECT_EQ(e.constant.kind(), Kind::kString) << c.src;
    EXPECT_EQ(std::string(e.constant.text()), c.want) << c.src;
  }
}

TEST(ParserTest, BytesLiteralsKeepRawOctets) {
  ParseResult r = Parse(R"(b'\xff\377')");
  const Expr& e = Root(r);
  EXPECT_EQ(e.constant.kind(), Kind::kBytes);
  EXPECT_EQ(std::string(e.constant.text()), "\xff\xff");
}

TEST(ParserTest, NumberLiterals) {
  EXPECT_EQ(Root(Parse("0x1F")).constant.int_value(), 31);
  EXPECT_EQ(Root(Parse("18446744073709551615u")).constant.uint_value(), 18446744073709551615ull);
  EXPECT_EQ(Root(Parse("-9223372036854775808")).constant.int_value(), INT64_MIN);
  EXPECT_DOUBLE_EQ(Root(Parse(".5")).constant.double_value(), 0.5);
  EXPECT_DOUBLE_EQ(Root(Parse("1e3")).constant.double_value(), 1000.0);
  EXPECT_NE(ParseError("9223372036854775808"), "<ok>");
  EXPECT_NE(ParseError("18446744073709551616u"), "<ok>");
}

TEST(ParserTest, MacrosExpandAtParseTime) {
  ParseResult r = Parse("content.exists(c, c == 'images') && has(m.f)");
  const Expr& e = Root(r);
  const Expr& comp = *e.args[0];
  EXPECT_EQ(comp.kind, ExprKind::kComprehension);
  EXPECT_EQ(comp.macro, MacroKind::kExists);
  EXPECT_EQ(comp.name, "c");
  const Expr& has = *e.args[1];
  EXPECT_EQ(has.kind, ExprKind::kSelect);
  EXPECT_TRUE(has.test_only);

  ParseResult m = Parse("[1, 2].map(x, x > 1, x * 2)");
  EXPECT_EQ(Root(m).macro, MacroKind::kMap);
  EXPECT_NE(Root(m).predicate, nullptr);
  EXPECT_NE(Root(m).transform, nullptr);

  ParseOptions no_macros;
  no_macros.enable_macros = false;
  ParseResult plain = Parse("l.all(x, x)", no_macros);
  EXPECT_EQ(Root(plain).kind, ExprKind::kCall);
}

TEST(ParserTest, MacroArgumentErrors) {
  EXPECT_EQ(ParseError("has(name)"), "ERROR: <input>:1:5: invalid argument to has() macro\n | has(name)\n | ....^");
  EXPECT_EQ(ParseError("l.all(x.y, true)"),
            "ERROR: <input>:1:8: argument must be a simple name\n | l.all(x.y, true)\n | .......^");
}

TEST(ParserTest, ReservedWordsOnlyAsSelectors) {
  EXPECT_EQ(ParseError("{'as': 1}.as"), "<ok>");
  EXPECT_EQ(ParseError("a.while()"), "<ok>");
  EXPECT_EQ(ParseError("as == 1"), "ERROR: <input>:1:1: reserved identifier: as\n | as == 1\n | ^");
  EXPECT_NE(ParseError("a.in"), "<ok>");
}

TEST(ParserTest, CelGoShapedSyntaxErrors) {
  EXPECT_EQ(ParseError("name == "),
            "ERROR: <input>:1:9: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', "
            "'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n"
            " | name == \n"
            " | ........^");
  EXPECT_EQ(ParseError("name == \"a\" &&& node == \"b\""),
            "ERROR: <input>:1:15: Syntax error: token recognition error at: '& '\n"
            " | name == \"a\" &&& node == \"b\"\n"
            " | ..............^");
  // An empty selector: column 0 and no snippet, as cel-go prints it.
  EXPECT_EQ(ParseError(""),
            "ERROR: <input>:1:0: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', "
            "'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}");
  EXPECT_EQ(ParseError("(a"),
            "ERROR: <input>:1:3: Syntax error: mismatched input '<EOF>' expecting ')'\n | (a\n | ..^");
  EXPECT_EQ(ParseError("a b"),
            "ERROR: <input>:1:3: Syntax error: extraneous input 'b' expecting <EOF>\n | a b\n | ..^");
}

TEST(ParserTest, ErrorOnSecondLineShowsThatLine) {
  EXPECT_EQ(ParseError("name == 'a' ||\n  node = 'b'"),
            "ERROR: <input>:2:8: Syntax error: token recognition error at: '= '\n |   node = 'b'\n | .......^");
}

TEST(ParserTest, BadEscapesAndLiterals) {
  EXPECT_NE(ParseError(R"('\q')"), "<ok>");
  EXPECT_NE(ParseError(R"('\ud800')"), "<ok>");  // surrogate
  EXPECT_NE(ParseError("'unterminated"), "<ok>");
  EXPECT_NE(ParseError("'new\nline'"), "<ok>");
}

TEST(ParserTest, RecursionLimit) {
  std::string deep(300, '(');
  deep += "1";
  deep += std::string(300, ')');
  EXPECT_NE(ParseError(deep).find("expression recursion limit exceeded: 250"), std::string::npos);
  std::string ok(20, '(');
  ok += "1" + std::string(20, ')');
  EXPECT_EQ(ParseError(ok), "<ok>");
  // Long && chains are balanced, so 1000 terms stay well inside the limit.
  std::string chain = "a";
  for (int i = 0; i < 1000; ++i) chain += " && a";
  EXPECT_EQ(ParseError(chain), "<ok>");
  EXPECT_LT(Parse(chain).expr->depth, 20);
  // A long left-associative + chain is deep and is refused.
  std::string sum = "1";
  for (int i = 0; i < 400; ++i) sum += " + 1";
  EXPECT_NE(ParseError(sum).find("recursion limit"), std::string::npos);
}

TEST(ParserTest, SizeLimit) {
  ParseOptions options;
  options.max_code_points = 10;
  EXPECT_EQ(ParseError("name == 'local-lvm'", options),
            "ERROR: <input>:1:1: expression code point size exceeds limit: size: 19, limit 10\n"
            " | name == 'local-lvm'\n | ^");
}

TEST(ParserTest, CommentsAndQuotedFields) {
  ParseResult r = Parse("// pick fast storage\nm.`content-type` // trailing\n");
  const Expr& e = Root(r);
  EXPECT_EQ(e.kind, ExprKind::kSelect);
  EXPECT_EQ(e.name, "content-type");
}

TEST(ParserTest, MessageConstructionIsRefusedClearly) {
  EXPECT_NE(ParseError("Foo{a: 1}").find("message construction is not supported"), std::string::npos);
}

}  // namespace
}  // namespace omni_proxmox::cel
