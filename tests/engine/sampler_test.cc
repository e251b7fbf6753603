#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "tests/kernels/sampling_reference.h"

namespace strata::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr float kInf = std::numeric_limits<float>::infinity();

SamplingParams Seeded(uint64_t seed) {
  SamplingParams p;
  p.seed = seed;
  return p;
}

std::vector<float> LogitsFromProbs(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

// Draws `n` tokens, each from a fresh copy of `logits` (Sample uses its input as scratch).
std::vector<int32_t> Draw(Sampler& sampler, const std::vector<float>& logits, int n) {
  std::vector<int32_t> ids;
  ids.reserve(n);
  for (int i = 0; i < n; ++i) {
    std::vector<float> scratch = logits;
    ids.push_back(sampler.Sample(scratch, {}, {}));
  }
  return ids;
}

std::vector<double> Frequencies(const std::vector<int32_t>& ids, size_t vocab) {
  std::vector<double> freq(vocab, 0.0);
  for (int32_t id : ids) freq.at(id) += 1.0 / static_cast<double>(ids.size());
  return freq;
}

std::set<int32_t> Distinct(const std::vector<int32_t>& ids) { return {ids.begin(), ids.end()}; }

TEST(SamplingParamsTest, DefaultsAndBoundaryValuesAreValid) {
  EXPECT_TRUE(SamplingParams{}.Validate().ok());
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_k = -1;
  p.top_p = 1.0f;
  p.min_p = 1.0f;
  p.presence_penalty = -2.0f;
  p.frequency_penalty = 2.0f;
  p.repetition_penalty = 0.01f;
  EXPECT_TRUE(p.Validate().ok()) << p.Validate();
}

TEST(SamplingParamsTest, RejectsEachBadFieldByName) {
  struct Case {
    void (*mutate)(SamplingParams&);
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](SamplingParams& p) { p.temperature = -0.5f; },
       "temperature must be a finite number >= 0, got -0.5"},
      {[](SamplingParams& p) { p.temperature = std::numeric_limits<float>::quiet_NaN(); },
       "temperature must be a finite number >= 0, got nan"},
      {[](SamplingParams& p) { p.top_k = -2; }, "top_k must be -1 or 0 (off) or >= 1, got -2"},
      {[](SamplingParams& p) { p.top_p = 1.5f; }, "top_p must be in (0, 1], got 1.5"},
      {[](SamplingParams& p) { p.top_p = 0.0f; }, "top_p must be in (0, 1], got 0"},
      {[](SamplingParams& p) { p.min_p = -0.25f; }, "min_p must be in [0, 1], got -0.25"},
      {[](SamplingParams& p) { p.min_p = 2.0f; }, "min_p must be in [0, 1], got 2"},
      {[](SamplingParams& p) { p.repetition_penalty = 0.0f; },
       "repetition_penalty must be a finite number > 0, got 0"},
      {[](SamplingParams& p) { p.repetition_penalty = kInf; },
       "repetition_penalty must be a finite number > 0, got inf"},
      {[](SamplingParams& p) { p.presence_penalty = 2.5f; },
       "presence_penalty must be in [-2, 2], got 2.5"},
      {[](SamplingParams& p) { p.frequency_penalty = -3.0f; },
       "frequency_penalty must be in [-2, 2], got -3"},
  };
  for (const Case& c : cases) {
    SamplingParams p;
    c.mutate(p);
    const absl::Status status = p.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_EQ(status.message(), c.message);
  }
}

TEST(SamplerTest, GreedyPicksArgmax) {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler sampler(p);
  std::vector<float> logits = {0.1f, 3.0f, -1.0f, 2.0f};
  EXPECT_EQ(sampler.Sample(logits, {}, {}), 1);
}

TEST(SamplerTest, GreedyBreaksTiesTowardsLowestId) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_p = 0.5f;  // filters never change the greedy answer
  Sampler sampler(p);
  std::vector<float> logits = {1.0f, 5.0f, 2.0f, 5.0f, 5.0f};
  EXPECT_EQ(sampler.Sample(logits, {}, {}), 1);
}

TEST(SamplerTest, ArgmaxSkipsNanAndHandlesAllMasked) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{nan, -1.0f, nan, 0.5f}), 3);
  EXPECT_EQ(Sampler::Argmax(std::vector<float>{-kInf, -kInf, -kInf}), 0);
}

TEST(SamplerTest, TopKOneEqualsGreedy) {
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  SamplingParams p = Seeded(3);
  p.top_k = 1;
  Sampler sampler(p);
  for (int round = 0; round < 50; ++round) {
    std::vector<float> logits(1000);
    for (float& x : logits) x = normal(gen);
    logits[999] = logits[round] = 10.0f + round;  // a tie: the lower id must win
    const int32_t expected = Sampler::Argmax(logits);
    ASSERT_EQ(expected, round);
    EXPECT_EQ(sampler.Sample(logits, {}, {}), expected);
  }
}

TEST(SamplerTest, SameSeedSameSequenceOtherSeedDiffers) {
  const std::vector<float> logits(64, 0.0f);  // uniform: every draw is informative
  Sampler a(Seeded(42)), b(Seeded(42)), c(Seeded(43));
  const std::vector<int32_t> from_a = Draw(a, logits, 500);
  EXPECT_EQ(from_a, Draw(b, logits, 500));
  EXPECT_NE(from_a, Draw(c, logits, 500));
}

TEST(SamplerTest, UnseededSamplersDiffer) {
  const std::vector<float> logits(64, 0.0f);
  Sampler a{SamplingParams{}}, b{SamplingParams{}};
  EXPECT_NE(Draw(a, logits, 100), Draw(b, logits, 100));
}

TEST(SamplerTest, FrequenciesMatchSoftmaxOverTemperature) {
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, -2.0f, 1.5f, 0.7f};
  for (float temperature : {1.0f, 0.7f, 1.8f}) {
    SamplingParams p = Seeded(1234);
    p.temperature = temperature;
    Sampler sampler(p);
    const std::vector<double> freq = Frequencies(Draw(sampler, logits, 200000), logits.size());
    double z = 0.0;
    for (float l : logits) z += std::exp(l / temperature);
    for (size_t i = 0; i < logits.size(); ++i) {
      EXPECT_NEAR(freq[i], std::exp(logits[i] / temperature) / z, 0.01)
          << "token " << i << " temperature " << temperature;
    }
  }
}

TEST(SamplerTest, TopKReturnsExactlyTheKMostLikely) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 2.5f, 0.0f, 2.0f, 1.0f, -3.0f};
  SamplingParams p = Seeded(5);
  p.top_k = 3;
  Sampler sampler(p);
  const std::vector<int32_t> ids = Draw(sampler, logits, 20000);
  EXPECT_EQ(Distinct(ids), (std::set<int32_t>{1, 3, 5}));
  // Renormalised over the three: e^3, e^2.5, e^2.
  const std::vector<double> freq = Frequencies(ids, logits.size());
  const double z = std::exp(3.0) + std::exp(2.5) + std::exp(2.0);
  EXPECT_NEAR(freq[1], std::exp(3.0) / z, 0.015);
  EXPECT_NEAR(freq[5], std::exp(2.0) / z, 0.015);
}

TEST(SamplerTest, TopPKeepsTheSmallestSetReachingP) {
  // Shuffled positions: 0.3 at id 2, 0.5 at id 3, 0.05 at id 0, 0.15 at id 1.
  const std::vector<float> logits = LogitsFromProbs({0.05, 0.15, 0.3, 0.5});
  SamplingParams p = Seeded(9);
  p.top_p = 0.8f;
  Sampler sampler(p);
  const std::vector<int32_t> ids = Draw(sampler, logits, 20000);
  EXPECT_EQ(Distinct(ids), (std::set<int32_t>{2, 3}));
  EXPECT_NEAR(Frequencies(ids, 4)[3], 0.5 / 0.8, 0.015);
}

TEST(SamplerTest, TopPAlwaysKeepsTheMostLikely) {
  const std::vector<float> logits = LogitsFromProbs({0.2, 0.6, 0.2});
  SamplingParams p = Seeded(9);
  p.top_p = 0.01f;
  Sampler sampler(p);
  EXPECT_EQ(Distinct(Draw(sampler, logits, 2000)), (std::set<int32_t>{1}));
}

TEST(SamplerTest, TopPOverManyEqualTokensGrowsTheNucleus) {
  // 1000 equal tokens, top_p 0.5: exactly 500 kept (lowest ids on ties), beyond the first
  // partial-sort chunk.
  const std::vector<float> logits(1000, 0.25f);
  SamplingParams p = Seeded(11);
  p.top_p = 0.5f;
  Sampler sampler(p);
  const std::set<int32_t> seen = Distinct(Draw(sampler, logits, 20000));
  ASSERT_EQ(seen.size(), 500u);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 499);
}

TEST(SamplerTest, TopPOverALargeFlatVocabularyKeepsTheLowestIdsOfTheEdgeBucket) {
  // 20000 equal tokens (more than the histogram's buckets, so the histogram path runs and all of
  // them share its edge bucket): top_p 0.5 keeps exactly ids 0..9999.
  const std::vector<float> logits(20000, -1.0f);
  SamplingParams p = Seeded(23);
  p.top_p = 0.5f;
  Sampler sampler(p);
  const std::set<int32_t> seen = Distinct(Draw(sampler, logits, 1000));
  EXPECT_LT(*seen.begin(), 100);
  EXPECT_GE(*seen.rbegin(), 9900);
  EXPECT_LT(*seen.rbegin(), 10000);
}

TEST(SamplerTest, TopPOnFullVocabularyStaysInsideReferenceNucleus) {
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(151936);
  for (float& x : logits) x = normal(gen);
  // Reference nucleus by a full sort in double precision.
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const double max_logit = logits[order[0]];
  double z = 0.0;
  for (float l : logits) z += std::exp(l - max_logit);
  std::set<int32_t> nucleus;
  for (double mass = 0.0; mass < 0.9 * z;) {
    const int32_t id = order[nucleus.size()];
    nucleus.insert(id);
    mass += std::exp(logits[id] - max_logit);
  }
  ASSERT_GT(nucleus.size(), 256u);  // several growth rounds of the partial sort
  SamplingParams p = Seeded(21);
  p.top_p = 0.9f;
  Sampler sampler(p);
  for (int32_t id : Draw(sampler, logits, 300)) EXPECT_TRUE(nucleus.count(id)) << id;
}

TEST(SamplerTest, MinPDropsTokensBelowFractionOfTheBest) {
  // Relative to the best: 1, 0.75, 0.5, 0.25. min_p 0.6 keeps {0, 1}.
  const std::vector<float> logits = LogitsFromProbs({0.4, 0.3, 0.2, 0.1});
  SamplingParams p = Seeded(13);
  p.min_p = 0.6f;
  Sampler sampler(p);
  const std::vector<int32_t> ids = Draw(sampler, logits, 20000);
  EXPECT_EQ(Distinct(ids), (std::set<int32_t>{0, 1}));
  EXPECT_NEAR(Frequencies(ids, 4)[0], 0.4 / 0.7, 0.015);
}

TEST(SamplerTest, TopKAppliesBeforeTopP) {
  // top_k 3 renormalises to 0.4375, 0.3125, 0.25 so top_p 0.7 keeps two tokens; top_p alone
  // over the original 0.35, 0.25, 0.2, ... would keep three.
  const std::vector<float> logits = LogitsFromProbs({0.35, 0.25, 0.2, 0.1, 0.1});
  SamplingParams p = Seeded(17);
  p.top_k = 3;
  p.top_p = 0.7f;
  Sampler both(p);
  EXPECT_EQ(Distinct(Draw(both, logits, 20000)), (std::set<int32_t>{0, 1}));
  p.top_k = 0;
  Sampler top_p_only(p);
  EXPECT_EQ(Distinct(Draw(top_p_only, logits, 20000)), (std::set<int32_t>{0, 1, 2}));
}

TEST(SamplerTest, MaskedAndNanLogitsAreNeverSampled) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> logits = {-kInf, 0.0f, nan, 0.0f, -kInf};
  for (bool filtered : {false, true}) {
    SamplingParams p = Seeded(19);
    if (filtered) p.top_p = 0.99f;
    Sampler sampler(p);
    EXPECT_EQ(Distinct(Draw(sampler, logits, 5000)), (std::set<int32_t>{1, 3}));
  }
  Sampler sampler(Seeded(19));
  std::vector<float> all_masked = {-kInf, -kInf};
  EXPECT_EQ(sampler.Sample(all_masked, {}, {}), 0);
}

TEST(SamplerTest, PenaltiesProduceExactLogits) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, -1.0f, 0.5f, 3.0f};
  const std::vector<int32_t> prompt = {0, 1, 1, -1, 6};  // -1 and 6: outside vocab, ignored
  const std::vector<int32_t> generated = {2, 2, 1, 3, 99};
  Sampler::ApplyPenalties(p, logits, prompt, generated);
  // 0: prompt only -> 2/2.  1: prompt + generated once -> -2*2 - 0.25 - 0.5.
  // 2: generated twice -> 1/2 - 2*0.25 - 0.5.  3: generated once -> -1*2 - 0.25 - 0.5.
  EXPECT_THAT(logits, ElementsAre(1.0f, -4.75f, -0.5f, -2.75f, 0.5f, 3.0f));
}

TEST(SamplerTest, NeutralPenaltiesChangeNothing) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f};
  const std::vector<int32_t> ids = {0, 1, 2, 2};
  Sampler::ApplyPenalties(SamplingParams{}, logits, ids, ids);
  EXPECT_THAT(logits, ElementsAre(2.0f, -2.0f, 1.0f));
}

TEST(SamplerTest, NegativePenaltiesEncourageRepeats) {
  SamplingParams p;
  p.presence_penalty = -1.0f;
  p.frequency_penalty = -0.5f;
  std::vector<float> logits = {0.0f, 0.0f};
  const std::vector<int32_t> generated = {1, 1, 1};
  Sampler::ApplyPenalties(p, logits, {}, generated);
  EXPECT_THAT(logits, ElementsAre(0.0f, 2.5f));
}

TEST(SamplerTest, SampleAppliesPenaltiesFirst) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 1.2f;
  Sampler sampler(p);
  std::vector<float> logits = {2.0f, 1.9f};  // 2 / 1.2 = 1.67 < 1.9
  const std::vector<int32_t> generated = {0};
  EXPECT_EQ(sampler.Sample(logits, {}, generated), 1);
}

TEST(SamplerTest, AppendPenaltyEntriesListsDistinctIdsWithOutputCounts) {
  const std::vector<int32_t> prompt = {5, 1, 1, -1, 9, 3};  // -1 and 9: outside vocab 8
  const std::vector<int32_t> generated = {3, 3, 7, 100, 1};
  SamplingParams p;
  p.repetition_penalty = 1.3f;
  std::vector<kernels::PenaltyEntry> entries = {{.row = 9, .token = 0}};  // appended to
  Sampler(p).AppendPenaltyEntries(4, prompt, generated, 8, &entries);
  auto key = [](const kernels::PenaltyEntry& e) {
    return std::vector<int32_t>{e.row, e.token, e.output_count};
  };
  std::vector<std::vector<int32_t>> got;
  for (const auto& e : entries) got.push_back(key(e));
  EXPECT_THAT(got, ElementsAre(ElementsAre(9, 0, 0), ElementsAre(4, 1, 1), ElementsAre(4, 3, 2),
                               ElementsAre(4, 5, 0), ElementsAre(4, 7, 1)));
  // Without a repetition penalty a prompt-only id would change nothing: generated ids only.
  p.repetition_penalty = 1.0f;
  p.presence_penalty = 0.5f;
  entries.clear();
  Sampler(p).AppendPenaltyEntries(0, prompt, generated, 8, &entries);
  got.clear();
  for (const auto& e : entries) got.push_back(key(e));
  EXPECT_THAT(got, ElementsAre(ElementsAre(0, 1, 1), ElementsAre(0, 3, 2), ElementsAre(0, 7, 1)));
  entries.clear();
  Sampler(SamplingParams{}).AppendPenaltyEntries(0, prompt, generated, 8, &entries);
  EXPECT_TRUE(entries.empty());
}

TEST(SamplerTest, NextRowCarriesTheParamsAndConsumesWhatSampleConsumes) {
  SamplingParams p = Seeded(31);
  p.temperature = 0.8f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.repetition_penalty = 1.1f;
  p.presence_penalty = 0.2f;
  p.frequency_penalty = -0.3f;
  Sampler a(p), b(p);
  const kernels::SamplingRow first = a.NextRow();
  EXPECT_EQ(first.temperature, 0.8f);
  EXPECT_EQ(first.top_k, 40);
  EXPECT_EQ(first.top_p, 0.9f);
  EXPECT_EQ(first.min_p, 0.05f);
  EXPECT_EQ(first.repetition_penalty, 1.1f);
  EXPECT_EQ(first.presence_penalty, 0.2f);
  EXPECT_EQ(first.frequency_penalty, -0.3f);
  EXPECT_GE(first.uniform, 0.0);
  EXPECT_LT(first.uniform, 1.0);
  // Sample consumes exactly one uniform, even when the row needs none (all masked).
  std::vector<float> masked = {-kInf, -kInf};
  EXPECT_EQ(b.Sample(masked, {}, {}), 0);
  EXPECT_EQ(a.NextRow().uniform, b.NextRow().uniform);
  // Greedy rows draw nothing.
  SamplingParams greedy = Seeded(31);
  greedy.temperature = 0.0f;
  Sampler g(greedy);
  EXPECT_EQ(g.NextRow().uniform, 0.0);
  greedy.temperature = 1.0f;
  greedy.top_k = 1;
  EXPECT_EQ(Sampler(greedy).NextRow().uniform, 0.0);
}

SamplingParams ParamsOf(const kernels::SamplingRow& row, uint64_t seed) {
  SamplingParams p;
  p.temperature = row.temperature;
  p.top_k = row.top_k;
  p.top_p = row.top_p;
  p.min_p = row.min_p;
  p.repetition_penalty = row.repetition_penalty;
  p.presence_penalty = row.presence_penalty;
  p.frequency_penalty = row.frequency_penalty;
  p.seed = seed;
  return p;
}

// The engine may sample a request on the device (penalty entries + NextRow + Device::Sample) or
// on the host (Sampler::Sample): a seeded request draws the same tokens either way, token after
// token, whatever else shares the batch.
TEST(SamplerTest, DeviceSamplingDrawsWhatSampleDraws) {
  auto device_or = kernels::MakeCpuDevice({.threads = 2});
  ASSERT_TRUE(device_or.ok());
  kernels::Device& device = **device_or;
  std::mt19937 rng(4242);
  int64_t drawn = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const int64_t vocab = std::vector<int64_t>{1, 7, 1000, 32003}[trial % 4];
    const int rows = std::uniform_int_distribution<int>(1, 6)(rng);
    std::vector<std::unique_ptr<Sampler>> host, on_device;
    std::vector<std::vector<int32_t>> prompts(rows), generated(rows);
    for (int r = 0; r < rows; ++r) {
      const SamplingParams p = ParamsOf(kernels::RandomSamplingRow(rng, vocab), rng());
      ASSERT_TRUE(p.Validate().ok()) << p.Validate();
      host.push_back(std::make_unique<Sampler>(p));
      on_device.push_back(std::make_unique<Sampler>(p));
      std::uniform_int_distribution<int32_t> id(-3, static_cast<int32_t>(vocab) + 3);
      for (int i = std::uniform_int_distribution<int>(0, 40)(rng); i > 0; --i) {
        prompts[r].push_back(id(rng));
      }
      for (int i = std::uniform_int_distribution<int>(0, 10)(rng); i > 0; --i) {
        generated[r].push_back(id(rng));
      }
    }
    for (int step = 0; step < 3; ++step) {
      SCOPED_TRACE(StrCat("trial ", trial, " vocab ", vocab, " step ", step));
      std::vector<float> logits(rows * vocab);
      for (int r = 0; r < rows; ++r) {
        kernels::FillRow(&logits[r * vocab], vocab, kernels::RandomRowKind(rng), rng);
      }
      // Host: penalties alone (for the exact logits), then Sample on a fresh copy.
      std::vector<float> host_penalized = logits;
      std::vector<int32_t> host_ids(rows);
      for (int r = 0; r < rows; ++r) {
        const std::span<float> row(&host_penalized[r * vocab], vocab);
        Sampler::ApplyPenalties(host[r]->params(), row, prompts[r], generated[r]);
        std::vector<float> scratch(logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
        host_ids[r] = host[r]->Sample(scratch, prompts[r], generated[r]);
      }
      // Device: one batch.
      std::vector<kernels::PenaltyEntry> entries;
      std::vector<kernels::SamplingRow> params(rows);
      for (int r = 0; r < rows; ++r) {
        on_device[r]->AppendPenaltyEntries(r, prompts[r], generated[r], vocab, &entries);
        params[r] = on_device[r]->NextRow();
      }
      ASSERT_TRUE(device
                      .ApplyPenalties({.logits = logits.data(), .rows_params = params.data(),
                                       .entries = entries.data(),
                                       .num_entries = static_cast<int64_t>(entries.size()),
                                       .rows = rows, .cols = vocab})
                      .ok());
      ASSERT_EQ(std::memcmp(logits.data(), host_penalized.data(), logits.size() * sizeof(float)),
                0);
      std::vector<int32_t> device_ids(rows, -1);
      ASSERT_TRUE(device.Sample({logits.data(), params.data(), device_ids.data(), rows, vocab})
                      .ok());
      ASSERT_EQ(device_ids, host_ids);
      for (int r = 0; r < rows; ++r) {
        generated[r].push_back(host_ids[r]);
        drawn += host[r]->params().IsGreedy() ? 0 : 1;
      }
    }
  }
  EXPECT_GT(drawn, 200);
}

}  // namespace
}  // namespace strata::engine
