// Device::Argmax on the CPU: the id the greedy engine path takes for each logit row, with
// Sampler::Argmax's rules (lowest index on ties, NaN never wins, nothing above -inf gives 0).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/device.h"
#include "tests/kernels/random_tensors.h"

namespace strata::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<int32_t> RunArgmax(const std::vector<float>& logits, int64_t rows) {
  auto cpu = MakeCpuDevice({.threads = 2});
  EXPECT_TRUE(cpu.ok());
  std::vector<int32_t> out(rows, -7);
  const int64_t cols = static_cast<int64_t>(logits.size()) / rows;
  EXPECT_TRUE((*cpu)->Argmax({.logits = logits.data(), .out = out.data(), .rows = rows,
                              .cols = cols}).ok());
  return out;
}

TEST(CpuArgmaxTest, TiesNanAndInfinitiesFollowTheSamplersRules) {
  const std::vector<float> logits = {
      1, 3, 3, 2,               // tie: the lower index
      kNaN, 0.5f, kNaN, 0.25f,  // NaN never wins
      kNaN, kNaN, kNaN, kNaN,   // nothing comparable: 0
      -kInf, -kInf, -kInf, -kInf,
      -kInf, -1e30f, kInf, kInf,  // +inf wins, the first one
  };
  EXPECT_EQ(RunArgmax(logits, 5), (std::vector<int32_t>{1, 1, 0, 0, 2}));
}

TEST(CpuArgmaxTest, RandomRowsMatchAPlainScan) {
  constexpr int64_t kRows = 37, kCols = 1001;
  std::vector<float> logits = Random(kRows * kCols, /*seed=*/11, -4.0f, 4.0f);
  for (int64_t r = 0; r < kRows; r += 5) logits[r * kCols + (r * 13) % kCols] = 100.0f;
  const std::vector<int32_t> got = RunArgmax(logits, kRows);
  for (int64_t r = 0; r < kRows; ++r) {
    int32_t want = 0;
    for (int64_t i = 1; i < kCols; ++i) {
      if (logits[r * kCols + i] > logits[r * kCols + want]) want = static_cast<int32_t>(i);
    }
    EXPECT_EQ(got[r], want) << "row " << r;
  }
}

TEST(CpuArgmaxTest, BadArgumentsAreInvalid) {
  auto cpu = MakeCpuDevice({.threads = 1});
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ((*cpu)->Argmax({.logits = nullptr, .out = nullptr, .rows = 1, .cols = 4}).code(),
            absl::StatusCode::kInvalidArgument);
  float x = 0;
  int32_t out = 0;
  EXPECT_EQ((*cpu)->Argmax({.logits = &x, .out = &out, .rows = 1, .cols = 0}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*cpu)->Argmax({.logits = nullptr, .out = nullptr, .rows = 0, .cols = 4}).ok());
}

}  // namespace
}  // namespace strata::kernels
