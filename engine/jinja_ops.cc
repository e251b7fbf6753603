#include "engine/jinja_ops.h"

#include <cmath>

#include "common/status.h"
#include "engine/jinja_builtins.h"

namespace strata::engine::jinja {
namespace {

absl::Status Err(std::string_view message) { return absl::InvalidArgumentError(std::string(message)); }

absl::Status OperandError(std::string_view op, const Value& a, const Value& b) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  return Err(StrCat("unsupported operand type(s) for ", op, ": '", a.TypeName(), "' and '",
                    b.TypeName(), "'"));
}

bool IsInt(const Value& v) { return v.is_int() || v.is_bool(); }
int64_t IntOf(const Value& v) { return v.is_bool() ? v.bool_value() : v.int_value(); }

absl::Status Overflow() { return Err("integer overflow"); }

// Python floor division and modulo on ints.
int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
int64_t FloorMod(int64_t a, int64_t b) {
  const int64_t r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

absl::StatusOr<Value> IntPow(int64_t base, int64_t exp) {
  if (exp < 0) return Value(std::pow(static_cast<double>(base), static_cast<double>(exp)));
  int64_t result = 1;
  for (int64_t i = 0; i < exp; ++i) {
    if (__builtin_mul_overflow(result, base, &result)) return Overflow();
    if (result == 0 || result == 1) break;  // 0**n, 1**n: further steps change nothing
  }
  return Value(result);
}

absl::StatusOr<Value> IntArith(std::string_view op, int64_t x, int64_t y) {
  int64_t r = 0;
  if (op == "+") {
    if (__builtin_add_overflow(x, y, &r)) return Overflow();
  } else if (op == "-") {
    if (__builtin_sub_overflow(x, y, &r)) return Overflow();
  } else if (op == "*") {
    if (__builtin_mul_overflow(x, y, &r)) return Overflow();
  } else if (op == "/") {
    if (y == 0) return Err("division by zero");
    return Value(static_cast<double>(x) / static_cast<double>(y));
  } else if (op == "//" || op == "%") {
    if (y == 0) return Err("integer division or modulo by zero");
    if (x == INT64_MIN && y == -1) return Overflow();
    r = op == "//" ? FloorDiv(x, y) : FloorMod(x, y);
  } else {
    return IntPow(x, y);
  }
  return Value(r);
}

absl::StatusOr<Value> FloatArith(std::string_view op, double x, double y) {
  if (op == "+") return Value(x + y);
  if (op == "-") return Value(x - y);
  if (op == "*") return Value(x * y);
  if (op == "**") return Value(std::pow(x, y));
  if (y == 0.0) return Err("float division by zero");
  if (op == "/") return Value(x / y);
  const double m = std::fmod(x, y);
  const double mod = (m != 0.0 && ((m < 0) != (y < 0))) ? m + y : m;
  if (op == "%") return Value(mod);
  return Value(std::floor((x - mod) / y));  // //
}

// str * int, list * int (either order).
absl::StatusOr<Value> Repeat(const Value& seq, int64_t n, size_t max_size) {
  if (n <= 0) return seq.is_string() ? Value(std::string()) : Value(ValueList());
  const size_t unit = seq.is_string() ? seq.str().size() : seq.list().size();
  if (unit != 0 && static_cast<uint64_t>(n) > max_size / unit) {
    return Err("repetition result too large");
  }
  if (seq.is_string()) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.str();
    return Value(std::move(out));
  }
  ValueList out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.list().begin(), seq.list().end());
  return Value(std::move(out));
}

absl::StatusOr<Value> Concat(const Value& a, const Value& b, size_t max_size) {
  if (a.is_string()) {
    if (a.str().size() + b.str().size() > max_size) return Err("string result too large");
    return Value(a.str() + b.str());
  }
  if (a.list().size() + b.list().size() > max_size) return Err("list result too large");
  ValueList out = a.list();
  out.insert(out.end(), b.list().begin(), b.list().end());
  return Value(std::move(out));
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined: return false;  // Undefined iterates as empty
    case Value::Kind::kString:
      if (!item.is_string()) {
        return Err(StrCat("'in <string>' requires string as left operand, not ", item.TypeName()));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& x : container.list()) {
        if (Equals(x, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      return item.is_string() && container.dict().Find(item.str()) != nullptr;
    default:
      return Err(StrCat("argument of type '", container.TypeName(), "' is not iterable"));
  }
}

}  // namespace

absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& a, const Value& b,
                               size_t max_size) {
  if (op == "~") {
    std::string out = ToStr(a) + ToStr(b);
    if (out.size() > max_size) return Err("string result too large");
    return Value(std::move(out));
  }
  if (a.is_number() && b.is_number()) {
    if (IsInt(a) && IsInt(b)) return IntArith(op, IntOf(a), IntOf(b));
    return FloatArith(op, a.AsDouble(), b.AsDouble());
  }
  if (op == "+" && ((a.is_string() && b.is_string()) || (a.is_list() && b.is_list()))) {
    return Concat(a, b, max_size);
  }
  if (op == "*") {
    if ((a.is_string() || a.is_list()) && IsInt(b)) return Repeat(a, IntOf(b), max_size);
    if ((b.is_string() || b.is_list()) && IsInt(a)) return Repeat(b, IntOf(a), max_size);
  }
  if (op == "%" && a.is_string()) return Err("string formatting with '%' is not supported");
  return OperandError(op, a, b);
}

absl::StatusOr<Value> UnaryOp(std::string_view op, const Value& v) {
  if (v.is_undefined()) return UndefinedError(v);
  if (!v.is_number()) {
    return Err(StrCat("bad operand type for unary ", op, ": '", v.TypeName(), "'"));
  }
  if (v.is_float()) return Value(op == "-" ? -v.float_value() : v.float_value());
  const int64_t x = IntOf(v);
  if (op == "+") return Value(x);
  if (x == INT64_MIN) return Overflow();
  return Value(-x);
}

absl::StatusOr<bool> CompareOp(std::string_view op, const Value& a, const Value& b) {
  if (op == "==") return Equals(a, b);
  if (op == "!=") return !Equals(a, b);
  if (op == "in") return Contains(b, a);
  if (op == "not in") {
    ASSIGN_OR_RETURN(bool in, Contains(b, a));
    return !in;
  }
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  absl::StatusOr<int> c = Compare(a, b);
  if (!c.ok()) {
    return Err(StrCat("'", op, "' not supported between instances of '", a.TypeName(), "' and '",
                      b.TypeName(), "'"));
  }
  if (op == "<") return *c < 0;
  if (op == "<=") return *c <= 0;
  if (op == ">") return *c > 0;
  return *c >= 0;
}

}  // namespace strata::engine::jinja
