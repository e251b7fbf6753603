// CpuGemm: the CPU backend's nn.Linear, c[m, n] (+)= a[m, k] * b[n, k]^T (+ bias[n]).
//
// Large m goes to oneDNN matmul primitives (bf16 x bf16 -> f32 with the activations converted to
// bf16 in a workspace, or f32 x f32), created once per (m, n, k, weight dtype, bias, accumulate)
// and cached. The weight [n, k] row-major buffer is described to oneDNN as [k, n] with format
// tag "ba", so it is never copied or reordered. Small m with BF16 weights (decode) goes to a
// hand-written AVX-512 BF16 GEMV that streams each weight row once (see cpu_gemv.cc for why).
//
// Owns: the primitive cache and the activation workspace. Not thread-safe: one thread at a time
// calls Run (the Device's driving thread); Run itself fans out on `threads` OpenMP threads.
#pragma once

#include <cstdint>
#include <memory>

#include "common/status.h"
#include "kernels/device.h"

namespace strata::kernels::cpu {

struct CpuGemmOptions {
  int threads = 1;  // OpenMP threads for oneDNN and the GEMV; >= 1
  // BF16 GEMMs with m <= this use the AVX-512 BF16 GEMV (when compiled with AVX512_BF16);
  // 0 sends everything to oneDNN (the benchmark's comparison).
  int64_t max_gemv_m = 4;
};

class CpuGemm {
 public:
  explicit CpuGemm(const CpuGemmOptions& options);
  ~CpuGemm();
  CpuGemm(const CpuGemm&) = delete;
  CpuGemm& operator=(const CpuGemm&) = delete;

  // InvalidArgument for null pointers, non-positive sizes or an F16 weight (the loader converts
  // F16 to BF16 or F32 before it reaches the CPU device); Internal when oneDNN fails.
  absl::Status Run(const GemmParams& p);

  // Number of cached oneDNN primitives (for tests of the cache).
  size_t num_cached_primitives() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// True when this build has the AVX-512 BF16 GEMV (compiled with __AVX512BF16__).
bool HaveBf16Gemv();

// out[r, :] for r < m: c[r, j] (+)= dot(a_bf16[r, :k], w[j, :k]) (+ bias[j]), on `threads`
// OpenMP threads. a_bf16: [m, k] bf16 (row stride k); w: [n, k] bf16. REQUIRES: 1 <= m <= 4 and
// HaveBf16Gemv().
void GemvBf16(const uint16_t* a_bf16, int64_t m, const uint16_t* w, int64_t n, int64_t k,
              const float* bias, float* c, bool accumulate, int threads);

}  // namespace strata::kernels::cpu
