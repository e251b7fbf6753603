// CUDA sparsity kernels over the f32 paged KV pool (KvPoolView: [num_pages, 2 (K then V),
// block_size, num_kv_heads, head_dim]) for H2O / SnapKV; CPU twins in kernels/cpu/cpu_sparsity.cc.
//   - AttentionScores: one block per (sequence, kv head), which owns its row of `scores`. It
//     zeroes the row, then takes the scored query rows and the q heads of its kv head in the
//     CPU's order (rows ascending, heads ascending) with an exact two-pass softmax each: pass 1
//     computes every logit (warp w takes positions w, w + 8, ...; its lanes split head_dim) and
//     the row's max and sum, pass 2 recomputes the logits and adds e^(logit - max) / sum to
//     position j. Position j always belongs to the same warp, and barriers separate the rows,
//     so the accumulation needs no atomics and is deterministic.
//   - KvCompact: one block per (sequence, kv head), which owns its kv head's slice of the
//     sequence's pages. Moves go to an index <= their source, so they run in ascending
//     (token, channel) chunks of blockDim: read every source of the chunk, barrier, write.
// Page ids, keep sets and the varlen metadata live in device memory: a block whose inputs the CPU
// twin would reject with InvalidArgument writes nothing (it skips rather than touch memory out
// of bounds). What the host can see is checked by kernels/kernel_args.h.
#include <cmath>

#include "kernels/cuda/cuda_kernels.cuh"
#include "kernels/cuda/cuda_warp.cuh"

namespace strata::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;

// Where a sequence's tokens live (the CPU's SeqPages): its block-table row and the pool's
// strides, in floats.
struct SeqPages {
  __device__ SeqPages(const KvPoolView& kv, const int32_t* block_tables,
                      int32_t max_blocks_per_seq, int32_t s)
      : kv(kv),
        table(block_tables + s * static_cast<int64_t>(max_blocks_per_seq)),
        token_stride(static_cast<int64_t>(kv.num_kv_heads) * kv.head_dim),
        half_page(kv.block_size * token_stride) {}

  // The K row of logical token `token` for kv head `head`; its V row is half_page floats on.
  __device__ float* K(int64_t token, int32_t head) const {
    return kv.pool + 2 * half_page * table[token / kv.block_size] +
           (token % kv.block_size) * token_stride + static_cast<int64_t>(head) * kv.head_dim;
  }

  const KvPoolView& kv;
  const int32_t* table;
  int64_t token_stride;
  int64_t half_page;
};

// Block vote: entries [0, num_blocks) of `row` name pages [0, num_pages).
__device__ bool BlockPagesValid(const int32_t* row, int64_t num_blocks, int32_t num_pages) {
  bool bad = false;
  for (int64_t b = threadIdx.x; b < num_blocks; b += blockDim.x) {
    bad |= row[b] < 0 || row[b] >= num_pages;
  }
  return !__syncthreads_or(bad);
}

// ---- AttentionScores --------------------------------------------------------------------------

// Sequence s passes the CPU's ValidateScoresSeq (varlen metadata, context <= max_context,
// score_from inside its rows, page ids). Block-uniform.
__device__ bool ScoresSeqValid(const AttentionScoresParams& p, int32_t s) {
  const int32_t q_len = p.query_start[s + 1] - p.query_start[s];
  const int32_t ctx = p.context_lens[s];
  const int64_t num_blocks = (static_cast<int64_t>(ctx) + p.kv.block_size - 1) / p.kv.block_size;
  const int32_t from = p.score_from[s];
  const bool ok = p.query_start[0] == 0 && q_len >= 0 && ctx >= q_len &&
                  num_blocks <= p.max_blocks_per_seq && ctx <= p.max_context &&
                  from >= p.query_start[s] && from <= p.query_start[s + 1];
  const int32_t* row = p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq);
  return ok && BlockPagesValid(row, num_blocks, p.kv.num_pages);  // `ok` is block-uniform
}

// (q . k_j) * scale for one q head, computed by one warp; every lane gets it.
__device__ float Logit(const float* q, const float* k, int32_t d, float scale) {
  float dot = 0.0f;
  for (int32_t c = threadIdx.x % kWarp; c < d; c += kWarp) dot += q[c] * k[c];
  return WarpSum(dot) * scale;
}

// The softmax max and sum of q's logits over positions [0, num_kv): each warp folds its
// positions online, then the warps' (max, sum) pairs are merged. Every thread gets both.
// Ends with a barrier, so the shared arrays may be reused right after.
__device__ void SoftmaxStats(const AttentionScoresParams& p, const SeqPages& pages,
                             int32_t kv_head, const float* q, int32_t num_kv, float& max_out,
                             float& sum_out) {
  __shared__ float warp_max[kWarps], warp_sum[kWarps];
  const int warp = threadIdx.x / kWarp;
  float m = -INFINITY, l = 0.0f;
  for (int32_t j = warp; j < num_kv; j += kWarps) {
    const float x = Logit(q, pages.K(j, kv_head), p.kv.head_dim, p.scale);
    float unused_weight;
    OnlineSoftmaxStep(x, m, l, unused_weight);
  }
  if (threadIdx.x % kWarp == 0) {
    warp_max[warp] = m;
    warp_sum[warp] = l;
  }
  __syncthreads();
  float row_max = -INFINITY;
  for (int w = 0; w < kWarps; ++w) row_max = fmaxf(row_max, warp_max[w]);
  float row_sum = 0.0f;
  for (int w = 0; w < kWarps; ++w) {
    if (warp_sum[w] > 0.0f) row_sum += warp_sum[w] * expf(warp_max[w] - row_max);
  }
  max_out = row_max;
  sum_out = row_sum;
  __syncthreads();
}

// Block (s * H + kv_head): zeroes scores[s, kv_head, :], then adds, for every scored row of s
// and every q head of kv_head, softmax(q . K[0, num_kv)^T * scale)[j] to position j.
__global__ void AttentionScoresKernel(AttentionScoresParams p) {
  const int32_t kv_heads = p.kv.num_kv_heads;
  const int32_t s = blockIdx.x / kv_heads, kv_head = blockIdx.x % kv_heads;
  if (!ScoresSeqValid(p, s)) return;
  float* out = p.scores + (static_cast<int64_t>(s) * kv_heads + kv_head) * p.max_context;
  for (int32_t j = threadIdx.x; j < p.max_context; j += blockDim.x) out[j] = 0.0f;
  __syncthreads();
  const SeqPages pages(p.kv, p.block_tables, p.max_blocks_per_seq, s);
  const int32_t d = p.kv.head_dim, group = p.num_q_heads / kv_heads;
  const int32_t first = p.query_start[s], end = p.query_start[s + 1];
  const int32_t first_position = p.context_lens[s] - (end - first);  // of row `first`
  const int warp = threadIdx.x / kWarp;
  for (int32_t row = p.score_from[s]; row < end; ++row) {
    const int32_t num_kv = first_position + (row - first) + 1;
    for (int32_t h = 0; h < group; ++h) {
      const float* q =
          p.q + (static_cast<int64_t>(row) * p.num_q_heads + kv_head * group + h) * d;
      float row_max, row_sum;
      SoftmaxStats(p, pages, kv_head, q, num_kv, row_max, row_sum);
      const float inv_sum = 1.0f / row_sum;
      for (int32_t j = warp; j < num_kv; j += kWarps) {
        const float prob = expf(Logit(q, pages.K(j, kv_head), d, p.scale) - row_max) * inv_sum;
        if (threadIdx.x % kWarp == 0) out[j] += prob;
      }
    }
  }
}

// ---- KvCompact --------------------------------------------------------------------------------

// (s, h)'s keep set passes the CPU's checks (num_keep fits, strictly ascending, inside the
// block table, pages of the spanned blocks in the pool). Block-uniform.
__device__ bool CompactItemValid(const KvCompactParams& p, int32_t s, const int32_t* keep) {
  const int32_t n = p.num_keep[s];
  const int64_t capacity = static_cast<int64_t>(p.max_blocks_per_seq) * p.kv.block_size;
  if (n < 0 || n > p.max_keep || n > capacity) return false;
  bool bad = false;
  for (int32_t i = threadIdx.x; i < n; i += blockDim.x) {
    const int64_t floor = i == 0 ? 0 : int64_t{keep[i - 1]} + 1;
    bad |= keep[i] < floor || keep[i] >= capacity;
  }
  if (__syncthreads_or(bad)) return false;
  const int64_t spanned = n == 0 ? 0 : int64_t{keep[n - 1]} + 1;  // tokens the moves touch
  const int64_t num_blocks = (spanned + p.kv.block_size - 1) / p.kv.block_size;
  const int32_t* row = p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq);
  return BlockPagesValid(row, num_blocks, p.kv.num_pages);
}

// Block (s * H + h): K and V of kept token keep[i] go to token i, for i < num_keep[s].
__global__ void KvCompactKernel(KvCompactParams p) {
  const int32_t kv_heads = p.kv.num_kv_heads;
  const int32_t s = blockIdx.x / kv_heads, h = blockIdx.x % kv_heads;
  const int32_t* keep = p.keep + (static_cast<int64_t>(s) * kv_heads + h) * p.max_keep;
  if (!CompactItemValid(p, s, keep)) return;
  const SeqPages pages(p.kv, p.block_tables, p.max_blocks_per_seq, s);
  const int32_t d = p.kv.head_dim;
  const int64_t n = static_cast<int64_t>(p.num_keep[s]) * d;
  for (int64_t base = 0; base < n; base += blockDim.x) {
    const int64_t e = base + threadIdx.x;
    const int32_t i = static_cast<int32_t>(e / d), c = static_cast<int32_t>(e % d);
    const bool moves = e < n && keep[i] != i;
    float k = 0.0f, v = 0.0f;
    if (moves) {
      const float* src = pages.K(keep[i], h) + c;
      k = src[0];
      v = src[pages.half_page];
    }
    __syncthreads();
    if (moves) {
      float* dst = pages.K(i, h) + c;
      dst[0] = k;
      dst[pages.half_page] = v;
    }
    __syncthreads();
  }
}

}  // namespace

cudaError_t LaunchAttentionScores(const AttentionScoresParams& p, cudaStream_t stream) {
  const int64_t items = static_cast<int64_t>(p.num_seqs) * p.kv.num_kv_heads;
  if (items == 0) return cudaSuccess;
  if (items > 2147483647) return cudaErrorInvalidConfiguration;
  AttentionScoresKernel<<<static_cast<unsigned>(items), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchKvCompact(const KvCompactParams& p, cudaStream_t stream) {
  const int64_t items = static_cast<int64_t>(p.num_seqs) * p.kv.num_kv_heads;
  if (items == 0) return cudaSuccess;
  if (items > 2147483647) return cudaErrorInvalidConfiguration;
  KvCompactKernel<<<static_cast<unsigned>(items), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace strata::kernels::cuda
