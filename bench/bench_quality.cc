// bench_quality: what each KV policy costs in quality and buys in memory (issue "KV policies",
// ../shared/BENCHMARKS.md). Teacher-forced on stories260K and its text sample: every window of
// the text is prefilled for its first --prefill tokens, then decoded one token at a time with the
// TRUE next token fed back (the scheduler's Update gets it instead of a sample), through the real
// scheduler, StepBatch, ModelRunner and the policy's KV pool. At every decode position it keeps
// the model's log-probabilities and compares them with the fp32 (`full`) run:
//   top-1 agreement   argmax equal to the full-precision argmax
//   KL                mean KL(full || policy) over the vocabulary
//   perplexity        exp(mean -log p(true next token)), and its delta to full
//   bytes/token       KV bytes the sequence's pages hold at the end of each window, per token and
//                     layer, next to the codec's layout arithmetic (kv_codec.h BytesPerToken)
//
// Usage: bench_quality [--config bench/configs/quality.yaml] [--model DIR] [--text FILE]
//                      [--window 384] [--stride 128] [--prefill 192]
// Sparse policies run their real eviction (scores, compaction) through the same code as the
// engine (engine/sparsity_step.h); their bytes/token is per position, so it shows what they drop.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/file.h"
#include "common/status.h"
#include "engine/model.h"
#include "engine/scheduler.h"
#include "engine/sparsity_step.h"
#include "engine/step_batch.h"
#include "server/cli_flags.h"
#include "server/config.h"
#include "server/serve_setup.h"

namespace strata {
namespace {

struct Options {
  std::string config = STRATA_SOURCE_DIR "/bench/configs/quality.yaml";
  std::string model = STRATA_SOURCE_DIR "/../shared/models/stories260k";
  std::string text = STRATA_SOURCE_DIR "/../shared/models/stories260k/tinystories_sample.txt";
  int64_t window = 384;
  int64_t stride = 128;
  int64_t prefill = 192;
};

// Log-probabilities [positions][vocab] of one policy over every window's decode positions, the
// true next tokens, and the KV bytes per token measured at the end of each window.
struct Run {
  std::vector<std::vector<float>> logprobs;
  std::vector<int32_t> targets;
  double bytes_per_token = 0;  // mean over windows
};

std::vector<float> LogSoftmax(const float* x, int64_t n) {
  const float mx = *std::max_element(x, x + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i] - mx));
  const float lse = mx + static_cast<float>(std::log(sum));
  std::vector<float> out(x, x + n);
  for (float& v : out) v -= lse;
  return out;
}

// The runner with pool 0 (fp32) and, for another codec, one pool of it; room for one window.
absl::StatusOr<std::unique_ptr<engine::ModelRunner>> MakeRunner(kernels::Device* device,
                                                                 const engine::Model& model,
                                                                 const server::KvPolicy& policy,
                                                                 int64_t window) {
  const engine::ModelConfig& mc = model.config;
  kvcache::KvLayout layout{.num_layers = static_cast<int32_t>(mc.num_layers),
                           .num_kv_heads = static_cast<int32_t>(mc.num_kv_heads),
                           .head_dim = static_cast<int32_t>(mc.head_dim),
                           .block_size = 16};
  engine::RunnerConfig rc{.max_batch_tokens = window, .max_num_seqs = 1, .max_logit_rows = 1,
                          .num_kv_pages = static_cast<int32_t>(layout.BlocksFor(window) *
                                                               layout.num_layers),
                          .block_size = 16, .max_model_len = window, .extra_pools = {}};
  const kernels::KvCodec codec = *kernels::ParseCodec(policy.codec);
  if (codec != kernels::KvCodec::kF32) {
    kvcache::KvLayout l = layout;
    l.codec = codec;
    l.block_size = kvcache::PoolBlockSize(codec, l.block_size);
    const int64_t residual = l.kivi() ? l.ResidualPages(static_cast<int32_t>(policy.residual_tokens)) : 0;
    rc.extra_pools.push_back({.codec = codec, .block_size = l.block_size,
                              .num_pages = static_cast<int32_t>(
                                  (l.BlocksFor(window) + residual) * l.num_layers)});
  }
  return engine::ModelRunner::Create(device, mc, model.weights, rc);
}

// Teacher-forces `window` (prefill, then one token per step) under `policy`; appends to `run`.
absl::Status RunWindow(engine::ModelRunner& runner, engine::Scheduler& sched,
                       kvcache::KvCacheManager& kv, const server::KvPolicy& policy,
                       std::span<const int32_t> window, int64_t prefill, int64_t id, Run* run,
                       double* bytes_per_token) {
  auto seq = std::make_unique<engine::Sequence>();
  seq->id = id;
  seq->tokens.assign(window.begin(), window.begin() + prefill);
  seq->num_prompt_tokens = prefill;
  seq->max_tokens = static_cast<int64_t>(window.size()) - prefill;
  seq->sampler = std::make_unique<engine::Sampler>(engine::SamplingParams{});
  seq->prefix_seed = {0x9a11, static_cast<uint64_t>(id)};
  seq->kv_access = server::KvAccessOf(policy);
  seq->kv_access.prefix_cache = false;
  if (seq->kv_access.sparsity.enabled()) {
    seq->sparsity = std::make_unique<kvcache::SparsityState>(
        seq->kv_access.sparsity, kv.layout().num_layers, kv.layout().num_kv_heads);
  }
  seq->kv_pool = seq->kv_access.codec == kernels::KvCodec::kF32 ? 0 : 1;
  sched.Add(std::move(seq));
  engine::StepBatch batch;
  std::vector<float> logits(runner.vocab_size());
  while (sched.num_running() + sched.num_waiting() > 0) {
    engine::StepPlan plan = sched.Schedule();
    if (plan.empty()) return absl::InternalError("a step scheduled nothing");
    batch.Build(plan, sched);
    const engine::BatchInput input = batch.input();
    RETURN_IF_ERROR(runner.Forward(input, logits));
    engine::CollectScores(plan, batch, input, runner, sched);
    const int64_t next = plan.seqs[0].start + plan.seqs[0].num_new_tokens;  // its position
    run->logprobs.push_back(LogSoftmax(logits.data(), runner.vocab_size()));
    run->targets.push_back(window[next]);
    if (next + 1 == static_cast<int64_t>(window.size())) {
      // The last step: its pages hold `next` tokens (the KV of every position before it).
      const kvcache::KvLayout& layout = kv.layout();
      const double used = static_cast<double>(kv.pool().num_pages() - kv.pool().num_free());
      *bytes_per_token = used * static_cast<double>(layout.PageBytes()) /
                         (static_cast<double>(layout.num_layers) * static_cast<double>(next));
    }
    sched.Update(plan, std::vector<int32_t>{window[next]});
    RETURN_IF_ERROR(engine::CompactSparse(plan, sched, runner));
  }
  return absl::OkStatus();
}

absl::StatusOr<Run> RunPolicy(const engine::Model& model, kernels::Device* device,
                              const server::KvPolicy& policy, std::span<const int32_t> tokens,
                              const Options& o) {
  ASSIGN_OR_RETURN(auto runner, MakeRunner(device, model, policy, o.window));
  std::vector<std::unique_ptr<kvcache::KvCacheManager>> pools;
  for (int32_t p = 0; p < runner->num_pools(); ++p) {
    pools.push_back(std::make_unique<kvcache::KvCacheManager>(
        runner->pool_layout(p), p == 0 ? runner->runner_config().num_kv_pages
                                       : runner->runner_config().extra_pools[0].num_pages,
        /*enable_prefix_caching=*/false));
  }
  engine::Scheduler sched({.max_batch_tokens = o.window, .max_num_seqs = 1}, pools[0].get());
  if (pools.size() > 1) sched.AddKvPool(pools[1].get());
  Run run;
  int64_t windows = 0;
  for (int64_t start = 0; start + o.window <= static_cast<int64_t>(tokens.size());
       start += o.stride, ++windows) {
    double bpt = 0;
    RETURN_IF_ERROR(RunWindow(*runner, sched, *pools.back(), policy, tokens.subspan(start, o.window),
                              o.prefill, windows + 1, &run, &bpt));
    run.bytes_per_token += bpt;
  }
  if (windows == 0) return absl::InvalidArgumentError("the text is shorter than one window");
  run.bytes_per_token /= static_cast<double>(windows);
  return run;
}

struct Scores {
  double top1 = 0, kl = 0, ppl = 0;
};

Scores Compare(const Run& full, const Run& run) {
  Scores s;
  double nll = 0;
  const size_t n = run.logprobs.size();
  for (size_t i = 0; i < n; ++i) {
    const std::vector<float>& p = full.logprobs[i];
    const std::vector<float>& q = run.logprobs[i];
    const auto argmax = [](const std::vector<float>& v) {
      return std::max_element(v.begin(), v.end()) - v.begin();
    };
    s.top1 += argmax(p) == argmax(q) ? 1 : 0;
    double kl = 0;
    for (size_t t = 0; t < p.size(); ++t) kl += std::exp(p[t]) * (p[t] - q[t]);
    s.kl += kl;
    nll -= q[run.targets[i]];
  }
  s.top1 /= static_cast<double>(n);
  s.kl /= static_cast<double>(n);
  s.ppl = std::exp(nll / static_cast<double>(n));
  return s;
}

double LayoutBytesPerToken(const engine::Model& model, const server::KvPolicy& policy) {
  const kernels::KvCodec codec = *kernels::ParseCodec(policy.codec);
  kernels::KvPageFormat f{.codec = codec, .block_size = kvcache::PoolBlockSize(codec, 16),
                          .num_kv_heads = static_cast<int32_t>(model.config.num_kv_heads),
                          .head_dim = static_cast<int32_t>(model.config.head_dim)};
  return kernels::BytesPerToken(f);
}

absl::Status Main(const Options& o) {
  ASSIGN_OR_RETURN(server::Config config, server::LoadConfigFile(o.config));
  ASSIGN_OR_RETURN(auto model, engine::LoadModel(o.model, {}));
  ASSIGN_OR_RETURN(std::string text, ReadFile(o.text));
  const std::vector<int32_t> tokens = model->tokenizer->Encode(text, /*add_special_tokens=*/true);
  ASSIGN_OR_RETURN(auto device, kernels::MakeCpuDevice({}));
  std::printf("bench_quality: %s, %zu tokens of %s; windows of %lld tokens every %lld, prefill "
              "%lld, teacher-forced decode after it\n\n",
              model->name.c_str(), tokens.size(), o.text.c_str(), static_cast<long long>(o.window),
              static_cast<long long>(o.stride), static_cast<long long>(o.prefill));
  const server::KvPolicy full = config.policies.at("full");
  ASSIGN_OR_RETURN(Run reference, RunPolicy(*model, device.get(), full, tokens, o));
  const Scores base = Compare(reference, reference);
  std::printf("| policy | codec | residual / sparsity | top-1 agree | mean KL | ppl | ppl delta | "
              "KV B/token/layer | layout B/token/layer | vs full |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& [name, policy] : config.policies) {
    ASSIGN_OR_RETURN(Run run, RunPolicy(*model, device.get(), policy, tokens, o));
    const Scores s = Compare(reference, run);
    const std::string detail = policy.sparsity.type != "none"
                                   ? policy.sparsity.type
                                   : std::to_string(policy.residual_tokens);
    std::printf("| %s | %s | %s | %.4f | %.5f | %.3f | %+.3f | %.1f | %.1f | %.2fx |\n",
                name.c_str(), policy.codec.c_str(), detail.c_str(), s.top1, s.kl, s.ppl,
                s.ppl - base.ppl, run.bytes_per_token, LayoutBytesPerToken(*model, policy),
                reference.bytes_per_token / run.bytes_per_token);
  }
  std::printf("\n%zu decode positions per policy; full-precision perplexity %.3f\n",
              reference.logprobs.size(), base.ppl);
  return absl::OkStatus();
}

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  ASSIGN_OR_RETURN(server::CliFlags f,
                   server::CliFlags::Parse({argv + 1, argv + argc},
                                           {"config", "model", "text", "window", "stride",
                                            "prefill"}));
  Options o;
  o.config = f.GetOr("config", o.config);
  o.model = f.GetOr("model", o.model);
  o.text = f.GetOr("text", o.text);
  ASSIGN_OR_RETURN(o.window, f.GetInt("window", o.window));
  ASSIGN_OR_RETURN(o.stride, f.GetInt("stride", o.stride));
  ASSIGN_OR_RETURN(o.prefill, f.GetInt("prefill", o.prefill));
  return o;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
  absl::StatusOr<strata::Options> o = strata::ParseOptions(argc, argv);
  absl::Status s = o.ok() ? strata::Main(*o) : o.status();
  if (!s.ok()) {
    std::fprintf(stderr, "bench_quality: %s\n", std::string(s.message()).c_str());
    return o.ok() ? 1 : 2;
  }
  return 0;
}
