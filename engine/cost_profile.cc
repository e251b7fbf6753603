#include "engine/cost_profile.h"

#include <algorithm>

#include "common/clock.h"
#include "engine/scheduler.h"
#include "engine/step_batch.h"

namespace strata::engine {
namespace {

struct Shape {
  int32_t seqs = 1;
  int64_t prompt = 16;
};

// Runs `shape`'s prompts to completion (prefill, then one decode) and records every step.
absl::Status RunShape(const Shape& shape, int round, ModelRunner& runner,
                      kvcache::KvCacheManager& kv, const SchedulerConfig& sc,
                      std::vector<std::pair<StepFeatures, double>>* samples) {
  Scheduler sched(sc, &kv);
  const int64_t vocab = runner.vocab_size();
  for (int32_t s = 0; s < shape.seqs; ++s) {
    auto seq = std::make_unique<Sequence>();
    seq->id = static_cast<RequestId>(1) << 62 | static_cast<RequestId>(round) << 20 | s;
    for (int64_t i = 0; i < shape.prompt; ++i) {
      seq->tokens.push_back(static_cast<int32_t>((i * 7 + s * 13 + round * 31 + 1) % vocab));
    }
    seq->num_prompt_tokens = shape.prompt;
    seq->max_tokens = 2;
    seq->sampler = std::make_unique<Sampler>(SamplingParams{});
    seq->prefix_seed = {0x5752a7a, static_cast<uint64_t>(round) << 32 | s};  // private
    sched.Add(std::move(seq));
  }
  StepBatch batch;
  std::vector<float> logits;
  while (sched.num_running() + sched.num_waiting() > 0) {
    const double t0 = NowSeconds();
    StepPlan plan = sched.Schedule();
    if (plan.empty()) return absl::InternalError("cost profile: a step scheduled nothing");
    batch.Build(plan, sched);
    BatchInput input = batch.input();
    logits.resize(input.logit_rows.size() * vocab);
    RETURN_IF_ERROR(runner.Forward(input, logits));
    std::vector<int32_t> sampled(input.logit_rows.size(), 1);
    sched.Update(plan, sampled);
    samples->emplace_back(plan.features, NowSeconds() - t0);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::pair<StepFeatures, double>>> ProfileStepCosts(ModelRunner& runner,
                                                         kvcache::KvCacheManager& kv,
                                                         int64_t max_batch_tokens,
                                                         int32_t max_num_seqs) {
  const int64_t max_len = runner.runner_config().max_model_len - 2;
  const int64_t longest = std::min({max_batch_tokens, max_len, int64_t{256}});
  const int32_t batch = std::min(max_num_seqs, 8);
  const std::vector<Shape> shapes = {{1, std::min<int64_t>(16, longest)},
                                     {1, std::max<int64_t>(1, longest / 4)},
                                     {1, longest},
                                     {batch, std::max<int64_t>(1, std::min<int64_t>(32, max_batch_tokens / batch))}};
  SchedulerConfig sc{.max_batch_tokens = max_batch_tokens, .max_num_seqs = max_num_seqs};
  std::vector<std::pair<StepFeatures, double>> samples;
  for (int round = 0; round < 2; ++round) {  // the first round also warms the kernels up
    for (const Shape& shape : shapes) RETURN_IF_ERROR(RunShape(shape, round, runner, kv, sc, &samples));
    if (round == 0) samples.clear();
  }
  return samples;
}

}  // namespace strata::engine
