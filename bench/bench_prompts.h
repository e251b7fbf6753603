// Workload prompts shared by the bench executables. Header-only.
#pragma once

#include <cstdint>
#include <random>
#include <set>
#include <vector>

namespace strata::bench {

// `count` prompts of `length` random ids from a fixed seed, no two alike, so the prefix cache
// finds nothing even across runs that share a seed stream.
inline std::vector<std::vector<int32_t>> MakePrompts(std::mt19937_64& rng, int count,
                                                     int64_t length, int64_t vocab) {
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  std::set<std::vector<int32_t>> seen;
  std::vector<std::vector<int32_t>> prompts;
  while (static_cast<int>(prompts.size()) < count) {
    std::vector<int32_t> p(length);
    for (auto& t : p) t = id(rng);
    if (seen.insert(p).second) prompts.push_back(std::move(p));
  }
  return prompts;
}

}  // namespace strata::bench
