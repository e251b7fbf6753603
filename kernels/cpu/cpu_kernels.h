// The CPU backend's non-GEMM kernels as free functions over the param structs of
// kernels/device.h, each running on `threads` OpenMP threads (>= 1). They validate what is cheap
// to validate (shapes, page ids, slots) and return InvalidArgument naming the problem instead of
// touching memory out of bounds. Stateless; any thread.
#pragma once

#include "common/status.h"
#include "kernels/device.h"

namespace strata::kernels::cpu {

absl::Status RmsNorm(const RmsNormParams& p, int threads);
absl::Status Rope(const RopeParams& p, int threads);
absl::Status SwiGlu(const SwiGluParams& p, int threads);
absl::Status Embedding(const EmbeddingParams& p, int threads);
absl::Status Add(const AddParams& p, int threads);
absl::Status Argmax(const ArgmaxParams& p, int threads);

// cpu_attention.cc
absl::Status WriteKv(const WriteKvParams& p, int threads);
absl::Status PagedAttention(const PagedAttentionParams& p, int threads);

// cpu_sparsity.cc: attention probabilities for H2O / SnapKV, and in-place KV compaction.
absl::Status AttentionScores(const AttentionScoresParams& p, int threads);
absl::Status KvCompact(const KvCompactParams& p, int threads);

}  // namespace strata::kernels::cpu

// cpu_quant_attention.cc: paged KV in a KV codec (kernels/kv_codec.h). QuantWriteKv takes the
// per-token codecs (fp32, bf16, fp16, fp8, int8), KiviWriteKv appends to KIVI sequences (folding
// full groups of their residual); QuantPagedAttention reads every codec plus residual pages,
// decoding one page per step into a per-thread tile.
#include "kernels/kv_codec.h"

namespace strata::kernels::cpu {

absl::Status QuantWriteKv(const QuantWriteKvParams& p, int threads);
absl::Status KiviWriteKv(const KiviWriteKvParams& p, int threads);
absl::Status QuantPagedAttention(const QuantAttentionParams& p, int threads);

}  // namespace strata::kernels::cpu
