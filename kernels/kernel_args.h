// Argument checks that need only the parameter structs (no reads of the arrays they point to),
// shared by the CPU and CUDA backends so both reject the same calls with the same message. The
// CPU twins go on to check the arrays' contents (page ids, varlen metadata), which on CUDA live
// in device memory where the kernels skip what is out of range instead. Any thread.
#pragma once

#include <initializer_list>

#include "common/status.h"
#include "kernels/device.h"

namespace strata::kernels {

// An f32 KV pool with pages, tokens, heads and a head dim; InvalidArgument naming `op` otherwise.
absl::Status ValidateKvPool(const char* op, const KvPoolView& kv);
// AttentionScores: a valid pool, non-negative sizes, GQA head counts, no null array.
absl::Status ValidateScoresArgs(const AttentionScoresParams& p);
// KvCompact: a valid pool, non-negative sizes, no null array.
absl::Status ValidateCompactArgs(const KvCompactParams& p);

// KV codec pools (kernels/kv_codec.h): page ids [0, num_pages) of page_stride bytes each must
// hold a page of every one of `formats`; a KIVI residual must be fp32 or bf16 with the quantized
// pages' heads and head_dim. InvalidArgument naming `op` otherwise.
absl::Status ValidatePagePool(const char* op, const std::byte* pool, size_t page_stride,
                              int32_t num_pages, std::initializer_list<KvPageFormat> formats);
absl::Status ValidateResidualFormat(const char* op, const KvPageFormat& format,
                                    const KvPageFormat& residual);
// QuantWriteKv: a per-token codec's valid format and pool, no null array.
absl::Status ValidateQuantWriteArgs(const QuantWriteKvParams& p);
// KiviWriteKv: KIVI pages, a valid residual format and pool, non-negative sizes, no null array.
absl::Status ValidateKiviWriteArgs(const KiviWriteKvParams& p);
// QuantPagedAttention: valid formats and pool (fp32 pages 4-byte aligned: read in place), GQA
// head counts, no null array.
absl::Status ValidateQuantAttentionArgs(const QuantAttentionParams& p);

// Sampling: rows, entries >= 0, cols in [1, INT32_MAX] (ids are int32), no null array that a
// row or an entry needs. The entries themselves (row and token in range) live in device memory
// on CUDA: the CPU twin rejects bad ones, the CUDA kernel skips them.
absl::Status ValidatePenaltiesArgs(const ApplyPenaltiesParams& p);
absl::Status ValidateSampleArgs(const SampleParams& p);

}  // namespace strata::kernels
