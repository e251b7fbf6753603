// StepBatch turns a StepPlan into the ModelRunner's BatchInput: token ids, positions, the varlen
// offsets, per-layer block tables and KV slots, which rows need logits, and the LayerKV page
// copies of layers kept in host RAM. Sequences are grouped by KV pool (codec), pool 0 first, in
// plan order within a pool; logit rows stay in plan order. A KIVI sequence's table lists its
// quantized blocks up to the step's fold, then its residual pages. Built by the engine thread
// each step; the vectors are reused across steps to avoid allocation.
#pragma once

#include <vector>

#include "engine/model_runner.h"
#include "engine/scheduler.h"
#include "kvcache/kv_cache_manager.h"

namespace strata::engine {

class StepBatch {
 public:
  // Fills the batch for `plan`. Sequences and their KV pools are looked up in `scheduler`.
  void Build(const StepPlan& plan, const Scheduler& scheduler);
  BatchInput input() const;
  // Batch index of the plan's entry `i` (sequences are grouped by pool).
  int32_t BatchIndex(size_t plan_index) const { return batch_index_[plan_index]; }
  // LayerKV page copies (loads + stores) the batch makes.
  size_t num_layer_copies() const { return layer_loads_.size() + layer_stores_.size(); }

 private:
  // A plan entry with its sequence and KV pool, looked up once per step.
  struct Entry {
    const ScheduledSeq* s;
    const Sequence* seq;
    const kvcache::KvCacheManager* kv;
    size_t plan_index;
  };
  // The plan's entries in batch order (grouped by pool).
  void Order(const StepPlan& plan, const Scheduler& scheduler);
  static int32_t ScoreFrom(const ScheduledSeq& s, const Sequence& seq, int32_t first_row);
  void AddSequence(const Entry& e);
  void AddTables();

  std::vector<Entry> order_;
  std::vector<int32_t> token_ids_, positions_, query_start_, context_lens_, block_tables_;
  std::vector<int32_t> seq_pools_, quant_before_, quant_after_, score_from_, batch_index_;
  std::vector<int64_t> slots_;
  std::vector<int32_t> logit_rows_;
  std::vector<kvcache::LayerPageCopy> layer_loads_, layer_stores_;
  int32_t max_blocks_ = 0;
};

}  // namespace strata::engine
