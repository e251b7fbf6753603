// CudaDevice's ApplyPenalties and Sample against their CPU twin (kernels/cpu/cpu_sampling.cc) on
// fresh random batches: 1 to 300 rows, vocabularies up to 128256, rows of ties, -inf, NaN and
// +inf, every filter combination. Penalised logits must equal the CPU's bit for bit; sampled ids
// (written over a poisoned output) must equal the CPU's except where the uniform, or a top-p
// edge, lies within 1e-9 of a boundary by the brute-force reference (sampling_reference.h),
// and must repeat exactly from run to run. Skips (with the reason) where MakeCudaDevice fails:
// builds without CUDA, machines without a GPU.
//
// STRATA_SAMPLING_PARITY_MAX_ROWS / _MAX_COLS cap the shapes, for slow stand-ins of a GPU.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device.h"
#include "tests/gpu/cuda_fixture.h"
#include "tests/kernels/sampling_reference.h"

namespace strata::kernels {
namespace {

using CudaSamplingParityTest = CudaFixture;

constexpr int32_t kPoison = -12345;

int64_t Capped(const char* env, int64_t value) {
  const char* cap = std::getenv(env);
  return cap == nullptr ? value : std::max<int64_t>(1, std::min<int64_t>(value, std::atoll(cap)));
}

struct Shape {
  int64_t rows;
  int64_t cols;
};

TEST_F(CudaSamplingParityTest, PenaltiesAndSamplesMatchTheCpuTwin) {
#if !defined(__AVX512F__)
  GTEST_SKIP() << "the CPU twin's exp is std::exp in a build without AVX-512; the CUDA kernel "
                  "reproduces the AVX-512 exp bit for bit, so ids are only comparable there";
#endif
  std::mt19937 rng(31337);
  int64_t compared = 0, drawn = 0, boundary = 0;
  for (const Shape& full : {Shape{1, 1}, Shape{3, 7}, Shape{300, 7}, Shape{1, 1000},
                            Shape{300, 1000}, Shape{64, 32003}, Shape{7, 128256},
                            Shape{120, 128256}}) {
    const Shape shape{Capped("STRATA_SAMPLING_PARITY_MAX_ROWS", full.rows),
                      Capped("STRATA_SAMPLING_PARITY_MAX_COLS", full.cols)};
    const int64_t rows = shape.rows, cols = shape.cols;
    SCOPED_TRACE(StrCat("rows ", rows, " cols ", cols));
    std::vector<float> logits(rows * cols);
    std::vector<SamplingRow> params(rows);
    for (int64_t r = 0; r < rows; ++r) {
      FillRow(&logits[r * cols], cols, RandomRowKind(rng), rng);
      params[r] = RandomSamplingRow(rng, cols);
    }
    const std::vector<PenaltyEntry> entries = RandomPenaltyEntries(rng, rows, cols, 50);
    const ApplyPenaltiesParams penalties{.rows_params = params.data(), .entries = entries.data(),
                                         .num_entries = static_cast<int64_t>(entries.size()),
                                         .rows = rows, .cols = cols};

    // CPU: penalties, then a sample on a copy.
    std::vector<float> cpu_logits = logits;
    ApplyPenaltiesParams p = penalties;
    p.logits = cpu_logits.data();
    ASSERT_TRUE(cpu_->ApplyPenalties(p).ok());
    const std::vector<float> penalized = cpu_logits;
    std::vector<int32_t> cpu_ids(rows, kPoison);
    ASSERT_TRUE(cpu_->Sample({cpu_logits.data(), params.data(), cpu_ids.data(), rows, cols}).ok());

    // CUDA: the same, twice from the same penalised logits.
    const SamplingRow* d_params = Upload(params);
    float* d_logits = Upload(logits);
    p = penalties;
    p.logits = d_logits;
    p.rows_params = d_params;
    p.entries = Upload(entries);
    ASSERT_TRUE(cuda_->ApplyPenalties(p).ok());
    const std::vector<float> gpu_penalized = Download(d_logits, logits.size());
    ASSERT_EQ(std::memcmp(gpu_penalized.data(), penalized.data(), logits.size() * sizeof(float)),
              0);
    std::vector<int32_t> gpu_ids[2];
    for (std::vector<int32_t>& ids : gpu_ids) {
      int32_t* d_out = Upload(std::vector<int32_t>(rows, kPoison));
      ASSERT_TRUE(cuda_->Sample({Upload(penalized), d_params, d_out, rows, cols}).ok());
      ids = Download(d_out, rows);
    }
    EXPECT_EQ(gpu_ids[0], gpu_ids[1]) << "not deterministic";

    for (int64_t r = 0; r < rows; ++r) {
      const int32_t gpu = gpu_ids[0][r];
      ASSERT_TRUE(gpu >= 0 && gpu < cols) << "row " << r << ": " << gpu;
      const ReferenceKept kept = ReferenceFilter(&penalized[r * cols], cols, params[r]);
      ++compared;
      drawn += kept.argmax_only ? 0 : 1;
      if (gpu == cpu_ids[r]) continue;
      ++boundary;
      const SamplingRow& q = params[r];
      EXPECT_TRUE(ReferenceSample(kept, q.uniform).boundary)
          << "row " << r << " T " << q.temperature << " top_k " << q.top_k << " top_p "
          << q.top_p << " min_p " << q.min_p << " u " << q.uniform << ": cuda " << gpu
          << ", cpu " << cpu_ids[r] << ", reference "
          << ReferenceSample(kept, q.uniform).id;
    }
  }
  EXPECT_LE(boundary * 1000, compared) << boundary << " of " << compared;
  std::printf("compared %lld rows (%lld drawn), %lld differ at a boundary\n",
              static_cast<long long>(compared), static_cast<long long>(drawn),
              static_cast<long long>(boundary));
}

// Exact ids where every backend must agree: equal weights keep the lowest ids.
TEST_F(CudaSamplingParityTest, FlatRowsKeepTheLowestIds) {
  const int64_t cols = Capped("STRATA_SAMPLING_PARITY_MAX_COLS", 20000) / 4 * 4;
  auto row = [](int32_t top_k, float top_p, double uniform) {
    SamplingRow r;
    r.temperature = 1.0f;
    r.top_k = top_k;
    r.top_p = top_p;
    r.uniform = uniform;
    return r;
  };
  // Every weight is 1, so every sum is exact. top_p 0.5 keeps cols / 2 ids, and u a quarter of
  // a weight below 1 lands in the last of them; top_k cols / 4 with u 0.5 lands on cols / 8,
  // where the running mass first exceeds cols / 8.
  const std::vector<SamplingRow> params = {row(0, 0.5f, 1.0 - 0.5 / (cols / 2.0) / 2),
                                           row(static_cast<int32_t>(cols / 4), 1.0f, 0.5),
                                           row(0, 0.5f, 0.0)};
  const std::vector<int32_t> want = {static_cast<int32_t>(cols / 2 - 1),
                                     static_cast<int32_t>(cols / 8), 0};
  const int64_t rows = static_cast<int64_t>(params.size());
  const std::vector<float> logits(rows * cols, -2.0f);
  std::vector<float> cpu_logits = logits;
  std::vector<int32_t> cpu_ids(rows, kPoison);
  ASSERT_TRUE(cpu_->Sample({cpu_logits.data(), params.data(), cpu_ids.data(), rows, cols}).ok());
  EXPECT_EQ(cpu_ids, want);
  int32_t* d_out = Upload(std::vector<int32_t>(rows, kPoison));
  ASSERT_TRUE(cuda_->Sample({Upload(logits), Upload(params), d_out, rows, cols}).ok());
  EXPECT_EQ(Download(d_out, rows), want);
}

TEST_F(CudaSamplingParityTest, RejectsWhatTheCpuRejects) {
  const std::vector<SamplingRow> rows(2);
  float* d_logits = Upload(std::vector<float>(4));
  const SamplingRow* d_rows = Upload(rows);
  int32_t* d_out = Upload(std::vector<int32_t>(2));
  for (Device* device : {cpu_.get(), cuda_.get()}) {  // no call reads its arrays
    SCOPED_TRACE(device->name());
    float* logits = d_logits;
    EXPECT_EQ(device->Sample({logits, d_rows, d_out, -1, 2}).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(device->Sample({nullptr, d_rows, d_out, 2, 2}).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(device->Sample({logits, d_rows, d_out, 2, 0}).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(device->ApplyPenalties({nullptr, d_rows, nullptr, 3, 2, 2}).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(device->ApplyPenalties({logits, d_rows, nullptr, -1, 2, 2}).code(),
              absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace strata::kernels
