// Quantized KV writes and causal GQA attention over pages of one KV codec (kernels/kv_codec.h),
// all in one pool of fixed-stride pages.
//
// Attention has the structure of the f32 kernel (cpu_attention.cc): one work item is (query
// token, a run of q heads sharing one kv head), items go to OpenMP threads dynamically, and each
// item walks its sequence's pages in order with an online softmax in f32. The difference is the
// page read: a sequence's first quant_blocks pages are in `format`, the pages after them are
// residual pages in `residual_format` (with their own block size), and a non-fp32 page's rows
// for the item's kv head are decoded into a per-thread [block_size, head_dim] tile (through
// kv_codec's DecodeHeadRows, so the values are exactly DecodePage's), which then serves every
// head of the item; the sequence is never expanded into a full-precision copy. fp32 pages are
// read in place.
//
// The score / accumulate math is cpu_attention_math.h's, shared with the f32 kernel, so the fp32
// codec through this path equals PagedAttention bit for bit (with the same page boundaries).
//
// KiviWriteKv folds a KIVI sequence's residual: it gathers the old residual rows (decoded to
// f32), appends the step's new rows, encodes every completed 32-token group into its KIVI page
// and rewrites the remaining rows into the residual pages from offset 0.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <span>
#include <vector>

#include "kernels/cpu/cpu_attention_math.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/kv_codec_math.h"

namespace strata::kernels::cpu {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Entries [begin, end) of a block-table row name pages of the pool.
absl::Status ValidateEntries(const char* op, const int32_t* row, int32_t s, int64_t begin,
                             int64_t end, int32_t max_blocks_per_seq, int32_t num_pages) {
  if (end > max_blocks_per_seq) {
    return absl::InvalidArgumentError(StrCat(op, ": sequence ", s, " needs ", end,
                                             " block-table entries, has ", max_blocks_per_seq));
  }
  for (int64_t b = begin; b < end; ++b) {
    if (row[b] < 0 || row[b] >= num_pages) {
      return absl::InvalidArgumentError(
          StrCat(op, ": sequence ", s, " block ", b, " maps to page ", row[b], " of ", num_pages));
    }
  }
  return absl::OkStatus();
}

// Sequence s of a varlen batch: its query rows fit its context. Returns its number of new rows.
absl::StatusOr<int32_t> QueryRows(const char* op, const int32_t* query_start,
                                  const int32_t* context_lens, int32_t s) {
  if (s == 0 && query_start[0] != 0) {
    return absl::InvalidArgumentError(StrCat(op, ": query_start[0] must be 0"));
  }
  const int32_t q_len = query_start[s + 1] - query_start[s];
  if (q_len < 0 || context_lens[s] < q_len) {
    return absl::InvalidArgumentError(StrCat(op, ": sequence ", s, " has ", q_len,
                                             " query tokens and context ", context_lens[s]));
  }
  return q_len;
}

// ---- QuantPagedAttention --------------------------------------------------------------------

// Sequence s: quant_blocks[s] pages in `format` (a KIVI sequence's last one may end with the
// context at a group boundary), then enough residual pages for the rest of the context.
absl::Status ValidateSequenceBlocks(const QuantAttentionParams& p, int32_t s) {
  const char* op = "QuantPagedAttention";
  const int64_t ctx = p.context_lens[s], bs = p.format.block_size;
  const int64_t num_quant = p.quant_blocks[s];
  const int64_t quant_tokens = std::min(num_quant * bs, ctx);
  if (num_quant < 0 || num_quant > CeilDiv(ctx, bs) ||
      (IsKivi(p.format.codec) && quant_tokens % kKiviGroupTokens != 0)) {
    return absl::InvalidArgumentError(StrCat(op, ": sequence ", s, " has ", num_quant, " ",
                                             CodecName(p.format.codec), " blocks of ", bs,
                                             " tokens for a context of ", ctx));
  }
  const int64_t num_residual = CeilDiv(ctx - quant_tokens, p.residual_format.block_size);
  const int32_t* row = p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq);
  return ValidateEntries(op, row, s, 0, num_quant + num_residual, p.max_blocks_per_seq,
                         p.num_pages);
}

// Checks the varlen metadata and every page id attention will read; returns the q.k work.
absl::StatusOr<int64_t> ValidateQuantAttention(const QuantAttentionParams& p) {
  RETURN_IF_ERROR(ValidateQuantAttentionArgs(p));
  int64_t work = 0;
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    ASSIGN_OR_RETURN(const int32_t q_len,
                     QueryRows("QuantPagedAttention", p.query_start, p.context_lens, s));
    RETURN_IF_ERROR(ValidateSequenceBlocks(p, s));
    work += static_cast<int64_t>(q_len) * p.context_lens[s];
  }
  return work * p.num_q_heads * p.format.head_dim;
}

// Per-thread scratch: the softmax state and one page's decoded K and V rows of one kv head.
struct QuantScratch {
  QuantScratch(int32_t max_block_size, int32_t heads, int32_t d)
      : softmax(max_block_size, heads, d),
        k_tile(static_cast<size_t>(max_block_size) * d),
        v_tile(static_cast<size_t>(max_block_size) * d) {}
  SoftmaxScratch softmax;
  std::vector<float> k_tile;  // [max_block_size, head_dim]
  std::vector<float> v_tile;  // [max_block_size, head_dim]
};

// Rows [0, count) of one kv head of page `page` in format f: fp32 pages in place, others
// decoded into the scratch tiles.
PageRows ReadPage(const QuantAttentionParams& p, const KvPageFormat& f, int32_t page,
                  int32_t kv_head, int32_t count, QuantScratch& scratch) {
  const std::byte* bytes = p.pool + p.page_stride * static_cast<size_t>(page);
  if (f.codec == KvCodec::kF32) {
    const int64_t token_stride = static_cast<int64_t>(f.num_kv_heads) * f.head_dim;
    const float* k = reinterpret_cast<const float*>(bytes) + kv_head * f.head_dim;
    return {k, k + f.block_size * token_stride, token_stride};
  }
  DecodeHeadRows(f, bytes, kv_head, count, scratch.k_tile.data(), scratch.v_tile.data());
  return {scratch.k_tile.data(), scratch.v_tile.data(), f.head_dim};
}

// ---- KiviWriteKv ----------------------------------------------------------------------------

using codec::KiviStep;

// Checks sequence s's quant counts and every page id its step reads or writes.
absl::StatusOr<KiviStep> KiviStepOf(const KiviWriteKvParams& p, int32_t s) {
  const char* op = "KiviWriteKv";
  ASSIGN_OR_RETURN(const int32_t q_len, QueryRows(op, p.query_start, p.context_lens, s));
  KiviStep st;
  if (!codec::MakeKiviStep(p, s, q_len, st)) {
    return absl::InvalidArgumentError(StrCat(op, ": sequence ", s, " quantized ", st.quant_before,
                                             " -> ", st.quant_after, " tokens with ", st.n_old,
                                             " -> ", st.context_len, " (multiples of 32, ",
                                             "before <= old tokens, after <= context)"));
  }
  const int64_t bs = p.format.block_size;
  RETURN_IF_ERROR(ValidateEntries(op, st.table, s, st.quant_before / bs, st.residual_entry,
                                  p.max_blocks_per_seq, p.num_pages));
  RETURN_IF_ERROR(ValidateEntries(op, st.table, s, st.residual_entry,
                                  st.residual_entry + st.num_residual, p.max_blocks_per_seq,
                                  p.num_pages));
  return st;
}

std::span<std::byte> PoolPage(const KiviWriteKvParams& p, const KvPageFormat& f, int32_t page) {
  return {p.pool + p.page_stride * static_cast<size_t>(page), f.PageBytes()};
}

// The f32 rows of a step's tokens [quant_before, context_len): the old residual ones (decoded
// from the residual pages by Gather) and the step's new ones (read in place from k, v).
class StepRows {
 public:
  StepRows(const KiviWriteKvParams& p, const KiviStep& st)
      : p_(p),
        st_(st),
        token_floats_(static_cast<int64_t>(p.format.num_kv_heads) * p.format.head_dim) {}

  // Decodes the old residual rows, page by page, before anything overwrites their pages.
  void Gather() {
    const KvPageFormat& r = p_.residual_format;
    const int32_t num_old = st_.n_old - st_.quant_before;
    old_k_.resize(num_old * token_floats_);
    old_v_.resize(num_old * token_floats_);
    for (int32_t i = 0; i < num_old; i += r.block_size) {
      const int32_t page = st_.table[st_.residual_entry + i / r.block_size];
      // Cannot fail: formats, counts and page ids were checked.
      CHECK_OK(DecodePage(r, PoolPage(p_, r, page), std::min(r.block_size, num_old - i),
                          old_k_.data() + i * token_floats_, old_v_.data() + i * token_floats_));
    }
  }

  // REQUIRES: quant_before <= t < context_len, and Gather() ran if t < n_old.
  const float* K(int32_t t) const { return Row(old_k_, p_.k, t); }
  const float* V(int32_t t) const { return Row(old_v_, p_.v, t); }
  int64_t token_floats() const { return token_floats_; }

 private:
  const float* Row(const std::vector<float>& old, const float* fresh, int32_t t) const {
    if (t < st_.n_old) return old.data() + (t - st_.quant_before) * token_floats_;
    return fresh + (st_.first_row + t - st_.n_old) * token_floats_;
  }

  const KiviWriteKvParams& p_;
  const KiviStep& st_;
  int64_t token_floats_;
  std::vector<float> old_k_, old_v_;  // [n_old - quant_before, heads, head_dim]
};

// Encodes the groups [quant_before, quant_after) into their KIVI pages: group g goes to table
// entry g / B at token g % B.
void FoldGroups(const KiviWriteKvParams& p, const KiviStep& st, const StepRows& rows) {
  const KvPageFormat& f = p.format;
  const int64_t tf = rows.token_floats();
  std::vector<float> k(kKiviGroupTokens * tf), v(kKiviGroupTokens * tf);
  for (int32_t g = st.quant_before; g < st.quant_after; g += kKiviGroupTokens) {
    for (int32_t t = 0; t < kKiviGroupTokens; ++t) {
      std::copy_n(rows.K(g + t), tf, k.data() + t * tf);
      std::copy_n(rows.V(g + t), tf, v.data() + t * tf);
    }
    CHECK_OK(EncodeKiviGroup(f, PoolPage(p, f, st.table[g / f.block_size]), g % f.block_size,
                             k.data(), v.data()));
  }
}

// Writes tokens [first, context_len) into the residual pages, token quant_after at offset 0.
void WriteResidual(const KiviWriteKvParams& p, const KiviStep& st, const StepRows& rows,
                   int32_t first) {
  const KvPageFormat& r = p.residual_format;
  for (int32_t t = first; t < st.context_len; ++t) {
    const int32_t i = t - st.quant_after;
    const int32_t page = st.table[st.residual_entry + i / r.block_size];
    CHECK_OK(EncodeTokens(r, PoolPage(p, r, page), i % r.block_size, 1, rows.K(t), rows.V(t)));
  }
}

void RunKiviStep(const KiviWriteKvParams& p, const KiviStep& st) {
  StepRows rows(p, st);
  if (st.quant_after == st.quant_before) {  // nothing folds: the old residual stays in place
    WriteResidual(p, st, rows, st.n_old);
    return;
  }
  rows.Gather();
  FoldGroups(p, st, rows);
  WriteResidual(p, st, rows, st.quant_after);
}

}  // namespace

absl::Status QuantWriteKv(const QuantWriteKvParams& p, int threads) {
  RETURN_IF_ERROR(ValidateQuantWriteArgs(p));
  const KvPageFormat& f = p.format;
  const int64_t num_slots = static_cast<int64_t>(p.num_pages) * f.block_size;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    if (p.slots[t] < 0 || p.slots[t] >= num_slots) {
      return absl::InvalidArgumentError(StrCat("QuantWriteKv: slot ", p.slots[t], " of token ", t,
                                               " is outside the pool's ", num_slots, " slots"));
    }
  }
  const int64_t token_floats = static_cast<int64_t>(f.num_kv_heads) * f.head_dim;
  const bool parallel = p.num_tokens * token_floats >= kMinParallelWork;
  // Tokens sharing a page write disjoint rows and scales, so tokens run in parallel.
#pragma omp parallel for num_threads(parallel ? threads : 1)
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int64_t page = p.slots[t] / f.block_size;
    const int32_t offset = static_cast<int32_t>(p.slots[t] % f.block_size);
    const std::span<std::byte> bytes(p.pool + p.page_stride * page, f.PageBytes());
    // Cannot fail: the format, codec and slot were checked above.
    CHECK_OK(EncodeTokens(f, bytes, offset, 1, p.k + t * token_floats, p.v + t * token_floats));
  }
  return absl::OkStatus();
}

absl::Status KiviWriteKv(const KiviWriteKvParams& p, int threads) {
  RETURN_IF_ERROR(ValidateKiviWriteArgs(p));
  std::vector<KiviStep> steps;
  steps.reserve(p.num_seqs);
  int64_t work = 0;  // rows written
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    ASSIGN_OR_RETURN(KiviStep st, KiviStepOf(p, s));
    work += st.context_len - st.quant_before;
    steps.push_back(st);
  }
  if (p.num_seqs > 0 && p.query_start[p.num_seqs] > 0 && (p.k == nullptr || p.v == nullptr)) {
    return absl::InvalidArgumentError("KiviWriteKv: null k or v");
  }
  const int64_t token_floats = static_cast<int64_t>(p.format.num_kv_heads) * p.format.head_dim;
  const bool parallel = work * token_floats >= kMinParallelWork;
  // Sequences write disjoint pages.
#pragma omp parallel for schedule(dynamic, 1) num_threads(parallel ? threads : 1)
  for (int32_t s = 0; s < p.num_seqs; ++s) RunKiviStep(p, steps[s]);
  return absl::OkStatus();
}

absl::Status QuantPagedAttention(const QuantAttentionParams& p, int threads) {
  ASSIGN_OR_RETURN(const int64_t work, ValidateQuantAttention(p));
  const KvPageFormat& f = p.format;
  const KvPageFormat& r = p.residual_format;
  const AttentionItems items(p.query_start, p.context_lens, p.num_seqs, p.num_q_heads,
                             f.num_kv_heads, f.head_dim, threads);
  const int32_t max_block_size = std::max(f.block_size, r.block_size);
  items.ForEach(
      work >= kMinParallelWork ? threads : 1,
      [&] { return QuantScratch(max_block_size, items.heads_per_item(), f.head_dim); },
      [&](const AttentionItems::Item& it, QuantScratch& scratch) {
        const int32_t* table = p.block_tables + it.seq * static_cast<int64_t>(p.max_blocks_per_seq);
        const int32_t num_quant = p.quant_blocks[it.seq];
        AttendMixedPages(
            it.num_kv, items.heads_per_item(), f.head_dim, p.scale, p.q + it.row_offset,
            p.out + it.row_offset, scratch.softmax,
            [&](int32_t b) { return b < num_quant ? f.block_size : r.block_size; },
            [&](int32_t b, int32_t count) {
              return ReadPage(p, b < num_quant ? f : r, table[b], it.kv_head, count, scratch);
            });
      });
  return absl::OkStatus();
}

}  // namespace strata::kernels::cpu
