// Planning and evaluation. The plan is a tree of Nodes with identifiers resolved to slots and functions to
// built-ins; evaluation walks it with a small array of comprehension locals on the stack.

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include <fmt/format.h>
#include <re2/re2.h>

#include "cel/cel.h"

namespace omni_proxmox::cel {

enum class Op : std::uint8_t { kConst, kVar, kLocal, kSelect, kAnd, kOr, kNot, kCond, kCall, kList, kMap, kComp };

enum class Fn : std::uint8_t {
  kUnknown,
  kNeg,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kIn,
  kIndex,
  kSize,
  kContains,
  kStartsWith,
  kEndsWith,
  kMatches,
  kInt,
  kUint,
  kDouble,
  kString,
  kBytes,
  kBool,
  kDyn,
  kType,
  kCharAt,
  kIndexOf,
  kLastIndexOf,
  kLowerAscii,
  kUpperAscii,
  kReplace,
  kSplit,
  kSubstring,
  kTrim,
  kReverse,
  kJoin,
};

struct Node {
  Op op = Op::kConst;
  Fn fn = Fn::kUnknown;
  MacroKind macro = MacroKind::kAll;
  bool test_only = false;            // kSelect from has()
  bool has_predicate = false;        // kComp
  int slot = 0;                      // kVar activation slot, kLocal / kComp local slot
  Value constant;                    // kConst value (borrowed view of `owned`), kSelect field name, kCall name/error
  Value owned;                       // keeps `constant` alive
  std::vector<Node> kids;            // kComp: range, [predicate], [transform]
  std::shared_ptr<const RE2> regex;  // kCall kMatches with a constant, valid pattern
};

struct Plan {
  std::string source;
  Type type;
  Node root;
  int max_locals = 0;
  long max_iterations = 10000;
};

namespace {

constexpr double kTwoTo63 = 9223372036854775808.0;
constexpr double kTwoTo64 = 18446744073709551616.0;
constexpr std::size_t kInlineLocals = 8;

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

const char* TypeDenotationName(const std::string& name) {
  static constexpr const char* kNames[] = {"int",   "uint", "double", "bool",      "string",
                                           "bytes", "list", "map",    "null_type", "type"};
  for (const char* n : kNames) {
    if (name == n) return n;
  }
  return nullptr;
}

Value NoOverload(std::string_view fn, std::initializer_list<const Value*> args) {
  std::string types;
  for (const Value* a : args) {
    if (!types.empty()) types += ", ";
    types += a->TypeNameOf();
  }
  return Value::Error(fmt::format("no matching overload for '{}' applied to '({})'", fn, types));
}

Value IntOverflow() { return Value::StaticError("integer overflow"); }
Value UintOverflow() { return Value::StaticError("unsigned integer overflow"); }

// ---- UTF-8 helpers for the string extensions ----

std::u32string Decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (std::size_t k = 1; k < len && i + k < s.size(); ++k) {
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string Encode(std::u32string_view cps) {
  std::string out;
  for (char32_t cp : cps) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

bool ValidUtf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len;
    char32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    const char32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
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
      if (!ValidUtf8(v.text())) return Value::StaticError("invalid UTF-8 in bytes, cannot convert to string");
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

Value StringExt(Fn fn, const Value* a, std::size_t n, std::string_view name) {
  auto fail = [&]() -> Value {
    std::string types;
    for (std::size_t i = 0; i < n; ++i) {
      if (i) types += ", ";
      types += a[i].TypeNameOf();
    }
    return Value::Error(fmt::format("no matching overload for '{}' applied to '({})'", name, types));
  };
  const Kind S = Kind::kString, I = Kind::kInt;
  switch (fn) {
    case Fn::kCharAt: {
      if (!ArgsAre(n, a, 2, {S, I})) return fail();
      const std::u32string s = Decode(a[0].text());
      const std::int64_t i = a[1].int_value();
      if (i < 0 || static_cast<std::size_t>(i) > s.size()) return IndexError(i);
      if (static_cast<std::size_t>(i) == s.size()) return Value::StringView("");
      return Value::String(Encode(s.substr(static_cast<std::size_t>(i), 1)));
    }
    case Fn::kIndexOf:
    case Fn::kLastIndexOf: {
      if (!ArgsAre(n, a, 2, {S, S}) && !ArgsAre(n, a, 3, {S, S, I})) return fail();
      const std::u32string s = Decode(a[0].text()), sub = Decode(a[1].text());
      const bool last = fn == Fn::kLastIndexOf;
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
    case Fn::kLowerAscii:
    case Fn::kUpperAscii: {
      if (!ArgsAre(n, a, 1, {S})) return fail();
      std::string s(a[0].text());
      for (char& c : s) {
        if (fn == Fn::kLowerAscii && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (fn == Fn::kUpperAscii && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      }
      return Value::String(std::move(s));
    }
    case Fn::kReplace: {
      if (!ArgsAre(n, a, 3, {S, S, S}) && !ArgsAre(n, a, 4, {S, S, S, I})) return fail();
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
    case Fn::kSplit: {
      if (!ArgsAre(n, a, 2, {S, S}) && !ArgsAre(n, a, 3, {S, S, I})) return fail();
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
    case Fn::kSubstring: {
      if (!ArgsAre(n, a, 2, {S, I}) && !ArgsAre(n, a, 3, {S, I, I})) return fail();
      const std::u32string s = Decode(a[0].text());
      const std::int64_t start = a[1].int_value();
      const std::int64_t end = n == 3 ? a[2].int_value() : static_cast<std::int64_t>(s.size());
      if (start < 0 || static_cast<std::size_t>(start) > s.size()) return IndexError(start);
      if (end < 0 || static_cast<std::size_t>(end) > s.size()) return IndexError(end);
      if (start > end) return Value::Error(fmt::format("invalid substring range. start: {}, end: {}", start, end));
      return Value::String(Encode(
          std::u32string_view(s).substr(static_cast<std::size_t>(start), static_cast<std::size_t>(end - start))));
    }
    case Fn::kTrim: {
      if (!ArgsAre(n, a, 1, {S})) return fail();
      const std::u32string s = Decode(a[0].text());
      std::size_t b = 0, e = s.size();
      while (b < e && IsUnicodeSpace(s[b])) ++b;
      while (e > b && IsUnicodeSpace(s[e - 1])) --e;
      return Value::String(Encode(std::u32string_view(s).substr(b, e - b)));
    }
    case Fn::kReverse: {
      if (!ArgsAre(n, a, 1, {S})) return fail();
      std::u32string s = Decode(a[0].text());
      std::reverse(s.begin(), s.end());
      return Value::String(Encode(s));
    }
    case Fn::kJoin: {
      if (n < 1 || n > 2 || a[0].kind() != Kind::kList || (n == 2 && a[1].kind() != Kind::kString)) return fail();
      std::string out;
      bool first = true;
      for (const Value& e : a[0].list()) {
        if (e.kind() != Kind::kString) return fail();
        if (!first && n == 2) out.append(a[1].text());
        first = false;
        out.append(e.text());
      }
      return Value::String(std::move(out));
    }
    default:
      return fail();
  }
}

class Evaluator {
 public:
  Evaluator(const Activation& activation, Value* locals, long max_iterations)
      : act_(activation), locals_(locals), budget_(max_iterations) {}

  Value Eval(const Node& n) {
    switch (n.op) {
      case Op::kConst:
        return n.constant;
      case Op::kVar: {
        Value v;
        if (!act_.Get(n.slot, v)) return n.constant;  // the planned "unbound variable" error
        return v;
      }
      case Op::kLocal:
        return locals_[n.slot];
      case Op::kSelect:
        return Select(n);
      case Op::kAnd:
      case Op::kOr:
        return Logic(n, n.op == Op::kAnd);
      case Op::kNot: {
        Value v = Eval(n.kids[0]);
        if (v.kind() == Kind::kBool) return Value::Bool(!v.bool_value());
        if (v.IsError()) return v;
        return NoOverload("!_", {&v});
      }
      case Op::kCond: {
        Value c = Eval(n.kids[0]);
        if (c.kind() == Kind::kBool) return Eval(n.kids[c.bool_value() ? 1 : 2]);
        if (c.IsError()) return c;
        return NoOverload("_?_:_", {&c});
      }
      case Op::kCall:
        return Call(n);
      case Op::kList: {
        ListRep out;
        out.reserve(n.kids.size());
        for (const Node& k : n.kids) {
          Value v = Eval(k);
          if (v.IsError()) return v;
          out.push_back(std::move(v));
        }
        return Value::List(std::move(out));
      }
      case Op::kMap: {
        MapRep out;
        out.reserve(n.kids.size() / 2);
        for (std::size_t i = 0; i + 1 < n.kids.size(); i += 2) {
          Value k = Eval(n.kids[i]);
          if (k.IsError()) return k;
          Value v = Eval(n.kids[i + 1]);
          if (v.IsError()) return v;
          out.emplace_back(std::move(k), std::move(v));
        }
        return Value::MakeMap(std::move(out));
      }
      case Op::kComp:
        return Comprehension(n);
    }
    return Value::StaticError("internal error: unknown plan node");
  }

 private:
  Value Select(const Node& n) {
    Value operand = Eval(n.kids[0]);
    if (operand.IsError()) return operand;
    if (operand.kind() != Kind::kMap) {
      return Value::Error(fmt::format("type '{}' does not support field selection", operand.TypeNameOf()));
    }
    const Value* v = MapFind(operand.map(), n.constant);
    if (n.test_only) return Value::Bool(v != nullptr);
    if (v == nullptr) return Value::Error(fmt::format("no such key: {}", n.constant.text()));
    return *v;
  }

  // Commutative && / ||: a deciding operand on either side absorbs an error on the other.
  Value Logic(const Node& n, bool is_and) {
    Value l = Eval(n.kids[0]);
    if (l.kind() == Kind::kBool && l.bool_value() != is_and) return l;
    Value r = Eval(n.kids[1]);
    if (r.kind() == Kind::kBool && r.bool_value() != is_and) return r;
    if (l.kind() == Kind::kBool && r.kind() == Kind::kBool) return l;
    const Value& bad = l.kind() != Kind::kBool ? l : r;
    if (bad.IsError()) return bad;
    return NoOverload(is_and ? "_&&_" : "_||_", {&l, &r});
  }

  Value Comprehension(const Node& n) {
    Value range = Eval(n.kids[0]);
    if (range.IsError()) return range;
    const bool is_list = range.kind() == Kind::kList;
    if (!is_list && range.kind() != Kind::kMap) {
      return Value::Error(fmt::format("cannot iterate over a value of type '{}'", range.TypeNameOf()));
    }
    const std::size_t size = is_list ? range.list().size() : range.map().size();
    Value& var = locals_[n.slot];
    const Node* pred = n.has_predicate ? &n.kids[1] : nullptr;
    const Node* transform = n.macro == MacroKind::kMap ? &n.kids.back() : nullptr;
    Value pending_error;
    bool have_error = false;
    std::int64_t count = 0;
    ListRep out;
    for (std::size_t i = 0; i < size; ++i) {
      if (--budget_ < 0) return Value::StaticError("comprehension iteration limit exceeded");
      var = is_list ? range.list()[i] : range.map()[i].first;
      Value p;
      if (pred != nullptr) {
        p = Eval(*pred);
        if (p.kind() != Kind::kBool) {
          if (!p.IsError()) p = Value::StaticError("no matching overload: predicate is not a bool");
          if (n.macro == MacroKind::kAll || n.macro == MacroKind::kExists) {
            if (!have_error) pending_error = p;
            have_error = true;
            continue;
          }
          return p;
        }
      }
      switch (n.macro) {
        case MacroKind::kAll:
          if (!p.bool_value()) return Value::Bool(false);
          break;
        case MacroKind::kExists:
          if (p.bool_value()) return Value::Bool(true);
          break;
        case MacroKind::kExistsOne:
          count += p.bool_value();
          break;
        case MacroKind::kFilter:
          if (p.bool_value()) out.push_back(var);
          break;
        case MacroKind::kMap: {
          if (pred != nullptr && !p.bool_value()) break;
          Value t = Eval(*transform);
          if (t.IsError()) return t;
          out.push_back(std::move(t));
          break;
        }
      }
    }
    switch (n.macro) {
      case MacroKind::kAll:
        return have_error ? pending_error : Value::Bool(true);
      case MacroKind::kExists:
        return have_error ? pending_error : Value::Bool(false);
      case MacroKind::kExistsOne:
        return Value::Bool(count == 1);
      default:
        return Value::List(std::move(out));
    }
  }

  Value Call(const Node& n) {
    // Unary and binary calls (almost all of a selector) keep their operands in plain locals.
    if (n.kids.size() == 2) {
      Value args[2] = {Eval(n.kids[0]), Value()};
      if (args[0].IsError()) return args[0];
      args[1] = Eval(n.kids[1]);
      if (args[1].IsError()) return args[1];
      if (n.fn == Fn::kEq && args[0].kind() == Kind::kString && args[1].kind() == Kind::kString) {
        return Value::Bool(args[0].text() == args[1].text());
      }
      return Apply(n, args, 2);
    }
    if (n.kids.size() == 1) {
      Value arg = Eval(n.kids[0]);
      if (arg.IsError()) return arg;
      return Apply(n, &arg, 1);
    }
    std::array<Value, 4> small;
    std::vector<Value> big;
    const std::size_t argc = n.kids.size();
    Value* args = small.data();
    if (argc > small.size()) {
      big.resize(argc);
      args = big.data();
    }
    for (std::size_t i = 0; i < argc; ++i) {
      args[i] = Eval(n.kids[i]);
      if (args[i].IsError()) return args[i];
    }
    return Apply(n, args, argc);
  }

  static Value Apply(const Node& n, const Value* a, std::size_t argc) {
    auto arity = [&](std::size_t want) { return argc == want; };
    const std::string_view name = n.constant.text();
    switch (n.fn) {
      case Fn::kUnknown:
        return n.constant.IsError() ? n.constant : Value::StaticError("unknown function");
      case Fn::kNeg:
        if (!arity(1)) break;
        if (a[0].kind() == Kind::kInt) {
          if (a[0].int_value() == INT64_MIN) return IntOverflow();
          return Value::Int(-a[0].int_value());
        }
        if (a[0].kind() == Kind::kDouble) return Value::Double(-a[0].double_value());
        return NoOverload("-_", {&a[0]});
      case Fn::kAdd:
      case Fn::kSub:
      case Fn::kMul:
      case Fn::kDiv:
      case Fn::kMod:
        if (!arity(2)) break;
        return Arith(n.fn, a[0], a[1]);
      case Fn::kEq:
      case Fn::kNe: {
        if (!arity(2)) break;
        Value eq = Equal(a[0], a[1]);
        if (n.fn == Fn::kNe && eq.kind() == Kind::kBool) return Value::Bool(!eq.bool_value());
        return eq;
      }
      case Fn::kLt:
      case Fn::kLe:
      case Fn::kGt:
      case Fn::kGe:
        if (!arity(2)) break;
        return Relation(n.fn, a[0], a[1]);
      case Fn::kIn:
        if (!arity(2)) break;
        return InValue(a[0], a[1]);
      case Fn::kIndex:
        if (!arity(2)) break;
        return IndexValue(a[0], a[1]);
      case Fn::kSize:
        if (!arity(1)) break;
        switch (a[0].kind()) {
          case Kind::kString:
            return Value::Int(CodePointCount(a[0].text()));
          case Kind::kBytes:
            return Value::Int(static_cast<std::int64_t>(a[0].text().size()));
          case Kind::kList:
            return Value::Int(static_cast<std::int64_t>(a[0].list().size()));
          case Kind::kMap:
            return Value::Int(static_cast<std::int64_t>(a[0].map().size()));
          default:
            return NoOverload("size", {&a[0]});
        }
      case Fn::kContains:
      case Fn::kStartsWith:
      case Fn::kEndsWith: {
        if (!arity(2) || a[0].kind() != Kind::kString || a[1].kind() != Kind::kString) break;
        const std::string_view s = a[0].text(), t = a[1].text();
        if (n.fn == Fn::kContains) return Value::Bool(s.find(t) != std::string_view::npos);
        if (n.fn == Fn::kStartsWith) return Value::Bool(s.substr(0, t.size()) == t);
        return Value::Bool(s.size() >= t.size() && s.substr(s.size() - t.size()) == t);
      }
      case Fn::kMatches: {
        if (!arity(2) || a[0].kind() != Kind::kString || a[1].kind() != Kind::kString) break;
        const re2::StringPiece text(a[0].text().data(), a[0].text().size());
        if (n.regex) return Value::Bool(RE2::PartialMatch(text, *n.regex));
        const RE2 re(re2::StringPiece(a[1].text().data(), a[1].text().size()), RegexOptions());
        if (!re.ok()) return RegexError(re);
        return Value::Bool(RE2::PartialMatch(text, re));
      }
      case Fn::kInt:
        if (!arity(1)) break;
        return ToInt(a[0]);
      case Fn::kUint:
        if (!arity(1)) break;
        return ToUint(a[0]);
      case Fn::kDouble:
        if (!arity(1)) break;
        return ToDouble(a[0]);
      case Fn::kString:
        if (!arity(1)) break;
        return ToStringValue(a[0]);
      case Fn::kBytes:
        if (!arity(1)) break;
        if (a[0].kind() == Kind::kBytes) return a[0];
        if (a[0].kind() == Kind::kString) return a[0].WithTextKind(Kind::kBytes);
        return NoOverload("bytes", {&a[0]});
      case Fn::kBool:
        if (!arity(1)) break;
        return ToBool(a[0]);
      case Fn::kDyn:
        if (!arity(1)) break;
        return a[0];
      case Fn::kType:
        if (!arity(1)) break;
        return Value::TypeName(a[0].TypeNameOf());
      default:
        return StringExt(n.fn, a, argc, name);
    }
    std::string types;
    for (std::size_t i = 0; i < argc; ++i) {
      if (i) types += ", ";
      types += a[i].TypeNameOf();
    }
    return Value::Error(fmt::format("no matching overload for '{}' applied to '({})'", name, types));
  }

  const Activation& act_;
  Value* locals_;
  long budget_;  // comprehension iterations left
};

class Planner {
 public:
  explicit Planner(const Env& env) : env_(env) {}

  Node Plan(const Expr& e) {
    Node n;
    switch (e.kind) {
      case ExprKind::kConst:
        SetConstant(n, e.constant);
        return n;
      case ExprKind::kIdent:
        return Ident(e);
      case ExprKind::kSelect:
        if (std::string qualified; !e.test_only && QualifiedName(e, qualified)) {
          const auto& vars = env_.variables();
          for (std::size_t i = 0; i < vars.size(); ++i) {
            if (vars[i].name == qualified) return Variable(qualified, i);
          }
        }
        n.op = Op::kSelect;
        n.test_only = e.test_only;
        SetConstant(n, Value::String(e.name));
        n.op = Op::kSelect;
        n.kids.push_back(Plan(*e.target));
        return n;
      case ExprKind::kCall:
        return CallNode(e);
      case ExprKind::kList:
      case ExprKind::kMap:
        n.op = e.kind == ExprKind::kList ? Op::kList : Op::kMap;
        for (const auto& a : e.args) n.kids.push_back(Plan(*a));
        return Fold(std::move(n));
      case ExprKind::kComprehension: {
        n.op = Op::kComp;
        n.macro = e.macro;
        n.kids.push_back(Plan(*e.target));
        n.slot = static_cast<int>(scope_.size());
        scope_.push_back(e.name);
        max_locals_ = std::max(max_locals_, static_cast<int>(scope_.size()));
        if (e.predicate) {
          n.has_predicate = true;
          n.kids.push_back(Plan(*e.predicate));
        }
        if (e.transform) n.kids.push_back(Plan(*e.transform));
        scope_.pop_back();
        return n;
      }
    }
    return n;
  }

  int max_locals() const { return max_locals_; }

 private:
  static void SetConstant(Node& n, const Value& v) {
    n.op = Op::kConst;
    n.owned = v.Own();
    n.constant = n.owned.Borrow();
  }

  static Node Variable(const std::string& name, std::size_t slot) {
    Node n;
    SetConstant(n, Value::Error(fmt::format("no value bound to variable '{}'", name)));
    n.op = Op::kVar;
    n.slot = static_cast<int>(slot);
    return n;
  }

  bool QualifiedName(const Expr& e, std::string& out) const {
    if (e.kind == ExprKind::kIdent) {
      for (const auto& s : scope_) {
        if (s == e.name) return false;
      }
      out = e.name;
      return true;
    }
    if (e.kind != ExprKind::kSelect || e.test_only || !QualifiedName(*e.target, out)) return false;
    out += "." + e.name;
    return true;
  }

  Node Ident(const Expr& e) {
    Node n;
    for (std::size_t i = scope_.size(); i-- > 0;) {
      if (scope_[i] == e.name) {
        n.op = Op::kLocal;
        n.slot = static_cast<int>(i);
        return n;
      }
    }
    const auto& vars = env_.variables();
    for (std::size_t i = 0; i < vars.size(); ++i) {
      if (vars[i].name == e.name) return Variable(e.name, i);
    }
    for (const auto& [name, value] : env_.constants()) {
      if (name == e.name) {
        SetConstant(n, value);
        return n;
      }
    }
    if (const char* type = TypeDenotationName(e.name)) {
      SetConstant(n, Value::TypeName(type));
      return n;
    }
    SetConstant(n, Value::Error(fmt::format("undeclared reference to '{}'", e.name)));
    return n;
  }

  Node CallNode(const Expr& e) {
    Node n;
    if (e.target == nullptr) {
      if (e.name == "_&&_" || e.name == "_||_") {
        n.op = e.name == "_&&_" ? Op::kAnd : Op::kOr;
      } else if (e.name == "!_") {
        n.op = Op::kNot;
      } else if (e.name == "_?_:_") {
        n.op = Op::kCond;
      }
      if (n.op != Op::kConst) {
        for (const auto& a : e.args) n.kids.push_back(Plan(*a));
        return Fold(std::move(n));
      }
    }
    n.op = Op::kCall;
    n.fn = Fn::kUnknown;
    for (const auto& f : kFunctions) {
      if (f.name == e.name && (!f.ext || env_.check.string_extensions)) n.fn = f.fn;
    }
    if (n.fn == Fn::kUnknown) {
      n.owned = Value::Error(fmt::format("undeclared reference to '{}'", e.name));
    } else {
      n.owned = Value::String(e.name);
    }
    n.constant = n.owned.Borrow();
    if (e.target) n.kids.push_back(Plan(*e.target));
    for (const auto& a : e.args) n.kids.push_back(Plan(*a));
    if (n.fn == Fn::kMatches && n.kids.size() == 2 && n.kids[1].op == Op::kConst &&
        n.kids[1].constant.kind() == Kind::kString) {
      // Compile a constant pattern once. An invalid one stays a runtime error, as in cel-go.
      const std::string_view p = n.kids[1].constant.text();
      auto re = std::make_shared<const RE2>(re2::StringPiece(p.data(), p.size()), RegexOptions());
      if (re->ok()) n.regex = std::move(re);
    }
    if (n.fn == Fn::kUnknown) return n;
    return Fold(std::move(n));
  }

  // Replaces a call or literal whose operands are all constants by its value, unless that value is an error
  // (errors stay runtime results, so `false && 1/0 == 0` still absorbs them).
  static Node Fold(Node n) {
    for (const Node& k : n.kids) {
      if (k.op != Op::kConst) return n;
    }
    static const VectorActivation kEmpty{Env()};
    Evaluator ev(kEmpty, nullptr, 0);
    Value v = ev.Eval(n);
    if (v.IsError()) return n;
    Node folded;
    SetConstant(folded, v);
    return folded;
  }

  const Env& env_;
  std::vector<std::string> scope_;
  int max_locals_ = 0;
};

}  // namespace

int Env::AddVariable(std::string name, Type type) {
  variables_.push_back(VariableDecl{std::move(name), std::move(type)});
  return static_cast<int>(variables_.size()) - 1;
}

void Env::AddConstant(std::string name, Value value) { constants_.emplace_back(std::move(name), value.Own()); }

Value Program::Evaluate(const Activation& activation) const {
  if (plan_->max_locals == 0) {  // no comprehension: no locals to set up
    Evaluator ev(activation, nullptr, plan_->max_iterations);
    return ev.Eval(plan_->root);
  }
  std::array<Value, kInlineLocals> small;
  std::vector<Value> big;
  Value* locals = small.data();
  if (static_cast<std::size_t>(plan_->max_locals) > small.size()) {
    big.resize(static_cast<std::size_t>(plan_->max_locals));
    locals = big.data();
  }
  Evaluator ev(activation, locals, plan_->max_iterations);
  return ev.Eval(plan_->root);
}

const Type& Program::result_type() const { return plan_->type; }
const std::string& Program::source() const { return plan_->source; }

absl::StatusOr<Program> Compile(const Env& env, std::string_view source) {
  ParseResult parsed = Parse(source, env.parse);
  if (!parsed.issues.empty()) return absl::InvalidArgumentError(FormatIssues(source, parsed.issues));
  auto plan = std::make_shared<Plan>();
  plan->source = std::string(source);
  if (env.type_check) {
    std::vector<VariableDecl> decls = env.variables();
    for (const auto& [name, value] : env.constants()) {
      Type t;
      switch (value.kind()) {
        case Kind::kInt:
          t = Type::Int();
          break;
        case Kind::kUint:
          t = Type::Uint();
          break;
        case Kind::kDouble:
          t = Type::Double();
          break;
        case Kind::kString:
          t = Type::String();
          break;
        case Kind::kBool:
          t = Type::Bool();
          break;
        default:
          t = Type::Dyn();
      }
      decls.push_back(VariableDecl{name, t});
    }
    CheckResult checked = Check(*parsed.expr, decls, env.check);
    if (!checked.issues.empty()) return absl::InvalidArgumentError(FormatIssues(source, checked.issues));
    plan->type = checked.type;
  }
  Planner planner(env);
  plan->root = planner.Plan(*parsed.expr);
  plan->max_locals = planner.max_locals();
  plan->max_iterations = env.max_comprehension_iterations;
  Program program;
  program.plan_ = std::move(plan);
  return program;
}

}  // namespace omni_proxmox::cel
