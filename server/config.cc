// Validation of the typed config (every rule of the schema that is not a YAML type) and the small
// text formats it accepts: byte sizes and API key files.
#include "server/config.h"

#include <algorithm>
#include <cctype>
#include <initializer_list>
#include <limits>
#include <set>

#include "absl/strings/cord.h"
#include "absl/strings/str_join.h"
#include "kvcache/kv_layout.h"
#include "server/config_internal.h"

namespace strata::server {

namespace config_internal {

namespace {
constexpr std::string_view kPathPayload = "type.strata.dev/config-path";
}  // namespace

absl::Status ConfigErrorAt(std::string_view path, std::string_view message) {
  absl::Status s = absl::InvalidArgumentError(StrCatArg(message));
  s.SetPayload(StrCatArg(kPathPayload), absl::Cord(StrCatArg(path)));
  return s;
}

absl::Status ConfigError(std::string_view path, std::string_view problem) {
  return ConfigErrorAt(path, StrCat("config: ", path, ": ", problem));
}

std::optional<std::string> ErrorPath(const absl::Status& status) {
  auto payload = status.GetPayload(StrCatArg(kPathPayload));
  if (!payload.has_value()) return std::nullopt;
  return std::string(*payload);
}

const std::vector<std::string_view>* SparsityFieldsOf(std::string_view type) {
  static const auto* const kFields = new std::map<std::string_view, std::vector<std::string_view>>{
      {"none", {}},
      {"sink_window", {"sink_tokens", "window_tokens"}},
      {"h2o", {"budget_tokens", "recent_tokens"}},
      {"snapkv", {"budget_tokens", "observation_tokens", "pool_kernel"}},
  };
  auto it = kFields->find(type);
  return it == kFields->end() ? nullptr : &it->second;
}

int64_t SparsityConfig::*SparsityMember(std::string_view field) {
  static const auto* const kMembers = new std::map<std::string_view, int64_t SparsityConfig::*>{
      {"sink_tokens", &SparsityConfig::sink_tokens},
      {"window_tokens", &SparsityConfig::window_tokens},
      {"budget_tokens", &SparsityConfig::budget_tokens},
      {"recent_tokens", &SparsityConfig::recent_tokens},
      {"observation_tokens", &SparsityConfig::observation_tokens},
      {"pool_kernel", &SparsityConfig::pool_kernel},
  };
  return kMembers->at(field);
}

const std::vector<std::string_view>& AllSparsityFields() {
  static const auto* const kAll =
      new std::vector<std::string_view>{"sink_tokens",   "window_tokens",      "budget_tokens",
                                        "recent_tokens", "observation_tokens", "pool_kernel"};
  return *kAll;
}

}  // namespace config_internal

namespace {

using config_internal::ConfigError;

const std::initializer_list<std::string_view> kCodecs = {"fp32", "bf16",  "fp16", "fp8",
                                                         "int8", "kivi4", "kivi2"};
const std::initializer_list<std::string_view> kSparsityTypes = {"none", "sink_window", "h2o",
                                                                "snapkv"};
const std::initializer_list<std::string_view> kTiers = {"device", "host", "disk"};

std::string JoinNames(std::initializer_list<std::string_view> names) {
  std::vector<std::string> v(names.begin(), names.end());
  return absl::StrJoin(v, ", ");
}

// `value` must be one of `allowed`; `noun` names what it is ("codec", "backend").
absl::Status OneOf(std::string_view path, std::string_view value, std::string_view noun,
                   std::initializer_list<std::string_view> allowed) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return absl::OkStatus();
  return ConfigError(
      path, StrCat("unknown ", noun, " '", value, "' (expected one of ", JoinNames(allowed), ")"));
}

struct MinRule {
  std::string_view key;
  int64_t value;
  int64_t min;
};

// Checks `prefix.key >= min` for each rule, in order.
absl::Status AtLeast(std::string_view prefix, std::initializer_list<MinRule> rules) {
  for (const MinRule& r : rules) {
    if (r.value < r.min) {
      return ConfigError(StrCat(prefix, ".", r.key),
                         StrCat("must be >= ", r.min, " (got ", r.value, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status InRange(std::string_view path, int64_t value, int64_t lo, int64_t hi) {
  if (value >= lo && value <= hi) return absl::OkStatus();
  return ConfigError(path, StrCat("must be in [", lo, ", ", hi, "] (got ", value, ")"));
}

absl::Status Positive(std::string_view path, double value) {
  if (value > 0) return absl::OkStatus();
  return ConfigError(path, StrCat("must be > 0 (got ", value, ")"));
}

absl::Status NonNegative(std::string_view path, double value) {
  if (value >= 0) return absl::OkStatus();
  return ConfigError(path, StrCat("must be >= 0 (got ", value, ")"));
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

// Keys travel in an `Authorization: Bearer KEY` header: no spaces or control characters.
bool ValidApiKey(std::string_view key) {
  return key.size() >= 8 &&
         std::all_of(key.begin(), key.end(), [](char c) { return c > ' ' && c <= '~'; });
}
constexpr std::string_view kApiKeyRule =
    "an API key must be at least 8 printable ASCII characters without spaces";

absl::Status ValidateSparsity(std::string_view policy_path, const SparsityConfig& s) {
  const std::string path = StrCat(policy_path, ".sparsity");
  RETURN_IF_ERROR(OneOf(StrCat(path, ".type"), s.type, "sparsity type", kSparsityTypes));
  const std::vector<std::string_view>& fields = *config_internal::SparsityFieldsOf(s.type);
  for (std::string_view field : config_internal::AllSparsityFields()) {
    int64_t value = s.*config_internal::SparsityMember(field);
    bool own = std::find(fields.begin(), fields.end(), field) != fields.end();
    if (own && value <= 0) {
      return ConfigError(StrCat(path, ".", field),
                         StrCat("must be > 0 for sparsity type ", s.type, " (got ", value, ")"));
    }
    if (!own && value != 0) {
      return ConfigError(StrCat(path, ".", field), StrCat("not a field of sparsity type ", s.type));
    }
  }
  if (s.type == "h2o" && s.recent_tokens > s.budget_tokens) {
    return ConfigError(
        StrCat(path, ".recent_tokens"),
        StrCat("must be <= budget_tokens (", s.budget_tokens, ") (got ", s.recent_tokens, ")"));
  }
  if (s.type == "snapkv" && s.observation_tokens > s.budget_tokens) {
    return ConfigError(StrCat(path, ".observation_tokens"),
                       StrCat("must be <= budget_tokens (", s.budget_tokens, ") (got ",
                              s.observation_tokens, ")"));
  }
  if (s.type == "snapkv" && s.pool_kernel % 2 == 0) {
    return ConfigError(
        StrCat(path, ".pool_kernel"),
        StrCat("must be odd so the pooling window is centred (got ", s.pool_kernel, ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidatePolicyTiers(std::string_view policy_path,
                                 const std::vector<std::string>& tiers) {
  const std::string path = StrCat(policy_path, ".tiers");
  std::set<std::string> seen;
  for (const std::string& tier : tiers) {
    RETURN_IF_ERROR(OneOf(path, tier, "tier", kTiers));
    if (!seen.insert(tier).second) return ConfigError(path, StrCat("'", tier, "' is listed twice"));
  }
  if (!seen.count("device")) {
    return ConfigError(path,
                       StrCat("must include device (got [", absl::StrJoin(tiers, ", "), "])"));
  }
  return absl::OkStatus();
}

// `name` must be a key of `entries`; `what` is the map's YAML key ("policies").
template <typename T>
absl::Status NamesEntry(std::string_view path, const std::string& name,
                        const std::map<std::string, T>& entries, std::string_view what) {
  if (entries.count(name)) return absl::OkStatus();
  std::vector<std::string> names;
  for (const auto& [key, unused] : entries) names.push_back(key);
  return ConfigError(path, StrCat("'", name, "' is not defined in ", what,
                                  " (defined: ", absl::StrJoin(names, ", "), ")"));
}

template <typename T>
absl::Status ValidateNamedMap(const std::map<std::string, T>& entries, std::string_view what) {
  for (const auto& [key, entry] : entries) {
    if (!ValidName(key)) {
      // The entry's own path, so the loaders point at its line.
      return config_internal::ConfigErrorAt(
          StrCat(what, ".", key),
          StrCat("config: ", what, ": name '", key, "' must match [A-Za-z0-9_.-]{1,64}"));
    }
    if (entry.name != key) {
      return ConfigError(StrCat(what, ".", key, ".name"),
                         StrCat("must equal its key '", key, "' (got '", entry.name, "')"));
    }
    RETURN_IF_ERROR(entry.Validate());
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LimitsConfig::Validate() const {
  RETURN_IF_ERROR(
      AtLeast("server.limits", {{"max_body_bytes", max_body_bytes, 1},
                                {"max_header_bytes", max_header_bytes, 1},
                                {"max_prompt_tokens", max_prompt_tokens, 0},
                                {"max_tokens", max_tokens, 1},
                                {"max_n", max_n, 1},
                                {"max_stop_strings", max_stop_strings, 0},
                                {"max_stop_string_bytes", max_stop_string_bytes, 1},
                                {"max_logprobs", max_logprobs, 0},
                                {"max_concurrent_streams", max_concurrent_streams, 1}}));
  RETURN_IF_ERROR(Positive("server.limits.request_timeout_seconds", request_timeout_seconds));
  RETURN_IF_ERROR(Positive("server.limits.idle_timeout_seconds", idle_timeout_seconds));
  return Positive("server.limits.write_timeout_seconds", write_timeout_seconds);
}

absl::Status ServerConfig::Validate() const {
  if (host.empty()) return ConfigError("server.host", "must not be empty");
  RETURN_IF_ERROR(InRange("server.http_port", http_port, 0, 65535));
  if (grpc_port != -1 && (grpc_port < 0 || grpc_port > 65535)) {
    return ConfigError("server.grpc_port",
                       StrCat("must be -1 (gRPC off) or in [0, 65535] (got ", grpc_port, ")"));
  }
  if (http_port > 0 && http_port == grpc_port) {
    return ConfigError("server.grpc_port",
                       StrCat("must differ from server.http_port (both ", http_port, ")"));
  }
  RETURN_IF_ERROR(AtLeast("server", {{"io_threads", io_threads, 1}}));
  for (size_t i = 0; i < api_keys.size(); ++i) {
    if (!ValidApiKey(api_keys[i])) {
      return ConfigError(StrCat("server.api_keys[", i, "]"),
                         StrCat(kApiKeyRule, " (got ", api_keys[i].size(), " characters)"));
    }
  }
  RETURN_IF_ERROR(NonNegative("server.shutdown_grace_seconds", shutdown_grace_seconds));
  return limits.Validate();
}

absl::Status ModelConfigSection::Validate() const {
  return AtLeast("model", {{"max_model_len", max_model_len, 0}});
}

absl::Status EngineSection::Validate() const {
  RETURN_IF_ERROR(OneOf("engine.backend", backend, "backend", {"auto", "cpu", "cuda"}));
  RETURN_IF_ERROR(AtLeast("engine", {{"threads", threads, 0},
                                     {"max_num_seqs", max_num_seqs, 1},
                                     {"max_batch_tokens", max_batch_tokens, 1}}));
  if (max_batch_tokens < max_num_seqs) {
    return ConfigError(
        "engine.max_batch_tokens",
        StrCat("must be >= engine.max_num_seqs (", max_num_seqs,
               ") so every running sequence can decode each step (got ", max_batch_tokens, ")"));
  }
  return absl::OkStatus();
}

absl::Status KvCacheSection::Validate() const {
  if (block_size < 1 || block_size > 256 || (block_size & (block_size - 1)) != 0) {
    return ConfigError("kvcache.block_size",
                       StrCat("must be a power of two in [1, 256] (got ", block_size, ")"));
  }
  if (default_policy.empty()) return ConfigError("kvcache.default_policy", "must not be empty");
  const std::pair<std::string_view, const TierConfig*> tiers_by_name[] = {
      {"device", &tiers.device}, {"host", &tiers.host}, {"disk", &tiers.disk}};
  for (const auto& [name, tier] : tiers_by_name) {
    RETURN_IF_ERROR(
        AtLeast(StrCat("kvcache.tiers.", name), {{"capacity", tier->capacity_bytes, 0}}));
  }
  if (tiers.disk.capacity_bytes > 0 && tiers.disk.path.empty()) {
    return ConfigError("kvcache.tiers.disk.path",
                       "required when kvcache.tiers.disk.capacity > 0 (the segment folder)");
  }
  if (tiers.disk.capacity_bytes > 0 && tiers.host.capacity_bytes <= 0) {
    return ConfigError("kvcache.tiers.disk.capacity",
                       "needs kvcache.tiers.host.capacity > 0: blocks go to and come back from "
                       "disk through host RAM");
  }
  RETURN_IF_ERROR(InRange("kvcache.tiers.disk.min_hits", tiers.disk.min_hits, 0, 1000));
  return absl::OkStatus();
}

absl::Status KvPolicy::Validate() const {
  const std::string path = StrCat("policies.", name);
  RETURN_IF_ERROR(OneOf(StrCat(path, ".codec"), codec, "codec", kCodecs));
  const bool kivi = kernels::IsKivi(*kernels::ParseCodec(codec));  // a known codec (above)
  if (kivi && (residual_tokens <= 0 || residual_tokens % kernels::kKiviGroupTokens != 0 ||
               residual_tokens > kvcache::kMaxKiviResidualTokens)) {
    return ConfigError(
        StrCat(path, ".residual_tokens"),
        StrCat("codec ", codec, " needs a full-precision window > 0, at most ",
               kvcache::kMaxKiviResidualTokens, " and a multiple of ", kernels::kKiviGroupTokens,
               " (got ", residual_tokens, ")"));
  }
  if (!kivi && residual_tokens != 0) {
    return ConfigError(
        StrCat(path, ".residual_tokens"),
        StrCat("must be 0 for codec ", codec, "; only kivi4 and kivi2 keep a residual window (got ",
               residual_tokens, ")"));
  }
  RETURN_IF_ERROR(ValidateSparsity(path, sparsity));
  RETURN_IF_ERROR(ValidatePolicyTiers(path, tiers));
  if (codec != "fp32" && sparsity.type != "none") {
    return ConfigError(StrCat(path, ".sparsity.type"),
                       StrCat("sparsity ", sparsity.type, " needs codec fp32 (got codec ", codec,
                              "): compaction moves fp32 pages"));
  }
  if (codec != "fp32" && tiers.size() != 1) {
    return ConfigError(StrCat(path, ".tiers"),
                       StrCat("must be [device] for codec ", codec,
                              ": the host and disk tiers hold fp32 pages only (got [",
                              absl::StrJoin(tiers, ", "), "])"));
  }
  return InRange(StrCat(path, ".retention_priority"), retention_priority, -100, 100);
}

absl::Status SloClass::Validate() const {
  const std::string path = StrCat("slo_classes.", name);
  RETURN_IF_ERROR(NonNegative(StrCat(path, ".ttft_ms"), ttft_ms));
  RETURN_IF_ERROR(NonNegative(StrCat(path, ".tpot_ms"), tpot_ms));
  RETURN_IF_ERROR(InRange(StrCat(path, ".priority"), priority, -100, 100));
  return OneOf(StrCat(path, ".on_overload"), on_overload, "overload action",
               {"reject", "best_effort"});
}

absl::Status SchedulerSection::Validate() const {
  RETURN_IF_ERROR(OneOf("scheduler.policy", policy, "scheduler policy", {"fcfs", "slo"}));
  if (default_slo_class.empty()) {
    return ConfigError("scheduler.default_slo_class", "must not be empty");
  }
  return AtLeast("scheduler", {{"prefill_chunk_tokens", prefill_chunk_tokens, 0}});
}

absl::Status LoggingSection::Validate() const {
  RETURN_IF_ERROR(
      OneOf("logging.level", level, "log level", {"trace", "debug", "info", "warn", "error"}));
  return OneOf("logging.format", format, "log format", {"text", "json"});
}

absl::Status Config::Validate() const {
  RETURN_IF_ERROR(server.Validate());
  RETURN_IF_ERROR(model.Validate());
  RETURN_IF_ERROR(engine.Validate());
  RETURN_IF_ERROR(kvcache.Validate());
  RETURN_IF_ERROR(ValidateNamedMap(policies, "policies"));
  RETURN_IF_ERROR(ValidateNamedMap(slo_classes, "slo_classes"));
  RETURN_IF_ERROR(scheduler.Validate());
  RETURN_IF_ERROR(logging.Validate());
  RETURN_IF_ERROR(
      NamesEntry("kvcache.default_policy", kvcache.default_policy, policies, "policies"));
  RETURN_IF_ERROR(NamesEntry("scheduler.default_slo_class", scheduler.default_slo_class,
                             slo_classes, "slo_classes"));
  if (scheduler.layer_offload && kvcache.tiers.host.capacity_bytes == 0) {
    return ConfigError("scheduler.layer_offload",
                       "needs a host tier (kvcache.tiers.host.capacity > 0) to keep layers in");
  }
  if (scheduler.prefill_chunk_tokens > engine.max_batch_tokens) {
    return ConfigError("scheduler.prefill_chunk_tokens",
                       StrCat("must be <= engine.max_batch_tokens (", engine.max_batch_tokens,
                              ") (got ", scheduler.prefill_chunk_tokens, ")"));
  }
  return absl::OkStatus();
}

std::map<std::string, KvPolicy> DefaultPolicies() {
  KvPolicy full;
  full.name = "full";
  return {{full.name, full}};
}

std::map<std::string, SloClass> DefaultSloClasses() {
  SloClass c;
  c.name = "default";
  return {{c.name, c}};
}

absl::StatusOr<int64_t> ParseByteSize(std::string_view text) {
  // clang-format off
  static constexpr std::pair<std::string_view, int64_t> kUnits[] = {
      {"B", 1}, {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000}, {"TB", 1000000000000},
      {"KiB", int64_t{1} << 10}, {"MiB", int64_t{1} << 20}, {"GiB", int64_t{1} << 30},
      {"TiB", int64_t{1} << 40}};
  // clang-format on
  const auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        StrCat("invalid size '", text, "': ", why,
               " (expected a number of bytes with an optional unit B, KB, MB, GB, TB, KiB, MiB, "
               "GiB, TiB)"));
  };
  std::string_view rest = text;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
  // Exact arithmetic: "1.5GB" is 1500000000 bytes, never a rounded double.
  unsigned __int128 mantissa = 0, scale = 1;
  size_t i = 0, digits = 0;
  bool point = false;
  for (; i < rest.size() && (std::isdigit(static_cast<unsigned char>(rest[i])) || rest[i] == '.');
       ++i) {
    if (rest[i] == '.') {
      if (point) return invalid("more than one decimal point");
      point = true;
      continue;
    }
    // 24 digits times the largest unit (2^40) stays far below 2^128: no wrap-around.
    if (++digits > 24) return invalid("too many digits");
    mantissa = mantissa * 10 + static_cast<unsigned>(rest[i] - '0');
    if (point) scale *= 10;
  }
  if (digits == 0) return invalid(rest.empty() || rest.front() != '-' ? "no number" : "negative");
  std::string_view unit = rest.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  int64_t multiplier = unit.empty() ? 1 : 0;
  for (const auto& [name, bytes] : kUnits) {
    if (unit == name) multiplier = bytes;
  }
  if (multiplier == 0) return invalid(StrCat("unknown unit '", unit, "'"));
  unsigned __int128 total = mantissa * static_cast<unsigned __int128>(multiplier);
  if (total % scale != 0) return invalid("not a whole number of bytes");
  total /= scale;
  if (total > static_cast<unsigned __int128>(std::numeric_limits<int64_t>::max())) {
    return invalid("too large");
  }
  return static_cast<int64_t>(total);
}

absl::StatusOr<std::vector<std::string>> ParseApiKeys(std::string_view text,
                                                      std::string_view what) {
  std::vector<std::string> keys;
  int line_number = 0;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_number;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front())))
      line.remove_prefix(1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())))
      line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    if (!ValidApiKey(line)) {
      return ConfigError("server.api_key_file",
                         StrCat("'", what, "' line ", line_number, ": ", kApiKeyRule));
    }
    keys.emplace_back(line);
  }
  if (keys.empty()) {
    return ConfigError(
        "server.api_key_file",
        StrCat("'", what, "' holds no API key (one per line; '#' starts a comment)"));
  }
  return keys;
}

}  // namespace strata::server
