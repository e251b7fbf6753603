// Quantized KV writes and causal GQA attention over pages of one KV codec (kernels/kv_codec.h).
//
// Same structure as the f32 kernel (cpu_attention.cc): one work item is (query token, a run of q
// heads sharing one kv head), items go to OpenMP threads dynamically, and each item walks its
// sequence's pages in order with an online softmax in f32. The difference is the page read: a
// quantized page's rows for the item's kv head are decoded into a per-thread [block_size,
// head_dim] tile (through kv_codec's DecodeHeadRows, so the values are exactly DecodePage's),
// which then serves every head of the item; the sequence is never expanded into a full-precision
// copy. fp32 pages and KIVI's f32 residual pages are read in place.
//
// The score / accumulate math is cpu_attention_math.h's, shared with the f32 kernel, so the fp32
// codec through this path equals PagedAttention bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include "kernels/cpu/cpu_attention_math.h"
#include "kernels/cpu/cpu_kernels.h"

namespace strata::kernels::cpu {
namespace {

absl::Status ValidatePools(const QuantAttentionParams& p) {
  RETURN_IF_ERROR(p.format.Validate());
  const KvPageFormat& f = p.format;
  if (p.num_quant_pages < 0 || (p.num_quant_pages > 0 && p.quant_pool == nullptr) ||
      (f.codec == KvCodec::kF32 &&
       reinterpret_cast<uintptr_t>(p.quant_pool) % alignof(float) != 0)) {
    return absl::InvalidArgumentError(StrCat("QuantPagedAttention: bad ", CodecName(f.codec),
                                             " pool (", p.num_quant_pages, " pages)"));
  }
  const KvPoolView& full = p.full;
  if (full.num_pages < 0 ||
      (full.num_pages > 0 &&
       (full.pool == nullptr || full.block_size != f.block_size ||
        full.num_kv_heads != f.num_kv_heads || full.head_dim != f.head_dim))) {
    return absl::InvalidArgumentError(StrCat("QuantPagedAttention: the f32 pool (", full.num_pages,
                                             " pages, block_size ", full.block_size, ", ",
                                             full.num_kv_heads, "x", full.head_dim,
                                             ") does not match the quantized pages"));
  }
  return absl::OkStatus();
}

// Checks one sequence's block table: quantized blocks first, then f32 ones.
absl::Status ValidateBlocks(const QuantAttentionParams& p, int32_t s, int64_t num_blocks) {
  const int32_t num_quant = p.quant_blocks[s];
  if (num_quant < 0 || num_quant > num_blocks) {
    return absl::InvalidArgumentError(StrCat("QuantPagedAttention: sequence ", s, " has ",
                                             num_quant, " quantized blocks of ", num_blocks));
  }
  for (int64_t b = 0; b < num_blocks; ++b) {
    const int32_t page = p.block_tables[s * static_cast<int64_t>(p.max_blocks_per_seq) + b];
    const bool quant = b < num_quant;
    const int32_t num_pages = quant ? p.num_quant_pages : p.full.num_pages;
    if (page < 0 || page >= num_pages) {
      return absl::InvalidArgumentError(StrCat("QuantPagedAttention: sequence ", s, " block ", b,
                                               " maps to ", quant ? "quantized" : "f32", " page ",
                                               page, " of ", num_pages));
    }
  }
  return absl::OkStatus();
}

// Checks the varlen metadata and every page id attention will read; returns the q.k work.
absl::StatusOr<int64_t> ValidateQuantAttention(const QuantAttentionParams& p) {
  RETURN_IF_ERROR(ValidatePools(p));
  const int32_t num_kv_heads = p.format.num_kv_heads;
  if (p.q == nullptr || p.out == nullptr || p.query_start == nullptr || p.context_lens == nullptr ||
      p.block_tables == nullptr || p.quant_blocks == nullptr || p.num_seqs < 0 ||
      p.max_blocks_per_seq < 0 || p.num_q_heads <= 0 || p.num_q_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        StrCat("QuantPagedAttention: bad arguments (num_seqs=", p.num_seqs,
               " q_heads=", p.num_q_heads, " kv_heads=", num_kv_heads, ")"));
  }
  int64_t work = 0;
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    ASSIGN_OR_RETURN(const int64_t num_blocks,
                     VarlenBlocks("QuantPagedAttention", p.query_start, p.context_lens, s,
                                  p.format.block_size, p.max_blocks_per_seq));
    RETURN_IF_ERROR(ValidateBlocks(p, s, num_blocks));
    work += static_cast<int64_t>(p.query_start[s + 1] - p.query_start[s]) * p.context_lens[s];
  }
  return work * p.num_q_heads * p.format.head_dim;
}

// Per-thread scratch: the softmax state and one page's decoded K and V rows of one kv head.
struct QuantScratch {
  QuantScratch(const KvPageFormat& f, int32_t heads)
      : softmax(f.block_size, heads, f.head_dim),
        k_tile(static_cast<size_t>(f.block_size) * f.head_dim),
        v_tile(static_cast<size_t>(f.block_size) * f.head_dim) {}
  SoftmaxScratch softmax;
  std::vector<float> k_tile;  // [block_size, head_dim]
  std::vector<float> v_tile;  // [block_size, head_dim]
};

// Logical block `block` (page id `page`) of a sequence whose first `num_quant` blocks are
// quantized: f32 pages are read in place, quantized ones decoded into the scratch tiles.
PageRows ReadPage(const QuantAttentionParams& p, int32_t block, int32_t num_quant, int32_t page,
                  int32_t kv_head, int32_t count, QuantScratch& scratch) {
  const KvPageFormat& f = p.format;
  const int64_t token_stride = static_cast<int64_t>(f.num_kv_heads) * f.head_dim;
  const int64_t half_page = f.block_size * token_stride;
  if (block >= num_quant) {
    const float* k = p.full.pool + 2 * half_page * page + kv_head * f.head_dim;
    return {k, k + half_page, token_stride};
  }
  const std::byte* bytes = p.quant_pool + f.PageBytes() * static_cast<size_t>(page);
  if (f.codec == KvCodec::kF32) {
    const float* k = reinterpret_cast<const float*>(bytes) + kv_head * f.head_dim;
    return {k, k + half_page, token_stride};
  }
  DecodeHeadRows(f, bytes, kv_head, count, scratch.k_tile.data(), scratch.v_tile.data());
  return {scratch.k_tile.data(), scratch.v_tile.data(), f.head_dim};
}

bool IsPerTokenCodec(KvCodec codec) { return codec != KvCodec::kKivi4 && codec != KvCodec::kKivi2; }

}  // namespace

absl::Status QuantWriteKv(const QuantWriteKvParams& p, int threads) {
  RETURN_IF_ERROR(p.format.Validate());
  const KvPageFormat& f = p.format;
  if (!IsPerTokenCodec(f.codec)) {
    return absl::InvalidArgumentError(
        StrCat("QuantWriteKv: ", CodecName(f.codec), " pages are written by EncodeKiviGroup"));
  }
  if (p.quant_pool == nullptr || p.num_quant_pages <= 0 || p.num_tokens < 0 ||
      (p.num_tokens > 0 && (p.k == nullptr || p.v == nullptr || p.slots == nullptr))) {
    return absl::InvalidArgumentError("QuantWriteKv: null pool, k, v or slots");
  }
  const int64_t num_slots = static_cast<int64_t>(p.num_quant_pages) * f.block_size;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    if (p.slots[t] < 0 || p.slots[t] >= num_slots) {
      return absl::InvalidArgumentError(StrCat("QuantWriteKv: slot ", p.slots[t], " of token ", t,
                                               " is outside the pool's ", num_slots, " slots"));
    }
  }
  const int64_t token_floats = static_cast<int64_t>(f.num_kv_heads) * f.head_dim;
  const size_t page_bytes = f.PageBytes();
  const bool parallel = p.num_tokens * token_floats >= kMinParallelWork;
  // Tokens sharing a page write disjoint rows and scales, so tokens run in parallel.
#pragma omp parallel for num_threads(parallel ? threads : 1)
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int64_t page = p.slots[t] / f.block_size;
    const int32_t offset = static_cast<int32_t>(p.slots[t] % f.block_size);
    const std::span<std::byte> bytes(p.quant_pool + page * page_bytes, page_bytes);
    // Cannot fail: the format, codec and slot were checked above.
    CHECK_OK(EncodeTokens(f, bytes, offset, 1, p.k + t * token_floats, p.v + t * token_floats));
  }
  return absl::OkStatus();
}

absl::Status QuantPagedAttention(const QuantAttentionParams& p, int threads) {
  ASSIGN_OR_RETURN(const int64_t work, ValidateQuantAttention(p));
  const KvPageFormat& f = p.format;
  const AttentionItems items(p.query_start, p.context_lens, p.num_seqs, p.num_q_heads,
                             f.num_kv_heads, f.head_dim, threads);
  items.ForEach(
      work >= kMinParallelWork ? threads : 1,
      [&] { return QuantScratch(f, items.heads_per_item()); },
      [&](const AttentionItems::Item& it, QuantScratch& scratch) {
        const int32_t* table = p.block_tables + it.seq * static_cast<int64_t>(p.max_blocks_per_seq);
        const int32_t num_quant = p.quant_blocks[it.seq];
        AttendPages(it.num_kv, f.block_size, items.heads_per_item(), f.head_dim, p.scale,
                    p.q + it.row_offset, p.out + it.row_offset, scratch.softmax,
                    [&](int32_t b, int32_t count) {
                      return ReadPage(p, b, num_quant, table[b], it.kv_head, count, scratch);
                    });
      });
  return absl::OkStatus();
}

}  // namespace strata::kernels::cpu
