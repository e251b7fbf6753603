// CUDA RoPE, paged KV writes and paged attention over the f32 KV pool (kernels/device.h
// semantics; CPU twins in kernels/cpu). Correctness first: attention is one warp per (query
// row, query head) walking its context with an online softmax; the split-K decode and the
// tensor-core prefill kernels come once a GPU is available to measure them (issue 9).
// Page ids come from device memory and cannot be checked on the host: the kernels skip a page
// id outside the pool (its tokens are neither written nor read) instead of touching memory out
// of bounds; the CPU backend rejects such a batch with InvalidArgument.
#include <cmath>

#include "kernels/cuda/cuda_kernels.cuh"

namespace strata::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

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

__device__ float WarpSum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The sequence owning query row `row` (query_start ascending).
__device__ int32_t SequenceOf(const int32_t* query_start, int32_t num_seqs, int64_t row) {
  int32_t lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int32_t mid = (lo + hi + 1) / 2;
    if (query_start[mid] <= row) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Lane l holds output channels l, l + 32, ...; kMaxPerLane * 32 >= head_dim.
constexpr int kMaxPerLane = 8;  // head_dim <= 256

// One warp per (row, q head): scores against every visible position, online softmax.
__global__ void PagedAttentionKernel(PagedAttentionParams p, int64_t num_rows) {
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (warp >= num_rows * p.num_q_heads) return;
  const int64_t row = warp / p.num_q_heads;
  const int32_t qh = static_cast<int32_t>(warp % p.num_q_heads);
  const int32_t s = SequenceOf(p.query_start, p.num_seqs, row);
  const int32_t q_len = p.query_start[s + 1] - p.query_start[s];
  const int32_t pos = p.context_lens[s] - q_len + static_cast<int32_t>(row - p.query_start[s]);
  const int32_t d = p.kv.head_dim, kvh = qh / (p.num_q_heads / p.kv.num_kv_heads);
  const int64_t kv_dim = static_cast<int64_t>(p.kv.num_kv_heads) * d;
  const int64_t page_floats = 2 * static_cast<int64_t>(p.kv.block_size) * kv_dim;
  const float* q = p.q + (row * p.num_q_heads + qh) * d;
  float acc[kMaxPerLane] = {};
  float m = -INFINITY, l = 0.0f;
  for (int32_t j = 0; j <= pos; ++j) {
    const int32_t page = p.block_tables[static_cast<int64_t>(s) * p.max_blocks_per_seq +
                                        j / p.kv.block_size];
    if (page < 0 || page >= p.kv.num_pages) continue;
    const float* k = p.kv.pool + page * page_floats + (j % p.kv.block_size) * kv_dim + kvh * d;
    const float* v = k + p.kv.block_size * kv_dim;
    float dot = 0.0f;
    for (int32_t c = lane; c < d; c += kWarp) dot += q[c] * k[c];
    const float score = WarpSum(dot) * p.scale;
    const float m_new = fmaxf(m, score);
    const float correction = expf(m - m_new), w = expf(score - m_new);
    l = l * correction + w;
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int32_t c = lane + i * kWarp;
      if (c < d) acc[i] = acc[i] * correction + w * v[c];
    }
    m = m_new;
  }
  float* out = p.out + (row * p.num_q_heads + qh) * d;
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int32_t c = lane + i * kWarp;
    if (c < d) out[c] = l > 0.0f ? acc[i] / l : 0.0f;
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
                                 cudaStream_t stream) {
  const int64_t threads = num_rows * p.num_q_heads * kWarp;
  if (threads == 0) return cudaSuccess;
  const int64_t blocks = (threads + kThreads - 1) / kThreads;
  if (blocks > 2147483647) return cudaErrorInvalidConfiguration;
  PagedAttentionKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, num_rows);
  return cudaGetLastError();
}

}  // namespace strata::kernels::cuda
