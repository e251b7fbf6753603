// AVX-512 BF16 GEMV for decode (m <= 4): c[r, j] (+)= dot(a[r, :], w[j, :]) (+ bias[j]).
//
// Why not oneDNN: decode is memory-bound, so a GEMV must stream each weight byte once at close
// to memory bandwidth, and oneDNN 2.6's m=1 bf16 matmul (brgemm, tuned for GEMM shapes) does
// not. Measured with bench_kernels on the 2-core Zen 4 dev machine (2 threads, 4096x4096 and
// 896x4864 bf16 weights streamed from DRAM, memcpy at ~30 GB/s counting read + write):
//   this kernel   24-35 GB/s of weights read   (80-118% of memcpy; the spread is VM noise)
//   oneDNN m=1    17-20 GB/s                    (58-68%)
// A case where the library has nothing good enough, so it is hand-written (DESIGN.md §3).
//
// Layout: OpenMP threads take contiguous ranges of weight rows; each row is read front to back
// (one sequential stream per thread, which the hardware prefetcher follows best; interleaving
// 2-8 rows or software prefetch measured no better), 128 bf16 per step into 4 independent
// vdpbf16ps accumulators per activation row; the activations (m x k bf16) stay in L1. The k tail
// uses masked loads, so any k works.
#include <cstdint>

#include "kernels/cpu/cpu_simd.h"  // first: includes <immintrin.h> with GCC 12's warning fix
#include "kernels/cpu/cpu_gemm.h"

namespace strata::kernels::cpu {

#if defined(__AVX512BF16__)
namespace {

constexpr int64_t kMinParallelWeights = 1 << 16;

inline __m512bh LoadBf16(const uint16_t* p, __mmask32 mask) {
  return reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(mask, p));
}

inline void StoreResult(float* c, float value, const float* bias, int64_t j, bool accumulate) {
  if (bias != nullptr) value += bias[j];
  c[j] = accumulate ? c[j] + value : value;
}

// One row of w, read front to back, against M activation rows; 4 accumulators per activation
// row hide the vdpbf16ps latency.
template <int M>
void GemvRow(const uint16_t* a, const uint16_t* w_row, int64_t n, int64_t k, int64_t j,
             const float* bias, float* c, bool accumulate) {
  constexpr int kUnroll = 4;
  __m512 acc[M][kUnroll];
  for (int r = 0; r < M; ++r)
    for (int u = 0; u < kUnroll; ++u) acc[r][u] = _mm512_setzero_ps();
  const __mmask32 all = ~__mmask32{0};
  int64_t x = 0;
  for (; x + 32 * kUnroll <= k; x += 32 * kUnroll) {
    for (int u = 0; u < kUnroll; ++u) {
      const __m512bh wv = LoadBf16(w_row + x + 32 * u, all);
      for (int r = 0; r < M; ++r) {
        acc[r][u] = _mm512_dpbf16_ps(acc[r][u], LoadBf16(a + r * k + x + 32 * u, all), wv);
      }
    }
  }
  for (; x < k; x += 32) {
    const int64_t left = k - x;
    const __mmask32 mask = left >= 32 ? all : (__mmask32{1} << left) - 1;
    const __m512bh wv = LoadBf16(w_row + x, mask);
    for (int r = 0; r < M; ++r) acc[r][0] = _mm512_dpbf16_ps(acc[r][0], LoadBf16(a + r * k + x, mask), wv);
  }
  for (int r = 0; r < M; ++r) {
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]),
                                     _mm512_add_ps(acc[r][2], acc[r][3]));
    StoreResult(c + r * n, _mm512_reduce_add_ps(sum), bias, j, accumulate);
  }
}

template <int M>
void GemvRows(const uint16_t* a, const uint16_t* w, int64_t n, int64_t k, const float* bias,
              float* c, bool accumulate, int threads) {
  // Tiny matrices (test models) are faster than the cost of waking the thread team.
  const int team = n * k >= kMinParallelWeights ? threads : 1;
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t j = 0; j < n; ++j) GemvRow<M>(a, w + j * k, n, k, j, bias, c, accumulate);
}

}  // namespace

bool HaveBf16Gemv() { return true; }

void GemvBf16(const uint16_t* a_bf16, int64_t m, const uint16_t* w, int64_t n, int64_t k,
              const float* bias, float* c, bool accumulate, int threads) {
  switch (m) {
    case 1: return GemvRows<1>(a_bf16, w, n, k, bias, c, accumulate, threads);
    case 2: return GemvRows<2>(a_bf16, w, n, k, bias, c, accumulate, threads);
    case 3: return GemvRows<3>(a_bf16, w, n, k, bias, c, accumulate, threads);
    case 4: return GemvRows<4>(a_bf16, w, n, k, bias, c, accumulate, threads);
    default: CHECK(m >= 1 && m <= 4);
  }
}

#else  // !__AVX512BF16__: every BF16 GEMM goes to oneDNN.

bool HaveBf16Gemv() { return false; }

void GemvBf16(const uint16_t*, int64_t, const uint16_t*, int64_t, int64_t, const float*, float*,
              bool, int) {
  CHECK(HaveBf16Gemv());
}

#endif

}  // namespace strata::kernels::cpu
