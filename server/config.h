// The daemon's configuration: the YAML file given to `strata serve --config FILE`, parsed once at
// start-up into the typed structs below (DESIGN.md §7: the key names are a contract). Every field
// has the default written next to it; configs/default.yaml lists the same keys and values.
//
// Errors never let a bad file start the daemon half-configured: an unknown key, a wrong type or an
// impossible value is an InvalidArgument whose message names the full key path and the problem,
//   config: server.limits.max_n: must be >= 1 (got 0) (strata.yaml:14)
//   config: unknown key 'engine.thread' (did you mean 'threads'?) (strata.yaml:9)
// The trailing (FILE:LINE) is added by the loaders; Validate() alone reports without it.
//
// Plain data: a loaded Config is immutable by convention and may be read from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace strata::server {

// Request-size and connection limits enforced by the HTTP and gRPC front ends.
struct LimitsConfig {
  int64_t max_body_bytes = 1048576;  // request body; larger -> 413
  int64_t max_header_bytes = 16384;  // all request headers together
  int64_t max_prompt_tokens = 0;     // 0 = model.max_model_len
  int64_t max_tokens = 4096;         // cap on a request's max_tokens
  int64_t max_n = 8;                 // choices per request
  int64_t max_stop_strings = 8;
  int64_t max_stop_string_bytes = 256;
  int64_t max_logprobs = 20;              // top_logprobs cap
  int64_t max_concurrent_streams = 1024;  // requests in flight (streaming or not) before 429
  double request_timeout_seconds = 30;    // the full request must arrive within
  double idle_timeout_seconds = 60;       // keep-alive connection with no request
  double write_timeout_seconds = 30;      // a client that stops reading is dropped after

  absl::Status Validate() const;
  bool operator==(const LimitsConfig&) const = default;
};

struct ServerConfig {
  std::string host = "127.0.0.1";  // bind address of HTTP and gRPC
  int http_port = 8000;            // 0 = ephemeral (tests)
  int grpc_port = 50051;           // 0 = ephemeral, -1 = gRPC off
  int io_threads = 2;              // HTTP I/O threads
  // Every accepted key: the YAML list followed by the keys of api_key_file (read by the loaders).
  // Empty = no authentication.
  std::vector<std::string> api_keys;
  std::string api_key_file;  // one key per line; '#' comment lines and blank lines ignored
  bool metrics_require_api_key = false;
  double shutdown_grace_seconds = 30;  // in-flight requests may finish this long after SIGTERM
  LimitsConfig limits;

  absl::Status Validate() const;
  bool operator==(const ServerConfig&) const = default;
};

struct ModelConfigSection {
  std::string path;           // HF folder, org/name[@rev], synthetic:<preset>; "" = synthetic:tiny
  std::string served_name;    // name in /v1/models and the `model` field; "" = derived from path
  int64_t max_model_len = 0;  // 0 = min(model maximum, 4096)
  std::string chat_template;  // .jinja file overriding tokenizer_config.json's template; "" = none

  absl::Status Validate() const;
  bool operator==(const ModelConfigSection&) const = default;
};

struct EngineSection {
  std::string backend = "auto";     // auto | cpu | cuda
  int threads = 0;                  // CPU kernel threads; 0 = all cores
  int64_t max_num_seqs = 64;        // running sequences per step
  int64_t max_batch_tokens = 2048;  // tokens per step (prefill chunks + decodes)
  bool cuda_graphs = true;          // CUDA: decode steps captured as graphs; false = eager

  absl::Status Validate() const;
  bool operator==(const EngineSection&) const = default;
};

// One KV tier. device uses only capacity_bytes; host also write_through; disk also path,
// persist and min_hits.
struct TierConfig {
  int64_t capacity_bytes = 0;  // device: 0 = auto; host, disk: 0 = tier off
  bool write_through = false;  // host: copy full blocks down at publish, not at device eviction
  std::string path;            // disk: folder of the segment files (needed when capacity > 0)
  bool persist = true;         // disk: keep and re-index the segments across restarts
  int64_t min_hits = 2;        // disk: host evictions go to disk only after this many hits

  bool operator==(const TierConfig&) const = default;
};

struct TiersConfig {
  TierConfig device;
  TierConfig host;
  TierConfig disk;

  bool operator==(const TiersConfig&) const = default;
};

struct KvCacheSection {
  int block_size = 16;  // tokens per KV page: a power of two in [1, 256]
  bool prefix_caching = true;
  std::string default_policy = "full";  // names an entry of Config::policies
  TiersConfig tiers;

  absl::Status Validate() const;
  bool operator==(const KvCacheSection&) const = default;
};

// A sparsity policy's parameters. Only the fields of `type` may be non-zero, and those are > 0:
//   none                                      (keeps every token)
//   sink_window  sink_tokens, window_tokens   (StreamingLLM: attention sinks + recent window)
//   h2o          budget_tokens, recent_tokens (heavy hitters + recent; recent <= budget)
//   snapkv       budget_tokens, observation_tokens, pool_kernel (odd; observation <= budget)
struct SparsityConfig {
  std::string type = "none";
  int64_t sink_tokens = 0;
  int64_t window_tokens = 0;
  int64_t budget_tokens = 0;
  int64_t recent_tokens = 0;
  int64_t observation_tokens = 0;
  int64_t pool_kernel = 0;

  bool operator==(const SparsityConfig&) const = default;
};

// A named KV policy a request selects with `kv_policy` (DESIGN.md §5).
struct KvPolicy {
  std::string name;            // its key in Config::policies: [A-Za-z0-9_.-]{1,64}
  std::string codec = "fp32";  // fp32 | bf16 | fp16 | fp8 | int8 | kivi4 | kivi2
  // kivi*: full-precision window of recent tokens, a multiple of 32 (the group size) and > 0;
  // every other codec: 0.
  int64_t residual_tokens = 0;
  SparsityConfig sparsity;
  std::vector<std::string> tiers = {"device", "host", "disk"};  // must include device; no repeats
  bool prefix_cache = true;
  int retention_priority = 0;  // higher = evicted later, in [-100, 100]

  absl::Status Validate() const;
  bool operator==(const KvPolicy&) const = default;
};

// A latency class a request selects with `slo_class` (DESIGN.md §6).
struct SloClass {
  std::string name;                         // its key in Config::slo_classes: [A-Za-z0-9_.-]{1,64}
  double ttft_ms = 0;                       // time-to-first-token target; 0 = no target
  double tpot_ms = 0;                       // time-per-output-token target; 0 = no target
  int priority = 0;                         // higher is served first, in [-100, 100]
  std::string on_overload = "best_effort";  // reject (429 early) | best_effort

  absl::Status Validate() const;
  bool operator==(const SloClass&) const = default;
};

struct SchedulerSection {
  std::string policy = "fcfs";                // fcfs | slo
  std::string default_slo_class = "default";  // names an entry of Config::slo_classes
  int64_t prefill_chunk_tokens = 0;           // 0 = engine.max_batch_tokens
  bool layer_offload = false;  // LayerKV: layers of running requests in host RAM under pressure

  absl::Status Validate() const;
  bool operator==(const SchedulerSection&) const = default;
};

struct MetricsSection {
  bool enabled = true;  // serve /metrics

  bool operator==(const MetricsSection&) const = default;
};

struct LoggingSection {
  std::string level = "info";   // trace | debug | info | warn | error
  std::string format = "text";  // text | json

  absl::Status Validate() const;
  bool operator==(const LoggingSection&) const = default;
};

// The policy map when the YAML has no `policies`: one policy `full` with every default.
std::map<std::string, KvPolicy> DefaultPolicies();
// The class map when the YAML has no `slo_classes`: one class `default` with every default.
std::map<std::string, SloClass> DefaultSloClasses();

struct Config {
  ServerConfig server;
  ModelConfigSection model;
  EngineSection engine;
  KvCacheSection kvcache;
  std::map<std::string, KvPolicy> policies = DefaultPolicies();
  std::map<std::string, SloClass> slo_classes = DefaultSloClasses();
  SchedulerSection scheduler;
  MetricsSection metrics;
  LoggingSection logging;

  // Every section's rules plus the cross-field ones (ports differ, default policy and class
  // exist, map keys equal names, ...). The loaders run it; run it again after overriding fields
  // (e.g. from command-line flags).
  absl::Status Validate() const;
  bool operator==(const Config&) const = default;
};

// Reads and parses `path` (relative paths resolve against the working directory).
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

// Parses YAML text; `what` names the source in errors (normally the file name). Reads
// server.api_key_file when set (relative to the working directory) and appends its keys to
// server.api_keys. A null or empty document gives every default; so does a null value for any key.
absl::StatusOr<Config> ParseConfig(std::string_view yaml, std::string_view what);

// "1048576", "512MiB", "4 GiB", "1.5GB" -> bytes. Units B, KB, MB, GB, TB (powers of 1000) and
// KiB, MiB, GiB, TiB (powers of 1024), case-sensitive; the result must be a whole, non-negative
// number of bytes that fits in int64.
absl::StatusOr<int64_t> ParseByteSize(std::string_view text);

// The keys of an api_key_file's text: one per line, surrounding whitespace trimmed, blank lines
// and lines starting with '#' skipped. `what` names the file in errors; a malformed key is
// reported by line number, never echoed.
absl::StatusOr<std::vector<std::string>> ParseApiKeys(std::string_view text, std::string_view what);

}  // namespace strata::server
