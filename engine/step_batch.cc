#include "engine/step_batch.h"

#include <algorithm>

namespace strata::engine {

void StepBatch::Build(const StepPlan& plan, const Scheduler& scheduler,
                      const kvcache::KvCacheManager& kv) {
  token_ids_.clear();
  positions_.clear();
  query_start_.assign(1, 0);
  context_lens_.clear();
  logit_rows_.clear();
  layer_loads_.clear();
  layer_stores_.clear();
  max_blocks_ = 1;
  for (const ScheduledSeq& s : plan.seqs) {
    const Sequence& seq = *scheduler.Find(s.id);
    for (int64_t p = s.start; p < s.start + s.num_new_tokens; ++p) {
      token_ids_.push_back(seq.tokens[p]);
      positions_.push_back(static_cast<int32_t>(p));
    }
    query_start_.push_back(static_cast<int32_t>(token_ids_.size()));
    context_lens_.push_back(static_cast<int32_t>(s.start + s.num_new_tokens));
    if (s.sample) logit_rows_.push_back(query_start_.back() - 1);
    max_blocks_ = std::max<int32_t>(max_blocks_, static_cast<int32_t>(kv.num_blocks(s.id)));
    kv.LayerCopies(s.id, s.start, s.start + s.num_new_tokens, &layer_loads_, &layer_stores_);
  }
  const int32_t layers = kv.layout().num_layers;
  const size_t num_seqs = plan.seqs.size();
  block_tables_.assign(static_cast<size_t>(layers) * num_seqs * max_blocks_, 0);
  slots_.clear();
  for (int32_t l = 0; l < layers; ++l) {
    for (size_t i = 0; i < num_seqs; ++i) {
      auto pages = kv.pages(plan.seqs[i].id, l);
      std::copy(pages.begin(), pages.end(),
                block_tables_.begin() + (static_cast<size_t>(l) * num_seqs + i) * max_blocks_);
    }
    for (const ScheduledSeq& s : plan.seqs) {
      for (int64_t p = s.start; p < s.start + s.num_new_tokens; ++p) {
        slots_.push_back(kv.Slot(s.id, l, p));
      }
    }
  }
}

BatchInput StepBatch::input() const {
  return BatchInput{.token_ids = token_ids_, .positions = positions_,
                    .query_start = query_start_, .context_lens = context_lens_,
                    .max_blocks_per_seq = max_blocks_, .block_tables = block_tables_,
                    .slots = slots_, .logit_rows = logit_rows_, .layer_loads = layer_loads_,
                    .layer_stores = layer_stores_};
}

}  // namespace strata::engine
