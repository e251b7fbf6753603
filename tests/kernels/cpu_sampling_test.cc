// The CPU twin of the sampling kernels (kernels/cpu/cpu_sampling.h, Device::ApplyPenalties and
// Device::Sample on the CpuDevice) against the brute-force reference of SampleParams in
// sampling_reference.h, on fresh random rows; penalties against their formula; argument errors.
#include "kernels/cpu/cpu_sampling.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device.h"
#include "tests/kernels/sampling_reference.h"

namespace strata::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::unique_ptr<Device> MakeDevice(int threads = 2) {
  auto device = MakeCpuDevice({.threads = threads});
  EXPECT_TRUE(device.ok()) << device.status();
  return std::move(device).value();
}

SamplingRow Row(float temperature, int32_t top_k, float top_p, float min_p, double uniform) {
  SamplingRow row;
  row.temperature = temperature;
  row.top_k = top_k;
  row.top_p = top_p;
  row.min_p = min_p;
  row.uniform = uniform;
  return row;
}

// Device::Sample of one row of logits under several rows' parameters (a fresh copy each).
std::vector<int32_t> SampleCopies(Device& device, const std::vector<float>& logits,
                                  const std::vector<SamplingRow>& rows) {
  const int64_t cols = static_cast<int64_t>(logits.size());
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<float> scratch(n * cols);
  for (int64_t r = 0; r < n; ++r) std::copy(logits.begin(), logits.end(), &scratch[r * cols]);
  std::vector<int32_t> out(n, -7);
  const absl::Status status = device.Sample(
      {.logits = scratch.data(), .rows_params = rows.data(), .out = out.data(), .rows = n,
       .cols = cols});
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

struct Tally {
  int64_t compared = 0;
  int64_t drawn = 0;  // compared draws that got past the argmax
  int64_t boundary = 0;
};

// One random row and parameter set, drawn with `num_uniforms` uniforms (and the clamped
// out-of-range ones), against the reference.
void CheckRandomRow(Device& device, int64_t cols, std::mt19937& rng, int num_uniforms,
                    Tally& tally) {
  std::vector<float> logits(cols);
  const RowKind kind = RandomRowKind(rng);
  FillRow(logits.data(), cols, kind, rng);
  const SamplingRow params = RandomSamplingRow(rng, cols);
  std::vector<SamplingRow> rows(num_uniforms, params);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (SamplingRow& row : rows) row.uniform = unit(rng);
  for (double u : {0.0, 1.0 - 0x1.0p-53, -0.5, 1.0, 7.0, std::nan("")}) {
    rows.push_back(params);
    rows.back().uniform = u;
  }
  const std::vector<int32_t> ids = SampleCopies(device, logits, rows);
  const ReferenceKept kept = ReferenceFilter(logits.data(), cols, params);
  for (size_t i = 0; i < rows.size(); ++i) {
    const ReferenceDraw want = ReferenceSample(kept, rows[i].uniform);
    ++tally.compared;
    tally.drawn += kept.argmax_only ? 0 : 1;
    if (ids[i] == want.id) continue;
    ++tally.boundary;
    ASSERT_TRUE(want.boundary)
        << "cols " << cols << " kind " << static_cast<int>(kind) << " T " << params.temperature
        << " top_k " << params.top_k << " top_p " << params.top_p << " min_p " << params.min_p
        << " u " << rows[i].uniform << ": got " << ids[i] << ", want " << want.id;
  }
}

TEST(CpuSamplingTest, MatchesTheReferenceOnRandomRows) {
  auto device = MakeDevice();
  std::mt19937 rng(20240611);
  struct Size {
    int64_t cols;
    int cases;
    int uniforms;
  };
  Tally tally;
  for (const Size& size : {Size{1, 40, 8}, Size{7, 400, 32}, Size{1000, 250, 32},
                           Size{32003, 60, 16}, Size{128256, 6, 8}}) {
    for (int c = 0; c < size.cases; ++c) {
      SCOPED_TRACE(StrCat("cols ", size.cols, " case ", c));
      CheckRandomRow(*device, size.cols, rng, size.uniforms, tally);
      if (HasFatalFailure()) return;
    }
  }
  // The twin and the reference differ only by summation order (~1e-16 of the mass), so a draw
  // within 1e-9 of a boundary should be about a one-in-a-million event; f32 partial sums, for
  // one, land several draws there.
  EXPECT_LE(tally.boundary * 10000, tally.compared) << tally.boundary << " of " << tally.compared;
  EXPECT_GE(tally.drawn * 2, tally.compared);  // most cases reach the filters and the draw
  std::printf("compared %lld ids (%lld drawn, %lld at a boundary)\n",
              static_cast<long long>(tally.compared), static_cast<long long>(tally.drawn),
              static_cast<long long>(tally.boundary));
}

// The deliberate change from the old heap-order draw: kept top-k tokens are walked by id.
TEST(CpuSamplingTest, TopKDrawWalksIdsUpwards) {
  // Weights relative to the best (id 1): id 0 0.25, id 1 1, id 2 0.5, id 3 0.125.
  const std::vector<float> logits = {std::log(0.25f), 0.0f, std::log(0.5f), std::log(0.125f)};
  auto device = MakeDevice();
  // top_k 2 keeps ids 1 (mass 1) and 2 (0.5): u < 2/3 gives 1, above gives 2.
  EXPECT_EQ(SampleCopies(*device, logits,
                         {Row(1, 2, 1, 0, 0.0), Row(1, 2, 1, 0, 0.66), Row(1, 2, 1, 0, 0.67),
                          Row(1, 2, 1, 0, 0.999)}),
            (std::vector<int32_t>{1, 1, 2, 2}));
  // top_k 3 keeps 0, 1, 2: boundaries at 0.25/1.75 and 1.25/1.75.
  EXPECT_EQ(SampleCopies(*device, logits,
                         {Row(1, 3, 1, 0, 0.1), Row(1, 3, 1, 0, 0.2), Row(1, 3, 1, 0, 0.5),
                          Row(1, 3, 1, 0, 0.8)}),
            (std::vector<int32_t>{0, 1, 1, 2}));
}

TEST(CpuSamplingTest, GreedyAndNonFiniteRowsGiveTheArgmax) {
  const float nan = std::nanf("");
  auto device = MakeDevice();
  const std::vector<float> logits = {1.0f, 3.0f, nan, 3.0f};
  EXPECT_EQ(SampleCopies(*device, logits,
                         {Row(0, 0, 1, 0, 0.99), Row(9e-6f, 0, 1, 0, 0.99),
                          Row(1, 1, 1, 0, 0.99)}),
            (std::vector<int32_t>{1, 1, 1}));
  EXPECT_EQ(SampleCopies(*device, {-kInf, -kInf, -kInf}, {Row(1, 0, 0.5f, 0, 0.7)}),
            std::vector<int32_t>{0});
  EXPECT_EQ(SampleCopies(*device, {nan, nan}, {Row(1, 0, 1, 0, 0.7)}), std::vector<int32_t>{0});
  EXPECT_EQ(SampleCopies(*device, {0.0f, kInf, 1.0f, kInf}, {Row(1, 0, 1, 0, 0.9)}),
            std::vector<int32_t>{1});
}

// Only parameters outside their ranges keep nothing; then the argmax, not a crash.
TEST(CpuSamplingTest, NothingKeptGivesTheArgmax) {
  auto device = MakeDevice();
  const std::vector<float> logits = {0.5f, 2.0f, 1.0f};
  EXPECT_EQ(SampleCopies(*device, logits,
                         {Row(1, 0, 1, 1.5f, 0.5), Row(1, 2, 1, 1.5f, 0.5),
                          Row(std::nanf(""), 0, 1, 0, 0.5), Row(std::nanf(""), 2, 1, 0, 0.5)}),
            (std::vector<int32_t>{1, 1, 1, 1}));
}

// The kept mass is exactly 1 + 1 + 1 + 1: uniform u lands on id floor(4u) of the four kept.
TEST(CpuSamplingTest, UniformsOutsideTheUnitIntervalAreClamped) {
  auto device = MakeDevice();
  const std::vector<float> logits = {0.0f, -kInf, 0.0f, 0.0f, -kInf, 0.0f};
  EXPECT_EQ(SampleCopies(*device, logits,
                         {Row(1, 0, 1, 0, -3.0), Row(1, 0, 1, 0, std::nan("")),
                          Row(1, 0, 1, 0, 0.3), Row(1, 0, 1, 0, 0.6), Row(1, 0, 1, 0, 1.0),
                          Row(1, 0, 1, 0, 1e300)}),
            (std::vector<int32_t>{0, 0, 2, 3, 5, 5}));
}

// Rows run on several threads give what one row at a time gives.
TEST(CpuSamplingTest, RowsInParallelMatchRowsOneByOne) {
  constexpr int64_t kRows = 64, kCols = 5003;
  std::mt19937 rng(5);
  std::vector<float> logits(kRows * kCols);
  std::vector<SamplingRow> rows(kRows);
  for (int64_t r = 0; r < kRows; ++r) {
    FillRow(&logits[r * kCols], kCols, RandomRowKind(rng), rng);
    rows[r] = RandomSamplingRow(rng, kCols);
  }
  std::vector<float> scratch = logits;
  std::vector<int32_t> batched(kRows, -1);
  auto device = MakeDevice(4);
  ASSERT_TRUE(device->Sample({scratch.data(), rows.data(), batched.data(), kRows, kCols}).ok());
  for (int64_t r = 0; r < kRows; ++r) {
    std::vector<float> one(logits.begin() + r * kCols, logits.begin() + (r + 1) * kCols);
    EXPECT_EQ(cpu::SampleRow(one, rows[r]), batched[r]) << "row " << r;
  }
}

// The formula of ApplyPenaltiesParams with the frequency term rounded once (long double is
// exact for it short of a double rounding, which these values never hit).
float ExpectedPenalty(float logit, const SamplingRow& row, int32_t count) {
  if (row.repetition_penalty != 1.0f) {
    logit = logit > 0.0f ? logit / row.repetition_penalty : logit * row.repetition_penalty;
  }
  if (count > 0) {
    logit = static_cast<float>(static_cast<long double>(logit) -
                               static_cast<long double>(row.frequency_penalty) * count);
    logit -= row.presence_penalty;
  }
  return logit;
}

TEST(CpuSamplingTest, PenaltiesAreExactAndTouchOnlyTheirEntries) {
  std::mt19937 rng(77);
  for (int64_t cols : {1, 7, 1000, 32003}) {
    constexpr int64_t kRows = 9;
    std::vector<float> logits(kRows * cols);
    std::vector<SamplingRow> rows(kRows);
    for (int64_t r = 0; r < kRows; ++r) {
      FillRow(&logits[r * cols], cols, RandomRowKind(rng), rng);
      rows[r] = RandomSamplingRow(rng, cols);
    }
    rows[0].repetition_penalty = 1.0f;  // presence / frequency alone
    rows[0].presence_penalty = 0.5f;
    const std::vector<PenaltyEntry> entries = RandomPenaltyEntries(rng, kRows, cols, 300);
    std::vector<float> want = logits;
    for (const PenaltyEntry& e : entries) {
      float& x = want[e.row * cols + e.token];
      x = ExpectedPenalty(x, rows[e.row], e.output_count);
    }
    auto device = MakeDevice();
    ASSERT_TRUE(device->ApplyPenalties({.logits = logits.data(), .rows_params = rows.data(),
                                        .entries = entries.data(),
                                        .num_entries = static_cast<int64_t>(entries.size()),
                                        .rows = kRows, .cols = cols})
                    .ok());
    // Bit for bit, NaN included.
    EXPECT_EQ(std::memcmp(logits.data(), want.data(), logits.size() * sizeof(float)), 0)
        << "cols " << cols;
  }
}

TEST(CpuSamplingTest, PenaltyValuesMatchTheOpenAiAndHfFormulas) {
  SamplingRow row;
  row.repetition_penalty = 2.0f;
  row.presence_penalty = 0.5f;
  row.frequency_penalty = 0.25f;
  EXPECT_EQ(cpu::PenalizedLogit(2.0f, row, 0), 1.0f);     // prompt only: 2 / 2
  EXPECT_EQ(cpu::PenalizedLogit(-2.0f, row, 1), -4.75f);  // -2 * 2 - 0.25 - 0.5
  EXPECT_EQ(cpu::PenalizedLogit(1.0f, row, 2), -0.5f);    // 1 / 2 - 2 * 0.25 - 0.5
  EXPECT_EQ(cpu::PenalizedLogit(-kInf, row, 3), -kInf);
  // One rounding for the frequency term: 1 - 0.3f * 5 is -0.5 when the product is rounded
  // first, the float below -0.5 when it is not.
  SamplingRow frequency;
  frequency.frequency_penalty = 0.3f;
  EXPECT_EQ(cpu::PenalizedLogit(1.0f, frequency, 5), std::nextafter(-0.5f, -1.0f));
}

TEST(CpuSamplingTest, RejectsBadArgumentsAndChangesNothing) {
  auto device = MakeDevice();
  std::vector<float> logits = {1.0f, 2.0f, 3.0f, 4.0f};
  const std::vector<float> before = logits;
  const std::vector<SamplingRow> rows(2);
  int32_t out[2] = {-1, -1};
  auto invalid = [](const absl::Status& s) { return s.code() == absl::StatusCode::kInvalidArgument; };
  EXPECT_TRUE(invalid(device->Sample({nullptr, rows.data(), out, 2, 2})));
  EXPECT_TRUE(invalid(device->Sample({logits.data(), nullptr, out, 2, 2})));
  EXPECT_TRUE(invalid(device->Sample({logits.data(), rows.data(), nullptr, 2, 2})));
  EXPECT_TRUE(invalid(device->Sample({logits.data(), rows.data(), out, -1, 2})));
  EXPECT_TRUE(invalid(device->Sample({logits.data(), rows.data(), out, 2, 0})));
  EXPECT_TRUE(invalid(device->Sample({logits.data(), rows.data(), out, 1, int64_t{1} << 31})));
  EXPECT_TRUE(device->Sample({nullptr, nullptr, nullptr, 0, 2}).ok());  // nothing to do
  EXPECT_EQ(out[0], -1);

  const PenaltyEntry good{.row = 1, .token = 1, .output_count = 1};
  auto penalties = [&](std::vector<PenaltyEntry> entries, int64_t rows_n, int64_t cols) {
    return device->ApplyPenalties({.logits = logits.data(), .rows_params = rows.data(),
                                   .entries = entries.data(),
                                   .num_entries = static_cast<int64_t>(entries.size()),
                                   .rows = rows_n, .cols = cols});
  };
  // A bad entry anywhere rejects the call before any logit changes.
  EXPECT_TRUE(invalid(penalties({good, {.row = 2, .token = 0}}, 2, 2)));
  EXPECT_TRUE(invalid(penalties({good, {.row = -1, .token = 0}}, 2, 2)));
  EXPECT_TRUE(invalid(penalties({good, {.row = 0, .token = 2}}, 2, 2)));
  EXPECT_TRUE(invalid(penalties({good, {.row = 0, .token = -1}}, 2, 2)));
  EXPECT_TRUE(invalid(penalties({good}, -1, 2)));
  EXPECT_TRUE(invalid(penalties({good}, 2, 0)));
  EXPECT_EQ(logits, before);
  EXPECT_TRUE(invalid(device->ApplyPenalties({nullptr, rows.data(), &good, 1, 2, 2})));
  EXPECT_TRUE(invalid(device->ApplyPenalties({logits.data(), nullptr, &good, 1, 2, 2})));
  EXPECT_TRUE(invalid(device->ApplyPenalties({logits.data(), rows.data(), nullptr, 1, 2, 2})));
  EXPECT_TRUE(invalid(device->ApplyPenalties({logits.data(), rows.data(), &good, -1, 2, 2})));
  EXPECT_TRUE(device->ApplyPenalties({nullptr, nullptr, nullptr, 0, 0, 2}).ok());
  EXPECT_EQ(logits, before);
}

}  // namespace
}  // namespace strata::kernels
