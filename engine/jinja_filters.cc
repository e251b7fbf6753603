// Filters of engine/jinja_builtins.h, following jinja2 3.1's filters.py (and Hugging Face's own
// tojson, which does not HTML-escape and keeps non-ASCII text).
#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "common/status.h"
#include "engine/jinja_builtins.h"
#include "engine/jinja_text.h"

namespace strata::engine::jinja {
namespace {

using FilterFn = absl::StatusOr<Value> (*)(const Value&, const CallArgs&);

absl::Status Err(std::string_view message) { return absl::InvalidArgumentError(std::string(message)); }

bool BoolArg(const CallArgs& args, size_t i, std::string_view name) {
  const Value* v = args.Get(i, name);
  return v != nullptr && v->Truthy();
}

// Input text of the string filters; an Undefined prints "" like jinja2's soft_str.
std::string Text(const Value& v) { return ToStr(v); }

// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0.
absl::StatusOr<Value> LookupPath(const Value& item, const Value& attribute) {
  if (attribute.is_int()) return GetItem(item, attribute);
  if (!attribute.is_string()) return Err("attribute must be a string or an integer");
  Value cur = item;
  for (const std::string& part : SplitOn(attribute.str(), ".", -1)) {
    int64_t index = 0;
    const auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), index);
    if (ec == std::errc() && ptr == part.data() + part.size()) {
      ASSIGN_OR_RETURN(cur, GetItem(cur, Value(index)));
    } else {
      ASSIGN_OR_RETURN(cur, GetItem(cur, Value(part)));
    }
  }
  return cur;
}

absl::StatusOr<Value> Default(const Value& v, const CallArgs& args) {
  const Value* dflt = args.Get(0, "default_value");
  const bool use = v.is_undefined() || (BoolArg(args, 1, "boolean") && !v.Truthy());
  if (!use) return v;
  return dflt != nullptr ? *dflt : Value(std::string());
}

absl::StatusOr<Value> LengthFilter(const Value& v, const CallArgs&) {
  ASSIGN_OR_RETURN(int64_t n, Length(v));
  return Value(n);
}

absl::StatusOr<Value> ToJsonFilter(const Value& v, const CallArgs& args) {
  const Value* indent = args.Get(0, "indent");
  int width = -1;
  if (indent != nullptr && !indent->is_none()) {
    if (!indent->is_int() || indent->int_value() < 0 || indent->int_value() > 64) {
      return Err("tojson: indent must be an integer in [0, 64]");
    }
    width = static_cast<int>(indent->int_value());
  }
  ASSIGN_OR_RETURN(std::string json, ToJson(v, width));
  return Value(std::move(json));
}

absl::StatusOr<Value> Items(const Value& v, const CallArgs&) {
  if (v.is_undefined()) return Value(ValueList());
  if (!v.is_dict()) return Err("Can only get item pairs from a mapping.");
  ValueList out;
  for (const auto& [k, item] : v.dict().entries) out.emplace_back(ValueList{Value(k), item});
  return Value(std::move(out));
}

absl::StatusOr<Value> Trim(const Value& v, const CallArgs& args) {
  const Value* chars = args.Get(0, "chars");
  if (chars == nullptr || chars->is_none()) return Value(std::string(StripSpace(Text(v), true, true)));
  if (!chars->is_string()) return Err("trim: chars must be a string");
  return Value(StripChars(Text(v), chars->str(), true, true));
}

absl::StatusOr<Value> Upper(const Value& v, const CallArgs&) { return Value(AsciiUpper(Text(v))); }
absl::StatusOr<Value> Lower(const Value& v, const CallArgs&) { return Value(AsciiLower(Text(v))); }
absl::StatusOr<Value> Title(const Value& v, const CallArgs&) { return Value(JinjaTitle(Text(v))); }
absl::StatusOr<Value> CapitalizeFilter(const Value& v, const CallArgs&) {
  return Value(Capitalize(Text(v)));
}
absl::StatusOr<Value> StringFilter(const Value& v, const CallArgs&) { return Value(Text(v)); }
absl::StatusOr<Value> Safe(const Value& v, const CallArgs&) { return v; }
absl::StatusOr<Value> Escape(const Value& v, const CallArgs&) { return Value(HtmlEscape(Text(v))); }

absl::StatusOr<Value> First(const Value& v, const CallArgs&) {
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return items.front();
}

absl::StatusOr<Value> Last(const Value& v, const CallArgs&) {
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

absl::StatusOr<Value> Join(const Value& v, const CallArgs& args) {
  const Value* sep = args.Get(0, "d");
  const Value* attribute = args.Get(1, "attribute");
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0 && sep != nullptr) out += Text(*sep);
    if (attribute != nullptr && !attribute->is_none()) {
      ASSIGN_OR_RETURN(Value x, LookupPath(items[i], *attribute));
      out += Text(x);
    } else {
      out += Text(items[i]);
    }
  }
  return Value(std::move(out));
}

absl::StatusOr<Value> ReplaceFilter(const Value& v, const CallArgs& args) {
  const Value* from = args.Get(0, "old");
  const Value* to = args.Get(1, "new");
  const Value* count = args.Get(2, "count");
  if (from == nullptr || to == nullptr) return Err("replace needs 'old' and 'new'");
  return Value(Replace(Text(v), Text(*from), Text(*to),
                       count != nullptr && count->is_int() ? count->int_value() : -1));
}

// Python int(str): optional sign, digits with single underscores, surrounding whitespace.
std::optional<int64_t> ParseInt(std::string_view s, int base) {
  std::string digits(StripSpace(s, true, true));
  digits.erase(std::remove(digits.begin(), digits.end(), '_'), digits.end());
  if (!digits.empty() && digits[0] == '+') digits.erase(0, 1);
  int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
  if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size()) return std::nullopt;
  return v;
}

std::optional<double> ParseFloat(std::string_view s) {
  const std::string text(StripSpace(s, true, true));
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return v;
}

absl::StatusOr<Value> Int(const Value& v, const CallArgs& args) {
  const Value* dflt = args.Get(0, "default");
  const Value* base = args.Get(1, "base");
  const Value fallback = dflt != nullptr ? *dflt : Value(int64_t{0});
  if (v.is_int()) return v;
  if (v.is_bool()) return Value(int64_t{v.bool_value()});
  if (v.is_float()) {
    if (!std::isfinite(v.float_value()) || std::fabs(v.float_value()) > 9.2e18) return fallback;
    return Value(static_cast<int64_t>(v.float_value()));
  }
  if (!v.is_string()) return fallback;
  const int b = base != nullptr && base->is_int() ? static_cast<int>(base->int_value()) : 10;
  if (b < 2 || b > 36) return Err("int: base must be in [2, 36]");
  if (std::optional<int64_t> i = ParseInt(v.str(), b)) return Value(*i);
  if (std::optional<double> f = ParseFloat(v.str()); f && std::isfinite(*f) && std::fabs(*f) < 9.2e18) {
    return Value(static_cast<int64_t>(*f));
  }
  return fallback;
}

absl::StatusOr<Value> Float(const Value& v, const CallArgs& args) {
  const Value* dflt = args.Get(0, "default");
  const Value fallback = dflt != nullptr ? *dflt : Value(0.0);
  if (v.is_number()) return Value(v.AsDouble());
  if (!v.is_string()) return fallback;
  if (std::optional<double> f = ParseFloat(v.str())) return Value(*f);
  return fallback;
}

absl::StatusOr<Value> List(const Value& v, const CallArgs&) {
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  return Value(std::move(items));
}

absl::StatusOr<Value> Abs(const Value& v, const CallArgs&) {
  if (v.is_int()) {
    if (v.int_value() == INT64_MIN) return Err("abs: integer overflow");
    return Value(v.int_value() < 0 ? -v.int_value() : v.int_value());
  }
  if (v.is_bool()) return Value(int64_t{v.bool_value()});
  if (v.is_float()) return Value(std::fabs(v.float_value()));
  return Err(StrCat("bad operand type for abs(): '", v.TypeName(), "'"));
}

// Python's round(x, n): correctly rounded, ties to even (printf rounds the exact binary value
// the same way). Ints stay ints.
absl::StatusOr<Value> Round(const Value& v, const CallArgs& args) {
  if (!v.is_number()) return Err(StrCat("round needs a number, got ", v.TypeName()));
  const Value* precision = args.Get(0, "precision");
  const Value* method = args.Get(1, "method");
  const int64_t digits = precision != nullptr && precision->is_int() ? precision->int_value() : 0;
  if (digits < 0 || digits > 17) return Err("round: precision must be in [0, 17]");
  const std::string how = method != nullptr ? Text(*method) : "common";
  if (how == "common") {
    if (!v.is_float()) return Value(static_cast<int64_t>(v.AsDouble()));
    if (!std::isfinite(v.float_value())) return v;
    return Value(std::strtod(absl::StrFormat("%.*f", static_cast<int>(digits), v.float_value()).c_str(),
                             nullptr));
  }
  const double scale = std::pow(10.0, static_cast<double>(digits));
  if (how == "ceil") return Value(std::ceil(v.AsDouble() * scale) / scale);
  if (how == "floor") return Value(std::floor(v.AsDouble() * scale) / scale);
  return Err("round: method must be 'common', 'ceil' or 'floor'");
}

absl::StatusOr<Value> Reverse(const Value& v, const CallArgs&) {
  if (v.is_string()) {
    std::vector<std::string_view> chars = Utf8Chars(v.str());
    std::string out;
    for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
    return Value(std::move(out));
  }
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  std::reverse(items.begin(), items.end());
  return Value(std::move(items));
}

// The sort/unique/min/max key: the attribute when given, lower-cased unless case-sensitive.
absl::StatusOr<Value> SortKey(const Value& item, const Value* attribute, bool case_sensitive) {
  Value key = item;
  if (attribute != nullptr && !attribute->is_none()) {
    ASSIGN_OR_RETURN(key, LookupPath(item, *attribute));
  }
  if (!case_sensitive && key.is_string()) return Value(AsciiLower(key.str()));
  return key;
}

absl::StatusOr<ValueList> SortItems(ValueList items, const Value* attribute, bool case_sensitive,
                                    bool reverse) {
  std::vector<std::pair<Value, size_t>> keys;
  for (size_t i = 0; i < items.size(); ++i) {
    ASSIGN_OR_RETURN(Value key, SortKey(items[i], attribute, case_sensitive));
    keys.emplace_back(std::move(key), i);
  }
  absl::Status error;
  std::stable_sort(keys.begin(), keys.end(), [&](const auto& a, const auto& b) {
    absl::StatusOr<int> c = Compare(reverse ? b.first : a.first, reverse ? a.first : b.first);
    if (!c.ok()) {
      error = c.status();
      return false;
    }
    return *c < 0;
  });
  RETURN_IF_ERROR(error);
  ValueList out;
  for (const auto& [key, index] : keys) out.push_back(items[index]);
  return out;
}

absl::StatusOr<Value> Sort(const Value& v, const CallArgs& args) {
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  ASSIGN_OR_RETURN(ValueList sorted,
                   SortItems(std::move(items), args.Get(2, "attribute"),
                             BoolArg(args, 1, "case_sensitive"), BoolArg(args, 0, "reverse")));
  return Value(std::move(sorted));
}

absl::StatusOr<Value> Unique(const Value& v, const CallArgs& args) {
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  const bool case_sensitive = BoolArg(args, 0, "case_sensitive");
  ValueList out, seen;
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value key, SortKey(item, args.Get(1, "attribute"), case_sensitive));
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return Equals(s, key); })) {
      seen.push_back(std::move(key));
      out.push_back(item);
    }
  }
  return Value(std::move(out));
}

absl::StatusOr<Value> DictSort(const Value& v, const CallArgs& args) {
  ASSIGN_OR_RETURN(Value pairs, Items(v, args));
  const Value* by = args.Get(1, "by");
  const std::string by_what = by != nullptr ? Text(*by) : "key";
  if (by_what != "key" && by_what != "value") return Err("dictsort: 'by' must be 'key' or 'value'");
  const Value position(int64_t{by_what == "key" ? 0 : 1});
  ASSIGN_OR_RETURN(ValueList sorted, SortItems(pairs.list(), &position,
                                               BoolArg(args, 0, "case_sensitive"),
                                               BoolArg(args, 2, "reverse")));
  return Value(std::move(sorted));
}

absl::StatusOr<Value> MinMax(const Value& v, const CallArgs& args, bool max) {
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  if (items.empty()) return Value::Undefined(StrCat("No aggregated item, sequence was empty."));
  ASSIGN_OR_RETURN(ValueList sorted, SortItems(std::move(items), args.Get(1, "attribute"),
                                               BoolArg(args, 0, "case_sensitive"), false));
  return max ? sorted.back() : sorted.front();
}
absl::StatusOr<Value> Min(const Value& v, const CallArgs& args) { return MinMax(v, args, false); }
absl::StatusOr<Value> Max(const Value& v, const CallArgs& args) { return MinMax(v, args, true); }

absl::StatusOr<Value> Sum(const Value& v, const CallArgs& args) {
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  const Value* attribute = args.Get(0, "attribute");
  const Value* start = args.Get(1, "start");
  Value total = start != nullptr ? *start : Value(int64_t{0});
  for (const Value& item : items) {
    Value x = item;
    if (attribute != nullptr && !attribute->is_none()) {
      ASSIGN_OR_RETURN(x, LookupPath(item, *attribute));
    }
    if (!x.is_number() || !total.is_number()) return Err("sum: items must be numbers");
    if (x.is_float() || total.is_float()) {
      total = Value(total.AsDouble() + x.AsDouble());
    } else {
      int64_t r = 0;
      if (__builtin_add_overflow(static_cast<int64_t>(total.AsDouble()),
                                 static_cast<int64_t>(x.AsDouble()), &r)) {
        return Err("sum: integer overflow");
      }
      total = Value(r);
    }
  }
  return total;
}

absl::StatusOr<Value> Attr(const Value& v, const CallArgs& args) {
  const Value* name = args.Get(0, "name");
  if (name == nullptr || !name->is_string()) return Err("attr needs a name");
  return GetAttr(v, name->str());
}

absl::StatusOr<Value> Indent(const Value& v, const CallArgs& args) {
  const Value* width = args.Get(0, "width");
  std::string pad(4, ' ');
  if (width != nullptr && width->is_string()) {
    pad = width->str();
  } else if (width != nullptr) {
    if (!width->is_int() || width->int_value() < 0 || width->int_value() > 1024) {
      return Err("indent: width must be an integer in [0, 1024] or a string");
    }
    pad.assign(static_cast<size_t>(width->int_value()), ' ');
  }
  const bool first = BoolArg(args, 1, "first"), blank = BoolArg(args, 2, "blank");
  // jinja2 appends "\n" before splitlines(), so a trailing newline is dropped.
  std::vector<std::string> lines = SplitLines(Text(v) + "\n");
  std::string out = lines.empty() ? "" : lines[0];
  for (size_t i = 1; i < lines.size(); ++i) {
    out += "\n";
    if (blank || !lines[i].empty()) out += pad;
    out += lines[i];
  }
  return Value(first ? pad + out : out);
}

// select/reject/selectattr/rejectattr: `attr` is null for select/reject.
absl::StatusOr<Value> SelectImpl(const Value& v, const CallArgs& args, bool by_attr, bool keep) {
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  const size_t test_pos = by_attr ? 1 : 0;
  if (by_attr && args.positional.empty()) return Err("selectattr/rejectattr need an attribute");
  const Value* test = args.positional.size() > test_pos ? &args.positional[test_pos] : nullptr;
  if (test != nullptr && (!test->is_string() || !IsKnownTest(test->str()))) {
    return Err(StrCat("unsupported test ", Repr(*test)));
  }
  CallArgs test_args;
  for (size_t i = test_pos + 1; i < args.positional.size(); ++i) {
    test_args.positional.push_back(args.positional[i]);
  }
  ValueList out;
  for (const Value& item : items) {
    Value x = item;
    if (by_attr) {
      ASSIGN_OR_RETURN(x, LookupPath(item, args.positional[0]));
    }
    bool pass = x.Truthy();
    if (test != nullptr) {
      ASSIGN_OR_RETURN(pass, ApplyTest(test->str(), x, test_args));
    }
    if (pass == keep) out.push_back(item);
  }
  return Value(std::move(out));
}

absl::StatusOr<Value> Select(const Value& v, const CallArgs& a) { return SelectImpl(v, a, false, true); }
absl::StatusOr<Value> Reject(const Value& v, const CallArgs& a) { return SelectImpl(v, a, false, false); }
absl::StatusOr<Value> SelectAttr(const Value& v, const CallArgs& a) { return SelectImpl(v, a, true, true); }
absl::StatusOr<Value> RejectAttr(const Value& v, const CallArgs& a) { return SelectImpl(v, a, true, false); }

absl::StatusOr<Value> Map(const Value& v, const CallArgs& args) {
  ASSIGN_OR_RETURN(ValueList items, Iterate(v));
  const Value* attribute = nullptr;
  const Value* dflt = nullptr;
  for (const auto& [k, x] : args.keyword) {
    if (k == "attribute") attribute = &x;
    if (k == "default") dflt = &x;
  }
  ValueList out;
  if (attribute != nullptr) {
    for (const Value& item : items) {
      ASSIGN_OR_RETURN(Value x, LookupPath(item, *attribute));
      out.push_back(x.is_undefined() && dflt != nullptr ? *dflt : std::move(x));
    }
    return Value(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string() ||
      !IsKnownFilter(args.positional[0].str())) {
    return Err("map needs attribute=... or the name of a supported filter");
  }
  CallArgs filter_args;
  filter_args.positional.assign(args.positional.begin() + 1, args.positional.end());
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value x, ApplyFilter(args.positional[0].str(), item, filter_args));
    out.push_back(std::move(x));
  }
  return Value(std::move(out));
}

struct FilterEntry {
  std::string_view name;
  FilterFn fn;
};

constexpr std::array<FilterEntry, 39> kFilters = {{
    {"abs", Abs}, {"attr", Attr}, {"capitalize", CapitalizeFilter}, {"count", LengthFilter},
    {"d", Default}, {"default", Default}, {"dictsort", DictSort}, {"e", Escape},
    {"escape", Escape}, {"first", First}, {"float", Float}, {"indent", Indent}, {"int", Int},
    {"items", Items}, {"join", Join}, {"last", Last}, {"length", LengthFilter}, {"list", List},
    {"lower", Lower}, {"map", Map}, {"max", Max}, {"min", Min}, {"reject", Reject},
    {"rejectattr", RejectAttr}, {"replace", ReplaceFilter}, {"reverse", Reverse},
    {"round", Round}, {"safe", Safe}, {"select", Select}, {"selectattr", SelectAttr},
    {"sort", Sort}, {"string", StringFilter}, {"sum", Sum}, {"title", Title},
    {"tojson", ToJsonFilter}, {"trim", Trim}, {"unique", Unique}, {"upper", Upper},
    {"forceescape", Escape},
}};

const FilterEntry* FindFilter(std::string_view name) {
  for (const FilterEntry& f : kFilters) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

}  // namespace

bool IsKnownFilter(std::string_view name) { return FindFilter(name) != nullptr; }

absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& input, const CallArgs& args) {
  const FilterEntry* f = FindFilter(name);
  if (f == nullptr) return Err(StrCat("unsupported filter '", name, "'"));
  return f->fn(input, args);
}

}  // namespace strata::engine::jinja
