// CudaDevice: the Device on one NVIDIA GPU. Owns one compute stream, a cuBLAS handle bound to
// it, and a workspace for bf16/f16 copies of GEMM activations. Copies are cudaMemcpyAsync on
// the stream followed by a stream sync, so they are ordered after queued kernels and host memory
// may be reused on return. Kernels only enqueue; Synchronize waits.
//
// This is the skeleton the CUDA backend issue builds on: memory, copies, GEMM (cuBLAS), RMSNorm,
// SwiGLU, add and embedding are real; attention, RoPE and KV writes return Unimplemented.
// Threading: one driving thread (the engine thread); Allocate and buffer frees are thread-safe.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <string>

#include "kernels/cuda/cuda_kernels.cuh"
#include "kernels/device.h"

namespace strata::kernels {
namespace cuda {
namespace {

class CudaBuffer final : public Buffer {
 public:
  CudaBuffer(int ordinal, void* data, size_t size_bytes)
      : ordinal_(ordinal), data_(data), size_bytes_(size_bytes) {}
  ~CudaBuffer() override {
    // A failure here (e.g. a sticky error from an earlier fault) has nowhere to go; the memory
    // is gone with the context anyway.
    if (cudaSetDevice(ordinal_) == cudaSuccess) cudaFree(data_);
  }
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;

  void* data() override { return data_; }
  size_t size_bytes() const override { return size_bytes_; }

 private:
  int ordinal_;
  void* data_;
  size_t size_bytes_;
};

bool ValidPool(const KvPoolView& kv) {
  return kv.pool != nullptr && kv.num_pages > 0 && kv.block_size > 0 && kv.num_kv_heads > 0 &&
         kv.head_dim > 0;
}

absl::Status Unimplemented(const char* op) {
  return absl::UnimplementedError(
      StrCat(op, " on CUDA comes with the CUDA backend issue (use the CPU backend for now)"));
}

class CudaDevice final : public Device {
 public:
  ~CudaDevice() override {
    cudaSetDevice(ordinal_);
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (workspace_ != nullptr) cudaFree(workspace_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // Creates the stream and the cuBLAS handle on `ordinal`.
  static absl::StatusOr<std::unique_ptr<Device>> Create(int ordinal) {
    auto device = std::unique_ptr<CudaDevice>(new CudaDevice(ordinal));
    STRATA_CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal));
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&device->stream_, cudaStreamNonBlocking));
    STRATA_CUBLAS_RETURN_IF_ERROR(cublasCreate(&device->cublas_));
    STRATA_CUBLAS_RETURN_IF_ERROR(cublasSetStream(device->cublas_, device->stream_));
    return std::unique_ptr<Device>(std::move(device));
  }

  std::string name() const override { return StrCat("cuda:", ordinal_); }

  absl::StatusOr<std::unique_ptr<Buffer>> Allocate(size_t bytes) override {
    STRATA_CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal_));
    void* data = nullptr;
    const cudaError_t err = cudaMalloc(&data, std::max<size_t>(bytes, 1));
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the (non-sticky) error so later calls do not see it
      return absl::ResourceExhaustedError(StrCat(name(), ": cannot allocate ", bytes, " bytes"));
    }
    STRATA_CUDA_RETURN_IF_ERROR(err);
    auto buffer = std::make_unique<CudaBuffer>(ordinal_, data, bytes);
    // Zeroed on the legacy default stream and waited for: Allocate may run on any thread, and
    // the non-blocking compute stream does not order itself after the default stream.
    STRATA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(data, 0, std::max<size_t>(bytes, 1), nullptr));
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(nullptr));
    return std::unique_ptr<Buffer>(std::move(buffer));
  }

  absl::Status CopyToDevice(void* dst, const void* host_src, size_t bytes) override {
    return Copy(dst, host_src, bytes, cudaMemcpyHostToDevice);
  }
  absl::Status CopyToHost(void* host_dst, const void* src, size_t bytes) override {
    return Copy(host_dst, src, bytes, cudaMemcpyDeviceToHost);
  }
  absl::Status Synchronize() override {
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

  absl::Status Gemm(const GemmParams& p) override;
  absl::Status RmsNorm(const RmsNormParams& p) override {
    if (p.num_tokens < 0 || p.hidden <= 0) {
      return absl::InvalidArgumentError(StrCat("RmsNorm: bad hidden ", p.hidden));
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchRmsNorm(p, stream_));
    return absl::OkStatus();
  }
  absl::Status Rope(const RopeParams& p) override {
    if (p.num_tokens < 0 || p.head_dim <= 0 || p.head_dim % 2 != 0 || p.num_q_heads < 0 ||
        p.num_kv_heads < 0 || p.positions == nullptr || p.inv_freq == nullptr ||
        (p.num_q_heads > 0 && p.q == nullptr) || (p.num_kv_heads > 0 && p.k == nullptr)) {
      return absl::InvalidArgumentError("Rope: bad arguments");
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchRope(p, stream_));
    return absl::OkStatus();
  }
  absl::Status WriteKv(const WriteKvParams& p) override {
    if (p.num_tokens < 0 || (p.num_tokens > 0 && (p.k == nullptr || p.v == nullptr ||
                                                  p.slots == nullptr)) ||
        !ValidPool(p.kv)) {
      return absl::InvalidArgumentError("WriteKv: bad arguments");
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchWriteKv(p, stream_));
    return absl::OkStatus();
  }
  absl::Status QuantWriteKv(const QuantWriteKvParams&) override {
    return Unimplemented("QuantWriteKv");
  }
  absl::Status KiviWriteKv(const KiviWriteKvParams&) override {
    return Unimplemented("KiviWriteKv");
  }
  absl::Status QuantPagedAttention(const QuantAttentionParams&) override {
    return Unimplemented("QuantPagedAttention");
  }
  absl::Status AttentionScores(const AttentionScoresParams&) override {
    return Unimplemented("AttentionScores");
  }
  absl::Status KvCompact(const KvCompactParams&) override { return Unimplemented("KvCompact"); }
  absl::Status PagedAttention(const PagedAttentionParams& p) override {
    if (p.num_seqs < 0 || p.num_q_heads <= 0 || !ValidPool(p.kv) ||
        p.num_q_heads % p.kv.num_kv_heads != 0 || p.kv.head_dim > 256 ||
        (p.num_seqs > 0 && (p.q == nullptr || p.out == nullptr || p.query_start == nullptr ||
                            p.context_lens == nullptr || p.block_tables == nullptr))) {
      return absl::InvalidArgumentError("PagedAttention: bad arguments (head_dim <= 256)");
    }
    if (p.num_seqs == 0) return absl::OkStatus();
    // The row count lives in device memory: one 4-byte read (correctness first; the engine's
    // batch knows it, a later Device API change can pass it down).
    int32_t num_rows = 0;
    STRATA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&num_rows, p.query_start + p.num_seqs,
                                                sizeof(num_rows), cudaMemcpyDeviceToHost,
                                                stream_));
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    STRATA_CUDA_RETURN_IF_ERROR(LaunchPagedAttention(p, num_rows, stream_));
    return absl::OkStatus();
  }
  absl::Status SwiGlu(const SwiGluParams& p) override {
    if (p.num_tokens < 0 || p.intermediate < 0) {
      return absl::InvalidArgumentError("SwiGlu: negative size");
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchSwiGlu(p, stream_));
    return absl::OkStatus();
  }
  absl::Status Embedding(const EmbeddingParams& p) override {
    if (p.num_tokens < 0 || p.table.cols <= 0 || p.table.data == nullptr) {
      return absl::InvalidArgumentError("Embedding: bad table");
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchEmbedding(p, stream_));
    return absl::OkStatus();
  }
  absl::Status Add(const AddParams& p) override {
    if (p.n < 0) return absl::InvalidArgumentError("Add: negative size");
    STRATA_CUDA_RETURN_IF_ERROR(LaunchAdd(p, stream_));
    return absl::OkStatus();
  }
  absl::Status Argmax(const ArgmaxParams& p) override {
    if (p.rows < 0 || p.cols <= 0 || (p.rows > 0 && (p.logits == nullptr || p.out == nullptr))) {
      return absl::InvalidArgumentError(StrCat("Argmax: bad arguments (rows=", p.rows, ")"));
    }
    STRATA_CUDA_RETURN_IF_ERROR(LaunchArgmax(p, stream_));
    return absl::OkStatus();
  }

 private:
  explicit CudaDevice(int ordinal) : ordinal_(ordinal) {}

  absl::Status Copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    if (bytes == 0) return absl::OkStatus();
    STRATA_CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal_));
    STRATA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, kind, stream_));
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

  // Grows the activation workspace to `bytes`; the old one is freed after queued work is done.
  absl::Status ReserveWorkspace(size_t bytes) {
    if (bytes <= workspace_bytes_) return absl::OkStatus();
    STRATA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    if (workspace_ != nullptr) STRATA_CUDA_RETURN_IF_ERROR(cudaFree(workspace_));
    workspace_ = nullptr;
    workspace_bytes_ = 0;
    STRATA_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace_, bytes));
    workspace_bytes_ = bytes;
    return absl::OkStatus();
  }

  const int ordinal_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* workspace_ = nullptr;  // [m, k] activations as bf16/f16 for the current GEMM
  size_t workspace_bytes_ = 0;
};

// cuBLAS is column-major: the row-major c [m, n] is column-major c^T [n, m] = b a^T, where b's
// row-major [n, k] buffer reads as column-major [k, n] (hence op T) and a's as [k, m] (op N).
absl::Status CudaDevice::Gemm(const GemmParams& p) {
  if (p.a == nullptr || p.b.data == nullptr || p.c == nullptr || p.m <= 0 || p.b.rows <= 0 ||
      p.b.cols <= 0) {
    return absl::InvalidArgumentError(StrCat("Gemm: bad arguments m=", p.m, " n=", p.b.rows,
                                             " k=", p.b.cols));
  }
  const int64_t m = p.m, n = p.b.rows, k = p.b.cols;
  const void* a = p.a;
  cudaDataType_t in_type = CUDA_R_32F;
  if (p.b.dtype != DType::kF32) {
    in_type = p.b.dtype == DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
    RETURN_IF_ERROR(ReserveWorkspace(static_cast<size_t>(m * k) * 2));
    STRATA_CUDA_RETURN_IF_ERROR(LaunchConvertActivations(p.a, workspace_, p.b.dtype, m * k, stream_));
    a = workspace_;
  }
  const float alpha = 1.0f;
  const float beta = p.accumulate ? 1.0f : 0.0f;
  STRATA_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(
      cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
      static_cast<int>(k), &alpha, p.b.data, in_type, static_cast<int>(k), a, in_type,
      static_cast<int>(k), &beta, p.c, CUDA_R_32F, static_cast<int>(n), CUBLAS_COMPUTE_32F,
      CUBLAS_GEMM_DEFAULT));
  if (p.bias != nullptr) STRATA_CUDA_RETURN_IF_ERROR(LaunchAddBias(p.bias, p.c, m, n, stream_));
  return absl::OkStatus();
}

}  // namespace
}  // namespace cuda

absl::StatusOr<std::unique_ptr<Device>> MakeCudaDevice(int ordinal) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    return absl::UnavailableError(StrCat("cuda:", ordinal, " unavailable: cudaGetDeviceCount: ",
                                         cudaGetErrorName(err), " (", cudaGetErrorString(err),
                                         ")"));
  }
  if (count == 0) return absl::UnavailableError(StrCat("cuda:", ordinal, " unavailable: no GPU"));
  if (ordinal < 0 || ordinal >= count) {
    return absl::UnavailableError(
        StrCat("cuda:", ordinal, " unavailable: this machine has ", count, " GPU(s)"));
  }
  return cuda::CudaDevice::Create(ordinal);
}

}  // namespace strata::kernels
