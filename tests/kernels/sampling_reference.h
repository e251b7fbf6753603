// A brute-force reference of SampleParams (kernels/device.h) for the sampling tests (CPU twin and
// CUDA parity): each step as the comment states it, the whole row sorted, masses summed in long
// double. The weights use the CPU's exp (cpu_simd.h ExpInPlace), which the contract leaves to
// the backend and the CUDA kernel reproduces bit for bit.
//
// Backends sum masses in double in their own orders, so a draw whose uniform lies within
// rounding of a boundary between two ids may legitimately differ; so may a top-p nucleus whose
// edge lies within rounding of its target. The reference flags both (kBoundaryTolerance of the
// kept mass) and tests skip only those.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_simd.h"
#include "kernels/device.h"

namespace strata::kernels {

inline constexpr long double kBoundaryTolerance = 1e-9L;

// What survives steps 1-3 of a row.
struct ReferenceKept {
  int32_t best = 0;
  bool argmax_only = false;            // greedy, a non-finite maximum, or nothing kept
  std::vector<int32_t> ids;            // kept, ascending
  std::vector<long double> running;    // running[j] = mass of ids[0..j]
  bool top_p_edge = false;             // the nucleus edge lies within tolerance of its target
};

// Steps 1-3 of SampleParams on one row.
inline ReferenceKept ReferenceFilter(const float* logits, int64_t cols, const SamplingRow& row) {
  ReferenceKept kept;
  float best_value = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < cols; ++i) {
    if (logits[i] > best_value) {
      best_value = logits[i];
      kept.best = static_cast<int32_t>(i);
    }
  }
  const bool greedy = row.temperature < kSampleGreedyTemperature || row.top_k == 1;
  if (greedy || !std::isfinite(logits[kept.best])) {
    kept.argmax_only = true;
    return kept;
  }
  // 2. Weights.
  std::vector<float> w(cols);
  for (int64_t i = 0; i < cols; ++i) {
    const float shifted = (logits[i] - logits[kept.best]) / row.temperature;
    w[i] = std::isnan(shifted) ? -std::numeric_limits<float>::infinity() : shifted;
  }
  cpu::ExpInPlace(w.data(), cols);
  struct Item {
    float w;
    int32_t id;
  };
  std::vector<Item> order;
  for (int64_t i = 0; i < cols; ++i) {
    if (w[i] >= std::numeric_limits<float>::min()) order.push_back({w[i], static_cast<int32_t>(i)});
  }
  // 3. Filters, most likely first, ties by lowest id.
  std::sort(order.begin(), order.end(), [](const Item& a, const Item& b) {
    return a.w > b.w || (a.w == b.w && a.id < b.id);
  });
  if (row.top_k > 1 && row.top_k < cols && order.size() > static_cast<size_t>(row.top_k)) {
    order.resize(row.top_k);
  }
  if (row.top_p < 1.0f && !order.empty()) {
    long double total = 0;
    for (const Item& it : order) total += it.w;
    const long double target = (static_cast<long double>(row.top_p) - 1e-6L) * total;
    const long double tolerance = kBoundaryTolerance * total;
    long double mass = 0;
    size_t m = 0;
    while (m < order.size() && (m == 0 || mass < target)) mass += order[m++].w;
    const long double before = mass - order[m - 1].w;
    kept.top_p_edge = std::fabs(mass - target) <= tolerance ||
                      (m > 1 && std::fabs(before - target) <= tolerance);
    order.resize(m);
  }
  if (row.min_p > 0.0f) {
    std::erase_if(order, [&row](const Item& it) { return it.w < row.min_p; });
  }
  if (order.empty()) {
    kept.argmax_only = true;
    return kept;
  }
  // 4's order: ids upwards.
  std::sort(order.begin(), order.end(), [](const Item& a, const Item& b) { return a.id < b.id; });
  long double mass = 0;
  for (const Item& it : order) {
    mass += it.w;
    kept.ids.push_back(it.id);
    kept.running.push_back(mass);
  }
  return kept;
}

struct ReferenceDraw {
  int32_t id = 0;
  bool boundary = false;  // the uniform (or the nucleus edge) within tolerance of a boundary
};

// Step 4 with `uniform` (clamped into [0, 1) as the backends do).
inline ReferenceDraw ReferenceSample(const ReferenceKept& kept, double uniform) {
  if (kept.argmax_only) return {kept.best, false};
  if (!(uniform >= 0.0)) uniform = 0.0;
  if (uniform >= 1.0) uniform = 1.0 - 0x1.0p-53;
  const long double total = kept.running.back();
  const long double target = uniform * total;
  const size_t j =
      std::upper_bound(kept.running.begin(), kept.running.end(), target) - kept.running.begin();
  ReferenceDraw draw;
  draw.id = kept.ids[std::min(j, kept.ids.size() - 1)];
  const long double tolerance = kBoundaryTolerance * total;
  draw.boundary = kept.top_p_edge ||
                  (j < kept.running.size() && std::fabs(kept.running[j] - target) <= tolerance) ||
                  (j > 0 && std::fabs(kept.running[j - 1] - target) <= tolerance);
  return draw;
}

// Random rows for the sampling tests: the shapes of logits that matter to the contract.
enum class RowKind {
  kSpread,     // normal logits, scale 0.5 to 8
  kTies,       // logits on a coarse grid: many equal weights
  kMasked,     // about half -inf
  kNan,        // some NaN
  kPosInf,     // a +inf somewhere: the argmax
  kAllMasked,  // every logit -inf
  kAllNan,     // every logit NaN
  kFlat,       // every logit equal
  kNumKinds,
};

inline void FillRow(float* x, int64_t cols, RowKind kind, std::mt19937& rng) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const float scale = std::uniform_real_distribution<float>(0.5f, 8.0f)(rng);
  std::normal_distribution<float> normal(0.0f, scale);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (int64_t i = 0; i < cols; ++i) x[i] = normal(rng);
  switch (kind) {
    case RowKind::kSpread:
    case RowKind::kNumKinds:
      break;
    case RowKind::kTies:
      for (int64_t i = 0; i < cols; ++i) x[i] = std::round(x[i] / scale * 2.0f) / 2.0f;
      break;
    case RowKind::kMasked:
      for (int64_t i = 0; i < cols; ++i) x[i] = unit(rng) < 0.5f ? -kInf : x[i];
      break;
    case RowKind::kNan:
      for (int64_t i = 0; i < cols; ++i) x[i] = unit(rng) < 0.1f ? std::nanf("") : x[i];
      break;
    case RowKind::kPosInf:
      x[std::uniform_int_distribution<int64_t>(0, cols - 1)(rng)] = kInf;
      break;
    case RowKind::kAllMasked:
      std::fill(x, x + cols, -kInf);
      break;
    case RowKind::kAllNan:
      std::fill(x, x + cols, std::nanf(""));
      break;
    case RowKind::kFlat:
      std::fill(x, x + cols, x[0]);
      break;
  }
}

inline RowKind RandomRowKind(std::mt19937& rng) {
  // Mostly rows that reach the filters and the draw.
  const int k = std::uniform_int_distribution<int>(0, 15)(rng);
  return k < static_cast<int>(RowKind::kNumKinds) ? static_cast<RowKind>(k)
                                                  : (k % 2 ? RowKind::kSpread : RowKind::kTies);
}

// Sampling parameters in their valid ranges, with the values at and around every switch (greedy
// temperatures, top_k 1 and cols, top_p 1 and tiny, min_p 1), and penalties.
inline SamplingRow RandomSamplingRow(std::mt19937& rng, int64_t cols) {
  auto pick = [&rng](auto... values) {
    const auto list = {values...};
    return *(list.begin() + std::uniform_int_distribution<size_t>(0, list.size() - 1)(rng));
  };
  SamplingRow row;
  row.uniform = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  row.temperature = pick(0.0f, 1e-6f, 0.25f, 0.7f, 1.0f, 1.0f, 1.5f);
  const int32_t c = static_cast<int32_t>(std::min<int64_t>(cols, 1 << 30));
  row.top_k = pick(0, 0, 0, -1, 1, 2, 3, 17, 200, c - 1, c, c + 3,
                   std::uniform_int_distribution<int32_t>(2, std::max(2, c))(rng));
  row.top_p = pick(1.0f, 1.0f, 1.0f, 0.95f, 0.8f, 0.5f, 0.1f, 1e-7f);
  row.min_p = pick(0.0f, 0.0f, 0.0f, 0.01f, 0.2f, 0.9f, 1.0f);
  row.repetition_penalty = pick(1.0f, 1.0f, 1.3f, 0.7f);
  row.presence_penalty = pick(0.0f, 0.0f, 0.5f, -1.25f);
  row.frequency_penalty = pick(0.0f, 0.0f, 0.3f, -0.7f);
  return row;
}

// Penalty entries for `rows` rows of `cols`: distinct (row, token) pairs, output counts 0..5.
inline std::vector<PenaltyEntry> RandomPenaltyEntries(std::mt19937& rng, int64_t rows,
                                                      int64_t cols, int64_t per_row) {
  std::vector<PenaltyEntry> entries;
  std::vector<int32_t> tokens(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) tokens[i] = static_cast<int32_t>(i);
    const int64_t n = std::min(per_row, cols);
    for (int64_t i = 0; i < n; ++i) {  // a partial Fisher-Yates shuffle: n distinct tokens
      std::swap(tokens[i], tokens[std::uniform_int_distribution<int64_t>(i, cols - 1)(rng)]);
      entries.push_back({.row = static_cast<int32_t>(r), .token = tokens[i],
                         .output_count = std::uniform_int_distribution<int32_t>(0, 5)(rng)});
    }
  }
  std::shuffle(entries.begin(), entries.end(), rng);  // any order: rows interleave
  return entries;
}

}  // namespace strata::kernels
