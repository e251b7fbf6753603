// The argmax of one row of host floats with the sampler's rules: the lowest index on ties, NaN
// never wins, a row without any value above -inf gives 0. One vectorised pass. Shared by the
// CPU Argmax kernel (kernels/cpu) and the engine's Sampler; any thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace strata::kernels {

// REQUIRES: n > 0.
inline int32_t RowArgmax(const float* x, size_t n) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  // Per-lane running maxima (strict >: each lane keeps its first occurrence), so the loop
  // vectorises; the lanes are merged with the lowest index winning ties.
  constexpr size_t kLanes = 16;
  float lane_max[kLanes];
  int32_t lane_index[kLanes];
  std::fill(lane_max, lane_max + kLanes, kNegInf);
  std::fill(lane_index, lane_index + kLanes, 0);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (size_t j = 0; j < kLanes; ++j) {
      const bool greater = x[i + j] > lane_max[j];
      lane_max[j] = greater ? x[i + j] : lane_max[j];
      lane_index[j] = greater ? static_cast<int32_t>(i + j) : lane_index[j];
    }
  }
  int32_t best = 0;
  float best_value = kNegInf;
  for (size_t j = 0; j < kLanes; ++j) {
    const bool better = lane_max[j] > best_value || (lane_max[j] == best_value &&
                                                     lane_max[j] > kNegInf && lane_index[j] < best);
    if (better) {
      best_value = lane_max[j];
      best = lane_index[j];
    }
  }
  for (; i < n; ++i) {
    if (x[i] > best_value) {
      best_value = x[i];
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

}  // namespace strata::kernels
