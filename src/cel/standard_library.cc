// SPDX-License-Identifier: Apache-2.0
// CEL's standard library (see internal/standard_library.h): the built-in functions, operators, conversions
// and string extensions applied to evaluated values, with cel-go's semantics and error texts.

#include "cel/internal/standard_library.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <re2/re2.h>

#include "util/utf8.h"

namespace omni_proxmox::cel {
namespace {

constexpr double kTwoTo63 = 9223372036854775808.0;
constexpr double kTwoTo64 = 18446744073709551616.0;

struct FnName {
  std::string_view name;
  Fn fn;
  bool ext;  // a string extension
};

constexpr FnName kFunctions[] = {
    {"-_", Fn::kNeg, false},
    {"_+_", Fn::kAdd, false},
    {"_-_", Fn::kSub, false},
    {"_*_", Fn::kMul, false},
    {"_/_", Fn::kDiv, false},
    {"_%_", Fn::kMod, false},
    {"_==_", Fn::kEq, false},
    {"_!=_", Fn::kNe, false},
    {"_<_", Fn::kLt, false},
    {"_<=_", Fn::kLe, false},
    {"_>_", Fn::kGt, false},
    {"_>=_", Fn::kGe, false},
    {"@in", Fn::kIn, false},
    {"_[_]", Fn::kIndex, false},
    {"size", Fn::kSize, false},
    {"contains", Fn::kContains, false},
    {"startsWith", Fn::kStartsWith, false},
    {"endsWith", Fn::kEndsWith, false},
    {"matches", Fn::kMatches, false},
    {"int", Fn::kInt, false},
    {"uint", Fn::kUint, false},
    {"double", Fn::kDouble, false},
    {"string", Fn::kString, false},
    {"bytes", Fn::kBytes, false},
    {"bool", Fn::kBool, false},
    {"dyn", Fn::kDyn, false},
    {"type", Fn::kType, false},
    {"charAt", Fn::kCharAt, true},
    {"indexOf", Fn::kIndexOf, true},
    {"lastIndexOf", Fn::kLastIndexOf, true},
    {"lowerAscii", Fn::kLowerAscii, true},
    {"upperAscii", Fn::kUpperAscii, true},
    {"replace", Fn::kReplace, true},
    {"split", Fn::kSplit, true},
    {"substring", Fn::kSubstring, true},
    {"trim", Fn::kTrim, true},
    {"reverse", Fn::kReverse, true},
    {"join", Fn::kJoin, true},
};

Value IntOverflow() { return Value::StaticError("integer overflow"); }
Value UintOverflow() { return Value::StaticError("unsigned integer overflow"); }

// ---- UTF-8 helpers for the string extensions ----

// The code points of `s`, as Go's []rune(s) gives them (cel-go's string extensions work on those): each byte
// that is not valid UTF-8 becomes U+FFFD.
std::u32string Decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const std::size_t len = util::DecodeUtf8(s, i, cp);
    out.push_back(len == 0 ? util::kReplacementCharacter : cp);
    i += len == 0 ? 1 : len;
  }
  return out;
}

std::string Encode(std::u32string_view cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t cp : cps) util::AppendUtf8(out, cp);
  return out;
}

// Go's unicode.IsSpace, which strings.TrimSpace (cel-go's trim) uses.
bool IsUnicodeSpace(char32_t c) {
  switch (c) {
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case ' ':
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

Value IndexError(std::int64_t i) { return Value::Error(fmt::format("index out of range: {}", i)); }

// The same message as NoOverload, for an argument array.
Value NoOverloadArgs(std::string_view name, const Value* a, std::size_t n) {
  std::string types;
  for (std::size_t i = 0; i < n; ++i) {
    if (i) types += ", ";
    types += a[i].TypeNameOf();
  }
  return Value::Error(fmt::format("no matching overload for '{}' applied to '({})'", name, types));
}

// ---- conversions ----

Value ToInt(const Value& v) {
  switch (v.kind()) {
    case Kind::kInt:
      return v;
    case Kind::kUint:
      if (v.uint_value() > static_cast<std::uint64_t>(INT64_MAX)) return Value::StaticError("integer overflow");
      return Value::Int(static_cast<std::int64_t>(v.uint_value()));
    case Kind::kDouble: {
      const double d = v.double_value();
      if (!(d > -kTwoTo63 && d < kTwoTo63)) return Value::StaticError("integer overflow: double out of int range");
      return Value::Int(static_cast<std::int64_t>(d));
    }
    case Kind::kString: {
      std::string_view s = v.text();
      if (!s.empty() && s.front() == '+') s.remove_prefix(1);
      std::int64_t out = 0;
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
      if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
        return Value::Error(fmt::format("cannot convert string '{}' to int", v.text()));
      }
      return Value::Int(out);
    }
    default:
      return NoOverload("int", {&v});
  }
}

Value ToUint(const Value& v) {
  switch (v.kind()) {
    case Kind::kUint:
      return v;
    case Kind::kInt:
      if (v.int_value() < 0) return Value::StaticError("unsigned integer overflow");
      return Value::Uint(static_cast<std::uint64_t>(v.int_value()));
    case Kind::kDouble: {
      const double d = v.double_value();
      if (!(d >= 0 && d < kTwoTo64)) return Value::StaticError("unsigned integer overflow: double out of uint range");
      return Value::Uint(static_cast<std::uint64_t>(d));
    }
    case Kind::kString: {
      std::string_view s = v.text();
      if (!s.empty() && s.front() == '+') s.remove_prefix(1);
      std::uint64_t out = 0;
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
      if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
        return Value::Error(fmt::format("cannot convert string '{}' to uint", v.text()));
      }
      return Value::Uint(out);
    }
    default:
      return NoOverload("uint", {&v});
  }
}

Value ToDouble(const Value& v) {
  switch (v.kind()) {
    case Kind::kDouble:
      return v;
    case Kind::kInt:
      return Value::Double(static_cast<double>(v.int_value()));
    case Kind::kUint:
      return Value::Double(static_cast<double>(v.uint_value()));
    case Kind::kString: {
      const std::string s(v.text());
      char* end = nullptr;
      const double d = s.empty() || std::isspace(static_cast<unsigned char>(s[0])) ? 0 : std::strtod(s.c_str(), &end);
      if (s.empty() || end != s.c_str() + s.size()) {
        return Value::Error(fmt::format("cannot convert string '{}' to double", v.text()));
      }
      return Value::Double(d);
    }
    default:
      return NoOverload("double", {&v});
  }
}

Value ToStringValue(const Value& v) {
  switch (v.kind()) {
    case Kind::kString:
      return v;
    case Kind::kInt:
      return Value::String(std::to_string(v.int_value()));
    case Kind::kUint:
      return Value::String(std::to_string(v.uint_value()));
    case Kind::kDouble:
      return Value::String(FormatDouble(v.double_value()));
    case Kind::kBool:
      return Value::StringView(v.bool_value() ? "true" : "false");
    case Kind::kBytes:
      if (!util::IsValidUtf8(v.text())) return Value::StaticError("invalid UTF-8 in bytes, cannot convert to string");
      return v.WithTextKind(Kind::kString);
    default:
      return NoOverload("string", {&v});
  }
}

Value ToBool(const Value& v) {
  switch (v.kind()) {
    case Kind::kBool:
      return v;
    case Kind::kString: {
      const std::string_view s = v.text();
      if (s == "1" || s == "t" || s == "true" || s == "TRUE" || s == "True") return Value::Bool(true);
      if (s == "0" || s == "f" || s == "false" || s == "FALSE" || s == "False") return Value::Bool(false);
      return Value::Error(fmt::format("cannot convert string '{}' to bool", s));
    }
    default:
      return NoOverload("bool", {&v});
  }
}

// ---- arithmetic ----

Value Arith(Fn fn, const Value& a, const Value& b) {
  static constexpr std::string_view kNames[] = {"_+_", "_-_", "_*_", "_/_", "_%_"};
  const std::string_view name = kNames[static_cast<int>(fn) - static_cast<int>(Fn::kAdd)];
  if (a.kind() != b.kind()) return NoOverload(name, {&a, &b});
  switch (a.kind()) {
    case Kind::kInt: {
      const std::int64_t x = a.int_value(), y = b.int_value();
      std::int64_t r = 0;
      switch (fn) {
        case Fn::kAdd:
          if (__builtin_add_overflow(x, y, &r)) return IntOverflow();
          return Value::Int(r);
        case Fn::kSub:
          if (__builtin_sub_overflow(x, y, &r)) return IntOverflow();
          return Value::Int(r);
        case Fn::kMul:
          if (__builtin_mul_overflow(x, y, &r)) return IntOverflow();
          return Value::Int(r);
        case Fn::kDiv:
          if (y == 0) return Value::StaticError("division by zero");
          if (x == INT64_MIN && y == -1) return IntOverflow();
          return Value::Int(x / y);
        default:
          if (y == 0) return Value::StaticError("modulus by zero");
          if (x == INT64_MIN && y == -1) return IntOverflow();
          return Value::Int(x % y);
      }
    }
    case Kind::kUint: {
      const std::uint64_t x = a.uint_value(), y = b.uint_value();
      std::uint64_t r = 0;
      switch (fn) {
        case Fn::kAdd:
          if (__builtin_add_overflow(x, y, &r)) return UintOverflow();
          return Value::Uint(r);
        case Fn::kSub:
          if (__builtin_sub_overflow(x, y, &r)) return UintOverflow();
          return Value::Uint(r);
        case Fn::kMul:
          if (__builtin_mul_overflow(x, y, &r)) return UintOverflow();
          return Value::Uint(r);
        case Fn::kDiv:
          if (y == 0) return Value::StaticError("division by zero");
          return Value::Uint(x / y);
        default:
          if (y == 0) return Value::StaticError("modulus by zero");
          return Value::Uint(x % y);
      }
    }
    case Kind::kDouble: {
      const double x = a.double_value(), y = b.double_value();
      switch (fn) {
        case Fn::kAdd:
          return Value::Double(x + y);
        case Fn::kSub:
          return Value::Double(x - y);
        case Fn::kMul:
          return Value::Double(x * y);
        case Fn::kDiv:
          return Value::Double(x / y);
        default:
          return NoOverload(name, {&a, &b});
      }
    }
    case Kind::kString:
    case Kind::kBytes:
      if (fn != Fn::kAdd) return NoOverload(name, {&a, &b});
      {
        std::string s;
        s.reserve(a.text().size() + b.text().size());
        s.append(a.text());
        s.append(b.text());
        return a.kind() == Kind::kString ? Value::String(std::move(s)) : Value::Bytes(std::move(s));
      }
    case Kind::kList: {
      if (fn != Fn::kAdd) return NoOverload(name, {&a, &b});
      if (b.list().empty()) return a;
      if (a.list().empty()) return b;
      ListRep out;
      out.reserve(a.list().size() + b.list().size());
      out.insert(out.end(), a.list().begin(), a.list().end());
      out.insert(out.end(), b.list().begin(), b.list().end());
      return Value::List(std::move(out));
    }
    default:
      return NoOverload(name, {&a, &b});
  }
}

Value Relation(Fn fn, const Value& a, const Value& b) {
  bool ok = false;
  const int c = Compare(a, b, ok);
  if (!ok) {
    static constexpr std::string_view kNames[] = {"_<_", "_<=_", "_>_", "_>=_"};
    return NoOverload(kNames[static_cast<int>(fn) - static_cast<int>(Fn::kLt)], {&a, &b});
  }
  if (c == 2) return Value::Bool(false);  // NaN is unordered
  switch (fn) {
    case Fn::kLt:
      return Value::Bool(c < 0);
    case Fn::kLe:
      return Value::Bool(c <= 0);
    case Fn::kGt:
      return Value::Bool(c > 0);
    default:
      return Value::Bool(c >= 0);
  }
}

bool IntegralIndex(const Value& v, std::int64_t& out) {
  switch (v.kind()) {
    case Kind::kInt:
      out = v.int_value();
      return true;
    case Kind::kUint:
      if (v.uint_value() > static_cast<std::uint64_t>(INT64_MAX)) return false;
      out = static_cast<std::int64_t>(v.uint_value());
      return true;
    case Kind::kDouble: {
      const double d = v.double_value();
      if (!(d > -kTwoTo63 && d < kTwoTo63) || d != std::trunc(d)) return false;
      out = static_cast<std::int64_t>(d);
      return true;
    }
    default:
      return false;
  }
}

Value IndexValue(const Value& c, const Value& k) {
  if (c.kind() == Kind::kList) {
    std::int64_t i = 0;
    if (!IntegralIndex(k, i)) {
      if (k.kind() == Kind::kDouble) return Value::Error(fmt::format("unsupported index value: {}", k.DebugString()));
      return NoOverload("_[_]", {&c, &k});
    }
    if (i < 0 || static_cast<std::size_t>(i) >= c.list().size()) {
      return Value::Error(fmt::format("index out of range: {} (list size {})", i, c.list().size()));
    }
    return c.list()[static_cast<std::size_t>(i)];
  }
  if (c.kind() == Kind::kMap) {
    const Value* v = MapFind(c.map(), k);
    if (v == nullptr) {
      return Value::Error(
          fmt::format("no such key: {}", k.kind() == Kind::kString ? std::string(k.text()) : k.DebugString()));
    }
    return *v;
  }
  return NoOverload("_[_]", {&c, &k});
}

Value InValue(const Value& elem, const Value& c) {
  if (c.kind() == Kind::kList) {
    for (const Value& e : c.list()) {
      Value eq = Equal(elem, e);
      if (eq.kind() == Kind::kBool && eq.bool_value()) return Value::Bool(true);
    }
    return Value::Bool(false);
  }
  if (c.kind() == Kind::kMap) return Value::Bool(MapFind(c.map(), elem) != nullptr);
  return NoOverload("@in", {&elem, &c});
}

Value RegexError(const RE2& re) { return Value::Error(fmt::format("error parsing regexp: {}", re.error())); }

RE2::Options RegexOptions() {
  RE2::Options options;
  options.set_log_errors(false);
  return options;
}

// ---- string extensions ----

bool ArgsAre(std::size_t n, const Value* args, std::size_t count, std::initializer_list<Kind> kinds) {
  if (n != count) return false;
  std::size_t i = 0;
  for (Kind k : kinds) {
    if (args[i++].kind() != k) return false;
  }
  return true;
}

constexpr Kind kS = Kind::kString;
constexpr Kind kI = Kind::kInt;

// Each extension returns nullopt when its arguments match none of its overloads.
using Overloaded = std::optional<Value>;

Overloaded CharAt(const Value* a, std::size_t n) {
  if (!ArgsAre(n, a, 2, {kS, kI})) return std::nullopt;
  const std::u32string s = Decode(a[0].text());
  const std::int64_t i = a[1].int_value();
  if (i < 0 || static_cast<std::size_t>(i) > s.size()) return IndexError(i);
  if (static_cast<std::size_t>(i) == s.size()) return Value::StringView("");
  return Value::String(Encode(s.substr(static_cast<std::size_t>(i), 1)));
}

Overloaded IndexOf(bool last, const Value* a, std::size_t n) {
  if (!ArgsAre(n, a, 2, {kS, kS}) && !ArgsAre(n, a, 3, {kS, kS, kI})) return std::nullopt;
  const std::u32string s = Decode(a[0].text()), sub = Decode(a[1].text());
  std::int64_t start = n == 3 ? a[2].int_value() : (last ? static_cast<std::int64_t>(s.size()) : 0);
  if (start < 0 || static_cast<std::size_t>(start) > s.size()) return IndexError(start);
  if (sub.empty()) return Value::Int(start);
  if (!last) {
    const auto pos = s.find(sub, static_cast<std::size_t>(start));
    return Value::Int(pos == std::u32string::npos ? -1 : static_cast<std::int64_t>(pos));
  }
  const auto pos = s.rfind(sub, static_cast<std::size_t>(start));
  return Value::Int(pos == std::u32string::npos ? -1 : static_cast<std::int64_t>(pos));
}

Overloaded ChangeAsciiCase(bool lower, const Value* a, std::size_t n) {
  if (!ArgsAre(n, a, 1, {kS})) return std::nullopt;
  std::string s(a[0].text());
  for (char& c : s) {
    if (lower && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!lower && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return Value::String(std::move(s));
}

Overloaded Replace(const Value* a, std::size_t n) {
  if (!ArgsAre(n, a, 3, {kS, kS, kS}) && !ArgsAre(n, a, 4, {kS, kS, kS, kI})) return std::nullopt;
  std::int64_t limit = n == 4 ? a[3].int_value() : -1;
  const std::string_view s = a[0].text(), from = a[1].text(), to = a[2].text();
  std::string out;
  if (from.empty()) {
    // Go's strings.Replace with an empty old string inserts `to` before every code point and at the end.
    const std::u32string cps = Decode(s);
    for (std::size_t i = 0; i <= cps.size(); ++i) {
      if (limit != 0) {
        out.append(to);
        --limit;
      }
      if (i < cps.size()) out += Encode(std::u32string_view(&cps[i], 1));
    }
    return Value::String(std::move(out));
  }
  std::size_t pos = 0;
  while (limit != 0) {
    const auto hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
    --limit;
  }
  out.append(s.substr(pos));
  return Value::String(std::move(out));
}

Overloaded Split(const Value* a, std::size_t n) {
  if (!ArgsAre(n, a, 2, {kS, kS}) && !ArgsAre(n, a, 3, {kS, kS, kI})) return std::nullopt;
  std::int64_t limit = n == 3 ? a[2].int_value() : -1;
  ListRep out;
  if (limit == 0) return Value::List(std::move(out));
  const std::string_view s = a[0].text(), sep = a[1].text();
  if (sep.empty()) {
    const std::u32string cps = Decode(s);
    for (std::size_t i = 0; i < cps.size(); ++i) {
      if (limit > 0 && static_cast<std::int64_t>(out.size()) == limit - 1) {
        out.push_back(Value::String(Encode(std::u32string_view(cps).substr(i))));
        break;
      }
      out.push_back(Value::String(Encode(std::u32string_view(&cps[i], 1))));
    }
    return Value::List(std::move(out));
  }
  std::size_t pos = 0;
  for (;;) {
    if (limit > 0 && static_cast<std::int64_t>(out.size()) == limit - 1) break;
    const auto hit = s.find(sep, pos);
    if (hit == std::string_view::npos) break;
    out.push_back(Value::String(std::string(s.substr(pos, hit - pos))));
    pos = hit + sep.size();
  }
  out.push_back(Value::String(std::string(s.substr(pos))));
  return Value::List(std::move(out));
}

Overloaded Substring(const Value* a, std::size_t n) {
  if (!ArgsAre(n, a, 2, {kS, kI}) && !ArgsAre(n, a, 3, {kS, kI, kI})) return std::nullopt;
  const std::u32string s = Decode(a[0].text());
  const std::int64_t start = a[1].int_value();
  const std::int64_t end = n == 3 ? a[2].int_value() : static_cast<std::int64_t>(s.size());
  if (start < 0 || static_cast<std::size_t>(start) > s.size()) return IndexError(start);
  if (end < 0 || static_cast<std::size_t>(end) > s.size()) return IndexError(end);
  if (start > end) return Value::Error(fmt::format("invalid substring range. start: {}, end: {}", start, end));
  return Value::String(
      Encode(std::u32string_view(s).substr(static_cast<std::size_t>(start), static_cast<std::size_t>(end - start))));
}

Overloaded Trim(const Value* a, std::size_t n) {
  if (!ArgsAre(n, a, 1, {kS})) return std::nullopt;
  const std::u32string s = Decode(a[0].text());
  std::size_t b = 0, e = s.size();
  while (b < e && IsUnicodeSpace(s[b])) ++b;
  while (e > b && IsUnicodeSpace(s[e - 1])) --e;
  return Value::String(Encode(std::u32string_view(s).substr(b, e - b)));
}

Overloaded Reverse(const Value* a, std::size_t n) {
  if (!ArgsAre(n, a, 1, {kS})) return std::nullopt;
  std::u32string s = Decode(a[0].text());
  std::reverse(s.begin(), s.end());
  return Value::String(Encode(s));
}

Overloaded Join(const Value* a, std::size_t n) {
  if (n < 1 || n > 2 || a[0].kind() != Kind::kList || (n == 2 && a[1].kind() != Kind::kString)) return std::nullopt;
  std::string out;
  bool first = true;
  for (const Value& e : a[0].list()) {
    if (e.kind() != Kind::kString) return std::nullopt;
    if (!first && n == 2) out.append(a[1].text());
    first = false;
    out.append(e.text());
  }
  return Value::String(std::move(out));
}

Value StringExtension(Fn fn, const Value* a, std::size_t n, std::string_view name) {
  Overloaded result;
  switch (fn) {
    case Fn::kCharAt:
      result = CharAt(a, n);
      break;
    case Fn::kIndexOf:
    case Fn::kLastIndexOf:
      result = IndexOf(fn == Fn::kLastIndexOf, a, n);
      break;
    case Fn::kLowerAscii:
    case Fn::kUpperAscii:
      result = ChangeAsciiCase(fn == Fn::kLowerAscii, a, n);
      break;
    case Fn::kReplace:
      result = Replace(a, n);
      break;
    case Fn::kSplit:
      result = Split(a, n);
      break;
    case Fn::kSubstring:
      result = Substring(a, n);
      break;
    case Fn::kTrim:
      result = Trim(a, n);
      break;
    case Fn::kReverse:
      result = Reverse(a, n);
      break;
    case Fn::kJoin:
      result = Join(a, n);
      break;
    default:
      break;
  }
  return result ? *std::move(result) : NoOverloadArgs(name, a, n);
}

// ---- the core functions ----

Value Negate(const Value& a) {
  if (a.kind() == Kind::kInt) {
    if (a.int_value() == INT64_MIN) return IntOverflow();
    return Value::Int(-a.int_value());
  }
  if (a.kind() == Kind::kDouble) return Value::Double(-a.double_value());
  return NoOverload("-_", {&a});
}

Value Size(const Value& a) {
  switch (a.kind()) {
    case Kind::kString:
      return Value::Int(CodePointCount(a.text()));
    case Kind::kBytes:
      return Value::Int(static_cast<std::int64_t>(a.text().size()));
    case Kind::kList:
      return Value::Int(static_cast<std::int64_t>(a.list().size()));
    case Kind::kMap:
      return Value::Int(static_cast<std::int64_t>(a.map().size()));
    default:
      return NoOverload("size", {&a});
  }
}

Value ToBytes(const Value& a) {
  if (a.kind() == Kind::kBytes) return a;
  if (a.kind() == Kind::kString) return a.WithTextKind(Kind::kBytes);
  return NoOverload("bytes", {&a});
}

// The one-argument built-ins (arity checked by the caller).
Value ApplyUnary(Fn fn, const Value& a) {
  switch (fn) {
    case Fn::kNeg:
      return Negate(a);
    case Fn::kSize:
      return Size(a);
    case Fn::kInt:
      return ToInt(a);
    case Fn::kUint:
      return ToUint(a);
    case Fn::kDouble:
      return ToDouble(a);
    case Fn::kString:
      return ToStringValue(a);
    case Fn::kBytes:
      return ToBytes(a);
    case Fn::kBool:
      return ToBool(a);
    case Fn::kDyn:
      return a;
    default:  // Fn::kType
      return Value::TypeName(a.TypeNameOf());
  }
}

// The two-argument operators (arity checked by the caller).
Value ApplyBinary(Fn fn, const Value& a, const Value& b) {
  switch (fn) {
    case Fn::kEq:
    case Fn::kNe: {
      Value eq = Equal(a, b);
      if (fn == Fn::kNe && eq.kind() == Kind::kBool) return Value::Bool(!eq.bool_value());
      return eq;
    }
    case Fn::kLt:
    case Fn::kLe:
    case Fn::kGt:
    case Fn::kGe:
      return Relation(fn, a, b);
    case Fn::kIn:
      return InValue(a, b);
    case Fn::kIndex:
      return IndexValue(a, b);
    default:  // + - * / %
      return Arith(fn, a, b);
  }
}

Value StringTest(Fn fn, std::string_view s, std::string_view t) {
  if (fn == Fn::kContains) return Value::Bool(s.find(t) != std::string_view::npos);
  if (fn == Fn::kStartsWith) return Value::Bool(s.substr(0, t.size()) == t);
  return Value::Bool(s.size() >= t.size() && s.substr(s.size() - t.size()) == t);
}

Value Matches(const Node& call, std::string_view s, std::string_view pattern) {
  const re2::StringPiece text(s.data(), s.size());
  if (call.regex) return Value::Bool(RE2::PartialMatch(text, *call.regex));
  const RE2 re(re2::StringPiece(pattern.data(), pattern.size()), RegexOptions());
  if (!re.ok()) return RegexError(re);
  return Value::Bool(RE2::PartialMatch(text, re));
}

}  // namespace

Fn LookupFunction(std::string_view name, bool string_extensions) {
  Fn fn = Fn::kUnknown;
  for (const auto& f : kFunctions) {
    if (f.name == name && (!f.ext || string_extensions)) fn = f.fn;
  }
  return fn;
}

Value NoOverload(std::string_view fn, std::initializer_list<const Value*> args) {
  std::string types;
  for (const Value* a : args) {
    if (!types.empty()) types += ", ";
    types += a->TypeNameOf();
  }
  return Value::Error(fmt::format("no matching overload for '{}' applied to '({})'", fn, types));
}

Value ApplyFunction(const Node& call, const Value* a, std::size_t argc) {
  const std::string_view name = call.constant.text();
  switch (call.fn) {
    case Fn::kUnknown:
      return call.constant.IsError() ? call.constant : Value::StaticError("unknown function");
    case Fn::kNeg:
    case Fn::kSize:
    case Fn::kInt:
    case Fn::kUint:
    case Fn::kDouble:
    case Fn::kString:
    case Fn::kBytes:
    case Fn::kBool:
    case Fn::kDyn:
    case Fn::kType:
      if (argc != 1) break;
      return ApplyUnary(call.fn, a[0]);
    case Fn::kAdd:
    case Fn::kSub:
    case Fn::kMul:
    case Fn::kDiv:
    case Fn::kMod:
    case Fn::kEq:
    case Fn::kNe:
    case Fn::kLt:
    case Fn::kLe:
    case Fn::kGt:
    case Fn::kGe:
    case Fn::kIn:
    case Fn::kIndex:
      if (argc != 2) break;
      return ApplyBinary(call.fn, a[0], a[1]);
    case Fn::kContains:
    case Fn::kStartsWith:
    case Fn::kEndsWith:
    case Fn::kMatches:
      if (argc != 2 || a[0].kind() != Kind::kString || a[1].kind() != Kind::kString) break;
      if (call.fn == Fn::kMatches) return Matches(call, a[0].text(), a[1].text());
      return StringTest(call.fn, a[0].text(), a[1].text());
    default:
      return StringExtension(call.fn, a, argc, name);
  }
  return NoOverloadArgs(name, a, argc);
}

std::shared_ptr<const re2::RE2> CompileConstantPattern(std::string_view pattern) {
  auto re = std::make_shared<const RE2>(re2::StringPiece(pattern.data(), pattern.size()), RegexOptions());
  if (!re->ok()) return nullptr;
  return re;
}

}  // namespace omni_proxmox::cel
