// Small SIMD helpers shared by the CPU kernels: a vectorised expf, f32 -> bf16 conversion and
// horizontal helpers. Every AVX-512 path is guarded by __AVX512F__ / __AVX512BF16__ and has a
// scalar twin, so the CPU backend builds and stays correct on any x86-64 (STRATA_NATIVE=OFF).
// Pure functions; any thread.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

#if defined(__AVX512F__)
// GCC 12.2 flags the `__m512 __Y = __Y;` idiom behind _mm512_undefined_ps() in its own headers
// (GCC PR105593, fixed in 12.3/13) wherever min/max/scalef/extract intrinsics are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include "common/dtype.h"

namespace strata::kernels::cpu {

#if defined(__AVX512F__)
// e^x for 16 lanes: Cephes expf (range reduction by ln 2 split into two constants, degree-6
// polynomial), scaled by 2^n with vscalefps, which also handles overflow and underflow.
// Max relative error ~2 ulp over [-87, 88]; glibc expf is ~10x slower per element here.
inline __m512 Exp512(__m512 x) {
  x = _mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f));
  x = _mm512_max_ps(x, _mm512_set1_ps(-103.972084045410f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// Mask selecting the first `count` (0..16) f32 lanes.
inline __mmask16 TailMask16(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xffff)
                     : static_cast<__mmask16>((1u << count) - 1u);
}
#endif

// dst[i] = e^src[i]; src and dst may alias.
inline void ExpInPlace(float* x, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i < n; i += 16) {
    const __mmask16 mask = TailMask16(n - i);
    _mm512_mask_storeu_ps(x + i, mask, Exp512(_mm512_maskz_loadu_ps(mask, x + i)));
  }
#endif
  for (; i < n; ++i) x[i] = std::exp(x[i]);
}

// dst[i] = bf16(src[i]) with round-to-nearest-even (denormal inputs may flush to zero on the
// AVX512_BF16 path, which no activation that matters produces).
inline void ConvertF32ToBf16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512BF16__)
  for (; i + 16 <= n; i += 16) {
    const __m256bh packed = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), std::bit_cast<__m256i>(packed));
  }
#endif
  for (; i < n; ++i) dst[i] = F32ToBf16(src[i]);
}

}  // namespace strata::kernels::cpu
