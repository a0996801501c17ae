//===- ChatTemplate.cpp - the Jinja subset chat templates use --------------===//

#include "ChatTemplate.h"

#include "Unicode.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace hasten::tokenizer {
namespace {

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>; // in insertion order

struct Value {
  enum Kind { Undefined, None, Bool, Int, String, ListKind, DictKind } kind = Undefined;
  bool b = false;
  int64_t i = 0;
  std::string s;
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict; // shared: a namespace() is changed in place

  static Value none() { return make(None); }
  static Value boolean(bool v) {
    Value x = make(Bool);
    x.b = v;
    return x;
  }
  static Value integer(int64_t v) {
    Value x = make(Int);
    x.i = v;
    return x;
  }
  static Value string(std::string v) {
    Value x = make(String);
    x.s = std::move(v);
    return x;
  }
  static Value listOf(List v) {
    Value x = make(ListKind);
    x.list = std::make_shared<List>(std::move(v));
    return x;
  }
  static Value dictOf(Dict v) {
    Value x = make(DictKind);
    x.dict = std::make_shared<Dict>(std::move(v));
    return x;
  }
  static Value make(Kind k) {
    Value x;
    x.kind = k;
    return x;
  }

  const Value *find(const std::string &key) const {
    if (kind != DictKind)
      return nullptr;
    for (const auto &[k, v] : *dict)
      if (k == key)
        return &v;
    return nullptr;
  }
  bool truthy() const {
    switch (kind) {
    case Undefined:
    case None:
      return false;
    case Bool:
      return b;
    case Int:
      return i != 0;
    case String:
      return !s.empty();
    case ListKind:
      return !list->empty();
    case DictKind:
      return !dict->empty();
    }
    return false;
  }
};

struct TemplateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string repr(const Value &v);

/// What {{ v }} prints (Python's str()).
std::string str(const Value &v) {
  switch (v.kind) {
  case Value::Undefined:
    return "";
  case Value::None:
    return "None";
  case Value::Bool:
    return v.b ? "True" : "False";
  case Value::Int:
    return std::to_string(v.i);
  case Value::String:
    return v.s;
  default:
    return repr(v);
  }
}

std::string repr(const Value &v) {
  if (v.kind == Value::String) {
    std::string out = "'";
    for (char c : v.s) {
      if (c == '\'' || c == '\\')
        out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    return out + "'";
  }
  if (v.kind == Value::ListKind) {
    std::string out = "[";
    for (size_t k = 0; k < v.list->size(); ++k)
      out += (k ? ", " : "") + repr((*v.list)[k]);
    return out + "]";
  }
  if (v.kind == Value::DictKind) {
    std::string out = "{";
    for (size_t k = 0; k < v.dict->size(); ++k)
      out += (k ? ", " : "") + repr(Value::string((*v.dict)[k].first)) + ": " +
             repr((*v.dict)[k].second);
    return out + "}";
  }
  return str(v);
}

/// JSON for the tojson filter (as Python's json.dumps, which HF uses).
std::string json(const Value &v) {
  switch (v.kind) {
  case Value::Undefined:
  case Value::None:
    return "null";
  case Value::Bool:
    return v.b ? "true" : "false";
  case Value::Int:
    return std::to_string(v.i);
  case Value::String: {
    std::string out = "\"";
    for (unsigned char c : v.s) {
      switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
      }
    }
    return out + "\"";
  }
  case Value::ListKind: {
    std::string out = "[";
    for (size_t k = 0; k < v.list->size(); ++k)
      out += (k ? ", " : "") + json((*v.list)[k]);
    return out + "]";
  }
  case Value::DictKind: {
    std::string out = "{";
    for (size_t k = 0; k < v.dict->size(); ++k)
      out += (k ? ", " : "") + json(Value::string((*v.dict)[k].first)) + ": " +
             json((*v.dict)[k].second);
    return out + "}";
  }
  }
  return "null";
}

bool equal(const Value &a, const Value &b) {
  auto numeric = [](const Value &v) { return v.kind == Value::Int || v.kind == Value::Bool; };
  if (numeric(a) && numeric(b))
    return (a.kind == Value::Int ? a.i : a.b) == (b.kind == Value::Int ? b.i : b.b);
  if (a.kind != b.kind)
    return (a.kind == Value::Undefined || a.kind == Value::None) &&
           (b.kind == Value::Undefined || b.kind == Value::None) && a.kind == b.kind;
  switch (a.kind) {
  case Value::String:
    return a.s == b.s;
  case Value::ListKind:
    return a.list->size() == b.list->size() &&
           std::equal(a.list->begin(), a.list->end(), b.list->begin(), equal);
  case Value::DictKind:
    return json(a) == json(b);
  default:
    return true;
  }
}

/// Strings are indexed, sliced and counted by code point, as in Python.
std::vector<std::string> characters(const std::string &s) {
  std::vector<std::string> out;
  for (const CodePoint &cp : decodeUtf8(s))
    out.push_back(s.substr(cp.offset, cp.length));
  return out;
}

/// Python's str.strip(): Unicode whitespace, or the given characters.
std::string strip(const std::string &s, const std::optional<std::string> &chars, bool left,
                  bool right) {
  std::vector<CodePoint> cps = decodeUtf8(s);
  std::vector<CodePoint> set = chars ? decodeUtf8(*chars) : std::vector<CodePoint>();
  auto strippable = [&](uint32_t c) {
    if (!chars)
      return isWhitespace(c) || (c >= 0x1C && c <= 0x1F);
    return std::any_of(set.begin(), set.end(), [&](const CodePoint &x) { return x.value == c; });
  };
  size_t a = 0, b = cps.size();
  while (left && a < b && strippable(cps[a].value))
    ++a;
  while (right && b > a && strippable(cps[b - 1].value))
    --b;
  if (a == b)
    return "";
  size_t begin = cps[a].offset, end = cps[b - 1].offset + cps[b - 1].length;
  return s.substr(begin, end - begin);
}

//===----------------------------------------------------------------------===//
// Lexing: text and tags, with trim_blocks and lstrip_blocks
//===----------------------------------------------------------------------===//

struct Piece {
  enum Kind { Text, Output, Statement } kind;
  std::string text;
  size_t offset;
};

std::vector<Piece> splitTemplate(const std::string &src) {
  std::vector<Piece> pieces;
  size_t pos = 0;
  bool trimNextNewline = false, stripNextWhitespace = false;
  while (pos <= src.size()) {
    size_t open = src.find('{', pos);
    while (open != std::string::npos && open + 1 < src.size() && src[open + 1] != '{' &&
           src[open + 1] != '%' && src[open + 1] != '#')
      open = src.find('{', open + 1);
    if (open != std::string::npos && open + 1 >= src.size())
      open = std::string::npos;
    std::string text = src.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    size_t textOffset = pos;
    if (stripNextWhitespace) {
      size_t k = text.find_first_not_of(" \t\r\n");
      text.erase(0, k == std::string::npos ? text.size() : k);
    } else if (trimNextNewline) {
      if (text.rfind("\r\n", 0) == 0)
        text.erase(0, 2);
      else if (!text.empty() && text[0] == '\n')
        text.erase(0, 1);
    }
    if (open == std::string::npos) {
      if (!text.empty())
        pieces.push_back({Piece::Text, text, textOffset});
      break;
    }
    char type = src[open + 1];
    bool minusBefore = open + 2 < src.size() && src[open + 2] == '-';
    bool plusBefore = open + 2 < src.size() && src[open + 2] == '+';
    if (minusBefore) {
      size_t k = text.find_last_not_of(" \t\r\n");
      text.erase(k == std::string::npos ? 0 : k + 1);
    } else if (type != '{' && !plusBefore) {
      // lstrip_blocks: spaces and tabs between a line's start (in the
      // source) and a block or comment tag are dropped.
      size_t lineStart = open == 0 ? std::string::npos : src.rfind('\n', open - 1);
      size_t from = lineStart == std::string::npos ? 0 : lineStart + 1;
      bool blank = true;
      for (size_t k = from; k < open && blank; ++k)
        blank = src[k] == ' ' || src[k] == '\t';
      if (blank)
        text.erase(text.size() - std::min(open - from, text.size()));
    }
    if (!text.empty())
      pieces.push_back({Piece::Text, text, textOffset});
    std::string close = type == '{' ? "}}" : type == '%' ? "%}" : "#}";
    size_t end = src.find(close, open + 2);
    if (end == std::string::npos)
      throw TemplateError("unclosed '{" + std::string(1, type) + "' at offset " +
                          std::to_string(open));
    size_t innerBegin = open + 2 + (minusBefore || plusBefore ? 1 : 0);
    bool minusAfter = end > innerBegin && src[end - 1] == '-';
    bool plusAfter = end > innerBegin && src[end - 1] == '+';
    std::string inner = src.substr(innerBegin, end - innerBegin - (minusAfter || plusAfter));
    if (type == '{')
      pieces.push_back({Piece::Output, inner, open});
    else if (type == '%')
      pieces.push_back({Piece::Statement, inner, open});
    stripNextWhitespace = minusAfter;
    trimNextNewline = type != '{' && !plusAfter;
    pos = end + 2;
  }
  return pieces;
}

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

struct Token {
  enum Kind { Name, Number, Str, Op, End } kind;
  std::string text;
  int64_t number = 0;
};

std::vector<Token> tokenize(const std::string &s, size_t offset) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_'))
        ++j;
      out.push_back({Token::Name, s.substr(i, j - i)});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j])))
        ++j;
      if (j < s.size() && s[j] == '.' && j + 1 < s.size() &&
          std::isdigit(static_cast<unsigned char>(s[j + 1])))
        throw TemplateError("floating-point numbers are not supported (offset " +
                            std::to_string(offset) + ")");
      Token t{Token::Number, s.substr(i, j - i)};
      t.number = std::stoll(t.text);
      out.push_back(t);
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string text;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] == '\\' && j + 1 < s.size()) {
          char e = s[++j];
          text += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        } else {
          text += s[j];
        }
      }
      if (j >= s.size())
        throw TemplateError("unterminated string at offset " + std::to_string(offset));
      out.push_back({Token::Str, text});
      i = j + 1;
    } else {
      static const char *const two[] = {"==", "!=", "<=", ">=", "//", "**"};
      std::string op(1, c);
      for (const char *t : two)
        if (s.compare(i, 2, t) == 0)
          op = t;
      if (op.size() == 1 && !std::strchr("+-*/%~|.,:()[]{}<>=!", c))
        throw TemplateError(std::string("unexpected '") + c + "' at offset " +
                            std::to_string(offset));
      out.push_back({Token::Op, op});
      i += op.size();
    }
  }
  out.push_back({Token::End, ""});
  return out;
}

struct Expr {
  enum Kind { Literal, Name, ListLit, DictLit, Subscript, Slice, Attr, Call, Filter, Test,
              Unary, Binary, Cond } kind;
  Value value;      // Literal
  std::string name; // Name, Attr, Filter, Test, operator
  bool negate = false;
  std::vector<std::unique_ptr<Expr>> args; // operands, call/filter arguments
  std::vector<std::string> keywords;       // names of keyword arguments (Call)
};
using ExprPtr = std::unique_ptr<Expr>;

ExprPtr node(Expr::Kind kind, std::string name = {}) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->name = std::move(name);
  return e;
}

class ExprParser {
public:
  ExprParser(std::vector<Token> tokens, size_t offset) : t(std::move(tokens)), offset(offset) {}

  ExprPtr parse() {
    enter();
    ExprPtr e = conditional();
    --depth;
    return e;
  }
  /// An expression without a trailing inline `if` (a for loop's iterable,
  /// where `if` would start a loop filter).
  ExprPtr parseNoConditional() { return orExpr(); }
  bool atEnd() const { return t[p].kind == Token::End; }
  const Token &peek() const { return t[p]; }
  bool acceptName(const char *name) {
    if (t[p].kind == Token::Name && t[p].text == name) {
      ++p;
      return true;
    }
    return false;
  }
  bool acceptOp(const char *op) {
    if (t[p].kind == Token::Op && t[p].text == op) {
      ++p;
      return true;
    }
    return false;
  }
  void expectOp(const char *op) {
    if (!acceptOp(op))
      fail(std::string("expected '") + op + "'");
  }
  std::string expectName() {
    if (t[p].kind != Token::Name)
      fail("expected a name");
    return t[p++].text;
  }
  [[noreturn]] void fail(const std::string &what) const {
    throw TemplateError(what + " near '" + t[p].text + "' (offset " + std::to_string(offset) +
                        ")");
  }

private:
  ExprPtr conditional() {
    ExprPtr value = orExpr();
    if (acceptName("if")) {
      auto e = node(Expr::Cond);
      e->args.push_back(orExpr());
      e->args.push_back(std::move(value));
      e->args.push_back(acceptName("else") ? orExpr() : nullptr);
      return e;
    }
    return value;
  }
  ExprPtr orExpr() {
    ExprPtr left = andExpr();
    while (acceptName("or"))
      left = binary("or", std::move(left), andExpr());
    return left;
  }
  ExprPtr andExpr() {
    ExprPtr left = notExpr();
    while (acceptName("and"))
      left = binary("and", std::move(left), notExpr());
    return left;
  }
  ExprPtr notExpr() {
    if (acceptName("not")) {
      enter();
      auto e = node(Expr::Unary, "not");
      e->args.push_back(notExpr());
      --depth;
      return e;
    }
    return comparison();
  }
  ExprPtr comparison() {
    ExprPtr left = concat();
    for (;;) {
      if (t[p].kind == Token::Op &&
          (t[p].text == "==" || t[p].text == "!=" || t[p].text == "<" || t[p].text == ">" ||
           t[p].text == "<=" || t[p].text == ">=")) {
        std::string op = t[p++].text;
        left = binary(op, std::move(left), concat());
      } else if (acceptName("in")) {
        left = binary("in", std::move(left), concat());
      } else if (t[p].kind == Token::Name && t[p].text == "not" && t[p + 1].kind == Token::Name &&
                 t[p + 1].text == "in") {
        p += 2;
        auto e = node(Expr::Unary, "not");
        e->args.push_back(binary("in", std::move(left), concat()));
        left = std::move(e);
      } else if (acceptName("is")) {
        count();
        auto e = node(Expr::Test);
        e->negate = acceptName("not");
        e->name = expectName();
        e->args.push_back(std::move(left));
        if (t[p].kind == Token::Number || t[p].kind == Token::Str)
          e->args.push_back(primary());
        left = std::move(e);
      } else {
        return left;
      }
    }
  }
  ExprPtr concat() {
    ExprPtr left = additive();
    while (acceptOp("~"))
      left = binary("~", std::move(left), additive());
    return left;
  }
  ExprPtr additive() {
    ExprPtr left = multiplicative();
    while (t[p].kind == Token::Op && (t[p].text == "+" || t[p].text == "-")) {
      std::string op = t[p++].text;
      left = binary(op, std::move(left), multiplicative());
    }
    return left;
  }
  ExprPtr multiplicative() {
    ExprPtr left = unary();
    while (t[p].kind == Token::Op &&
           (t[p].text == "*" || t[p].text == "/" || t[p].text == "//" || t[p].text == "%")) {
      std::string op = t[p++].text;
      left = binary(op, std::move(left), unary());
    }
    return left;
  }
  ExprPtr unary() {
    if (acceptOp("-")) {
      enter();
      auto e = node(Expr::Unary, "-");
      e->args.push_back(unary());
      --depth;
      return e;
    }
    return postfix();
  }
  ExprPtr postfix() {
    ExprPtr e = primary();
    for (;; count()) {
      if (acceptOp(".")) {
        auto a = node(Expr::Attr, expectName());
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (acceptOp("[")) {
        ExprPtr first = acceptOp(":") ? nullptr : parse();
        if (first && !acceptOp(":")) {
          expectOp("]");
          auto s = node(Expr::Subscript);
          s->args.push_back(std::move(e));
          s->args.push_back(std::move(first));
          e = std::move(s);
          continue;
        }
        // A slice [a:b] or [a:] or [:b] (no step).
        auto s = node(Expr::Slice);
        s->args.push_back(std::move(e));
        s->args.push_back(std::move(first));
        s->args.push_back(peek().kind == Token::Op && peek().text == "]" ? nullptr : parse());
        expectOp("]");
        e = std::move(s);
      } else if (acceptOp("(")) {
        auto c = node(Expr::Call);
        c->args.push_back(std::move(e));
        arguments(*c);
        e = std::move(c);
      } else if (acceptOp("|")) {
        auto f = node(Expr::Filter, expectName());
        f->args.push_back(std::move(e));
        if (acceptOp("("))
          arguments(*f);
        e = std::move(f);
      } else {
        return e;
      }
    }
  }
  void arguments(Expr &call) {
    if (acceptOp(")"))
      return;
    do {
      if (t[p].kind == Token::Name && t[p + 1].kind == Token::Op && t[p + 1].text == "=") {
        call.keywords.push_back(t[p].text);
        p += 2;
      } else if (!call.keywords.empty()) {
        fail("a positional argument after a keyword argument");
      }
      call.args.push_back(parse());
    } while (acceptOp(","));
    expectOp(")");
  }
  ExprPtr primary() {
    const Token &tok = t[p];
    if (tok.kind == Token::Number) {
      ++p;
      auto e = node(Expr::Literal);
      e->value = Value::integer(tok.number);
      return e;
    }
    if (tok.kind == Token::Str) {
      std::string text;
      while (t[p].kind == Token::Str) // adjacent literals concatenate
        text += t[p++].text;
      auto e = node(Expr::Literal);
      e->value = Value::string(text);
      return e;
    }
    if (tok.kind == Token::Name) {
      ++p;
      auto e = node(Expr::Literal);
      if (tok.text == "true" || tok.text == "True")
        e->value = Value::boolean(true);
      else if (tok.text == "false" || tok.text == "False")
        e->value = Value::boolean(false);
      else if (tok.text == "none" || tok.text == "None")
        e->value = Value::none();
      else
        return node(Expr::Name, tok.text);
      return e;
    }
    if (acceptOp("(")) {
      ExprPtr e = parse();
      expectOp(")");
      return e;
    }
    if (acceptOp("[")) {
      auto e = node(Expr::ListLit);
      if (!acceptOp("]")) {
        do
          e->args.push_back(parse());
        while (acceptOp(","));
        expectOp("]");
      }
      return e;
    }
    if (acceptOp("{")) {
      auto e = node(Expr::DictLit);
      if (!acceptOp("}")) {
        do {
          e->args.push_back(parse());
          expectOp(":");
          e->args.push_back(parse());
        } while (acceptOp(","));
        expectOp("}");
      }
      return e;
    }
    fail("expected an expression");
  }
  /// A template is input: bound the recursion a hostile one could ask for
  /// (the caller decrements `depth` when the nested part is parsed).
  void enter() {
    if (++depth > kMaxDepth)
      fail("expressions nested more than " + std::to_string(kMaxDepth) + " deep");
  }
  /// Long operator chains make deep trees that evaluation recurses into.
  void count() {
    if (++operations > kMaxOperations)
      fail("an expression with more than " + std::to_string(kMaxOperations) + " operations");
  }
  ExprPtr binary(std::string op, ExprPtr a, ExprPtr b) {
    count();
    auto e = node(Expr::Binary, std::move(op));
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  static constexpr int kMaxDepth = 100;
  static constexpr int kMaxOperations = 1000;
  std::vector<Token> t;
  size_t p = 0;
  size_t offset;
  int depth = 0;
  int operations = 0;
};

//===----------------------------------------------------------------------===//
// Statements
//===----------------------------------------------------------------------===//

struct Stmt {
  enum Kind { Text, Output, If, For, Set, Break, Continue };
  explicit Stmt(Kind kind) : kind(kind) {}
  Kind kind;
  std::string text;
  ExprPtr expr;                                                // Output, Set value, For iterable
  std::vector<std::pair<ExprPtr, std::vector<Stmt>>> branches; // If (null: else)
  std::vector<std::string> targets;                            // For variables, Set target
  std::string attribute;                                       // Set ns.attribute
  std::vector<Stmt> body, elseBody;                            // For
};

class TemplateParser {
public:
  explicit TemplateParser(std::vector<Piece> pieces) : pieces(std::move(pieces)) {}

  std::vector<Stmt> parseAll() {
    std::string stop;
    std::vector<Stmt> out = block({}, stop);
    return out;
  }

private:
  /// Statements until one of `stops` (returned in `stop`, its parser in
  /// `stopParser`), or the end when `stops` is empty.
  std::vector<Stmt> block(const std::vector<std::string> &stops, std::string &stop) {
    struct Depth {
      int &d;
      explicit Depth(int &d) : d(d) {
        if (++d > 100)
          throw TemplateError("blocks nested more than 100 deep");
      }
      ~Depth() { --d; }
    } guard(depth);
    std::vector<Stmt> out;
    while (i < pieces.size()) {
      const Piece &piece = pieces[i++];
      if (piece.kind == Piece::Text) {
        Stmt s(Stmt::Text);
        s.text = piece.text;
        out.push_back(std::move(s));
        continue;
      }
      ExprParser ep(tokenize(piece.text, piece.offset), piece.offset);
      if (piece.kind == Piece::Output) {
        Stmt s(Stmt::Output);
        s.expr = ep.parse();
        if (!ep.atEnd())
          ep.fail("unexpected text in {{ }}");
        out.push_back(std::move(s));
        continue;
      }
      std::string keyword = ep.expectName();
      if (std::find(stops.begin(), stops.end(), keyword) != stops.end()) {
        stop = keyword;
        stopParser = std::make_unique<ExprParser>(std::move(ep));
        return out;
      }
      if (keyword == "if") {
        Stmt s(Stmt::If);
        ExprPtr cond = ep.parse();
        for (;;) {
          std::string next;
          std::vector<Stmt> body = block({"elif", "else", "endif"}, next);
          s.branches.emplace_back(std::move(cond), std::move(body));
          if (next == "elif") {
            cond = stopParser->parse();
          } else if (next == "else") {
            std::string end;
            std::vector<Stmt> elseBody = block({"endif"}, end);
            if (end != "endif")
              throw TemplateError("{% if %} at offset " + std::to_string(piece.offset) +
                                  " has no {% endif %}");
            s.branches.emplace_back(nullptr, std::move(elseBody));
            break;
          } else if (next == "endif") {
            break;
          } else {
            throw TemplateError("{% if %} at offset " + std::to_string(piece.offset) +
                                " has no {% endif %}");
          }
        }
        out.push_back(std::move(s));
      } else if (keyword == "for") {
        Stmt s(Stmt::For);
        do
          s.targets.push_back(ep.expectName());
        while (ep.acceptOp(","));
        if (!ep.acceptName("in"))
          ep.fail("expected 'in'");
        s.expr = ep.parseNoConditional();
        if (!ep.atEnd())
          ep.fail("unsupported in {% for %} (loop filters and recursive loops are not "
                  "implemented)");
        std::string next;
        s.body = block({"else", "endfor"}, next);
        if (next == "else") {
          s.elseBody = block({"endfor"}, next);
        }
        if (next != "endfor")
          throw TemplateError("{% for %} at offset " + std::to_string(piece.offset) +
                              " has no {% endfor %}");
        out.push_back(std::move(s));
      } else if (keyword == "set") {
        Stmt s(Stmt::Set);
        s.targets.push_back(ep.expectName());
        if (ep.acceptOp("."))
          s.attribute = ep.expectName();
        if (!ep.acceptOp("="))
          ep.fail("{% set %} blocks are not supported; expected '='");
        s.expr = ep.parse();
        out.push_back(std::move(s));
      } else if (keyword == "break" || keyword == "continue") {
        out.push_back(Stmt(keyword == "break" ? Stmt::Break : Stmt::Continue));
      } else if (keyword == "generation" || keyword == "endgeneration") {
        // transformers' AssistantTracker markers: no text of their own.
      } else {
        throw TemplateError("unsupported statement {% " + keyword + " %} at offset " +
                            std::to_string(piece.offset));
      }
    }
    if (!stops.empty())
      stop.clear();
    return out;
  }

  std::vector<Piece> pieces;
  size_t i = 0;
  int depth = 0;
  std::unique_ptr<ExprParser> stopParser;
};

//===----------------------------------------------------------------------===//
// Evaluation
//===----------------------------------------------------------------------===//

enum class Flow { Normal, Break, Continue };

class Renderer {
public:
  explicit Renderer(std::string &out) : out(out) { scopes.emplace_back(); }
  /// A namespace can be stored into itself ({% set ns.self = ns %}); the
  /// cycle is broken here so that it is freed.
  ~Renderer() {
    for (const std::shared_ptr<Dict> &ns : namespaces)
      ns->clear();
  }

  void define(const std::string &name, Value v) { scopes.front()[name] = std::move(v); }

  Flow run(const std::vector<Stmt> &stmts) {
    for (const Stmt &s : stmts) {
      Flow flow = run(s);
      if (flow != Flow::Normal)
        return flow;
    }
    return Flow::Normal;
  }

private:
  /// A template is input: bound its work and its output, so that a hostile
  /// one (nested loops over range(1000000)) ends in an error, not a hang.
  void step() {
    if (++steps > kMaxSteps)
      throw TemplateError("the template did not finish within " + std::to_string(kMaxSteps) +
                          " steps");
    if (out.size() > kMaxOutputBytes)
      throw TemplateError("the template's output passed " + std::to_string(kMaxOutputBytes) +
                          " bytes");
  }

  Flow run(const Stmt &s) {
    step();
    switch (s.kind) {
    case Stmt::Text:
      out += s.text;
      return Flow::Normal;
    case Stmt::Output:
      out += str(eval(*s.expr));
      return Flow::Normal;
    case Stmt::If:
      for (const auto &[cond, body] : s.branches)
        if (!cond || eval(*cond).truthy())
          return run(body);
      return Flow::Normal;
    case Stmt::Set: {
      Value v = eval(*s.expr);
      if (s.attribute.empty()) {
        scopes.back()[s.targets[0]] = std::move(v);
        return Flow::Normal;
      }
      Value ns = lookup(s.targets[0]);
      if (ns.kind != Value::DictKind)
        throw TemplateError("{% set " + s.targets[0] + "." + s.attribute +
                            " %}: '" + s.targets[0] + "' is not a namespace");
      for (auto &[k, existing] : *ns.dict)
        if (k == s.attribute) {
          existing = std::move(v);
          return Flow::Normal;
        }
      ns.dict->emplace_back(s.attribute, std::move(v));
      return Flow::Normal;
    }
    case Stmt::For:
      return runFor(s);
    case Stmt::Break:
      return Flow::Break;
    case Stmt::Continue:
      return Flow::Continue;
    }
    return Flow::Normal;
  }

  Flow runFor(const Stmt &s) {
    Value seq = eval(*s.expr);
    List items;
    if (seq.kind == Value::ListKind)
      items = *seq.list;
    else if (seq.kind == Value::DictKind)
      for (const auto &[k, v] : *seq.dict)
        items.push_back(Value::string(k));
    else if (seq.kind == Value::String)
      for (std::string &c : characters(seq.s))
        items.push_back(Value::string(std::move(c)));
    else if (seq.kind != Value::Undefined && seq.kind != Value::None)
      throw TemplateError("{% for %} over a value that is not a sequence");
    if (items.empty()) {
      run(s.elseBody);
      return Flow::Normal;
    }
    scopes.emplace_back();
    int64_t n = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < n; ++k) {
      step();
      auto &scope = scopes.back();
      scope.clear();
      if (s.targets.size() == 1) {
        scope[s.targets[0]] = items[k];
      } else {
        const Value &item = items[k];
        if (item.kind != Value::ListKind || item.list->size() != s.targets.size())
          throw TemplateError("{% for %} cannot unpack an item into " +
                              std::to_string(s.targets.size()) + " names");
        for (size_t t = 0; t < s.targets.size(); ++t)
          scope[s.targets[t]] = (*item.list)[t];
      }
      scope["loop"] = Value::dictOf({{"index", Value::integer(k + 1)},
                                     {"index0", Value::integer(k)},
                                     {"revindex", Value::integer(n - k)},
                                     {"revindex0", Value::integer(n - k - 1)},
                                     {"first", Value::boolean(k == 0)},
                                     {"last", Value::boolean(k == n - 1)},
                                     {"length", Value::integer(n)}});
      Flow flow = run(s.body);
      if (flow == Flow::Break)
        break;
    }
    scopes.pop_back();
    return Flow::Normal;
  }

  Value lookup(const std::string &name) const {
    for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end())
        return found->second;
    }
    return Value();
  }

  static int64_t integer(const Value &v, const char *what) {
    if (v.kind == Value::Int)
      return v.i;
    if (v.kind == Value::Bool)
      return v.b;
    throw TemplateError(std::string(what) + " needs an integer");
  }

  Value eval(const Expr &e) {
    step();
    switch (e.kind) {
    case Expr::Literal:
      return e.value;
    case Expr::Name:
      return lookup(e.name);
    case Expr::ListLit: {
      List items;
      for (const auto &a : e.args)
        items.push_back(eval(*a));
      return Value::listOf(std::move(items));
    }
    case Expr::DictLit: {
      Dict items;
      for (size_t k = 0; k + 1 < e.args.size(); k += 2)
        items.emplace_back(str(eval(*e.args[k])), eval(*e.args[k + 1]));
      return Value::dictOf(std::move(items));
    }
    case Expr::Attr: {
      Value base = eval(*e.args[0]);
      if (const Value *v = base.find(e.name))
        return *v;
      return Value();
    }
    case Expr::Subscript:
      return subscript(eval(*e.args[0]), eval(*e.args[1]));
    case Expr::Slice:
      return slice(eval(*e.args[0]), e.args[1] ? std::optional<Value>(eval(*e.args[1])) : std::nullopt,
                   e.args[2] ? std::optional<Value>(eval(*e.args[2])) : std::nullopt);
    case Expr::Call:
      return call(e);
    case Expr::Filter:
      return filter(e);
    case Expr::Test:
      return Value::boolean(test(e) != e.negate);
    case Expr::Unary: {
      Value v = eval(*e.args[0]);
      if (e.name == "not")
        return Value::boolean(!v.truthy());
      return Value::integer(-integer(v, "unary '-'"));
    }
    case Expr::Cond: {
      if (eval(*e.args[0]).truthy())
        return eval(*e.args[1]);
      return e.args[2] ? eval(*e.args[2]) : Value();
    }
    case Expr::Binary:
      return binary(e);
    }
    return Value();
  }

  Value subscript(const Value &base, const Value &key) {
    if (base.kind == Value::DictKind) {
      const Value *v = base.find(str(key));
      return v ? *v : Value();
    }
    if (base.kind == Value::ListKind || base.kind == Value::String) {
      std::vector<std::string> chars =
          base.kind == Value::String ? characters(base.s) : std::vector<std::string>();
      int64_t n = base.kind == Value::ListKind ? base.list->size() : chars.size();
      int64_t k = integer(key, "an index");
      if (k < 0)
        k += n;
      if (k < 0 || k >= n)
        return Value();
      return base.kind == Value::ListKind ? (*base.list)[k] : Value::string(chars[k]);
    }
    return Value();
  }

  Value slice(const Value &base, std::optional<Value> from, std::optional<Value> to) {
    if (base.kind != Value::ListKind && base.kind != Value::String)
      throw TemplateError("slicing a value that is not a list or string");
    std::vector<std::string> chars =
        base.kind == Value::String ? characters(base.s) : std::vector<std::string>();
    int64_t n = base.kind == Value::ListKind ? base.list->size() : chars.size();
    auto clamp = [&](std::optional<Value> v, int64_t fallback) {
      if (!v || v->kind == Value::None)
        return fallback;
      int64_t k = integer(*v, "a slice bound");
      if (k < 0)
        k += n;
      return std::clamp<int64_t>(k, 0, n);
    };
    int64_t a = clamp(from, 0), b = clamp(to, n);
    if (b < a)
      b = a;
    if (base.kind == Value::String) {
      std::string r;
      for (int64_t k = a; k < b; ++k)
        r += chars[k];
      return Value::string(r);
    }
    return Value::listOf(List(base.list->begin() + a, base.list->begin() + b));
  }

  Value binary(const Expr &e) {
    const std::string &op = e.name;
    if (op == "and") {
      Value a = eval(*e.args[0]);
      return a.truthy() ? eval(*e.args[1]) : a;
    }
    if (op == "or") {
      Value a = eval(*e.args[0]);
      return a.truthy() ? a : eval(*e.args[1]);
    }
    Value a = eval(*e.args[0]), b = eval(*e.args[1]);
    auto bounded = [](std::string text) {
      if (text.size() > kMaxOutputBytes)
        throw TemplateError("a string longer than " + std::to_string(kMaxOutputBytes) +
                            " bytes");
      return Value::string(std::move(text));
    };
    if (op == "~")
      return bounded(str(a) + str(b));
    if (op == "==")
      return Value::boolean(equal(a, b));
    if (op == "!=")
      return Value::boolean(!equal(a, b));
    if (op == "in") {
      if (b.kind == Value::String)
        return Value::boolean(b.s.find(str(a)) != std::string::npos);
      if (b.kind == Value::ListKind)
        return Value::boolean(std::any_of(b.list->begin(), b.list->end(),
                                          [&](const Value &v) { return equal(a, v); }));
      if (b.kind == Value::DictKind)
        return Value::boolean(b.find(str(a)) != nullptr);
      throw TemplateError("'in' needs a string, list or mapping on its right");
    }
    if (op == "+") {
      if (a.kind == Value::String && b.kind == Value::String)
        return bounded(a.s + b.s);
      if (a.kind == Value::ListKind && b.kind == Value::ListKind) {
        if (a.list->size() + b.list->size() > 1000000)
          throw TemplateError("a list longer than 1000000 items");
        List items = *a.list;
        items.insert(items.end(), b.list->begin(), b.list->end());
        return Value::listOf(std::move(items));
      }
      if (a.kind == Value::String || b.kind == Value::String)
        throw TemplateError("'+' between a string and a " +
                            std::string(a.kind == Value::String ? "non-string" : "string") +
                            " (use '~' to join as text)");
      return Value::integer(integer(a, "'+'") + integer(b, "'+'"));
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int cmp;
      if (a.kind == Value::String && b.kind == Value::String)
        cmp = a.s.compare(b.s);
      else {
        int64_t x = integer(a, "a comparison"), y = integer(b, "a comparison");
        cmp = x < y ? -1 : x > y ? 1 : 0;
      }
      return Value::boolean(op == "<" ? cmp < 0 : op == ">" ? cmp > 0 : op == "<=" ? cmp <= 0
                                                                                  : cmp >= 0);
    }
    if (op == "*" && a.kind == Value::String) {
      int64_t times = integer(b, "'*'");
      if (times > 0 && a.s.size() * uint64_t(times) > kMaxOutputBytes)
        throw TemplateError("a string longer than " + std::to_string(kMaxOutputBytes) +
                            " bytes");
      std::string r;
      for (int64_t k = 0; k < times; ++k)
        r += a.s;
      return Value::string(r);
    }
    int64_t x = integer(a, ("'" + op + "'").c_str()), y = integer(b, ("'" + op + "'").c_str());
    if (op == "-")
      return Value::integer(x - y);
    if (op == "*")
      return Value::integer(x * y);
    if (y == 0)
      throw TemplateError("division by zero");
    if (op == "%")
      return Value::integer(((x % y) + y) % y);
    if (op == "//")
      return Value::integer(x / y - ((x % y != 0) && ((x < 0) != (y < 0))));
    throw TemplateError("'" + op + "' is not supported (no floating point)");
  }

  bool test(const Expr &e) {
    Value v = eval(*e.args[0]);
    const std::string &name = e.name;
    if (name == "defined")
      return v.kind != Value::Undefined;
    if (name == "undefined")
      return v.kind == Value::Undefined;
    if (name == "none")
      return v.kind == Value::None;
    if (name == "string")
      return v.kind == Value::String;
    if (name == "number" || name == "integer")
      return v.kind == Value::Int;
    if (name == "boolean")
      return v.kind == Value::Bool;
    if (name == "mapping")
      return v.kind == Value::DictKind;
    if (name == "sequence" || name == "iterable")
      return v.kind == Value::ListKind || v.kind == Value::String || v.kind == Value::DictKind;
    if (name == "true")
      return v.kind == Value::Bool && v.b;
    if (name == "false")
      return v.kind == Value::Bool && !v.b;
    if (name == "even" || name == "odd")
      return (integer(v, "'is even'") % 2 == 0) == (name == "even");
    if (name == "divisibleby" && e.args.size() == 2)
      return integer(v, "divisibleby") % integer(eval(*e.args[1]), "divisibleby") == 0;
    throw TemplateError("unsupported test 'is " + name + "'");
  }

  Value filter(const Expr &e) {
    Value v = eval(*e.args[0]);
    const std::string &name = e.name;
    auto arg = [&](size_t k) { return k + 1 < e.args.size() ? eval(*e.args[k + 1]) : Value(); };
    if (name == "trim")
      return Value::string(strip(str(v), std::nullopt, true, true));
    if (name == "length" || name == "count") {
      if (v.kind == Value::String)
        return Value::integer(characters(v.s).size());
      if (v.kind == Value::ListKind)
        return Value::integer(v.list->size());
      if (v.kind == Value::DictKind)
        return Value::integer(v.dict->size());
      return Value::integer(0);
    }
    if (name == "upper")
      return Value::string(toUpper(str(v)));
    if (name == "lower")
      return Value::string(toLower(str(v)));
    if (name == "capitalize") {
      std::vector<std::string> chars = characters(str(v));
      std::string r;
      for (size_t k = 0; k < chars.size(); ++k)
        r += k ? toLower(chars[k]) : toUpper(chars[k]);
      return Value::string(r);
    }
    if (name == "string")
      return Value::string(str(v));
    if (name == "tojson")
      return Value::string(json(v));
    if (name == "default" || name == "d")
      return v.kind == Value::Undefined ? arg(0) : v;
    if (name == "first" || name == "last") {
      if (v.kind == Value::ListKind && !v.list->empty())
        return name == "first" ? v.list->front() : v.list->back();
      std::vector<std::string> chars = characters(str(v));
      if (v.kind == Value::String && !chars.empty())
        return Value::string(name == "first" ? chars.front() : chars.back());
      return Value();
    }
    if (name == "join") {
      if (v.kind != Value::ListKind)
        throw TemplateError("'join' needs a list");
      std::string sep = e.args.size() > 1 ? str(arg(0)) : "";
      std::string r;
      for (size_t k = 0; k < v.list->size(); ++k)
        r += (k ? sep : "") + str((*v.list)[k]);
      return Value::string(r);
    }
    if (name == "list") {
      if (v.kind == Value::ListKind)
        return v;
      List items;
      for (std::string &c : characters(str(v)))
        items.push_back(Value::string(std::move(c)));
      return Value::listOf(items);
    }
    if (name == "reverse" && v.kind == Value::ListKind) {
      List items(v.list->rbegin(), v.list->rend());
      return Value::listOf(items);
    }
    throw TemplateError("unsupported filter '| " + name + "'");
  }

  Value call(const Expr &e) {
    const Expr &callee = *e.args[0];
    std::vector<Value> args;
    for (size_t k = 1; k < e.args.size(); ++k)
      args.push_back(eval(*e.args[k]));
    size_t positional = args.size() - e.keywords.size();
    if (callee.kind == Expr::Name) {
      if (callee.name == "raise_exception")
        throw TemplateError("the template raised: " + (args.empty() ? "" : str(args[0])));
      if (callee.name == "range" && positional >= 1 && positional <= 2) {
        int64_t a = positional == 2 ? integer(args[0], "range") : 0;
        int64_t b = integer(args[positional - 1], "range");
        if (b - a > 100000)
          throw TemplateError("range() of more than 100000 numbers");
        List items;
        for (int64_t k = a; k < b; ++k)
          items.push_back(Value::integer(k));
        return Value::listOf(items);
      }
      if (callee.name == "namespace") {
        Dict fields;
        for (size_t k = 0; k < e.keywords.size(); ++k)
          fields.emplace_back(e.keywords[k], args[positional + k]);
        Value ns = Value::dictOf(fields);
        namespaces.push_back(ns.dict);
        return ns;
      }
      throw TemplateError("unsupported function '" + callee.name + "()'");
    }
    if (callee.kind == Expr::Attr) {
      Value self = eval(*callee.args[0]);
      const std::string &m = callee.name;
      if (self.kind == Value::String) {
        const std::string &s = self.s;
        std::optional<std::string> chars =
            positional && args[0].kind != Value::None ? std::optional(str(args[0])) : std::nullopt;
        if (m == "strip")
          return Value::string(strip(s, chars, true, true));
        if (m == "lstrip")
          return Value::string(strip(s, chars, true, false));
        if (m == "rstrip")
          return Value::string(strip(s, chars, false, true));
        if (m == "startswith" && positional == 1)
          return Value::boolean(s.rfind(str(args[0]), 0) == 0);
        if (m == "endswith" && positional == 1) {
          std::string t = str(args[0]);
          return Value::boolean(s.size() >= t.size() &&
                                s.compare(s.size() - t.size(), t.size(), t) == 0);
        }
        if (m == "upper")
          return Value::string(toUpper(s));
        if (m == "lower")
          return Value::string(toLower(s));
        if (m == "replace" && positional == 2) {
          std::string from = str(args[0]), to = str(args[1]), r;
          if (from.empty())
            return self;
          size_t at = 0, hit;
          while ((hit = s.find(from, at)) != std::string::npos) {
            r += s.substr(at, hit - at) + to;
            at = hit + from.size();
          }
          return Value::string(r + s.substr(at));
        }
        if (m == "split") {
          List parts;
          std::string sep = positional ? str(args[0]) : " ";
          size_t at = 0, hit;
          while (!sep.empty() && (hit = s.find(sep, at)) != std::string::npos) {
            parts.push_back(Value::string(s.substr(at, hit - at)));
            at = hit + sep.size();
          }
          parts.push_back(Value::string(s.substr(at)));
          return Value::listOf(parts);
        }
      }
      if (self.kind == Value::DictKind) {
        if (m == "items" || m == "keys" || m == "values") {
          List items;
          for (const auto &[k, v] : *self.dict)
            items.push_back(m == "items"  ? Value::listOf({Value::string(k), v})
                            : m == "keys" ? Value::string(k)
                                          : v);
          return Value::listOf(items);
        }
        if (m == "get" && positional >= 1) {
          const Value *v = self.find(str(args[0]));
          return v ? *v : positional == 2 ? args[1] : Value::none();
        }
      }
      throw TemplateError("unsupported method '." + m + "()'");
    }
    throw TemplateError("calling something that is not a function");
  }

  static constexpr uint64_t kMaxSteps = 5'000'000;
  static constexpr size_t kMaxOutputBytes = size_t(64) << 20;
  std::string &out;
  std::vector<std::map<std::string, Value>> scopes;
  std::vector<std::shared_ptr<Dict>> namespaces;
  uint64_t steps = 0;
};

} // namespace

bool renderChatTemplate(const std::string &source, const ChatTemplateInputs &inputs,
                        std::string &out, std::string &error) {
  try {
    std::vector<Stmt> program = TemplateParser(splitTemplate(source)).parseAll();
    out.clear();
    Renderer renderer(out);
    List messages;
    for (const ChatMessage &m : inputs.messages)
      messages.push_back(Value::dictOf(
          {{"role", Value::string(m.role)}, {"content", Value::string(m.content)}}));
    renderer.define("messages", Value::listOf(messages));
    renderer.define("add_generation_prompt", Value::boolean(inputs.addGenerationPrompt));
    renderer.define("bos_token", Value::string(inputs.bosToken));
    renderer.define("eos_token", Value::string(inputs.eosToken));
    renderer.run(program);
    return true;
  } catch (const TemplateError &e) {
    error = std::string("chat template: ") + e.what();
  } catch (const std::exception &e) {
    error = std::string("chat template: ") + e.what();
  }
  return false;
}

} // namespace hasten::tokenizer
