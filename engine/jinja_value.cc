#include "engine/jinja_value.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "common/status.h"

namespace strata::engine::jinja {

const Value* ValueDict::Find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

void ValueDict::Set(std::string key, Value value) {
  for (auto& [k, v] : entries) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

const Value* CallArgs::Get(size_t index, std::string_view name) const {
  if (index < positional.size()) return &positional[index];
  for (const auto& [k, v] : keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

Value::Value(ValueList list)
    : kind_(Kind::kList), data_(std::make_shared<ValueList>(std::move(list))) {}

Value::Value(ValueDict dict)
    : kind_(Kind::kDict), data_(std::make_shared<ValueDict>(std::move(dict))) {}

Value Value::Undefined(std::string reason) { return Value(Kind::kUndefined, std::move(reason)); }

Value Value::Namespace(ValueDict attrs) {
  return Value(Kind::kNamespace, std::make_shared<ValueDict>(std::move(attrs)));
}

Value Value::Function(std::string name,
                      std::function<absl::StatusOr<Value>(const CallArgs&)> fn) {
  return Value(Kind::kCallable,
               std::make_shared<Callable>(Callable{std::move(name), std::move(fn)}));
}

double Value::AsDouble() const {
  if (is_float()) return float_value();
  if (is_bool()) return bool_value() ? 1.0 : 0.0;
  return static_cast<double>(int_value());
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool: return bool_value();
    case Kind::kInt: return int_value() != 0;
    case Kind::kFloat: return float_value() != 0.0;
    case Kind::kString: return !str().empty();
    case Kind::kList: return !list().empty();
    case Kind::kDict: return !dict().entries.empty();
    case Kind::kNamespace:
    case Kind::kCallable: return true;
  }
  return false;
}

std::string Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kCallable: return "function";
  }
  return "?";
}

std::string FormatFloat(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char sci[64];
  auto res = std::to_chars(sci, sci + sizeof(sci), f, std::chars_format::scientific);
  std::string_view s(sci, res.ptr - sci);
  const size_t e_pos = s.find('e');
  const int exponent = std::atoi(std::string(s.substr(e_pos + 1)).c_str());
  // Python's repr switches to exponent notation outside [1e-4, 1e16).
  if (exponent < -4 || exponent >= 16) return std::string(s);
  char fixed[64];
  res = std::to_chars(fixed, fixed + sizeof(fixed), f, std::chars_format::fixed);
  std::string out(fixed, res.ptr - fixed);
  if (out.find('.') == std::string::npos) out += ".0";
  return out;
}

namespace {

std::string ReprString(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : s) {
    if (c == quote || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

}  // namespace

std::string Repr(const Value& v) {
  if (v.is_string()) return ReprString(v.str());
  return ToStr(v);
}

std::string ToStr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return "";
    case Value::Kind::kNone: return "None";
    case Value::Kind::kBool: return v.bool_value() ? "True" : "False";
    case Value::Kind::kInt: return std::to_string(v.int_value());
    case Value::Kind::kFloat: return FormatFloat(v.float_value());
    case Value::Kind::kString: return v.str();
    case Value::Kind::kList: {
      std::string out = "[";
      for (size_t i = 0; i < v.list().size(); ++i) {
        if (i > 0) out += ", ";
        out += Repr(v.list()[i]);
      }
      return out + "]";
    }
    case Value::Kind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, item] : v.dict().entries) {
        if (!first) out += ", ";
        first = false;
        out += ReprString(k) + ": " + Repr(item);
      }
      return out + "}";
    }
    case Value::Kind::kNamespace: return "<Namespace>";
    case Value::Kind::kCallable: return "<function " + v.callable().name + ">";
  }
  return "";
}

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.AsDouble() == b.AsDouble();
    const int64_t x = a.is_bool() ? a.bool_value() : a.int_value();
    const int64_t y = b.is_bool() ? b.bool_value() : b.int_value();
    return x == y;
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.str() == b.str();
    case Value::Kind::kList: {
      if (a.list().size() != b.list().size()) return false;
      for (size_t i = 0; i < a.list().size(); ++i) {
        if (!Equals(a.list()[i], b.list()[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict().entries.size() != b.dict().entries.size()) return false;
      for (const auto& [k, item] : a.dict().entries) {
        const Value* other = b.dict().Find(k);
        if (other == nullptr || !Equals(item, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace: return &a.dict() == &b.dict();
    case Value::Kind::kCallable: return &a.callable() == &b.callable();
    default: return false;
  }
}

absl::StatusOr<int> Compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.AsDouble(), y = b.AsDouble();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    const int64_t x = a.is_bool() ? a.bool_value() : a.int_value();
    const int64_t y = b.is_bool() ? b.bool_value() : b.int_value();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list()) {
    const ValueList& x = a.list();
    const ValueList& y = b.list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (Equals(x[i], y[i])) continue;
      return Compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  return absl::InvalidArgumentError(
      StrCat("cannot compare '", a.TypeName(), "' with '", b.TypeName(), "'"));
}

namespace {

void JsonString(const std::string& s, std::string* out) {
  *out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          *out += buf;
        } else {
          *out += static_cast<char>(c);
        }
    }
  }
  *out += '"';
}

absl::Status JsonValue(const Value& v, int indent, int depth, std::string* out);

void JsonNewline(int indent, int depth, std::string* out) {
  *out += '\n';
  out->append(static_cast<size_t>(indent * depth), ' ');
}

absl::Status JsonContainer(const Value& v, int indent, int depth, std::string* out) {
  const bool is_list = v.is_list();
  const size_t n = is_list ? v.list().size() : v.dict().entries.size();
  *out += is_list ? '[' : '{';
  if (n == 0) {
    *out += is_list ? ']' : '}';
    return absl::OkStatus();
  }
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) *out += indent >= 0 ? "," : ", ";
    if (indent >= 0) JsonNewline(indent, depth + 1, out);
    if (is_list) {
      RETURN_IF_ERROR(JsonValue(v.list()[i], indent, depth + 1, out));
    } else {
      const auto& [key, item] = v.dict().entries[i];
      JsonString(key, out);
      *out += ": ";
      RETURN_IF_ERROR(JsonValue(item, indent, depth + 1, out));
    }
  }
  if (indent >= 0) JsonNewline(indent, depth, out);
  *out += is_list ? ']' : '}';
  return absl::OkStatus();
}

absl::Status JsonValue(const Value& v, int indent, int depth, std::string* out) {
  if (depth > 100) return absl::InvalidArgumentError("tojson: value nested too deeply");
  switch (v.kind()) {
    case Value::Kind::kNone: *out += "null"; return absl::OkStatus();
    case Value::Kind::kBool: *out += v.bool_value() ? "true" : "false"; return absl::OkStatus();
    case Value::Kind::kInt: *out += std::to_string(v.int_value()); return absl::OkStatus();
    case Value::Kind::kFloat: {
      const double f = v.float_value();
      if (std::isnan(f)) *out += "NaN";
      else if (std::isinf(f)) *out += f > 0 ? "Infinity" : "-Infinity";
      else *out += FormatFloat(f);
      return absl::OkStatus();
    }
    case Value::Kind::kString: JsonString(v.str(), out); return absl::OkStatus();
    case Value::Kind::kList:
    case Value::Kind::kDict: return JsonContainer(v, indent, depth, out);
    default:
      return absl::InvalidArgumentError(
          StrCat("tojson: object of type '", v.TypeName(), "' is not JSON serializable"));
  }
}

}  // namespace

absl::StatusOr<std::string> ToJson(const Value& v, int indent) {
  std::string out;
  RETURN_IF_ERROR(JsonValue(v, indent, 0, &out));
  return out;
}

size_t Utf8Length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

std::vector<std::string_view> Utf8Chars(std::string_view s) {
  std::vector<std::string_view> chars;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i + 1;
    while (j < s.size() && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) ++j;
    chars.push_back(s.substr(i, j - i));
    i = j;
  }
  return chars;
}

}  // namespace strata::engine::jinja
