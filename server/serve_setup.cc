#include "server/serve_setup.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "common/file.h"
#include "common/json.h"
#include "common/logging.h"
#include "kvcache/kv_layout.h"

namespace strata::server {

namespace {

kvcache::SparsitySpec SparsitySpecOf(const SparsityConfig& c) {
  using Type = kvcache::SparsitySpec::Type;
  kvcache::SparsitySpec s;
  s.type = c.type == "sink_window" ? Type::kSinkWindow
           : c.type == "h2o"       ? Type::kH2o
           : c.type == "snapkv"    ? Type::kSnapKv
                                   : Type::kNone;
  s.sink_tokens = static_cast<int32_t>(c.sink_tokens);
  s.window_tokens = static_cast<int32_t>(c.window_tokens);
  s.budget_tokens = static_cast<int32_t>(c.budget_tokens);
  s.recent_tokens = static_cast<int32_t>(c.recent_tokens);
  s.observation_tokens = static_cast<int32_t>(c.observation_tokens);
  s.pool_kernel = static_cast<int32_t>(std::max<int64_t>(1, c.pool_kernel));
  return s;
}

}  // namespace

kvcache::KvAccess KvAccessOf(const KvPolicy& p) {
  kvcache::KvAccess a;
  a.prefix_cache = p.prefix_cache;
  a.codec = *kernels::ParseCodec(p.codec);  // validated with the config
  a.residual_tokens = static_cast<int32_t>(p.residual_tokens);
  a.sparsity = SparsitySpecOf(p.sparsity);
  a.lower_tiers = 0;
  for (const std::string& tier : p.tiers) {
    if (tier == "host") a.lower_tiers |= kvcache::kTierHost;
    if (tier == "disk") a.lower_tiers |= kvcache::kTierDisk;
  }
  return a;
}

namespace {

// The codecs the policies name besides fp32, each once, in a fixed order.
std::vector<kernels::KvCodec> ExtraCodecs(const Config& c) {
  std::set<kernels::KvCodec> codecs;
  for (const auto& [name, policy] : c.policies) codecs.insert(*kernels::ParseCodec(policy.codec));
  codecs.erase(kernels::KvCodec::kF32);
  return {codecs.begin(), codecs.end()};
}

// The largest KIVI residual window the policies of `codec` ask for (0 for other codecs): what
// the codec's pool must make room for.
int32_t MaxResidualTokens(const Config& c, kernels::KvCodec codec) {
  int64_t most = 0;
  for (const auto& [name, policy] : c.policies) {
    if (*kernels::ParseCodec(policy.codec) == codec) most = std::max(most, policy.residual_tokens);
  }
  return static_cast<int32_t>(most);
}

bool UsesFp32(const Config& c) {
  return std::any_of(c.policies.begin(), c.policies.end(),
                     [](const auto& e) { return e.second.codec == "fp32"; });
}

// The device KV budget carved into one pool per codec (DESIGN.md §5): equal byte shares for the
// codecs the policies name; the fp32 pool (pool 0, always there: tiers, the cost profile) gets
// only room for one sequence of max_model_len when no policy names fp32. A budget of 0 (auto) is
// what the fp32 pool alone would get: max_num_seqs sequences of max_model_len. A pool too small
// for one sequence is refused by the engine at start-up, naming the codec.
void CarvePools(const Config& c, const engine::Model& model, engine::EngineConfig* e) {
  const std::vector<kernels::KvCodec> extra = ExtraCodecs(c);
  if (extra.empty()) return;
  kvcache::KvLayout layout{.num_layers = static_cast<int32_t>(model.config.num_layers),
                           .num_kv_heads = static_cast<int32_t>(model.config.num_kv_heads),
                           .head_dim = static_cast<int32_t>(model.config.head_dim),
                           .block_size = c.kvcache.block_size};
  const int64_t max_len = engine::MaxModelLen(model.config, c.model.max_model_len);
  const int64_t one_seq = layout.BlocksFor(max_len) * layout.num_layers;
  const int64_t page = static_cast<int64_t>(layout.PageBytes());
  // Auto (0): what the fp32 pool alone would get, max_num_seqs sequences of max_model_len.
  const int64_t budget = c.kvcache.tiers.device.capacity_bytes > 0
                             ? c.kvcache.tiers.device.capacity_bytes
                             : one_seq * c.engine.max_num_seqs * page;
  const bool fp32 = UsesFp32(c);
  const int64_t shares = static_cast<int64_t>(extra.size()) + (fp32 ? 1 : 0);
  const int64_t share = std::max<int64_t>(0, budget - (fp32 ? 0 : one_seq * page)) / shares;
  e->num_kv_pages = static_cast<int32_t>(fp32 ? share / page : one_seq);
  for (kernels::KvCodec codec : extra) {
    kvcache::KvLayout l = layout;
    l.codec = codec;
    l.block_size = kvcache::PoolBlockSize(codec, layout.block_size);
    const int64_t pages = share / static_cast<int64_t>(l.PageBytes());
    e->codec_pools.push_back({.codec = codec, .block_size = l.block_size,
                              .num_pages = static_cast<int32_t>(
                                  std::min<int64_t>(pages, INT32_MAX)),
                              .max_residual_tokens = MaxResidualTokens(c, codec)});
  }
}

}  // namespace

engine::EngineConfig MakeEngineConfig(const Config& c, const engine::Model& model) {
  engine::EngineConfig e;
  e.backend = c.engine.backend;
  e.threads = c.engine.threads;
  e.cuda_graphs = c.engine.cuda_graphs;
  e.scheduler.max_num_seqs = static_cast<int32_t>(c.engine.max_num_seqs);
  e.scheduler.max_batch_tokens = c.engine.max_batch_tokens;
  e.scheduler.policy = c.scheduler.policy;
  e.scheduler.layer_offload = c.scheduler.layer_offload;
  e.block_size = c.kvcache.block_size;
  e.max_model_len = c.model.max_model_len;
  e.enable_prefix_caching = c.kvcache.prefix_caching;
  if (c.kvcache.tiers.device.capacity_bytes > 0) {
    kvcache::KvLayout layout;
    layout.num_layers = static_cast<int32_t>(model.config.num_layers);
    layout.num_kv_heads = static_cast<int32_t>(model.config.num_kv_heads);
    layout.head_dim = static_cast<int32_t>(model.config.head_dim);
    layout.block_size = c.kvcache.block_size;
    e.num_kv_pages = static_cast<int32_t>(
        std::min<int64_t>(c.kvcache.tiers.device.capacity_bytes / layout.PageBytes(), INT32_MAX));
  }
  CarvePools(c, model, &e);
  const TiersConfig& t = c.kvcache.tiers;
  e.tiers.host_capacity_bytes = t.host.capacity_bytes;
  e.tiers.write_through = t.host.write_through;
  e.tiers.disk_min_hits = static_cast<int32_t>(t.disk.min_hits);
  e.tiers.disk.capacity_bytes = t.disk.capacity_bytes;
  e.tiers.disk.dir = t.disk.path;  // relative paths resolve against the working directory
  e.tiers.disk.persist = t.disk.persist;
  return e;
}

ServiceOptions MakeServiceOptions(const Config& c, const std::string& served_name) {
  const LimitsConfig& l = c.server.limits;
  ServiceOptions o;
  o.served_name = served_name;
  o.max_prompt_tokens = l.max_prompt_tokens;
  o.max_tokens = l.max_tokens;
  o.max_n = static_cast<int32_t>(l.max_n);
  o.max_stop_strings = static_cast<int32_t>(l.max_stop_strings);
  o.max_stop_string_bytes = static_cast<int32_t>(l.max_stop_string_bytes);
  o.max_logprobs = static_cast<int32_t>(l.max_logprobs);
  o.max_concurrent_requests = l.max_concurrent_streams;
  for (const auto& [name, policy] : c.policies) o.policies[name] = KvAccessOf(policy);
  o.default_policy = c.kvcache.default_policy;
  for (const auto& [name, cls] : c.slo_classes) {
    o.slo_classes[name] = {.name = name,
                           .ttft_s = cls.ttft_ms / 1e3,
                           .tpot_s = cls.tpot_ms / 1e3,
                           .priority = cls.priority,
                           .reject_on_overload = cls.on_overload == "reject"};
  }
  o.default_slo_class = c.scheduler.default_slo_class;
  o.slo_admission = c.scheduler.policy == "slo";
  return o;
}

std::string ServedName(const Config& c, const engine::Model& model) {
  if (!c.model.served_name.empty()) return c.model.served_name;
  if (model.synthetic || !FileExists(model.name)) return model.name;  // synthetic:x, org/name
  std::filesystem::path p(model.name);
  if (!p.has_filename()) p = p.parent_path();  // "models/x/"
  return p.filename().string();
}

namespace {

// tokenizer_config.json's chat_template: a string or [{name, template}, ...].
absl::StatusOr<std::string> TemplateFromTokenizerConfig(const std::string& file) {
  if (!FileExists(file)) return std::string();
  ASSIGN_OR_RETURN(std::string text, ReadFile(file));
  ASSIGN_OR_RETURN(Json j, ParseJson(text, file));
  auto it = j.find("chat_template");
  if (it == j.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const Json& t : *it) {
      if (t.is_object() && t.value("name", "") == "default" && t.contains("template") &&
          t["template"].is_string()) {
        return t["template"].get<std::string>();
      }
    }
  }
  return absl::InvalidArgumentError(
      StrCat(file, ": chat_template must be a string or a list holding a 'default' template"));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const engine::ChatTemplate>> LoadChatTemplate(
    const Config& c, const engine::Model& model) {
  std::string source, what;
  if (!c.model.chat_template.empty()) {
    what = c.model.chat_template;
    absl::StatusOr<std::string> text = ReadFile(what);
    if (!text.ok()) {
      return absl::InvalidArgumentError(StrCat("config: model.chat_template: cannot read '",
                                               what, "': ", std::string(text.status().message())));
    }
    source = *text;
  } else if (!model.path.empty()) {
    what = model.path + "/tokenizer_config.json";
    ASSIGN_OR_RETURN(source, TemplateFromTokenizerConfig(what));
  }
  if (source.empty()) {
    LOG_WARN("the model has no chat template: /v1/chat/completions answers 400 (set "
             "model.chat_template to serve chat)");
    return std::shared_ptr<const engine::ChatTemplate>();
  }
  absl::StatusOr<std::shared_ptr<const engine::ChatTemplate>> t =
      engine::ChatTemplate::Parse(source);
  if (!t.ok()) {
    return absl::InvalidArgumentError(StrCat(what, ": ", std::string(t.status().message())));
  }
  LOG_INFO("chat template from {}", what);
  return t;
}

HttpServerOptions MakeHttpOptions(const Config& c) {
  const LimitsConfig& l = c.server.limits;
  HttpServerOptions o;
  o.host = c.server.host;
  o.port = c.server.http_port;
  o.io_threads = c.server.io_threads;
  o.max_body_bytes = static_cast<size_t>(l.max_body_bytes);
  o.max_header_bytes = static_cast<size_t>(l.max_header_bytes);
  o.request_timeout_s = l.request_timeout_seconds;
  o.idle_timeout_s = l.idle_timeout_seconds;
  o.write_timeout_s = l.write_timeout_seconds;
  return o;
}

absl::Status StartHttpFrontEnd(const Config& c, engine::Engine& engine,
                               const engine::Model& model,
                               std::shared_ptr<const engine::ChatTemplate> chat_template,
                               const std::string& served_name, HttpFrontEnd* out) {
  if (c.metrics.enabled) {
    MetricsInfo info{.model = served_name,
                     .version = STRATA_VERSION,
                     .backend = engine.device_name(),
                     .block_size = c.kvcache.block_size,
                     .num_device_blocks = engine.Stats().num_pages,
                     .slo_classes = {}};
    for (const auto& [name, slo_class] : c.slo_classes) info.slo_classes.push_back(name);
    out->metrics = std::make_unique<Metrics>(info);
  }
  out->service = std::make_unique<GenerationService>(&engine, &model, std::move(chat_template),
                                                     MakeServiceOptions(c, served_name),
                                                     out->metrics.get());
  out->api = std::make_unique<HttpApi>(
      out->service.get(), out->metrics.get(),
      HttpApiOptions{.api_keys = c.server.api_keys,
                     .metrics_require_api_key = c.server.metrics_require_api_key});
  ASSIGN_OR_RETURN(out->server,
                   HttpServer::Start(MakeHttpOptions(c),
                                     [api = out->api.get()](HttpRequest r, auto responder) {
                                       api->Handle(std::move(r), std::move(responder));
                                     }));
  return absl::OkStatus();
}

}  // namespace strata::server
