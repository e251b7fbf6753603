// Errors every front end reports the same way (DESIGN.md §7-8). Handlers return absl::Status;
// the code decides the HTTP status (and is the gRPC status code as is: absl's codes are gRPC's),
// a payload names the offending request field (OpenAI's `param`) and an optional OpenAI `code`.
//
//   InvalidArgument 400   Unauthenticated 401   NotFound 404   ResourceExhausted 429
//   Unavailable 503       (anything else 500)    413 comes from the HTTP layer's body limit.
// Stateless; any thread.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace strata::server {

// 400 naming the field, e.g. BadParam("max_tokens", "must be >= 1, got 0").
absl::Status BadParam(std::string_view param, std::string_view message);
// 404 for a model name that is not served (OpenAI code "model_not_found").
absl::Status ModelNotFound(std::string_view model);
// 400 for a kv_policy / slo_class that the config does not define.
absl::Status UnknownName(std::string_view param, std::string_view kind, std::string_view name);
absl::Status Overloaded(std::string_view message);     // 429
absl::Status Draining();                               // 503
absl::Status BadApiKey();                              // 401

struct ApiErrorView {
  int http_status = 500;
  std::string type;      // invalid_request_error | authentication_error | rate_limit_error | ...
  std::string message;
  std::string param;     // "" when no single field is at fault
  std::string code;      // "" or an OpenAI code such as "model_not_found"
};
ApiErrorView ToApiError(const absl::Status& status);
int HttpStatusOf(absl::StatusCode code);
// OpenAI's error `type` for an HTTP status: invalid_request_error for 4xx not listed,
// authentication_error 401, permission_error 403, rate_limit_error 429,
// service_unavailable 503, server_error for other 5xx.
const char* ErrorTypeOf(int http_status);

}  // namespace strata::server
