// Paged KV writes and causal GQA attention over the paged pool (KvPoolView layout:
// [num_pages, 2 (K then V), block_size, num_kv_heads, head_dim], f32).
//
// Attention is a hand-written kernel because no library here knows the paged layout. One work
// item is (query token, q head); items go to OpenMP threads dynamically because causal rows
// differ in length. Each item walks its sequence's pages in order with an online softmax in f32
// (FlashAttention's running max / running sum), one page at a time: the page's scores are
// computed with AVX-512 dot products, exponentiated together, then V rows are accumulated.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_simd.h"

namespace strata::kernels::cpu {
namespace {

// Attention work (q.k multiply-adds) below which one thread is faster than a parallel region.
constexpr int64_t kMinParallelWork = 1 << 14;

float Dot(const float* a, const float* b, int32_t n) {
  int32_t i = 0;
  float sum = 0.0f;
#if defined(__AVX512F__)
  __m512 acc = _mm512_setzero_ps();
  for (; i < n; i += 16) {
    const __mmask16 mask = TailMask16(n - i);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i), _mm512_maskz_loadu_ps(mask, b + i),
                          acc);
  }
  sum = _mm512_reduce_add_ps(acc);
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// acc[i] += w * v[i].
void AxpyRow(float* acc, float w, const float* v, int32_t n) {
  int32_t i = 0;
#if defined(__AVX512F__)
  const __m512 wv = _mm512_set1_ps(w);
  for (; i < n; i += 16) {
    const __mmask16 mask = TailMask16(n - i);
    _mm512_mask_storeu_ps(acc + i, mask,
                          _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mask, v + i),
                                          _mm512_maskz_loadu_ps(mask, acc + i)));
  }
#endif
  for (; i < n; ++i) acc[i] += w * v[i];
}

absl::Status ValidatePool(const KvPoolView& kv, const char* op) {
  if (kv.pool == nullptr || kv.num_pages <= 0 || kv.block_size <= 0 || kv.num_kv_heads <= 0 ||
      kv.head_dim <= 0) {
    return absl::InvalidArgumentError(StrCat(op, ": bad KV pool (pages=", kv.num_pages,
                                             " block_size=", kv.block_size, " kv_heads=",
                                             kv.num_kv_heads, " head_dim=", kv.head_dim, ")"));
  }
  return absl::OkStatus();
}

// Checks the varlen metadata and every page id attention will read; returns the q.k work.
absl::StatusOr<int64_t> ValidateAttention(const PagedAttentionParams& p) {
  RETURN_IF_ERROR(ValidatePool(p.kv, "PagedAttention"));
  if (p.q == nullptr || p.out == nullptr || p.query_start == nullptr ||
      p.context_lens == nullptr || p.block_tables == nullptr || p.num_seqs < 0 ||
      p.num_q_heads <= 0 || p.num_q_heads % p.kv.num_kv_heads != 0) {
    return absl::InvalidArgumentError(StrCat("PagedAttention: bad arguments (num_seqs=",
                                             p.num_seqs, " q_heads=", p.num_q_heads,
                                             " kv_heads=", p.kv.num_kv_heads, ")"));
  }
  if (p.num_seqs > 0 && p.query_start[0] != 0) {
    return absl::InvalidArgumentError("PagedAttention: query_start[0] must be 0");
  }
  int64_t work = 0;
  const int32_t bs = p.kv.block_size;
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    const int32_t q_len = p.query_start[s + 1] - p.query_start[s];
    const int32_t ctx = p.context_lens[s];
    const int64_t num_blocks = (static_cast<int64_t>(ctx) + bs - 1) / bs;
    if (q_len < 0 || ctx < q_len || num_blocks > p.max_blocks_per_seq) {
      return absl::InvalidArgumentError(StrCat("PagedAttention: sequence ", s, " has ", q_len,
                                               " query tokens, context ", ctx, " and room for ",
                                               p.max_blocks_per_seq, " blocks"));
    }
    for (int64_t b = 0; b < num_blocks; ++b) {
      const int32_t page = p.block_tables[s * static_cast<int64_t>(p.max_blocks_per_seq) + b];
      if (page < 0 || page >= p.kv.num_pages) {
        return absl::InvalidArgumentError(StrCat("PagedAttention: sequence ", s, " block ", b,
                                                 " maps to page ", page, " of ",
                                                 p.kv.num_pages));
      }
    }
    work += static_cast<int64_t>(q_len) * ctx;
  }
  return work * p.num_q_heads * p.kv.head_dim;
}

// Per-thread scratch for one work item.
struct AttentionScratch {
  std::vector<float> scores;  // [block_size]
  std::vector<float> acc;     // [head_dim]
};

// out[:] = softmax(q . K[0..num_kv)^T * scale) V for one q head of one sequence.
void AttendOne(const PagedAttentionParams& p, const int32_t* block_table, int32_t kv_head,
               int32_t num_kv, const float* q, float* out, AttentionScratch& scratch) {
  const KvPoolView& kv = p.kv;
  const int32_t d = kv.head_dim;
  const int64_t token_stride = static_cast<int64_t>(kv.num_kv_heads) * d;
  const int64_t half_page = kv.block_size * token_stride;  // K (or V) part of one page
  float* scores = scratch.scores.data();
  float* acc = scratch.acc.data();
  std::fill(acc, acc + d, 0.0f);
  float running_max = -std::numeric_limits<float>::infinity();
  float running_sum = 0.0f;
  for (int32_t start = 0, b = 0; start < num_kv; start += kv.block_size, ++b) {
    const int32_t count = std::min(kv.block_size, num_kv - start);
    const float* k = kv.pool + 2 * half_page * block_table[b] + kv_head * d;
    const float* v = k + half_page;
    float block_max = -std::numeric_limits<float>::infinity();
    for (int32_t j = 0; j < count; ++j) {
      scores[j] = Dot(q, k + j * token_stride, d) * p.scale;
      block_max = std::max(block_max, scores[j]);
    }
    const float new_max = std::max(running_max, block_max);
    const float correction = std::exp(running_max - new_max);  // 0 on the first page
    for (int32_t j = 0; j < count; ++j) scores[j] -= new_max;
    ExpInPlace(scores, count);
    running_sum *= correction;
    for (int32_t i = 0; i < d; ++i) acc[i] *= correction;
    for (int32_t j = 0; j < count; ++j) {
      AxpyRow(acc, scores[j], v + j * token_stride, d);
      running_sum += scores[j];
    }
    running_max = new_max;
  }
  const float inv_sum = 1.0f / running_sum;
  for (int32_t i = 0; i < d; ++i) out[i] = acc[i] * inv_sum;
}

}  // namespace

absl::Status WriteKv(const WriteKvParams& p, int threads) {
  RETURN_IF_ERROR(ValidatePool(p.kv, "WriteKv"));
  if (p.num_tokens < 0 || (p.num_tokens > 0 && (p.k == nullptr || p.v == nullptr ||
                                                 p.slots == nullptr))) {
    return absl::InvalidArgumentError("WriteKv: null k, v or slots");
  }
  const int64_t num_slots = static_cast<int64_t>(p.kv.num_pages) * p.kv.block_size;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    if (p.slots[t] < 0 || p.slots[t] >= num_slots) {
      return absl::InvalidArgumentError(StrCat("WriteKv: slot ", p.slots[t], " of token ", t,
                                               " is outside the pool's ", num_slots, " slots"));
    }
  }
  const int64_t token_floats = static_cast<int64_t>(p.kv.num_kv_heads) * p.kv.head_dim;
  const int64_t half_page = p.kv.block_size * token_floats;
  const bool parallel = p.num_tokens * token_floats >= kMinParallelWork;
#pragma omp parallel for num_threads(parallel ? threads : 1)
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int64_t page = p.slots[t] / p.kv.block_size;
    const int64_t offset = p.slots[t] % p.kv.block_size;
    float* k_dst = p.kv.pool + 2 * half_page * page + offset * token_floats;
    std::memcpy(k_dst, p.k + t * token_floats, token_floats * sizeof(float));
    std::memcpy(k_dst + half_page, p.v + t * token_floats, token_floats * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status PagedAttention(const PagedAttentionParams& p, int threads) {
  ASSIGN_OR_RETURN(const int64_t work, ValidateAttention(p));
  const int64_t num_tokens = p.num_seqs > 0 ? p.query_start[p.num_seqs] : 0;
  std::vector<int32_t> seq_of_token(num_tokens);
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    std::fill(seq_of_token.begin() + p.query_start[s], seq_of_token.begin() + p.query_start[s + 1],
              s);
  }
  const int32_t group = p.num_q_heads / p.kv.num_kv_heads;
  const int32_t d = p.kv.head_dim;
  const int64_t num_items = num_tokens * p.num_q_heads;
#pragma omp parallel num_threads(work >= kMinParallelWork ? threads : 1)
  {
    AttentionScratch scratch{std::vector<float>(p.kv.block_size), std::vector<float>(d)};
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < num_items; ++item) {
      const int64_t t = item / p.num_q_heads;
      const int32_t h = static_cast<int32_t>(item % p.num_q_heads);
      const int32_t s = seq_of_token[t];
      const int32_t q_len = p.query_start[s + 1] - p.query_start[s];
      const int32_t position = p.context_lens[s] - q_len + static_cast<int32_t>(t - p.query_start[s]);
      const int64_t offset = item * d;  // [num_tokens, num_q_heads, head_dim]
      AttendOne(p, p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq), h / group,
                position + 1, p.q + offset, p.out + offset, scratch);
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::kernels::cpu
