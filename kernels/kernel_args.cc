#include "kernels/kernel_args.h"

#include <cstdint>

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

// Page ids [0, num_pages) of page_stride bytes each hold a page of every one of `formats`.
absl::Status ValidatePagePool(const char* op, const std::byte* pool, size_t page_stride,
                              int32_t num_pages, std::initializer_list<KvPageFormat> formats) {
  if (num_pages < 0 || (num_pages > 0 && pool == nullptr)) {
    return absl::InvalidArgumentError(StrCat(op, ": bad pool (", num_pages, " pages)"));
  }
  for (const KvPageFormat& f : formats) {
    RETURN_IF_ERROR(f.Validate());
    if (page_stride < f.PageBytes()) {
      return absl::InvalidArgumentError(StrCat(op, ": page stride ", page_stride, " < ",
                                               f.PageBytes(), " bytes of a ", CodecName(f.codec),
                                               " page of ", f.block_size, " tokens"));
    }
  }
  return absl::OkStatus();
}

// The residual pages' format: fp32 or bf16, with the quantized pages' heads and head_dim.
absl::Status ValidateResidualFormat(const char* op, const KvPageFormat& format,
                                    const KvPageFormat& residual) {
  RETURN_IF_ERROR(residual.Validate());
  if ((residual.codec != KvCodec::kF32 && residual.codec != KvCodec::kBf16) ||
      residual.num_kv_heads != format.num_kv_heads || residual.head_dim != format.head_dim) {
    return absl::InvalidArgumentError(StrCat(op, ": residual pages must be fp32 or bf16 with ",
                                             format.num_kv_heads, "x", format.head_dim,
                                             " heads, got ", CodecName(residual.codec), " ",
                                             residual.num_kv_heads, "x", residual.head_dim));
  }
  return absl::OkStatus();
}

absl::Status ValidateQuantWriteArgs(const QuantWriteKvParams& p) {
  RETURN_IF_ERROR(p.format.Validate());
  if (IsKivi(p.format.codec)) {
    return absl::InvalidArgumentError(
        StrCat("QuantWriteKv: ", CodecName(p.format.codec), " pages are written by KiviWriteKv"));
  }
  RETURN_IF_ERROR(ValidatePagePool("QuantWriteKv", p.pool, p.page_stride, p.num_pages, {p.format}));
  if (p.num_tokens < 0 ||
      (p.num_tokens > 0 && (p.k == nullptr || p.v == nullptr || p.slots == nullptr))) {
    return absl::InvalidArgumentError("QuantWriteKv: null k, v or slots");
  }
  return absl::OkStatus();
}

absl::Status ValidateKiviWriteArgs(const KiviWriteKvParams& p) {
  const char* op = "KiviWriteKv";
  RETURN_IF_ERROR(p.format.Validate());
  if (!IsKivi(p.format.codec)) {
    return absl::InvalidArgumentError(
        StrCat(op, ": needs kivi4 or kivi2 pages, got ", CodecName(p.format.codec)));
  }
  RETURN_IF_ERROR(ValidateResidualFormat(op, p.format, p.residual_format));
  RETURN_IF_ERROR(
      ValidatePagePool(op, p.pool, p.page_stride, p.num_pages, {p.format, p.residual_format}));
  if (p.num_seqs < 0 || p.max_blocks_per_seq < 0 ||
      (p.num_seqs > 0 &&
       (p.query_start == nullptr || p.context_lens == nullptr || p.quant_before == nullptr ||
        p.quant_after == nullptr || p.block_tables == nullptr))) {
    return absl::InvalidArgumentError(StrCat(op, ": bad arguments (num_seqs=", p.num_seqs, ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateQuantAttentionArgs(const QuantAttentionParams& p) {
  const char* op = "QuantPagedAttention";
  RETURN_IF_ERROR(ValidateResidualFormat(op, p.format, p.residual_format));
  RETURN_IF_ERROR(
      ValidatePagePool(op, p.pool, p.page_stride, p.num_pages, {p.format, p.residual_format}));
  // fp32 pages are read in place as floats.
  const bool f32_in_place =
      p.format.codec == KvCodec::kF32 || p.residual_format.codec == KvCodec::kF32;
  if (f32_in_place && (reinterpret_cast<uintptr_t>(p.pool) % alignof(float) != 0 ||
                       p.page_stride % alignof(float) != 0)) {
    return absl::InvalidArgumentError(StrCat(op, ": fp32 pages need a 4-byte aligned pool and ",
                                             "stride, got stride ", p.page_stride));
  }
  const int32_t num_kv_heads = p.format.num_kv_heads;
  if (p.q == nullptr || p.out == nullptr || p.query_start == nullptr || p.context_lens == nullptr ||
      p.block_tables == nullptr || p.quant_blocks == nullptr || p.num_seqs < 0 ||
      p.max_blocks_per_seq < 0 || p.num_q_heads <= 0 || p.num_q_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        StrCat(op, ": bad arguments (num_seqs=", p.num_seqs, " q_heads=", p.num_q_heads,
               " kv_heads=", num_kv_heads, ")"));
  }
  return absl::OkStatus();
}

namespace {

bool ValidSampleCols(int64_t cols) { return cols > 0 && cols <= INT32_MAX; }

}  // namespace

absl::Status ValidatePenaltiesArgs(const ApplyPenaltiesParams& p) {
  if (p.rows < 0 || p.num_entries < 0 || !ValidSampleCols(p.cols) ||
      (p.num_entries > 0 &&
       (p.logits == nullptr || p.rows_params == nullptr || p.entries == nullptr))) {
    return absl::InvalidArgumentError(StrCat("ApplyPenalties: bad arguments (rows=", p.rows,
                                             " cols=", p.cols, " entries=", p.num_entries, ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSampleArgs(const SampleParams& p) {
  if (p.rows < 0 || !ValidSampleCols(p.cols) ||
      (p.rows > 0 && (p.logits == nullptr || p.rows_params == nullptr || p.out == nullptr))) {
    return absl::InvalidArgumentError(
        StrCat("Sample: bad arguments (rows=", p.rows, " cols=", p.cols, ")"));
  }
  return absl::OkStatus();
}

}  // namespace strata::kernels
