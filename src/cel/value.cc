// SPDX-License-Identifier: Apache-2.0
#include "cel/value.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include "util/escape.h"

namespace omni_proxmox::cel {
namespace {

constexpr double kTwoTo63 = 9223372036854775808.0;
constexpr double kTwoTo64 = 18446744073709551616.0;

int Sign(bool less, bool greater) { return less ? -1 : (greater ? 1 : 0); }

// Like cel-go: outside the integer range the double decides; inside, the integer is compared as a double (lossy
// near 2^63, which the conformance suite pins down: dyn(9223372036854775807) < 9223372036854775808.0 is false).
int CompareDoubles(double x, double y) {
  if (std::isnan(x) || std::isnan(y)) return 2;
  return Sign(x<y, x> y);
}

int CompareIntDouble(std::int64_t i, double d) {
  if (std::isnan(d)) return 2;
  if (d < -kTwoTo63) return 1;
  if (d > kTwoTo63) return -1;
  return CompareDoubles(static_cast<double>(i), d);
}

int CompareUintDouble(std::uint64_t u, double d) {
  if (std::isnan(d)) return 2;
  if (d < 0) return 1;
  if (d > kTwoTo64) return -1;
  return CompareDoubles(static_cast<double>(u), d);
}

int CompareIntUint(std::int64_t i, std::uint64_t u) {
  if (i < 0) return -1;
  const auto ui = static_cast<std::uint64_t>(i);
  return Sign(ui<u, ui> u);
}

bool IsNumeric(Kind k) { return k == Kind::kInt || k == Kind::kUint || k == Kind::kDouble; }

// Orders two numbers of any numeric kinds on one number line; 2 when unordered.
int CompareNumbers(const Value& a, const Value& b) {
  switch (a.kind()) {
    case Kind::kInt:
      switch (b.kind()) {
        case Kind::kInt:
          return Sign(a.int_value() < b.int_value(), a.int_value() > b.int_value());
        case Kind::kUint:
          return CompareIntUint(a.int_value(), b.uint_value());
        default:
          return CompareIntDouble(a.int_value(), b.double_value());
      }
    case Kind::kUint:
      switch (b.kind()) {
        case Kind::kInt:
          return -CompareIntUint(b.int_value(), a.uint_value());
        case Kind::kUint:
          return Sign(a.uint_value() < b.uint_value(), a.uint_value() > b.uint_value());
        default:
          return CompareUintDouble(a.uint_value(), b.double_value());
      }
    default:
      switch (b.kind()) {
        case Kind::kInt: {
          const int c = CompareIntDouble(b.int_value(), a.double_value());
          return c == 2 ? 2 : -c;
        }
        case Kind::kUint: {
          const int c = CompareUintDouble(b.uint_value(), a.double_value());
          return c == 2 ? 2 : -c;
        }
        default: {
          const double x = a.double_value(), y = b.double_value();
          if (std::isnan(x) || std::isnan(y)) return 2;
          return Sign(x<y, x> y);
        }
      }
  }
}

// CEL literal syntax: \\ \n \r \t, the quote, other control characters and DEL as \xXX.
void AppendQuoted(std::string& out, std::string_view s, char quote) {
  out.push_back(quote);
  util::AppendEscaped(out, s, util::EscapeRules{quote, true, util::EscapeRules::Controls::kHexByte, false});
  out.push_back(quote);
}

}  // namespace

Value Value::OwnedText(Kind kind, std::string s) {
  auto owned = std::make_shared<const std::string>(std::move(s));
  Value v(kind);
  v.text_ = *owned;
  v.owner_ = std::move(owned);
  return v;
}

Value Value::List(ListRep elements) {
  auto owned = std::make_shared<const ListRep>(std::move(elements));
  Value v(Kind::kList);
  v.list_ = owned.get();
  v.owner_ = std::move(owned);
  return v;
}

Value Value::Map(MapRep entries) {
  auto owned = std::make_shared<const MapRep>(std::move(entries));
  Value v(Kind::kMap);
  v.map_ = owned.get();
  v.owner_ = std::move(owned);
  return v;
}

Value Value::MakeMap(MapRep entries) {
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Value& key = entries[i].first;
    switch (key.kind()) {
      case Kind::kInt:
      case Kind::kUint:
      case Kind::kBool:
      case Kind::kString:
        break;
      case Kind::kError:
        return key;
      default:
        return Error(fmt::format("unsupported key type: {}", key.TypeNameOf()));
    }
    if (entries[i].second.IsError()) return entries[i].second;
    for (std::size_t j = 0; j < i; ++j) {
      Value eq = Equal(entries[j].first, key);
      if (eq.kind() == Kind::kBool && eq.bool_value()) {
        return Error(fmt::format("Failed with repeated key: {}", key.DebugString()));
      }
    }
  }
  return Map(std::move(entries));
}

Value Value::Own() const {
  switch (kind_) {
    case Kind::kString:
    case Kind::kBytes:
    case Kind::kError:
      return owner_ ? *this : OwnedText(kind_, std::string(text_));
    case Kind::kList: {
      ListRep copy;
      copy.reserve(list_->size());
      for (const auto& e : *list_) copy.push_back(e.Own());
      return List(std::move(copy));
    }
    case Kind::kMap: {
      MapRep copy;
      copy.reserve(map_->size());
      for (const auto& [k, v] : *map_) copy.emplace_back(k.Own(), v.Own());
      return Map(std::move(copy));
    }
    default:
      return *this;
  }
}

std::string_view Value::TypeNameOf() const {
  switch (kind_) {
    case Kind::kNull:
      return "null_type";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kUint:
      return "uint";
    case Kind::kDouble:
      return "double";
    case Kind::kString:
      return "string";
    case Kind::kBytes:
      return "bytes";
    case Kind::kList:
      return "list";
    case Kind::kMap:
      return "map";
    case Kind::kType:
      return "type";
    case Kind::kError:
      return "error";
  }
  return "unknown";
}

std::string Value::DebugString() const {
  switch (kind_) {
    case Kind::kNull:
      return "null";
    case Kind::kBool:
      return b_ ? "true" : "false";
    case Kind::kInt:
      return std::to_string(i_);
    case Kind::kUint:
      return std::to_string(u_) + "u";
    case Kind::kDouble:
      return FormatDouble(d_);
    case Kind::kString: {
      std::string out;
      AppendQuoted(out, text_, '"');
      return out;
    }
    case Kind::kBytes: {
      std::string out = "b";
      AppendQuoted(out, text_, '"');
      return out;
    }
    case Kind::kList: {
      std::string out = "[";
      for (std::size_t i = 0; i < list_->size(); ++i) {
        if (i) out += ", ";
        out += (*list_)[i].DebugString();
      }
      return out + "]";
    }
    case Kind::kMap: {
      std::string out = "{";
      for (std::size_t i = 0; i < map_->size(); ++i) {
        if (i) out += ", ";
        out += (*map_)[i].first.DebugString() + ": " + (*map_)[i].second.DebugString();
      }
      return out + "}";
    }
    case Kind::kType:
      return std::string(text_);
    case Kind::kError:
      return "error: " + std::string(text_);
  }
  return "";
}

Value Equal(const Value& a, const Value& b) {
  if (a.IsError()) return a;
  if (b.IsError()) return b;
  if (IsNumeric(a.kind()) && IsNumeric(b.kind())) return Value::Bool(CompareNumbers(a, b) == 0);
  if (a.kind() != b.kind()) return Value::Bool(false);
  switch (a.kind()) {
    case Kind::kNull:
      return Value::Bool(true);
    case Kind::kBool:
      return Value::Bool(a.bool_value() == b.bool_value());
    case Kind::kString:
    case Kind::kBytes:
    case Kind::kType:
      return Value::Bool(a.text() == b.text());
    case Kind::kList: {
      if (a.list().size() != b.list().size()) return Value::Bool(false);
      for (std::size_t i = 0; i < a.list().size(); ++i) {
        Value eq = Equal(a.list()[i], b.list()[i]);
        if (eq.IsError() || !eq.bool_value()) return eq;
      }
      return Value::Bool(true);
    }
    case Kind::kMap: {
      if (a.map().size() != b.map().size()) return Value::Bool(false);
      for (const auto& [key, value] : a.map()) {
        const Value* other = MapFind(b.map(), key);
        if (other == nullptr) return Value::Bool(false);
        Value eq = Equal(value, *other);
        if (eq.IsError() || !eq.bool_value()) return eq;
      }
      return Value::Bool(true);
    }
    default:
      return Value::Bool(false);
  }
}

int Compare(const Value& a, const Value& b, bool& ok) {
  ok = true;
  if (IsNumeric(a.kind()) && IsNumeric(b.kind())) return CompareNumbers(a, b);
  if (a.kind() == b.kind()) {
    switch (a.kind()) {
      case Kind::kBool:
        return Sign(a.bool_value() < b.bool_value(), a.bool_value() > b.bool_value());
      case Kind::kString:
      case Kind::kBytes: {
        const int c = a.text().compare(b.text());
        return Sign(c<0, c> 0);
      }
      default:
        break;
    }
  }
  ok = false;
  return 0;
}

const Value* MapFind(const MapRep& map, const Value& key) {
  const bool numeric = IsNumeric(key.kind());
  for (const auto& entry : map) {
    const Value& k = entry.first;
    if (numeric) {
      if (IsNumeric(k.kind()) && CompareNumbers(k, key) == 0) return &entry.second;
    } else if (k.kind() == key.kind()) {
      if (key.kind() == Kind::kBool ? k.bool_value() == key.bool_value() : k.text() == key.text()) {
        return &entry.second;
      }
    }
  }
  return nullptr;
}

std::int64_t CodePointCount(std::string_view s) {
  std::int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string FormatDouble(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "+Inf" : "-Inf";
  if (d == 0) return std::signbit(d) ? "-0" : "0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<std::size_t>(res.ptr - buf));
  std::string out;
  if (sci.front() == '-') {
    out.push_back('-');
    sci.remove_prefix(1);
  }
  const auto e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int exp = std::atoi(std::string(sci.substr(e + 1)).c_str());
  const int nd = static_cast<int>(digits.size());
  if (exp < -4 || exp >= 6) {  // Go switches to %e at exponent 6 for shortest output
    out.push_back(digits[0]);
    if (nd > 1) {
      out.push_back('.');
      out.append(digits, 1);
    }
    out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    return out;
  }
  const int dp = exp + 1;
  if (dp <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-dp), '0');
    out += digits;
  } else if (dp >= nd) {
    out += digits;
    out.append(static_cast<std::size_t>(dp - nd), '0');
  } else {
    out.append(digits, 0, static_cast<std::size_t>(dp));
    out.push_back('.');
    out.append(digits, static_cast<std::size_t>(dp));
  }
  return out;
}

}  // namespace omni_proxmox::cel
