// Row-wise and elementwise CPU kernels: RMSNorm, RoPE, SwiGLU, embedding lookup, add. Rows are
// spread over OpenMP threads; a region is only opened when there is enough work to pay for it.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_simd.h"
#include "kernels/row_argmax.h"

namespace strata::kernels::cpu {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kMinParallelElements = 1 << 15;

int ThreadsFor(int64_t elements, int threads) {
  return elements >= kMinParallelElements ? threads : 1;
}

float SumSquares(const float* x, int64_t n) {
  int64_t i = 0;
  float sum = 0.0f;
#if defined(__AVX512F__)
  __m512 acc = _mm512_setzero_ps();
  for (; i < n; i += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(TailMask16(n - i), x + i);
    acc = _mm512_fmadd_ps(v, v, acc);
  }
  sum = _mm512_reduce_add_ps(acc);
#endif
  for (; i < n; ++i) sum += x[i] * x[i];
  return sum;
}

void SwiGluRow(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i < n; i += 16) {
    const __mmask16 mask = TailMask16(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(mask, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(mask, up + i);
    const __m512 e = Exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    _mm512_mask_storeu_ps(out + i, mask, _mm512_mul_ps(silu, u));
  }
#endif
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// x[h, :] for h < num_heads, rotated by (cos, sin) [half] in the rotate_half convention.
void RotateHeads(float* x, int32_t num_heads, int32_t head_dim, const float* cos,
                 const float* sin) {
  const int32_t half = head_dim / 2;
  for (int32_t h = 0; h < num_heads; ++h) {
    float* lo = x + static_cast<int64_t>(h) * head_dim;
    float* hi = lo + half;
    for (int32_t j = 0; j < half; ++j) {
      const float x1 = lo[j];
      const float x2 = hi[j];
      lo[j] = x1 * cos[j] - x2 * sin[j];
      hi[j] = x2 * cos[j] + x1 * sin[j];
    }
  }
}

}  // namespace

absl::Status RmsNorm(const RmsNormParams& p, int threads) {
  if (p.num_tokens < 0 || p.hidden <= 0 || p.x == nullptr || p.weight == nullptr ||
      p.out == nullptr) {
    return absl::InvalidArgumentError(
        StrCat("RmsNorm: bad arguments (num_tokens=", p.num_tokens, " hidden=", p.hidden, ")"));
  }
#pragma omp parallel for num_threads(ThreadsFor(p.num_tokens * p.hidden, threads))
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const float* x = p.x + t * p.hidden;
    float* out = p.out + t * p.hidden;
    const float inv_rms =
        1.0f / std::sqrt(SumSquares(x, p.hidden) / static_cast<float>(p.hidden) + p.eps);
    for (int64_t i = 0; i < p.hidden; ++i) out[i] = x[i] * inv_rms * p.weight[i];
  }
  return absl::OkStatus();
}

absl::Status Rope(const RopeParams& p, int threads) {
  if (p.num_tokens < 0 || p.head_dim <= 0 || p.head_dim % 2 != 0 || p.num_q_heads < 0 ||
      p.num_kv_heads < 0 || p.positions == nullptr || p.inv_freq == nullptr ||
      (p.num_q_heads > 0 && p.q == nullptr) || (p.num_kv_heads > 0 && p.k == nullptr)) {
    return absl::InvalidArgumentError(StrCat("Rope: bad arguments (head_dim=", p.head_dim,
                                             ", must be even and positive)"));
  }
  const int32_t half = p.head_dim / 2;
  const int64_t work = p.num_tokens * (p.num_q_heads + p.num_kv_heads) * p.head_dim;
#pragma omp parallel num_threads(ThreadsFor(work, threads))
  {
    std::vector<float> cos(half), sin(half);
#pragma omp for
    for (int64_t t = 0; t < p.num_tokens; ++t) {
      // HF computes the angle as f32 position * f32 inv_freq, then cos/sin of that f32 value.
      const float pos = static_cast<float>(p.positions[t]);
      for (int32_t j = 0; j < half; ++j) {
        const double angle = static_cast<double>(pos * p.inv_freq[j]);
        cos[j] = static_cast<float>(std::cos(angle));
        sin[j] = static_cast<float>(std::sin(angle));
      }
      if (p.num_q_heads > 0) {
        RotateHeads(p.q + t * p.num_q_heads * p.head_dim, p.num_q_heads, p.head_dim, cos.data(),
                    sin.data());
      }
      if (p.num_kv_heads > 0) {
        RotateHeads(p.k + t * p.num_kv_heads * p.head_dim, p.num_kv_heads, p.head_dim,
                    cos.data(), sin.data());
      }
    }
  }
  return absl::OkStatus();
}

absl::Status SwiGlu(const SwiGluParams& p, int threads) {
  if (p.num_tokens < 0 || p.intermediate <= 0 || p.gate == nullptr || p.up == nullptr ||
      p.out == nullptr) {
    return absl::InvalidArgumentError(StrCat("SwiGlu: bad arguments (num_tokens=", p.num_tokens,
                                             " intermediate=", p.intermediate, ")"));
  }
#pragma omp parallel for num_threads(ThreadsFor(p.num_tokens * p.intermediate, threads))
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int64_t offset = t * p.intermediate;
    SwiGluRow(p.gate + offset, p.up + offset, p.out + offset, p.intermediate);
  }
  return absl::OkStatus();
}

absl::Status Embedding(const EmbeddingParams& p, int threads) {
  if (p.num_tokens < 0 || p.table.data == nullptr || p.table.cols <= 0 || p.ids == nullptr ||
      p.out == nullptr) {
    return absl::InvalidArgumentError("Embedding: bad arguments (null table, ids or out)");
  }
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    if (p.ids[t] < 0 || p.ids[t] >= p.table.rows) {
      return absl::InvalidArgumentError(StrCat("Embedding: token id ", p.ids[t], " at ", t,
                                               " is outside the table's ", p.table.rows, " rows"));
    }
  }
  const int64_t hidden = p.table.cols;
  const size_t row_bytes = static_cast<size_t>(hidden) * DTypeSize(p.table.dtype);
  const char* table = static_cast<const char*>(p.table.data);
#pragma omp parallel for num_threads(ThreadsFor(p.num_tokens * hidden, threads))
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    ConvertToF32(table + static_cast<size_t>(p.ids[t]) * row_bytes, p.table.dtype,
                 p.out + t * hidden, static_cast<size_t>(hidden));
  }
  return absl::OkStatus();
}

absl::Status Add(const AddParams& p, int threads) {
  if (p.n < 0 || (p.n > 0 && (p.x == nullptr || p.y == nullptr))) {
    return absl::InvalidArgumentError(StrCat("Add: bad arguments (n=", p.n, ")"));
  }
#pragma omp parallel for simd num_threads(ThreadsFor(p.n, threads))
  for (int64_t i = 0; i < p.n; ++i) p.y[i] += p.x[i];
  return absl::OkStatus();
}

absl::Status Argmax(const ArgmaxParams& p, int threads) {
  if (p.rows < 0 || p.cols <= 0 || (p.rows > 0 && (p.logits == nullptr || p.out == nullptr))) {
    return absl::InvalidArgumentError(
        StrCat("Argmax: bad arguments (rows=", p.rows, ", cols=", p.cols, ")"));
  }
#pragma omp parallel for num_threads(ThreadsFor(p.rows * p.cols, threads))
  for (int64_t r = 0; r < p.rows; ++r) {
    p.out[r] = RowArgmax(p.logits + r * p.cols, static_cast<size_t>(p.cols));
  }
  return absl::OkStatus();
}

}  // namespace strata::kernels::cpu
