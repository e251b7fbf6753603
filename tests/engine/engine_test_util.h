// Helpers shared by the engine tests.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "engine/engine.h"

namespace strata::engine {

// A greedy request for `max_tokens` tokens of `prompt`.
inline RequestOptions Greedy(std::vector<int32_t> prompt, int64_t max_tokens) {
  RequestOptions o;
  o.prompt_ids = std::move(prompt);
  o.max_tokens = max_tokens;
  o.sampling.temperature = 0;
  return o;
}

}  // namespace strata::engine
