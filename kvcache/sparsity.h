// Sparsity policies (DESIGN.md §5): which KV tokens of a request to keep, per layer and KV head.
//
//   sink_window  StreamingLLM: the first sink_tokens and the most recent window_tokens.
//   h2o          Heavy hitters: the recent_tokens latest plus the older tokens with the most
//                attention accumulated over every query so far (per head), budget_tokens in all.
//   snapkv       After the prompt: the last observation_tokens of the prompt vote with their
//                attention (pooled over pool_kernel neighbours, per head) for the prompt tokens to
//                keep; the window itself is kept; budget_tokens in all. Decode adds tokens freely.
//
// The prompt is computed with full attention (H2O accumulates its scores meanwhile); eviction
// starts once it is done, so what a request keeps never depends on how its prompt was chunked.
// Eviction is amortized: the KV is compacted down to the budget once it exceeds it by `slack`
// tokens (a block), so a step copies at most budget tokens per block of decode and the KV holds
// between budget and budget + slack - 1 tokens. A compaction keeps tokens in their order.
//
// SparsityState is a request's running state (H2O's accumulated scores, SnapKV's votes), owned
// by its Sequence; pure functions otherwise. Engine thread only.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace strata::kvcache {

struct SparsitySpec {
  enum class Type : uint8_t { kNone, kSinkWindow, kH2o, kSnapKv };
  Type type = Type::kNone;
  int32_t sink_tokens = 0;
  int32_t window_tokens = 0;
  int32_t budget_tokens = 0;
  int32_t recent_tokens = 0;
  int32_t observation_tokens = 0;
  int32_t pool_kernel = 1;

  bool enabled() const { return type != Type::kNone; }
  // Tokens a compaction keeps.
  int32_t Budget() const {
    return type == Type::kSinkWindow ? sink_tokens + window_tokens : budget_tokens;
  }
  // Whether the policy needs attention probabilities of the rows of a step.
  bool NeedsScores() const { return type == Type::kH2o || type == Type::kSnapKv; }
};

// Kept token indices per layer and KV head: keep[layer][head] ascending, all the same length.
using KeepSets = std::vector<std::vector<std::vector<int32_t>>>;

class SparsityState {
 public:
  SparsityState(const SparsitySpec& spec, int32_t num_layers, int32_t num_kv_heads);

  // Adds a step's attention probabilities: scores[layer][head * stride + j] for the KV's first
  // `kv_tokens` tokens (as they are now, before any compaction of this step).
  void AddScores(int32_t layer, std::span<const float> scores, int64_t stride, int64_t kv_tokens);

  // After a step that left `kv_tokens` tokens in the KV: the tokens to keep, or false when the KV
  // stays. `in_prompt`: the prompt is not computed yet; `prompt_done`: this step finished it.
  // On true the state's scores are compacted the same way.
  bool Plan(int64_t kv_tokens, bool in_prompt, bool prompt_done, int32_t slack, KeepSets* keep);

  const SparsitySpec& spec() const { return spec_; }

 private:
  std::vector<int32_t> SinkWindow(int64_t kv_tokens) const;
  std::vector<int32_t> HeavyHitters(std::span<const float> scores, int64_t kv_tokens) const;
  std::vector<int32_t> SnapKv(std::span<const float> votes, int64_t kv_tokens) const;
  void CompactScores(const KeepSets& keep);
  void ClearScores();

  SparsitySpec spec_;
  int32_t num_layers_, num_kv_heads_;
  std::vector<std::vector<std::vector<float>>> scores_;  // [layer][head][token]
};

}  // namespace strata::kvcache
