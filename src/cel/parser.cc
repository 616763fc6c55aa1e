// SPDX-License-Identifier: Apache-2.0
#include "cel/parser.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "util/utf8.h"

namespace omni_proxmox::cel {
namespace {

constexpr std::string_view kExpectingExpr =
    "{'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, "
    "IDENTIFIER}";

enum class Tok {
  kEof,
  kIdent,
  kQuotedIdent,  // `a.b-c`, only valid as a field selector
  kInt,
  kUint,
  kDouble,
  kString,
  kBytes,
  kTrue,
  kFalse,
  kNull,
  kIn,
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kLBrace,
  kRBrace,
  kDot,
  kComma,
  kColon,
  kQuestion,
  kPlus,
  kMinus,
  kStar,
  kSlash,
  kPercent,
  kBang,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kAnd,
  kOr,
};

struct Token {
  Tok kind = Tok::kEof;
  std::string_view text;  // source text, for messages
  Position pos;
  std::string value;  // decoded string/bytes literal, or the digits of a number
};

// Internal to this file: unwinds the recursive descent at the first error.
struct SyntaxError {
  Position pos;
  std::string message;
};

bool IsReserved(std::string_view word) {
  static constexpr std::string_view kReserved[] = {"as",        "break",  "const",  "continue", "else", "for",
                                                   "function",  "if",     "import", "let",      "loop", "package",
                                                   "namespace", "return", "var",    "void",     "while"};
  return std::find(std::begin(kReserved), std::end(kReserved), word) != std::end(kReserved);
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsIdentStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  std::vector<Token> Run() {
    std::vector<Token> out;
    for (;;) {
      SkipSpaceAndComments();
      Token t;
      t.pos = Here();
      if (i_ >= src_.size()) {
        t.kind = Tok::kEof;
        t.text = "<EOF>";
        out.push_back(std::move(t));
        return out;
      }
      const std::size_t start = i_;
      LexOne(t);
      t.text = src_.substr(start, i_ - start);
      out.push_back(std::move(t));
    }
  }

 private:
  Position Here() const { return Position{line_, col_}; }

  char Peek(std::size_t ahead = 0) const { return i_ + ahead < src_.size() ? src_[i_ + ahead] : '\0'; }

  void Advance(std::size_t n = 1) {
    for (std::size_t k = 0; k < n && i_ < src_.size(); ++k) {
      const auto c = static_cast<unsigned char>(src_[i_++]);
      if (c == '\n') {
        ++line_;
        col_ = 0;
      } else if ((c & 0xC0) != 0x80) {
        ++col_;
      }
    }
  }

  [[noreturn]] void Fail(Position pos, std::string message) { throw SyntaxError{pos, std::move(message)}; }

  [[noreturn]] void RecognitionError(Position pos, std::size_t start) {
    // ANTLR reports the characters it consumed while trying to match a token.
    const std::size_t len = std::min<std::size_t>(2, src_.size() - start);
    Fail(pos, fmt::format("Syntax error: token recognition error at: '{}'", src_.substr(start, len)));
  }

  void SkipSpaceAndComments() {
    for (;;) {
      const char c = Peek();
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
        Advance();
      } else if (c == '/' && Peek(1) == '/') {
        while (i_ < src_.size() && Peek() != '\n') Advance();
      } else {
        return;
      }
    }
  }

  void LexOne(Token& t) {
    const char c = Peek();
    const Position pos = Here();
    const std::size_t start = i_;
    auto two = [&](char next, Tok yes, Tok no) {
      if (Peek(1) == next) {
        Advance(2);
        t.kind = yes;
      } else {
        Advance();
        t.kind = no;
      }
    };
    switch (c) {
      case '(':
        Advance(), t.kind = Tok::kLParen;
        return;
      case ')':
        Advance(), t.kind = Tok::kRParen;
        return;
      case '[':
        Advance(), t.kind = Tok::kLBracket;
        return;
      case ']':
        Advance(), t.kind = Tok::kRBracket;
        return;
      case '{':
        Advance(), t.kind = Tok::kLBrace;
        return;
      case '}':
        Advance(), t.kind = Tok::kRBrace;
        return;
      case ',':
        Advance(), t.kind = Tok::kComma;
        return;
      case ':':
        Advance(), t.kind = Tok::kColon;
        return;
      case '?':
        Advance(), t.kind = Tok::kQuestion;
        return;
      case '+':
        Advance(), t.kind = Tok::kPlus;
        return;
      case '-':
        Advance(), t.kind = Tok::kMinus;
        return;
      case '*':
        Advance(), t.kind = Tok::kStar;
        return;
      case '/':
        Advance(), t.kind = Tok::kSlash;
        return;
      case '%':
        Advance(), t.kind = Tok::kPercent;
        return;
      case '!':
        two('=', Tok::kNe, Tok::kBang);
        return;
      case '<':
        two('=', Tok::kLe, Tok::kLt);
        return;
      case '>':
        two('=', Tok::kGe, Tok::kGt);
        return;
      case '=':
        if (Peek(1) == '=') {
          Advance(2), t.kind = Tok::kEq;
          return;
        }
        RecognitionError(pos, start);
      case '&':
        if (Peek(1) == '&') {
          Advance(2), t.kind = Tok::kAnd;
          return;
        }
        RecognitionError(pos, start);
      case '|':
        if (Peek(1) == '|') {
          Advance(2), t.kind = Tok::kOr;
          return;
        }
        RecognitionError(pos, start);
      case '.':
        if (IsDigit(Peek(1))) {
          LexNumber(t);
        } else {
          Advance(), t.kind = Tok::kDot;
        }
        return;
      case '"':
      case '\'':
        LexString(t, false, false);
        return;
      case '`': {
        Advance();
        const std::size_t begin = i_;
        while (i_ < src_.size() && Peek() != '`' && Peek() != '\n') Advance();
        if (Peek() != '`' || i_ == begin) RecognitionError(pos, start);
        t.value = std::string(src_.substr(begin, i_ - begin));
        Advance();
        t.kind = Tok::kQuotedIdent;
        return;
      }
      default:
        break;
    }
    if (IsDigit(c)) {
      LexNumber(t);
      return;
    }
    if (IsIdentStart(c)) {
      // String prefixes: r, b, rb, br in either case, immediately followed by a quote.
      std::size_t n = 0;
      bool raw = false, bytes = false;
      while (n < 2) {
        const char p = Peek(n);
        if ((p == 'r' || p == 'R') && !raw) {
          raw = true;
        } else if ((p == 'b' || p == 'B') && !bytes) {
          bytes = true;
        } else {
          break;
        }
        ++n;
      }
      for (std::size_t k = 1; k <= n; ++k) {
        const char q = Peek(k);
        if (q == '"' || q == '\'') {
          // Only the prefix letters before the quote count: "rb'x'" has k == 2.
          bool r = false, b = false;
          for (std::size_t m = 0; m < k; ++m) {
            const char p = Peek(m);
            if (p == 'r' || p == 'R') r = true;
            if (p == 'b' || p == 'B') b = true;
          }
          Advance(k);
          LexString(t, r, b);
          return;
        }
      }
      while (IsIdentStart(Peek()) || IsDigit(Peek())) Advance();
      const std::string_view word = src_.substr(start, i_ - start);
      if (word == "true") {
        t.kind = Tok::kTrue;
      } else if (word == "false") {
        t.kind = Tok::kFalse;
      } else if (word == "null") {
        t.kind = Tok::kNull;
      } else if (word == "in") {
        t.kind = Tok::kIn;
      } else {
        t.kind = Tok::kIdent;
        t.value = std::string(word);
      }
      return;
    }
    // Anything else, including non-ASCII outside a string literal.
    const std::size_t len = (static_cast<unsigned char>(c) & 0x80) ? Utf8Len(static_cast<unsigned char>(c)) : 1;
    Fail(pos, fmt::format("Syntax error: token recognition error at: '{}'", src_.substr(start, len)));
  }

  static std::size_t Utf8Len(unsigned char c) {
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
  }

  void LexNumber(Token& t) {
    const std::size_t start = i_;
    if (Peek() == '0' && (Peek(1) == 'x' || Peek(1) == 'X') && HexDigit(Peek(2)) >= 0) {
      Advance(2);
      while (HexDigit(Peek()) >= 0) Advance();
      t.value = std::string(src_.substr(start, i_ - start));
      if (Peek() == 'u' || Peek() == 'U') {
        Advance();
        t.kind = Tok::kUint;
      } else {
        t.kind = Tok::kInt;
      }
      return;
    }
    bool is_float = false;
    while (IsDigit(Peek())) Advance();
    if (Peek() == '.' && IsDigit(Peek(1))) {
      is_float = true;
      Advance();
      while (IsDigit(Peek())) Advance();
    }
    if ((Peek() == 'e' || Peek() == 'E') &&
        (IsDigit(Peek(1)) || ((Peek(1) == '+' || Peek(1) == '-') && IsDigit(Peek(2))))) {
      is_float = true;
      Advance(2);
      while (IsDigit(Peek())) Advance();
    }
    t.value = std::string(src_.substr(start, i_ - start));
    if (is_float) {
      t.kind = Tok::kDouble;
    } else if (Peek() == 'u' || Peek() == 'U') {
      Advance();
      t.kind = Tok::kUint;
    } else {
      t.kind = Tok::kInt;
    }
  }

  void LexString(Token& t, bool raw, bool bytes) {
    const Position pos = Here();
    const char q = Peek();
    const bool triple = Peek(1) == q && Peek(2) == q;
    Advance(triple ? 3 : 1);
    std::string out;
    for (;;) {
      if (i_ >= src_.size()) Fail(pos, "Syntax error: unterminated string literal");
      const char c = Peek();
      if (triple) {
        if (c == q && Peek(1) == q && Peek(2) == q) {
          Advance(3);
          break;
        }
      } else {
        if (c == q) {
          Advance();
          break;
        }
        if (c == '\n' || c == '\r') Fail(pos, "Syntax error: newline in a quoted string; use a triple-quoted string");
      }
      if (c == '\\' && !raw) {
        Escape(out, bytes);
        continue;
      }
      // Copy one code point verbatim.
      const std::size_t len = Utf8Len(static_cast<unsigned char>(c));
      out.append(src_.substr(i_, len));
      Advance(len);
    }
    t.kind = bytes ? Tok::kBytes : Tok::kString;
    t.value = std::move(out);
  }

  void Escape(std::string& out, bool bytes) {
    const Position pos = Here();
    const char c = Peek(1);
    auto bad = [&]() { Fail(pos, fmt::format("Syntax error: invalid escape sequence '\\{}'", c == '\0' ? ' ' : c)); };
    switch (c) {
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case '\\':
      case '?':
      case '"':
      case '\'':
      case '`':
        out.push_back(c);
        break;
      case 'x':
      case 'X': {
        const int h = HexDigit(Peek(2)), l = HexDigit(Peek(3));
        if (h < 0 || l < 0) bad();
        const auto v = static_cast<std::uint32_t>(h * 16 + l);
        if (bytes) {
          out.push_back(static_cast<char>(v));
        } else {
          util::AppendUtf8(out, v);
        }
        Advance(4);
        return;
      }
      case 'u':
      case 'U': {
        const std::size_t n = c == 'u' ? 4 : 8;
        std::uint32_t v = 0;
        for (std::size_t k = 0; k < n; ++k) {
          const int d = HexDigit(Peek(2 + k));
          if (d < 0) bad();
          v = v * 16 + static_cast<std::uint32_t>(d);
        }
        if ((v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) {
          Fail(pos, fmt::format("Syntax error: invalid unicode code point in escape: {:#x}", v));
        }
        util::AppendUtf8(out, v);
        Advance(2 + n);
        return;
      }
      default:
        if (c >= '0' && c <= '3' && Peek(2) >= '0' && Peek(2) <= '7' && Peek(3) >= '0' && Peek(3) <= '7') {
          const auto v = static_cast<std::uint32_t>((c - '0') * 64 + (Peek(2) - '0') * 8 + (Peek(3) - '0'));
          if (bytes) {
            out.push_back(static_cast<char>(v));
          } else {
            util::AppendUtf8(out, v);
          }
          Advance(4);
          return;
        }
        bad();
    }
    Advance(2);
  }

  std::string_view src_;
  std::size_t i_ = 0;
  int line_ = 1;
  int col_ = 0;
};

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParseOptions& options) : toks_(std::move(tokens)), options_(options) {}

  ExprPtr ParseAll() {
    ExprPtr e = ParseExpr();
    if (Cur().kind != Tok::kEof) {
      Fail(Cur().pos, fmt::format("Syntax error: extraneous input '{}' expecting <EOF>", Cur().text));
    }
    return e;
  }

 private:
  const Token& Cur() const { return toks_[pos_]; }
  const Token& PeekTok(std::size_t n = 1) const { return toks_[std::min(pos_ + n, toks_.size() - 1)]; }
  const Token& Next() { return toks_[pos_ < toks_.size() - 1 ? pos_++ : pos_]; }
  bool Accept(Tok k) {
    if (Cur().kind != k) return false;
    Next();
    return true;
  }
  void Expect(Tok k, std::string_view what) {
    if (!Accept(k)) Fail(Cur().pos, fmt::format("Syntax error: mismatched input '{}' expecting {}", Cur().text, what));
  }

  [[noreturn]] void Fail(Position pos, std::string message) { throw SyntaxError{pos, std::move(message)}; }

  // Bounds the height of the tree and the depth of the descent.
  void Guard(const Expr& e) {
    if (e.depth > options_.max_recursion_depth) {
      Fail(e.pos, fmt::format("expression recursion limit exceeded: {}", options_.max_recursion_depth));
    }
  }

  struct DepthScope {
    explicit DepthScope(Parser& p) : parser(p) {
      if (++parser.depth_ > parser.options_.max_recursion_depth) {
        parser.Fail(parser.Cur().pos,
                    fmt::format("expression recursion limit exceeded: {}", parser.options_.max_recursion_depth));
      }
    }
    ~DepthScope() { --parser.depth_; }
    Parser& parser;
  };

  ExprPtr NewNode(ExprKind kind, Position pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  ExprPtr Finish(ExprPtr e) {
    int d = 0;
    if (e->target) d = std::max(d, e->target->depth);
    for (const auto& a : e->args) d = std::max(d, a->depth);
    if (e->predicate) d = std::max(d, e->predicate->depth);
    if (e->transform) d = std::max(d, e->transform->depth);
    e->depth = d + 1;
    Guard(*e);
    return e;
  }

  ExprPtr Call(std::string fn, Position pos, std::vector<ExprPtr> args, ExprPtr target = nullptr) {
    auto e = NewNode(ExprKind::kCall, pos);
    e->name = std::move(fn);
    e->args = std::move(args);
    e->target = std::move(target);
    return Finish(std::move(e));
  }

  ExprPtr Binary(std::string fn, Position pos, ExprPtr l, ExprPtr r) {
    std::vector<ExprPtr> args;
    args.push_back(std::move(l));
    args.push_back(std::move(r));
    return Call(std::move(fn), pos, std::move(args));
  }

  ExprPtr ParseExpr() {
    DepthScope scope(*this);
    ExprPtr cond = ParseLogical(Tok::kOr);
    if (Cur().kind != Tok::kQuestion) return cond;
    const Position pos = Next().pos;
    ExprPtr then = ParseLogical(Tok::kOr);
    Expect(Tok::kColon, "':'");
    ExprPtr otherwise = ParseExpr();
    std::vector<ExprPtr> args;
    args.push_back(std::move(cond));
    args.push_back(std::move(then));
    args.push_back(std::move(otherwise));
    return Call("_?_:_", pos, std::move(args));
  }

  // `||` and `&&` chains are built as balanced trees, as cel-go does, so long chains stay shallow.
  ExprPtr ParseLogical(Tok op) {
    std::vector<ExprPtr> terms;
    std::vector<Position> ops;
    terms.push_back(op == Tok::kOr ? ParseLogical(Tok::kAnd) : ParseRelation());
    while (Cur().kind == op) {
      ops.push_back(Next().pos);
      terms.push_back(op == Tok::kOr ? ParseLogical(Tok::kAnd) : ParseRelation());
    }
    if (terms.size() == 1) return std::move(terms[0]);
    return Balance(op == Tok::kOr ? "_||_" : "_&&_", terms, ops, 0, terms.size() - 1);
  }

  ExprPtr Balance(const char* fn, std::vector<ExprPtr>& terms, const std::vector<Position>& ops, std::size_t lo,
                  std::size_t hi) {
    if (lo == hi) return std::move(terms[lo]);
    const std::size_t mid = (lo + hi + 1) / 2;  // ops[mid - 1] joins [lo, mid) and [mid, hi]
    ExprPtr l = Balance(fn, terms, ops, lo, mid - 1);
    ExprPtr r = Balance(fn, terms, ops, mid, hi);
    return Binary(fn, ops[mid - 1], std::move(l), std::move(r));
  }

  ExprPtr ParseRelation() {
    ExprPtr lhs = ParseAddition();
    for (;;) {
      const char* fn = nullptr;
      switch (Cur().kind) {
        case Tok::kEq:
          fn = "_==_";
          break;
        case Tok::kNe:
          fn = "_!=_";
          break;
        case Tok::kLt:
          fn = "_<_";
          break;
        case Tok::kLe:
          fn = "_<=_";
          break;
        case Tok::kGt:
          fn = "_>_";
          break;
        case Tok::kGe:
          fn = "_>=_";
          break;
        case Tok::kIn:
          fn = "@in";
          break;
        default:
          return lhs;
      }
      const Position pos = Next().pos;
      lhs = Binary(fn, pos, std::move(lhs), ParseAddition());
    }
  }

  ExprPtr ParseAddition() {
    ExprPtr lhs = ParseMultiplication();
    for (;;) {
      const char* fn = Cur().kind == Tok::kPlus ? "_+_" : Cur().kind == Tok::kMinus ? "_-_" : nullptr;
      if (fn == nullptr) return lhs;
      const Position pos = Next().pos;
      lhs = Binary(fn, pos, std::move(lhs), ParseMultiplication());
    }
  }

  ExprPtr ParseMultiplication() {
    ExprPtr lhs = ParseUnary();
    for (;;) {
      const char* fn = Cur().kind == Tok::kStar      ? "_*_"
                       : Cur().kind == Tok::kSlash   ? "_/_"
                       : Cur().kind == Tok::kPercent ? "_%_"
                                                     : nullptr;
      if (fn == nullptr) return lhs;
      const Position pos = Next().pos;
      lhs = Binary(fn, pos, std::move(lhs), ParseUnary());
    }
  }

  ExprPtr ParseUnary() {
    if (Cur().kind == Tok::kBang || Cur().kind == Tok::kMinus) {
      const Tok op = Cur().kind;
      std::vector<Position> ops;
      while (Cur().kind == op) ops.push_back(Next().pos);
      // A minus directly before a number literal is part of the literal (so -9223372036854775808 is valid).
      bool negate_literal = false;
      if (op == Tok::kMinus && (Cur().kind == Tok::kInt || Cur().kind == Tok::kDouble)) {
        negate_literal = true;
        ops.pop_back();
      }
      ExprPtr e = ParseMember(negate_literal);
      while (!ops.empty()) {
        std::vector<ExprPtr> args;
        args.push_back(std::move(e));
        e = Call(op == Tok::kBang ? "!_" : "-_", ops.back(), std::move(args));
        ops.pop_back();
      }
      return e;
    }
    return ParseMember(false);
  }

  ExprPtr ParseMember(bool negate_literal) {
    ExprPtr e = ParsePrimary(negate_literal);
    for (;;) {
      if (Cur().kind == Tok::kDot) {
        const Position dot = Next().pos;
        if (Cur().kind == Tok::kQuotedIdent) {
          auto sel = NewNode(ExprKind::kSelect, dot);
          sel->name = Next().value;
          sel->target = std::move(e);
          e = Finish(std::move(sel));
          continue;
        }
        if (Cur().kind != Tok::kIdent) {
          Fail(Cur().pos, fmt::format("Syntax error: mismatched input '{}' expecting IDENTIFIER", Cur().text));
        }
        const Token& id = Next();
        if (Cur().kind == Tok::kLParen) {
          const Position open = Next().pos;
          std::vector<ExprPtr> args = ParseExprList(Tok::kRParen, "')'");
          e = MemberCall(std::move(e), id.value, open, std::move(args));
        } else {
          auto sel = NewNode(ExprKind::kSelect, dot);
          sel->name = id.value;
          sel->target = std::move(e);
          e = Finish(std::move(sel));
        }
      } else if (Cur().kind == Tok::kLBracket) {
        const Position pos = Next().pos;
        ExprPtr index = ParseExpr();
        Expect(Tok::kRBracket, "']'");
        e = Binary("_[_]", pos, std::move(e), std::move(index));
      } else if (Cur().kind == Tok::kLBrace && (e->kind == ExprKind::kIdent || e->kind == ExprKind::kSelect)) {
        Fail(Cur().pos, "message construction is not supported: storage selectors have no protobuf message types");
      } else {
        return e;
      }
    }
  }

  std::vector<ExprPtr> ParseExprList(Tok close, std::string_view what) {
    std::vector<ExprPtr> out;
    if (Accept(close)) return out;
    for (;;) {
      out.push_back(ParseExpr());
      if (Accept(close)) return out;
      if (!Accept(Tok::kComma)) {
        Fail(Cur().pos, fmt::format("Syntax error: mismatched input '{}' expecting {{',', {}}}", Cur().text, what));
      }
      if (close != Tok::kRParen && Accept(close)) return out;  // trailing comma in list literals
    }
  }

  ExprPtr ParsePrimary(bool negate_literal) {
    const Token& t = Cur();
    const Position pos = t.pos;
    switch (t.kind) {
      case Tok::kInt:
      case Tok::kUint:
      case Tok::kDouble: {
        Next();
        auto e = NewNode(ExprKind::kConst, pos);
        e->constant = NumberLiteral(t, negate_literal);
        return Finish(std::move(e));
      }
      case Tok::kString:
      case Tok::kBytes: {
        Next();
        auto e = NewNode(ExprKind::kConst, pos);
        e->constant = t.kind == Tok::kString ? Value::String(t.value) : Value::Bytes(t.value);
        return Finish(std::move(e));
      }
      case Tok::kTrue:
      case Tok::kFalse:
      case Tok::kNull: {
        Next();
        auto e = NewNode(ExprKind::kConst, pos);
        e->constant = t.kind == Tok::kNull ? Value::Null() : Value::Bool(t.kind == Tok::kTrue);
        return Finish(std::move(e));
      }
      case Tok::kLParen: {
        Next();
        ExprPtr e = ParseExpr();
        Expect(Tok::kRParen, "')'");
        return e;
      }
      case Tok::kLBracket: {
        Next();
        auto e = NewNode(ExprKind::kList, pos);
        e->args = ParseExprList(Tok::kRBracket, "']'");
        return Finish(std::move(e));
      }
      case Tok::kLBrace: {
        Next();
        auto e = NewNode(ExprKind::kMap, pos);
        if (!Accept(Tok::kRBrace)) {
          for (;;) {
            e->args.push_back(ParseExpr());
            Expect(Tok::kColon, "':'");
            e->args.push_back(ParseExpr());
            if (Accept(Tok::kRBrace)) break;
            Expect(Tok::kComma, "{',', '}'}");
            if (Accept(Tok::kRBrace)) break;
          }
        }
        return Finish(std::move(e));
      }
      case Tok::kDot:
      case Tok::kIdent: {
        if (t.kind == Tok::kDot) {
          Next();
          if (Cur().kind != Tok::kIdent) {
            Fail(Cur().pos, fmt::format("Syntax error: mismatched input '{}' expecting IDENTIFIER", Cur().text));
          }
        }
        const Token& id = Next();
        if (IsReserved(id.value)) Fail(id.pos, fmt::format("reserved identifier: {}", id.value));
        if (Cur().kind == Tok::kLParen) {
          Next();
          std::vector<ExprPtr> args = ParseExprList(Tok::kRParen, "')'");
          return GlobalCall(id.value, id.pos, std::move(args));
        }
        auto e = NewNode(ExprKind::kIdent, id.pos);
        e->name = id.value;
        return Finish(std::move(e));
      }
      default:
        Fail(pos, fmt::format("Syntax error: mismatched input '{}' expecting {}", t.text, kExpectingExpr));
    }
  }

  Value NumberLiteral(const Token& t, bool negate) {
    const std::string& s = t.value;
    if (t.kind == Tok::kDouble) {
      double d = std::strtod(s.c_str(), nullptr);
      return Value::Double(negate ? -d : d);
    }
    const bool hex = s.size() > 2 && (s[1] == 'x' || s[1] == 'X');
    std::uint64_t u = 0;
    const char* begin = s.data() + (hex ? 2 : 0);
    auto [ptr, ec] = std::from_chars(begin, s.data() + s.size(), u, hex ? 16 : 10);
    if (ec != std::errc() || ptr != s.data() + s.size()) {
      Fail(t.pos, t.kind == Tok::kUint ? "invalid uint literal" : "invalid int literal");
    }
    if (t.kind == Tok::kUint) return Value::Uint(u);
    if (negate) {
      if (u > 9223372036854775808ull) Fail(t.pos, "invalid int literal");
      return Value::Int(u == 9223372036854775808ull ? INT64_MIN : -static_cast<std::int64_t>(u));
    }
    if (u > static_cast<std::uint64_t>(INT64_MAX)) Fail(t.pos, "invalid int literal");
    return Value::Int(static_cast<std::int64_t>(u));
  }

  ExprPtr GlobalCall(const std::string& fn, Position pos, std::vector<ExprPtr> args) {
    if (options_.enable_macros && fn == "has" && args.size() == 1) {
      ExprPtr& arg = args[0];
      if (arg->kind != ExprKind::kSelect) Fail(arg->pos, "invalid argument to has() macro");
      arg->test_only = true;
      return std::move(arg);
    }
    return Call(fn, pos, std::move(args));
  }

  ExprPtr MemberCall(ExprPtr target, const std::string& fn, Position pos, std::vector<ExprPtr> args) {
    if (options_.enable_macros) {
      std::optional<MacroKind> macro;
      if ((fn == "all" || fn == "exists" || fn == "exists_one" || fn == "filter") && args.size() == 2) {
        macro = fn == "all"      ? MacroKind::kAll
                : fn == "exists" ? MacroKind::kExists
                : fn == "filter" ? MacroKind::kFilter
                                 : MacroKind::kExistsOne;
      } else if (fn == "map" && (args.size() == 2 || args.size() == 3)) {
        macro = MacroKind::kMap;
      }
      if (macro) {
        if (args[0]->kind != ExprKind::kIdent) Fail(args[0]->pos, "argument must be a simple name");
        auto e = NewNode(ExprKind::kComprehension, pos);
        e->macro = *macro;
        e->name = args[0]->name;
        e->target = std::move(target);
        if (*macro == MacroKind::kMap) {
          if (args.size() == 3) e->predicate = std::move(args[1]);
          e->transform = std::move(args.back());
        } else {
          e->predicate = std::move(args[1]);
        }
        return Finish(std::move(e));
      }
    }
    return Call(fn, pos, std::move(args), std::move(target));
  }

  std::vector<Token> toks_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  const ParseOptions& options_;
};

}  // namespace

ParseResult Parse(std::string_view source, const ParseOptions& options) {
  ParseResult result;
  const std::int64_t size = CodePointCount(source);
  if (size > options.max_code_points) {
    result.issues.push_back({Position{1, 0}, fmt::format("expression code point size exceeds limit: size: {}, limit {}",
                                                         size, options.max_code_points)});
    return result;
  }
  try {
    std::vector<Token> tokens = Lexer(source).Run();
    result.expr = Parser(std::move(tokens), options).ParseAll();
  } catch (const SyntaxError& e) {
    result.expr.reset();
    result.issues.push_back({e.pos, e.message});
  }
  return result;
}

std::string FormatIssues(std::string_view source, const std::vector<Issue>& issues) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  for (;;) {
    const auto nl = source.find('\n', start);
    lines.push_back(source.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  std::string out;
  for (const Issue& issue : issues) {
    if (!out.empty()) out.push_back('\n');
    if (source.empty()) {
      // cel-go shows no snippet (and column 0) for an empty source.
      out += fmt::format("ERROR: <input>:{}:{}: {}", issue.pos.line, issue.pos.column, issue.message);
      continue;
    }
    out += fmt::format("ERROR: <input>:{}:{}: {}", issue.pos.line, issue.pos.column + 1, issue.message);
    const auto idx = static_cast<std::size_t>(issue.pos.line - 1);
    if (idx < lines.size()) {
      std::string_view line = lines[idx];
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      out += fmt::format("\n | {}\n | {}^", line, std::string(static_cast<std::size_t>(issue.pos.column), '.'));
    }
  }
  return out;
}

}  // namespace omni_proxmox::cel
