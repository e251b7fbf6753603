// CudaDevice against its CPU twin: each implemented CUDA op runs on the same random input on
// both devices and the outputs are compared. Skips (with the reason) where MakeCudaDevice fails:
// builds without CUDA and machines without a GPU.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "tests/gpu/cuda_fixture.h"
#include "tests/kernels/random_tensors.h"

namespace strata::kernels {
namespace {

using CudaParityTest = CudaFixture;

TEST_F(CudaParityTest, AllocationIsZeroedAndCopiesRoundTrip) {
  const std::vector<float> zeros(1000, 0.0f), data = Random(1000, 1);
  auto buffer = cuda_->Allocate(1000 * sizeof(float));
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  EXPECT_EQ(Download((*buffer)->as<float>(), 1000), zeros);
  ASSERT_TRUE(cuda_->CopyToDevice((*buffer)->data(), data.data(), 1000 * sizeof(float)).ok());
  EXPECT_EQ(Download((*buffer)->as<float>(), 1000), data);
  EXPECT_EQ(cuda_->name(), "cuda:0");
}

TEST_F(CudaParityTest, Gemm) {
  const int64_t n = 129, k = 67;
  for (int64_t m : {1, 17}) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      for (bool with_bias_and_accumulate : {false, true}) {
        SCOPED_TRACE(StrCat("m=", m, " ", DTypeName(dtype), " bias+acc=", with_bias_and_accumulate));
        const std::vector<float> a = Random(m * k, 2), w = Random(n * k, 3), bias = Random(n, 4);
        const std::vector<float> c0 = Random(m * n, 5);
        const std::vector<uint16_t> w_bf16 = ToBf16(w);
        const void* w_host = dtype == DType::kBF16 ? static_cast<const void*>(w_bf16.data())
                                                   : w.data();
        GemmParams p{.a = a.data(), .b = {w_host, dtype, n, k},
                     .bias = with_bias_and_accumulate ? bias.data() : nullptr,
                     .m = m, .accumulate = with_bias_and_accumulate};
        std::vector<float> cpu_c = c0;
        p.c = cpu_c.data();
        ASSERT_TRUE(cpu_->Gemm(p).ok());

        p.a = Upload(a);
        p.b.data = dtype == DType::kBF16 ? static_cast<const void*>(Upload(w_bf16)) : Upload(w);
        p.bias = with_bias_and_accumulate ? Upload(bias) : nullptr;
        p.c = Upload(c0);
        ASSERT_TRUE(cuda_->Gemm(p).ok());
        // Both round activations to bf16 identically; only f32 summation order differs.
        ExpectClose(cpu_c, Download(p.c, cpu_c.size()), 1e-5, 1e-5);
      }
    }
  }
}

TEST_F(CudaParityTest, RmsNorm) {
  const int64_t tokens = 5, hidden = 1000;
  const std::vector<float> x = Random(tokens * hidden, 6, -3.0f, 3.0f), w = Random(hidden, 7);
  std::vector<float> cpu_out(x.size());
  ASSERT_TRUE(cpu_->RmsNorm({x.data(), w.data(), cpu_out.data(), tokens, hidden, 1e-5f}).ok());
  float* dx = Upload(x);
  ASSERT_TRUE(cuda_->RmsNorm({dx, Upload(w), dx, tokens, hidden, 1e-5f}).ok());  // in place
  ExpectClose(cpu_out, Download(dx, x.size()), 1e-5, 1e-6);
}

TEST_F(CudaParityTest, SwiGlu) {
  const int64_t tokens = 3, inter = 1001;
  const std::vector<float> gate = Random(tokens * inter, 8, -20.0f, 20.0f);
  const std::vector<float> up = Random(tokens * inter, 9);
  std::vector<float> cpu_out(gate.size());
  ASSERT_TRUE(cpu_->SwiGlu({gate.data(), up.data(), cpu_out.data(), tokens, inter}).ok());
  float* d_out = Upload(std::vector<float>(gate.size()));
  ASSERT_TRUE(cuda_->SwiGlu({Upload(gate), Upload(up), d_out, tokens, inter}).ok());
  ExpectClose(cpu_out, Download(d_out, gate.size()), 1e-5, 1e-7);
}

TEST_F(CudaParityTest, Add) {
  const int64_t n = 100003;
  const std::vector<float> x = Random(n, 10), y = Random(n, 11);
  std::vector<float> cpu_y = y;
  ASSERT_TRUE(cpu_->Add({x.data(), cpu_y.data(), n}).ok());
  float* dy = Upload(y);
  ASSERT_TRUE(cuda_->Add({Upload(x), dy, n}).ok());
  EXPECT_EQ(Download(dy, n), cpu_y);
}

TEST_F(CudaParityTest, Embedding) {
  const int64_t vocab = 50, hidden = 67;
  const std::vector<float> table = Random(vocab * hidden, 12);
  const std::vector<uint16_t> table_bf16 = ToBf16(table);
  const std::vector<int32_t> ids = {49, 0, 7, 7, 20};
  const int64_t tokens = static_cast<int64_t>(ids.size());
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const void* host_table = dtype == DType::kF32 ? static_cast<const void*>(table.data())
                                                  : table_bf16.data();
    std::vector<float> cpu_out(tokens * hidden);
    ASSERT_TRUE(cpu_->Embedding({{host_table, dtype, vocab, hidden}, ids.data(), cpu_out.data(),
                                 tokens}).ok());
    const void* device_table = dtype == DType::kF32 ? static_cast<const void*>(Upload(table))
                                                    : Upload(table_bf16);
    float* d_out = Upload(std::vector<float>(tokens * hidden));
    ASSERT_TRUE(cuda_->Embedding({{device_table, dtype, vocab, hidden}, Upload(ids), d_out,
                                  tokens}).ok());
    EXPECT_EQ(Download(d_out, cpu_out.size()), cpu_out) << DTypeName(dtype);
  }
}

TEST_F(CudaParityTest, Rope) {
  const int64_t tokens = 7;
  const int32_t qh = 8, kvh = 2, d = 64;
  std::vector<float> q = Random(tokens * qh * d, 13), k = Random(tokens * kvh * d, 14);
  const std::vector<int32_t> positions = {0, 1, 2, 17, 511, 4095, 100000};
  std::vector<float> inv_freq(d / 2);
  for (int32_t j = 0; j < d / 2; ++j) inv_freq[j] = std::pow(10000.0f, -2.0f * j / d);
  float* dq = Upload(q);
  float* dk = Upload(k);
  ASSERT_TRUE(cpu_->Rope({q.data(), k.data(), positions.data(), inv_freq.data(), tokens, qh, kvh,
                          d}).ok());
  ASSERT_TRUE(cuda_->Rope({dq, dk, Upload(positions), Upload(inv_freq), tokens, qh, kvh, d}).ok());
  ExpectClose(q, Download(dq, q.size()), 1e-5, 1e-6);
  ExpectClose(k, Download(dk, k.size()), 1e-5, 1e-6);
}

// Two sequences (a 5-row prefill chunk over 21 tokens, one decode over 40 tokens) on shuffled
// shuffled pages: K/V written on both devices (the pools must be equal), then attention into an
// output poisoned with NaN (the outputs must agree).
TEST_F(CudaParityTest, WriteKvAndPagedAttention) {
  const int32_t qh = 8, kvh = 2, d = 64, bs = 16, pages = 8, max_blocks = 3;
  const std::vector<int32_t> query_start = {0, 5, 6}, context_lens = {21, 40};
  const std::vector<int32_t> tables = {6, 1, 0, 3, 7, 2};
  const int64_t rows = 6, kv_dim = kvh * d, page_floats = 2 * bs * kv_dim;
  std::vector<float> pool = Random(pages * page_floats, 15);  // old contents: fully visible
  std::vector<int64_t> slots;
  for (int32_t t = 16; t < 21; ++t) slots.push_back(tables[t / bs] * bs + t % bs);
  slots.push_back(static_cast<int64_t>(tables[max_blocks + 39 / bs]) * bs + 39 % bs);
  const std::vector<float> k = Random(rows * kv_dim, 16), v = Random(rows * kv_dim, 17);
  const std::vector<float> q = Random(rows * qh * d, 18);
  float* dpool = Upload(pool);
  const KvPoolView cpu_kv{pool.data(), pages, bs, kvh, d};
  const KvPoolView gpu_kv{dpool, pages, bs, kvh, d};
  ASSERT_TRUE(cpu_->WriteKv({k.data(), v.data(), slots.data(), rows, cpu_kv}).ok());
  ASSERT_TRUE(cuda_->WriteKv({Upload(k), Upload(v), Upload(slots), rows, gpu_kv}).ok());
  EXPECT_EQ(Download(dpool, pool.size()), pool);
  std::vector<float> cpu_out(rows * qh * d);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  ASSERT_TRUE(cpu_->PagedAttention({q.data(), cpu_out.data(), cpu_kv, query_start.data(),
                                    context_lens.data(), tables.data(), 2, max_blocks, qh,
                                    scale}).ok());
  float* dout = Upload(std::vector<float>(cpu_out.size(), NAN));
  ASSERT_TRUE(cuda_->PagedAttention({Upload(q), dout, gpu_kv, Upload(query_start),
                                     Upload(context_lens), Upload(tables), 2, max_blocks, qh,
                                     scale}).ok());
  const std::vector<float> gpu_out = Download(dout, cpu_out.size());
  for (float x : gpu_out) ASSERT_FALSE(std::isnan(x));
  ExpectClose(cpu_out, gpu_out, 1e-4, 1e-5);
}

// Decode rows over long contexts: the CUDA kernel cuts each context into splits that run in
// parallel (split-K) and merges them; short and one-token contexts leave some splits empty. The
// row count comes from the caller (num_tokens) or is read back from the device (0).
TEST_F(CudaParityTest, LongContextDecodeIsSplitAndMergedLikeTheCpu) {
  const int32_t qh = 8, kvh = 2, d = 128, bs = 16;
  const std::vector<int32_t> context_lens = {3000, 700, 1};
  const std::vector<int32_t> query_start = {0, 1, 2, 3};
  const int32_t max_blocks = (3000 + bs - 1) / bs, seqs = 3;
  const int32_t pages = max_blocks * seqs;
  std::vector<int32_t> ids(pages);
  for (int32_t i = 0; i < pages; ++i) ids[i] = i;
  std::mt19937 rng(21);
  std::shuffle(ids.begin(), ids.end(), rng);
  const std::vector<int32_t> tables = ids;  // [seqs, max_blocks]
  const std::vector<float> pool = Random(static_cast<size_t>(pages) * 2 * bs * kvh * d, rng);
  const std::vector<float> q = Random(seqs * qh * d, rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<float> cpu_out(seqs * qh * d);
  ASSERT_TRUE(cpu_->PagedAttention({q.data(), cpu_out.data(), {const_cast<float*>(pool.data()),
                                    pages, bs, kvh, d}, query_start.data(), context_lens.data(),
                                    tables.data(), seqs, max_blocks, qh, scale}).ok());
  const KvPoolView gpu_kv{Upload(pool), pages, bs, kvh, d};
  for (int64_t hint : {int64_t{3}, int64_t{0}}) {
    float* dout = Upload(std::vector<float>(cpu_out.size(), NAN));
    ASSERT_TRUE(cuda_->PagedAttention({Upload(q), dout, gpu_kv, Upload(query_start),
                                       Upload(context_lens), Upload(tables), seqs, max_blocks, qh,
                                       scale, hint}).ok());
    const std::vector<float> gpu_out = Download(dout, cpu_out.size());
    for (float x : gpu_out) ASSERT_FALSE(std::isnan(x));
    ExpectClose(cpu_out, gpu_out, 1e-4, 1e-5);
  }
}

// Greedy ids on the device: ties take the lowest index, NaN never wins, a row of -inf gives 0.
TEST_F(CudaParityTest, Argmax) {
  constexpr int64_t kCols = 50021;
  std::vector<float> logits = Random(6 * kCols, 22, -8.0f, 8.0f);
  logits[0 * kCols + 7] = logits[0 * kCols + 40000] = 20.0f;  // tie
  for (int64_t i = 0; i < kCols; ++i) logits[1 * kCols + i] = -INFINITY;
  for (int64_t i = 0; i < kCols; i += 3) logits[2 * kCols + i] = NAN;
  logits[3 * kCols + kCols - 1] = INFINITY;
  std::vector<int32_t> cpu_ids(6, -1);
  ASSERT_TRUE(cpu_->Argmax({logits.data(), cpu_ids.data(), 6, kCols}).ok());
  int32_t* dids = Upload(std::vector<int32_t>(6, -1));
  ASSERT_TRUE(cuda_->Argmax({Upload(logits), dids, 6, kCols}).ok());
  std::vector<int32_t> gpu_ids(6);
  ASSERT_TRUE(cuda_->Synchronize().ok());
  ASSERT_TRUE(cuda_->CopyToHost(gpu_ids.data(), dids, gpu_ids.size() * 4).ok());
  EXPECT_EQ(gpu_ids, cpu_ids);
  EXPECT_EQ(cpu_ids[0], 7);
  EXPECT_EQ(cpu_ids[1], 0);
  EXPECT_EQ(cpu_ids[3], kCols - 1);
}

}  // namespace
}  // namespace strata::kernels
