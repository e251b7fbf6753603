// Deterministic random inputs for kernel tests (CPU and GPU parity tests share them).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "common/dtype.h"

namespace strata::kernels {

// n uniform values in [lo, hi) drawn from `rng` (tests that draw several tensors from one stream).
inline std::vector<float> Random(size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(n);
  for (auto& x : out) x = dist(rng);
  return out;
}

inline std::vector<float> Random(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  return Random(n, rng, lo, hi);
}

inline std::vector<uint16_t> ToBf16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = F32ToBf16(x[i]);
  return out;
}

}  // namespace strata::kernels
