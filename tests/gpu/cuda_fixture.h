// The fixture of the kernel parity tests: a CudaDevice and its CPU twin, device buffers that
// live until the test ends, and the comparison the tests share. Skips (with MakeCudaDevice's
// reason) where there is no GPU or no CUDA in the build. Test thread only.
#pragma once

#include <cmath>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device.h"

namespace strata::kernels {

class CudaFixture : public testing::Test {
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

  // n elements at `device_ptr`, after the queued work finished.
  template <typename T>
  std::vector<T> Download(const T* device_ptr, size_t n) {
    std::vector<T> host(n);
    EXPECT_TRUE(cuda_->Synchronize().ok());
    EXPECT_TRUE(cuda_->CopyToHost(host.data(), device_ptr, n * sizeof(T)).ok());
    return host;
  }

  std::unique_ptr<Device> cuda_;
  std::unique_ptr<Device> cpu_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

// The GPU output is NaN-free (tests poison it with NaN first) and within rel * |cpu| + abs of
// the CPU's.
inline void ExpectClose(const std::vector<float>& cpu, const std::vector<float>& gpu, double rel,
                        double abs) {
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_FALSE(std::isnan(gpu[i])) << "element " << i;
    ASSERT_NEAR(gpu[i], cpu[i], rel * std::abs(cpu[i]) + abs) << "element " << i;
  }
}

}  // namespace strata::kernels
