// Scheduler's side of the sparsity policies (DESIGN.md §5, kvcache/sparsity.h): it feeds each
// sparse sequence's policy the attention mass of its steps, asks it after every step which KV
// tokens to keep, and once the engine has moved them (ModelRunner::CompactKv) frees the pages
// behind them. A sparse sequence's KV index of position p is p - evicted_tokens.
#include "engine/scheduler.h"

namespace strata::engine {

void Scheduler::AddScores(RequestId id, int32_t layer, std::span<const float> scores,
                          int64_t stride, int64_t kv_tokens) {
  Sequence& seq = *seqs_.at(id);
  if (seq.sparsity) seq.sparsity->AddScores(layer, scores, stride, kv_tokens);
}

std::vector<Scheduler::Compaction> Scheduler::PlanCompactions(const StepPlan& plan) {
  std::vector<Compaction> out;
  for (const ScheduledSeq& s : plan.seqs) {
    auto it = seqs_.find(s.id);
    if (it == seqs_.end() || !it->second->sparsity) continue;  // finished, or dense
    Sequence& seq = *it->second;
    const int64_t kv_tokens = seq.num_computed_tokens - seq.evicted_tokens;
    const bool prompt_done = s.start < seq.num_prompt_tokens &&
                             seq.num_computed_tokens >= seq.num_prompt_tokens;
    Compaction c{.id = s.id, .keep_tokens = 0, .keep = {}};
    const bool in_prompt = seq.num_computed_tokens < seq.num_prompt_tokens;
    if (!seq.sparsity->Plan(kv_tokens, in_prompt, prompt_done, Kv(seq).layout().block_size,
                            &c.keep)) {
      continue;
    }
    c.keep_tokens = static_cast<int64_t>(c.keep[0][0].size());
    out.push_back(std::move(c));
  }
  return out;
}

void Scheduler::Compacted(const Compaction& c) {
  Sequence& seq = *seqs_.at(c.id);
  const int64_t kv_tokens = seq.num_computed_tokens - seq.evicted_tokens;
  seq.evicted_tokens += kv_tokens - c.keep_tokens;
  Kv(seq).Truncate(c.id, c.keep_tokens);
}

}  // namespace strata::engine
