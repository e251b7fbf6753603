// Penalties and sampling on the GPU (kernels/device.h: ApplyPenaltiesParams, SampleParams). The
// CPU twin is kernels/cpu/cpu_sampling.cc; tests/gpu/cuda_sampling_parity_test.cc compares them.
//
// Sample runs one block of kThreads per row, through SampleParams' steps:
//   1. argmax (ArgBest, as ArgmaxKernel); greedy rows stop here.
//   2. weights in place, with the CPU's arithmetic: __fsub_rn / __fdiv_rn and a bit-exact twin of
//      its AVX-512 exp (cpu_simd.h Exp512), so both backends see the same weights.
//   3. top-k: a radix select over the weights' float bits (w >= 0: the bits ascend with the
//      value) finds the k-th largest; ties at it are kept by lowest id. top-p: a radix descent
//      over double mass histograms finds the weight where the running mass (most likely first)
//      reaches the target; ties at it again by lowest id. min-p: a threshold.
//   4. the draw: thread t's contiguous ids, their double sum, a block scan, and the thread whose
//      interval holds the target walks its ids upwards.
// Thread t owns the contiguous ids [t * chunk, (t + 1) * chunk) of the row in every step, so
// "lowest id" and "walking ids upwards" are a block prefix over threads, then a walk.
//
// Determinism: fixed partition, scans summed sequentially in a fixed order, integer atomics
// only for counts. The one exception: the top-p mass histograms add doubles with shared-memory
// atomics, whose order (and so a bin's last bit) may vary from run to run; that changes which
// weight ends the nucleus only when the target lies within ~1e-16 of a cumulative bin mass.
#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "kernels/cuda/cuda_kernels.cuh"
#include "kernels/cuda/cuda_warp.cuh"

namespace strata::kernels::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / kWarp;
constexpr int kRadixBits = 8;
constexpr int kRadixBins = 1 << kRadixBits;
constexpr int kBinsPerLane = kRadixBins / kWarp;
constexpr int kPenaltyThreads = 256;
constexpr int64_t kMaxPenaltyBlocks = 65535;

// As the CPU twin (cpu_sampling.cc): the top-p slack and the smallest weight kept.
constexpr double kTopPSlack = 1e-6;
constexpr float kMinWeight = FLT_MIN;

// ---- penalties ------------------------------------------------------------------------------

// cpu::PenalizedLogit with explicit roundings (nvcc would otherwise contract into FMAs where the
// CPU does not, and the frequency term is the one FMA the CPU does).
__device__ float PenalizedLogit(float logit, const SamplingRow& row, int32_t output_count) {
  if (row.repetition_penalty != 1.0f) {
    logit = logit > 0.0f ? __fdiv_rn(logit, row.repetition_penalty)
                         : __fmul_rn(logit, row.repetition_penalty);
  }
  if (output_count > 0) {
    logit = __fmaf_rn(-row.frequency_penalty, __int2float_rn(output_count), logit);
    logit = __fsub_rn(logit, row.presence_penalty);
  }
  return logit;
}

__global__ void ApplyPenaltiesKernel(float* logits, const SamplingRow* rows_params,
                                     const PenaltyEntry* entries, int64_t num_entries,
                                     int64_t rows, int64_t cols) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < num_entries;
       i += int64_t{gridDim.x} * blockDim.x) {
    const PenaltyEntry e = entries[i];
    if (e.row < 0 || e.row >= rows || e.token < 0 || e.token >= cols) continue;
    float& logit = logits[e.row * cols + e.token];
    logit = PenalizedLogit(logit, rows_params[e.row], e.output_count);
  }
}

// ---- sampling: per-element math -------------------------------------------------------------

// Exp512 of kernels/cpu/cpu_simd.h for one lane, operation for operation: Cephes expf, then
// scalef (one rounding of p * 2^n, done exactly in double).
__device__ float CpuExp(float x) {
  x = fminf(x, 88.3762626647949f);
  x = fmaxf(x, -103.972084045410f);
  const float n = rintf(__fmul_rn(x, 1.44269504088896341f));
  float r = __fmaf_rn(-n, 0.693359375f, x);
  r = __fmaf_rn(-n, -2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = __fmaf_rn(p, r, 1.3981999507e-3f);
  p = __fmaf_rn(p, r, 8.3334519073e-3f);
  p = __fmaf_rn(p, r, 4.1665795894e-2f);
  p = __fmaf_rn(p, r, 1.6666665459e-1f);
  p = __fmaf_rn(p, r, 5.0000001201e-1f);
  p = __fmaf_rn(p, __fmul_rn(r, r), __fadd_rn(r, 1.0f));
  const double scale = __longlong_as_double(static_cast<long long>(static_cast<int>(n) + 1023)
                                            << 52);
  return __double2float_rn(__dmul_rn(static_cast<double>(p), scale));
}

// Step 2 for one logit: exp((logit - max_logit) / temperature); NaN and w < FLT_MIN -> 0.
__device__ float Weight(float logit, float max_logit, float temperature) {
  const float shifted = __fdiv_rn(__fsub_rn(logit, max_logit), temperature);
  if (shifted != shifted) return 0.0f;  // the CPU maps NaN to -inf, whose weight is 0
  const float w = CpuExp(shifted);
  return w >= kMinWeight ? w : 0.0f;
}

// u in [0, 1): NaN and negatives -> 0, 1 and above -> the largest double below 1.
__device__ double ClampUniform(double u) {
  if (!(u >= 0.0)) return 0.0;
  return u < 1.0 ? u : 1.0 - 0x1.0p-53;
}

// ---- sampling: block helpers ----------------------------------------------------------------

// This thread's ids [begin, end) of a row of `cols`.
struct Chunk {
  int64_t begin;
  int64_t end;
};

__device__ Chunk ThreadChunk(int64_t cols) {
  const int64_t per_thread = (cols + kThreads - 1) / kThreads;
  const int64_t begin = min(cols, per_thread * threadIdx.x);
  return {begin, min(cols, begin + per_thread)};
}

struct SampleShared {
  ArgBest warp_best[kWarps];
  double scan[kThreads];  // BlockScan<double>'s per-thread slots
  double scan_offset[kWarps + 1];
  int32_t count_scan[kThreads];  // BlockScan<int32_t>'s
  int32_t count_scan_offset[kWarps + 1];
  int32_t hist_count[kRadixBins];  // a row has at most INT32_MAX weights
  double hist_mass[kRadixBins];
  int32_t group_count[kWarp];  // ChooseBin's sums of kBinsPerLane bins
  int32_t group_count_value[kWarp];
  double group_mass[kWarp];
  // What warp 0 decided, for the whole block.
  int32_t chosen_digit;
  int32_t chosen_ties;
  int32_t chosen_above_count;
  double chosen_above_mass;
};

// The best (value, id) of the row, on every thread.
__device__ ArgBest BlockBest(ArgBest best, SampleShared& sh) {
  best = WarpBest(best);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) sh.warp_best[warp] = best;
  __syncthreads();
  best = sh.warp_best[0];
  for (int w = 1; w < kWarps; ++w) best = Better(best, sh.warp_best[w]);
  __syncthreads();
  return best;
}

template <typename T>
struct Prefix {
  T exclusive;  // the sum over threads before this one
  T inclusive;  // ... and this one
  T total;      // over every thread
};

// Thread t's prefix of `value` over the block's threads in order. Summed sequentially: each
// warp's lane 0 over its lanes, then thread 0 over the warps, so the intervals
// [exclusive, inclusive) of consecutive threads ascend and tile [0, total) exactly, also in
// floating point. slots: [kThreads], warp_offset: [kWarps + 1] of shared memory.
template <typename T>
__device__ Prefix<T> BlockScan(T value, T* slots, T* warp_offset) {
  const int t = threadIdx.x, warp = t / kWarp, lane = t % kWarp;
  slots[t] = value;
  __syncthreads();
  if (lane == 0) {
    T running = 0;
    for (int l = 0; l < kWarp; ++l) {
      running += slots[t + l];
      slots[t + l] = running;
    }
  }
  __syncthreads();
  if (t == 0) {
    T running = 0;
    warp_offset[0] = 0;
    for (int w = 0; w < kWarps; ++w) {
      running += slots[w * kWarp + kWarp - 1];
      warp_offset[w + 1] = running;
    }
  }
  __syncthreads();
  Prefix<T> p;
  p.inclusive = warp_offset[warp] + slots[t];
  p.exclusive = lane == 0 ? warp_offset[warp] : warp_offset[warp] + slots[t - 1];
  p.total = warp_offset[kWarps];
  __syncthreads();  // the slots are free again
  return p;
}

__device__ double ChunkSum(const float* w, Chunk c) {
  double sum = 0.0;
  for (int64_t i = c.begin; i < c.end; ++i) sum += w[i];
  return sum;
}

// Keeps every weight above `threshold` (float bits) and the first `ties` weights equal to it in
// id order; zeroes the rest.
__device__ void KeepAbove(float* w, Chunk c, uint32_t threshold, int64_t ties, SampleShared& sh) {
  int32_t mine = 0;
  for (int64_t i = c.begin; i < c.end; ++i) mine += __float_as_uint(w[i]) == threshold;
  int64_t rank = BlockScan<int32_t>(mine, sh.count_scan, sh.count_scan_offset).exclusive;
  for (int64_t i = c.begin; i < c.end; ++i) {
    const uint32_t bits = __float_as_uint(w[i]);
    if (bits > threshold) continue;
    if (bits < threshold || rank >= ties) w[i] = 0.0f;
    if (bits == threshold) ++rank;
  }
}

// One step of a radix descent, by warp 0 (lane 0's result counts): walking the bins from the
// highest digit down, the first non-empty bin whose value (count or mass), added to `above`,
// reaches `target`; when none does, the lowest non-empty bin. Returns the digit (-1: every bin
// is empty) and leaves in `above` the value of the bins above it. Lanes first sum groups of
// kBinsPerLane bins, so lane 0 walks 32 groups and then one group's bins.
template <typename T>
__device__ int ChooseBin(const T* value, const int32_t* count, T target, T& above, T* group_value,
                         int32_t* group_count) {
  const int lane = threadIdx.x % kWarp;
  T v = 0;
  int32_t n = 0;
  for (int j = kBinsPerLane - 1; j >= 0; --j) {
    v += value[lane * kBinsPerLane + j];
    n += count[lane * kBinsPerLane + j];
  }
  group_value[lane] = v;
  group_count[lane] = n;
  __syncwarp();
  int digit = -1;
  if (lane == 0) {
    int group = kWarp - 1, lowest = -1;
    T above_lowest = 0;
    for (; group >= 0; --group) {
      if (group_count[group] == 0) continue;
      if (above + group_value[group] >= target) break;
      lowest = group;
      above_lowest = above;
      above += group_value[group];
    }
    if (group < 0) {  // nothing reaches the target: everything stays, down to the lowest bin
      group = lowest;
      above = above_lowest;
    }
    T chosen_above = above;
    for (int d = (group + 1) * kBinsPerLane - 1; group >= 0 && d >= group * kBinsPerLane; --d) {
      if (count[d] == 0) continue;
      digit = d;
      chosen_above = above;
      if (above + value[d] >= target) break;
      above += value[d];
    }
    above = chosen_above;
  }
  __syncwarp();
  return digit;
}

// Zeroes the histograms; the caller synchronises.
__device__ void ClearHistograms(SampleShared& sh, bool with_mass) {
  for (int b = threadIdx.x; b < kRadixBins; b += kThreads) {
    sh.hist_count[b] = 0;
    if (with_mass) sh.hist_mass[b] = 0.0;
  }
}

// The bits of weight `bits` above the current digit at `shift` (all bits below masked off).
__device__ uint32_t HighBits(uint32_t bits, int shift) {
  return shift + kRadixBits >= 32 ? 0u : bits >> (shift + kRadixBits) << (shift + kRadixBits);
}

// Step 3, top-k: zeroes every weight outside the k largest (ties by lowest id). A radix select
// over counts finds the k-th largest weight's bits and how many weights equal to it are among
// the k largest; counts are exact, so every step of the descent ends in a non-empty bin.
// REQUIRES: 1 < k < cols.
__device__ void TopK(float* w, Chunk c, int32_t k, SampleShared& sh) {
  uint32_t prefix = 0;
  int32_t remaining = k;  // rank of the k-th largest among the weights that match `prefix`
  for (int shift = 32 - kRadixBits; shift >= 0; shift -= kRadixBits) {
    ClearHistograms(sh, false);
    __syncthreads();
    for (int64_t i = c.begin; i < c.end; ++i) {
      const uint32_t bits = __float_as_uint(w[i]);
      if (HighBits(bits, shift) == prefix) {
        atomicAdd(&sh.hist_count[(bits >> shift) & (kRadixBins - 1)], 1);
      }
    }
    __syncthreads();
    if (threadIdx.x < kWarp) {
      int32_t above = 0;
      const int digit = ChooseBin<int32_t>(sh.hist_count, sh.hist_count, remaining, above,
                                           sh.group_count_value, sh.group_count);
      if (threadIdx.x == 0) {
        sh.chosen_digit = digit;
        sh.chosen_above_count = above;
      }
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(sh.chosen_digit) << shift;
    remaining -= sh.chosen_above_count;
    __syncthreads();  // before the next level clears the histogram
  }
  // Fewer than k positive weights: the k-th largest is 0 and every positive weight stays.
  if (prefix != 0) KeepAbove(w, c, prefix, remaining, sh);
}

// Step 3, top-p: keeps the shortest prefix, most likely first (ties by lowest id), whose mass
// reaches (top_p - slack) * the kept mass; at least the first.
__device__ void TopP(float* w, Chunk c, float top_p, SampleShared& sh) {
  const double total = BlockScan<double>(ChunkSum(w, c), sh.scan, sh.scan_offset).total;
  if (!(total > 0.0)) return;  // nothing kept: the draw falls back to the argmax
  const double target = (static_cast<double>(top_p) - kTopPSlack) * total;
  uint32_t prefix = 0;
  double above = 0.0;  // mass of the weights above every value that matches `prefix`
  int32_t ties = 0;    // weights equal to the final prefix
  for (int shift = 32 - kRadixBits; shift >= 0; shift -= kRadixBits) {
    ClearHistograms(sh, true);
    __syncthreads();
    for (int64_t i = c.begin; i < c.end; ++i) {
      const uint32_t bits = __float_as_uint(w[i]);
      if (bits != 0 && HighBits(bits, shift) == prefix) {
        const uint32_t digit = (bits >> shift) & (kRadixBins - 1);
        atomicAdd(&sh.hist_count[digit], 1);
        atomicAdd(&sh.hist_mass[digit], static_cast<double>(w[i]));
      }
    }
    __syncthreads();
    if (threadIdx.x < kWarp) {
      double level_above = above;
      const int digit = ChooseBin<double>(sh.hist_mass, sh.hist_count, target, level_above,
                                          sh.group_mass, sh.group_count);
      if (threadIdx.x == 0) {  // total > 0: a bin holds a positive weight, so digit >= 0
        sh.chosen_digit = digit;
        sh.chosen_above_mass = level_above;
        sh.chosen_ties = sh.hist_count[digit];
      }
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(sh.chosen_digit) << shift;
    above = sh.chosen_above_mass;
    ties = sh.chosen_ties;
    __syncthreads();
  }
  // The nucleus ends among the `ties` weights equal to `value`: it takes the fewest m >= 1 of
  // them with above + m * value >= target.
  const double value = __uint_as_float(prefix);
  const double need = ceil((target - above) / value);
  int64_t m = need <= 1.0 ? 1 : need >= ties ? ties : static_cast<int64_t>(need);
  while (m > 1 && above + static_cast<double>(m - 1) * value >= target) --m;
  while (m < ties && above + static_cast<double>(m) * value < target) ++m;
  KeepAbove(w, c, prefix, m, sh);
}

// Step 4: the first kept id, walking upwards, where the running mass exceeds uniform * total.
// Every thread returns the same id.
__device__ void Draw(const float* w, Chunk c, double uniform, int32_t best, int32_t* out,
                     SampleShared& sh) {
  const Prefix<double> p = BlockScan<double>(ChunkSum(w, c), sh.scan, sh.scan_offset);
  if (!(p.total > 0.0)) {  // nothing kept (a NaN temperature, min_p > 1): the argmax
    if (threadIdx.x == 0) *out = best;
    return;
  }
  const double target = ClampUniform(uniform) * p.total;  // < total
  if (!(p.exclusive <= target && target < p.inclusive)) return;
  // Exactly one thread owns the target. Its walk may round differently from its chunk's sum:
  // then its last kept id.
  double mass = p.exclusive;
  int32_t last = best;
  for (int64_t i = c.begin; i < c.end; ++i) {
    if (w[i] <= 0.0f) continue;
    last = static_cast<int32_t>(i);
    mass += w[i];
    if (target < mass) break;
  }
  *out = last;
}

__global__ void __launch_bounds__(kThreads)
    SampleKernel(float* logits, const SamplingRow* rows_params, int32_t* out, int64_t cols) {
  __shared__ SampleShared sh;
  float* w = logits + blockIdx.x * cols;
  const SamplingRow row = rows_params[blockIdx.x];
  const Chunk c = ThreadChunk(cols);

  // 1. The argmax; each thread scans its ids upwards, so its first maximum wins.
  ArgBest best{-INFINITY, -1};
  for (int64_t i = c.begin; i < c.end; ++i) {
    if (w[i] > best.value) best = {w[i], static_cast<int32_t>(i)};
  }
  best = BlockBest(best, sh);
  const int32_t best_id = best.index < 0 ? 0 : best.index;
  const bool greedy = row.temperature < kSampleGreedyTemperature || row.top_k == 1;
  if (greedy || best.index < 0 || !isfinite(best.value)) {
    if (threadIdx.x == 0) out[blockIdx.x] = best_id;
    return;
  }
  // 2. Weights in place (each thread its own ids: no one reads them until the next barrier).
  for (int64_t i = c.begin; i < c.end; ++i) w[i] = Weight(w[i], best.value, row.temperature);
  // 3. Filters.
  if (row.top_k > 1 && row.top_k < cols) TopK(w, c, row.top_k, sh);
  if (row.top_p < 1.0f) TopP(w, c, row.top_p, sh);
  if (row.min_p > 0.0f) {
    for (int64_t i = c.begin; i < c.end; ++i) w[i] = w[i] >= row.min_p ? w[i] : 0.0f;
  }
  // 4. The draw.
  Draw(w, c, row.uniform, best_id, out + blockIdx.x, sh);
}

}  // namespace

cudaError_t LaunchApplyPenalties(const ApplyPenaltiesParams& p, cudaStream_t stream) {
  if (p.num_entries == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(
      std::min((p.num_entries + kPenaltyThreads - 1) / kPenaltyThreads, kMaxPenaltyBlocks));
  ApplyPenaltiesKernel<<<blocks, kPenaltyThreads, 0, stream>>>(p.logits, p.rows_params, p.entries, p.num_entries, p.rows, p.cols);
  return cudaGetLastError();
}

cudaError_t LaunchSample(const SampleParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.rows > 2147483647) return cudaErrorInvalidConfiguration;
  SampleKernel<<<static_cast<unsigned>(p.rows), kThreads, 0, stream>>>(p.logits, p.rows_params, p.out, p.cols);
  return cudaGetLastError();
}

}  // namespace strata::kernels::cuda
