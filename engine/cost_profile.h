// The start-up profile of the SLO scheduler's cost model (DESIGN.md §6): a few real forward
// passes of known shapes (single prompts of several lengths, a batch of prompts, then their
// decodes) through the engine's own runner and KV cache, timed; CostModel::FromProfile fits the
// initial model from them. The profile's KV is released afterwards and its blocks carry a
// private cache seed, so no request ever hits them. Called once by Engine::Init, before the engine thread runs.
#pragma once

#include "common/status.h"
#include "engine/cost_model.h"
#include "engine/model_runner.h"
#include "kvcache/kv_cache_manager.h"

namespace strata::engine {

// (features, measured seconds) of every profiled step after a warm-up round.
absl::StatusOr<std::vector<std::pair<StepFeatures, double>>> ProfileStepCosts(ModelRunner& runner,
                                                         kvcache::KvCacheManager& kv,
                                                         int64_t max_batch_tokens,
                                                         int32_t max_num_seqs);

}  // namespace strata::engine
