// Token-list helpers shared by the KV cache and scheduler tests.
#pragma once

#include <cstdint>
#include <numeric>
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

}  // namespace strata
