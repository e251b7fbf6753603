// Token-list helpers shared by the KV cache, scheduler and engine tests.
#pragma once

#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace strata {

// first, first + 1, ..., first + n - 1.
inline std::vector<int32_t> Range(int32_t first, int32_t n) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

// a followed by b.
inline std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// n token ids drawn uniformly from [3, vocab) (past the usual special ids).
inline std::vector<int32_t> RandomTokens(std::mt19937& rng, int64_t n, int32_t vocab) {
  std::uniform_int_distribution<int32_t> token(3, vocab - 1);
  std::vector<int32_t> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(token(rng));
  return v;
}

}  // namespace strata
