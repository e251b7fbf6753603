// CUDA RoPE, paged KV writes and paged attention over the f32 KV pool (kernels/device.h
// semantics; CPU twins in kernels/cpu). Correctness first: attention is one warp per (query
// row, query head, split of its context) with an online softmax; long contexts with few rows
// (decode) are cut into splits that run in parallel and are merged by a second kernel
// (split-K, "flash decoding"). A tensor-core prefill kernel comes once a GPU can measure it.
// Page ids come from device memory and cannot be checked on the host: the kernels skip a page
// id outside the pool (its tokens are neither written nor read) instead of touching memory out
// of bounds; the CPU backend rejects such a batch with InvalidArgument.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/cuda_kernels.cuh"
#include "kernels/cuda/cuda_warp.cuh"

namespace strata::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned Blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 ? 65535 : b));
}

// One thread per (token, head, pair j): the rotate_half convention, angle = f32(pos * inv_freq)
// with cos/sin taken in double like the CPU twin.
__global__ void RopeKernel(RopeParams p) {
  const int32_t half = p.head_dim / 2;
  const int32_t heads = p.num_q_heads + p.num_kv_heads;
  const int64_t n = p.num_tokens * heads * half;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t j = static_cast<int32_t>(i % half);
    const int32_t h = static_cast<int32_t>((i / half) % heads);
    const int64_t t = i / (static_cast<int64_t>(half) * heads);
    const float angle = static_cast<float>(p.positions[t]) * p.inv_freq[j];
    const float c = static_cast<float>(cos(static_cast<double>(angle)));
    const float s = static_cast<float>(sin(static_cast<double>(angle)));
    float* x = h < p.num_q_heads
                   ? p.q + (t * p.num_q_heads + h) * p.head_dim
                   : p.k + (t * p.num_kv_heads + (h - p.num_q_heads)) * p.head_dim;
    const float x1 = x[j], x2 = x[j + half];
    x[j] = x1 * c - x2 * s;
    x[j + half] = x2 * c + x1 * s;
  }
}

// One thread per (token, element of kv_dim): K and V to the token's slot.
__global__ void WriteKvKernel(WriteKvParams p) {
  const int64_t kv_dim = static_cast<int64_t>(p.kv.num_kv_heads) * p.kv.head_dim;
  const int64_t n = p.num_tokens * kv_dim;
  const int64_t page_floats = 2 * static_cast<int64_t>(p.kv.block_size) * kv_dim;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / kv_dim, e = i % kv_dim;
    const int64_t slot = p.slots[t];
    const int64_t page = slot / p.kv.block_size, offset = slot % p.kv.block_size;
    if (slot < 0 || page >= p.kv.num_pages) continue;
    float* dst = p.kv.pool + page * page_floats + offset * kv_dim + e;
    dst[0] = p.k[i];
    dst[p.kv.block_size * kv_dim] = p.v[i];
  }
}

// Lane l holds output channels l, l + 32, ...; kMaxPerLane * 32 >= head_dim.
constexpr int kMaxPerLane = 8;  // head_dim <= 256

// Where one warp's work sits: query row, query head, and the KV positions [begin, end) of its
// split of the row's visible context (split-K: a long context is cut into num_splits parts that
// run in parallel and are merged by CombineSplitsKernel).
struct WarpTask {
  int64_t row;
  int32_t qh, seq, split, begin, end;
};

__device__ WarpTask TaskOf(const PagedAttentionParams& p, int64_t warp, int32_t num_splits,
                           int32_t split_tokens) {
  WarpTask t;
  t.split = static_cast<int32_t>(warp % num_splits);
  const int64_t row_head = warp / num_splits;
  t.row = row_head / p.num_q_heads;
  t.qh = static_cast<int32_t>(row_head % p.num_q_heads);
  t.seq = SequenceOf(p.query_start, p.num_seqs, t.row);
  const int32_t q_len = p.query_start[t.seq + 1] - p.query_start[t.seq];
  const int32_t pos =
      p.context_lens[t.seq] - q_len + static_cast<int32_t>(t.row - p.query_start[t.seq]);
  t.begin = t.split * split_tokens;
  t.end = min(pos + 1, t.begin + split_tokens);
  return t;
}

// One warp per (row, q head, split): scores against the split's visible positions with an
// online softmax. One split: the normalised output goes to p.out. Several: the unnormalised
// accumulator and its (max, sum) go to `partials` ([row, q head, split] x (head_dim + 2) floats).
__global__ void PagedAttentionKernel(PagedAttentionParams p, int64_t num_rows, int32_t num_splits,
                                     int32_t split_tokens, float* partials) {
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (warp >= num_rows * p.num_q_heads * num_splits) return;
  const WarpTask t = TaskOf(p, warp, num_splits, split_tokens);
  const int32_t d = p.kv.head_dim, kvh = t.qh / (p.num_q_heads / p.kv.num_kv_heads);
  const int64_t kv_dim = static_cast<int64_t>(p.kv.num_kv_heads) * d;
  const int64_t page_floats = 2 * static_cast<int64_t>(p.kv.block_size) * kv_dim;
  const float* q = p.q + (t.row * p.num_q_heads + t.qh) * d;
  float acc[kMaxPerLane] = {};
  float m = -INFINITY, l = 0.0f;
  for (int32_t j = t.begin; j < t.end; ++j) {
    const int32_t page = p.block_tables[static_cast<int64_t>(t.seq) * p.max_blocks_per_seq +
                                        j / p.kv.block_size];
    if (page < 0 || page >= p.kv.num_pages) continue;
    const float* k = p.kv.pool + page * page_floats + (j % p.kv.block_size) * kv_dim + kvh * d;
    const float* v = k + p.kv.block_size * kv_dim;
    float dot = 0.0f;
    for (int32_t c = lane; c < d; c += kWarp) dot += q[c] * k[c];
    const float score = WarpSum(dot) * p.scale;
    float w;
    const float correction = OnlineSoftmaxStep(score, m, l, w);
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int32_t c = lane + i * kWarp;
      if (c < d) acc[i] = acc[i] * correction + w * v[c];
    }
  }
  if (num_splits == 1) {
    float* out = p.out + (t.row * p.num_q_heads + t.qh) * d;
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int32_t c = lane + i * kWarp;
      if (c < d) out[c] = l > 0.0f ? acc[i] / l : 0.0f;
    }
    return;
  }
  float* part = partials + warp * (d + 2);
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int32_t c = lane + i * kWarp;
    if (c < d) part[c] = acc[i];
  }
  if (lane == 0) {
    part[d] = m;  // -inf for an empty split (l = 0): it adds nothing below
    part[d + 1] = l;
  }
}

// One warp per (row, q head): merges its splits' partial softmaxes into the output,
// out = sum_i acc_i e^(m_i - M) / sum_i l_i e^(m_i - M) with M the largest m_i.
__global__ void CombineSplitsKernel(PagedAttentionParams p, int64_t num_rows, int32_t num_splits,
                                    const float* partials) {
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (warp >= num_rows * p.num_q_heads) return;
  const int32_t d = p.kv.head_dim;
  const float* parts = partials + warp * num_splits * (d + 2);
  float max_m = -INFINITY;
  for (int32_t i = 0; i < num_splits; ++i) max_m = fmaxf(max_m, parts[i * (d + 2) + d]);
  float total = 0.0f;
  for (int32_t i = 0; i < num_splits; ++i) {
    const float* part = parts + i * (d + 2);
    if (part[d + 1] > 0.0f) total += part[d + 1] * expf(part[d] - max_m);
  }
  float* out = p.out + warp * d;  // warp = row * num_q_heads + qh
  for (int32_t c = lane; c < d; c += kWarp) {
    float sum = 0.0f;
    for (int32_t i = 0; i < num_splits; ++i) {
      const float* part = parts + i * (d + 2);
      if (part[d + 1] > 0.0f) sum += part[c] * expf(part[d] - max_m);
    }
    out[c] = total > 0.0f ? sum / total : 0.0f;
  }
}

}  // namespace

cudaError_t LaunchRope(const RopeParams& p, cudaStream_t stream) {
  const int64_t n = p.num_tokens * (p.num_q_heads + p.num_kv_heads) * (p.head_dim / 2);
  if (n == 0) return cudaSuccess;
  RopeKernel<<<Blocks(n), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchWriteKv(const WriteKvParams& p, cudaStream_t stream) {
  const int64_t n = p.num_tokens * p.kv.num_kv_heads * p.kv.head_dim;
  if (n == 0) return cudaSuccess;
  WriteKvKernel<<<Blocks(n), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchPagedAttention(const PagedAttentionParams& p, int64_t num_rows,
                                 const AttentionSplit& split, float* partials,
                                 cudaStream_t stream) {
  const int64_t warps = num_rows * p.num_q_heads * split.num_splits;
  if (warps == 0) return cudaSuccess;
  const int64_t blocks = (warps * kWarp + kThreads - 1) / kThreads;
  if (blocks > 2147483647) return cudaErrorInvalidConfiguration;
  PagedAttentionKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      p, num_rows, split.num_splits, split.split_tokens, partials);
  if (split.num_splits == 1) return cudaGetLastError();
  const int64_t combine_blocks = (num_rows * p.num_q_heads * kWarp + kThreads - 1) / kThreads;
  CombineSplitsKernel<<<static_cast<unsigned>(combine_blocks), kThreads, 0, stream>>>(
      p, num_rows, split.num_splits, partials);
  return cudaGetLastError();
}

AttentionSplit ChooseAttentionSplit(int64_t num_rows, int32_t num_q_heads, int64_t max_context,
                                    int32_t num_sms) {
  constexpr int64_t kMinSplitTokens = 256;  // below this a split costs more than it saves
  max_context = std::max<int64_t>(max_context, 1);
  const int64_t tasks = std::max<int64_t>(1, num_rows * num_q_heads);
  const int64_t target_warps = static_cast<int64_t>(std::max(num_sms, 1)) * 32;
  const int64_t by_context = (max_context + kMinSplitTokens - 1) / kMinSplitTokens;
  const int64_t splits =
      std::clamp<int64_t>((target_warps + tasks - 1) / tasks, 1, std::max<int64_t>(1, by_context));
  const int64_t split_tokens = (max_context + splits - 1) / splits;
  // Recomputed from split_tokens so that no split is empty by construction.
  return {.num_splits = static_cast<int32_t>((max_context + split_tokens - 1) /
                                             std::max<int64_t>(split_tokens, 1)),
          .split_tokens = static_cast<int32_t>(std::max<int64_t>(split_tokens, 1))};
}

}  // namespace strata::kernels::cuda
