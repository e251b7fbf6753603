// CpuDevice: the Device on host memory. Buffers are 64-byte aligned and zeroed; copies are
// memcpy and Synchronize is a no-op because every kernel finishes before it returns. Kernels run
// on CpuDeviceConfig::threads OpenMP threads (GEMM via CpuGemm, sampling in cpu_sampling.h, the
// rest in cpu_kernels.h).
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "kernels/cpu/cpu_gemm.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_sampling.h"
#include "kernels/device.h"

namespace strata::kernels {
namespace {

// Large buffers (KV pools, activations of long prompts) come from mmap: the kernel hands out
// zeroed pages lazily, so allocating a multi-GiB pool neither stalls on memset nor commits
// memory that is never touched. Small ones come from aligned_alloc + memset.
constexpr size_t kMmapThresholdBytes = size_t{2} << 20;
constexpr size_t kAlignment = 64;

class HostBuffer final : public Buffer {
 public:
  HostBuffer(void* data, size_t size_bytes, size_t mapped_bytes)
      : data_(data), size_bytes_(size_bytes), mapped_bytes_(mapped_bytes) {}
  ~HostBuffer() override {
    if (mapped_bytes_ > 0) {
      munmap(data_, mapped_bytes_);
    } else {
      std::free(data_);
    }
  }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  void* data() override { return data_; }
  size_t size_bytes() const override { return size_bytes_; }

 private:
  void* data_;
  size_t size_bytes_;
  size_t mapped_bytes_;  // 0 when the memory came from aligned_alloc
};

}  // namespace

absl::StatusOr<std::unique_ptr<Buffer>> AllocateHostBuffer(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded >= kMmapThresholdBytes) {
    void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      return absl::ResourceExhaustedError(
          StrCat("cpu: cannot map ", bytes, " bytes: ", std::strerror(errno)));
    }
    return std::make_unique<HostBuffer>(p, bytes, rounded);
  }
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(StrCat("cpu: cannot allocate ", bytes, " bytes"));
  }
  std::memset(p, 0, rounded);
  return std::make_unique<HostBuffer>(p, bytes, 0);
}

namespace {

class CpuDevice final : public Device {
 public:
  explicit CpuDevice(int threads) : threads_(threads), gemm_({.threads = threads}) {}

  std::string name() const override { return "cpu"; }
  bool host_visible() const override { return true; }
  absl::StatusOr<std::unique_ptr<Buffer>> Allocate(size_t bytes) override {
    return AllocateHostBuffer(bytes);
  }
  absl::StatusOr<std::unique_ptr<Buffer>> AllocateHost(size_t bytes) override {
    return AllocateHostBuffer(bytes);
  }
  absl::Status CopyToDevice(void* dst, const void* host_src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, host_src, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyToHost(void* host_dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(host_dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status Synchronize() override { return absl::OkStatus(); }

  absl::Status Gemm(const GemmParams& p) override { return gemm_.Run(p); }
  absl::Status RmsNorm(const RmsNormParams& p) override { return cpu::RmsNorm(p, threads_); }
  absl::Status Rope(const RopeParams& p) override { return cpu::Rope(p, threads_); }
  absl::Status WriteKv(const WriteKvParams& p) override { return cpu::WriteKv(p, threads_); }
  absl::Status QuantWriteKv(const QuantWriteKvParams& p) override {
    return cpu::QuantWriteKv(p, threads_);
  }
  absl::Status KiviWriteKv(const KiviWriteKvParams& p) override {
    return cpu::KiviWriteKv(p, threads_);
  }
  absl::Status QuantPagedAttention(const QuantAttentionParams& p) override {
    return cpu::QuantPagedAttention(p, threads_);
  }
  absl::Status AttentionScores(const AttentionScoresParams& p) override {
    return cpu::AttentionScores(p, threads_);
  }
  absl::Status KvCompact(const KvCompactParams& p) override { return cpu::KvCompact(p, threads_); }
  absl::Status PagedAttention(const PagedAttentionParams& p) override {
    return cpu::PagedAttention(p, threads_);
  }
  absl::Status SwiGlu(const SwiGluParams& p) override { return cpu::SwiGlu(p, threads_); }
  absl::Status Embedding(const EmbeddingParams& p) override {
    return cpu::Embedding(p, threads_);
  }
  absl::Status Add(const AddParams& p) override { return cpu::Add(p, threads_); }
  absl::Status Argmax(const ArgmaxParams& p) override { return cpu::Argmax(p, threads_); }
  absl::Status ApplyPenalties(const ApplyPenaltiesParams& p) override {
    return cpu::ApplyPenalties(p, threads_);
  }
  absl::Status Sample(const SampleParams& p) override { return cpu::Sample(p, threads_); }

 private:
  const int threads_;
  cpu::CpuGemm gemm_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Device>> MakeCpuDevice(const CpuDeviceConfig& config) {
  if (config.threads < 0) {
    return absl::InvalidArgumentError(
        StrCat("cpu: threads must be >= 0 (0 = all cores), got ", config.threads));
  }
  const int threads = config.threads > 0 ? config.threads : omp_get_num_procs();
  return std::make_unique<CpuDevice>(threads);
}

}  // namespace strata::kernels
