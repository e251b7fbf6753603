// Small CUDA kernels of the CudaDevice; see cuda_kernels.cuh. Each has a CPU twin in
// kernels/cpu and a parity test in tests/gpu/cuda_parity_test.cc.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/cuda/cuda_kernels.cuh"
#include "kernels/cuda/cuda_warp.cuh"

namespace strata::kernels::cuda {
namespace {

constexpr int kThreads = 256;
// Grid-stride loops cap the grid; 65535 blocks of 256 threads cover any elementwise size.
constexpr int64_t kMaxBlocks = 65535;

unsigned GridFor(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

// Sum over the block; every thread gets the result. REQUIRES: blockDim.x == kThreads.
__device__ float BlockSum(float value) {
  __shared__ float warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  value = lane < kThreads / 32 ? warp_sums[lane] : 0.0f;
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__global__ void RmsNormKernel(const float* x, const float* weight, float* out, int64_t hidden,
                              float eps) {
  const float* row = x + blockIdx.x * hidden;
  float* out_row = out + blockIdx.x * hidden;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) sum += row[i] * row[i];
  // Every read of `row` is done before BlockSum's barrier, so out may alias x.
  const float inv_rms = 1.0f / sqrtf(BlockSum(sum) / static_cast<float>(hidden) + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out_row[i] = row[i] * inv_rms * weight[i];
}

__global__ void SwiGluKernel(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

// One block per row: each thread scans a strided slice, then warps and the block reduce.
// REQUIRES: blockDim.x == kThreads.
__global__ void ArgmaxKernel(const float* logits, int32_t* out, int64_t cols) {
  const float* row = logits + blockIdx.x * cols;
  ArgBest best{-INFINITY, -1};
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    if (row[i] > best.value) best = {row[i], static_cast<int32_t>(i)};  // ascending i: first wins
  }
  best = WarpBest(best);
  __shared__ ArgBest warp_best[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_best[warp] = best;
  __syncthreads();
  if (warp != 0) return;
  best = WarpBest(lane < kThreads / 32 ? warp_best[lane] : ArgBest{-INFINITY, -1});
  if (lane == 0) out[blockIdx.x] = best.index < 0 ? 0 : best.index;
}

__global__ void AddKernel(const float* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    y[i] += x[i];
  }
}

template <typename T>
__device__ float ToFloat(T v);
template <>
__device__ float ToFloat<float>(float v) { return v; }
template <>
__device__ float ToFloat<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <>
__device__ float ToFloat<__half>(__half v) { return __half2float(v); }

template <typename T>
__global__ void EmbeddingKernel(const T* table, const int32_t* ids, float* out, int64_t hidden) {
  const T* row = table + static_cast<int64_t>(ids[blockIdx.x]) * hidden;
  float* out_row = out + blockIdx.x * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out_row[i] = ToFloat(row[i]);
}

__global__ void ToBf16Kernel(const float* src, __nv_bfloat16* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = __float2bfloat16_rn(src[i]);
  }
}

__global__ void ToF16Kernel(const float* src, __half* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = __float2half_rn(src[i]);
  }
}

__global__ void AddBiasKernel(const float* bias, float* c, int64_t m, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < m * n;
       i += int64_t{gridDim.x} * blockDim.x) {
    c[i] += bias[i % n];
  }
}

}  // namespace

absl::Status CudaError(cudaError_t err, const char* expr, const char* file, int line) {
  return absl::InternalError(StrCat(file, ":", line, ": ", expr, ": ", cudaGetErrorName(err), " (",
                                    cudaGetErrorString(err), ")"));
}

absl::Status CublasError(cublasStatus_t err, const char* expr, const char* file, int line) {
  return absl::InternalError(
      StrCat(file, ":", line, ": ", expr, ": ", cublasGetStatusString(err)));
}

cudaError_t LaunchRmsNorm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  RmsNormKernel<<<static_cast<unsigned>(p.num_tokens), kThreads, 0, stream>>>(p.x, p.weight, p.out,
                                                                               p.hidden, p.eps);
  return cudaGetLastError();
}

cudaError_t LaunchSwiGlu(const SwiGluParams& p, cudaStream_t stream) {
  const int64_t n = p.num_tokens * p.intermediate;
  if (n == 0) return cudaSuccess;
  SwiGluKernel<<<GridFor(n), kThreads, 0, stream>>>(p.gate, p.up, p.out, n);
  return cudaGetLastError();
}

cudaError_t LaunchAdd(const AddParams& p, cudaStream_t stream) {
  if (p.n == 0) return cudaSuccess;
  AddKernel<<<GridFor(p.n), kThreads, 0, stream>>>(p.x, p.y, p.n);
  return cudaGetLastError();
}

cudaError_t LaunchArgmax(const ArgmaxParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.rows > 2147483647) return cudaErrorInvalidConfiguration;
  ArgmaxKernel<<<static_cast<unsigned>(p.rows), kThreads, 0, stream>>>(p.logits, p.out, p.cols);
  return cudaGetLastError();
}

cudaError_t LaunchEmbedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(p.num_tokens);
  switch (p.table.dtype) {
    case DType::kF32:
      EmbeddingKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(p.table.data),
                                                       p.ids, p.out, p.table.cols);
      break;
    case DType::kBF16:
      EmbeddingKernel<<<blocks, kThreads, 0, stream>>>(
          static_cast<const __nv_bfloat16*>(p.table.data), p.ids, p.out, p.table.cols);
      break;
    case DType::kF16:
      EmbeddingKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const __half*>(p.table.data),
                                                       p.ids, p.out, p.table.cols);
      break;
  }
  return cudaGetLastError();
}

cudaError_t LaunchConvertActivations(const float* src, void* dst, DType dtype, int64_t n,
                                     cudaStream_t stream) {
  if (dtype == DType::kBF16) {
    ToBf16Kernel<<<GridFor(n), kThreads, 0, stream>>>(src, static_cast<__nv_bfloat16*>(dst), n);
  } else {
    ToF16Kernel<<<GridFor(n), kThreads, 0, stream>>>(src, static_cast<__half*>(dst), n);
  }
  return cudaGetLastError();
}

cudaError_t LaunchAddBias(const float* bias, float* c, int64_t m, int64_t n, cudaStream_t stream) {
  AddBiasKernel<<<GridFor(m * n), kThreads, 0, stream>>>(bias, c, m, n);
  return cudaGetLastError();
}

}  // namespace strata::kernels::cuda
