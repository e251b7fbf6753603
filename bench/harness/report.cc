// Report arithmetic over recorded requests: the definitions are in report.h's header comment.
#include "bench/harness/report.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/status.h"

namespace strata::bench {
namespace {

// REQUIRES: `sorted` ascending and non-empty, p in [0, 100].
double PercentileOfSorted(const std::vector<double>& sorted, double p) {
  double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(rank));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - static_cast<double>(lo));
}

// The target that judges class `slo_class`, or nullptr when there is none.
const SloTarget* TargetFor(const SloTargets& targets, const std::string& slo_class) {
  auto it = targets.find(slo_class);
  if (it == targets.end()) it = targets.find("");
  return it == targets.end() ? nullptr : &it->second;
}

bool Within(double value_s, double target_s) { return target_s <= 0 || value_s <= target_s; }

// REQUIRES: Completed(r).
bool MetSlo(const RequestRecord& r, const RequestLatencies& lat, const SloTarget* target) {
  if (target == nullptr) return true;
  double ttft_s = lat.ttft_s >= 0 ? lat.ttft_s : lat.e2e_s;
  bool tpot_ok = r.output_tokens < 2 || lat.tpot_s < 0 || Within(lat.tpot_s, target->tpot_s);
  return Within(ttft_s, target->ttft_s) && tpot_ok;
}

// The latency samples of one class's completed requests, seconds.
struct Samples {
  std::vector<double> ttft, queue, compute, tpot, e2e;

  void Add(const RequestLatencies& lat) {
    for (auto [value, into] : {std::pair{lat.ttft_s, &ttft},
                               {lat.queue_s, &queue},
                               {lat.compute_s, &compute},
                               {lat.tpot_s, &tpot},
                               {lat.e2e_s, &e2e}}) {
      if (value >= 0) into->push_back(value);
    }
  }
};

void Count(const RequestRecord& r, ClassSummary& s) {
  ++s.requests;
  if (r.cancelled) {
    ++s.cancelled;
  } else if (Completed(r)) {
    ++s.completed;
  } else if (r.http_status == 429) {
    ++s.rejected;
  } else {
    ++s.errors;
  }
}

// `records` all belong to the row (one class, or every class for the all-classes row).
ClassSummary SummarizeClass(const std::string& slo_class, const SloTarget& shown_target,
                            const std::vector<const RequestRecord*>& records,
                            const SloTargets& targets, double duration_s) {
  ClassSummary s;
  s.slo_class = slo_class;
  s.target = shown_target;
  Samples samples;
  for (const RequestRecord* r : records) {
    Count(*r, s);
    if (!Completed(*r)) continue;
    RequestLatencies lat = Latencies(*r);
    samples.Add(lat);
    if (MetSlo(*r, lat, TargetFor(targets, r->slo_class))) ++s.met;
  }
  s.ttft = Stats(samples.ttft);
  s.queue = Stats(samples.queue);
  s.compute = Stats(samples.compute);
  s.tpot = Stats(samples.tpot);
  s.e2e = Stats(samples.e2e);
  s.goodput_rps = duration_s > 0 ? static_cast<double>(s.met) / duration_s : 0;
  int64_t judged = s.requests - s.cancelled;
  s.attainment = judged > 0 ? static_cast<double>(s.met) / static_cast<double>(judged) : 0;
  return s;
}

double Duration(const std::vector<RequestRecord>& records) {
  double first_sent = INFINITY, last_end = -INFINITY;
  for (const RequestRecord& r : records) {
    if (r.sent_s >= 0) first_sent = std::min(first_sent, r.sent_s);
    if (r.end_s >= 0) last_end = std::max(last_end, r.end_s);
  }
  return std::isfinite(first_sent) && std::isfinite(last_end) ? last_end - first_sent : 0;
}

double PerSecond(double amount, double duration_s) {
  return duration_s > 0 ? amount / duration_s : 0;
}

// Mean achieved prefill FLOP/s over the completed requests that computed uncached tokens.
double MeanPrefillFlops(const std::vector<RequestRecord>& records, int64_t matmul_params) {
  double sum = 0;
  int64_t n = 0;
  for (const RequestRecord& r : records) {
    if (!Completed(r)) continue;
    RequestLatencies lat = Latencies(r);
    double compute_s = lat.compute_s >= 0 ? lat.compute_s : lat.ttft_s;
    int64_t computed_tokens = r.prompt_tokens - r.cached_tokens;
    if (compute_s <= 0 || computed_tokens <= 0) continue;
    sum +=
        2.0 * static_cast<double>(matmul_params) * static_cast<double>(computed_tokens) / compute_s;
    ++n;
  }
  return n > 0 ? sum / static_cast<double>(n) : 0;
}

// part / whole, 0 when either is unknown.
double Fraction(double part, double whole) { return part > 0 && whole > 0 ? part / whole : 0; }

double BytesMoved(const MetricsDelta& metrics, const std::string& direction) {
  auto it = metrics.transfer_bytes.find(direction);
  return it == metrics.transfer_bytes.end() ? 0 : it->second;
}

}  // namespace

double Percentile(std::vector<double> values, double p) {
  CHECK(p >= 0 && p <= 100);
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return PercentileOfSorted(values, p);
}

LatencyStats Stats(const std::vector<double>& values) {
  if (values.empty()) return {};
  std::vector<double> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  double n = static_cast<double>(sorted.size());
  return {.n = static_cast<int64_t>(sorted.size()),
          .mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / n,
          .p50 = PercentileOfSorted(sorted, 50),
          .p90 = PercentileOfSorted(sorted, 90),
          .p99 = PercentileOfSorted(sorted, 99),
          .max = sorted.back()};
}

bool Completed(const RequestRecord& r) {
  return !r.cancelled && r.http_status == 200 && !r.finish_reason.empty();
}

RequestLatencies Latencies(const RequestRecord& r) {
  RequestLatencies lat;
  if (r.sent_s < 0) return lat;
  if (r.first_token_s >= 0) lat.ttft_s = r.first_token_s - r.sent_s;
  if (r.end_s >= 0) lat.e2e_s = r.end_s - r.sent_s;
  if (r.server_queue_s >= 0 && lat.ttft_s >= 0) {
    lat.queue_s = r.server_queue_s;
    lat.compute_s = std::max(0.0, lat.ttft_s - r.server_queue_s);
  }
  if (r.output_tokens >= 2 && !r.chunk_times_s.empty()) {
    lat.tpot_s = (r.chunk_times_s.back() - r.chunk_times_s.front()) /
                 static_cast<double>(r.output_tokens - 1);
  }
  return lat;
}

RunSummary Summarize(const std::vector<RequestRecord>& records, const SloTargets& targets) {
  RunSummary run;
  run.duration_s = Duration(records);
  std::vector<const RequestRecord*> all;
  std::map<std::string, std::vector<const RequestRecord*>> by_class;
  for (const RequestRecord& r : records) {
    all.push_back(&r);
    by_class[r.slo_class].push_back(&r);
    if (!Completed(r)) continue;
    run.input_tokens += r.prompt_tokens;
    run.output_tokens += r.output_tokens;
    run.cached_tokens += r.cached_tokens;
  }
  run.all = SummarizeClass("", SloTarget{}, all, targets, run.duration_s);
  for (const auto& [name, members] : by_class) {
    const SloTarget* target = TargetFor(targets, name);
    run.classes.push_back(SummarizeClass(name, target != nullptr ? *target : SloTarget{}, members,
                                         targets, run.duration_s));
  }
  run.request_rps = PerSecond(static_cast<double>(run.all.completed), run.duration_s);
  run.input_tps = PerSecond(static_cast<double>(run.input_tokens), run.duration_s);
  run.output_tps = PerSecond(static_cast<double>(run.output_tokens), run.duration_s);
  return run;
}

LimitFractions Fractions(const RunSummary& summary, const std::vector<RequestRecord>& records,
                         const MetricsDelta& metrics, const MachineLimits& limits,
                         const ModelCosts& costs) {
  LimitFractions f;
  double decode_s = summary.all.tpot.mean;
  if (decode_s > 0) {
    f.decode_bandwidth =
        Fraction(static_cast<double>(costs.weight_bytes) / decode_s, limits.mem_read_bytes_per_s);
  }
  if (costs.matmul_params > 0) {
    f.prefill_gemm = Fraction(MeanPrefillFlops(records, costs.matmul_params), limits.gemm_flops);
  }
  f.disk_write = Fraction(PerSecond(BytesMoved(metrics, "host->disk"), summary.duration_s),
                          limits.disk_write_bytes_per_s);
  f.disk_read = Fraction(PerSecond(BytesMoved(metrics, "disk->host"), summary.duration_s),
                         limits.disk_read_bytes_per_s);
  return f;
}

}  // namespace strata::bench
