// Parser of the chat-template interpreter: Jinja2 source -> syntax tree (engine/jinja_ast.h),
// with jinja2's operator precedence. Filters and tests are checked against the builtins here,
// like jinja2 does at compile time, so a template using an unsupported one fails at model load
// ("chat template line 3: unsupported filter 'wordwrap'"). Tags other than if/for/set/macro/
// with/break/continue fail the same way ("unsupported tag 'include'").
//
// Stateless; any thread.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "engine/jinja_ast.h"

namespace strata::engine::jinja {

absl::StatusOr<Body> ParseTemplate(std::string_view source);

}  // namespace strata::engine::jinja
