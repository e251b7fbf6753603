// AVX-512 BF16 GEMV for decode (m <= 4): c[r, j] (+)= dot(a[r, :], w[j, :]) (+ bias[j]).
//
// Why not oneDNN: decode is memory-bound, so a GEMV must stream each weight byte once at close
// to memory bandwidth. Measured on this 2-core Zen 4 (bench_kernels, 896x4864 and 4096x4096
// bf16, m = 1): oneDNN 2.6's m=1 bf16 matmul (brgemm) reached only a fraction of what this
// kernel reaches (numbers in the header of bench/bench_kernels.cc's output and the kern report),
// because it packs/blocks for GEMM shapes; this is a case where the library has nothing good.
//
// Layout: rows are split across OpenMP threads in blocks of 4; each block keeps 4 x m
// accumulators, loads 32 bf16 of each of the 4 weight rows per step and does vdpbf16ps against
// the m activation rows (which stay in L1). The k tail uses masked loads, so odd k works.
#include <algorithm>
#include <cstdint>

#include "kernels/cpu/cpu_simd.h"  // first: includes <immintrin.h> with GCC 12's warning fix
#include "kernels/cpu/cpu_gemm.h"

namespace strata::kernels::cpu {

#if defined(__AVX512BF16__)
namespace {

constexpr int64_t kRowsPerBlock = 4;

inline __m512bh LoadBf16(const uint16_t* p, __mmask32 mask) {
  return reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(mask, p));
}

inline void StoreResult(float* c, float value, const float* bias, int64_t j, bool accumulate) {
  if (bias != nullptr) value += bias[j];
  c[j] = accumulate ? c[j] + value : value;
}

// Rows [j0, j0 + R) of w against M activation rows.
template <int M, int R>
void GemvBlock(const uint16_t* a, const uint16_t* w, int64_t n, int64_t k, int64_t j0,
               const float* bias, float* c, bool accumulate) {
  __m512 acc[M][R];
  for (int r = 0; r < M; ++r)
    for (int i = 0; i < R; ++i) acc[r][i] = _mm512_setzero_ps();
  for (int64_t x = 0; x < k; x += 32) {
    const int64_t left = k - x;
    const __mmask32 mask = left >= 32 ? ~__mmask32{0} : (__mmask32{1} << left) - 1;
    __m512bh wv[R];
    for (int i = 0; i < R; ++i) wv[i] = LoadBf16(w + (j0 + i) * k + x, mask);
    for (int r = 0; r < M; ++r) {
      const __m512bh av = LoadBf16(a + r * k + x, mask);
      for (int i = 0; i < R; ++i) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], av, wv[i]);
    }
  }
  for (int r = 0; r < M; ++r)
    for (int i = 0; i < R; ++i)
      StoreResult(c + r * n, _mm512_reduce_add_ps(acc[r][i]), bias, j0 + i, accumulate);
}

template <int M>
void GemvRows(const uint16_t* a, const uint16_t* w, int64_t n, int64_t k, const float* bias,
              float* c, bool accumulate, int threads) {
  const int64_t num_blocks = n / kRowsPerBlock;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t b = 0; b < num_blocks; ++b) {
    GemvBlock<M, kRowsPerBlock>(a, w, n, k, b * kRowsPerBlock, bias, c, accumulate);
  }
  for (int64_t j = num_blocks * kRowsPerBlock; j < n; ++j) {
    GemvBlock<M, 1>(a, w, n, k, j, bias, c, accumulate);
  }
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
