// Tests, methods and access rules of engine/jinja_builtins.h (filters are in jinja_filters.cc).
#include <algorithm>
#include <array>
#include <cmath>

#include "common/status.h"
#include "engine/jinja_builtins.h"
#include "engine/jinja_text.h"

namespace strata::engine::jinja {
namespace {

absl::Status Err(std::string_view message) { return absl::InvalidArgumentError(std::string(message)); }

// jinja2's object_type_repr, quoted as its Undefined messages quote it.
std::string ObjectName(const Value& v) {
  if (v.is_none()) return "'None'";
  if (v.is_namespace()) return "'jinja2.utils.Namespace object'";
  return StrCat("'", v.TypeName(), " object'");
}

// jinja2 leaves the type unquoted in "has no element" messages.
Value MissingElement(const Value& obj, const Value& key) {
  const std::string type = ObjectName(obj);
  return Value::Undefined(StrCat(type.substr(1, type.size() - 2), " has no element ", Repr(key)));
}

// jinja2's message for a missing attribute or key of `obj`.
Value MissingAttr(const Value& obj, std::string_view name) {
  return Value::Undefined(StrCat(ObjectName(obj), " has no attribute '", name, "'"));
}

bool IsIntLike(const Value& v) { return v.is_int() || v.is_bool(); }
int64_t IntOf(const Value& v) { return v.is_bool() ? v.bool_value() : v.int_value(); }

// ---- tests ----

absl::StatusOr<bool> CompareTest(std::string_view name, const Value& a, const Value& b) {
  if (name == "eq" || name == "equalto") return Equals(a, b);
  if (name == "ne") return !Equals(a, b);
  ASSIGN_OR_RETURN(int c, Compare(a, b));
  if (name == "lt") return c < 0;
  if (name == "le") return c <= 0;
  if (name == "gt") return c > 0;
  return c >= 0;  // ge
}

absl::StatusOr<bool> ArgTest(std::string_view name, const Value& v, const CallArgs& args) {
  const Value* arg = args.Get(0, name == "divisibleby" ? "num" : "other");
  if (arg == nullptr) return Err(StrCat("test '", name, "' needs an argument"));
  if (name == "divisibleby") {
    if (!IsIntLike(v) || !IsIntLike(*arg)) {
      if (!v.is_number() || !arg->is_number()) return Err("divisibleby needs numbers");
      return std::fmod(v.AsDouble(), arg->AsDouble()) == 0.0;
    }
    if (IntOf(*arg) == 0) return Err("divisibleby: division by zero");
    return IntOf(v) % IntOf(*arg) == 0;
  }
  if (name == "sameas") {
    if (v.kind() != arg->kind()) return false;
    if (v.is_list() || v.is_dict() || v.is_namespace()) {
      return v.is_list() ? &v.list() == &arg->list() : &v.dict() == &arg->dict();
    }
    return Equals(v, *arg);
  }
  if (name == "in") {
    if (arg->is_string()) {
      if (!v.is_string()) return Err("'in <string>' requires string as left operand");
      return arg->str().find(v.str()) != std::string::npos;
    }
    ASSIGN_OR_RETURN(ValueList items, Iterate(*arg));
    return std::any_of(items.begin(), items.end(), [&](const Value& x) { return Equals(x, v); });
  }
  return CompareTest(name, v, *arg);
}

bool AllCased(std::string_view s, bool upper) {
  bool any = false;
  for (char c : s) {
    if (upper ? std::islower(static_cast<unsigned char>(c)) : std::isupper(static_cast<unsigned char>(c))) {
      return false;
    }
    any = any || std::isalpha(static_cast<unsigned char>(c));
  }
  return any;
}

constexpr std::array<std::string_view, 30> kTests = {
    "defined", "undefined", "none",        "string",   "number",      "mapping",
    "iterable", "sequence", "true",        "false",    "boolean",     "integer",
    "float",   "odd",       "even",        "equalto",  "eq",          "ne",
    "divisibleby", "callable", "lower",    "upper",    "in",          "lt",
    "le",      "gt",        "ge",          "sameas",   "greaterthan", "lessthan"};

}  // namespace

bool IsKnownTest(std::string_view name) {
  return std::find(kTests.begin(), kTests.end(), name) != kTests.end();
}

absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& v, const CallArgs& args) {
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "mapping") return v.is_dict();
  // Undefined has __iter__ and __len__ in jinja2, so it counts as iterable and a sequence.
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "true") return v.is_bool() && v.bool_value();
  if (name == "false") return v.is_bool() && !v.bool_value();
  if (name == "boolean") return v.is_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "callable") return v.is_callable();
  if (name == "lower") return v.is_string() && AllCased(v.str(), false);
  if (name == "upper") return v.is_string() && AllCased(v.str(), true);
  if (name == "odd" || name == "even") {
    if (v.is_undefined()) return UndefinedError(v);
    if (!IsIntLike(v)) return Err(StrCat("test '", name, "' needs an integer, got ", v.TypeName()));
    const bool odd = (IntOf(v) % 2) != 0;
    return name == "odd" ? odd : !odd;
  }
  if (name == "greaterthan") return ArgTest("gt", v, args);
  if (name == "lessthan") return ArgTest("lt", v, args);
  return ArgTest(name, v, args);
}

absl::Status UndefinedError(const Value& v) { return Err(v.undefined_reason()); }

// ---- access ----

absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined: return UndefinedError(obj);
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      const Value* v = obj.dict().Find(name);
      return v != nullptr ? *v : MissingAttr(obj, name);
    }
    default: return MissingAttr(obj, name);
  }
}

namespace {

// Python's index normalization for obj[i]; nullopt when out of range.
std::optional<size_t> NormalizeIndex(int64_t i, size_t size) {
  const int64_t n = static_cast<int64_t>(size);
  if (i < 0) i += n;
  if (i < 0 || i >= n) return std::nullopt;
  return static_cast<size_t>(i);
}

}  // namespace

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_dict() || obj.is_namespace()) {
    if (!key.is_string()) {
      return MissingElement(obj, key);
    }
    return GetAttr(obj, key.str());
  }
  if ((obj.is_list() || obj.is_string()) && IsIntLike(key)) {
    const bool is_list = obj.is_list();
    std::vector<std::string_view> chars;
    if (!is_list) chars = Utf8Chars(obj.str());
    const std::optional<size_t> i =
        NormalizeIndex(IntOf(key), is_list ? obj.list().size() : chars.size());
    if (!i) return MissingElement(obj, key);
    return is_list ? obj.list()[*i] : Value(std::string(chars[*i]));
  }
  if (key.is_string()) return GetAttr(obj, key.str());
  return MissingElement(obj, key);
}

absl::StatusOr<Value> GetSlice(const Value& obj, std::optional<int64_t> start,
                               std::optional<int64_t> stop, std::optional<int64_t> step) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (!obj.is_list() && !obj.is_string()) {
    return Err(StrCat(ObjectName(obj), " is not subscriptable"));
  }
  const int64_t st = step.value_or(1);
  if (st == 0) return Err("slice step cannot be zero");
  std::vector<std::string_view> chars;
  if (obj.is_string()) chars = Utf8Chars(obj.str());
  const int64_t n = static_cast<int64_t>(obj.is_list() ? obj.list().size() : chars.size());
  // PySlice_AdjustIndices.
  auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) x = std::max<int64_t>(x + n, st < 0 ? -1 : 0);
    else if (x >= n) x = st < 0 ? n - 1 : n;
    return x;
  };
  const int64_t lo = clamp(start, st < 0 ? n - 1 : 0);
  const int64_t hi = clamp(stop, st < 0 ? -1 : n);
  ValueList items;
  std::string text;
  for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) {
    if (obj.is_list()) items.push_back(obj.list()[i]);
    else text += chars[i];
  }
  return obj.is_list() ? Value(std::move(items)) : Value(std::move(text));
}

absl::StatusOr<ValueList> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return ValueList();
    case Value::Kind::kList: return v.list();
    case Value::Kind::kDict: {
      ValueList keys;
      for (const auto& [k, item] : v.dict().entries) keys.emplace_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      ValueList chars;
      for (std::string_view c : Utf8Chars(v.str())) chars.emplace_back(std::string(c));
      return chars;
    }
    default: return Err(StrCat("'", v.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<int64_t> Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return 0;
    case Value::Kind::kString: return static_cast<int64_t>(Utf8Length(v.str()));
    case Value::Kind::kList: return static_cast<int64_t>(v.list().size());
    case Value::Kind::kDict: return static_cast<int64_t>(v.dict().entries.size());
    default: return Err(StrCat("object of type '", v.TypeName(), "' has no len()"));
  }
}

// ---- methods ----

namespace {

constexpr std::array<std::string_view, 16> kStrMethods = {
    "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "upper", "lower",
    "replace", "title", "capitalize", "find", "count", "join", "isdigit", "splitlines"};
constexpr std::array<std::string_view, 4> kDictMethods = {"get", "items", "keys", "values"};

absl::StatusOr<std::string> StrArg(const CallArgs& args, size_t i, std::string_view name,
                                   std::string_view method) {
  const Value* v = args.Get(i, name);
  if (v == nullptr || !v->is_string()) {
    return Err(StrCat("str.", method, "() argument '", name, "' must be a string"));
  }
  return v->str();
}

// The optional `chars` argument of strip/lstrip/rstrip (None = whitespace).
absl::StatusOr<Value> StripMethod(const std::string& s, std::string_view method,
                                  const CallArgs& args) {
  const bool left = method != "rstrip", right = method != "lstrip";
  const Value* chars = args.Get(0, "chars");
  if (chars == nullptr || chars->is_none()) return Value(std::string(StripSpace(s, left, right)));
  if (!chars->is_string()) return Err(StrCat("str.", method, "() argument must be a string"));
  return Value(StripChars(s, chars->str(), left, right));
}

absl::StatusOr<Value> AffixMethod(const std::string& s, std::string_view method,
                                  const CallArgs& args) {
  const Value* arg = args.Get(0, "prefix");
  if (arg == nullptr) return Err(StrCat("str.", method, "() takes at least 1 argument"));
  ValueList options = arg->is_list() ? arg->list() : ValueList{*arg};
  for (const Value& o : options) {
    if (!o.is_string()) return Err(StrCat("str.", method, "() argument must be a string"));
    const std::string& a = o.str();
    if (a.size() > s.size()) continue;
    if (method == "startswith" ? s.compare(0, a.size(), a) == 0
                               : s.compare(s.size() - a.size(), a.size(), a) == 0) {
      return Value(true);
    }
  }
  return Value(false);
}

absl::StatusOr<Value> SplitMethod(const std::string& s, const CallArgs& args) {
  const Value* sep = args.Get(0, "sep");
  const Value* max = args.Get(1, "maxsplit");
  int64_t maxsplit = -1;
  if (max != nullptr) {
    if (!max->is_int()) return Err("str.split() maxsplit must be an integer");
    maxsplit = max->int_value();
  }
  std::vector<std::string> parts;
  if (sep == nullptr || sep->is_none()) {
    parts = SplitWhitespace(s, maxsplit);
  } else {
    if (!sep->is_string() || sep->str().empty()) return Err("str.split() needs a non-empty separator");
    parts = SplitOn(s, sep->str(), maxsplit);
  }
  ValueList out;
  for (std::string& p : parts) out.emplace_back(std::move(p));
  return Value(std::move(out));
}

absl::StatusOr<Value> StrMethod(const std::string& s, std::string_view m, const CallArgs& args) {
  if (m == "strip" || m == "lstrip" || m == "rstrip") return StripMethod(s, m, args);
  if (m == "startswith" || m == "endswith") return AffixMethod(s, m, args);
  if (m == "split") return SplitMethod(s, args);
  if (m == "upper") return Value(AsciiUpper(s));
  if (m == "lower") return Value(AsciiLower(s));
  if (m == "title") return Value(PyTitle(s));
  if (m == "capitalize") return Value(Capitalize(s));
  if (m == "isdigit") {
    return Value(!s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }));
  }
  if (m == "splitlines") {
    ValueList out;
    for (std::string& line : SplitLines(s)) out.emplace_back(std::move(line));
    return Value(std::move(out));
  }
  ASSIGN_OR_RETURN(std::string a, StrArg(args, 0, m == "join" ? "iterable" : "sub", m));
  if (m == "replace") {
    ASSIGN_OR_RETURN(std::string b, StrArg(args, 1, "new", m));
    const Value* count = args.Get(2, "count");
    return Value(Replace(s, a, b, count != nullptr && count->is_int() ? count->int_value() : -1));
  }
  if (m == "find") {
    const size_t pos = s.find(a);
    return Value(pos == std::string::npos ? int64_t{-1}
                                          : static_cast<int64_t>(Utf8Length(s.substr(0, pos))));
  }
  if (m == "count") return Value(CountOccurrences(s, a));
  return Err("str.join() is not supported; use the join filter");
}

absl::StatusOr<Value> DictMethod(const Value& d, std::string_view m, const CallArgs& args) {
  if (m == "get") {
    const Value* key = args.Get(0, "key");
    if (key == nullptr) return Err("dict.get() takes at least 1 argument");
    const Value* dflt = args.Get(1, "default");
    const Value* found = key->is_string() ? d.dict().Find(key->str()) : nullptr;
    if (found != nullptr) return *found;
    return dflt != nullptr ? *dflt : Value();
  }
  ValueList out;
  for (const auto& [k, v] : d.dict().entries) {
    if (m == "items") out.emplace_back(ValueList{Value(k), v});
    else if (m == "keys") out.emplace_back(k);
    else out.push_back(v);
  }
  return Value(std::move(out));
}

}  // namespace

bool HasMethod(const Value& obj, std::string_view name) {
  if (obj.is_string()) {
    return std::find(kStrMethods.begin(), kStrMethods.end(), name) != kStrMethods.end();
  }
  if (obj.is_dict()) {
    return std::find(kDictMethods.begin(), kDictMethods.end(), name) != kDictMethods.end();
  }
  return false;
}

absl::StatusOr<Value> CallMethod(const Value& obj, std::string_view name, const CallArgs& args) {
  if (obj.is_string()) return StrMethod(obj.str(), name, args);
  if (obj.is_dict()) return DictMethod(obj, name, args);
  return Err(StrCat("unsupported method '", name, "' of ", ObjectName(obj)));
}

}  // namespace strata::engine::jinja
