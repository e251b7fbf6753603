// Value: the dynamic value of the chat-template interpreter (engine/chat_template.h), with the
// Python semantics jinja2 gives templates: None, bool, int, float, str, list, dict, namespace,
// callables, and jinja2's Undefined (prints "", is falsy, iterates as empty; any other use is an
// error naming what was undefined).
//
// Lists and dicts are shared by reference like Python objects. Only namespaces are mutated after
// construction (`{% set ns.x = ... %}`), and a namespace never escapes the Render call that made
// it, so a Value graph is confined to one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::engine::jinja {

class Value;
using ValueList = std::vector<Value>;

// Insertion-ordered string-keyed map (Python dicts keep insertion order; templates rely on it
// for `items()` and `tojson`).
struct ValueDict {
  std::vector<std::pair<std::string, Value>> entries;

  const Value* Find(std::string_view key) const;
  void Set(std::string key, Value value);
};

// Positional and keyword arguments of a call, filter or test.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The argument at `index` or named `name`; nullptr when absent.
  const Value* Get(size_t index, std::string_view name) const;
};

struct Callable {
  std::string name;
  std::function<absl::StatusOr<Value>(const CallArgs&)> fn;
};

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable
  };

  Value() : kind_(Kind::kNone) {}
  Value(bool b) : kind_(Kind::kBool), data_(b) {}  // NOLINT: implicit like Python literals
  Value(int64_t i) : kind_(Kind::kInt), data_(i) {}  // NOLINT
  Value(int i) : Value(static_cast<int64_t>(i)) {}  // NOLINT
  Value(double f) : kind_(Kind::kFloat), data_(f) {}  // NOLINT
  Value(std::string s) : kind_(Kind::kString), data_(std::move(s)) {}  // NOLINT
  Value(const char* s) : Value(std::string(s)) {}  // NOLINT
  Value(ValueList list);  // NOLINT
  Value(ValueDict dict);  // NOLINT

  // `reason` completes the error raised when the undefined value is used, e.g.
  // "'x' is undefined" or "'dict object' has no attribute 'tool_calls'".
  static Value Undefined(std::string reason);
  static Value Namespace(ValueDict attrs);
  static Value Function(std::string name, std::function<absl::StatusOr<Value>(const CallArgs&)> fn);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  // Python's numbers.Number: bool counts, like isinstance(True, int).
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  // REQUIRES: the matching is_*() (bool() also accepts kBool only).
  bool bool_value() const { return std::get<bool>(data_); }
  int64_t int_value() const { return std::get<int64_t>(data_); }
  double float_value() const { return std::get<double>(data_); }
  const std::string& str() const { return std::get<std::string>(data_); }
  const ValueList& list() const { return *std::get<std::shared_ptr<ValueList>>(data_); }
  // Dicts and namespaces.
  const ValueDict& dict() const { return *std::get<std::shared_ptr<ValueDict>>(data_); }
  ValueDict& mutable_namespace() const { return *std::get<std::shared_ptr<ValueDict>>(data_); }
  const Callable& callable() const { return *std::get<std::shared_ptr<Callable>>(data_); }
  // The reason text of an undefined value.
  const std::string& undefined_reason() const { return std::get<std::string>(data_); }

  // Numeric value of an int, bool or float. REQUIRES: is_number().
  double AsDouble() const;
  // Python truthiness; Undefined is false.
  bool Truthy() const;
  // Python type name for messages: "str", "list", "dict object" style is added by callers.
  std::string TypeName() const;

 private:
  using Data = std::variant<std::monostate, bool, int64_t, double, std::string,
                            std::shared_ptr<ValueList>, std::shared_ptr<ValueDict>,
                            std::shared_ptr<Callable>>;
  Value(Kind kind, Data data) : kind_(kind), data_(std::move(data)) {}

  Kind kind_;
  Data data_;
};

// Python str(): what `{{ v }}` prints. Undefined prints "".
std::string ToStr(const Value& v);
// Python repr(): used inside printed lists and dicts.
std::string Repr(const Value& v);
// Python float repr ("1.0", "0.1", "1e+16").
std::string FormatFloat(double f);
// Python ==, including 1 == 1.0 == True and element-wise containers. Undefined equals only
// Undefined.
bool Equals(const Value& a, const Value& b);
// Python <: -1, 0, 1 for numbers, strings (code point order) and lists; error otherwise.
absl::StatusOr<int> Compare(const Value& a, const Value& b);
// json.dumps(v, ensure_ascii=False, indent=indent) as Hugging Face's tojson filter does;
// indent < 0 means none. Undefined and callables are errors.
absl::StatusOr<std::string> ToJson(const Value& v, int indent);
// Number of Unicode code points (Python len of a str).
size_t Utf8Length(std::string_view s);
// Splits UTF-8 text into code points (as byte strings) so str indexing matches Python.
std::vector<std::string_view> Utf8Chars(std::string_view s);

}  // namespace strata::engine::jinja
