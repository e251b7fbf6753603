// Token sampling for one request: penalties, temperature, top-k, top-p, min-p, then a draw from
// the softmax of what is left (the order vLLM uses). One Sampler per request; it owns that
// request's random stream, so a seeded request draws the same tokens whatever else is batched
// with it. Called by the engine thread once per generated token; not thread-safe.
//
// The math after the penalties is the device kernels' (kernels/device.h SampleParams; its CPU
// twin kernels/cpu/cpu_sampling.h). The engine may sample on the device instead: NextRow() gives
// the row's parameters with the uniform Sample would have drawn, AppendPenaltyEntries the
// penalties' entries, so a seeded request draws the same tokens either way.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "common/status.h"
#include "engine/penalty_counts.h"
#include "kernels/device.h"

namespace strata::engine {

struct SamplingParams {
  // Divides the logits; 0 (anything below 1e-5) means greedy: argmax, ties -> lowest id.
  float temperature = 1.0f;
  // Keeps the k most likely tokens; 0 or -1 turns it off.
  int32_t top_k = 0;
  // Keeps the smallest most-likely set whose probability reaches top_p; in (0, 1], 1 = off.
  float top_p = 1.0f;
  // Drops tokens less likely than min_p times the most likely one; in [0, 1], 0 = off.
  float min_p = 0.0f;
  // > 0; 1 = off. HF/vLLM semantics over the prompt and generated tokens (each token once):
  // logit > 0 ? logit / penalty : logit * penalty.
  float repetition_penalty = 1.0f;
  // In [-2, 2]; OpenAI semantics over generated tokens: minus penalty once per distinct token.
  float presence_penalty = 0.0f;
  // In [-2, 2]; OpenAI semantics over generated tokens: minus penalty * occurrence count.
  float frequency_penalty = 0.0f;
  // Set: a reproducible stream. Unset: seeded from std::random_device.
  std::optional<uint64_t> seed;

  // InvalidArgument naming the field and its allowed range, e.g.
  // "top_p must be in (0, 1], got 1.5".
  absl::Status Validate() const;
  // True when sampling reduces to argmax (temperature below kGreedyTemperature or top_k == 1).
  bool IsGreedy() const;
  // True when the token is the argmax of the raw logits: greedy and no penalty changes them.
  bool IsPlainArgmax() const;
};

class Sampler {
 public:
  // Temperatures below this are greedy: dividing by them would only overflow towards argmax.
  static constexpr float kGreedyTemperature = kernels::kSampleGreedyTemperature;

  // REQUIRES: params.Validate().ok().
  explicit Sampler(const SamplingParams& params);

  // logits: [vocab] f32 for the next position; used as scratch (modified in place).
  // prompt_ids / generated_ids: this request's tokens so far (for the penalties); ids outside
  // [0, vocab) are ignored. Returns the chosen id in [0, vocab). Unless greedy, consumes one
  // uniform of the stream (NextRow), whatever the logits.
  // REQUIRES: !logits.empty().
  int32_t Sample(std::span<float> logits, std::span<const int32_t> prompt_ids,
                 std::span<const int32_t> generated_ids);

  const SamplingParams& params() const { return params_; }

  // This request's row of a device Sample (kernels::SampleParams) for its next token: the
  // parameters, and a fresh uniform from its stream unless greedy -- exactly what Sample would
  // consume, so NextRow and Sample may be mixed from token to token.
  kernels::SamplingRow NextRow();

  // The penalties' entries (kernels::ApplyPenaltiesParams) of batch row `row`: one per distinct
  // id in [0, vocab) of prompt_ids and generated_ids, ascending, output_count = its occurrences
  // in generated_ids. Nothing without a penalty; without a repetition penalty, only generated
  // ids (a prompt-only entry would change nothing). Appends to *out. The counts are kept from
  // call to call (PenaltyCounts), so a call that only adds generated ids costs those ids.
  void AppendPenaltyEntries(int32_t row, std::span<const int32_t> prompt_ids,
                            std::span<const int32_t> generated_ids, int64_t vocab,
                            std::vector<kernels::PenaltyEntry>* out);

  // The penalty stage alone, in place on logits [vocab]; exposed so tests can check exact values.
  // Touches only the logits of tokens that occur in prompt_ids / generated_ids.
  static void ApplyPenalties(const SamplingParams& params, std::span<float> logits,
                             std::span<const int32_t> prompt_ids,
                             std::span<const int32_t> generated_ids);

  // Index of the largest value, lowest index on ties; NaNs never win. Single pass.
  // REQUIRES: !logits.empty().
  static int32_t Argmax(std::span<const float> logits);

 private:
  // A uniform double in [0, 1) from 53 random bits (the same on every standard library, unlike
  // std::uniform_real_distribution).
  double NextUniform();

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::optional<PenaltyCounts> penalty_counts_;  // set when a penalty is on
};

}  // namespace strata::engine
