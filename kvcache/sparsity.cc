#include "kvcache/sparsity.h"

#include <algorithm>
#include <numeric>

#include "common/status.h"

namespace strata::kvcache {
namespace {

// Indices of the `k` largest values of `v` (ties: the lower index), ascending.
std::vector<int32_t> TopK(std::span<const float> v, int64_t k) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min<int64_t>(k, static_cast<int64_t>(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
    return v[a] != v[b] ? v[a] > v[b] : a < b;
  });
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

// [from, to) appended to `out`.
void AppendRange(int64_t from, int64_t to, std::vector<int32_t>* out) {
  for (int64_t i = from; i < to; ++i) out->push_back(static_cast<int32_t>(i));
}

}  // namespace

SparsityState::SparsityState(const SparsitySpec& spec, int32_t num_layers, int32_t num_kv_heads)
    : spec_(spec), num_layers_(num_layers), num_kv_heads_(num_kv_heads),
      scores_(num_layers, std::vector<std::vector<float>>(num_kv_heads)) {}

void SparsityState::AddScores(int32_t layer, std::span<const float> scores, int64_t stride,
                              int64_t kv_tokens) {
  for (int32_t h = 0; h < num_kv_heads_; ++h) {
    std::vector<float>& acc = scores_[layer][h];
    if (static_cast<int64_t>(acc.size()) < kv_tokens) acc.resize(kv_tokens, 0.0f);
    const float* row = scores.data() + h * stride;
    for (int64_t j = 0; j < kv_tokens; ++j) acc[j] += row[j];
  }
}

std::vector<int32_t> SparsityState::SinkWindow(int64_t kv_tokens) const {
  std::vector<int32_t> keep;
  AppendRange(0, spec_.sink_tokens, &keep);
  AppendRange(kv_tokens - spec_.window_tokens, kv_tokens, &keep);
  return keep;
}

// The recent_tokens latest, plus the older tokens with the most accumulated attention.
std::vector<int32_t> SparsityState::HeavyHitters(std::span<const float> scores,
                                                 int64_t kv_tokens) const {
  const int64_t older = kv_tokens - spec_.recent_tokens;
  std::vector<float> old(older, 0.0f);
  std::copy_n(scores.begin(), std::min<int64_t>(older, static_cast<int64_t>(scores.size())),
              old.begin());
  std::vector<int32_t> keep = TopK(old, spec_.budget_tokens - spec_.recent_tokens);
  AppendRange(older, kv_tokens, &keep);
  return keep;
}

// SnapKV: the observation window's votes, averaged over pool_kernel neighbours (those in range),
// pick the prompt tokens before the window; the window is kept whole.
std::vector<int32_t> SparsityState::SnapKv(std::span<const float> votes, int64_t kv_tokens) const {
  const int64_t window_start = kv_tokens - spec_.observation_tokens;
  const int64_t half = spec_.pool_kernel / 2;
  std::vector<float> pooled(window_start, 0.0f);
  for (int64_t j = 0; j < window_start; ++j) {
    const int64_t lo = std::max<int64_t>(0, j - half);
    const int64_t hi = std::min<int64_t>(window_start, j + half + 1);
    float sum = 0;
    for (int64_t i = lo; i < hi; ++i) sum += i < static_cast<int64_t>(votes.size()) ? votes[i] : 0;
    pooled[j] = sum / static_cast<float>(hi - lo);
  }
  std::vector<int32_t> keep = TopK(pooled, spec_.budget_tokens - spec_.observation_tokens);
  AppendRange(window_start, kv_tokens, &keep);
  return keep;
}

bool SparsityState::Plan(int64_t kv_tokens, bool in_prompt, bool prompt_done, int32_t slack,
                         KeepSets* keep) {
  using Type = SparsitySpec::Type;
  if (!spec_.enabled() || in_prompt) return false;
  const bool snap = spec_.type == Type::kSnapKv;
  if (snap && !prompt_done) return false;  // still voting
  const int64_t budget = spec_.Budget();
  // The step that finished the prompt compacts down to the budget at once.
  if (kv_tokens <= budget || (!snap && !prompt_done && kv_tokens < budget + slack)) {
    if (snap) ClearScores();  // the prompt fits: nothing to choose, now or later
    return false;
  }
  keep->assign(num_layers_, std::vector<std::vector<int32_t>>(num_kv_heads_));
  for (int32_t l = 0; l < num_layers_; ++l) {
    for (int32_t h = 0; h < num_kv_heads_; ++h) {
      std::vector<int32_t>& k = (*keep)[l][h];
      switch (spec_.type) {
        case Type::kSinkWindow: k = SinkWindow(kv_tokens); break;
        case Type::kH2o: k = HeavyHitters(scores_[l][h], kv_tokens); break;
        case Type::kSnapKv: k = SnapKv(scores_[l][h], kv_tokens); break;
        case Type::kNone: break;
      }
      CHECK(static_cast<int64_t>(k.size()) == budget);
    }
  }
  if (snap) {
    ClearScores();  // SnapKV votes once
  } else {
    CompactScores(*keep);
  }
  return true;
}

void SparsityState::ClearScores() {
  scores_.assign(num_layers_, std::vector<std::vector<float>>(num_kv_heads_));
}

void SparsityState::CompactScores(const KeepSets& keep) {
  for (int32_t l = 0; l < num_layers_; ++l) {
    for (int32_t h = 0; h < num_kv_heads_; ++h) {
      std::vector<float>& acc = scores_[l][h];
      std::vector<float> kept;
      kept.reserve(keep[l][h].size());
      for (int32_t j : keep[l][h]) {
        kept.push_back(j < static_cast<int32_t>(acc.size()) ? acc[j] : 0.0f);
      }
      acc = std::move(kept);
    }
  }
}

}  // namespace strata::kvcache
