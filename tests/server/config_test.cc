#include "server/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/file.h"
#include "yaml-cpp/yaml.h"

namespace strata::server {
namespace {

const std::string kConfigs = STRATA_SOURCE_DIR "/configs/";

// The parsed config; fails the test, with the message, when `yaml` does not load.
Config Parsed(std::string_view yaml) {
  absl::StatusOr<Config> c = ParseConfig(yaml, "t.yaml");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : Config{};
}

std::string ParseError(std::string_view yaml) {
  absl::StatusOr<Config> c = ParseConfig(yaml, "t.yaml");
  if (c.ok()) return "(parsed fine)";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  return std::string(c.status().message());
}

// A fresh file under the test's temporary folder.
std::string TempFile(const std::string& name, std::string_view contents) {
  const std::string path = ::testing::TempDir() + "/config_test_" + name;
  EXPECT_TRUE(WriteFile(path, contents).ok());
  return path;
}

TEST(ConfigTest, EmptyOrNullDocumentIsAllDefaults) {
  const Config defaults;
  EXPECT_TRUE(defaults.Validate().ok()) << defaults.Validate();
  for (std::string_view yaml : {"", "~", "null", "# nothing but a comment\n", "\n\n"}) {
    EXPECT_EQ(Parsed(yaml), defaults) << "yaml: '" << yaml << "'";
  }
  ASSERT_EQ(defaults.policies.size(), 1u);
  EXPECT_EQ(defaults.policies.at("full").name, "full");
  EXPECT_EQ(defaults.policies.at("full").codec, "fp32");
  ASSERT_EQ(defaults.slo_classes.size(), 1u);
  EXPECT_EQ(defaults.slo_classes.at("default").on_overload, "best_effort");
}

TEST(ConfigTest, NullValuesAndEmptySectionsKeepDefaults) {
  Config c = Parsed(
      "server:\n  host: ~\n  http_port:\n  limits:\n"
      "model: {}\npolicies:\nslo_classes: {}\nlogging:\n  level: ~\n");
  EXPECT_EQ(c, Config{});
}

TEST(ConfigTest, DefaultYamlEqualsStructDefaults) {
  absl::StatusOr<Config> c = LoadConfigFile(kConfigs + "default.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, Config{});
}

// default.yaml documents the schema: every key the loader reads is written there.
TEST(ConfigTest, DefaultYamlListsEveryKey) {
  const YAML::Node root = YAML::LoadFile(kConfigs + "default.yaml");
  // clang-format off
  const char* const keys[] = {
      "server.host", "server.http_port", "server.grpc_port", "server.io_threads", "server.api_keys",
      "server.api_key_file", "server.metrics_require_api_key", "server.shutdown_grace_seconds",
      "server.limits.max_body_bytes", "server.limits.max_header_bytes",
      "server.limits.max_prompt_tokens", "server.limits.max_tokens", "server.limits.max_n",
      "server.limits.max_stop_strings", "server.limits.max_stop_string_bytes",
      "server.limits.max_logprobs", "server.limits.max_concurrent_streams",
      "server.limits.request_timeout_seconds", "server.limits.idle_timeout_seconds",
      "server.limits.write_timeout_seconds", "model.path", "model.served_name",
      "model.max_model_len", "model.chat_template", "engine.backend", "engine.threads",
      "engine.max_num_seqs", "engine.max_batch_tokens", "kvcache.block_size",
      "kvcache.prefix_caching", "kvcache.default_policy", "kvcache.tiers.device.capacity",
      "kvcache.tiers.host.capacity", "kvcache.tiers.disk.capacity", "kvcache.tiers.disk.path",
      "kvcache.tiers.disk.persist", "policies.full.codec", "policies.full.residual_tokens",
      "policies.full.sparsity.type", "policies.full.tiers", "policies.full.prefix_cache",
      "policies.full.retention_priority", "slo_classes.default.ttft_ms",
      "slo_classes.default.tpot_ms", "slo_classes.default.priority",
      "slo_classes.default.on_overload", "scheduler.policy", "scheduler.default_slo_class",
      "scheduler.prefill_chunk_tokens", "metrics.enabled", "logging.level", "logging.format"};
  // clang-format on
  for (std::string_view path : keys) {
    YAML::Node node = root;
    for (size_t start = 0; start <= path.size();) {
      size_t end = std::min(path.find('.', start), path.size());
      ASSERT_TRUE(node.IsMap()) << path;
      const YAML::Node& parent = node;  // const lookup: never inserts the key
      node.reset(parent[std::string(path.substr(start, end - start))]);
      ASSERT_TRUE(node.IsDefined() && !node.IsNull()) << "default.yaml lacks " << path;
      start = end + 1;
    }
  }
}

TEST(ConfigTest, PoliciesYamlLoads) {
  absl::StatusOr<Config> c = LoadConfigFile(kConfigs + "policies.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<std::string> names;
  for (const auto& [name, policy] : c->policies) {
    names.push_back(name);
    EXPECT_EQ(policy.name, name);
    // Codecs other than fp32 stay on the device (the lower tiers hold fp32 pages only).
    const std::vector<std::string> tiers =
        policy.codec == "fp32" ? std::vector<std::string>{"device", "host", "disk"}
                               : std::vector<std::string>{"device"};
    EXPECT_EQ(policy.tiers, tiers) << name;
    EXPECT_TRUE(policy.prefix_cache) << name;
    EXPECT_EQ(policy.retention_priority, 0) << name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"bf16", "fp8", "full", "h2o", "int8", "kivi2",
                                             "kivi4", "snapkv", "streaming"}));
  const auto& p = c->policies;
  EXPECT_EQ(p.at("full").codec, "fp32");
  EXPECT_EQ(p.at("bf16").codec, "bf16");
  EXPECT_EQ(p.at("fp8").codec, "fp8");
  EXPECT_EQ(p.at("int8").codec, "int8");
  EXPECT_EQ(p.at("kivi4").codec, "kivi4");
  EXPECT_EQ(p.at("kivi4").residual_tokens, 128);
  EXPECT_EQ(p.at("kivi2").codec, "kivi2");
  EXPECT_EQ(p.at("kivi2").residual_tokens, 128);
  for (const char* dense : {"full", "fp8", "int8", "kivi4", "kivi2"}) {
    EXPECT_EQ(p.at(dense).sparsity, SparsityConfig{}) << dense;
  }
  SparsityConfig streaming{.type = "sink_window", .sink_tokens = 4, .window_tokens = 1024};
  EXPECT_EQ(p.at("streaming").sparsity, streaming);
  EXPECT_EQ(p.at("streaming").codec, "fp32");
  SparsityConfig h2o{.type = "h2o", .budget_tokens = 1024, .recent_tokens = 256};
  EXPECT_EQ(p.at("h2o").sparsity, h2o);
  SparsityConfig snapkv{
      .type = "snapkv", .budget_tokens = 1024, .observation_tokens = 32, .pool_kernel = 7};
  EXPECT_EQ(p.at("snapkv").sparsity, snapkv);
  // Everything but the policies keeps its default.
  Config rest = *c;
  rest.policies = DefaultPolicies();
  EXPECT_EQ(rest, Config{});
}

TEST(ConfigTest, SloYamlLoads) {
  absl::StatusOr<Config> c = LoadConfigFile(kConfigs + "slo.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->slo_classes.size(), 2u);
  const SloClass interactive{.name = "interactive",
                             .ttft_ms = 500,
                             .tpot_ms = 50,
                             .priority = 10,
                             .on_overload = "reject"};
  const SloClass batch{.name = "batch",
                       .ttft_ms = 30000,
                       .tpot_ms = 500,
                       .priority = 0,
                       .on_overload = "best_effort"};
  EXPECT_EQ(c->slo_classes.at("interactive"), interactive);
  EXPECT_EQ(c->slo_classes.at("batch"), batch);
  EXPECT_EQ(c->scheduler.policy, "slo");
  EXPECT_EQ(c->scheduler.default_slo_class, "batch");
  Config rest = *c;
  rest.slo_classes = DefaultSloClasses();
  rest.scheduler = SchedulerSection{};
  EXPECT_EQ(rest, Config{});
}

TEST(ConfigTest, ReadsEveryKind) {
  Config c = Parsed(R"(
server:
  host: 0.0.0.0
  http_port: 0
  grpc_port: 0
  api_keys: [abcdefgh, "sk-0123456789"]
  metrics_require_api_key: True
  shutdown_grace_seconds: 2.5
  limits:
    max_body_bytes: 2MiB
    max_header_bytes: "8 KiB"
    max_n: 2
model:
  path: synthetic:tiny
  max_model_len: 512
engine:
  backend: cpu
  max_num_seqs: 4
  max_batch_tokens: 256
kvcache:
  block_size: 32
  tiers:
    host: {capacity: 1.5GB}
    disk: {capacity: 1TiB, path: /tmp/kv, persist: false}
scheduler:
  prefill_chunk_tokens: 128
)");
  EXPECT_EQ(c.server.host, "0.0.0.0");
  EXPECT_EQ(c.server.http_port, 0);
  EXPECT_EQ(c.server.grpc_port, 0);  // both ephemeral: allowed to be equal
  EXPECT_EQ(c.server.api_keys, (std::vector<std::string>{"abcdefgh", "sk-0123456789"}));
  EXPECT_TRUE(c.server.metrics_require_api_key);
  EXPECT_EQ(c.server.shutdown_grace_seconds, 2.5);
  EXPECT_EQ(c.server.limits.max_body_bytes, 2 * 1024 * 1024);
  EXPECT_EQ(c.server.limits.max_header_bytes, 8 * 1024);
  EXPECT_EQ(c.server.limits.max_n, 2);
  EXPECT_EQ(c.server.limits.max_tokens, 4096);
  EXPECT_EQ(c.model.path, "synthetic:tiny");
  EXPECT_EQ(c.model.max_model_len, 512);
  EXPECT_EQ(c.engine.backend, "cpu");
  EXPECT_EQ(c.engine.max_num_seqs, 4);
  EXPECT_EQ(c.engine.max_batch_tokens, 256);
  EXPECT_EQ(c.kvcache.block_size, 32);
  EXPECT_EQ(c.kvcache.tiers.device, TierConfig{});
  EXPECT_EQ(c.kvcache.tiers.host.capacity_bytes, 1500000000);
  EXPECT_EQ(c.kvcache.tiers.disk,
            (TierConfig{.capacity_bytes = int64_t{1} << 40, .path = "/tmp/kv", .persist = false}));
  EXPECT_EQ(c.scheduler.prefill_chunk_tokens, 128);
  EXPECT_EQ(Parsed("server: {grpc_port: -1}").server.grpc_port, -1);
}

struct BadConfig {
  const char* yaml;
  const char* message;  // the whole message, location included
};

class BadConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigTest, FailsWithKeyPathAndReason) {
  EXPECT_EQ(ParseError(GetParam().yaml), GetParam().message) << "yaml:\n" << GetParam().yaml;
}

INSTANTIATE_TEST_SUITE_P(
    UnknownKeys, BadConfigTest,
    ::testing::Values(
        BadConfig{"servr: {}\n", "config: unknown key 'servr' (did you mean 'server'?) (t.yaml:1)"},
        BadConfig{"server:\n  hots: x\n",
                  "config: unknown key 'server.hots' (did you mean 'host'?) (t.yaml:2)"},
        BadConfig{"server:\n  limits:\n    max_m: 3\n",
                  "config: unknown key 'server.limits.max_m' (did you mean 'max_n'?) (t.yaml:3)"},
        BadConfig{"engine:\n  thread: 4\n",
                  "config: unknown key 'engine.thread' (did you mean 'threads'?) (t.yaml:2)"},
        BadConfig{"model:\n  dtype: bf16\n",
                  "config: unknown key 'model.dtype' (expected one of path, served_name, "
                  "max_model_len, chat_template) (t.yaml:2)"},
        BadConfig{"kvcache:\n  tiers:\n    gpu: {capacity: 1}\n",
                  "config: unknown key 'kvcache.tiers.gpu' (expected one of device, host, disk) "
                  "(t.yaml:3)"},
        BadConfig{"kvcache:\n  tiers:\n    host: {capacity: 1, path: /x}\n",
                  "config: unknown key 'kvcache.tiers.host.path' (expected one of capacity, "
                  "write_through) "
                  "(t.yaml:3)"},
        BadConfig{"kvcache:\n  tiers:\n    disk:\n      pth: /x\n",
                  "config: unknown key 'kvcache.tiers.disk.pth' (did you mean 'path'?) (t.yaml:4)"},
        BadConfig{"policies:\n  full:\n    codecs: fp8\n",
                  "config: unknown key 'policies.full.codecs' (did you mean 'codec'?) (t.yaml:3)"},
        BadConfig{"policies:\n  full:\n    sparsity: {type: h2o, budget_tokens: 64, "
                  "recent_tokens: 16, sink_tokens: 4}\n",
                  "config: unknown key 'policies.full.sparsity.sink_tokens' (sparsity type h2o "
                  "takes budget_tokens, recent_tokens) (t.yaml:3)"},
        BadConfig{"policies:\n  full:\n    sparsity: {type: none, window_tokens: 4}\n",
                  "config: unknown key 'policies.full.sparsity.window_tokens' (sparsity type none "
                  "takes no fields) (t.yaml:3)"},
        BadConfig{"slo_classes:\n  default:\n    ttft: 5\n",
                  "config: unknown key 'slo_classes.default.ttft' (expected one of ttft_ms, "
                  "tpot_ms, priority, on_overload) (t.yaml:3)"},
        BadConfig{"scheduler:\n  polcy: slo\n",
                  "config: unknown key 'scheduler.polcy' (did you mean 'policy'?) (t.yaml:2)"},
        BadConfig{"metrics:\n  enable: false\n",
                  "config: unknown key 'metrics.enable' (did you mean 'enabled'?) (t.yaml:2)"},
        BadConfig{"logging:\n  levle: debug\n",
                  "config: unknown key 'logging.levle' (did you mean 'level'?) (t.yaml:2)"}));

INSTANTIATE_TEST_SUITE_P(
    WrongTypes, BadConfigTest,
    ::testing::Values(
        BadConfig{"server:\n  http_port: abc\n",
                  "config: server.http_port: must be an integer (got 'abc') (t.yaml:2)"},
        BadConfig{"engine:\n  max_num_seqs: \"8\"\n",
                  "config: engine.max_num_seqs: must be an integer (got the string \"8\") "
                  "(t.yaml:2)"},
        BadConfig{"engine:\n  threads: 1.5\n",
                  "config: engine.threads: must be an integer (got '1.5') (t.yaml:2)"},
        BadConfig{"server:\n  host: {a: 1}\n",
                  "config: server.host: must be a string (got a map) (t.yaml:2)"},
        BadConfig{"server: 5\n", "config: server: must be a map (got '5') (t.yaml:1)"},
        BadConfig{"metrics:\n  enabled: yes\n",
                  "config: metrics.enabled: must be true or false (got 'yes') (t.yaml:2)"},
        BadConfig{"server:\n  api_keys: abcdefghij\n",
                  "config: server.api_keys: must be a list of strings (got 'abcdefghij') "
                  "(t.yaml:2)"},
        BadConfig{"server:\n  api_keys:\n    - abcdefghij\n    - [x]\n",
                  "config: server.api_keys[1]: must be a string (got a list) (t.yaml:4)"},
        BadConfig{"server:\n  shutdown_grace_seconds: soon\n",
                  "config: server.shutdown_grace_seconds: must be a finite number (got 'soon') "
                  "(t.yaml:2)"},
        BadConfig{"server:\n  limits:\n    max_tokens: 99999999999999999999\n",
                  "config: server.limits.max_tokens: out of range (got 99999999999999999999) "
                  "(t.yaml:3)"},
        BadConfig{"server:\n  io_threads: 3000000000\n",
                  "config: server.io_threads: out of range (got 3000000000) (t.yaml:2)"},
        BadConfig{"policies:\n  full: fp8\n",
                  "config: policies.full: must be a map (got 'fp8') (t.yaml:2)"},
        BadConfig{"- a\n- b\n", "config: t.yaml:1: the top level must be a map (got a list)"}));

INSTANTIATE_TEST_SUITE_P(
    BadValues, BadConfigTest,
    ::testing::Values(
        BadConfig{"server:\n  limits:\n    max_n: 0\n",
                  "config: server.limits.max_n: must be >= 1 (got 0) (t.yaml:3)"},
        BadConfig{"server:\n  http_port: 70000\n",
                  "config: server.http_port: must be in [0, 65535] (got 70000) (t.yaml:2)"},
        BadConfig{"server:\n  grpc_port: -2\n",
                  "config: server.grpc_port: must be -1 (gRPC off) or in [0, 65535] (got -2) "
                  "(t.yaml:2)"},
        BadConfig{"server:\n  http_port: 9000\n  grpc_port: 9000\n",
                  "config: server.grpc_port: must differ from server.http_port (both 9000) "
                  "(t.yaml:3)"},
        BadConfig{"server:\n  io_threads: 0\n",
                  "config: server.io_threads: must be >= 1 (got 0) (t.yaml:2)"},
        BadConfig{"server:\n  api_keys: [short]\n",
                  "config: server.api_keys[0]: an API key must be at least 8 printable ASCII "
                  "characters without spaces (got 5 characters) (t.yaml:2)"},
        BadConfig{"server:\n  limits:\n    request_timeout_seconds: 0\n",
                  "config: server.limits.request_timeout_seconds: must be > 0 (got 0) (t.yaml:3)"},
        BadConfig{"server:\n  shutdown_grace_seconds: -1\n",
                  "config: server.shutdown_grace_seconds: must be >= 0 (got -1) (t.yaml:2)"},
        BadConfig{"engine:\n  backend: tpu\n",
                  "config: engine.backend: unknown backend 'tpu' (expected one of auto, cpu, "
                  "cuda) (t.yaml:2)"},
        BadConfig{"engine:\n  max_num_seqs: 128\n  max_batch_tokens: 64\n",
                  "config: engine.max_batch_tokens: must be >= engine.max_num_seqs (128) so every "
                  "running sequence can decode each step (got 64) (t.yaml:3)"},
        BadConfig{"kvcache:\n  block_size: 24\n",
                  "config: kvcache.block_size: must be a power of two in [1, 256] (got 24) "
                  "(t.yaml:2)"},
        BadConfig{"kvcache:\n  block_size: 512\n",
                  "config: kvcache.block_size: must be a power of two in [1, 256] (got 512) "
                  "(t.yaml:2)"},
        BadConfig{"kvcache:\n  tiers:\n    disk:\n      capacity: 1GiB\n",
                  "config: kvcache.tiers.disk.path: required when kvcache.tiers.disk.capacity > 0 "
                  "(the segment folder) (t.yaml:3)"},
        BadConfig{"kvcache:\n  tiers:\n    host:\n      capacity: 4 gigs\n",
                  "config: kvcache.tiers.host.capacity: invalid size '4 gigs': unknown unit "
                  "'gigs' (expected a number of bytes with an optional unit B, KB, MB, GB, TB, "
                  "KiB, MiB, GiB, TiB) (t.yaml:4)"},
        BadConfig{"server:\n  limits:\n    max_body_bytes: -1\n",
                  "config: server.limits.max_body_bytes: invalid size '-1': negative (expected a "
                  "number of bytes with an optional unit B, KB, MB, GB, TB, KiB, MiB, GiB, TiB) "
                  "(t.yaml:3)"},
        BadConfig{"scheduler:\n  layer_offload: true\n",
                  "config: scheduler.layer_offload: needs a host tier (kvcache.tiers.host.capacity "
                  "> 0) to keep layers in (t.yaml:2)"},
        BadConfig{"scheduler:\n  policy: edf\n",
                  "config: scheduler.policy: unknown scheduler policy 'edf' (expected one of "
                  "fcfs, slo) (t.yaml:2)"},
        BadConfig{"scheduler:\n  prefill_chunk_tokens: 4096\n",
                  "config: scheduler.prefill_chunk_tokens: must be <= engine.max_batch_tokens "
                  "(2048) (got 4096) (t.yaml:2)"},
        BadConfig{"logging:\n  level: verbose\n",
                  "config: logging.level: unknown log level 'verbose' (expected one of trace, "
                  "debug, info, warn, error) (t.yaml:2)"},
        BadConfig{"logging:\n  format: xml\n",
                  "config: logging.format: unknown log format 'xml' (expected one of text, json) "
                  "(t.yaml:2)"}));

INSTANTIATE_TEST_SUITE_P(
    PoliciesAndClasses, BadConfigTest,
    ::testing::Values(
        BadConfig{"policies:\n  kivi:\n    codec: kivi3\n",
                  "config: policies.kivi.codec: unknown codec 'kivi3' (expected one of fp32, "
                  "bf16, fp16, fp8, int8, kivi4, kivi2) (t.yaml:3)"},
        BadConfig{"policies:\n  full:\n    codec: kivi4\n",
                  "config: policies.full.residual_tokens: codec kivi4 needs a full-precision "
                  "window > 0, at most 512 and a multiple of 32 (got 0) (t.yaml:2)"},
        BadConfig{"policies:\n  full:\n    codec: kivi2\n    residual_tokens: 48\n",
                  "config: policies.full.residual_tokens: codec kivi2 needs a full-precision "
                  "window > 0, at most 512 and a multiple of 32 (got 48) (t.yaml:4)"},
        BadConfig{"policies:\n  full:\n    codec: kivi2\n    residual_tokens: 1024\n"
                  "    tiers: [device]\n",
                  "config: policies.full.residual_tokens: codec kivi2 needs a full-precision "
                  "window > 0, at most 512 and a multiple of 32 (got 1024) (t.yaml:4)"},
        BadConfig{"policies:\n  q:\n    codec: int8\n",
                  "config: policies.q.tiers: must be [device] for codec int8: the host and disk "
                  "tiers hold fp32 pages only (got [device, host, disk]) (t.yaml:2)"},
        BadConfig{"policies:\n  full:\n    codec: fp8\n    residual_tokens: 32\n",
                  "config: policies.full.residual_tokens: must be 0 for codec fp8; only kivi4 and "
                  "kivi2 keep a residual window (got 32) (t.yaml:4)"},
        BadConfig{"policies:\n  full:\n    sparsity:\n      type: sink_window\n"
                  "      sink_tokens: 4\n",
                  "config: policies.full.sparsity.window_tokens: must be > 0 for sparsity type "
                  "sink_window (got 0) (t.yaml:3)"},
        BadConfig{"policies:\n  full:\n    sparsity: {type: quest}\n",
                  "config: policies.full.sparsity.type: unknown sparsity type 'quest' (expected "
                  "one of none, sink_window, h2o, snapkv) (t.yaml:3)"},
        BadConfig{"policies:\n  full:\n    sparsity: {type: h2o, budget_tokens: 64, "
                  "recent_tokens: 128}\n",
                  "config: policies.full.sparsity.recent_tokens: must be <= budget_tokens (64) "
                  "(got 128) (t.yaml:3)"},
        BadConfig{"policies:\n  full:\n    sparsity: {type: snapkv, budget_tokens: 64, "
                  "observation_tokens: 16, pool_kernel: 4}\n",
                  "config: policies.full.sparsity.pool_kernel: must be odd so the pooling window "
                  "is centred (got 4) (t.yaml:3)"},
        BadConfig{"policies:\n  full:\n    tiers: [host]\n",
                  "config: policies.full.tiers: must include device (got [host]) (t.yaml:3)"},
        BadConfig{"policies:\n  full:\n    tiers: [device, host, device]\n",
                  "config: policies.full.tiers: 'device' is listed twice (t.yaml:3)"},
        BadConfig{"policies:\n  full:\n    tiers: [device, ssd]\n",
                  "config: policies.full.tiers: unknown tier 'ssd' (expected one of device, host, "
                  "disk) (t.yaml:3)"},
        BadConfig{"policies:\n  full:\n    retention_priority: 101\n",
                  "config: policies.full.retention_priority: must be in [-100, 100] (got 101) "
                  "(t.yaml:3)"},
        BadConfig{"policies:\n  \"my policy\": {}\n",
                  "config: policies: name 'my policy' must match [A-Za-z0-9_.-]{1,64} (t.yaml:2)"},
        BadConfig{"kvcache:\n  default_policy: kivi4\n",
                  "config: kvcache.default_policy: 'kivi4' is not defined in policies (defined: "
                  "full) (t.yaml:2)"},
        // Defining `policies` replaces the implicit `full`, which the default still names.
        BadConfig{"policies:\n  fp8: {codec: fp8, tiers: [device]}\n",
                  "config: kvcache.default_policy: 'full' is not defined in policies (defined: "
                  "fp8)"},
        BadConfig{"scheduler:\n  default_slo_class: interactive\n",
                  "config: scheduler.default_slo_class: 'interactive' is not defined in "
                  "slo_classes (defined: default) (t.yaml:2)"},
        BadConfig{"slo_classes:\n  default:\n    on_overload: drop\n",
                  "config: slo_classes.default.on_overload: unknown overload action 'drop' "
                  "(expected one of reject, best_effort) (t.yaml:3)"},
        BadConfig{"slo_classes:\n  default:\n    ttft_ms: -5\n",
                  "config: slo_classes.default.ttft_ms: must be >= 0 (got -5) (t.yaml:3)"}));

INSTANTIATE_TEST_SUITE_P(
    DuplicateKeys, BadConfigTest,
    ::testing::Values(
        BadConfig{"server:\n  http_port: 1\n  http_port: 2\n",
                  "config: duplicate key 'server.http_port' (first at line 2) (t.yaml:3)"},
        BadConfig{"engine: {}\nmodel: {}\nengine: {}\n",
                  "config: duplicate key 'engine' (first at line 1) (t.yaml:3)"},
        BadConfig{"policies:\n  a: {}\n  b: {}\n  a: {codec: fp8}\n",
                  "config: duplicate key 'policies.a' (first at line 2) (t.yaml:4)"}));

INSTANTIATE_TEST_SUITE_P(
    MalformedYaml, BadConfigTest,
    ::testing::Values(
        BadConfig{"server:\n  host: [unclosed\nmodel: {}\n",
                  "config: t.yaml:3:6: malformed YAML: end of sequence flow not found"},
        BadConfig{"server:\n  host: a\n bad: 1\n",
                  "config: t.yaml:3:2: malformed YAML: end of map not found"},
        BadConfig{"a: b: c\n", "config: t.yaml:1:5: malformed YAML: illegal map value"},
        BadConfig{"server:\n\thost: x\n", "config: t.yaml:2:6: malformed YAML: illegal map value"},
        BadConfig{"server: {}\n---\nmodel: {}\n",
                  "config: t.yaml:3: holds 2 YAML documents (separated by '---'); a config is one"},
        BadConfig{"? [a]\n: 1\n",
                  "config: (top level): keys must be plain names (got a list) (t.yaml:1)"},
        BadConfig{"server:\n  ? {a: 1}\n  : 2\n",
                  "config: server: keys must be plain names (got a map) (t.yaml:2)"}));

TEST(ConfigTest, MalformedFileNamesFileAndLine) {
  const std::string path = TempFile("malformed.yaml", "engine:\n  threads: [1\n");
  absl::StatusOr<Config> c = LoadConfigFile(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "config: " + path + ":3:1: malformed YAML: end of sequence flow not found");
}

TEST(ConfigTest, LoadConfigFileNamesFileInErrors) {
  const std::string path =
      TempFile("bad_value.yaml", "# comment\nserver:\n  limits:\n    max_n: 0\n");
  absl::StatusOr<Config> c = LoadConfigFile(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "config: server.limits.max_n: must be >= 1 (got 0) (" + path + ":4)");

  absl::StatusOr<Config> missing = LoadConfigFile("/nonexistent/strata.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(),
            "config: cannot read /nonexistent/strata.yaml: open: No such file or directory");

  absl::StatusOr<Config> dir = LoadConfigFile(::testing::TempDir());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().message(),
            "config: cannot read " + ::testing::TempDir() + ": it is a directory");
}

TEST(ConfigTest, ApiKeyFileWithCommentsAndBlankLines) {
  const std::string keys =
      TempFile("keys.txt",
               "# tenants\n\nkey-alpha-0001\n   key-beta-00002   \r\n# retired: old-key-9\n\n"
               "key-gamma-0003");
  Config c = Parsed("server:\n  api_keys: [inline-key-1]\n  api_key_file: " + keys + "\n");
  EXPECT_EQ(c.server.api_key_file, keys);
  EXPECT_EQ(c.server.api_keys, (std::vector<std::string>{"inline-key-1", "key-alpha-0001",
                                                         "key-beta-00002", "key-gamma-0003"}));
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
}

TEST(ConfigTest, ApiKeyFileErrorsNameTheFile) {
  EXPECT_EQ(ParseError("server:\n  api_key_file: /nonexistent/keys\n"),
            "config: server.api_key_file: cannot read /nonexistent/keys: open: No such file or "
            "directory (t.yaml:2)");
  const std::string empty = TempFile("empty_keys.txt", "# no keys yet\n\n   \n");
  EXPECT_EQ(ParseError("server:\n  api_key_file: " + empty + "\n"),
            "config: server.api_key_file: '" + empty +
                "' holds no API key (one per line; '#' starts a comment) (t.yaml:2)");
  // A malformed key is reported by line, never echoed into logs.
  const std::string bad = TempFile("bad_keys.txt", "good-key-0001\nsecret 12345678\n");
  const std::string message = ParseError("server:\n  api_key_file: " + bad + "\n");
  EXPECT_EQ(message, "config: server.api_key_file: '" + bad +
                         "' line 2: an API key must be at least 8 printable ASCII characters "
                         "without spaces (t.yaml:2)");
  EXPECT_EQ(message.find("secret"), std::string::npos);
}

TEST(ConfigTest, ParseApiKeys) {
  absl::StatusOr<std::vector<std::string>> keys =
      ParseApiKeys("\n#c\n  abcdefgh\t\n\r\nzyxwvuts", "k.txt");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(*keys, (std::vector<std::string>{"abcdefgh", "zyxwvuts"}));
  EXPECT_FALSE(ParseApiKeys("abcdefg\n", "k.txt").ok());  // 7 characters
  EXPECT_FALSE(ParseApiKeys("abcd\x01"
                            "efgh\n",
                            "k.txt")
                   .ok());  // control character
  EXPECT_FALSE(ParseApiKeys("", "k.txt").ok());
}

// Validate() runs on configs built or changed in code, without a file location.
TEST(ConfigTest, ValidateWithoutFile) {
  Config c;
  c.server.limits.max_n = 0;
  EXPECT_EQ(c.Validate().message(), "config: server.limits.max_n: must be >= 1 (got 0)");

  Config renamed;
  renamed.policies["full"].name = "other";
  EXPECT_EQ(renamed.Validate().message(),
            "config: policies.full.name: must equal its key 'full' (got 'other')");

  Config sparse;
  sparse.policies["full"].sparsity.pool_kernel = 3;
  EXPECT_EQ(sparse.Validate().message(),
            "config: policies.full.sparsity.pool_kernel: not a field of sparsity type none");

  Config empty_host;
  empty_host.server.host = "";
  EXPECT_EQ(empty_host.Validate().message(), "config: server.host: must not be empty");
}

TEST(ConfigTest, ParseByteSizeAccepts) {
  const std::pair<const char*, int64_t> cases[] = {
      {"0", 0},
      {"1048576", 1048576},
      {"1B", 1},
      {"2KB", 2000},
      {"3MB", 3000000},
      {"1.5GB", 1500000000},
      {"2TB", 2000000000000},
      {"1KiB", 1024},
      {"512MiB", int64_t{512} << 20},
      {"4GiB", int64_t{4} << 30},
      {"4 GiB", int64_t{4} << 30},
      {" 0.5KiB ", 512},
      {"1TiB", int64_t{1} << 40},
      {"8388607TiB", int64_t{8388607} << 40},
      {"9223372036854775807", INT64_MAX},
  };
  for (const auto& [text, bytes] : cases) {
    absl::StatusOr<int64_t> v = ParseByteSize(text);
    ASSERT_TRUE(v.ok()) << text << ": " << v.status();
    EXPECT_EQ(*v, bytes) << text;
  }
}

TEST(ConfigTest, ParseByteSizeRejects) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "no number"},
      {"GiB", "no number"},
      {"-1", "negative"},
      {"-1KiB", "negative"},
      {"12 bytes", "unknown unit 'bytes'"},
      {"4gib", "unknown unit 'gib'"},
      {"1.2.3MB", "more than one decimal point"},
      {"1.5B", "not a whole number of bytes"},
      {"0.0001KB", "not a whole number of bytes"},
      {"8388608TiB", "too large"},
      {"9223372036854775808", "too large"},
      {"999999999999999999999999999TiB", "too many digits"},
      {"0x10", "unknown unit 'x10'"},
  };
  for (const auto& [text, why] : cases) {
    absl::StatusOr<int64_t> v = ParseByteSize(text);
    ASSERT_FALSE(v.ok()) << text << " parsed as " << *v;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(v.status().message(),
              StrCat("invalid size '", text, "': ", why,
                     " (expected a number of bytes with an optional unit B, KB, MB, GB, TB, KiB, "
                     "MiB, GiB, TiB)"))
        << text;
  }
}

}  // namespace
}  // namespace strata::server
