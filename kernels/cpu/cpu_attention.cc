// Paged KV writes and causal GQA attention over the paged pool (KvPoolView layout:
// [num_pages, 2 (K then V), block_size, num_kv_heads, head_dim], f32).
//
// Attention is a hand-written kernel because no library here knows the paged layout. One work
// item is (query token, a run of q heads sharing one kv head; see HeadsPerItem); items go to
// OpenMP threads dynamically because causal rows differ in length. Each item walks its
// sequence's pages in order with an online softmax in f32 (FlashAttention's running max /
// running sum), one page at a time: the page's scores are computed with AVX-512 dot products,
// exponentiated together, then V rows are accumulated.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_attention_math.h"
#include "kernels/cpu/cpu_kernels.h"

namespace strata::kernels::cpu {
namespace {

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
  int64_t work = 0;
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    ASSIGN_OR_RETURN(const int64_t num_blocks,
                     VarlenBlocks("PagedAttention", p.query_start, p.context_lens, s,
                                  p.kv.block_size, p.max_blocks_per_seq));
    for (int64_t b = 0; b < num_blocks; ++b) {
      const int32_t page = p.block_tables[s * static_cast<int64_t>(p.max_blocks_per_seq) + b];
      if (page < 0 || page >= p.kv.num_pages) {
        return absl::InvalidArgumentError(StrCat("PagedAttention: sequence ", s, " block ", b,
                                                 " maps to page ", page, " of ",
                                                 p.kv.num_pages));
      }
    }
    work += static_cast<int64_t>(p.query_start[s + 1] - p.query_start[s]) * p.context_lens[s];
  }
  return work * p.num_q_heads * p.kv.head_dim;
}

// Per-thread scratch for one work item.
struct AttentionScratch {
  std::vector<float> scores;       // [block_size]
  std::vector<float> acc;          // [heads_per_item, head_dim], unnormalised output
  std::vector<float> running_max;  // [heads_per_item]
  std::vector<float> running_sum;  // [heads_per_item]
};

// out[h, :] = softmax(q[h, :] . K[0, num_kv)^T * scale) V for `num_heads` consecutive q heads
// that share `kv_head`. Pages are the outer loop, so each page's K and V rows are read from
// memory once and then served from L1 to every head of the item.
void AttendHeads(const PagedAttentionParams& p, const int32_t* block_table, int32_t kv_head,
                 int32_t num_kv, int32_t num_heads, const float* q, float* out,
                 AttentionScratch& scratch) {
  const KvPoolView& kv = p.kv;
  const int32_t d = kv.head_dim;
  const int64_t token_stride = static_cast<int64_t>(kv.num_kv_heads) * d;
  const int64_t half_page = kv.block_size * token_stride;  // K (or V) part of one page
  std::fill(scratch.acc.begin(), scratch.acc.end(), 0.0f);
  std::fill(scratch.running_max.begin(), scratch.running_max.end(),
            -std::numeric_limits<float>::infinity());
  std::fill(scratch.running_sum.begin(), scratch.running_sum.end(), 0.0f);
  for (int32_t start = 0, b = 0; start < num_kv; start += kv.block_size, ++b) {
    const int32_t count = std::min(kv.block_size, num_kv - start);
    const float* k = kv.pool + 2 * half_page * block_table[b] + kv_head * d;
    for (int32_t h = 0; h < num_heads; ++h) {
      UpdateHead(q + h * d, k, k + half_page, count, token_stride, d, p.scale,
                 scratch.scores.data(), scratch.acc.data() + h * d, scratch.running_max[h],
                 scratch.running_sum[h]);
    }
  }
  for (int32_t h = 0; h < num_heads; ++h) {
    const float inv_sum = 1.0f / scratch.running_sum[h];
    for (int32_t i = 0; i < d; ++i) out[h * d + i] = scratch.acc[h * d + i] * inv_sum;
  }
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
  const int32_t heads_per_item = HeadsPerItem(num_tokens, p.num_q_heads, group, threads);
  const int32_t items_per_token = p.num_q_heads / heads_per_item;
  const int64_t num_items = num_tokens * items_per_token;
#pragma omp parallel num_threads(work >= kMinParallelWork ? threads : 1)
  {
    AttentionScratch scratch{std::vector<float>(p.kv.block_size),
                             std::vector<float>(int64_t{heads_per_item} * d),
                             std::vector<float>(heads_per_item),
                             std::vector<float>(heads_per_item)};
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < num_items; ++item) {
      const int64_t t = item / items_per_token;
      const int32_t first_head = static_cast<int32_t>(item % items_per_token) * heads_per_item;
      const int32_t s = seq_of_token[t];
      const int32_t q_len = p.query_start[s + 1] - p.query_start[s];
      const int32_t position =
          p.context_lens[s] - q_len + static_cast<int32_t>(t - p.query_start[s]);
      const int64_t offset = (t * p.num_q_heads + first_head) * d;  // [tokens, q_heads, d]
      AttendHeads(p, p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq),
                  first_head / group, position + 1, heads_per_item, p.q + offset,
                  p.out + offset, scratch);
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::kernels::cpu
