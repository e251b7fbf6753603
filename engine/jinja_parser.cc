#include "engine/jinja_parser.h"

#include <charconv>
#include <cstdlib>
#include <initializer_list>

#include "common/status.h"
#include "engine/jinja_builtins.h"
#include "engine/jinja_lexer.h"

namespace strata::engine::jinja {
namespace {

using ExprPtr = std::unique_ptr<Expr>;

// Deeper nesting than this is not a real template; the cap keeps parser recursion (and the
// evaluator's, which mirrors the tree) far from the stack limit.
constexpr int kMaxNesting = 200;

ExprPtr MakeExpr(ExprKind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

Stmt MakeStmt(StmtKind kind, int line) {
  Stmt s;
  s.kind = kind;
  s.line = line;
  return s;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<Body> ParseAll() {
    std::string end_tag;
    ASSIGN_OR_RETURN(Body body, ParseBody({}, &end_tag));
    if (!end_tag.empty()) return Error(StrCat("unexpected tag '", end_tag, "'"));
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& Cur() const { return tokens_[pos_]; }
  const Token& Peek(size_t k) const {
    return tokens_[std::min(pos_ + k, tokens_.size() - 1)];
  }
  void Next() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool IsOp(std::string_view op) const { return Cur().type == TokenType::kOp && Cur().text == op; }
  bool IsName(std::string_view name) const {
    return Cur().type == TokenType::kName && Cur().text == name;
  }
  bool AcceptOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool AcceptName(std::string_view name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }
  std::string Describe(const Token& t) const {
    switch (t.type) {
      case TokenType::kEof: return "end of template";
      case TokenType::kBlockEnd: return "'%}'";
      case TokenType::kVarEnd: return "'}}'";
      case TokenType::kData: return "template text";
      case TokenType::kString: return "string literal";
      default: return StrCat("'", t.text, "'");
    }
  }
  absl::Status Error(std::string_view message) const { return ErrorAt(Cur().line, message); }
  absl::Status ErrorAt(int line, std::string_view message) const {
    return absl::InvalidArgumentError(StrCat("chat template line ", line, ": ", message));
  }
  absl::Status ExpectOp(std::string_view op) {
    if (AcceptOp(op)) return absl::OkStatus();
    return Error(StrCat("expected '", op, "', got ", Describe(Cur())));
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Cur().type != TokenType::kName) {
      return Error(StrCat("expected a name, got ", Describe(Cur())));
    }
    std::string name = Cur().text;
    Next();
    return name;
  }
  absl::Status ExpectBlockEnd() {
    if (Cur().type == TokenType::kBlockEnd) {
      Next();
      return absl::OkStatus();
    }
    return Error(StrCat("expected '%}', got ", Describe(Cur())));
  }

  // ---- statements ----

  // Parses until EOF or a block tag named in `end_tags`; that tag's name goes to *end_tag and
  // the parser stays right after its name.
  absl::StatusOr<Body> ParseBody(std::initializer_list<std::string_view> end_tags,
                                 std::string* end_tag) {
    Body body;
    end_tag->clear();
    while (Cur().type != TokenType::kEof) {
      if (Cur().type == TokenType::kData) {
        Stmt s = MakeStmt(StmtKind::kData, Cur().line);
        s.text = Cur().text;
        body.push_back(std::move(s));
        Next();
      } else if (Cur().type == TokenType::kVarBegin) {
        Stmt s = MakeStmt(StmtKind::kPrint, Cur().line);
        Next();
        ASSIGN_OR_RETURN(s.expr, ParseTuple(true));
        if (Cur().type != TokenType::kVarEnd) {
          return Error(StrCat("expected '}}', got ", Describe(Cur())));
        }
        Next();
        body.push_back(std::move(s));
      } else if (Cur().type == TokenType::kBlockBegin) {
        Next();
        if (Cur().type != TokenType::kName) return Error("expected a tag name after '{%'");
        for (std::string_view end : end_tags) {
          if (Cur().text == end) {
            *end_tag = Cur().text;
            Next();
            return body;
          }
        }
        ASSIGN_OR_RETURN(Stmt s, ParseTag());
        body.push_back(std::move(s));
      } else {
        return Error(StrCat("unexpected ", Describe(Cur())));
      }
    }
    return body;
  }

  absl::StatusOr<Stmt> ParseTag() {
    const std::string tag = Cur().text;
    const int line = Cur().line;
    if (++nesting_ > kMaxNesting) return Error("blocks nested too deeply");
    Next();
    absl::StatusOr<Stmt> result;
    if (tag == "if") result = ParseIf(line);
    else if (tag == "for") result = ParseFor(line);
    else if (tag == "set") result = ParseSet(line);
    else if (tag == "macro") result = ParseMacro(line);
    else if (tag == "with") result = ParseWith(line);
    else if (tag == "generation") result = ParseGeneration(line);
    else if (tag == "break" || tag == "continue") result = ParseLoopControl(tag, line);
    else if (tag.rfind("end", 0) == 0 || tag == "elif" || tag == "else") {
      result = ErrorAt(line, StrCat("unexpected tag '", tag, "'"));
    } else {
      result = ErrorAt(line, StrCat("unsupported tag '", tag, "'"));
    }
    --nesting_;
    return result;
  }

  absl::Status UnclosedError(std::string_view tag, std::string_view end, int line) const {
    return ErrorAt(line, StrCat("unclosed '", tag, "' block (expected '", end, "')"));
  }

  absl::StatusOr<Stmt> ParseIf(int line) {
    Stmt s = MakeStmt(StmtKind::kIf, line);
    ASSIGN_OR_RETURN(ExprPtr cond, ParseTuple(false));
    while (true) {
      RETURN_IF_ERROR(ExpectBlockEnd());
      std::string end;
      ASSIGN_OR_RETURN(Body body, ParseBody({"elif", "else", "endif"}, &end));
      s.branches.push_back({std::move(cond), std::move(body)});
      if (end.empty()) return UnclosedError("if", "endif", line);
      if (end == "endif") break;
      if (end == "else") {
        RETURN_IF_ERROR(ExpectBlockEnd());
        ASSIGN_OR_RETURN(Body else_body, ParseBody({"endif"}, &end));
        if (end.empty()) return UnclosedError("if", "endif", line);
        s.branches.push_back({nullptr, std::move(else_body)});
        break;
      }
      ASSIGN_OR_RETURN(cond, ParseTuple(false));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  absl::StatusOr<std::vector<std::string>> ParseTargets() {
    std::vector<std::string> names;
    const bool paren = AcceptOp("(");
    do {
      ASSIGN_OR_RETURN(std::string name, ExpectName());
      names.push_back(std::move(name));
    } while (AcceptOp(","));
    if (paren) RETURN_IF_ERROR(ExpectOp(")"));
    return names;
  }

  absl::StatusOr<Stmt> ParseFor(int line) {
    Stmt s = MakeStmt(StmtKind::kFor, line);
    ASSIGN_OR_RETURN(s.targets, ParseTargets());
    if (!AcceptName("in")) return Error(StrCat("expected 'in', got ", Describe(Cur())));
    ASSIGN_OR_RETURN(s.expr, ParseTuple(false));
    if (AcceptName("if")) {
      ASSIGN_OR_RETURN(s.filter, ParseTuple(false));
    }
    if (IsName("recursive")) return Error("unsupported for-loop option 'recursive'");
    RETURN_IF_ERROR(ExpectBlockEnd());
    std::string end;
    ASSIGN_OR_RETURN(s.body, ParseBody({"else", "endfor"}, &end));
    if (end == "else") {
      RETURN_IF_ERROR(ExpectBlockEnd());
      ASSIGN_OR_RETURN(s.else_body, ParseBody({"endfor"}, &end));
    }
    if (end.empty()) return UnclosedError("for", "endfor", line);
    RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  absl::StatusOr<Stmt> ParseSet(int line) {
    Stmt s = MakeStmt(StmtKind::kSet, line);
    ASSIGN_OR_RETURN(std::string first, ExpectName());
    if (AcceptOp(".")) {
      s.targets = {first};
      ASSIGN_OR_RETURN(s.text, ExpectName());
    } else {
      s.targets = {first};
      while (AcceptOp(",")) {
        ASSIGN_OR_RETURN(std::string name, ExpectName());
        s.targets.push_back(std::move(name));
      }
    }
    if (Cur().type == TokenType::kBlockEnd && s.targets.size() == 1 && s.text.empty()) {
      Next();
      s.kind = StmtKind::kSetBlock;
      std::string end;
      ASSIGN_OR_RETURN(s.body, ParseBody({"endset"}, &end));
      if (end.empty()) return UnclosedError("set", "endset", line);
      RETURN_IF_ERROR(ExpectBlockEnd());
      return s;
    }
    RETURN_IF_ERROR(ExpectOp("="));
    ASSIGN_OR_RETURN(s.expr, ParseTuple(true));
    RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  absl::StatusOr<Stmt> ParseMacro(int line) {
    Stmt s = MakeStmt(StmtKind::kMacro, line);
    ASSIGN_OR_RETURN(std::string name, ExpectName());
    s.targets = {name};
    RETURN_IF_ERROR(ExpectOp("("));
    while (!AcceptOp(")")) {
      if (!s.params.empty()) RETURN_IF_ERROR(ExpectOp(","));
      if (AcceptOp(")")) break;
      MacroParam param;
      ASSIGN_OR_RETURN(param.name, ExpectName());
      if (AcceptOp("=")) {
        ASSIGN_OR_RETURN(param.default_value, ParseExpression(true));
      }
      s.params.push_back(std::move(param));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    std::string end;
    ASSIGN_OR_RETURN(s.body, ParseBody({"endmacro"}, &end));
    if (end.empty()) return UnclosedError("macro", "endmacro", line);
    if (Cur().type == TokenType::kName) Next();  // `{% endmacro name %}` is allowed
    RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  absl::StatusOr<Stmt> ParseWith(int line) {
    Stmt s = MakeStmt(StmtKind::kWith, line);
    while (Cur().type != TokenType::kBlockEnd) {
      if (!s.targets.empty()) RETURN_IF_ERROR(ExpectOp(","));
      ASSIGN_OR_RETURN(std::string name, ExpectName());
      RETURN_IF_ERROR(ExpectOp("="));
      ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      s.targets.push_back(std::move(name));
      s.values.push_back(std::move(value));
    }
    Next();
    std::string end;
    ASSIGN_OR_RETURN(s.body, ParseBody({"endwith"}, &end));
    if (end.empty()) return UnclosedError("with", "endwith", line);
    RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  // Hugging Face's AssistantTracker tag: renders its body (in a scope of its own, as jinja2's
  // call blocks do); transformers only uses it to mark assistant spans.
  absl::StatusOr<Stmt> ParseGeneration(int line) {
    Stmt s = MakeStmt(StmtKind::kWith, line);
    RETURN_IF_ERROR(ExpectBlockEnd());
    std::string end;
    ASSIGN_OR_RETURN(s.body, ParseBody({"endgeneration"}, &end));
    if (end.empty()) return UnclosedError("generation", "endgeneration", line);
    RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  absl::StatusOr<Stmt> ParseLoopControl(const std::string& tag, int line) {
    if (loop_depth_hint_ < 0) return ErrorAt(line, StrCat("'", tag, "' outside a loop"));
    RETURN_IF_ERROR(ExpectBlockEnd());
    return MakeStmt(tag == "break" ? StmtKind::kBreak : StmtKind::kContinue, line);
  }

  // ---- expressions (jinja2 precedence, loosest first) ----

  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr) {
    const int line = Cur().line;
    ASSIGN_OR_RETURN(ExprPtr first, ParseExpression(with_condexpr));
    if (!IsOp(",")) return first;
    auto tuple = MakeExpr(ExprKind::kTuple, line);
    tuple->children.push_back(std::move(first));
    while (AcceptOp(",")) {
      if (Cur().type == TokenType::kBlockEnd || Cur().type == TokenType::kVarEnd ||
          IsName("if")) {
        break;
      }
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(with_condexpr));
      tuple->children.push_back(std::move(item));
    }
    return tuple;
  }

  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr) {
    if (++nesting_ > kMaxNesting) return Error("expression nested too deeply");
    auto result = with_condexpr ? ParseCondExpr() : ParseOr();
    --nesting_;
    return result;
  }

  absl::StatusOr<ExprPtr> ParseCondExpr() {
    const int line = Cur().line;
    ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    while (AcceptName("if")) {
      auto cond = MakeExpr(ExprKind::kCondExpr, line);
      ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
      cond->children.push_back(std::move(test));
      cond->children.push_back(std::move(expr));
      if (AcceptName("else")) {
        ASSIGN_OR_RETURN(ExprPtr other, ParseCondExpr());
        cond->children.push_back(std::move(other));
      } else {
        cond->children.push_back(nullptr);
      }
      expr = std::move(cond);
    }
    return expr;
  }

  static ExprPtr Binary(ExprKind kind, std::string op, ExprPtr a, ExprPtr b, int line) {
    auto e = MakeExpr(kind, line);
    e->name = std::move(op);
    e->children.push_back(std::move(a));
    e->children.push_back(std::move(b));
    return e;
  }

  // `or` / `and`: left-associative, each with its own kind (they short-circuit).
  template <typename SubParser>
  absl::StatusOr<ExprPtr> ParseLogical(std::string_view keyword, ExprKind kind, SubParser next) {
    ASSIGN_OR_RETURN(ExprPtr left, (this->*next)());
    while (IsName(keyword)) {
      const int line = Cur().line;
      Next();
      ASSIGN_OR_RETURN(ExprPtr right, (this->*next)());
      left = Binary(kind, std::string(keyword), std::move(left), std::move(right), line);
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseOr() { return ParseLogical("or", ExprKind::kOr, &Parser::ParseAnd); }
  absl::StatusOr<ExprPtr> ParseAnd() {
    return ParseLogical("and", ExprKind::kAnd, &Parser::ParseNot);
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      const int line = Cur().line;
      Next();
      if (++nesting_ > kMaxNesting) return Error("expression nested too deeply");
      ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
      --nesting_;
      auto e = MakeExpr(ExprKind::kUnary, line);
      e->name = "not";
      e->children.push_back(std::move(operand));
      return e;
    }
    return ParseCompare();
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const int line = Cur().line;
    ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (Cur().type == TokenType::kOp &&
          (Cur().text == "==" || Cur().text == "!=" || Cur().text == "<" || Cur().text == "<=" ||
           Cur().text == ">" || Cur().text == ">=")) {
        op = Cur().text;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && Peek(1).type == TokenType::kName && Peek(1).text == "in") {
        op = "not in";
        Next();
        Next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = MakeExpr(ExprKind::kCompare, line);
        cmp->children.push_back(std::move(first));
      }
      ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
      cmp->ops.push_back(std::move(op));
      cmp->children.push_back(std::move(operand));
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  // One precedence level of left-associative binary operators.
  template <typename SubParser>
  absl::StatusOr<ExprPtr> ParseLevel(std::initializer_list<std::string_view> ops, SubParser next) {
    ASSIGN_OR_RETURN(ExprPtr left, (this->*next)());
    while (true) {
      std::string op;
      for (std::string_view candidate : ops) {
        if (IsOp(candidate)) op = std::string(candidate);
      }
      if (op.empty()) return left;
      const int line = Cur().line;
      Next();
      ASSIGN_OR_RETURN(ExprPtr right, (this->*next)());
      left = Binary(ExprKind::kBinary, op, std::move(left), std::move(right), line);
    }
  }

  absl::StatusOr<ExprPtr> ParseMath1() { return ParseLevel({"+", "-"}, &Parser::ParseConcat); }
  absl::StatusOr<ExprPtr> ParseConcat() { return ParseLevel({"~"}, &Parser::ParseMath2); }
  absl::StatusOr<ExprPtr> ParseMath2() {
    return ParseLevel({"*", "/", "//", "%"}, &Parser::ParsePow);
  }
  absl::StatusOr<ExprPtr> ParsePow() { return ParseLevel({"**"}, &Parser::ParseUnaryFiltered); }
  absl::StatusOr<ExprPtr> ParseUnaryFiltered() { return ParseUnary(true); }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    if (++nesting_ > kMaxNesting) return Error("expression nested too deeply");
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      auto e = MakeExpr(ExprKind::kUnary, Cur().line);
      e->name = Cur().text;
      Next();
      ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
      e->children.push_back(std::move(operand));
      node = std::move(e);
    } else {
      ASSIGN_OR_RETURN(node, ParsePrimary());
    }
    ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
    if (with_filter) {
      ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
    }
    --nesting_;
    return node;
  }

  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParseSequence(ExprKind kind, std::string_view close, int line);
  absl::StatusOr<ExprPtr> ParseDict(int line);
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node, int line);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::Status ParseCallArgs(Expr* call);

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int nesting_ = 0;
  // Loop controls are accepted anywhere; jinja2's loopcontrols extension rejects them outside a
  // loop at compile time only in some versions, so the check happens when they run.
  int loop_depth_hint_ = 0;
};

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
  const Token& t = Cur();
  const int line = t.line;
  auto literal = [&](Value v) {
    auto e = MakeExpr(ExprKind::kLiteral, line);
    e->literal = std::move(v);
    return e;
  };
  switch (t.type) {
    case TokenType::kName: {
      const std::string name = t.text;
      Next();
      if (name == "true" || name == "True") return literal(Value(true));
      if (name == "false" || name == "False") return literal(Value(false));
      if (name == "none" || name == "None") return literal(Value());
      auto e = MakeExpr(ExprKind::kName, line);
      e->name = name;
      return e;
    }
    case TokenType::kString: {
      std::string s;
      while (Cur().type == TokenType::kString) {  // adjacent literals concatenate
        s += Cur().text;
        Next();
      }
      return literal(Value(std::move(s)));
    }
    case TokenType::kInt: {
      int64_t v = 0;
      const auto [ptr, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
      if (ec != std::errc()) return Error(StrCat("integer literal too large: ", t.text));
      Next();
      return literal(Value(v));
    }
    case TokenType::kFloat: {
      const double v = std::strtod(t.text.c_str(), nullptr);
      Next();
      return literal(Value(v));
    }
    case TokenType::kOp:
      if (AcceptOp("(")) {
        if (AcceptOp(")")) return MakeExpr(ExprKind::kTuple, line);
        ASSIGN_OR_RETURN(ExprPtr inner, ParseTuple(true));
        RETURN_IF_ERROR(ExpectOp(")"));
        return inner;
      }
      if (AcceptOp("[")) return ParseSequence(ExprKind::kList, "]", line);
      if (AcceptOp("{")) return ParseDict(line);
      break;
    default:
      break;
  }
  return Error(StrCat("unexpected ", Describe(t)));
}

absl::StatusOr<ExprPtr> Parser::ParseSequence(ExprKind kind, std::string_view close, int line) {
  auto e = MakeExpr(kind, line);
  while (!AcceptOp(close)) {
    if (!e->children.empty()) {
      RETURN_IF_ERROR(ExpectOp(","));
      if (AcceptOp(close)) break;
    }
    ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(true));
    e->children.push_back(std::move(item));
  }
  return e;
}

absl::StatusOr<ExprPtr> Parser::ParseDict(int line) {
  auto e = MakeExpr(ExprKind::kDict, line);
  while (!AcceptOp("}")) {
    if (!e->children.empty()) {
      RETURN_IF_ERROR(ExpectOp(","));
      if (AcceptOp("}")) break;
    }
    ASSIGN_OR_RETURN(ExprPtr key, ParseExpression(true));
    RETURN_IF_ERROR(ExpectOp(":"));
    ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
    e->children.push_back(std::move(key));
    e->children.push_back(std::move(value));
  }
  return e;
}

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
  while (true) {
    const int line = Cur().line;
    if (AcceptOp(".")) {
      if (Cur().type == TokenType::kInt) {
        auto item = MakeExpr(ExprKind::kGetItem, line);
        auto index = MakeExpr(ExprKind::kLiteral, line);
        index->literal = Value(static_cast<int64_t>(std::atoll(Cur().text.c_str())));
        Next();
        item->children.push_back(std::move(node));
        item->children.push_back(std::move(index));
        node = std::move(item);
        continue;
      }
      auto attr = MakeExpr(ExprKind::kGetAttr, line);
      ASSIGN_OR_RETURN(attr->name, ExpectName());
      attr->children.push_back(std::move(node));
      node = std::move(attr);
    } else if (AcceptOp("[")) {
      ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node), line));
    } else if (AcceptOp("(")) {
      auto call = MakeExpr(ExprKind::kCall, line);
      call->children.push_back(std::move(node));
      RETURN_IF_ERROR(ParseCallArgs(call.get()));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr node, int line) {
  ExprPtr parts[3];
  int num_colons = 0;
  while (true) {
    if (!IsOp(":") && !IsOp("]")) {
      ASSIGN_OR_RETURN(parts[num_colons], ParseExpression(true));
    }
    if (IsOp(":") && num_colons < 2) {
      Next();
      ++num_colons;
      continue;
    }
    break;
  }
  RETURN_IF_ERROR(ExpectOp("]"));
  if (num_colons == 0) {
    if (!parts[0]) return ErrorAt(line, "empty subscript");
    auto item = MakeExpr(ExprKind::kGetItem, line);
    item->children.push_back(std::move(node));
    item->children.push_back(std::move(parts[0]));
    return item;
  }
  auto slice = MakeExpr(ExprKind::kSlice, line);
  slice->children.push_back(std::move(node));
  for (auto& part : parts) slice->children.push_back(std::move(part));
  return slice;
}

absl::Status Parser::ParseCallArgs(Expr* call) {
  bool first = true;
  while (!AcceptOp(")")) {
    if (!first) {
      RETURN_IF_ERROR(ExpectOp(","));
      if (AcceptOp(")")) break;
    }
    first = false;
    if (IsOp("*") || IsOp("**")) return Error("unsupported '*args' / '**kwargs' in a call");
    if (Cur().type == TokenType::kName && Peek(1).type == TokenType::kOp && Peek(1).text == "=") {
      std::string name = Cur().text;
      Next();
      Next();
      ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      call->kwargs.emplace_back(std::move(name), std::move(value));
      continue;
    }
    if (!call->kwargs.empty()) return Error("positional argument after keyword argument");
    ASSIGN_OR_RETURN(ExprPtr arg, ParseExpression(true));
    call->children.push_back(std::move(arg));
  }
  return absl::OkStatus();
}

absl::StatusOr<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    const int line = Cur().line;
    if (AcceptOp("|")) {
      auto filter = MakeExpr(ExprKind::kFilter, line);
      ASSIGN_OR_RETURN(filter->name, ExpectName());
      if (!IsKnownFilter(filter->name)) {
        return ErrorAt(line, StrCat("unsupported filter '", filter->name, "'"));
      }
      filter->children.push_back(std::move(node));
      if (AcceptOp("(")) RETURN_IF_ERROR(ParseCallArgs(filter.get()));
      node = std::move(filter);
    } else if (AcceptName("is")) {
      auto test = MakeExpr(ExprKind::kTest, line);
      test->negated = AcceptName("not");
      ASSIGN_OR_RETURN(test->name, ExpectName());
      if (!IsKnownTest(test->name)) {
        return ErrorAt(line, StrCat("unsupported test '", test->name, "'"));
      }
      test->children.push_back(std::move(node));
      const TokenType type = Cur().type;
      if (AcceptOp("(")) {
        RETURN_IF_ERROR(ParseCallArgs(test.get()));
      } else if ((type == TokenType::kName || type == TokenType::kString ||
                  type == TokenType::kInt || type == TokenType::kFloat || IsOp("[") ||
                  IsOp("{")) &&
                 !IsName("else") && !IsName("or") && !IsName("and") && !IsName("if") &&
                 !IsName("is")) {
        ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
        ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
        test->children.push_back(std::move(arg));
      }
      node = std::move(test);
    } else if (AcceptOp("(")) {
      auto call = MakeExpr(ExprKind::kCall, line);
      call->children.push_back(std::move(node));
      RETURN_IF_ERROR(ParseCallArgs(call.get()));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

}  // namespace

absl::StatusOr<Body> ParseTemplate(std::string_view source) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(source));
  return Parser(std::move(tokens)).ParseAll();
}

}  // namespace strata::engine::jinja
