// Syntax tree of a parsed chat template (engine/chat_template.h). Built once by ParseTemplate,
// then only read: many threads may evaluate the same tree at once.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/jinja_value.h"

namespace strata::engine::jinja {

enum class ExprKind {
  kLiteral,    // literal
  kName,       // name
  kList,       // children
  kTuple,      // children (printed and compared as a list)
  kDict,       // children alternate key, value
  kGetAttr,    // children[0].name
  kGetItem,    // children[0][children[1]]
  kSlice,      // children[0][children[1]:children[2]:children[3]]; null parts omitted
  kCall,       // children[0](children[1..], kwargs)
  kFilter,     // children[0] | name(children[1..], kwargs)
  kTest,       // children[0] is [not] name(children[1..])
  kUnary,      // op in {"not", "-", "+"}, children[0]
  kBinary,     // children[0] op children[1]: + - * / // % ** ~ in "not in"
  kCompare,    // children[0] ops[0] children[1] ops[1] children[2] ... (chained like Python)
  kAnd,        // children[0] and children[1]
  kOr,         // children[0] or children[1]
  kCondExpr,   // children[1] if children[0] else children[2] (children[2] may be null)
};

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  int line = 0;
  std::string name;  // kName, kGetAttr, kFilter, kTest; operator for kUnary/kBinary
  Value literal;
  bool negated = false;  // kTest: `is not`
  std::vector<std::string> ops;  // kCompare
  std::vector<std::unique_ptr<Expr>> children;
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
};

enum class StmtKind {
  kData,      // text
  kPrint,     // {{ expr }}
  kIf,        // branches (else branch has a null condition)
  kFor,       // for targets in expr [if filter] body [else else_body]
  kSet,       // set targets (or target.attr) = expr
  kSetBlock,  // {% set name %}body{% endset %}
  kMacro,     // macro name(params = defaults) body
  kWith,      // with targets = values body
  kBreak,
  kContinue,
};

struct Stmt;
using Body = std::vector<Stmt>;

struct IfBranch {
  std::unique_ptr<Expr> condition;  // null for `else`
  Body body;
};

struct MacroParam {
  std::string name;
  std::unique_ptr<Expr> default_value;  // null when required
};

struct Stmt {
  StmtKind kind = StmtKind::kData;
  int line = 0;
  std::string text;                   // kData text; kSet attribute name for `set ns.attr`
  std::vector<std::string> targets;   // kFor / kSet / kSetBlock / kMacro name / kWith names
  std::unique_ptr<Expr> expr;         // kPrint value, kFor iterable, kSet value
  std::unique_ptr<Expr> filter;       // kFor `if` clause
  std::vector<std::unique_ptr<Expr>> values;  // kWith values
  std::vector<IfBranch> branches;     // kIf
  std::vector<MacroParam> params;     // kMacro
  Body body;
  Body else_body;                     // kFor `else`
};

}  // namespace strata::engine::jinja
