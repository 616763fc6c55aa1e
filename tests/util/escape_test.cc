// SPDX-License-Identifier: Apache-2.0
#include "util/escape.h"

#include <string>

#include <gtest/gtest.h>

namespace omni_proxmox::util {
namespace {

std::string Escaped(std::string_view text, const EscapeRules& rules) {
  std::string out;
  AppendEscaped(out, text, rules);
  return out;
}

TEST(JsonEscapeTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(JsonEscape(R"(say "hi" \ bye)"), R"(say \"hi\" \\ bye)");
  EXPECT_EQ(JsonEscape("a\nb\tc\r\x01\x1f"), "a\\nb\\tc\\r\\u0001\\u001f");
  EXPECT_EQ(JsonEscape("grüße <&> \x7f"), "grüße <&> \x7f");  // only what JSON requires
  EXPECT_EQ(JsonEscape("bad\xff"), "bad\xff");                // bytes pass through
}

// Vectors from Go's encoding/json (json.Marshal of a string), which Omni re-encodes before checking an HMAC.
TEST(GoJsonQuoteTest, EscapesLikeEncodingJson) {
  EXPECT_EQ(GoJsonQuote("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(GoJsonQuote("<a&b>"), R"("\u003ca\u0026b\u003e")");
  EXPECT_EQ(GoJsonQuote("\n\r\t\x01"), R"("\n\r\t\u0001")");
  EXPECT_EQ(GoJsonQuote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  EXPECT_EQ(GoJsonQuote("\xe2\x80\xa8 \xe2\x80\xa9"), R"("\u2028 \u2029")");
  EXPECT_EQ(GoJsonQuote("bad\xff"), R"("bad\ufffd")");
  EXPECT_EQ(GoJsonQuote("\xc3("), R"("\ufffd(")");  // a cut-short sequence is one bad byte
  EXPECT_EQ(GoJsonQuote("/"), R"("/")");            // Go does not escape '/'
  EXPECT_EQ(GoJsonQuote("\x7f"), "\"\x7f\"");       // nor DEL
  EXPECT_EQ(GoJsonQuote(""), R"("")");
}

TEST(EscapeRulesTest, CelLiteralsUseHexEscapesAndTheirOwnQuote) {
  const EscapeRules single{'\'', true, EscapeRules::Controls::kHexByte, false};
  EXPECT_EQ(Escaped("it's \"x\"\n\x01\x7f", single), "it\\'s \"x\"\\n\\x01\\x7f");
}

TEST(EscapeRulesTest, PrometheusEscapesOnlyBackslashQuoteAndNewline) {
  EXPECT_EQ(Escaped("a\\b\"c\nd\te", kPrometheusLabelRules), "a\\\\b\\\"c\\nd\te");
  EXPECT_EQ(Escaped("a\\b\"c\nd", kPrometheusHelpRules), "a\\\\b\"c\\nd");
}

TEST(EscapeRulesTest, AppendsToWhatIsThere) {
  std::string out = "x=";
  AppendEscaped(out, "\"", kJsonRules);
  EXPECT_EQ(out, "x=\\\"");
}

}  // namespace
}  // namespace omni_proxmox::util
