#include "bench/harness/fault_checks.h"

#include <thread>

#include "bench/harness/prom_text.h"
#include "common/clock.h"

namespace strata::bench {
namespace {

bool Completed(const RequestRecord& r) {
  return r.http_status == 200 && !r.cancelled && !r.finish_reason.empty() && r.error.empty();
}

// Waits (up to 10 s) until the daemon reports no running and no waiting request; returns the last
// scrape. Hung-up clients are noticed within a step, so this settles quickly when nothing leaked.
absl::StatusOr<PromSamples> SettledMetrics(const LoadOptions& load) {
  PromSamples s;
  for (const double deadline = NowSeconds() + 10; NowSeconds() < deadline;) {
    ASSIGN_OR_RETURN(HttpReply m, HttpGet(load.port, "/metrics", load.api_key));
    ASSIGN_OR_RETURN(s, ParsePromText(m.body));
    if (SumSamples(s, "strata_num_requests_running") == 0 &&
        SumSamples(s, "strata_num_requests_waiting") == 0) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return s;
}

}  // namespace

absl::StatusOr<std::map<std::string, double>> CheckFaults(
    const LoadOptions& load, const std::vector<BenchRequest>& requests,
    const std::vector<RequestRecord>& records) {
  std::map<std::string, double> checks;
  ASSIGN_OR_RETURN(PromSamples after, SettledMetrics(load));
  checks["leaked_running"] = SumSamples(after, "strata_num_requests_running");
  checks["leaked_waiting"] = SumSamples(after, "strata_num_requests_waiting");
  checks["device_kv_usage_after"] =
      SumSamples(after, "strata_kv_cache_usage_ratio", {{"tier", "device"}});
  ASSIGN_OR_RETURN(HttpReply health, HttpGet(load.port, "/health", load.api_key));
  checks["healthy_after"] = health.status == 200 ? 1 : 0;

  // The quiet re-run: one at a time, no cancellations.
  std::vector<BenchRequest> again;
  std::vector<const RequestRecord*> first;
  for (const RequestRecord& r : records) {
    if (!Completed(r)) continue;
    BenchRequest q = requests[r.id];
    q.id = static_cast<int64_t>(again.size());
    q.after = -1;
    q.arrival_s = 0;
    q.cancel_after_tokens = -1;
    again.push_back(std::move(q));
    first.push_back(&r);
  }
  LoadOptions quiet = load;
  quiet.concurrency = 1;
  quiet.max_requests = 0;
  quiet.collect_text = true;
  ASSIGN_OR_RETURN(std::vector<RequestRecord> rerun, RunLoad(quiet, again));
  double mismatched = 0;
  for (size_t i = 0; i < rerun.size(); ++i) {
    mismatched += rerun[i].text != first[i]->text || !Completed(rerun[i]) ? 1 : 0;
  }
  checks["rerun_requests"] = static_cast<double>(rerun.size());
  checks["mismatched_outputs"] = mismatched;
  return checks;
}

}  // namespace strata::bench
