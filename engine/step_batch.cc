#include "engine/step_batch.h"

#include <algorithm>

namespace strata::engine {

void StepBatch::Order(const StepPlan& plan, const Scheduler& scheduler) {
  order_.clear();
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const Sequence* seq = scheduler.Find(plan.seqs[i].id);
    order_.push_back({&plan.seqs[i], seq, &scheduler.Kv(*seq), i});
  }
  std::stable_sort(order_.begin(), order_.end(), [](const Entry& a, const Entry& b) {
    return a.seq->kv_pool < b.seq->kv_pool;
  });
}

// The first row whose attention probabilities the sequence's sparsity policy wants (H2O: all;
// SnapKV: the prompt's observation window), or the row after its last (none).
int32_t StepBatch::ScoreFrom(const ScheduledSeq& s, const Sequence& seq, int32_t first_row) {
  const int64_t end = s.start + s.num_new_tokens;
  if (!seq.sparsity) return static_cast<int32_t>(first_row + s.num_new_tokens);
  const kvcache::SparsitySpec& spec = seq.sparsity->spec();
  if (spec.type == kvcache::SparsitySpec::Type::kH2o) return first_row;
  if (spec.type != kvcache::SparsitySpec::Type::kSnapKv || s.start >= seq.num_prompt_tokens) {
    return static_cast<int32_t>(first_row + s.num_new_tokens);
  }
  const int64_t window = std::max<int64_t>(s.start, seq.num_prompt_tokens - spec.observation_tokens);
  return static_cast<int32_t>(first_row + std::min(window, end) - s.start);
}

void StepBatch::AddSequence(const Entry& e) {
  const ScheduledSeq& s = *e.s;
  const Sequence& seq = *e.seq;
  for (int64_t p = s.start; p < s.start + s.num_new_tokens; ++p) {
    token_ids_.push_back(seq.tokens[p]);
    positions_.push_back(static_cast<int32_t>(p));
  }
  query_start_.push_back(static_cast<int32_t>(token_ids_.size()));
  const int64_t end = s.start + s.num_new_tokens;
  context_lens_.push_back(static_cast<int32_t>(end - seq.evicted_tokens));
  score_from_.push_back(ScoreFrom(s, seq, query_start_[query_start_.size() - 2]));
  seq_pools_.push_back(seq.kv_pool);
  const int32_t r = seq.kv_access.residual_tokens;  // > 0: KIVI
  const int64_t quant_after = r > 0 ? kvcache::KiviQuantAfter(seq.quant_tokens, end, r) : 0;
  quant_before_.push_back(static_cast<int32_t>(r > 0 ? seq.quant_tokens : 0));
  quant_after_.push_back(static_cast<int32_t>(quant_after));
  const int64_t blocks = r > 0 ? quant_after / e.kv->layout().block_size +
                                     static_cast<int64_t>(e.kv->residual_pages(s.id, 0).size())
                               : e.kv->num_blocks(s.id);
  max_blocks_ = std::max<int32_t>(max_blocks_, static_cast<int32_t>(blocks));
  if (seq.kv_pool == 0 && !seq.sparsity) {
    e.kv->LayerCopies(s.id, s.start, end, &layer_loads_, &layer_stores_);
  }
}

void StepBatch::AddTables() {
  const int32_t layers = order_[0].kv->layout().num_layers;
  const size_t num_seqs = order_.size();
  block_tables_.assign(static_cast<size_t>(layers) * num_seqs * max_blocks_, 0);
  slots_.clear();
  for (int32_t l = 0; l < layers; ++l) {
    for (size_t i = 0; i < num_seqs; ++i) {
      const Entry& e = order_[i];
      const RequestId id = e.s->id;
      auto row = block_tables_.begin() + (static_cast<size_t>(l) * num_seqs + i) * max_blocks_;
      auto pages = e.kv->pages(id, l);
      if (e.seq->kv_access.residual_tokens > 0) {
        // KIVI: quantized blocks up to the fold, then the residual pages; KiviWriteKv places
        // the new tokens (no slots).
        row = std::copy_n(pages.begin(), quant_after_[i] / e.kv->layout().block_size, row);
        auto residual = e.kv->residual_pages(id, l);
        std::copy(residual.begin(), residual.end(), row);
        slots_.insert(slots_.end(), e.s->num_new_tokens, -1);
        continue;
      }
      std::copy(pages.begin(), pages.end(), row);
      for (int64_t p = e.s->start; p < e.s->start + e.s->num_new_tokens; ++p) {
        slots_.push_back(e.kv->Slot(id, l, p - e.seq->evicted_tokens));
      }
    }
  }
}

void StepBatch::Build(const StepPlan& plan, const Scheduler& scheduler) {
  token_ids_.clear();
  positions_.clear();
  query_start_.assign(1, 0);
  context_lens_.clear();
  seq_pools_.clear();
  quant_before_.clear();
  quant_after_.clear();
  score_from_.clear();
  logit_rows_.clear();
  layer_loads_.clear();
  layer_stores_.clear();
  max_blocks_ = 1;
  if (plan.seqs.empty()) return;
  Order(plan, scheduler);
  std::vector<int32_t> last_row(plan.seqs.size(), -1);
  batch_index_.assign(plan.seqs.size(), -1);
  bool scores = false;
  for (const Entry& e : order_) {
    AddSequence(e);
    last_row[e.plan_index] = query_start_.back() - 1;
    batch_index_[e.plan_index] = static_cast<int32_t>(context_lens_.size()) - 1;
    scores |= score_from_.back() < query_start_.back();
  }
  if (!scores) score_from_.clear();
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    if (plan.seqs[i].sample) logit_rows_.push_back(last_row[i]);
  }
  AddTables();
}

BatchInput StepBatch::input() const {
  return BatchInput{.token_ids = token_ids_, .positions = positions_,
                    .query_start = query_start_, .context_lens = context_lens_,
                    .max_blocks_per_seq = max_blocks_, .block_tables = block_tables_,
                    .slots = slots_, .logit_rows = logit_rows_, .layer_loads = layer_loads_,
                    .layer_stores = layer_stores_, .seq_pools = seq_pools_,
                    .quant_before = quant_before_, .quant_after = quant_after_,
                    .score_from = score_from_};
}

}  // namespace strata::engine
