// The CPU sparsity kernels over the f32 paged KV pool (KvPoolView layout: [num_pages, 2 (K then
// V), block_size, num_kv_heads, head_dim]), used by H2O / SnapKV token selection:
//   - AttentionScores: the causal softmax probabilities of chosen query rows, summed over rows
//     and over the q heads of each kv head, per (sequence, kv head, KV position).
//   - KvCompact: moves each (sequence, kv head)'s kept tokens to the front of the sequence's
//     pages, in place.
//
// Both run one OpenMP work item per (sequence, kv head). An item owns its row of `scores` (or
// its kv head's slice of every token of its sequence's pages), so no two items write the same
// memory. AttentionScores computes q.k with cpu_attention_math.h's ComputeScores and e^x with
// ExpInPlace (what PagedAttention uses), as an exact two-pass softmax per row: logits of the
// whole causal row for every q head of the group (each page's K rows read once per row), then
// max, exp, normalise, add. Both validate every piece of metadata they will follow before they
// write anything.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_attention_math.h"
#include "kernels/cpu/cpu_kernels.h"

namespace strata::kernels::cpu {
namespace {

constexpr char kScoresOp[] = "AttentionScores";
constexpr char kCompactOp[] = "KvCompact";

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Where a sequence's tokens live: its block-table row and the pool's strides (in floats).
struct SeqPages {
  SeqPages(const KvPoolView& kv, const int32_t* block_tables, int32_t max_blocks_per_seq, int32_t s)
      : kv(kv),
        table(block_tables + s * static_cast<int64_t>(max_blocks_per_seq)),
        token_stride(static_cast<int64_t>(kv.num_kv_heads) * kv.head_dim),
        half_page(kv.block_size * token_stride) {}

  // The K row of logical token `token` for kv head `head`; its V row is half_page floats on.
  float* K(int64_t token, int32_t head) const {
    return kv.pool + 2 * half_page * table[token / kv.block_size] +
           (token % kv.block_size) * token_stride + static_cast<int64_t>(head) * kv.head_dim;
  }

  const KvPoolView& kv;
  const int32_t* table;
  int64_t token_stride;
  int64_t half_page;  // the K (or V) part of one page
};

// ---- AttentionScores --------------------------------------------------------------------------

// Sequence s: varlen metadata, context <= max_context, score_from inside its rows, page ids.
// Returns its q.k work.
absl::StatusOr<int64_t> ValidateScoresSeq(const AttentionScoresParams& p, int32_t s) {
  ASSIGN_OR_RETURN(const int64_t num_blocks,
                   VarlenBlocks(kScoresOp, p.query_start, p.context_lens, s, p.kv.block_size,
                                p.max_blocks_per_seq));
  if (p.context_lens[s] > p.max_context) {
    return absl::InvalidArgumentError(StrCat(kScoresOp, ": sequence ", s, " has context ",
                                             p.context_lens[s], " > max_context ", p.max_context));
  }
  const int32_t from = p.score_from[s];
  if (from < p.query_start[s] || from > p.query_start[s + 1]) {
    return absl::InvalidArgumentError(StrCat(kScoresOp, ": sequence ", s, " scores from row ", from,
                                             ", outside its rows [", p.query_start[s], ", ",
                                             p.query_start[s + 1], "]"));
  }
  const int32_t* row = p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq);
  RETURN_IF_ERROR(ValidateBlockPages(kScoresOp, row, s, num_blocks, p.kv.num_pages));
  return static_cast<int64_t>(p.query_start[s + 1] - from) * p.context_lens[s];
}

// Checks everything the kernel will follow; returns its work (q.k multiply-adds plus zeroing).
absl::StatusOr<int64_t> ValidateScores(const AttentionScoresParams& p) {
  RETURN_IF_ERROR(ValidateScoresArgs(p));
  int64_t work = 0;
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    ASSIGN_OR_RETURN(const int64_t seq_work, ValidateScoresSeq(p, s));
    work += seq_work;
  }
  return work * p.num_q_heads * p.kv.head_dim +
         static_cast<int64_t>(p.num_seqs) * p.kv.num_kv_heads * p.max_context;
}

// Per-thread scratch: logits of one row for every q head of a group, and their maxima.
struct ScoresScratch {
  ScoresScratch(int32_t group, int32_t max_context)
      : logits(static_cast<int64_t>(group) * max_context), row_max(group) {}
  std::vector<float> logits;   // [group, num_kv] for the current row
  std::vector<float> row_max;  // [group]
};

// x[j] = e^(x[j] - max) / sum_k e^(x[k] - max) for j < n, where max = max_j x[j].
void SoftmaxInPlace(float* x, int32_t n, float max) {
  for (int32_t j = 0; j < n; ++j) x[j] -= max;
  ExpInPlace(x, n);
  float sum = 0.0f;
  for (int32_t j = 0; j < n; ++j) sum += x[j];
  const float inv_sum = 1.0f / sum;
  for (int32_t j = 0; j < n; ++j) x[j] *= inv_sum;
}

// out[j] += softmax(q_h . K[0, num_kv)^T * scale)[j] summed over the `group` q heads of kv head
// `kv_head` in query row `row`.
void ScoreRow(const AttentionScoresParams& p, const SeqPages& pages, int32_t kv_head, int64_t row,
              int32_t num_kv, ScoresScratch& scratch, float* out) {
  const int32_t d = p.kv.head_dim, bs = p.kv.block_size;
  const int32_t group = p.num_q_heads / p.kv.num_kv_heads;
  const float* q = p.q + (row * p.num_q_heads + static_cast<int64_t>(kv_head) * group) * d;
  float* logits = scratch.logits.data();
  std::fill(scratch.row_max.begin(), scratch.row_max.end(),
            -std::numeric_limits<float>::infinity());
  for (int32_t start = 0; start < num_kv; start += bs) {
    const int32_t count = std::min(bs, num_kv - start);
    const float* k = pages.K(start, kv_head);
    for (int32_t h = 0; h < group; ++h) {
      const float page_max =
          ComputeScores(q + static_cast<int64_t>(h) * d, k, count, pages.token_stride, d, p.scale,
                        logits + static_cast<int64_t>(h) * num_kv + start);
      scratch.row_max[h] = std::max(scratch.row_max[h], page_max);
    }
  }
  for (int32_t h = 0; h < group; ++h) {
    float* probs = logits + static_cast<int64_t>(h) * num_kv;
    SoftmaxInPlace(probs, num_kv, scratch.row_max[h]);
    for (int32_t j = 0; j < num_kv; ++j) out[j] += probs[j];
  }
}

// Work item (s, kv_head): zeroes its scores row, then adds every scored row of s.
void ScoreItem(const AttentionScoresParams& p, int32_t s, int32_t kv_head, ScoresScratch& scratch) {
  float* out = p.scores + (static_cast<int64_t>(s) * p.kv.num_kv_heads + kv_head) * p.max_context;
  std::fill(out, out + p.max_context, 0.0f);
  const SeqPages pages(p.kv, p.block_tables, p.max_blocks_per_seq, s);
  const int32_t first = p.query_start[s], end = p.query_start[s + 1];
  const int32_t first_position = p.context_lens[s] - (end - first);  // of row `first`
  for (int32_t row = p.score_from[s]; row < end; ++row) {
    ScoreRow(p, pages, kv_head, row, first_position + (row - first) + 1, scratch, out);
  }
}

// ---- KvCompact --------------------------------------------------------------------------------

// keep[0, n) is strictly ascending within [0, capacity). Returns the tokens it spans
// (keep[n-1] + 1, 0 when empty).
absl::StatusOr<int64_t> ValidateKeepSet(const int32_t* keep, int32_t n, int64_t capacity, int32_t s,
                                        int32_t h) {
  for (int32_t i = 0; i < n; ++i) {
    const int64_t floor = i == 0 ? 0 : int64_t{keep[i - 1]} + 1;
    if (keep[i] < floor || keep[i] >= capacity) {
      return absl::InvalidArgumentError(StrCat(
          kCompactOp, ": sequence ", s, " kv head ", h, " keeps token ", keep[i], " at index ", i,
          "; kept tokens must be strictly ascending in [0, ", capacity, ")"));
    }
  }
  return n == 0 ? 0 : int64_t{keep[n - 1]} + 1;
}

// Sequence s: num_keep fits, every kv head's keep set is valid, and the pages the moves touch
// exist. Returns the number of blocks the moves touch (read or written).
absl::StatusOr<int64_t> ValidateCompactSeq(const KvCompactParams& p, int32_t s) {
  const int32_t n = p.num_keep[s];
  const int64_t capacity = static_cast<int64_t>(p.max_blocks_per_seq) * p.kv.block_size;
  if (n < 0 || n > p.max_keep || n > capacity) {
    return absl::InvalidArgumentError(StrCat(kCompactOp, ": sequence ", s, " keeps ", n,
                                             " tokens; max_keep ", p.max_keep, ", room for ",
                                             capacity));
  }
  int64_t tokens = 0;
  for (int32_t h = 0; h < p.kv.num_kv_heads; ++h) {
    const int32_t* keep = p.keep + (static_cast<int64_t>(s) * p.kv.num_kv_heads + h) * p.max_keep;
    ASSIGN_OR_RETURN(const int64_t spanned, ValidateKeepSet(keep, n, capacity, s, h));
    tokens = std::max(tokens, spanned);
  }
  const int64_t num_blocks = CeilDiv(tokens, p.kv.block_size);
  const int32_t* row = p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq);
  RETURN_IF_ERROR(ValidateBlockPages(kCompactOp, row, s, num_blocks, p.kv.num_pages));
  return num_blocks;
}

// A page the call may write (one of a sequence's first ceil(num_keep / block_size) blocks) is
// reached through no other block-table entry the call touches: otherwise work items would race
// on it, or a move's source and destination could overlap.
absl::Status ValidateWrittenPagesUnshared(const KvCompactParams& p,
                                          const std::vector<int64_t>& touched_blocks) {
  std::vector<uint8_t> uses(p.kv.num_pages, 0);  // saturates at 2
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    const int32_t* row = p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq);
    for (int64_t b = 0; b < touched_blocks[s]; ++b) {
      uses[row[b]] = static_cast<uint8_t>(std::min(uses[row[b]] + 1, 2));
    }
  }
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    const int32_t* row = p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq);
    for (int64_t b = 0; b < CeilDiv(p.num_keep[s], p.kv.block_size); ++b) {
      if (uses[row[b]] > 1) {
        return absl::InvalidArgumentError(StrCat(kCompactOp, ": page ", row[b], " (sequence ", s,
                                                 " block ", b, ") is compacted into but also ",
                                                 "reached through another block-table entry"));
      }
    }
  }
  return absl::OkStatus();
}

// Checks everything before anything moves; returns the floats the moves copy.
absl::StatusOr<int64_t> ValidateCompact(const KvCompactParams& p) {
  RETURN_IF_ERROR(ValidateCompactArgs(p));
  std::vector<int64_t> touched_blocks(p.num_seqs);
  int64_t kept = 0;
  for (int32_t s = 0; s < p.num_seqs; ++s) {
    ASSIGN_OR_RETURN(touched_blocks[s], ValidateCompactSeq(p, s));
    kept += p.num_keep[s];
  }
  RETURN_IF_ERROR(ValidateWrittenPagesUnshared(p, touched_blocks));
  return kept * 2 * p.kv.num_kv_heads * p.kv.head_dim;
}

// Work item (s, h): K and V of kept token keep[i] go to token i, in ascending i. Every source is
// >= its destination and every later source is > it, so no move reads a row already written.
void CompactItem(const KvCompactParams& p, int32_t s, int32_t h) {
  const SeqPages pages(p.kv, p.block_tables, p.max_blocks_per_seq, s);
  const int32_t* keep = p.keep + (static_cast<int64_t>(s) * p.kv.num_kv_heads + h) * p.max_keep;
  const size_t row_bytes = static_cast<size_t>(p.kv.head_dim) * sizeof(float);
  for (int32_t i = 0; i < p.num_keep[s]; ++i) {
    if (keep[i] == i) continue;
    float* dst = pages.K(i, h);
    const float* src = pages.K(keep[i], h);
    std::memcpy(dst, src, row_bytes);
    std::memcpy(dst + pages.half_page, src + pages.half_page, row_bytes);
  }
}

}  // namespace

absl::Status AttentionScores(const AttentionScoresParams& p, int threads) {
  ASSIGN_OR_RETURN(const int64_t work, ValidateScores(p));
  int32_t longest = 0;
  for (int32_t s = 0; s < p.num_seqs; ++s) longest = std::max(longest, p.context_lens[s]);
  const int32_t kv_heads = p.kv.num_kv_heads, group = p.num_q_heads / kv_heads;
  const int64_t num_items = static_cast<int64_t>(p.num_seqs) * kv_heads;
#pragma omp parallel num_threads(work >= kMinParallelWork ? threads : 1)
  {
    ScoresScratch scratch(group, longest);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < num_items; ++item) {
      ScoreItem(p, static_cast<int32_t>(item / kv_heads), static_cast<int32_t>(item % kv_heads),
                scratch);
    }
  }
  return absl::OkStatus();
}

absl::Status KvCompact(const KvCompactParams& p, int threads) {
  ASSIGN_OR_RETURN(const int64_t work, ValidateCompact(p));
  const int32_t kv_heads = p.kv.num_kv_heads;
  const int64_t num_items = static_cast<int64_t>(p.num_seqs) * kv_heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(work >= kMinParallelWork ? threads : 1)
  for (int64_t item = 0; item < num_items; ++item) {
    CompactItem(p, static_cast<int32_t>(item / kv_heads), static_cast<int32_t>(item % kv_heads));
  }
  return absl::OkStatus();
}

}  // namespace strata::kernels::cpu
