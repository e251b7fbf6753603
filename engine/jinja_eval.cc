#include "engine/jinja_eval.h"

#include "absl/base/attributes.h"
#include "common/status.h"
#include "engine/jinja_builtins.h"
#include "engine/jinja_ops.h"

namespace strata::engine::jinja {
namespace {

enum class Flow { kNormal, kBreak, kContinue };

// Nested Eval/Exec frames. Real templates stay under ~50; the cap keeps the evaluator's
// recursion well inside a thread's stack (also under sanitizers).
constexpr int kMaxDepth = 1000;

absl::Status Err(std::string_view message) { return absl::InvalidArgumentError(std::string(message)); }

// Adds the template line to a builtin's error; errors that already carry one (from a nested
// macro body) and a template's own raise_exception (kAborted) pass through unchanged.
absl::Status AtLine(int line, const absl::Status& s) {
  if (s.ok() || s.code() == absl::StatusCode::kAborted) return s;
  const std::string_view message(s.message().data(), s.message().size());
  if (message.rfind("chat template line ", 0) == 0) return s;
  return absl::InvalidArgumentError(StrCat("chat template line ", line, ": ", message));
}

template <typename T>
absl::StatusOr<T> AtLine(int line, absl::StatusOr<T> v) {
  if (v.ok()) return v;
  return AtLine(line, v.status());
}

ValueDict Globals();

class Renderer {
 public:
  Renderer(ValueDict context, const RenderLimits& limits) : limits_(limits) {
    ValueDict root = Globals();
    for (auto& [k, v] : context.entries) root.Set(k, std::move(v));
    scopes_.push_back(std::move(root));
  }

  absl::StatusOr<std::string> Run(const Body& body) {
    std::string out;
    absl::StatusOr<Flow> flow = ExecBody(body, &out);
    if (!flow.ok()) {
      if (flow.status().code() == absl::StatusCode::kAborted) {
        return absl::InvalidArgumentError(std::string(flow.status().message()));
      }
      return flow.status();
    }
    return out;
  }

 private:
  // ---- scopes ----
  Value Lookup(const std::string& name) const {
    for (size_t i = scopes_.size(); i-- > barrier_;) {
      if (const Value* v = scopes_[i].Find(name)) return *v;
    }
    if (barrier_ > 0) {
      if (const Value* v = scopes_[0].Find(name)) return *v;
    }
    return Value::Undefined(StrCat("'", name, "' is undefined"));
  }
  void Assign(const std::string& name, Value v) { scopes_.back().Set(name, std::move(v)); }

  absl::Status AssignTargets(const std::vector<std::string>& targets, const Value& v, int line) {
    if (targets.size() == 1) {
      Assign(targets[0], v);
      return absl::OkStatus();
    }
    absl::StatusOr<ValueList> items = Iterate(v);
    if (!items.ok() || items->size() != targets.size()) {
      return AtLine(line, Err(StrCat("cannot unpack ", v.TypeName(), " into ", targets.size(),
                                     " names")));
    }
    for (size_t i = 0; i < targets.size(); ++i) Assign(targets[i], (*items)[i]);
    return absl::OkStatus();
  }

  absl::Status Emit(std::string_view text, std::string* out, int line) const {
    if (out->size() + text.size() > limits_.max_output) {
      return AtLine(line, Err(StrCat("output larger than ", limits_.max_output, " bytes")));
    }
    out->append(text);
    return absl::OkStatus();
  }

  // ---- statements ----
  absl::StatusOr<Flow> ExecBody(const Body& body, std::string* out) {
    for (const Stmt& s : body) {
      if (depth_ >= kMaxDepth) return AtLine(s.line, Err("template nested too deeply"));
      ++depth_;
      absl::StatusOr<Flow> flow = Exec(s, out);
      --depth_;
      if (!flow.ok() || *flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  absl::StatusOr<Flow> Exec(const Stmt& s, std::string* out) {
    switch (s.kind) {
      case StmtKind::kData: RETURN_IF_ERROR(Emit(s.text, out, s.line)); break;
      case StmtKind::kPrint: {
        ASSIGN_OR_RETURN(Value v, Eval(*s.expr));
        RETURN_IF_ERROR(Emit(ToStr(v), out, s.line));
        break;
      }
      case StmtKind::kIf: return ExecIf(s, out);
      case StmtKind::kFor: return ExecFor(s, out);
      case StmtKind::kSet: RETURN_IF_ERROR(ExecSet(s)); break;
      case StmtKind::kSetBlock: {
        std::string text;
        ASSIGN_OR_RETURN(Flow flow, ExecBody(s.body, &text));
        Assign(s.targets[0], Value(std::move(text)));
        return flow;
      }
      case StmtKind::kMacro: DefineMacro(s); break;
      case StmtKind::kWith: return ExecWith(s, out);
      case StmtKind::kBreak:
      case StmtKind::kContinue:
        if (loop_depth_ == 0) {
          return AtLine(s.line, Err(StrCat("'", s.kind == StmtKind::kBreak ? "break" : "continue",
                                           "' outside a loop")));
        }
        return s.kind == StmtKind::kBreak ? Flow::kBreak : Flow::kContinue;
    }
    return Flow::kNormal;
  }

  absl::StatusOr<Flow> ExecIf(const Stmt& s, std::string* out) {
    for (const IfBranch& branch : s.branches) {
      bool take = branch.condition == nullptr;
      if (!take) {
        ASSIGN_OR_RETURN(Value cond, Eval(*branch.condition));
        take = cond.Truthy();
      }
      if (take) return ExecBody(branch.body, out);
    }
    return Flow::kNormal;
  }

  absl::Status ExecSet(const Stmt& s) {
    ASSIGN_OR_RETURN(Value v, Eval(*s.expr));
    if (s.text.empty()) return AssignTargets(s.targets, v, s.line);
    const Value ns = Lookup(s.targets[0]);
    if (!ns.is_namespace()) {
      return AtLine(s.line, Err(StrCat("cannot assign attribute '", s.text, "' of '",
                                       s.targets[0], "': not a namespace")));
    }
    ns.mutable_namespace().Set(s.text, std::move(v));
    return absl::OkStatus();
  }

  absl::StatusOr<Flow> ExecWith(const Stmt& s, std::string* out) {
    ValueDict frame;
    for (size_t i = 0; i < s.targets.size(); ++i) {
      ASSIGN_OR_RETURN(Value v, Eval(*s.values[i]));
      frame.Set(s.targets[i], std::move(v));
    }
    scopes_.push_back(std::move(frame));
    absl::StatusOr<Flow> flow = ExecBody(s.body, out);
    scopes_.pop_back();
    return flow;
  }

  absl::StatusOr<ValueList> LoopItems(const Stmt& s) {
    ASSIGN_OR_RETURN(Value iterable, Eval(*s.expr));
    ASSIGN_OR_RETURN(ValueList items, AtLine(s.line, Iterate(iterable)));
    if (s.filter == nullptr) return items;
    ValueList kept;
    scopes_.emplace_back();
    for (const Value& item : items) {
      absl::Status st = AssignTargets(s.targets, item, s.line);
      absl::StatusOr<Value> keep = st.ok() ? Eval(*s.filter) : st;
      if (!keep.ok()) {
        scopes_.pop_back();
        return keep.status();
      }
      if (keep->Truthy()) kept.push_back(item);
    }
    scopes_.pop_back();
    return kept;
  }

  ValueDict LoopObject(const ValueList& items, size_t i) {
    const int64_t n = static_cast<int64_t>(items.size());
    const int64_t k = static_cast<int64_t>(i);
    ValueDict loop;
    loop.Set("index", Value(k + 1));
    loop.Set("index0", Value(k));
    loop.Set("revindex", Value(n - k));
    loop.Set("revindex0", Value(n - k - 1));
    loop.Set("first", Value(k == 0));
    loop.Set("last", Value(k == n - 1));
    loop.Set("length", Value(n));
    loop.Set("depth", Value(int64_t{1}));
    loop.Set("depth0", Value(int64_t{0}));
    loop.Set("previtem", i > 0 ? items[i - 1] : Value::Undefined("there is no previous item"));
    loop.Set("nextitem", i + 1 < items.size() ? items[i + 1] : Value::Undefined("there is no next item"));
    loop.Set("cycle", Value::Function("cycle", [k](const CallArgs& args) -> absl::StatusOr<Value> {
      if (args.positional.empty()) return Err("loop.cycle() needs at least one value");
      return args.positional[static_cast<size_t>(k) % args.positional.size()];
    }));
    return loop;
  }

  // Each iteration gets a fresh frame: jinja2 forgets a loop body's `set`s between iterations.
  absl::StatusOr<Flow> ExecFor(const Stmt& s, std::string* out) {
    ASSIGN_OR_RETURN(ValueList items, LoopItems(s));
    if (items.empty()) return ExecBody(s.else_body, out);
    ++loop_depth_;
    absl::Status status;
    for (size_t i = 0; i < items.size(); ++i) {
      if (++iterations_ > limits_.max_iterations) {
        status = AtLine(s.line, Err(StrCat("loop iteration limit (", limits_.max_iterations,
                                           ") exceeded")));
        break;
      }
      scopes_.emplace_back();
      status = AssignTargets(s.targets, items[i], s.line);
      absl::StatusOr<Flow> flow = Flow::kNormal;
      if (status.ok()) {
        Assign("loop", Value(LoopObject(items, i)));
        flow = ExecBody(s.body, out);
      }
      scopes_.pop_back();
      if (!flow.ok()) status = flow.status();
      if (!status.ok() || *flow == Flow::kBreak) break;
    }
    --loop_depth_;
    RETURN_IF_ERROR(status);
    return Flow::kNormal;
  }

  void DefineMacro(const Stmt& s) {
    const Stmt* macro = &s;
    Assign(s.targets[0], Value::Function(s.targets[0], [this, macro](const CallArgs& args) {
             return CallMacro(*macro, args);
           }));
  }

  absl::StatusOr<ValueDict> BindMacroArgs(const Stmt& m, const CallArgs& args) {
    if (args.positional.size() > m.params.size()) {
      return Err(StrCat("macro '", m.targets[0], "' takes no more than ", m.params.size(),
                        " argument(s)"));
    }
    for (const auto& [name, v] : args.keyword) {
      bool known = false;
      for (const MacroParam& p : m.params) known = known || p.name == name;
      if (!known) return Err(StrCat("macro '", m.targets[0], "' takes no keyword argument '", name, "'"));
    }
    ValueDict frame;
    for (size_t i = 0; i < m.params.size(); ++i) {
      const MacroParam& p = m.params[i];
      if (const Value* v = args.Get(i, p.name)) {
        frame.Set(p.name, *v);
      } else if (p.default_value != nullptr) {
        ASSIGN_OR_RETURN(Value v, Eval(*p.default_value));
        frame.Set(p.name, std::move(v));
      } else {
        frame.Set(p.name, Value::Undefined(StrCat("'", p.name, "' is undefined")));
      }
    }
    return frame;
  }

  absl::StatusOr<Value> CallMacro(const Stmt& m, const CallArgs& args) {
    if (call_depth_ >= limits_.max_call_depth) {
      return Err(StrCat("macro calls nested deeper than ", limits_.max_call_depth));
    }
    ASSIGN_OR_RETURN(ValueDict frame, BindMacroArgs(m, args));
    const size_t saved_barrier = barrier_;
    const int saved_loop_depth = loop_depth_;
    scopes_.push_back(std::move(frame));
    barrier_ = scopes_.size() - 1;
    loop_depth_ = 0;
    ++call_depth_;
    std::string text;
    absl::StatusOr<Flow> flow = ExecBody(m.body, &text);
    --call_depth_;
    loop_depth_ = saved_loop_depth;
    barrier_ = saved_barrier;
    scopes_.pop_back();
    if (!flow.ok()) return flow.status();
    return Value(std::move(text));
  }

  // ---- expressions ----
  absl::StatusOr<Value> Eval(const Expr& e) {
    if (depth_ >= kMaxDepth) return AtLine(e.line, Err("template nested too deeply"));
    ++depth_;
    absl::StatusOr<Value> v = EvalNode(e);
    --depth_;
    return v;
  }
  absl::StatusOr<Value> EvalNode(const Expr& e);
  ABSL_ATTRIBUTE_NOINLINE absl::StatusOr<Value> EvalAccess(const Expr& e);
  ABSL_ATTRIBUTE_NOINLINE absl::StatusOr<Value> EvalFilterOrTest(const Expr& e);
  ABSL_ATTRIBUTE_NOINLINE absl::StatusOr<Value> EvalOperator(const Expr& e);
  ABSL_ATTRIBUTE_NOINLINE absl::StatusOr<Value> EvalCondExpr(const Expr& e);
  ABSL_ATTRIBUTE_NOINLINE absl::StatusOr<Value> EvalCall(const Expr& e);
  ABSL_ATTRIBUTE_NOINLINE absl::StatusOr<Value> EvalSlice(const Expr& e);
  ABSL_ATTRIBUTE_NOINLINE absl::StatusOr<Value> EvalCompare(const Expr& e);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first);
  ABSL_ATTRIBUTE_NOINLINE absl::StatusOr<Value> EvalContainer(const Expr& e);

  const RenderLimits& limits_;
  std::vector<ValueDict> scopes_;
  size_t barrier_ = 0;  // scopes below this index (except the root) are hidden: macro frames
  int loop_depth_ = 0;
  int call_depth_ = 0;
  int64_t iterations_ = 0;
  int depth_ = 0;  // nested Eval/Exec frames, capped at kMaxDepth to bound stack use
};

absl::StatusOr<CallArgs> Renderer::EvalArgs(const Expr& e, size_t first) {
  CallArgs args;
  for (size_t i = first; i < e.children.size(); ++i) {
    ASSIGN_OR_RETURN(Value v, Eval(*e.children[i]));
    args.positional.push_back(std::move(v));
  }
  for (const auto& [name, expr] : e.kwargs) {
    ASSIGN_OR_RETURN(Value v, Eval(*expr));
    args.keyword.emplace_back(name, std::move(v));
  }
  return args;
}

absl::StatusOr<Value> Renderer::EvalCall(const Expr& e) {
  const Expr& callee = *e.children[0];
  if (callee.kind == ExprKind::kGetAttr) {
    ASSIGN_OR_RETURN(Value obj, Eval(*callee.children[0]));
    if (HasMethod(obj, callee.name)) {
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
      return AtLine(e.line, CallMethod(obj, callee.name, args));
    }
    if ((obj.is_list() || obj.is_string()) && !obj.is_undefined()) {
      return AtLine(e.line, Err(StrCat("unsupported method '", callee.name, "' of '",
                                       obj.TypeName(), " object'")));
    }
  }
  ASSIGN_OR_RETURN(Value fn, Eval(callee));
  if (fn.is_undefined()) return AtLine(e.line, UndefinedError(fn));
  if (!fn.is_callable()) {
    return AtLine(e.line, Err(StrCat("'", fn.TypeName(), "' object is not callable")));
  }
  ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
  return AtLine(e.line, fn.callable().fn(args));
}

absl::StatusOr<Value> Renderer::EvalSlice(const Expr& e) {
  ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0]));
  std::optional<int64_t> parts[3];
  for (int i = 0; i < 3; ++i) {
    if (e.children[i + 1] == nullptr) continue;
    ASSIGN_OR_RETURN(Value v, Eval(*e.children[i + 1]));
    if (v.is_none()) continue;
    if (!v.is_int() && !v.is_bool()) {
      return AtLine(e.line, Err("slice indices must be integers or None"));
    }
    parts[i] = v.is_bool() ? v.bool_value() : v.int_value();
  }
  return AtLine(e.line, GetSlice(obj, parts[0], parts[1], parts[2]));
}

absl::StatusOr<Value> Renderer::EvalCompare(const Expr& e) {
  ASSIGN_OR_RETURN(Value left, Eval(*e.children[0]));
  for (size_t i = 0; i < e.ops.size(); ++i) {
    ASSIGN_OR_RETURN(Value right, Eval(*e.children[i + 1]));
    ASSIGN_OR_RETURN(bool ok, AtLine(e.line, CompareOp(e.ops[i], left, right)));
    if (!ok) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

absl::StatusOr<Value> Renderer::EvalContainer(const Expr& e) {
  if (e.kind != ExprKind::kDict) {
    ValueList items;
    for (const auto& child : e.children) {
      ASSIGN_OR_RETURN(Value v, Eval(*child));
      items.push_back(std::move(v));
    }
    return Value(std::move(items));
  }
  ValueDict dict;
  for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
    ASSIGN_OR_RETURN(Value key, Eval(*e.children[i]));
    if (!key.is_string()) return AtLine(e.line, Err("dict keys must be strings"));
    ASSIGN_OR_RETURN(Value v, Eval(*e.children[i + 1]));
    dict.Set(key.str(), std::move(v));
  }
  return Value(std::move(dict));
}

absl::StatusOr<Value> Renderer::EvalAccess(const Expr& e) {
  ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0]));
  if (e.kind == ExprKind::kGetAttr) return AtLine(e.line, GetAttr(obj, e.name));
  ASSIGN_OR_RETURN(Value key, Eval(*e.children[1]));
  return AtLine(e.line, GetItem(obj, key));
}

absl::StatusOr<Value> Renderer::EvalFilterOrTest(const Expr& e) {
  ASSIGN_OR_RETURN(Value input, Eval(*e.children[0]));
  ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
  if (e.kind == ExprKind::kFilter) return AtLine(e.line, ApplyFilter(e.name, input, args));
  ASSIGN_OR_RETURN(bool result, AtLine(e.line, ApplyTest(e.name, input, args)));
  return Value(result != e.negated);
}

absl::StatusOr<Value> Renderer::EvalOperator(const Expr& e) {
  ASSIGN_OR_RETURN(Value a, Eval(*e.children[0]));
  if (e.kind == ExprKind::kUnary) {
    if (e.name == "not") return Value(!a.Truthy());
    return AtLine(e.line, UnaryOp(e.name, a));
  }
  if (e.kind == ExprKind::kAnd || e.kind == ExprKind::kOr) {
    if (a.Truthy() == (e.kind == ExprKind::kOr)) return a;
    return Eval(*e.children[1]);
  }
  ASSIGN_OR_RETURN(Value b, Eval(*e.children[1]));
  return AtLine(e.line, BinaryOp(e.name, a, b, limits_.max_output));
}

absl::StatusOr<Value> Renderer::EvalCondExpr(const Expr& e) {
  ASSIGN_OR_RETURN(Value cond, Eval(*e.children[0]));
  if (cond.Truthy()) return Eval(*e.children[1]);
  if (e.children[2] == nullptr) {
    return Value::Undefined(StrCat("the inline if-expression on line ", e.line,
                                   " evaluated to false and no else section was defined."));
  }
  return Eval(*e.children[2]);
}

// Dispatch only: the work happens in the EvalX helpers, which are kept out of line so this
// frame, on the stack once per tree level, stays small.
absl::StatusOr<Value> Renderer::EvalNode(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kLiteral: return e.literal;
    case ExprKind::kName: return Lookup(e.name);
    case ExprKind::kList:
    case ExprKind::kTuple:
    case ExprKind::kDict: return EvalContainer(e);
    case ExprKind::kGetAttr:
    case ExprKind::kGetItem: return EvalAccess(e);
    case ExprKind::kSlice: return EvalSlice(e);
    case ExprKind::kCall: return EvalCall(e);
    case ExprKind::kFilter:
    case ExprKind::kTest: return EvalFilterOrTest(e);
    case ExprKind::kUnary:
    case ExprKind::kBinary:
    case ExprKind::kAnd:
    case ExprKind::kOr: return EvalOperator(e);
    case ExprKind::kCompare: return EvalCompare(e);
    case ExprKind::kCondExpr: return EvalCondExpr(e);
  }
  return AtLine(e.line, Err("unknown expression"));
}

// ---- jinja2's globals ----

constexpr int64_t kMaxRange = 1'000'000;

absl::StatusOr<Value> Range(const CallArgs& args) {
  int64_t v[3] = {0, 0, 1};
  const size_t n = args.positional.size();
  if (n < 1 || n > 3 || !args.keyword.empty()) return Err("range() takes 1 to 3 arguments");
  for (size_t i = 0; i < n; ++i) {
    const Value& a = args.positional[i];
    if (!a.is_int() && !a.is_bool()) return Err("range() arguments must be integers");
    v[n == 1 ? 1 : i] = a.is_bool() ? a.bool_value() : a.int_value();
  }
  if (v[2] == 0) return Err("range() step must not be zero");
  ValueList out;
  for (int64_t x = v[0]; v[2] > 0 ? x < v[1] : x > v[1];) {
    if (out.size() >= static_cast<size_t>(kMaxRange)) {
      return Err(StrCat("range() longer than ", kMaxRange, " items"));
    }
    out.emplace_back(x);
    if (__builtin_add_overflow(x, v[2], &x)) break;
  }
  return Value(std::move(out));
}

// namespace(...) and dict(...): a positional dict and/or keyword arguments.
absl::StatusOr<ValueDict> KeywordDict(const CallArgs& args, std::string_view fn) {
  ValueDict d;
  if (args.positional.size() > 1 || (args.positional.size() == 1 && !args.positional[0].is_dict())) {
    return Err(StrCat(fn, "() takes at most one positional argument, a dict"));
  }
  if (!args.positional.empty()) d = args.positional[0].dict();
  for (const auto& [k, v] : args.keyword) d.Set(k, v);
  return d;
}

ValueDict Globals() {
  ValueDict g;
  g.Set("range", Value::Function("range", Range));
  g.Set("namespace", Value::Function("namespace", [](const CallArgs& args) -> absl::StatusOr<Value> {
    ASSIGN_OR_RETURN(ValueDict d, KeywordDict(args, "namespace"));
    return Value::Namespace(std::move(d));
  }));
  g.Set("dict", Value::Function("dict", [](const CallArgs& args) -> absl::StatusOr<Value> {
    ASSIGN_OR_RETURN(ValueDict d, KeywordDict(args, "dict"));
    return Value(std::move(d));
  }));
  return g;
}

}  // namespace

absl::StatusOr<std::string> RenderTemplate(const Body& body, ValueDict context,
                                           const RenderLimits& limits) {
  return Renderer(std::move(context), limits).Run(body);
}

}  // namespace strata::engine::jinja
