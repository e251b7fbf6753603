#include "server/api_error.h"

#include "absl/strings/cord.h"

namespace strata::server {
namespace {

constexpr char kParamKey[] = "strata.dev/param";
constexpr char kCodeKey[] = "strata.dev/code";

absl::Status With(absl::Status s, std::string_view param, std::string_view code) {
  if (!param.empty()) s.SetPayload(kParamKey, absl::Cord(std::string(param)));
  if (!code.empty()) s.SetPayload(kCodeKey, absl::Cord(std::string(code)));
  return s;
}

std::string PayloadOf(const absl::Status& s, const char* key) {
  auto p = s.GetPayload(key);
  return p ? std::string(*p) : std::string();
}

}  // namespace

absl::Status BadParam(std::string_view param, std::string_view message) {
  return With(absl::InvalidArgumentError(StrCat("'", param, "': ", message)), param, "");
}

absl::Status ModelNotFound(std::string_view model) {
  return With(absl::NotFoundError(StrCat("The model '", model, "' does not exist")), "model",
              "model_not_found");
}

absl::Status UnknownName(std::string_view param, std::string_view kind, std::string_view name) {
  return With(absl::InvalidArgumentError(
                  StrCat("'", param, "': no ", kind, " named '", name, "' in the configuration")),
              param, "");
}

absl::Status Overloaded(std::string_view message) {
  return With(absl::ResourceExhaustedError(std::string(message)), "", "rate_limit_exceeded");
}

absl::Status Draining() {
  return absl::UnavailableError("the server is shutting down and accepts no new requests");
}

absl::Status BadApiKey() {
  return With(absl::UnauthenticatedError(
                  "Invalid or missing API key: send 'Authorization: Bearer <key>'"),
              "", "invalid_api_key");
}

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

ApiErrorView ToApiError(const absl::Status& status) {
  ApiErrorView e;
  e.http_status = HttpStatusOf(status.code());
  e.message = std::string(status.message());
  e.param = PayloadOf(status, kParamKey);
  e.code = PayloadOf(status, kCodeKey);
  e.type = ErrorTypeOf(e.http_status);
  return e;
}

const char* ErrorTypeOf(int http_status) {
  switch (http_status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return http_status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace strata::server
