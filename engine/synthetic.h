// Synthetic models (`synthetic:<preset>`, DESIGN.md §4): the shapes of real architectures with
// deterministic random weights generated in memory, for smoke runs and benchmarks where the
// weights' values do not matter. Their output is meaningless text. A SyntheticModel owns its
// weight memory (ModelWeights::owned); it is immutable once made and any thread may read it.
// The functions are pure and callable from any thread; generation uses OpenMP worker threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "engine/model_config.h"
#include "engine/weights.h"

namespace strata::engine {

struct SyntheticModel {
  ModelConfig config;
  ModelWeights weights;     // every matrix is a view into weights.owned
  std::string description;  // one line for logs: preset, seed, size, "meaningless output"
};

// The known presets, in a stable order: "tiny", "llama-3.2-1b", "qwen2.5-0.5b", "llama-3-8b".
std::vector<std::string_view> SyntheticPresetNames();

// A preset's architecture alone, without generating weights (cheap, for any preset).
// Unknown preset: InvalidArgument listing the known ones.
absl::StatusOr<ModelConfig> SyntheticModelConfig(std::string_view preset);

// Generates a preset's weights: the same (preset, seed) gives the same bytes on any machine and
// thread count. Matrices are uniform with std 1/sqrt(in_features) so activations stay O(1)
// through every layer; norms are 1.0, biases small. Memory: NumParameters() x dtype size
// (llama-3-8b: 16 GB). Unknown preset: InvalidArgument listing the known ones.
absl::StatusOr<SyntheticModel> MakeSyntheticModel(std::string_view preset, uint64_t seed = 0);

}  // namespace strata::engine
