#include "engine/cost_model.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "common/status.h"

namespace strata::engine {
namespace {

constexpr int kN = CostModel::kNumTerms;
using Vec = std::array<double, kN>;

// The model's terms for one step in user units: 1 for base, then the features.
Vec RawTerms(const StepFeatures& f) {
  return {
      1, f.prefill_tokens, f.decode_seqs, f.kv_tokens_read, f.host_load_bytes, f.disk_load_bytes};
}

bool IsValid(double v) { return std::isfinite(v) && v >= 0; }

bool AllValid(const Vec& v) { return std::all_of(v.begin(), v.end(), IsValid); }

// A step takes some time: 0 (say a fake clock that did not move) carries no information and
// would get infinite weight under relative-error weighting.
bool IsValidStepTime(double t) { return std::isfinite(t) && t > 0; }

Vec ToArray(const CostModel::Coefficients& c) {
  return {c.base_s,         c.per_prefill_token_s, c.per_decode_seq_s,
          c.per_kv_token_s, c.per_host_byte_s,     c.per_disk_byte_s};
}

CostModel::Coefficients FromArray(const Vec& a) { return {a[0], a[1], a[2], a[3], a[4], a[5]}; }

double Dot(const Vec& a, const Vec& b) {
  double sum = 0;
  for (int i = 0; i < kN; ++i) sum += a[i] * b[i];
  return sum;
}

// Feature vector (user units) -> scaled units; coefficients go the other way.
Vec ScaleFeatures(const Vec& raw) {
  Vec x;
  for (int i = 0; i < kN; ++i) x[i] = raw[i] / CostModel::kFeatureScales[i];
  return x;
}

Vec ScaleCoefficients(const Vec& user) {
  Vec theta;
  for (int i = 0; i < kN; ++i) theta[i] = user[i] * CostModel::kFeatureScales[i];
  return theta;
}

Vec UnscaleCoefficients(const Vec& theta) {
  Vec user;
  for (int i = 0; i < kN; ++i) user[i] = theta[i] / CostModel::kFeatureScales[i];
  return user;
}

// ---- Dense helpers for Fit and the non-negative projection (m x m, m <= kN) ----

struct Dense {
  int n = 0;
  std::vector<double> a;  // [n, n] row-major
  double& operator()(int r, int c) { return a[static_cast<size_t>(r) * n + c]; }
  double operator()(int r, int c) const { return a[static_cast<size_t>(r) * n + c]; }
};

// Solves m z = rhs by Gaussian elimination with partial pivoting. The caller adds a small ridge
// to the diagonal, so m is nonsingular even when two columns are collinear.
std::vector<double> Solve(Dense m, std::vector<double> rhs) {
  const int n = m.n;
  for (int col = 0; col < n; ++col) {
    int pivot = col;
    for (int r = col + 1; r < n; ++r) {
      if (std::abs(m(r, col)) > std::abs(m(pivot, col))) pivot = r;
    }
    for (int c = 0; c < n; ++c) std::swap(m(col, c), m(pivot, c));
    std::swap(rhs[col], rhs[pivot]);
    if (m(col, col) == 0) continue;  // an all-zero column: its unknown stays 0
    for (int r = col + 1; r < n; ++r) {
      const double factor = m(r, col) / m(col, col);
      for (int c = col; c < n; ++c) m(r, c) -= factor * m(col, c);
      rhs[r] -= factor * rhs[col];
    }
  }
  std::vector<double> z(n, 0.0);
  for (int r = n - 1; r >= 0; --r) {
    if (m(r, r) == 0) continue;
    double sum = rhs[r];
    for (int c = r + 1; c < n; ++c) sum -= m(r, c) * z[c];
    z[r] = sum / m(r, r);
  }
  return z;
}

// Unconstrained least squares restricted to the passive columns (normal equations g z = h);
// every other entry of the result is 0.
std::vector<double> SolvePassive(const Dense& g, const std::vector<double>& h,
                                 const std::vector<bool>& passive) {
  std::vector<int> idx;
  for (int i = 0; i < g.n; ++i) {
    if (passive[i]) idx.push_back(i);
  }
  const int m = static_cast<int>(idx.size());
  Dense sub{m, std::vector<double>(static_cast<size_t>(m) * m)};
  std::vector<double> rhs(m);
  for (int r = 0; r < m; ++r) {
    for (int c = 0; c < m; ++c) sub(r, c) = g(idx[r], idx[c]);
    rhs[r] = h[idx[r]];
  }
  const std::vector<double> z_sub = Solve(std::move(sub), std::move(rhs));
  std::vector<double> z(g.n, 0.0);
  for (int r = 0; r < m; ++r) z[idx[r]] = z_sub[r];
  return z;
}

// Moves x towards z as far as x >= 0 allows (Lawson-Hanson inner step) and drops from the
// passive set the column that stops it and any other that reaches 0.
// REQUIRES: some passive z[i] <= 0; every passive x[i] >= 0.
void StepTowards(const std::vector<double>& z, std::vector<double>& x, std::vector<bool>& passive) {
  const int n = static_cast<int>(x.size());
  double alpha = 1;
  int stop = -1;
  for (int i = 0; i < n; ++i) {
    if (!passive[i] || z[i] > 0) continue;
    const double a = x[i] > 0 ? x[i] / (x[i] - z[i]) : 0;
    if (stop < 0 || a < alpha) {
      alpha = a;
      stop = i;
    }
  }
  for (int i = 0; i < n; ++i) {
    if (!passive[i]) continue;
    x[i] += alpha * (z[i] - x[i]);
    if (i == stop || x[i] <= 0) {
      x[i] = 0;
      passive[i] = false;
    }
  }
}

bool Feasible(const std::vector<double>& z, const std::vector<bool>& passive) {
  for (size_t i = 0; i < z.size(); ++i) {
    if (passive[i] && z[i] <= 0) return false;
  }
  return true;
}

// Lawson-Hanson active-set NNLS on the normal equations: argmin_{x >= 0} x'gx - 2h'x.
std::vector<double> Nnls(const Dense& g, const std::vector<double>& h) {
  const int n = g.n;
  double h_max = 0;
  for (double v : h) h_max = std::max(h_max, std::abs(v));
  const double tol = 1e-12 * h_max;
  std::vector<double> x(n, 0.0);
  std::vector<bool> passive(n, false), blocked(n, false);
  for (int iter = 0; iter < 4 * n + 4; ++iter) {
    int best = -1;
    double best_w = tol;
    for (int j = 0; j < n; ++j) {
      double w = h[j];
      for (int c = 0; c < n; ++c) w -= g(j, c) * x[c];
      if (!passive[j] && !blocked[j] && w > best_w) {
        best = j;
        best_w = w;
      }
    }
    if (best < 0) break;
    passive[best] = true;
    std::vector<double> z = SolvePassive(g, h, passive);
    if (z[best] <= 0) {  // rounding: the most promising column does not help after all
      passive[best] = false;
      blocked[best] = true;
      continue;
    }
    // Each inner step drops at least one column from the passive set, so n steps suffice.
    for (int inner = 0; inner < n && !Feasible(z, passive); ++inner) {
      StepTowards(z, x, passive);
      z = SolvePassive(g, h, passive);
    }
    for (double& v : z) v = std::max(0.0, v);
    x = z;
    std::fill(blocked.begin(), blocked.end(), false);
  }
  return x;
}

// 3 significant digits in the largest unit that keeps the number >= 1: "1.2ms", "310us".
std::string FormatSeconds(double s) {
  if (s == 0) return "0";
  if (s >= 1) return absl::StrFormat("%.3gs", s);
  if (s >= 1e-3) return absl::StrFormat("%.3gms", s * 1e3);
  if (s >= 1e-6) return absl::StrFormat("%.3gus", s * 1e6);
  return absl::StrFormat("%.3gns", s * 1e9);
}

// A per-byte cost reads best as the bandwidth it implies.
std::string FormatBandwidth(double per_byte_s) {
  if (per_byte_s == 0) return "off";
  return absl::StrFormat("%.3gGB/s", 1e-9 / per_byte_s);
}

// ---- Fit: weighted least squares over the profile ----

struct Profile {
  std::vector<Vec> rows;           // RawTerms of each valid sample
  std::vector<double> measured_s;  // its step time
};

// Base, and every feature that does not have the same value in every row.
std::vector<int> FittedColumns(const std::vector<Vec>& rows) {
  std::vector<int> cols = {0};
  for (int j = 1; j < kN; ++j) {
    const auto [lo, hi] = std::minmax_element(
        rows.begin(), rows.end(), [j](const Vec& a, const Vec& b) { return a[j] < b[j]; });
    if ((*lo)[j] != (*hi)[j]) cols.push_back(j);
  }
  return cols;
}

// Steps range from a few ms (small decode) to hundreds (long prompt chunks) and their noise
// grows with them; weighting by 1 / t^2 fits relative error, which is what the scheduler cares
// about and what mean_abs_rel_error() reports, instead of letting the longest steps decide the
// small coefficients. Fit and Observe both weight this way.
// REQUIRES: IsValidStepTime(measured_s).
double RelativeWeight(double measured_s) { return 1 / (measured_s * measured_s); }

struct NormalEquations {
  Dense g;                           // sum w x x' over the fitted columns
  std::vector<double> h;             // sum w x t
  std::vector<double> column_scale;  // each column is divided by its largest value
};

NormalEquations BuildNormalEquations(const Profile& profile, const std::vector<double>& targets,
                                     const std::vector<int>& cols) {
  const int m = static_cast<int>(cols.size());
  NormalEquations eq{Dense{m, std::vector<double>(static_cast<size_t>(m) * m, 0.0)},
                     std::vector<double>(m, 0.0), std::vector<double>(m, 0.0)};
  for (int c = 0; c < m; ++c) {
    for (const Vec& r : profile.rows) eq.column_scale[c] = std::max(eq.column_scale[c], r[cols[c]]);
  }
  for (size_t s = 0; s < profile.rows.size(); ++s) {
    const double weight = RelativeWeight(profile.measured_s[s]);
    std::vector<double> x(m);
    for (int c = 0; c < m; ++c) x[c] = profile.rows[s][cols[c]] / eq.column_scale[c];
    for (int r = 0; r < m; ++r) {
      eq.h[r] += weight * x[r] * targets[s];
      for (int c = 0; c < m; ++c) eq.g(r, c) += weight * x[r] * x[c];
    }
  }
  double diag_max = 0;
  for (int i = 0; i < m; ++i) diag_max = std::max(diag_max, eq.g(i, i));
  for (int i = 0; i < m; ++i) eq.g(i, i) += 1e-12 * diag_max;  // ridge for collinear columns
  return eq;
}

// The inverse of a symmetric positive definite kN x kN matrix, column by column.
Dense Inverse(const std::array<Vec, kN>& m) {
  Dense a{kN, std::vector<double>(kN * kN)};
  for (int r = 0; r < kN; ++r) {
    for (int c = 0; c < kN; ++c) a(r, c) = m[r][c];
  }
  Dense inv{kN, std::vector<double>(kN * kN)};
  for (int c = 0; c < kN; ++c) {
    std::vector<double> unit(kN, 0.0);
    unit[c] = 1;
    const std::vector<double> col = Solve(a, std::move(unit));
    for (int r = 0; r < kN; ++r) inv(r, c) = col[r];
  }
  return inv;
}

}  // namespace

CostModel::CostModel(Coefficients initial, double forgetting) : forgetting_(forgetting) {
  CHECK(forgetting > 0 && forgetting <= 1);
  const Vec user = ToArray(initial);
  CHECK(AllValid(user));
  theta_ = ScaleCoefficients(user);
  theta_nonneg_ = theta_;
  coefficients_ = initial;
  ResetCovariance();
}

double CostModel::Predict(const StepFeatures& f) const {
  Vec raw = RawTerms(f);
  for (double& v : raw) v = IsValid(v) ? v : 0;
  return std::max(0.0, Dot(theta_nonneg_, ScaleFeatures(raw)));
}

void CostModel::Observe(const StepFeatures& f, double measured_s) {
  const Vec raw = RawTerms(f);
  if (!AllValid(raw) || !IsValidStepTime(measured_s)) return;
  const Vec x = ScaleFeatures(raw);
  UpdateErrorStats(std::max(0.0, Dot(theta_nonneg_, x)), measured_s);
  // Relative-error weighting (see RelativeWeight), scaled by the recent mean step time so the
  // weights stay near 1: were they 1 / t, a machine that turned 2x slower would have its new
  // steps count 4x less than the old ones it is meant to forget.
  recent_step_s_ = num_observations_ == 0
                       ? measured_s
                       : recent_step_s_ + (1 - forgetting_) * (measured_s - recent_step_s_);
  const double w = recent_step_s_ / measured_s;
  Vec weighted;
  for (int i = 0; i < kN; ++i) weighted[i] = x[i] * w;
  RlsUpdate(weighted, measured_s * w);
  ++num_observations_;
}

void CostModel::UpdateErrorStats(double predicted_s, double measured_s) {
  last_predicted_s_ = predicted_s;
  last_measured_s_ = measured_s;
  const double rel = std::abs(predicted_s - measured_s) / measured_s;
  mean_abs_rel_error_ = num_observations_ == 0
                            ? rel
                            : mean_abs_rel_error_ + kErrorSmoothing * (rel - mean_abs_rel_error_);
}

// One RLS step with forgetting (x, y already weighted):
//   k = P x / (lambda + x'P x),  theta += k (y - theta'x),  P = (P - k x'P) / lambda,
// then the coefficients Predict uses are refreshed from theta.
void CostModel::RlsUpdate(const Vec& x, double y) {
  Vec px{};
  for (int i = 0; i < kN; ++i) px[i] = Dot(p_[i], x);
  const double denom = forgetting_ + Dot(x, px);
  const double err = y - Dot(theta_, x);
  Vec next = theta_;
  for (int i = 0; i < kN; ++i) next[i] += px[i] / denom * err;
  if (!std::all_of(next.begin(), next.end(), [](double v) { return std::isfinite(v); })) {
    ResetCovariance();  // P had degenerated; keep the last good theta and start P afresh
    return;
  }
  theta_ = next;
  for (int i = 0; i < kN; ++i) {
    for (int j = i; j < kN; ++j) {
      const double v = (p_[i][j] - px[i] * px[j] / denom) / forgetting_;
      p_[i][j] = v;
      p_[j][i] = v;
    }
  }
  CapCovariance();
  ProjectNonNegative();
  coefficients_ = FromArray(UnscaleCoefficients(theta_nonneg_));
}

// argmin over t >= 0 of (t - theta)' P^-1 (t - theta): theta itself when it is already
// non-negative, else NNLS on the normal equations g = P^-1, h = P^-1 theta.
void CostModel::ProjectNonNegative() {
  if (std::all_of(theta_.begin(), theta_.end(), [](double v) { return v >= 0; })) {
    theta_nonneg_ = theta_;
    return;
  }
  const Dense p_inv = Inverse(p_);
  std::vector<double> h(kN, 0.0);
  for (int i = 0; i < kN; ++i) {
    for (int j = 0; j < kN; ++j) h[i] += p_inv(i, j) * theta_[j];
  }
  const std::vector<double> t = Nnls(p_inv, h);
  std::copy(t.begin(), t.end(), theta_nonneg_.begin());
}

// Anti-windup: forgetting divides P by lambda every step, so in a direction no step excites
// its variance would grow without bound and one unusual step would then swing theta wildly.
// P <- D P D with D_ii = min(1, sqrt(cap / P_ii)) bounds every diagonal by the cap and keeps P
// symmetric positive definite; without it P would overflow after ~35,000 such steps (1e6 /
// 0.98^n). Should rounding ever break P, it restarts from its initial value.
void CostModel::CapCovariance() {
  Vec d;
  for (int i = 0; i < kN; ++i) {
    const double pii = p_[i][i];
    if (!std::isfinite(pii) || pii <= 0) {
      ResetCovariance();
      return;
    }
    d[i] = pii > kInitialCovariance ? std::sqrt(kInitialCovariance / pii) : 1.0;
  }
  for (int i = 0; i < kN; ++i) {
    for (int j = 0; j < kN; ++j) p_[i][j] *= d[i] * d[j];
  }
}

void CostModel::ResetCovariance() {
  p_ = Mat{};
  for (int i = 0; i < kN; ++i) p_[i][i] = kInitialCovariance;
}

CostModel::Coefficients CostModel::Fit(const std::vector<std::pair<StepFeatures, double>>& samples,
                                       const Coefficients& fallback) {
  Profile profile;
  for (const auto& [features, time_s] : samples) {
    const Vec raw = RawTerms(features);
    if (!AllValid(raw) || !IsValidStepTime(time_s)) continue;
    profile.rows.push_back(raw);
    profile.measured_s.push_back(time_s);
  }
  if (profile.rows.empty()) return fallback;

  // A constant feature's fallback share of the time comes off the targets first, so base_s
  // gets only what is left.
  Vec result = ToArray(fallback);
  const std::vector<int> cols = FittedColumns(profile.rows);
  std::vector<double> targets = profile.measured_s;
  for (int j = 1; j < kN; ++j) {
    if (std::find(cols.begin(), cols.end(), j) != cols.end()) continue;
    for (double& t : targets) t -= result[j] * profile.rows[0][j];
  }
  const NormalEquations eq = BuildNormalEquations(profile, targets, cols);
  const std::vector<double> x = Nnls(eq.g, eq.h);
  for (size_t c = 0; c < cols.size(); ++c) result[cols[c]] = x[c] / eq.column_scale[c];
  return FromArray(result);
}

CostModel CostModel::FromProfile(const std::vector<std::pair<StepFeatures, double>>& samples,
                                 double forgetting, const Coefficients& fallback) {
  CHECK(forgetting > 0 && forgetting <= 1);
  const Coefficients fit = Fit(samples, fallback);
  CostModel model(fit, /*forgetting=*/1.0);
  for (const auto& [features, time_s] : samples) model.Observe(features, time_s);
  // The replay's own estimate weights the samples a little differently and has no fallback
  // rule; Fit's is the one to start from (and the one the start-up log shows).
  model.theta_ = ScaleCoefficients(ToArray(fit));
  model.theta_nonneg_ = model.theta_;
  model.coefficients_ = fit;
  model.forgetting_ = forgetting;
  model.last_predicted_s_ = 0;
  model.last_measured_s_ = 0;
  model.mean_abs_rel_error_ = 0;
  model.num_observations_ = 0;
  return model;
}

std::string CostModel::Describe() const {
  const Coefficients& c = coefficients_;
  return absl::StrFormat("base=%s prefill=%s/token decode=%s/seq kv=%s/token host=%s disk=%s",
                         FormatSeconds(c.base_s), FormatSeconds(c.per_prefill_token_s),
                         FormatSeconds(c.per_decode_seq_s), FormatSeconds(c.per_kv_token_s),
                         FormatBandwidth(c.per_host_byte_s), FormatBandwidth(c.per_disk_byte_s));
}

}  // namespace strata::engine
