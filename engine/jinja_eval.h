// Evaluator of the chat-template interpreter: renders a parsed template (engine/jinja_ast.h)
// with jinja2's semantics (scoping of for/macro/with blocks, loop variable, Undefined handling),
// bounded by RenderLimits so a hostile or buggy template cannot hang or exhaust memory.
//
// RenderTemplate is reentrant: each call owns its scopes and values; the Body is only read, so
// many threads may render the same Body at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/jinja_ast.h"
#include "engine/jinja_value.h"

namespace strata::engine::jinja {

struct RenderLimits {
  int64_t max_iterations = 1'000'000;  // for-loop iterations, all loops of one render together
  size_t max_output = 4 << 20;         // bytes of output (and of any one string value)
  int max_call_depth = 64;             // nested macro calls
};

// Renders `body` with `context` as the template's variables (on top of jinja2's globals range,
// namespace and dict). Errors: "chat template line N: ..."; a template's own failure raised
// through a callable that returns absl::AbortedError (raise_exception) comes back as
// InvalidArgument with that message unchanged.
absl::StatusOr<std::string> RenderTemplate(const Body& body, ValueDict context,
                                           const RenderLimits& limits);

}  // namespace strata::engine::jinja
