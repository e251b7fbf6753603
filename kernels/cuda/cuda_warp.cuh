// Device helpers the CUDA kernels share: warp reductions and varlen batch lookups. Device code
// only; included by kernels/cuda/*.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace strata::kernels::cuda {

inline constexpr int kWarp = 32;

// The sum over the warp, on every lane. REQUIRES: all 32 lanes call it.
__device__ inline float WarpSum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// One key of an online softmax: folds `score` into the running max `m` and sum `l`; returns
// the factor that rescales what was accumulated so far and sets `weight` to this key's weight.
__device__ inline float OnlineSoftmaxStep(float score, float& m, float& l, float& weight) {
  const float m_new = fmaxf(m, score);
  const float correction = expf(m - m_new);
  weight = expf(score - m_new);
  l = l * correction + weight;
  m = m_new;
  return correction;
}

// The sequence owning query row `row` of a varlen batch (query_start ascending, num_seqs >= 1).
__device__ inline int32_t SequenceOf(const int32_t* query_start, int32_t num_seqs, int64_t row) {
  int32_t lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int32_t mid = (lo + hi + 1) / 2;
    if (query_start[mid] <= row) lo = mid; else hi = mid - 1;
  }
  return lo;
}

}  // namespace strata::kernels::cuda
