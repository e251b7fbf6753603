// StepBatch turns a StepPlan into the ModelRunner's BatchInput: token ids, positions, the varlen
// offsets, per-layer block tables and KV slots, which rows need logits, and the LayerKV page
// copies of layers kept in host RAM. Built by the engine
// thread each step; the vectors are reused across steps to avoid allocation.
#pragma once

#include <vector>

#include "engine/model_runner.h"
#include "engine/scheduler.h"
#include "kvcache/kv_cache_manager.h"

namespace strata::engine {

class StepBatch {
 public:
  // Fills the batch for `plan`. Sequences are looked up in `scheduler`, pages in `kv`.
  void Build(const StepPlan& plan, const Scheduler& scheduler, const kvcache::KvCacheManager& kv);
  BatchInput input() const;
  // LayerKV page copies (loads + stores) the batch makes.
  size_t num_layer_copies() const { return layer_loads_.size() + layer_stores_.size(); }

 private:
  std::vector<int32_t> token_ids_, positions_, query_start_, context_lens_, block_tables_;
  std::vector<int64_t> slots_;
  std::vector<int32_t> logit_rows_;
  std::vector<kvcache::LayerPageCopy> layer_loads_, layer_stores_;
  int32_t max_blocks_ = 0;
};

}  // namespace strata::engine
