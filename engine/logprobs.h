// LogSoftmaxRow: log-probabilities of one logits row, for the OpenAI `logprobs` fields. It keeps
// a copy of the raw row (the sampler edits its row in place) and its log-sum-exp, so the
// logprob of any token and the k most likely tokens come out after sampling.
// Engine thread only; one per sampled row that asked for logprobs.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/engine.h"

namespace strata::engine {

class LogSoftmaxRow {
 public:
  // logits: [vocab] raw model logits. NaNs count as -inf.
  explicit LogSoftmaxRow(std::span<const float> logits);
  float LogProb(int32_t token) const;
  // The k most likely tokens, descending; ties -> lower id first. k is clamped to the vocab.
  std::vector<TokenLogprob> Top(int32_t k) const;

 private:
  std::vector<float> logits_;
  float log_sum_exp_ = 0.0f;
};

}  // namespace strata::engine
