// Machine limits the benchmarks compare against, measured in the same run (BENCHMARKS.md
// "Limits"): memcpy and streaming-read bandwidth, the CPU device's bf16 GEMM rate, and the matmul
// parameters a model touches per token. Header-only; used by the bench executables only.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/clock.h"
#include "common/dtype.h"
#include "common/status.h"
#include "engine/model_config.h"
#include "kernels/device.h"

namespace strata::bench {

// Bytes moved per second (read + write) by a memcpy of `bytes`, split across the OpenMP threads.
inline double MeasureCopyBandwidth(size_t bytes, int repeats) {
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  double best = 1e30;
  for (int r = 0; r < repeats + 1; ++r) {
    double t0 = NowSeconds();
#pragma omp parallel
    {
      size_t n = omp_get_num_threads(), i = omp_get_thread_num();
      size_t chunk = bytes / n, begin = i * chunk, len = (i + 1 == n) ? bytes - begin : chunk;
      std::memcpy(dst.data() + begin, src.data() + begin, len);
    }
    double t = NowSeconds() - t0;
    if (r > 0) best = std::min(best, t);  // the first pass faults the pages in
  }
  return 2.0 * bytes / best;
}

// Bytes per second of a pure streaming read (a sum over `bytes`, split across the threads): the
// ceiling for a decode step, which only reads weights. On small VMs it sits below the memcpy
// figure, whose reads and (non-temporal) writes overlap.
inline double MeasureReadBandwidth(size_t bytes, int repeats) {
  std::vector<uint64_t> data(bytes / 8, 1);
  double best = 1e30;
  uint64_t sink = 0;
  for (int r = 0; r < repeats + 1; ++r) {
    double t0 = NowSeconds();
#pragma omp parallel for reduction(+ : sink) schedule(static)
    for (size_t i = 0; i < data.size(); ++i) sink += data[i];
    double t = NowSeconds() - t0;
    if (r > 0) best = std::min(best, t);
  }
  CHECK(sink == static_cast<uint64_t>(repeats + 1) * data.size());
  return bytes / best;
}

// FLOP/s of the device's bf16 GEMM c[m,n] = a[m,k] * b[n,k]^T.
inline double MeasureGemmRate(kernels::Device& dev, int64_t m, int64_t n, int64_t k, int repeats) {
  std::vector<uint16_t> w(n * k, F32ToBf16(0.01f));
  std::vector<float> a(m * k, 0.5f), c(m * n);
  kernels::GemmParams p{.a = a.data(),
                        .b = {.data = w.data(), .dtype = DType::kBF16, .rows = n, .cols = k},
                        .c = c.data(), .m = m};
  CHECK_OK(dev.Gemm(p));  // warm-up: primitive creation
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    double t0 = NowSeconds();
    CHECK_OK(dev.Gemm(p));
    best = std::min(best, NowSeconds() - t0);
  }
  return 2.0 * m * n * k / best;
}

// Matrix parameters touched per token (every projection and the lm_head, not the embedding gather).
inline int64_t MatmulParams(const engine::ModelConfig& c) {
  int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  int64_t per_layer = c.hidden_size * (q + 2 * kv) + q * c.hidden_size +
                      3 * c.hidden_size * c.intermediate_size;
  return per_layer * c.num_layers + c.vocab_size * c.hidden_size;
}

}  // namespace strata::bench
