#include "common/json.h"

namespace strata {
namespace {

absl::Status TypeError(std::string_view what, std::string_view key, std::string_view type) {
  return absl::InvalidArgumentError(StrCat(what, ": key '", key, "': expected ", type));
}

const Json* Find(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace

absl::StatusOr<Json> ParseJson(std::string_view text, std::string_view what) {
  Json j = Json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(StrCat(what, ": not valid JSON"));
  }
  return j;
}

absl::StatusOr<int64_t> JsonInt(const Json& obj, std::string_view key, std::string_view what) {
  const Json* v = Find(obj, key);
  if (v == nullptr) {
    return absl::InvalidArgumentError(StrCat(what, ": missing key '", key, "'"));
  }
  if (!v->is_number_integer()) return TypeError(what, key, "an integer");
  return v->get<int64_t>();
}

absl::StatusOr<int64_t> JsonOptionalInt(const Json& obj, std::string_view key, int64_t fallback,
                                        std::string_view what) {
  if (Find(obj, key) == nullptr) return fallback;
  return JsonInt(obj, key, what);
}

absl::StatusOr<double> JsonOptionalDouble(const Json& obj, std::string_view key, double fallback,
                                          std::string_view what) {
  const Json* v = Find(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_number()) return TypeError(what, key, "a number");
  return v->get<double>();
}

absl::StatusOr<bool> JsonOptionalBool(const Json& obj, std::string_view key, bool fallback,
                                      std::string_view what) {
  const Json* v = Find(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) return TypeError(what, key, "true or false");
  return v->get<bool>();
}

absl::StatusOr<std::string> JsonString(const Json& obj, std::string_view key,
                                       std::string_view what) {
  const Json* v = Find(obj, key);
  if (v == nullptr) {
    return absl::InvalidArgumentError(StrCat(what, ": missing key '", key, "'"));
  }
  if (!v->is_string()) return TypeError(what, key, "a string");
  return v->get<std::string>();
}

absl::StatusOr<std::string> JsonOptionalString(const Json& obj, std::string_view key,
                                               std::string_view fallback, std::string_view what) {
  if (Find(obj, key) == nullptr) return std::string(fallback);
  return JsonString(obj, key, what);
}

}  // namespace strata
