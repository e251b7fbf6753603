#include "engine/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace strata::engine {

LogSoftmaxRow::LogSoftmaxRow(std::span<const float> logits) : logits_(logits.begin(), logits.end()) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float max = kNegInf;
  for (float& x : logits_) {
    if (std::isnan(x)) x = kNegInf;
    max = std::max(max, x);
  }
  if (max == kNegInf) {  // nothing is possible: every logprob is -inf
    log_sum_exp_ = 0.0f;
    return;
  }
  double sum = 0.0;  // double: 128k terms summed in float lose the small ones
  for (float x : logits_) sum += std::exp(static_cast<double>(x - max));
  log_sum_exp_ = max + static_cast<float>(std::log(sum));
}

float LogSoftmaxRow::LogProb(int32_t token) const {
  if (token < 0 || token >= static_cast<int32_t>(logits_.size())) {
    return -std::numeric_limits<float>::infinity();
  }
  return logits_[token] - log_sum_exp_;
}

std::vector<TokenLogprob> LogSoftmaxRow::Top(int32_t k) const {
  const size_t n = std::min<size_t>(std::max(k, 0), logits_.size());
  auto better = [&](int32_t a, int32_t b) {
    return logits_[a] > logits_[b] || (logits_[a] == logits_[b] && a < b);
  };
  // A min-heap of the best n seen so far: one pass over the vocabulary, O(V log n).
  std::vector<int32_t> heap;
  heap.reserve(n + 1);
  for (int32_t id = 0; n > 0 && id < static_cast<int32_t>(logits_.size()); ++id) {
    if (heap.size() < n) {
      heap.push_back(id);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(id, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = id;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort(heap.begin(), heap.end(), better);
  std::vector<TokenLogprob> out;
  for (int32_t id : heap) out.push_back({id, logits_[id] - log_sum_exp_});
  return out;
}

}  // namespace strata::engine
