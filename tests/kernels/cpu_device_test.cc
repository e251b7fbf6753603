// CpuDevice against naive double-precision references written here: GEMM (both weight dtypes,
// bias, accumulate, GEMV and oneDNN paths), RMSNorm, RoPE, SwiGLU, embedding, add, memory.
// Attention and KV writes are in cpu_attention_test.cc.
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_gemm.h"
#include "kernels/device.h"
#include "tests/kernels/random_tensors.h"

namespace strata::kernels {
namespace {

float RoundToBf16(float x) { return Bf16ToF32(F32ToBf16(x)); }

std::unique_ptr<Device> MakeDevice(int threads = 2) {
  auto device = MakeCpuDevice({.threads = threads});
  EXPECT_TRUE(device.ok()) << device.status();
  return std::move(device).value();
}

// ---- GEMM -----------------------------------------------------------------------------------

struct GemmCase {
  int64_t m, n, k;
  DType dtype;
  bool bias;
  bool accumulate;
};

std::string GemmCaseName(const testing::TestParamInfo<GemmCase>& info) {
  const GemmCase& c = info.param;
  return StrCat("m", c.m, "_n", c.n, "_k", c.k, "_", DTypeName(c.dtype), c.bias ? "_bias" : "",
                c.accumulate ? "_acc" : "");
}

class CpuGemmTest : public testing::TestWithParam<GemmCase> {};

// BF16 weights: the contract rounds activations to bf16 (round-to-nearest-even) and accumulates
// in f32, so the reference uses the rounded activations in double; what is left is f32
// accumulation error, bounded relative to sum |a_i * b_i| (plus |bias| and |c_old|).
TEST_P(CpuGemmTest, MatchesDoubleReference) {
  const GemmCase& c = GetParam();
  const std::vector<float> a = Random(c.m * c.k, 1);
  const std::vector<float> w = Random(c.n * c.k, 2);
  const std::vector<float> bias = Random(c.n, 3);
  const std::vector<float> c_old = Random(c.m * c.n, 4);
  const std::vector<uint16_t> w_bf16 = ToBf16(w);
  const bool bf16 = c.dtype == DType::kBF16;

  std::vector<float> out = c_old;
  GemmParams p{.a = a.data(),
               .b = {bf16 ? static_cast<const void*>(w_bf16.data()) : w.data(), c.dtype, c.n, c.k},
               .bias = c.bias ? bias.data() : nullptr,
               .c = out.data(),
               .m = c.m,
               .accumulate = c.accumulate};
  auto device = MakeDevice();
  ASSERT_TRUE(device->Gemm(p).ok());

  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double sum = 0, magnitude = 0;
      for (int64_t x = 0; x < c.k; ++x) {
        const double av = bf16 ? RoundToBf16(a[i * c.k + x]) : a[i * c.k + x];
        const double wv = bf16 ? Bf16ToF32(w_bf16[j * c.k + x]) : w[j * c.k + x];
        sum += av * wv;
        magnitude += std::abs(av * wv);
      }
      if (c.bias) sum += bias[j], magnitude += std::abs(bias[j]);
      if (c.accumulate) sum += c_old[i * c.n + j], magnitude += std::abs(c_old[i * c.n + j]);
      ASSERT_NEAR(out[i * c.n + j], sum, 1e-5 * magnitude) << "row " << i << " col " << j;
    }
  }
}

std::vector<GemmCase> AllGemmCases() {
  std::vector<GemmCase> cases;
  for (int64_t m : {1, 3, 4, 5, 17}) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      for (bool bias : {false, true}) {
        for (bool accumulate : {false, true}) cases.push_back({m, 129, 67, dtype, bias, accumulate});
      }
    }
  }
  // k a multiple of the GEMV's 32-wide step plus a tail, and n with no 4-row blocks left over.
  cases.push_back({1, 256, 896 + 7, DType::kBF16, true, true});
  cases.push_back({3, 33, 300, DType::kBF16, true, true});
  cases.push_back({4, 20, 256, DType::kBF16, false, false});
  cases.push_back({2, 3, 1, DType::kBF16, false, false});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuGemmTest, testing::ValuesIn(AllGemmCases()), GemmCaseName);

TEST(CpuGemm, GemvAndOneDnnAgreeOnBf16) {
  const int64_t m = 3, n = 77, k = 131;
  const std::vector<float> a = Random(m * k, 5);
  const std::vector<uint16_t> w = ToBf16(Random(n * k, 6));
  std::vector<float> via_gemv(m * n), via_onednn(m * n);
  cpu::CpuGemm gemv({.threads = 2, .max_gemv_m = 4});
  cpu::CpuGemm onednn({.threads = 2, .max_gemv_m = 0});
  ASSERT_TRUE(gemv.Run({.a = a.data(), .b = {w.data(), DType::kBF16, n, k}, .c = via_gemv.data(),
                        .m = m}).ok());
  ASSERT_TRUE(onednn.Run({.a = a.data(), .b = {w.data(), DType::kBF16, n, k},
                          .c = via_onednn.data(), .m = m}).ok());
  for (int64_t i = 0; i < m * n; ++i) EXPECT_NEAR(via_gemv[i], via_onednn[i], 1e-4) << i;
  EXPECT_EQ(onednn.num_cached_primitives(), 1u);
  EXPECT_EQ(gemv.num_cached_primitives(), cpu::HaveBf16Gemv() ? 0u : 1u);
}

TEST(CpuGemm, CachesOnePrimitivePerShape) {
  const int64_t n = 16, k = 8;
  const std::vector<float> a = Random(9 * k, 7);
  const std::vector<float> w = Random(n * k, 8);
  std::vector<float> c(9 * n);
  cpu::CpuGemm gemm({.threads = 1});
  for (int rep = 0; rep < 3; ++rep) {
    for (int64_t m : {8, 9}) {
      ASSERT_TRUE(gemm.Run({.a = a.data(), .b = {w.data(), DType::kF32, n, k}, .c = c.data(),
                            .m = m}).ok());
    }
  }
  EXPECT_EQ(gemm.num_cached_primitives(), 2u);
  ASSERT_TRUE(gemm.Run({.a = a.data(), .b = {w.data(), DType::kF32, n, k}, .c = c.data(), .m = 8,
                        .accumulate = true}).ok());
  EXPECT_EQ(gemm.num_cached_primitives(), 3u);
}

TEST(CpuGemm, RejectsF16WeightsAndBadShapes) {
  auto device = MakeDevice();
  const std::vector<float> a(4), c_init(4);
  const std::vector<uint16_t> w(4);
  std::vector<float> c = c_init;
  GemmParams p{.a = a.data(), .b = {w.data(), DType::kF16, 2, 2}, .c = c.data(), .m = 2};
  EXPECT_EQ(device->Gemm(p).code(), absl::StatusCode::kInvalidArgument);
  p.b.dtype = DType::kBF16;
  p.m = 0;
  EXPECT_EQ(device->Gemm(p).code(), absl::StatusCode::kInvalidArgument);
  p.m = 2;
  p.a = nullptr;
  EXPECT_EQ(device->Gemm(p).code(), absl::StatusCode::kInvalidArgument);
}

// ---- Row-wise and elementwise kernels -------------------------------------------------------

void ExpectRelNear(float actual, double expected, double rel, const std::string& what) {
  EXPECT_NEAR(actual, expected, rel * std::abs(expected) + 1e-7) << what;
}

TEST(CpuRmsNorm, MatchesReferenceAndMayAlias) {
  const int64_t tokens = 3, hidden = 67;
  const std::vector<float> x = Random(tokens * hidden, 10, -3.0f, 3.0f);
  const std::vector<float> weight = Random(hidden, 11);
  auto device = MakeDevice();
  std::vector<float> out(x.size()), in_place = x;
  ASSERT_TRUE(device->RmsNorm({x.data(), weight.data(), out.data(), tokens, hidden, 1e-6f}).ok());
  ASSERT_TRUE(device->RmsNorm({in_place.data(), weight.data(), in_place.data(), tokens, hidden,
                               1e-6f}).ok());
  for (int64_t t = 0; t < tokens; ++t) {
    double sum_sq = 0;
    for (int64_t i = 0; i < hidden; ++i) sum_sq += double(x[t * hidden + i]) * x[t * hidden + i];
    const double inv = 1.0 / std::sqrt(sum_sq / hidden + 1e-6);
    for (int64_t i = 0; i < hidden; ++i) {
      const double expected = x[t * hidden + i] * inv * weight[i];
      ExpectRelNear(out[t * hidden + i], expected, 1e-5, StrCat("t=", t, " i=", i));
      EXPECT_EQ(in_place[t * hidden + i], out[t * hidden + i]);
    }
  }
}

void RopeReference(std::vector<float>& x, int32_t heads, int32_t dim, const int32_t* positions,
                   const std::vector<float>& inv_freq, int64_t tokens) {
  for (int64_t t = 0; t < tokens; ++t) {
    for (int32_t h = 0; h < heads; ++h) {
      float* v = x.data() + (t * heads + h) * dim;
      for (int32_t j = 0; j < dim / 2; ++j) {
        // The angle is an f32 product as in HF (positions.float() @ inv_freq); cos/sin in double.
        const double angle = static_cast<float>(positions[t]) * inv_freq[j];
        const double x1 = v[j], x2 = v[j + dim / 2];
        v[j] = static_cast<float>(x1 * std::cos(angle) - x2 * std::sin(angle));
        v[j + dim / 2] = static_cast<float>(x2 * std::cos(angle) + x1 * std::sin(angle));
      }
    }
  }
}

TEST(CpuRope, MatchesHfRotateHalf) {
  const int64_t tokens = 5;
  const int32_t q_heads = 4, kv_heads = 2;
  for (int32_t dim : {6, 64}) {
    std::vector<float> inv_freq(dim / 2);
    for (int32_t j = 0; j < dim / 2; ++j) inv_freq[j] = std::pow(10000.0f, -2.0f * j / dim);
    const std::vector<int32_t> positions = {0, 1, 17, 1000, 4095};
    std::vector<float> q = Random(tokens * q_heads * dim, 12);
    std::vector<float> k = Random(tokens * kv_heads * dim, 13);
    std::vector<float> q_ref = q, k_ref = k;
    RopeReference(q_ref, q_heads, dim, positions.data(), inv_freq, tokens);
    RopeReference(k_ref, kv_heads, dim, positions.data(), inv_freq, tokens);
    auto device = MakeDevice();
    ASSERT_TRUE(device->Rope({q.data(), k.data(), positions.data(), inv_freq.data(), tokens,
                              q_heads, kv_heads, dim}).ok());
    for (size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(q[i], q_ref[i], 2e-6) << "q " << i;
    for (size_t i = 0; i < k.size(); ++i) EXPECT_NEAR(k[i], k_ref[i], 2e-6) << "k " << i;
  }
}

TEST(CpuRope, RejectsOddHeadDim) {
  std::vector<float> q(3), inv_freq(1);
  const int32_t position = 0;
  auto device = MakeDevice();
  EXPECT_EQ(device->Rope({q.data(), nullptr, &position, inv_freq.data(), 1, 1, 0, 3}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CpuSwiGlu, MatchesReferenceAndMayAlias) {
  const int64_t tokens = 3, inter = 67;
  const std::vector<float> gate = Random(tokens * inter, 14, -20.0f, 20.0f);
  const std::vector<float> up = Random(tokens * inter, 15, -2.0f, 2.0f);
  std::vector<float> out(gate.size()), in_place = gate;
  auto device = MakeDevice();
  ASSERT_TRUE(device->SwiGlu({gate.data(), up.data(), out.data(), tokens, inter}).ok());
  ASSERT_TRUE(device->SwiGlu({in_place.data(), up.data(), in_place.data(), tokens, inter}).ok());
  for (size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i];
    ExpectRelNear(out[i], g / (1.0 + std::exp(-g)) * up[i], 1e-5, StrCat("i=", i));
    EXPECT_EQ(in_place[i], out[i]);
  }
}

TEST(CpuEmbedding, CopiesF32AndBf16RowsExactly) {
  const int64_t vocab = 11, hidden = 67;
  const std::vector<float> table = Random(vocab * hidden, 16);
  const std::vector<uint16_t> table_bf16 = ToBf16(table);
  const std::vector<int32_t> ids = {10, 0, 3, 3};
  auto device = MakeDevice();
  std::vector<float> out(ids.size() * hidden), out_bf16(ids.size() * hidden);
  ASSERT_TRUE(device->Embedding({{table.data(), DType::kF32, vocab, hidden}, ids.data(),
                                 out.data(), 4}).ok());
  ASSERT_TRUE(device->Embedding({{table_bf16.data(), DType::kBF16, vocab, hidden}, ids.data(),
                                 out_bf16.data(), 4}).ok());
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int64_t i = 0; i < hidden; ++i) {
      EXPECT_EQ(out[t * hidden + i], table[ids[t] * hidden + i]);
      EXPECT_EQ(out_bf16[t * hidden + i], Bf16ToF32(table_bf16[ids[t] * hidden + i]));
    }
  }
  const int32_t bad = 11;
  EXPECT_EQ(device->Embedding({{table.data(), DType::kF32, vocab, hidden}, &bad, out.data(), 1})
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CpuAdd, AddsElementwise) {
  for (int64_t n : {int64_t{67}, int64_t{100003}}) {
    const std::vector<float> x = Random(n, 17);
    const std::vector<float> y0 = Random(n, 18);
    std::vector<float> y = y0;
    auto device = MakeDevice();
    ASSERT_TRUE(device->Add({x.data(), y.data(), n}).ok());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], y0[i] + x[i]) << i;
  }
}

// ---- Memory ---------------------------------------------------------------------------------

TEST(CpuDevice, AllocatesAlignedZeroedMemoryAndCopies) {
  auto device = MakeDevice();
  EXPECT_EQ(device->name(), "cpu");
  for (size_t bytes : {size_t{1}, size_t{1000}, size_t{3} << 20}) {
    auto buffer = device->Allocate(bytes);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    EXPECT_EQ((*buffer)->size_bytes(), bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>((*buffer)->data()) % 64, 0u);
    const auto* bytes_ptr = (*buffer)->as<unsigned char>();
    size_t nonzero = 0;
    for (size_t i = 0; i < bytes; ++i) nonzero += bytes_ptr[i] != 0;
    EXPECT_EQ(nonzero, 0u);
    std::vector<unsigned char> src(bytes), back(bytes);
    for (size_t i = 0; i < bytes; ++i) src[i] = static_cast<unsigned char>(i * 7 + 1);
    ASSERT_TRUE(device->CopyToDevice((*buffer)->data(), src.data(), bytes).ok());
    ASSERT_TRUE(device->CopyToHost(back.data(), (*buffer)->data(), bytes).ok());
    ASSERT_TRUE(device->Synchronize().ok());
    EXPECT_EQ(back, src);
  }
}

TEST(CpuDevice, RejectsNegativeThreads) {
  EXPECT_EQ(MakeCpuDevice({.threads = -1}).status().code(), absl::StatusCode::kInvalidArgument);
}

#if !defined(STRATA_HAVE_CUDA)
TEST(CudaDevice, UnavailableWithoutCudaBuild) {
  const auto device = MakeCudaDevice(0);
  EXPECT_EQ(device.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(device.status().message().find("without the CUDA backend"), absl::string_view::npos);
}
#endif

}  // namespace
}  // namespace strata::kernels
