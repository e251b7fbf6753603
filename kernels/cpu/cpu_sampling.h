// The CPU twin of the sampling kernels (kernels/device.h: ApplyPenaltiesParams, SampleParams)
// and the math engine::Sampler runs per request: penalties, then SampleParams' four steps on one
// row (argmax, weights, top-k / top-p / min-p, the draw walking ids upwards). The CUDA kernels
// (kernels/cuda/cuda_sampling.cu) follow the same steps with the same f32 arithmetic, so both
// backends keep the same tokens and, from the same uniform, draw the same id except where it lies
// within rounding of a draw boundary.
//
// Row functions are pure apart from thread_local scratch (one vocabulary-sized buffer per
// thread): any thread, including OpenMP workers sampling several rows at once.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "common/status.h"
#include "kernels/device.h"

namespace strata::kernels::cpu {

// The repetition penalty of a token of the prompt or the output (HF / vLLM):
// logit > 0 ? logit / penalty : logit * penalty.
inline float RepetitionPenalized(float logit, float penalty) {
  return logit > 0.0f ? logit / penalty : logit * penalty;
}

// The OpenAI penalties of a token generated `count` (> 0) times. The frequency term is one fused
// multiply-add: the compiler contracts `logit - frequency * count` into one where the CPU has
// FMA, so it is spelled out to round the same way on every build and on CUDA (__fmaf_rn).
inline float OutputPenalized(float logit, float frequency, float presence, int32_t count) {
  return std::fma(-frequency, static_cast<float>(count), logit) - presence;
}

// ApplyPenaltiesParams' arithmetic for one (row, token): repetition (when not 1), then, for a
// generated token, frequency and presence.
inline float PenalizedLogit(float logit, const SamplingRow& row, int32_t output_count) {
  if (row.repetition_penalty != 1.0f) logit = RepetitionPenalized(logit, row.repetition_penalty);
  if (output_count > 0) {
    logit = OutputPenalized(logit, row.frequency_penalty, row.presence_penalty, output_count);
  }
  return logit;
}

// SampleParams' four steps on one row of logits (used as scratch: overwritten with weights).
// row.uniform outside [0, 1) (or NaN) is clamped into it; a row whose filters keep nothing
// (only out-of-range parameters: a NaN temperature, min_p > 1) gives the argmax.
// REQUIRES: !logits.empty(), logits.size() <= INT32_MAX.
int32_t SampleRow(std::span<float> logits, const SamplingRow& row);

// Device::ApplyPenalties and Device::Sample on the CPU: kernel_args.h's checks, then (penalties)
// every entry's row and token in range before any logit changes; rows or entries spread over
// `threads` OpenMP threads.
absl::Status ApplyPenalties(const ApplyPenaltiesParams& p, int threads);
absl::Status Sample(const SampleParams& p, int threads);

}  // namespace strata::kernels::cpu
