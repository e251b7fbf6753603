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

// Checks the varlen metadata and every page id attention will read; returns the q.k work.
absl::StatusOr<int64_t> ValidateAttention(const PagedAttentionParams& p) {
  RETURN_IF_ERROR(ValidateKvPool("PagedAttention", p.kv));
  if (p.q == nullptr || p.out == nullptr || p.query_start == nullptr || p.context_lens == nullptr ||
      p.block_tables == nullptr || p.num_seqs < 0 || p.num_q_heads <= 0 ||
      p.num_q_heads % p.kv.num_kv_heads != 0) {
    return absl::InvalidArgumentError(StrCat("PagedAttention: bad arguments (num_seqs=", p.num_seqs,
                                             " q_heads=", p.num_q_heads,
                                             " kv_heads=", p.kv.num_kv_heads, ")"));
  }
  int64_t work = 0;
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    ASSIGN_OR_RETURN(const int64_t num_blocks,
                     VarlenBlocks("PagedAttention", p.query_start, p.context_lens, s,
                                  p.kv.block_size, p.max_blocks_per_seq));
    RETURN_IF_ERROR(ValidateBlockPages(
        "PagedAttention", p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq), s,
        num_blocks, p.kv.num_pages));
    work += static_cast<int64_t>(p.query_start[s + 1] - p.query_start[s]) * p.context_lens[s];
  }
  return work * p.num_q_heads * p.kv.head_dim;
}

}  // namespace

absl::Status WriteKv(const WriteKvParams& p, int threads) {
  RETURN_IF_ERROR(ValidateKvPool("WriteKv", p.kv));
  if (p.num_tokens < 0 ||
      (p.num_tokens > 0 && (p.k == nullptr || p.v == nullptr || p.slots == nullptr))) {
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
  const KvPoolView& kv = p.kv;
  const int32_t d = kv.head_dim;
  const AttentionItems items(p.query_start, p.context_lens, p.num_seqs, p.num_q_heads,
                             kv.num_kv_heads, d, threads);
  const int64_t token_stride = static_cast<int64_t>(kv.num_kv_heads) * d;
  const int64_t half_page = kv.block_size * token_stride;  // K (or V) part of one page
  items.ForEach(
      work >= kMinParallelWork ? threads : 1,
      [&] { return SoftmaxScratch(kv.block_size, items.heads_per_item(), d); },
      [&](const AttentionItems::Item& it, SoftmaxScratch& scratch) {
        const int32_t* table = p.block_tables + it.seq * static_cast<int64_t>(p.max_blocks_per_seq);
        AttendPages(it.num_kv, kv.block_size, items.heads_per_item(), d, p.scale,
                    p.q + it.row_offset, p.out + it.row_offset, scratch, [&](int32_t b, int32_t) {
                      const float* k = kv.pool + 2 * half_page * table[b] + it.kv_head * d;
                      return PageRows{k, k + half_page, token_stride};
                    });
      });
  return absl::OkStatus();
}

}  // namespace strata::kernels::cpu
