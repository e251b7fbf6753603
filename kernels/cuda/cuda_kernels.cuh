// CUDA kernels of the CudaDevice (RMSNorm, SwiGLU, add, embedding, and the GEMM helpers that
// convert activations and add bias) and the CUDA/cuBLAS error -> absl::Status conversion. Only
// files under kernels/cuda include this header: nothing outside sees CUDA types.
//
// Launchers enqueue on `stream` and return the launch status; they never synchronise. Every
// pointer in the param structs is device memory. The CudaDevice checks what the host can see
// (kernels/kernel_args.h, the CPU twins' own checks) before launching.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common/status.h"
#include "kernels/device.h"

namespace strata::kernels::cuda {

// "file:line: expr: message" for a failed CUDA runtime or cuBLAS call.
absl::Status CudaError(cudaError_t err, const char* expr, const char* file, int line);
absl::Status CublasError(cublasStatus_t err, const char* expr, const char* file, int line);

#define STRATA_CUDA_RETURN_IF_ERROR(expr)                                              \
  do {                                                                                 \
    const cudaError_t strata_cuda_err_ = (expr);                                       \
    if (strata_cuda_err_ != cudaSuccess) {                                             \
      return ::strata::kernels::cuda::CudaError(strata_cuda_err_, #expr, __FILE__, __LINE__); \
    }                                                                                  \
  } while (0)

#define STRATA_CUBLAS_RETURN_IF_ERROR(expr)                                              \
  do {                                                                                   \
    const cublasStatus_t strata_cublas_err_ = (expr);                                    \
    if (strata_cublas_err_ != CUBLAS_STATUS_SUCCESS) {                                   \
      return ::strata::kernels::cuda::CublasError(strata_cublas_err_, #expr, __FILE__, __LINE__); \
    }                                                                                    \
  } while (0)

cudaError_t LaunchRmsNorm(const RmsNormParams& p, cudaStream_t stream);
cudaError_t LaunchSwiGlu(const SwiGluParams& p, cudaStream_t stream);
cudaError_t LaunchAdd(const AddParams& p, cudaStream_t stream);
// One block per row (Sampler::Argmax semantics: lowest index on ties, NaN never wins).
cudaError_t LaunchArgmax(const ArgmaxParams& p, cudaStream_t stream);
cudaError_t LaunchEmbedding(const EmbeddingParams& p, cudaStream_t stream);

// cuda_attention.cu: RoPE, KV writes and attention over the f32 paged KV pool.
cudaError_t LaunchRope(const RopeParams& p, cudaStream_t stream);
cudaError_t LaunchWriteKv(const WriteKvParams& p, cudaStream_t stream);
// Split-K for paged attention: each (row, q head) cuts its context into num_splits parts of
// split_tokens positions (the last may be shorter or empty for a shorter sequence).
struct AttentionSplit {
  int32_t num_splits = 1;
  int32_t split_tokens = 0;  // >= every context when num_splits == 1
};
// Enough splits that num_rows * num_q_heads * splits warps fill `num_sms` multiprocessors, but
// none shorter than 256 positions; max_context bounds every sequence's context.
AttentionSplit ChooseAttentionSplit(int64_t num_rows, int32_t num_q_heads, int64_t max_context,
                                    int32_t num_sms);
// Floats of `partials` LaunchPagedAttention needs (0 for one split).
inline int64_t AttentionPartialFloats(int64_t num_rows, int32_t num_q_heads, int32_t head_dim,
                                      const AttentionSplit& split) {
  return split.num_splits == 1 ? 0
                               : num_rows * num_q_heads * split.num_splits * (head_dim + 2);
}
// `num_rows` = query_start[num_seqs]. partials: AttentionPartialFloats floats of scratch.
// REQUIRES: head_dim <= 256, num_q_heads a multiple of num_kv_heads.
cudaError_t LaunchPagedAttention(const PagedAttentionParams& p, int64_t num_rows,
                                 const AttentionSplit& split, float* partials,
                                 cudaStream_t stream);

// cuda_codec.cu: KV in a codec (kernels/kv_codec.h), one pool of fixed-stride pages
// (page p at pool + p * page_stride, page_stride bytes each). The launchers assume the
// kernel_args.h checks passed (formats, strides, null pointers, head counts). Slots, page ids
// and per-sequence counts are in device memory: the kernels skip whatever the CPU twin would
// reject instead of reading or writing out of bounds.
// ValidateQuantAttentionArgs plus CUDA's head_dim <= 256 (eight channels per lane).
absl::Status CheckQuantPagedAttention(const QuantAttentionParams& p);
// One warp per (token, kv head, K or V) row: k, v [num_tokens, num_kv_heads, head_dim] to
// the rows of slots[t] (per-token codecs; fp8 / int8 with one f32 scale per row).
cudaError_t LaunchQuantWriteKv(const QuantWriteKvParams& p, cudaStream_t stream);
// Two kernels in stream order: the fold (grid [num_seqs * num_kv_heads, 8]: each block strides
// over its (sequence, kv head)'s new groups [quant_before, quant_after); a thread per key code
// byte, a thread per (token, value channel group)) reads the old residual rows, then the
// residual rewrite (one block per (sequence, kv head)) shifts the rest to offset 0.
// REQUIRES: a step's KIVI pages are named by no residual entry (distinct page ids).
cudaError_t LaunchKiviWriteKv(const KiviWriteKvParams& p, cudaStream_t stream);
// One warp per (query row, q head), decoding each K / V row into registers as it goes.
// `num_rows` = query_start[num_seqs] (read by the host).
cudaError_t LaunchQuantPagedAttention(const QuantAttentionParams& p, int64_t num_rows,
                                      cudaStream_t stream);

// cuda_sparsity.cu: H2O / SnapKV over the f32 paged KV pool (CPU twins in
// kernels/cpu/cpu_sparsity.cc), one block per (sequence, kv head) each.
// scores [num_seqs, num_kv_heads, max_context]: zeroed, then summed softmax probabilities.
cudaError_t LaunchAttentionScores(const AttentionScoresParams& p, cudaStream_t stream);
// In place; a (sequence, kv head) writes only its kv head's rows of its first
// ceil(num_keep / block_size) pages. REQUIRES: those pages are reached through no other
// block-table entry of the call (the CPU twin checks this; the host cannot).
cudaError_t LaunchKvCompact(const KvCompactParams& p, cudaStream_t stream);

// cuda_sampling.cu: penalties and sampling (CPU twin kernels/cpu/cpu_sampling.cc), launched
// after kernel_args.h's checks. Entries naming a row or token out of range are skipped (the CPU
// twin rejects the call).
// One thread per entry. REQUIRES: each (row, token) at most once.
cudaError_t LaunchApplyPenalties(const ApplyPenaltiesParams& p, cudaStream_t stream);
// One block of 1024 threads per row; deterministic (see cuda_sampling.cu for the one exception).
cudaError_t LaunchSample(const SampleParams& p, cudaStream_t stream);

// dst[i] = round-to-nearest-even(src[i]) as `dtype` (kBF16 or kF16), n elements.
cudaError_t LaunchConvertActivations(const float* src, void* dst, DType dtype, int64_t n,
                                     cudaStream_t stream);
// c[i, j] += bias[j] for c [m, n] row-major.
cudaError_t LaunchAddBias(const float* bias, float* c, int64_t m, int64_t n, cudaStream_t stream);

}  // namespace strata::kernels::cuda
