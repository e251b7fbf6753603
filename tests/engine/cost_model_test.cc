#include "engine/cost_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace strata::engine {
namespace {

using Coefficients = CostModel::Coefficients;
using Samples = std::vector<std::pair<StepFeatures, double>>;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// A GPU-like step of a 7B model: 5 ms fixed, 40 us per prompt token, 0.3 ms per decoding
// sequence, 100 ns per context token read.
constexpr Coefficients kTrue = {.base_s = 5e-3,
                                .per_prefill_token_s = 40e-6,
                                .per_decode_seq_s = 0.3e-3,
                                .per_kv_token_s = 100e-9};

double TrueTime(const Coefficients& c, const StepFeatures& f) {
  return c.base_s + c.per_prefill_token_s * f.prefill_tokens + c.per_decode_seq_s * f.decode_seqs +
         c.per_kv_token_s * f.kv_tokens_read + c.per_host_byte_s * f.host_load_bytes +
         c.per_disk_byte_s * f.disk_load_bytes;
}

Coefficients Scaled(Coefficients c, double factor) {
  c.base_s *= factor;
  c.per_prefill_token_s *= factor;
  c.per_decode_seq_s *= factor;
  c.per_kv_token_s *= factor;
  c.per_host_byte_s *= factor;
  c.per_disk_byte_s *= factor;
  return c;
}

// Mixed batches as a continuous-batching engine produces them: half the steps carry a prompt
// chunk, every step decodes up to 64 sequences with contexts of 100..4000 tokens. Draws come
// straight from mt19937 (whose output the standard fixes), not from std::*_distribution (whose
// output it does not), so every standard library sees the same steps.
class StepGenerator {
 public:
  explicit StepGenerator(uint32_t seed) : rng_(seed) {}

  StepFeatures Next() {
    StepFeatures f;
    f.prefill_tokens = Uniform(0, 1) < 0.5 ? 0 : std::floor(Uniform(16, 2048));
    f.decode_seqs = std::floor(Uniform(1, 65));
    f.kv_tokens_read = std::floor(f.decode_seqs * Uniform(100, 4000) + f.prefill_tokens);
    return f;
  }

  double Uniform(double lo, double hi) { return lo + (hi - lo) * (rng_() / 4294967296.0); }
  // Zero-mean noise with standard deviation sd (uniform, so bounded by 1.73 sd).
  double Noise(double sd) { return Uniform(-std::sqrt(3.0) * sd, std::sqrt(3.0) * sd); }

 private:
  std::mt19937 rng_;
};

Samples MakeSamples(const Coefficients& truth, int n, double noise_sd, uint32_t seed) {
  StepGenerator gen(seed);
  Samples samples;
  for (int i = 0; i < n; ++i) {
    const StepFeatures f = gen.Next();
    samples.emplace_back(f, TrueTime(truth, f) * (1 + gen.Noise(noise_sd)));
  }
  return samples;
}

// A start-up profile: a grid of prompt chunk sizes x batch sizes x context lengths, measured
// `repeats` times with noise.
Samples GridProfile(int repeats, double noise_sd, uint32_t seed) {
  StepGenerator gen(seed);
  Samples samples;
  for (int rep = 0; rep < repeats; ++rep) {
    for (double prefill : {0, 256, 512, 1024, 2048}) {
      for (double decode : {0, 8, 32, 64}) {
        for (double context : {128, 1024, 4096}) {
          if (prefill == 0 && decode == 0) continue;
          const StepFeatures f{.prefill_tokens = prefill,
                               .decode_seqs = decode,
                               .kv_tokens_read = decode * context + prefill};
          samples.emplace_back(f, TrueTime(kTrue, f) * (1 + gen.Noise(noise_sd)));
        }
      }
    }
  }
  return samples;
}

// |predicted - true| / true over 200 fresh steps.
std::vector<double> RelErrors(const CostModel& model, const Coefficients& truth, uint32_t seed) {
  StepGenerator gen(seed);
  std::vector<double> errors;
  for (int i = 0; i < 200; ++i) {
    const StepFeatures f = gen.Next();
    const double t = TrueTime(truth, f);
    errors.push_back(std::abs(model.Predict(f) - t) / t);
  }
  return errors;
}

double MaxRelError(const CostModel& model, const Coefficients& truth, uint32_t seed) {
  const std::vector<double> e = RelErrors(model, truth, seed);
  return *std::max_element(e.begin(), e.end());
}

double MeanRelError(const CostModel& model, const Coefficients& truth, uint32_t seed) {
  const std::vector<double> e = RelErrors(model, truth, seed);
  return std::accumulate(e.begin(), e.end(), 0.0) / e.size();
}

void ExpectCoefficientsNear(const Coefficients& got, const Coefficients& want, double rel) {
  EXPECT_NEAR(got.base_s, want.base_s, rel * want.base_s);
  EXPECT_NEAR(got.per_prefill_token_s, want.per_prefill_token_s, rel * want.per_prefill_token_s);
  EXPECT_NEAR(got.per_decode_seq_s, want.per_decode_seq_s, rel * want.per_decode_seq_s);
  EXPECT_NEAR(got.per_kv_token_s, want.per_kv_token_s, rel * want.per_kv_token_s);
  EXPECT_NEAR(got.per_host_byte_s, want.per_host_byte_s, rel * want.per_host_byte_s);
  EXPECT_NEAR(got.per_disk_byte_s, want.per_disk_byte_s, rel * want.per_disk_byte_s);
}

// ---- Fit ----

TEST(CostModelFitTest, RecoversNoiselessCoefficients) {
  const Coefficients fit = CostModel::Fit(MakeSamples(kTrue, 40, 0, 1));
  ExpectCoefficientsNear(fit, kTrue, 1e-6);
  // No sample loads anything from host or disk: those stay exactly 0.
  EXPECT_EQ(fit.per_host_byte_s, 0);
  EXPECT_EQ(fit.per_disk_byte_s, 0);
}

TEST(CostModelFitTest, WithinFivePercentUnderFivePercentNoise) {
  const Coefficients fit = CostModel::Fit(GridProfile(/*repeats=*/4, /*noise_sd=*/0.05, 2));
  EXPECT_NEAR(fit.base_s, kTrue.base_s, 0.10 * kTrue.base_s);  // the smallest term
  EXPECT_NEAR(fit.per_prefill_token_s, kTrue.per_prefill_token_s, 0.05 * kTrue.per_prefill_token_s);
  EXPECT_NEAR(fit.per_decode_seq_s, kTrue.per_decode_seq_s, 0.05 * kTrue.per_decode_seq_s);
  EXPECT_NEAR(fit.per_kv_token_s, kTrue.per_kv_token_s, 0.05 * kTrue.per_kv_token_s);
  EXPECT_LT(MaxRelError(CostModel(fit), kTrue, 200), 0.03);
}

TEST(CostModelFitTest, RecoversTierBandwidths) {
  Coefficients truth = kTrue;
  truth.per_host_byte_s = 1 / 25e9;  // 25 GB/s
  truth.per_disk_byte_s = 1 / 3e9;   // 3 GB/s
  StepGenerator gen(3);
  Samples samples;
  for (int i = 0; i < 60; ++i) {
    StepFeatures f = gen.Next();
    f.host_load_bytes = std::floor(gen.Uniform(0, 2e9));
    f.disk_load_bytes = i % 3 == 0 ? std::floor(gen.Uniform(0, 5e8)) : 0;
    samples.emplace_back(f, TrueTime(truth, f));
  }
  ExpectCoefficientsNear(CostModel::Fit(samples), truth, 1e-6);
}

TEST(CostModelFitTest, ConstantFeatureKeepsFallbackAndBaseTakesTheRest) {
  Coefficients truth = kTrue;
  truth.per_host_byte_s = 1e-10;
  Samples samples = MakeSamples(kTrue, 30, 0, 4);
  for (auto& [f, t] : samples) {
    f.host_load_bytes = 1e6;  // the same in every sample: indistinguishable from base
    t = TrueTime(truth, f);
  }
  Coefficients fallback;
  fallback.per_host_byte_s = 1e-10;
  fallback.per_disk_byte_s = 7e-11;
  const Coefficients fit = CostModel::Fit(samples, fallback);
  Coefficients want = truth;
  want.per_disk_byte_s = 7e-11;  // never varies (always 0): the fallback as given
  ExpectCoefficientsNear(fit, want, 1e-6);

  // Without a fallback the constant host share lands in base.
  const Coefficients no_fallback = CostModel::Fit(samples);
  EXPECT_EQ(no_fallback.per_host_byte_s, 0);
  EXPECT_NEAR(no_fallback.base_s, truth.base_s + 1e6 * 1e-10, 1e-9);
}

TEST(CostModelFitTest, NegativeEffectClampsToZeroAndRestIsRefitted) {
  // Time falls as kv grows: unconstrained least squares would give kv a negative coefficient.
  StepGenerator gen(5);
  Samples samples;
  for (int i = 0; i < 50; ++i) {
    const StepFeatures f = gen.Next();
    samples.emplace_back(
        f, 0.05 + 40e-6 * f.prefill_tokens - 1e-7 * f.kv_tokens_read + 1e-3 * f.decode_seqs);
  }
  const Coefficients fit = CostModel::Fit(samples);
  EXPECT_EQ(fit.per_kv_token_s, 0);
  EXPECT_GE(fit.base_s, 0);
  EXPECT_GE(fit.per_prefill_token_s, 0);
  EXPECT_GE(fit.per_decode_seq_s, 0);
  // With kv at its bound, the other coefficients are the least-squares fit without kv.
  Samples without_kv = samples;
  for (auto& [f, t] : without_kv) f.kv_tokens_read = 0;
  const Coefficients reduced = CostModel::Fit(without_kv);
  EXPECT_NEAR(fit.base_s, reduced.base_s, 1e-9);
  EXPECT_NEAR(fit.per_prefill_token_s, reduced.per_prefill_token_s, 1e-12);
  EXPECT_NEAR(fit.per_decode_seq_s, reduced.per_decode_seq_s, 1e-12);
}

TEST(CostModelFitTest, SkipsInvalidSamplesAndFallsBackWhenNoneLeft) {
  Samples samples = MakeSamples(kTrue, 30, 0, 6);
  StepFeatures nan_feature;
  nan_feature.prefill_tokens = kNaN;
  StepFeatures negative_feature;
  negative_feature.decode_seqs = -3;
  samples.emplace_back(StepFeatures{}, -1.0);
  samples.emplace_back(StepFeatures{}, 0.0);
  samples.emplace_back(StepFeatures{}, kInf);
  samples.emplace_back(StepFeatures{}, kNaN);
  samples.emplace_back(nan_feature, 1.0);
  samples.emplace_back(negative_feature, 1.0);
  ExpectCoefficientsNear(CostModel::Fit(samples), kTrue, 1e-6);

  const Coefficients fallback = Scaled(kTrue, 3);
  ExpectCoefficientsNear(CostModel::Fit({}, fallback), fallback, 0);
  ExpectCoefficientsNear(CostModel::Fit({{nan_feature, 1.0}}, fallback), fallback, 0);
}

// ---- Observe ----

TEST(CostModelObserveTest, ConvergesFromWrongCoefficients) {
  CostModel model(Coefficients{
      .base_s = 20e-3, .per_prefill_token_s = 5e-6, .per_decode_seq_s = 2e-3, .per_kv_token_s = 0});
  EXPECT_GT(MaxRelError(model, kTrue, 100), 0.5);
  StepGenerator gen(7);
  for (int i = 0; i < 50; ++i) {
    const StepFeatures f = gen.Next();
    model.Observe(f, TrueTime(kTrue, f));
  }
  EXPECT_EQ(model.num_observations(), 50);
  EXPECT_LT(MaxRelError(model, kTrue, 100), 0.05);
  ExpectCoefficientsNear(model.coefficients(), kTrue, 0.05);
}

TEST(CostModelObserveTest, ConvergesUnderNoise) {
  CostModel model(Scaled(kTrue, 0.5));
  StepGenerator gen(8);
  for (int i = 0; i < 200; ++i) {
    const StepFeatures f = gen.Next();
    model.Observe(f, TrueTime(kTrue, f) * (1 + gen.Noise(0.05)));
  }
  EXPECT_LT(MaxRelError(model, kTrue, 101), 0.05);
}

TEST(CostModelObserveTest, ForgettingTracksATwiceSlowerMachine) {
  CostModel model(CostModel::Fit(MakeSamples(kTrue, 20, 0, 9)));
  StepGenerator gen(10);
  for (int i = 0; i < 200; ++i) {
    const StepFeatures f = gen.Next();
    model.Observe(f, TrueTime(kTrue, f));
  }
  EXPECT_LT(MaxRelError(model, kTrue, 102), 1e-6);

  const Coefficients slow = Scaled(kTrue, 2);
  for (int i = 0; i < 100; ++i) {
    const StepFeatures f = gen.Next();
    model.Observe(f, TrueTime(slow, f));
  }
  // Old steps still weigh 0.98^100 = 13% of what they did: close, not yet exact (about 8% off
  // on average; about 50% right after the change).
  EXPECT_GT(MeanRelError(model, kTrue, 103), 0.8);
  EXPECT_LT(MeanRelError(model, slow, 103), 0.10);
  for (int i = 0; i < 100; ++i) {
    const StepFeatures f = gen.Next();
    model.Observe(f, TrueTime(slow, f));
  }
  EXPECT_LT(MaxRelError(model, slow, 104), 0.03);
}

TEST(CostModelObserveTest, NeverForgettingAveragesOldAndNew) {
  // Regression guard for the forgetting factor itself: with lambda = 1 the model cannot follow.
  CostModel model(kTrue, 1.0);
  StepGenerator gen(11);
  for (int i = 0; i < 200; ++i) {
    const StepFeatures f = gen.Next();
    model.Observe(f, TrueTime(kTrue, f));
  }
  const Coefficients slow = Scaled(kTrue, 2);
  for (int i = 0; i < 200; ++i) {
    const StepFeatures f = gen.Next();
    model.Observe(f, TrueTime(slow, f));
  }
  EXPECT_GT(MaxRelError(model, slow, 105), 0.15);
}

TEST(CostModelObserveTest, LongRunWithoutHostLoadsThenHostLoadsStaysAccurate) {
  // Thousands of steps never excite the host term; then host loads appear and the model learns
  // their bandwidth without losing the rest.
  Coefficients truth = kTrue;
  truth.per_host_byte_s = 1 / 25e9;
  CostModel model(kTrue);
  StepGenerator gen(12);
  for (int i = 0; i < 5000; ++i) {
    const StepFeatures f = gen.Next();
    model.Observe(f, TrueTime(truth, f));
  }
  for (int i = 0; i < 50; ++i) {
    StepFeatures f = gen.Next();
    f.host_load_bytes = i % 2 == 0 ? 0 : std::floor(gen.Uniform(1e8, 2e9));
    model.Observe(f, TrueTime(truth, f));
  }
  ExpectCoefficientsNear(model.coefficients(), truth, 0.01);
}

TEST(CostModelObserveTest, NoWindupOverTensOfThousandsOfNoisySteps) {
  // No step loads from host or disk, so forgetting alone would grow their variance as
  // 1e6 / 0.98^n until it overflows (n ~ 35,000); recovering from that by restarting the
  // covariance would let one noisy step throw the model ~45% off. The cap keeps every
  // prediction within what 5% noise over a ~50-step memory gives (~8% at worst).
  CostModel model = CostModel::FromProfile(GridProfile(1, 0.05, 15));
  StepGenerator gen(15);
  double worst = 0;
  for (int i = 0; i < 40000; ++i) {
    const StepFeatures f = gen.Next();
    const double t = TrueTime(kTrue, f);
    if (i >= 1000) worst = std::max(worst, std::abs(model.Predict(f) - t) / t);
    model.Observe(f, t * (1 + gen.Noise(0.05)));
  }
  EXPECT_LT(worst, 0.15);
}

TEST(CostModelObserveTest, FromProfileKeepsTheProfileThroughTheFirstSteps) {
  // A model built from Fit alone barely trusts its coefficients, so its first online steps
  // refit four terms from a handful of noisy measurements (over 100% off on some steps). One
  // that has seen the profile only refines it.
  const Samples profile = GridProfile(1, 0.05, 16);
  CostModel model = CostModel::FromProfile(profile);
  EXPECT_EQ(model.num_observations(), 0);
  EXPECT_EQ(model.mean_abs_rel_error(), 0);
  ExpectCoefficientsNear(model.coefficients(), CostModel::Fit(profile), 1e-12);
  StepGenerator gen(16);
  double worst = 0;
  for (int i = 0; i < 20; ++i) {
    const StepFeatures f = gen.Next();
    const double t = TrueTime(kTrue, f);
    worst = std::max(worst, std::abs(model.Predict(f) - t) / t);
    model.Observe(f, t * (1 + gen.Noise(0.05)));
  }
  EXPECT_LT(worst, 0.25);
  EXPECT_EQ(model.num_observations(), 20);
}

TEST(CostModelObserveTest, ClampedTermIsMadeUpByTheOthers) {
  // Time falls as kv grows, so the plain RLS estimate of the kv term is negative. Setting it to
  // 0 alone would leave the others fitted for a negative kv term; projecting in the metric of
  // the covariance refits them, as well as the batch NNLS fit of the same steps does.
  const auto time_s = [](const StepFeatures& f) {
    return 0.05 + 40e-6 * f.prefill_tokens - 1e-7 * f.kv_tokens_read + 1e-3 * f.decode_seqs;
  };
  CostModel online;
  Samples samples;
  StepGenerator gen(14);
  for (int i = 0; i < 300; ++i) {
    const StepFeatures f = gen.Next();
    online.Observe(f, time_s(f));
    samples.emplace_back(f, time_s(f));
  }
  const CostModel batch(CostModel::Fit(samples));
  EXPECT_EQ(online.coefficients().per_kv_token_s, 0);
  double online_error = 0, batch_error = 0;
  for (int i = 0; i < 200; ++i) {
    const StepFeatures f = gen.Next();
    online_error += std::abs(online.Predict(f) - time_s(f)) / time_s(f) / 200;
    batch_error += std::abs(batch.Predict(f) - time_s(f)) / time_s(f) / 200;
  }
  EXPECT_LT(online_error, 1.1 * batch_error);
}

TEST(CostModelObserveTest, PredictNeverNegative) {
  CostModel model;
  EXPECT_EQ(model.Predict(StepFeatures{}), 0);
  // Steps that get faster the more they do push the fit towards negative coefficients.
  StepGenerator gen(13);
  for (int i = 0; i < 100; ++i) {
    const StepFeatures f = gen.Next();
    model.Observe(f, std::max(0.0, 0.2 - 1e-4 * f.prefill_tokens - 1e-3 * f.decode_seqs));
  }
  const Coefficients& c = model.coefficients();
  for (double v : {c.base_s, c.per_prefill_token_s, c.per_decode_seq_s, c.per_kv_token_s,
                   c.per_host_byte_s, c.per_disk_byte_s}) {
    EXPECT_GE(v, 0);
  }
  for (int i = 0; i < 200; ++i) EXPECT_GE(model.Predict(gen.Next()), 0);
  StepFeatures bad;
  bad.prefill_tokens = kNaN;
  bad.decode_seqs = -5;
  bad.kv_tokens_read = kInf;
  EXPECT_EQ(model.Predict(bad), c.base_s);  // invalid features count as 0
}

TEST(CostModelObserveTest, IgnoresInvalidObservations) {
  CostModel model(kTrue);
  StepFeatures ok;
  ok.decode_seqs = 8;
  StepFeatures nan_feature = ok;
  nan_feature.kv_tokens_read = kNaN;
  StepFeatures negative_feature = ok;
  negative_feature.host_load_bytes = -1;
  StepFeatures inf_feature = ok;
  inf_feature.prefill_tokens = kInf;
  model.Observe(ok, kNaN);
  model.Observe(ok, kInf);
  model.Observe(ok, -1e-3);
  model.Observe(ok, 0);  // a clock that did not move
  model.Observe(nan_feature, 1.0);
  model.Observe(negative_feature, 1.0);
  model.Observe(inf_feature, 1.0);
  EXPECT_EQ(model.num_observations(), 0);
  ExpectCoefficientsNear(model.coefficients(), kTrue, 0);
  EXPECT_EQ(model.last_predicted_s(), 0);
  EXPECT_EQ(model.last_measured_s(), 0);
  EXPECT_EQ(model.mean_abs_rel_error(), 0);
}

// ---- Statistics and description ----

TEST(CostModelStatsTest, ErrorStatisticsOnAHandComputedSequence) {
  // Empty steps: only base_s is in play, and the fit is the mean of the step times t_i weighted
  // by lambda^age (m_i / t_i)^2, m_i being the running mean step time (m_1 = t_1, then
  // m_i = m_{i-1} + 0.02 (t_i - m_{i-1})). The initial P0 = 1e6 prior is negligible.
  CostModel model(Coefficients{.base_s = 1e-3});
  const StepFeatures empty;

  model.Observe(empty, 2e-3);  // predicted 1 ms: |1 - 2| / 2 = 0.5; the first sets the mean
  EXPECT_DOUBLE_EQ(model.last_predicted_s(), 1e-3);
  EXPECT_DOUBLE_EQ(model.last_measured_s(), 2e-3);
  EXPECT_DOUBLE_EQ(model.mean_abs_rel_error(), 0.5);
  EXPECT_NEAR(model.coefficients().base_s, 2e-3, 1e-9);

  model.Observe(empty, 4e-3);  // predicted 2 ms: 0.5 again, mean 0.5
  EXPECT_NEAR(model.last_predicted_s(), 2e-3, 1e-9);
  EXPECT_NEAR(model.mean_abs_rel_error(), 0.5, 1e-6);
  // m_2 = 2.04 ms, weight (2.04 / 4)^2 = 0.2601:
  // (0.98 * 2 ms + 0.2601 * 4 ms) / (0.98 + 0.2601) = 2.419482 ms
  EXPECT_NEAR(model.coefficients().base_s, 2.419482e-3, 1e-8);

  model.Observe(empty, 3e-3);  // |2.419482 - 3| / 3 = 0.193506; mean 0.5 + 0.1 (0.193506 - 0.5)
  EXPECT_NEAR(model.last_predicted_s(), 2.419482e-3, 1e-8);
  EXPECT_DOUBLE_EQ(model.last_measured_s(), 3e-3);
  EXPECT_NEAR(model.mean_abs_rel_error(), 0.469351, 1e-5);
  EXPECT_EQ(model.num_observations(), 3);
}

TEST(CostModelStatsTest, Describe) {
  const CostModel model(Coefficients{.base_s = 1.2e-3,
                                     .per_prefill_token_s = 310e-6,
                                     .per_decode_seq_s = 50e-6,
                                     .per_kv_token_s = 200e-9,
                                     .per_host_byte_s = 1 / 25e9});
  EXPECT_EQ(model.Describe(),
            "base=1.2ms prefill=310us/token decode=50us/seq kv=200ns/token host=25GB/s disk=off");
  EXPECT_EQ(CostModel().Describe(),
            "base=0 prefill=0/token decode=0/seq kv=0/token host=off disk=off");
}

}  // namespace
}  // namespace strata::engine
