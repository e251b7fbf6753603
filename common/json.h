// JSON for file formats (config.json, tokenizer.json, safetensors headers). One place turns the
// parser's exceptions into absl::Status; the typed getters name the key in every error.
// Engine-facing APIs never take or return Json: it stays inside the parsers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "nlohmann/json.hpp"

namespace strata {

using Json = nlohmann::json;

// Parses `text`; `what` (usually the file path) prefixes any error message.
absl::StatusOr<Json> ParseJson(std::string_view text, std::string_view what);

// Typed field access. Missing key -> `fallback` for the Optional variants, error otherwise.
// Errors read "<what>: key 'name': expected <type>".
absl::StatusOr<int64_t> JsonInt(const Json& obj, std::string_view key, std::string_view what);
absl::StatusOr<int64_t> JsonOptionalInt(const Json& obj, std::string_view key, int64_t fallback,
                                        std::string_view what);
absl::StatusOr<double> JsonOptionalDouble(const Json& obj, std::string_view key, double fallback,
                                          std::string_view what);
absl::StatusOr<bool> JsonOptionalBool(const Json& obj, std::string_view key, bool fallback,
                                      std::string_view what);
absl::StatusOr<std::string> JsonString(const Json& obj, std::string_view key,
                                       std::string_view what);
absl::StatusOr<std::string> JsonOptionalString(const Json& obj, std::string_view key,
                                               std::string_view fallback, std::string_view what);

}  // namespace strata
