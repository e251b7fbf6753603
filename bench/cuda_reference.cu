// The raw CUDA / cuBLAS reference measurements behind bench/cuda_reference.h: card properties,
// copy bandwidths (device to device, pinned and pageable host to device) and the cuBLAS bf16
// GEMM rate. Only bench_cuda links this file, and only in builds with CUDA. Small RAII holders
// free every resource on every return path, so a failed step leaks nothing into the next one.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "bench/cuda_reference.h"

namespace strata::bench {
namespace {

absl::Status CudaFailure(cudaError_t err, const char* expr) {
  return absl::InternalError(
      StrCat(expr, ": ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")"));
}

absl::Status CublasFailure(cublasStatus_t err, const char* expr) {
  return absl::InternalError(StrCat(expr, ": cuBLAS status ", static_cast<int>(err)));
}

#define BENCH_CUDA_CHECK(expr)                                            \
  do {                                                                    \
    const cudaError_t bench_err_ = (expr);                                \
    if (bench_err_ != cudaSuccess) return CudaFailure(bench_err_, #expr); \
  } while (0)

#define BENCH_CUBLAS_CHECK(expr)                                                      \
  do {                                                                                \
    const cublasStatus_t bench_err_ = (expr);                                         \
    if (bench_err_ != CUBLAS_STATUS_SUCCESS) return CublasFailure(bench_err_, #expr); \
  } while (0)

// Device memory, freed when it goes out of scope.
struct DeviceMemory {
  void* data = nullptr;
  ~DeviceMemory() {
    if (data != nullptr) cudaFree(data);
  }
};

// Pinned host memory (cudaMallocHost), freed when it goes out of scope.
struct PinnedMemory {
  void* data = nullptr;
  ~PinnedMemory() {
    if (data != nullptr) cudaFreeHost(data);
  }
};

// A stream, a pair of events per timed repeat and (optionally) a cuBLAS handle on the stream.
class Timer {
 public:
  ~Timer() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  absl::Status Init(int repeats, bool with_cublas) {
    BENCH_CUDA_CHECK(cudaSetDevice(0));
    BENCH_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    events_.assign(2 * static_cast<size_t>(repeats), nullptr);
    for (cudaEvent_t& e : events_) BENCH_CUDA_CHECK(cudaEventCreate(&e));
    if (with_cublas) {
      BENCH_CUBLAS_CHECK(cublasCreate(&cublas_));
      BENCH_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    }
    return absl::OkStatus();
  }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  cudaEvent_t start(int r) const { return events_[2 * r]; }
  cudaEvent_t stop(int r) const { return events_[2 * r + 1]; }

  // Seconds of each repeat, after the stream finished.
  absl::StatusOr<std::vector<double>> Seconds(int repeats) const {
    BENCH_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<double> s(repeats);
    for (int r = 0; r < repeats; ++r) {
      float ms = 0;
      BENCH_CUDA_CHECK(cudaEventElapsedTime(&ms, start(r), stop(r)));
      s[r] = ms * 1e-3;
    }
    return s;
  }

 private:
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::vector<cudaEvent_t> events_;
};

// `work` units (bytes or FLOPs) per repeat, over the measured times.
Rate ToRate(double work, std::vector<double> seconds) {
  std::sort(seconds.begin(), seconds.end());
  Rate r;
  r.repeats = static_cast<int>(seconds.size());
  r.best_s = seconds.front();
  r.best_per_s = work / seconds.front();
  r.median_per_s = work / seconds[seconds.size() / 2];
  return r;
}

absl::Status CheckRepeats(int repeats) {
  if (repeats < 1) return absl::InvalidArgumentError("repeats must be >= 1");
  return absl::OkStatus();
}

// Uniform values in [-1, 1) from a hash of the index: random-looking, not zeros.
__global__ void FillRandomBf16(__nv_bfloat16* out, int64_t n, uint32_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    out[i] = __float2bfloat16(static_cast<float>(x >> 8) * (2.0f / 16777216.0f) - 1.0f);
  }
}

absl::Status FillRandom(void* out, int64_t n, uint32_t seed, cudaStream_t stream) {
  FillRandomBf16<<<1024, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(out), n, seed);
  BENCH_CUDA_CHECK(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CardInfo> QueryCard(int ordinal) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    return absl::UnavailableError(
        StrCat("cudaGetDeviceCount: ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")"));
  }
  if (ordinal < 0 || ordinal >= count) {
    return absl::UnavailableError(StrCat("no GPU ", ordinal, " (", count, " present)"));
  }
  cudaDeviceProp prop{};
  BENCH_CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal));
  BENCH_CUDA_CHECK(cudaSetDevice(ordinal));
  size_t free_bytes = 0, total_bytes = 0;
  BENCH_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  CardInfo info;
  info.name = prop.name;
  info.ordinal = ordinal;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.num_sms = prop.multiProcessorCount;
  info.total_memory_bytes = static_cast<int64_t>(total_bytes);
  info.free_memory_bytes = static_cast<int64_t>(free_bytes);
  info.l2_bytes = prop.l2CacheSize;
  BENCH_CUDA_CHECK(cudaDriverGetVersion(&info.driver_version));
  BENCH_CUDA_CHECK(cudaRuntimeGetVersion(&info.runtime_version));
  return info;
}

absl::StatusOr<Rate> MeasureDeviceCopy(size_t bytes, int repeats) {
  RETURN_IF_ERROR(CheckRepeats(repeats));
  Timer timer;
  RETURN_IF_ERROR(timer.Init(repeats, false));
  DeviceMemory src, dst;
  BENCH_CUDA_CHECK(cudaMalloc(&src.data, bytes));
  BENCH_CUDA_CHECK(cudaMalloc(&dst.data, bytes));
  RETURN_IF_ERROR(FillRandom(src.data, static_cast<int64_t>(bytes / 2), 1, timer.stream()));
  const cudaStream_t s = timer.stream();
  BENCH_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, bytes, cudaMemcpyDeviceToDevice, s));
  for (int r = 0; r < repeats; ++r) {
    BENCH_CUDA_CHECK(cudaEventRecord(timer.start(r), s));
    BENCH_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, bytes, cudaMemcpyDeviceToDevice, s));
    BENCH_CUDA_CHECK(cudaEventRecord(timer.stop(r), s));
  }
  ASSIGN_OR_RETURN(std::vector<double> seconds, timer.Seconds(repeats));
  return ToRate(2.0 * static_cast<double>(bytes), std::move(seconds));
}

// Host clock around an enqueued copy and a stream sync: right for pinned and pageable sources
// alike (a pageable copy is staged by the host, partly outside the stream's events).
absl::StatusOr<Rate> MeasureHostToDevice(size_t bytes, int repeats, bool pinned) {
  RETURN_IF_ERROR(CheckRepeats(repeats));
  Timer timer;
  RETURN_IF_ERROR(timer.Init(0, false));
  DeviceMemory dst;
  BENCH_CUDA_CHECK(cudaMalloc(&dst.data, bytes));
  PinnedMemory pinned_src;
  std::unique_ptr<char[]> pageable_src;
  void* src = nullptr;
  if (pinned) {
    BENCH_CUDA_CHECK(cudaMallocHost(&pinned_src.data, bytes));
    src = pinned_src.data;
  } else {
    pageable_src.reset(new char[bytes]);
    src = pageable_src.get();
  }
  std::memset(src, 0x5a, bytes);  // faults the pages in before the timing
  const cudaStream_t s = timer.stream();
  std::vector<double> seconds;
  for (int r = 0; r <= repeats; ++r) {  // r == 0: warm-up
    const auto t0 = std::chrono::steady_clock::now();
    BENCH_CUDA_CHECK(cudaMemcpyAsync(dst.data, src, bytes, cudaMemcpyHostToDevice, s));
    BENCH_CUDA_CHECK(cudaStreamSynchronize(s));
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - t0;
    if (r > 0) seconds.push_back(took.count());
  }
  return ToRate(static_cast<double>(bytes), std::move(seconds));
}

absl::StatusOr<Rate> MeasureBf16Gemm(int64_t m, int64_t n, int64_t k, int repeats) {
  RETURN_IF_ERROR(CheckRepeats(repeats));
  if (m <= 0 || n <= 0 || k <= 0 || std::max({m, n, k}) > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(StrCat("bad GEMM shape ", m, "x", n, "x", k));
  }
  Timer timer;
  RETURN_IF_ERROR(timer.Init(repeats, true));
  const cudaStream_t s = timer.stream();
  DeviceMemory a, b, c;  // column-major A [m, k], B [k, n], C [m, n], all bf16
  BENCH_CUDA_CHECK(cudaMalloc(&a.data, static_cast<size_t>(m * k) * 2));
  BENCH_CUDA_CHECK(cudaMalloc(&b.data, static_cast<size_t>(k * n) * 2));
  BENCH_CUDA_CHECK(cudaMalloc(&c.data, static_cast<size_t>(m * n) * 2));
  RETURN_IF_ERROR(FillRandom(a.data, m * k, 2, s));
  RETURN_IF_ERROR(FillRandom(b.data, k * n, 3, s));
  const float alpha = 1.0f, beta = 0.0f;
  auto gemm = [&]() -> absl::Status {
    BENCH_CUBLAS_CHECK(cublasGemmEx(timer.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(m),
                                    static_cast<int>(n), static_cast<int>(k), &alpha, a.data,
                                    CUDA_R_16BF, static_cast<int>(m), b.data, CUDA_R_16BF,
                                    static_cast<int>(k), &beta, c.data, CUDA_R_16BF,
                                    static_cast<int>(m), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(gemm());  // warm-up: handle and heuristics
  RETURN_IF_ERROR(gemm());
  for (int r = 0; r < repeats; ++r) {
    BENCH_CUDA_CHECK(cudaEventRecord(timer.start(r), s));
    RETURN_IF_ERROR(gemm());
    BENCH_CUDA_CHECK(cudaEventRecord(timer.stop(r), s));
  }
  ASSIGN_OR_RETURN(std::vector<double> seconds, timer.Seconds(repeats));
  return ToRate(2.0 * static_cast<double>(m) * n * k, std::move(seconds));
}

}  // namespace strata::bench
