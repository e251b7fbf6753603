// CostModel: predicts how long one engine step takes (DESIGN.md §6), so the SLO scheduler can
// check TTFT targets and TPOT slack before it commits to a batch. The model is linear:
//
//   t = base + a*prefill_tokens + b*decode_seqs + c*kv_tokens_read
//            + d*host_load_bytes + e*disk_load_bytes                       (seconds)
//
// Fit() takes the start-up profile to a first set of coefficients (non-negative least squares);
// Observe() refits them online from every measured step with recursive least squares (RLS) and
// exponential forgetting, so the model follows the machine when it gets slower or faster. Both
// minimise relative error: step times span two orders of magnitude and so does their noise.
// Coefficients never go below 0: a step never gets cheaper by doing more.
//
// Inside, features are divided by fixed scales (kFeatureScales) so that token counts (~1e3) and
// byte counts (~1e9) give an RLS covariance of similar magnitude in every direction.
//
// The instance owns its coefficients, the RLS covariance and the error statistics. It is owned
// and called by the engine thread only (the scheduler reads it through a const pointer during
// Schedule); not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace strata::engine {

// What one engine step does, as the cost model sees it.
struct StepFeatures {
  double prefill_tokens = 0;   // new tokens of sequences still in their prompt (chunks)
  double decode_seqs = 0;      // sequences generating one token
  double kv_tokens_read = 0;   // context tokens attention reads, summed over sequences
  double host_load_bytes = 0;  // KV bytes loaded from the host tier before/while the step runs
  double disk_load_bytes = 0;  // KV bytes loaded from the disk tier
};

// Seconds per unit of each feature; base_s is paid once per step. Spelled CostModel::Coefficients;
// it lives outside the class because GCC rejects `= {}` default arguments of a nested struct
// with member initialisers inside its still-incomplete enclosing class.
struct StepCostCoefficients {
  double base_s = 0, per_prefill_token_s = 0, per_decode_seq_s = 0, per_kv_token_s = 0,
         per_host_byte_s = 0, per_disk_byte_s = 0;
};

class CostModel {
 public:
  using Coefficients = StepCostCoefficients;

  // Model terms in the order used everywhere inside: base, then the five StepFeatures fields.
  static constexpr int kNumTerms = 6;
  // Typical size of each term in a step; features are divided by these before the RLS sees them.
  static constexpr std::array<double, kNumTerms> kFeatureScales = {1, 1e3, 1e2, 1e5, 1e9, 1e9};
  // Initial RLS covariance (scaled units) and the cap on its diagonal: large, so the first
  // measured steps outweigh the initial coefficients (FromProfile gives the profile its due
  // weight); capped, so a direction that the online steps never excite (say no disk loads)
  // does not wind up under forgetting.
  static constexpr double kInitialCovariance = 1e6;
  // Weight of the newest step in mean_abs_rel_error().
  static constexpr double kErrorSmoothing = 0.1;

  // REQUIRES: 0 < forgetting <= 1 (1 = never forget); every initial coefficient finite, >= 0.
  explicit CostModel(Coefficients initial = {}, double forgetting = 0.98);

  // Predicted step time in seconds, >= 0. Non-finite or negative features count as 0.
  double Predict(const StepFeatures& f) const;

  // Refits from one measured step, minimising relative error. Ignored (not counted) when
  // measured_s is not > 0 or a feature is negative, or either is not finite.
  void Observe(const StepFeatures& f, double measured_s);

  // The coefficients Predict uses, all >= 0: the online least-squares fit, projected onto
  // non-negative values where it has gone below 0.
  const Coefficients& coefficients() const { return coefficients_; }

  // Non-negative least squares over the profile samples (active-set NNLS, Lawson-Hanson),
  // weighted to minimise relative error like Observe. A feature that has the same value in
  // every sample cannot be told apart from base_s: it keeps its `fallback` coefficient (0 by
  // default) and base_s absorbs the rest. Samples with a time not > 0, a negative feature, or
  // anything non-finite are skipped; none left returns `fallback`.
  static Coefficients Fit(const std::vector<std::pair<StepFeatures, double>>& samples,
                          const Coefficients& fallback = {});

  // The model to start serving with: coefficients Fit(samples, fallback), and an RLS
  // covariance that has seen the profile (each sample once, none forgotten), so the first
  // online steps refine the profile instead of replacing it. (A model constructed from Fit's
  // coefficients alone trusts them so little, kInitialCovariance, that its first few steps
  // refit every term from a handful of noisy measurements.) Error statistics and
  // num_observations start at 0. REQUIRES: 0 < forgetting <= 1.
  static CostModel FromProfile(const std::vector<std::pair<StepFeatures, double>>& samples,
                               double forgetting = 0.98, const Coefficients& fallback = {});

  // Statistics for metrics. last_*: the latest accepted Observe (prediction made before the
  // refit). mean_abs_rel_error: exponentially weighted (kErrorSmoothing) mean of
  // |predicted - measured| / measured; the first step sets it.
  double last_predicted_s() const { return last_predicted_s_; }
  double last_measured_s() const { return last_measured_s_; }
  double mean_abs_rel_error() const { return mean_abs_rel_error_; }
  int64_t num_observations() const { return num_observations_; }

  // One line for the log, 3 significant digits, per-byte costs as bandwidths, e.g.
  // "base=1.2ms prefill=310us/token decode=50us/seq kv=200ns/token host=25GB/s disk=off".
  std::string Describe() const;

 private:
  using Vec = std::array<double, kNumTerms>;
  using Mat = std::array<Vec, kNumTerms>;

  void UpdateErrorStats(double predicted_s, double measured_s);
  void RlsUpdate(const Vec& x, double y);
  void CapCovariance();
  void ResetCovariance();
  void ProjectNonNegative();

  double forgetting_;
  // Coefficients are kept in scaled units (seconds per kFeatureScales[i]). theta_ is the plain
  // RLS estimate, which may go negative; clamping it in place would make it disagree with p_
  // and stall the fit. theta_nonneg_ is the closest point to it with every entry >= 0 in the
  // metric of p_ (so the other terms make up for a clamped one); Predict uses that.
  Vec theta_{};
  Vec theta_nonneg_{};
  Mat p_{};                    // RLS covariance of theta_, symmetric positive definite
  Coefficients coefficients_;  // theta_nonneg_ in user units
  double last_predicted_s_ = 0;
  double last_measured_s_ = 0;
  double mean_abs_rel_error_ = 0;
  int64_t num_observations_ = 0;
  double recent_step_s_ = 0;  // measured step time, averaged with weight 1 - forgetting
};

}  // namespace strata::engine
