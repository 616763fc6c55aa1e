// SPDX-License-Identifier: Apache-2.0
#include "util/utf8.h"

#include <string>

#include <gtest/gtest.h>

namespace omni_proxmox::util {
namespace {

TEST(Utf8Test, EncodesEachLength) {
  std::string out;
  for (char32_t cp : {U'a', U'\u00f1', U'\u20ac', U'\U0001F600'}) AppendUtf8(out, cp);
  EXPECT_EQ(out, "a\xc3\xb1\xe2\x82\xac\xf0\x9f\x98\x80");
  out.clear();
  AppendUtf8(out, 0x7F);
  AppendUtf8(out, 0x80);
  AppendUtf8(out, 0x7FF);
  AppendUtf8(out, 0x800);
  AppendUtf8(out, 0xFFFF);
  AppendUtf8(out, 0x10000);
  AppendUtf8(out, 0x10FFFF);
  EXPECT_EQ(out, "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf");
}

TEST(Utf8Test, DecodesWhatItEncodes) {
  for (char32_t cp :
       {U'\0', U'a', U'\u00f1', U'\u07ff', U'\u0800', U'\ud7ff', U'\ue000', U'\uffff', U'\U00010000', U'\U0010FFFF'}) {
    std::string text;
    AppendUtf8(text, cp);
    char32_t decoded = 0;
    EXPECT_EQ(DecodeUtf8(text, 0, decoded), text.size()) << static_cast<unsigned>(cp);
    EXPECT_EQ(decoded, cp);
  }
  char32_t cp = 0;
  EXPECT_EQ(DecodeUtf8("x\xc3\xb1y", 1, cp), 2u);  // from the middle of a string
  EXPECT_EQ(cp, U'\u00f1');
}

// Go's utf8.DecodeRuneInString rejects these (RuneError, width 1); so must we, byte for byte.
TEST(Utf8Test, RejectsWhatGoRejects) {
  char32_t cp = 0;
  for (std::string bad : {"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xf0\x80\x80\x80",  // overlong
                          "\xed\xa0\x80", "\xed\xbf\xbf",                                              // surrogates
                          "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "\xff",                          // too large
                          "\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xc3\x28"}) {                           // cut short
    EXPECT_EQ(DecodeUtf8(bad, 0, cp), 0u) << testing::PrintToString(bad);
    EXPECT_FALSE(IsValidUtf8(bad)) << testing::PrintToString(bad);
  }
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(
      IsValidUtf8("ma\xc3\xb1"
                  "ana \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("ok then \xff"));
}

}  // namespace
}  // namespace omni_proxmox::util
