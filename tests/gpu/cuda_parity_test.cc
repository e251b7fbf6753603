// CudaDevice against its CPU twin: each implemented CUDA op runs on the same random input on
// both devices and the outputs are compared. Skips (with the reason) where MakeCudaDevice fails:
// builds without CUDA and machines without a GPU.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "tests/kernels/random_tensors.h"

namespace strata::kernels {
namespace {

class CudaParityTest : public testing::Test {
 protected:
  void SetUp() override {
    auto cuda = MakeCudaDevice(0);
    if (!cuda.ok()) GTEST_SKIP() << cuda.status().message();
    cuda_ = std::move(cuda).value();
    auto cpu = MakeCpuDevice({.threads = 2});
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_ = std::move(cpu).value();
  }

  // A device buffer holding `host`; kept alive until the test ends.
  template <typename T>
  T* Upload(const std::vector<T>& host) {
    auto buffer = cuda_->Allocate(host.size() * sizeof(T));
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    EXPECT_TRUE(cuda_->CopyToDevice((*buffer)->data(), host.data(), host.size() * sizeof(T)).ok());
    buffers_.push_back(std::move(buffer).value());
    return buffers_.back()->as<T>();
  }

  std::vector<float> Download(const float* device_ptr, size_t n) {
    std::vector<float> host(n);
    EXPECT_TRUE(cuda_->Synchronize().ok());
    EXPECT_TRUE(cuda_->CopyToHost(host.data(), device_ptr, n * sizeof(float)).ok());
    return host;
  }

  std::unique_ptr<Device> cuda_;
  std::unique_ptr<Device> cpu_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

void ExpectClose(const std::vector<float>& cpu, const std::vector<float>& gpu, double rel,
                 double abs) {
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_NEAR(gpu[i], cpu[i], rel * std::abs(cpu[i]) + abs) << "element " << i;
  }
}

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

TEST_F(CudaParityTest, AttentionRopeAndKvWritesAreNotYetImplemented) {
  EXPECT_EQ(cuda_->Rope({}).code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(cuda_->WriteKv({}).code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(cuda_->PagedAttention({}).code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace strata::kernels
