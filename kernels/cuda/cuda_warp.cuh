// Device helpers the CUDA kernels share: warp reductions, argmax pairs and varlen batch lookups. Device code
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

// (value, index) pairs for argmax reductions: the larger value wins, the lower index on ties;
// NaN never wins because every comparison with it is false. An index of -1 means "nothing above
// -inf yet". The winner is unique, so any reduction order gives the same one.
struct ArgBest {
  float value;
  int32_t index;
};

__device__ inline ArgBest Better(ArgBest a, ArgBest b) {
  if (b.index < 0) return a;
  if (a.index < 0 || b.value > a.value || (b.value == a.value && b.index < a.index)) return b;
  return a;
}

// The best over the warp, on every lane. REQUIRES: all 32 lanes call it.
__device__ inline ArgBest WarpBest(ArgBest best) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    best = Better(best, {__shfl_xor_sync(0xffffffffu, best.value, offset),
                         __shfl_xor_sync(0xffffffffu, best.index, offset)});
  }
  return best;
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
