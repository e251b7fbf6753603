// SampleParams' steps on host memory, fast for a full vocabulary: one vectorised pass for the
// weights, top-p by a histogram of the weights' float bits (only the edge bucket is ordered),
// top-k by a heap that skips blocks which cannot enter it, and the draw by block sums so only one
// block is walked element by element.
#include "kernels/cpu/cpu_sampling.h"

#include <algorithm>
#include <array>
#include <bit>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_simd.h"
#include "kernels/kernel_args.h"
#include "kernels/row_argmax.h"

namespace strata::kernels::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Probabilities computed from f32 logits carry ~1e-7 relative error. Without slack, a nucleus
// that reaches top_p exactly (0.5 + 0.3 with top_p 0.8) would take the next token or not by
// rounding luck.
constexpr double kTopPSlack = 1e-6;

// Weights below the smallest normal float are dropped: such tokens have probability < 1e-38,
// and it guarantees a masked (-inf) logit is never drawn whatever a vectorised exp returns at
// underflow.
constexpr float kMinWeight = std::numeric_limits<float>::min();

// Weights in [kMinWeight, 1] fall into buckets of 1/64 octave by their float bits (monotone in
// the value): bucket 0 holds 1.0, the last one kMinWeight.
constexpr uint32_t kOneBits = 0x3F800000u;
constexpr int kBucketShift = 17;
constexpr size_t kNumBuckets = ((kOneBits - 0x00800000u) >> kBucketShift) + 1;

// Scratch buffers below are thread_local: rows are sampled on the engine thread or on OpenMP
// workers, so one vocabulary-sized buffer per thread serves every row instead of one per row.

// Elements per partial sum when drawing from a dense weight vector.
constexpr size_t kDrawBlock = 1024;

// Below this many logits a parallel region costs more than it saves.
constexpr int64_t kMinParallelElements = 1 << 15;

int ThreadsFor(int64_t elements, int threads) {
  return elements >= kMinParallelElements ? threads : 1;
}

struct Candidate {
  float weight;  // exp((logit - max logit) / T): probability relative to the most likely token
  int32_t id;
};

// Most likely first; ties by lowest id so equal weights order the same way on every run.
bool MoreLikely(const Candidate& a, const Candidate& b) {
  return a.weight > b.weight || (a.weight == b.weight && a.id < b.id);
}

size_t WeightBucket(float weight) {
  return (kOneBits - std::min(std::bit_cast<uint32_t>(weight), kOneBits)) >> kBucketShift;
}

// logits[i] <- exp((logits[i] - max_logit) / temperature); NaN and underflow -> 0.
void ToWeights(std::span<float> logits, float max_logit, float temperature) {
  float* x = logits.data();
  const int64_t n = static_cast<int64_t>(logits.size());
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    // NaN would turn into a large weight inside the clamped vectorised exp.
    const float shifted = (x[i] - max_logit) / temperature;
    x[i] = shifted == shifted ? shifted : kNegInf;
  }
  ExpInPlace(x, n);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] >= kMinWeight ? x[i] : 0.0f;
}

// How many leading candidates, once ordered most likely first, it takes for their mass to reach
// `target` (at least one). Orders only as far as needed: a peaked distribution costs one O(n)
// selection and a sort of 64.
size_t CountToMass(std::span<Candidate> c, double target) {
  double mass = 0.0;
  size_t sorted = 0;
  size_t chunk = std::min<size_t>(c.size(), 64);
  while (true) {
    if (chunk < c.size()) {
      std::nth_element(c.begin() + sorted, c.begin() + chunk, c.end(), MoreLikely);
    }
    std::sort(c.begin() + sorted, c.begin() + chunk, MoreLikely);
    for (; sorted < chunk; ++sorted) {
      mass += c[sorted].weight;
      if (mass >= target) return sorted + 1;
    }
    if (chunk == c.size()) return chunk;
    chunk = std::min(c.size(), chunk * 4);
  }
}

// Where the top-p nucleus ends: every weight above `below` is in, up to and including the edge
// range (below, top], whose members must be ordered to find how many of them the nucleus takes
// (`target` less `mass_above`, the mass of everything above `top`).
struct NucleusEdge {
  float below = 0.0f;
  float top = std::numeric_limits<float>::infinity();
  double mass_above = 0.0;
  double target = 0.0;
};

// A histogram of mass per bucket finds the edge bucket, so only its members are ordered later,
// not the vocabulary.
NucleusEdge FindNucleusEdge(std::span<const float> weights, double top_p) {
  NucleusEdge e;
  if (weights.size() <= kNumBuckets) {  // ordering them all is cheaper than the histogram
    double total = 0.0;
    for (float w : weights) total += w;
    e.target = (top_p - kTopPSlack) * total;
    return e;
  }
  std::array<double, kNumBuckets> bucket_mass{};
  for (float w : weights) {
    if (w > 0.0f) bucket_mass[WeightBucket(w)] += w;
  }
  double total = 0.0;
  for (double m : bucket_mass) total += m;
  e.target = (top_p - kTopPSlack) * total;
  size_t edge = 0;
  while (edge + 1 < kNumBuckets && e.mass_above + bucket_mass[edge] < e.target) {
    e.mass_above += bucket_mass[edge++];
  }
  e.below = std::bit_cast<float>(kOneBits - static_cast<uint32_t>((edge + 1) << kBucketShift));
  if (edge > 0)
    e.top = std::bit_cast<float>(kOneBits - static_cast<uint32_t>(edge << kBucketShift));
  return e;
}

// Zeroes every weight outside the top-p nucleus: vLLM/HF keep a token iff the mass of the tokens
// more likely than it is below top_p.
void KeepNucleus(std::span<float> weights, double top_p) {
  const NucleusEdge edge = FindNucleusEdge(weights, top_p);
  const float below = edge.below;
  const float top = edge.top;
  float* w = weights.data();
  const int64_t n = static_cast<int64_t>(weights.size());
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) w[i] = w[i] > below ? w[i] : 0.0f;
  // Collects the edge range's members. Branch-free: membership is unpredictable, so every
  // element is written and the count advances only for members.
  thread_local std::vector<Candidate> scratch;
  if (scratch.size() < weights.size()) scratch.resize(weights.size());
  size_t num_members = 0;
  for (int64_t i = 0; i < n; ++i) {
    scratch[num_members] = {w[i], static_cast<int32_t>(i)};
    num_members += static_cast<size_t>((w[i] > below) & (w[i] <= top));
  }
  if (num_members == 0) return;
  const std::span<Candidate> members(scratch.data(), num_members);
  const size_t keep = CountToMass(members, edge.target - edge.mass_above);
  for (size_t j = keep; j < members.size(); ++j) weights[members[j].id] = 0.0f;
}

// The min(k, #positive) most likely weights, unordered. A min-heap of the best so far; once it
// is full, a block of 16 whose maximum does not beat the heap's top is skipped with one
// vectorised test, and after the first few thousand elements almost every block is.
void SelectTopK(std::span<const float> weights, size_t k, std::vector<Candidate>& out) {
  constexpr size_t kBlock = 16;
  out.clear();
  const size_t n = weights.size();
  for (size_t begin = 0; begin < n; begin += kBlock) {
    const size_t end = std::min(n, begin + kBlock);
    if (out.size() == k && end - begin == kBlock) {
      const float floor = out.front().weight;
      int beats_floor = 0;
#pragma omp simd reduction(| : beats_floor)
      for (size_t j = 0; j < kBlock; ++j) beats_floor |= weights[begin + j] > floor;
      if (!beats_floor) continue;
    }
    for (size_t i = begin; i < end; ++i) {
      const Candidate c{weights[i], static_cast<int32_t>(i)};
      if (c.weight <= 0.0f) continue;
      if (out.size() < k) {
        out.push_back(c);
        std::push_heap(out.begin(), out.end(), MoreLikely);
      } else if (c.weight > out.front().weight) {  // equal weight: the lower id already in stays
        std::pop_heap(out.begin(), out.end(), MoreLikely);
        out.back() = c;
        std::push_heap(out.begin(), out.end(), MoreLikely);
      }
    }
  }
}

// Summed in double: block sums place the draw among ~1e5 weights, and f32 partial sums would
// move it by ~1e-7 of the mass, enough to pick a neighbour of the id the contract names.
double BlockSum(const float* w, size_t n) {
  // Independent lanes so the compiler vectorises without reassociating one serial sum.
  constexpr size_t kLanes = 8;
  double lanes[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (size_t j = 0; j < kLanes; ++j) lanes[j] += w[i + j];
  }
  double sum = 0.0;
  for (double lane : lanes) sum += lane;
  for (; i < n; ++i) sum += w[i];
  return sum;
}

// Draws index i with probability weights[i] / sum(weights), u uniform in [0, 1). Partial sums
// per block find the block first, so only one block is walked element by element.
// REQUIRES: weights >= 0. `fallback` is returned when every weight is 0.
int32_t DrawDense(std::span<const float> weights, double u, int32_t fallback) {
  const size_t n = weights.size();
  const size_t num_blocks = (n + kDrawBlock - 1) / kDrawBlock;
  thread_local std::vector<double> block_sums;
  block_sums.resize(num_blocks);
  double total = 0.0;
  for (size_t b = 0; b < num_blocks; ++b) {
    block_sums[b] =
        BlockSum(weights.data() + b * kDrawBlock, std::min(kDrawBlock, n - b * kDrawBlock));
    total += block_sums[b];
  }
  const double target = u * total;
  double mass = 0.0;
  for (size_t b = 0; b < num_blocks; ++b) {
    if (target >= mass + block_sums[b]) {
      mass += block_sums[b];
      continue;
    }
    // The walk may round differently from the block sum: then the block's last positive weight.
    int32_t last_positive = fallback;
    for (size_t i = b * kDrawBlock; i < std::min(n, (b + 1) * kDrawBlock); ++i) {
      if (weights[i] <= 0.0f) continue;
      last_positive = static_cast<int32_t>(i);
      mass += weights[i];
      if (target < mass) return last_positive;
    }
    return last_positive;
  }
  return fallback;  // every weight is 0: target (0) never falls below a block's end
}

// REQUIRES: !candidates.empty(), every weight > 0.
int32_t DrawCandidate(std::span<const Candidate> candidates, double u) {
  double total = 0.0;
  for (const Candidate& c : candidates) total += c.weight;
  const double target = u * total;
  double mass = 0.0;
  for (const Candidate& c : candidates) {
    mass += c.weight;
    if (target < mass) return c.id;
  }
  return candidates.back().id;  // rounding left none: the last kept id
}

// u in [0, 1): NaN and negatives -> 0, 1 and above -> the largest double below 1.
double ClampUniform(double u) {
  if (!(u >= 0.0)) return 0.0;
  return u < 1.0 ? u : 1.0 - 0x1.0p-53;
}

// Steps 3 and 4 with top_k in (1, vocab): a candidate list instead of dense weights.
int32_t SampleTopK(std::span<const float> weights, const SamplingRow& row, int32_t best) {
  thread_local std::vector<Candidate> candidates;
  SelectTopK(weights, static_cast<size_t>(row.top_k), candidates);
  if (candidates.empty()) return best;  // nothing kept: only a NaN temperature gets here
  if (row.top_p < 1.0f) {
    double total = 0.0;
    for (const Candidate& c : candidates) total += c.weight;
    candidates.resize(CountToMass(candidates, (row.top_p - kTopPSlack) * total));
  }
  if (row.min_p > 0.0f) {
    std::erase_if(candidates, [&row](const Candidate& c) { return c.weight < row.min_p; });
    if (candidates.empty()) return best;  // min_p > 1
  }
  // The draw walks ids upwards on every backend, not in the order selection left them.
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
  return DrawCandidate(candidates, ClampUniform(row.uniform));
}

// Every entry's row and token in range, before anything is written.
absl::Status CheckEntries(const ApplyPenaltiesParams& p) {
  for (int64_t i = 0; i < p.num_entries; ++i) {
    const PenaltyEntry& e = p.entries[i];
    if (e.row < 0 || e.row >= p.rows || e.token < 0 || e.token >= p.cols) {
      return absl::InvalidArgumentError(
          StrCat("ApplyPenalties: entry ", i, " names row ", e.row, " token ", e.token,
                 " outside [", p.rows, ", ", p.cols, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

int32_t SampleRow(std::span<float> logits, const SamplingRow& row) {
  const int32_t best = RowArgmax(logits.data(), logits.size());
  // Greedy, or nothing finite to normalise against (all -inf, or a +inf): the argmax it is.
  if (row.temperature < kSampleGreedyTemperature || row.top_k == 1 ||
      !std::isfinite(logits[best])) {
    return best;
  }
  ToWeights(logits, logits[best], row.temperature);
  if (row.top_k > 1 && static_cast<size_t>(row.top_k) < logits.size()) {
    return SampleTopK(logits, row, best);
  }
  // Dense path: filters zero weights in place, so no candidate list of the vocabulary is built.
  if (row.top_p < 1.0f) KeepNucleus(logits, row.top_p);
  if (row.min_p > 0.0f) {
    // A weight is the probability relative to the most likely token.
    const float min_p = row.min_p;
    float* w = logits.data();
    const int64_t n = static_cast<int64_t>(logits.size());
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) w[i] = w[i] >= min_p ? w[i] : 0.0f;
  }
  return DrawDense(logits, ClampUniform(row.uniform), best);
}

absl::Status ApplyPenalties(const ApplyPenaltiesParams& p, int threads) {
  RETURN_IF_ERROR(ValidatePenaltiesArgs(p));
  RETURN_IF_ERROR(CheckEntries(p));
  // Each (row, token) at most once: entries write distinct logits.
#pragma omp parallel for num_threads(ThreadsFor(p.num_entries, threads))
  for (int64_t i = 0; i < p.num_entries; ++i) {
    const PenaltyEntry& e = p.entries[i];
    float& logit = p.logits[e.row * p.cols + e.token];
    logit = PenalizedLogit(logit, p.rows_params[e.row], e.output_count);
  }
  return absl::OkStatus();
}

absl::Status Sample(const SampleParams& p, int threads) {
  RETURN_IF_ERROR(ValidateSampleArgs(p));
  const int64_t cols = p.cols;
#pragma omp parallel for schedule(dynamic) num_threads(ThreadsFor(p.rows * cols, threads))
  for (int64_t r = 0; r < p.rows; ++r) {
    p.out[r] = SampleRow(std::span<float>(p.logits + r * cols, static_cast<size_t>(cols)),
                         p.rows_params[r]);
  }
  return absl::OkStatus();
}

}  // namespace strata::kernels::cpu
