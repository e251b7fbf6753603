// bench_kv_capacity: W4 (offline throughput, ../shared/BENCHMARKS.md) under one fixed KV memory
// budget, once per KV policy of a config (bench/configs/w4-policies.yaml): how many sequences of
// --input + --output tokens run concurrently, and the decode throughput, against `bf16`.
//
// Each policy runs alone: the config is cut down to that policy, so its codec's pool gets the
// device budget minus the fp32 pool's one sequence (server/serve_setup.cc CarvePools); the same
// engine, scheduler and kernels as `strata serve`. --requests prompts (fixed-seed random tokens)
// are submitted at once; "held" is the most sequences running in one step, "pool capacity" the
// pool's pages over the pages one finished sequence needs (KIVI: quantized blocks + residual).
//
// Usage: bench_kv_capacity [--config FILE] [--input 1920] [--output 128] [--requests 64]
//                          [--policies a,b,...]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "engine/engine.h"
#include "server/cli_flags.h"
#include "server/config.h"
#include "server/serve_setup.h"

namespace strata {
namespace {

struct Options {
  std::string config = STRATA_SOURCE_DIR "/bench/configs/w4-policies.yaml";
  int64_t input = 1920;
  int64_t output = 128;
  int32_t requests = 64;
  std::vector<std::string> policies;  // empty = all of the config's
};

struct Result {
  std::string codec;
  int32_t held = 0;          // most sequences running at once
  double capacity = 0;       // pool pages / pages of one sequence
  int64_t pool_bytes = 0;
  double out_tok_s = 0;
  double wall_s = 0;
  int32_t finished = 0;
};

// Pages one sequence of `tokens` tokens takes in `layout` (KIVI: its fold rule and residual).
int64_t PagesPerSequence(const kvcache::KvLayout& layout, int64_t tokens, int32_t residual) {
  if (!layout.kivi()) return layout.BlocksFor(tokens) * layout.num_layers;
  const int64_t quant = kvcache::KiviQuantAfter(0, tokens, residual);
  return (quant / layout.block_size + layout.ResidualPages(residual)) * layout.num_layers;
}

absl::StatusOr<Result> RunPolicy(const server::Config& base, const engine::Model& model,
                                 const std::string& name, const Options& o) {
  server::Config c = base;
  c.policies = {{name, base.policies.at(name)}};
  c.kvcache.default_policy = name;
  RETURN_IF_ERROR(c.Validate());
  engine::EngineConfig ec = server::MakeEngineConfig(c, model);
  ASSIGN_OR_RETURN(auto engine, engine::Engine::Create(model, ec));
  const server::KvPolicy& policy = c.policies.at(name);
  std::mt19937 rng(4);
  std::uniform_int_distribution<int32_t> token(3, static_cast<int32_t>(model.config.vocab_size) - 1);
  std::vector<std::shared_ptr<engine::OutputChannel>> channels;
  const double t0 = NowSeconds();
  for (int32_t r = 0; r < o.requests; ++r) {
    engine::RequestOptions req;
    for (int64_t i = 0; i < o.input; ++i) req.prompt_ids.push_back(token(rng));
    req.max_tokens = o.output;
    req.sampling.temperature = 0;
    req.kv_access = server::KvAccessOf(policy);
    ASSIGN_OR_RETURN(auto sub, engine->Submit(std::move(req)));
    channels.push_back(sub.channel);
  }
  Result res;
  int64_t tokens = 0;
  size_t done = 0;
  std::vector<bool> finished(channels.size(), false);
  while (done < channels.size()) {
    for (size_t i = 0; i < channels.size(); ++i) {
      while (!finished[i]) {
        std::optional<engine::TokenEvent> e = channels[i]->TryPop();
        if (!e) break;
        tokens += e->token >= 0 ? 1 : 0;
        if (!e->finish_reason.empty()) {
          finished[i] = true;
          ++done;
          res.finished += e->finish_reason == "length" ? 1 : 0;
        }
      }
    }
    res.held = std::max(res.held, engine->Stats().num_running);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  res.wall_s = NowSeconds() - t0;
  res.out_tok_s = static_cast<double>(tokens) / res.wall_s;
  const engine::EngineStats s = engine->Stats();
  const engine::EngineStats::Pool& pool = s.pools.back();
  res.codec = pool.codec;
  res.pool_bytes = pool.page_bytes * pool.num_pages;
  kvcache::KvLayout layout{.num_layers = static_cast<int32_t>(model.config.num_layers),
                           .num_kv_heads = static_cast<int32_t>(model.config.num_kv_heads),
                           .head_dim = static_cast<int32_t>(model.config.head_dim),
                           .block_size = pool.block_size,
                           .codec = *kernels::ParseCodec(pool.codec)};
  res.capacity = static_cast<double>(pool.num_pages) /
                 static_cast<double>(PagesPerSequence(layout, o.input + o.output,
                                                      static_cast<int32_t>(policy.residual_tokens)));
  return res;
}

absl::Status Main(const Options& o) {
  ASSIGN_OR_RETURN(server::Config config, server::LoadConfigFile(o.config));
  ASSIGN_OR_RETURN(auto model, engine::LoadModel(config.model.path, {}));
  std::vector<std::string> names = o.policies;
  if (names.empty()) {
    for (const auto& [name, unused] : config.policies) names.push_back(name);
  }
  std::printf("bench_kv_capacity (W4): %s, KV budget %lld bytes, %d requests of %lld + %lld "
              "tokens, max_num_seqs %lld\n\n",
              config.model.path.c_str(),
              static_cast<long long>(config.kvcache.tiers.device.capacity_bytes), o.requests,
              static_cast<long long>(o.input), static_cast<long long>(o.output),
              static_cast<long long>(config.engine.max_num_seqs));
  std::vector<std::pair<std::string, Result>> results;
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(Result r, RunPolicy(config, *model, name, o));
    results.emplace_back(name, r);
    std::fprintf(stderr, "  %s done in %.1f s\n", name.c_str(), r.wall_s);
  }
  const Result* bf16 = nullptr;
  for (const auto& [name, r] : results) {
    if (name == "bf16") bf16 = &r;
  }
  std::printf("| policy | codec | pool bytes | pool capacity (seqs) | held (peak running) | "
              "held vs bf16 | output tok/s | tok/s vs bf16 | finished |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  auto ratio = [](double x, double base) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2fx", x / base);
    return std::string(base > 0 ? buf : "-");
  };
  for (const auto& [name, r] : results) {
    const std::string held = bf16 ? ratio(r.held, bf16->held) : "-";
    const std::string speed = bf16 ? ratio(r.out_tok_s, bf16->out_tok_s) : "-";
    std::printf("| %s | %s | %lld | %.1f | %d | %s | %.1f | %s | %d/%d |\n", name.c_str(),
                r.codec.c_str(), static_cast<long long>(r.pool_bytes), r.capacity, r.held,
                held.c_str(), r.out_tok_s, speed.c_str(), r.finished, o.requests);
  }
  return absl::OkStatus();
}

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  ASSIGN_OR_RETURN(server::CliFlags f,
                   server::CliFlags::Parse({argv + 1, argv + argc},
                                           {"config", "input", "output", "requests", "policies"}));
  Options o;
  o.config = f.GetOr("config", o.config);
  ASSIGN_OR_RETURN(o.input, f.GetInt("input", o.input));
  ASSIGN_OR_RETURN(o.output, f.GetInt("output", o.output));
  ASSIGN_OR_RETURN(const int64_t requests, f.GetInt("requests", o.requests));
  o.requests = static_cast<int32_t>(requests);
  std::stringstream names(f.GetOr("policies", ""));
  for (std::string p; std::getline(names, p, ',');) o.policies.push_back(p);
  return o;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
  absl::StatusOr<strata::Options> o = strata::ParseOptions(argc, argv);
  absl::Status s = o.ok() ? strata::Main(*o) : o.status();
  if (!s.ok()) {
    std::fprintf(stderr, "bench_kv_capacity: %s\n", std::string(s.message()).c_str());
    return o.ok() ? 1 : 2;
  }
  return 0;
}
