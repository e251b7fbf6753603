// Reference measurements of the GPU itself for bench_cuda (BENCHMARKS.md "Limits"): what the card
// is, how fast it copies (device to device, host to device from pinned and from pageable memory)
// and how fast cuBLAS multiplies bf16 matrices. They are the ceilings the engine's numbers are
// divided by. Plain C++: the CUDA and cuBLAS calls live in bench/cuda_reference.cu, which is only
// compiled when CMake found CUDA (bench/CMakeLists.txt then defines STRATA_BENCH_CUDA_REFERENCE);
// without it the inline stand-ins at the end return Unavailable, so bench_cuda has one code path.
//
// Every function checks each CUDA call and returns its failure as a Status naming the call.
// Device timings use CUDA events on a stream of the function's own, after an untimed warm-up.
// Called from one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace strata::bench {

struct CardInfo {
  std::string name;  // e.g. "NVIDIA H200"
  int ordinal = 0;
  int compute_major = 0;  // compute capability, e.g. 9.0
  int compute_minor = 0;
  int num_sms = 0;  // streaming multiprocessors
  int64_t total_memory_bytes = 0;
  int64_t free_memory_bytes = 0;  // at the time of the query
  int64_t l2_bytes = 0;
  int driver_version = 0;  // e.g. 13000 for 13.0
  int runtime_version = 0;
};

// Best and median of the timed repeats, as a rate (bytes/s or FLOP/s) and a time.
struct Rate {
  double best_per_s = 0;
  double median_per_s = 0;
  double best_s = 0;
  int repeats = 0;
};

#ifdef STRATA_BENCH_CUDA_REFERENCE

// The card at `ordinal`; Unavailable (with the CUDA runtime's reason) when there is none.
absl::StatusOr<CardInfo> QueryCard(int ordinal);

// cudaMemcpyAsync device -> device of `bytes` (>= 1 GiB recommended), `repeats` timed copies.
// Rate = bytes read + bytes written per second (2 x bytes / time), METHOD.md's convention.
absl::StatusOr<Rate> MeasureDeviceCopy(size_t bytes, int repeats);

// cudaMemcpyAsync host -> device of `bytes` from a pinned (cudaMallocHost) or a pageable
// (operator new, as the host KV tier's arena is) buffer. Rate = bytes / time (one way).
absl::StatusOr<Rate> MeasureHostToDevice(size_t bytes, int repeats, bool pinned);

// cublasGemmEx C[m, n] = A[m, k] B[k, n] with bf16 A, B and C, f32 accumulation
// (CUBLAS_COMPUTE_32F), on random data (zeros run faster: METHOD.md). Rate = 2 m n k / time.
absl::StatusOr<Rate> MeasureBf16Gemm(int64_t m, int64_t n, int64_t k, int repeats);

#else  // A build without CUDA: nothing to measure.

inline absl::Status NoCudaBuild() {
  return absl::UnavailableError(
      "Strata was built without the CUDA backend (nvcc was not found at configure time, or "
      "-DSTRATA_CUDA=OFF)");
}
inline absl::StatusOr<CardInfo> QueryCard(int) { return NoCudaBuild(); }
inline absl::StatusOr<Rate> MeasureDeviceCopy(size_t, int) { return NoCudaBuild(); }
inline absl::StatusOr<Rate> MeasureHostToDevice(size_t, int, bool) { return NoCudaBuild(); }
inline absl::StatusOr<Rate> MeasureBf16Gemm(int64_t, int64_t, int64_t, int) {
  return NoCudaBuild();
}

#endif  // STRATA_BENCH_CUDA_REFERENCE

}  // namespace strata::bench
