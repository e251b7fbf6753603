#include "kernels/kernel_args.h"

namespace strata::kernels {

absl::Status ValidateKvPool(const char* op, const KvPoolView& kv) {
  if (kv.pool == nullptr || kv.num_pages <= 0 || kv.block_size <= 0 || kv.num_kv_heads <= 0 ||
      kv.head_dim <= 0) {
    return absl::InvalidArgumentError(
        StrCat(op, ": bad KV pool (pages=", kv.num_pages, " block_size=", kv.block_size,
               " kv_heads=", kv.num_kv_heads, " head_dim=", kv.head_dim, ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateScoresArgs(const AttentionScoresParams& p) {
  RETURN_IF_ERROR(ValidateKvPool("AttentionScores", p.kv));
  const bool null_pointer = p.q == nullptr || p.query_start == nullptr ||
                            p.context_lens == nullptr || p.block_tables == nullptr ||
                            p.score_from == nullptr || p.scores == nullptr;
  if (p.num_seqs < 0 || p.max_blocks_per_seq < 0 || p.max_context < 0 || p.num_q_heads <= 0 ||
      p.num_q_heads % p.kv.num_kv_heads != 0 || (p.num_seqs > 0 && null_pointer)) {
    return absl::InvalidArgumentError(
        StrCat("AttentionScores: bad arguments (num_seqs=", p.num_seqs, " q_heads=",
               p.num_q_heads, " kv_heads=", p.kv.num_kv_heads, " max_context=", p.max_context,
               null_pointer ? ", null pointer)" : ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateCompactArgs(const KvCompactParams& p) {
  RETURN_IF_ERROR(ValidateKvPool("KvCompact", p.kv));
  const bool null_pointer = p.block_tables == nullptr || p.keep == nullptr || p.num_keep == nullptr;
  if (p.num_seqs < 0 || p.max_blocks_per_seq < 0 || p.max_keep < 0 ||
      (p.num_seqs > 0 && null_pointer)) {
    return absl::InvalidArgumentError(StrCat("KvCompact: bad arguments (num_seqs=", p.num_seqs,
                                             " max_blocks_per_seq=", p.max_blocks_per_seq,
                                             " max_keep=", p.max_keep,
                                             null_pointer ? ", null pointer)" : ")"));
  }
  return absl::OkStatus();
}

}  // namespace strata::kernels
