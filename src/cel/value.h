// SPDX-License-Identifier: Apache-2.0
#pragma once

// CEL runtime values.
//
// A Value is a small tagged union. Strings, bytes, lists and maps are either *borrowed* (a view into memory that
// outlives the evaluation: the compiled program's constants or the caller's activation) or *owned* (kept alive by a
// shared_ptr). Borrowing is what lets a typical selector evaluate without touching the heap. A Value returned by
// Program::Evaluate may borrow from the program and the activation; call Own() to detach it.
//
// Errors are values too (kind kError), because `&&`, `||` and the comprehension macros must be able to absorb them.
// Thread-compatible; owned payloads are immutable and may be shared across threads.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace omni_proxmox::cel {

enum class Kind : std::uint8_t { kNull, kBool, kInt, kUint, kDouble, kString, kBytes, kList, kMap, kType, kError };

class Value;
using ListRep = std::vector<Value>;
using MapRep = std::vector<std::pair<Value, Value>>;  // insertion order; keys are unique

class Value {
 public:
  Value() = default;  // null

  static Value Null() { return Value(); }
  static Value Bool(bool b) {
    Value v(Kind::kBool);
    v.b_ = b;
    return v;
  }
  static Value Int(std::int64_t i) {
    Value v(Kind::kInt);
    v.i_ = i;
    return v;
  }
  static Value Uint(std::uint64_t u) {
    Value v(Kind::kUint);
    v.u_ = u;
    return v;
  }
  static Value Double(double d) {
    Value v(Kind::kDouble);
    v.d_ = d;
    return v;
  }
  // Borrowed views: the caller guarantees the bytes outlive every use of the value.
  static Value StringView(std::string_view s) { return Text(Kind::kString, s); }
  static Value BytesView(std::string_view s) { return Text(Kind::kBytes, s); }
  // A type value, e.g. "int", "list", "null_type". `name` must have static storage duration.
  static Value TypeName(std::string_view name) { return Text(Kind::kType, name); }
  // An error with a message of static storage duration (no allocation).
  static Value StaticError(std::string_view message) { return Text(Kind::kError, message); }
  // Owned variants: allocate.
  static Value String(std::string s) { return OwnedText(Kind::kString, std::move(s)); }
  static Value Bytes(std::string s) { return OwnedText(Kind::kBytes, std::move(s)); }
  static Value Error(std::string message) { return OwnedText(Kind::kError, std::move(message)); }
  static Value List(ListRep elements);
  static Value Map(MapRep entries);  // REQUIRES: keys unique (use MakeMap to check)
  // Builds a map, returning an error value on duplicate or unsupported keys.
  static Value MakeMap(MapRep entries);

  Kind kind() const { return kind_; }
  bool IsError() const { return kind_ == Kind::kError; }
  bool bool_value() const { return b_; }
  std::int64_t int_value() const { return i_; }
  std::uint64_t uint_value() const { return u_; }
  double double_value() const { return d_; }
  // String, bytes, type name or error message.
  std::string_view text() const { return text_; }
  const ListRep& list() const { return *list_; }
  const MapRep& map() const { return *map_; }

  // A shallow copy that does not keep the payload alive: valid only while this value (or its owner) lives.
  Value Borrow() const {
    Value v = *this;
    v.owner_.reset();
    return v;
  }
  // The same payload (and ownership) under another text kind: string <-> bytes.
  Value WithTextKind(Kind kind) const {
    Value v = *this;
    v.kind_ = kind;
    return v;
  }
  // A deep copy that borrows nothing.
  Value Own() const;

  // CEL's name for the value's type ("int", "list", "null_type", ...).
  std::string_view TypeNameOf() const;

  // Human-readable CEL literal syntax, for diagnostics and the CLI.
  std::string DebugString() const;

 private:
  explicit Value(Kind kind) : kind_(kind) {}
  static Value Text(Kind kind, std::string_view s) {
    Value v(kind);
    v.text_ = s;
    return v;
  }
  static Value OwnedText(Kind kind, std::string s);

  Kind kind_ = Kind::kNull;
  union {
    bool b_;
    std::int64_t i_;
    std::uint64_t u_ = 0;
    double d_;
    const ListRep* list_;
    const MapRep* map_;
  };
  std::string_view text_;
  std::shared_ptr<const void> owner_;  // null when borrowed or scalar
};

// Heterogeneous CEL equality. Returns a bool value, or an error value when an operand is an error.
Value Equal(const Value& a, const Value& b);
// Three-way ordering of comparable values: -1, 0, 1; 2 when unordered (NaN); nullopt-like error value otherwise.
// `ok` is false when the operands cannot be ordered (no matching overload).
int Compare(const Value& a, const Value& b, bool& ok);
// Looks a key up in a map with CEL's numeric key equivalence. Returns nullptr when absent.
const Value* MapFind(const MapRep& map, const Value& key);
// Number of Unicode code points in valid UTF-8 `s`.
std::int64_t CodePointCount(std::string_view s);
// Go's strconv.FormatFloat(d, 'g', -1, 64), which is what cel-go's string(double) prints.
std::string FormatDouble(double d);

}  // namespace omni_proxmox::cel
