// CUDA kernels of the CudaDevice (RMSNorm, SwiGLU, add, embedding, and the GEMM helpers that
// convert activations and add bias) and the CUDA/cuBLAS error -> absl::Status conversion. Only
// files under kernels/cuda include this header: nothing outside sees CUDA types.
//
// Launchers enqueue on `stream` and return the launch status; they never synchronise. Every
// pointer in the param structs is device memory.
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
// `num_rows` = query_start[num_seqs] (read by the host from its own copy of the batch).
// REQUIRES: head_dim <= 256, num_q_heads a multiple of num_kv_heads.
cudaError_t LaunchPagedAttention(const PagedAttentionParams& p, int64_t num_rows,
                                 cudaStream_t stream);

// dst[i] = round-to-nearest-even(src[i]) as `dtype` (kBF16 or kF16), n elements.
cudaError_t LaunchConvertActivations(const float* src, void* dst, DType dtype, int64_t n,
                                     cudaStream_t stream);
// c[i, j] += bias[j] for c [m, n] row-major.
cudaError_t LaunchAddBias(const float* bias, float* c, int64_t m, int64_t n, cudaStream_t stream);

}  // namespace strata::kernels::cuda
