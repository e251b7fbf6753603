// The per-step glue of the sparsity policies (DESIGN.md §5), shared by the engine and the
// quality harness: hands the forward pass's attention scores to the sparse sequences, and after
// the scheduler's Update compacts the KV of those over their budget. Engine thread.
#pragma once

#include "engine/model_runner.h"
#include "engine/scheduler.h"
#include "engine/step_batch.h"

namespace strata::engine {

// Before Scheduler::Update: the scores ModelRunner::Forward left for `batch`.
void CollectScores(const StepPlan& plan, const StepBatch& batch, const BatchInput& input,
                   const ModelRunner& runner, Scheduler& scheduler);
// After Scheduler::Update: moves the kept tokens of every sequence that must shrink and frees
// the pages behind them.
absl::Status CompactSparse(const StepPlan& plan, Scheduler& scheduler, ModelRunner& runner);

}  // namespace strata::engine
