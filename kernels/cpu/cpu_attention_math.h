// The online-softmax attention math shared by the CPU paged-attention kernels (f32 pages in
// cpu_attention.cc, KV codecs with their residual pages in cpu_quant_attention.cc), so both fold
// a page into a head's softmax with the same instructions in the same order (the fp32 codec is
// bit-identical to the f32 kernel). Stateless; any thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/cpu_simd.h"
#include "kernels/device.h"
#include "kernels/kernel_args.h"

namespace strata::kernels::cpu {

// Attention work (q.k multiply-adds) below which one thread is faster than a parallel region.
inline constexpr int64_t kMinParallelWork = 1 << 14;

// One page's worth of attention math for one q head: `count` keys / values whose rows are
// `stride` floats apart. Head dims that are a small multiple of 16 keep q and the output
// accumulator in registers (fixed-size templates; the unroll pragmas are what keeps GCC from
// spilling the accumulator arrays to the stack); other head dims take the masked generic path.

// scores[j] = (q . k_j) * scale for j < count; returns max_j scores[j].
inline float ComputeScoresGeneric(const float* q, const float* k, int32_t count, int64_t stride,
                                  int32_t d, float scale, float* scores) {
  float block_max = -std::numeric_limits<float>::infinity();
  for (int32_t j = 0; j < count; ++j) {
    const float* kj = k + j * stride;
    float dot = 0.0f;
    int32_t i = 0;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; i < d; i += 16) {
      const __mmask16 mask = TailMask16(d - i);
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, q + i), _mm512_maskz_loadu_ps(mask, kj + i),
                            acc);
    }
    dot = _mm512_reduce_add_ps(acc);
#endif
    for (; i < d; ++i) dot += q[i] * kj[i];
    scores[j] = dot * scale;
    block_max = std::max(block_max, scores[j]);
  }
  return block_max;
}

// acc[:] = acc[:] * correction + sum_j scores[j] * v_j[:].
inline void AccumulateValuesGeneric(const float* scores, const float* v, int32_t count,
                                    int64_t stride, int32_t d, float correction, float* acc) {
  int32_t i = 0;
#if defined(__AVX512F__)
  for (; i < d; i += 16) {
    const __mmask16 mask = TailMask16(d - i);
    __m512 sum = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, acc + i), _mm512_set1_ps(correction));
    for (int32_t j = 0; j < count; ++j) {
      sum = _mm512_fmadd_ps(_mm512_set1_ps(scores[j]),
                            _mm512_maskz_loadu_ps(mask, v + j * stride + i), sum);
    }
    _mm512_mask_storeu_ps(acc + i, mask, sum);
  }
#endif
  for (; i < d; ++i) {
    float sum = acc[i] * correction;
    for (int32_t j = 0; j < count; ++j) sum += scores[j] * v[j * stride + i];
    acc[i] = sum;
  }
}

#if defined(__AVX512F__)
template <int kChunks>  // head_dim == 16 * kChunks
inline float ComputeScoresFixed(const float* q, const float* k, int32_t count, int64_t stride,
                                float scale, float* scores) {
  __m512 qv[kChunks];
#pragma GCC unroll 8
  for (int c = 0; c < kChunks; ++c) qv[c] = _mm512_loadu_ps(q + 16 * c);
  float block_max = -std::numeric_limits<float>::infinity();
  for (int32_t j = 0; j < count; ++j) {
    const float* kj = k + j * stride;
    __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kj));
#pragma GCC unroll 8
    for (int c = 1; c < kChunks; ++c)
      acc = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(kj + 16 * c), acc);
    scores[j] = _mm512_reduce_add_ps(acc) * scale;
    block_max = std::max(block_max, scores[j]);
  }
  return block_max;
}

template <int kChunks>
inline void AccumulateValuesFixed(const float* scores, const float* v, int32_t count,
                                  int64_t stride, float correction, float* acc) {
  __m512 sum[kChunks];
#pragma GCC unroll 8
  for (int c = 0; c < kChunks; ++c) {
    sum[c] = _mm512_mul_ps(_mm512_loadu_ps(acc + 16 * c), _mm512_set1_ps(correction));
  }
  for (int32_t j = 0; j < count; ++j) {
    const __m512 w = _mm512_set1_ps(scores[j]);
#pragma GCC unroll 8
    for (int c = 0; c < kChunks; ++c) {
      sum[c] = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + j * stride + 16 * c), sum[c]);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < kChunks; ++c) _mm512_storeu_ps(acc + 16 * c, sum[c]);
}
#endif

inline float ComputeScores(const float* q, const float* k, int32_t count, int64_t stride, int32_t d,
                           float scale, float* scores) {
#if defined(__AVX512F__)
  switch (d) {
    case 32:
      return ComputeScoresFixed<2>(q, k, count, stride, scale, scores);
    case 64:
      return ComputeScoresFixed<4>(q, k, count, stride, scale, scores);
    case 96:
      return ComputeScoresFixed<6>(q, k, count, stride, scale, scores);
    case 128:
      return ComputeScoresFixed<8>(q, k, count, stride, scale, scores);
    default:
      break;
  }
#endif
  return ComputeScoresGeneric(q, k, count, stride, d, scale, scores);
}

inline void AccumulateValues(const float* scores, const float* v, int32_t count, int64_t stride,
                             int32_t d, float correction, float* acc) {
#if defined(__AVX512F__)
  switch (d) {
    case 32:
      return AccumulateValuesFixed<2>(scores, v, count, stride, correction, acc);
    case 64:
      return AccumulateValuesFixed<4>(scores, v, count, stride, correction, acc);
    case 96:
      return AccumulateValuesFixed<6>(scores, v, count, stride, correction, acc);
    case 128:
      return AccumulateValuesFixed<8>(scores, v, count, stride, correction, acc);
    default:
      break;
  }
#endif
  AccumulateValuesGeneric(scores, v, count, stride, d, correction, acc);
}

// Folds one page (`count` keys / values, rows `token_stride` floats apart) into one head's
// online softmax: rescale what was accumulated by e^(old max - new max), add the page's terms.
inline void UpdateHead(const float* q, const float* k, const float* v, int32_t count,
                       int64_t token_stride, int32_t d, float scale, float* scores, float* acc,
                       float& running_max, float& running_sum) {
  const float block_max = ComputeScores(q, k, count, token_stride, d, scale, scores);
  const float new_max = std::max(running_max, block_max);
  const float correction = std::exp(running_max - new_max);  // 0 on the first page
  for (int32_t j = 0; j < count; ++j) scores[j] -= new_max;
  ExpInPlace(scores, count);
  float page_sum = 0.0f;
  for (int32_t j = 0; j < count; ++j) page_sum += scores[j];
  running_sum = running_sum * correction + page_sum;
  AccumulateValues(scores, v, count, token_stride, d, correction, acc);
  running_max = new_max;
}

// Q heads per work item: the largest divisor of the GQA group that still leaves a few items
// per thread. Whole groups read each K/V row once instead of once per q head (7x less memory
// traffic for Qwen2.5-0.5B's 14:2 heads); splitting groups keeps all threads busy when there are
// few tokens (single-sequence decode).
inline int32_t HeadsPerItem(int64_t num_tokens, int32_t num_q_heads, int32_t group, int threads) {
  for (int32_t heads = group; heads > 1; --heads) {
    if (group % heads == 0 && num_tokens * (num_q_heads / heads) >= 4 * int64_t{threads}) {
      return heads;
    }
  }
  return 1;
}

// Sequence s of a varlen batch: its query rows fit its context and the context fits its block
// table. Returns its number of KV blocks; InvalidArgument naming `op` otherwise.
inline absl::StatusOr<int64_t> VarlenBlocks(const char* op, const int32_t* query_start,
                                            const int32_t* context_lens, int32_t s,
                                            int32_t block_size, int32_t max_blocks_per_seq) {
  if (s == 0 && query_start[0] != 0) {
    return absl::InvalidArgumentError(StrCat(op, ": query_start[0] must be 0"));
  }
  const int32_t q_len = query_start[s + 1] - query_start[s];
  const int32_t ctx = context_lens[s];
  const int64_t num_blocks = (static_cast<int64_t>(ctx) + block_size - 1) / block_size;
  if (q_len < 0 || ctx < q_len || num_blocks > max_blocks_per_seq) {
    return absl::InvalidArgumentError(StrCat(op, ": sequence ", s, " has ", q_len,
                                             " query tokens, context ", ctx, " and room for ",
                                             max_blocks_per_seq, " blocks"));
  }
  return num_blocks;
}

// Entries [0, num_blocks) of sequence s's block-table row name pages [0, num_pages).
inline absl::Status ValidateBlockPages(const char* op, const int32_t* row, int32_t s,
                                       int64_t num_blocks, int32_t num_pages) {
  for (int64_t b = 0; b < num_blocks; ++b) {
    if (row[b] < 0 || row[b] >= num_pages) {
      return absl::InvalidArgumentError(
          StrCat(op, ": sequence ", s, " block ", b, " maps to page ", row[b], " of ", num_pages));
    }
  }
  return absl::OkStatus();
}

// K and V rows of one page for one kv head: where they are and how far apart (in floats).
struct PageRows {
  const float* k;
  const float* v;
  int64_t stride;
};

// Per-thread online-softmax state of one work item.
struct SoftmaxScratch {
  SoftmaxScratch(int32_t block_size, int32_t heads, int32_t d)
      : scores(block_size), acc(int64_t{heads} * d), running_max(heads), running_sum(heads) {}
  std::vector<float> scores;       // [block_size]
  std::vector<float> acc;          // [heads, head_dim], unnormalised output
  std::vector<float> running_max;  // [heads]
  std::vector<float> running_sum;  // [heads]
};

// out[h, :] = softmax(q[h, :] . K[0, num_kv)^T * scale) V for `num_heads` consecutive q heads
// that share a kv head, over pages of possibly different sizes: logical page b holds
// page_tokens(b) tokens (at most the scratch's block_size). Pages are the outer loop, so each
// page's K and V rows are read (or decoded) once and then served from L1 to every head of the
// item. `rows_of(b, count)` returns the rows of logical page b, of which the first `count` are in
// the context.
template <typename PageTokens, typename RowsOf>
void AttendMixedPages(int32_t num_kv, int32_t num_heads, int32_t d, float scale, const float* q,
                      float* out, SoftmaxScratch& s, PageTokens page_tokens, RowsOf rows_of) {
  std::fill(s.acc.begin(), s.acc.end(), 0.0f);
  std::fill(s.running_max.begin(), s.running_max.end(), -std::numeric_limits<float>::infinity());
  std::fill(s.running_sum.begin(), s.running_sum.end(), 0.0f);
  for (int32_t start = 0, b = 0; start < num_kv; ++b) {
    const int32_t count = std::min(page_tokens(b), num_kv - start);
    const PageRows rows = rows_of(b, count);
    for (int32_t h = 0; h < num_heads; ++h) {
      UpdateHead(q + h * d, rows.k, rows.v, count, rows.stride, d, scale, s.scores.data(),
                 s.acc.data() + h * d, s.running_max[h], s.running_sum[h]);
    }
    start += count;
  }
  for (int32_t h = 0; h < num_heads; ++h) {
    const float inv_sum = 1.0f / s.running_sum[h];
    for (int32_t i = 0; i < d; ++i) out[h * d + i] = s.acc[h * d + i] * inv_sum;
  }
}

// AttendMixedPages over pages of block_size tokens each.
template <typename RowsOf>
void AttendPages(int32_t num_kv, int32_t block_size, int32_t num_heads, int32_t d, float scale,
                 const float* q, float* out, SoftmaxScratch& s, RowsOf rows_of) {
  AttendMixedPages(num_kv, num_heads, d, scale, q, out, s,
                   [block_size](int32_t) { return block_size; }, rows_of);
}

// The work items of a varlen attention batch: one per (query token, run of heads_per_item q
// heads sharing one kv head). Items go to OpenMP threads dynamically because causal rows differ
// in length.
class AttentionItems {
 public:
  struct Item {
    int32_t seq;
    int32_t kv_head;
    int32_t num_kv;      // keys the token attends to: positions [0, its own]
    int64_t row_offset;  // of its first q head in q / out [tokens, q_heads, d], in floats
  };

  AttentionItems(const int32_t* query_start, const int32_t* context_lens, int32_t num_seqs,
                 int32_t num_q_heads, int32_t num_kv_heads, int32_t d, int threads)
      : query_start_(query_start),
        context_lens_(context_lens),
        num_q_heads_(num_q_heads),
        group_(num_q_heads / num_kv_heads),
        d_(d) {
    const int64_t num_tokens = num_seqs > 0 ? query_start[num_seqs] : 0;
    seq_of_token_.resize(num_tokens);
    for (int32_t s = 0; s < num_seqs; ++s) {
      std::fill(seq_of_token_.begin() + query_start[s], seq_of_token_.begin() + query_start[s + 1],
                s);
    }
    heads_per_item_ = HeadsPerItem(num_tokens, num_q_heads, group_, threads);
    items_per_token_ = num_q_heads / heads_per_item_;
    size_ = num_tokens * items_per_token_;
  }

  int64_t size() const { return size_; }
  int32_t heads_per_item() const { return heads_per_item_; }
  Item Get(int64_t item) const {
    const int64_t t = item / items_per_token_;
    const int32_t first_head = static_cast<int32_t>(item % items_per_token_) * heads_per_item_;
    const int32_t s = seq_of_token_[t];
    const int32_t q_len = query_start_[s + 1] - query_start_[s];
    const int32_t position = context_lens_[s] - q_len + static_cast<int32_t>(t - query_start_[s]);
    return {s, first_head / group_, position + 1, (t * num_q_heads_ + first_head) * d_};
  }

  // fn(item, scratch) for every item, on `threads` OpenMP threads, each with its own scratch
  // from make_scratch().
  template <typename MakeScratch, typename Fn>
  void ForEach(int threads, MakeScratch make_scratch, Fn fn) const {
#pragma omp parallel num_threads(threads)
    {
      auto scratch = make_scratch();
#pragma omp for schedule(dynamic, 1)
      for (int64_t i = 0; i < size_; ++i) fn(Get(i), scratch);
    }
  }

 private:
  const int32_t* query_start_;
  const int32_t* context_lens_;
  int32_t num_q_heads_, group_, d_;
  std::vector<int32_t> seq_of_token_;
  int32_t heads_per_item_ = 1, items_per_token_ = 1;
  int64_t size_ = 0;
};

}  // namespace strata::kernels::cpu
