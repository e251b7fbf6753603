// Operators of the chat-template interpreter with Python semantics: arithmetic with overflow
// checks, string/list concatenation and repetition (bounded), comparisons and `in`.
// Errors are plain messages; the evaluator prefixes the template line.
//
// Stateless; any thread.
#pragma once

#include <cstddef>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/jinja_value.h"

namespace strata::engine::jinja {

// op in + - * / // % ** ~. Results longer than `max_size` bytes/items are an error.
absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& a, const Value& b,
                               size_t max_size);
// op in - + (unary).
absl::StatusOr<Value> UnaryOp(std::string_view op, const Value& v);
// op in == != < <= > >= in "not in".
absl::StatusOr<bool> CompareOp(std::string_view op, const Value& a, const Value& b);

}  // namespace strata::engine::jinja
