// Builtins of the chat-template interpreter (engine/chat_template.h): jinja2's filters and tests,
// the str/dict methods templates call, and jinja2's attribute/item/slice access rules, with the
// Python semantics Hugging Face's sandboxed environment gives them.
//
// Errors are plain messages ("unsupported method 'append' of 'list' object"); the evaluator
// prefixes the template line. Stateless; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/jinja_value.h"

namespace strata::engine::jinja {

// Names the parser accepts after `|` and `is` (checked at parse time, like jinja2).
bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);

absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& input, const CallArgs& args);
absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& input, const CallArgs& args);

// True when `obj.name(...)` is a supported method call (str and dict methods; dict methods win
// over keys, like Python's getattr).
bool HasMethod(const Value& obj, std::string_view name);
absl::StatusOr<Value> CallMethod(const Value& obj, std::string_view name, const CallArgs& args);

// The error raised when an Undefined value is used ("'x' is undefined").
absl::Status UndefinedError(const Value& v);

// jinja2's environment.getattr / getitem: a missing attribute, key or index gives an Undefined
// naming it; using an Undefined (or indexing a value that has no items) is an error.
absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name);
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
// obj[start:stop:step] on a str (by code point) or list, with Python's index clamping.
absl::StatusOr<Value> GetSlice(const Value& obj, std::optional<int64_t> start,
                               std::optional<int64_t> stop, std::optional<int64_t> step);

// The items a `for` loop visits: list items, dict keys, str code points; Undefined gives none.
absl::StatusOr<ValueList> Iterate(const Value& v);

// Length as Python len(); Undefined has length 0.
absl::StatusOr<int64_t> Length(const Value& v);

}  // namespace strata::engine::jinja
