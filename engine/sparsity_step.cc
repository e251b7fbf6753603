#include "engine/sparsity_step.h"

#include <algorithm>

namespace strata::engine {

void CollectScores(const StepPlan& plan, const StepBatch& batch, const BatchInput& input,
                   const ModelRunner& runner, Scheduler& scheduler) {
  if (input.score_from.empty() || runner.scores().empty()) return;
  const kvcache::KvLayout& layout = runner.kv_layout();
  const int64_t stride = runner.score_stride();
  const int64_t per_seq = layout.num_kv_heads * stride;
  const int64_t seqs = static_cast<int64_t>(runner.scores().size()) / layout.num_layers / per_seq;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const int32_t b = batch.BatchIndex(i);
    if (b >= seqs || input.score_from[b] == input.query_start[b + 1]) continue;
    for (int32_t l = 0; l < layout.num_layers; ++l) {
      scheduler.AddScores(plan.seqs[i].id, l, runner.scores().subspan((l * seqs + b) * per_seq, per_seq),
                          stride, input.context_lens[b]);
    }
  }
}

absl::Status CompactSparse(const StepPlan& plan, Scheduler& scheduler, ModelRunner& runner) {
  std::vector<Scheduler::Compaction> todo = scheduler.PlanCompactions(plan);
  if (todo.empty()) return absl::OkStatus();
  const kvcache::KvLayout& layout = runner.kv_layout();
  const int32_t n = static_cast<int32_t>(todo.size());
  int32_t max_blocks = 1, max_keep = 1;
  for (const auto& c : todo) {
    const Sequence& seq = *scheduler.Find(c.id);
    max_blocks = std::max<int32_t>(max_blocks, static_cast<int32_t>(scheduler.Kv(seq).num_blocks(c.id)));
    max_keep = std::max<int32_t>(max_keep, static_cast<int32_t>(c.keep_tokens));
  }
  const int32_t layers = layout.num_layers, heads = layout.num_kv_heads;
  std::vector<int32_t> tables(static_cast<size_t>(layers) * n * max_blocks, 0);
  std::vector<int32_t> keep(static_cast<size_t>(layers) * n * heads * max_keep, 0);
  std::vector<int32_t> num_keep(n);
  for (int32_t s = 0; s < n; ++s) {
    const Scheduler::Compaction& c = todo[s];
    const kvcache::KvCacheManager& kv = scheduler.Kv(*scheduler.Find(c.id));
    num_keep[s] = static_cast<int32_t>(c.keep_tokens);
    for (int32_t l = 0; l < layers; ++l) {
      auto pages = kv.pages(c.id, l);
      std::copy(pages.begin(), pages.end(), tables.begin() + (static_cast<size_t>(l) * n + s) * max_blocks);
      for (int32_t h = 0; h < heads; ++h) {
        const std::vector<int32_t>& k = c.keep[l][h];
        std::copy(k.begin(), k.end(), keep.begin() + ((static_cast<size_t>(l) * n + s) * heads + h) * max_keep);
      }
    }
  }
  RETURN_IF_ERROR(runner.CompactKv({.num_seqs = n, .max_blocks_per_seq = max_blocks,
                                    .max_keep = max_keep, .block_tables = tables, .keep = keep,
                                    .num_keep = num_keep}));
  for (const auto& c : todo) scheduler.Compacted(c);
  return absl::OkStatus();
}

}  // namespace strata::engine
