// Report arithmetic: per-request records -> latency percentiles, throughput, goodput and SLO
// attainment per class (BENCHMARKS.md "Metrics"), plus the achieved fractions of the machine's
// limits. Pure functions over plain data; any thread.
//
// Definitions (the ones vLLM's benchmark_serving uses, so numbers are comparable):
// - TTFT = first_token_s - sent_s; queueing = server_queue_s (when reported); compute =
//   max(0, TTFT - queueing) (only for requests that report queueing; the clocks differ).
// - TPOT = (last chunk time - first chunk time) / (output_tokens - 1), over chunk_times_s, for
//   output_tokens >= 2 (not measured without chunk times).
// - e2e = end_s - sent_s.
// - Every request falls in exactly one of, checked in this order: cancelled (the workload hung
//   up); *completed* (http_status == 200 and finish_reason is set); rejected (http_status 429);
//   errors (the rest). requests = completed + rejected + errors + cancelled.
// - A completed request *met* its SLO when TTFT <= its ttft target and (output_tokens < 2 or
//   TPOT <= its tpot target); a target of 0 is no target. A completed request without any token
//   has no TTFT sample; its e2e stands in for TTFT when judging it. The target of class c is
//   targets[c], else targets[""]; with neither the request is judged on completion alone.
// - duration = last end_s - first sent_s over all records (those with the time set); throughput
//   and goodput divide by it (0 when it is not positive). goodput = met / duration; attainment =
//   met / (requests - cancelled) (0 when that is 0). Token sums count completed requests only.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "bench/harness/prom_text.h"
#include "bench/harness/record.h"

namespace strata::bench {

struct LatencyStats {
  int64_t n = 0;  // 0: the other fields are 0
  double mean = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
};

// Percentile by linear interpolation between closest ranks (numpy's default); `values` unsorted;
// p in [0, 100]. 0 for no values.
double Percentile(std::vector<double> values, double p);
LatencyStats Stats(const std::vector<double>& values);

// One request's latencies in seconds as defined above; -1 where not measured.
struct RequestLatencies {
  double ttft_s = -1, queue_s = -1, compute_s = -1, tpot_s = -1, e2e_s = -1;
};
RequestLatencies Latencies(const RequestRecord& r);

// The request completed (see above): the latency statistics and the CDF plots use these only.
bool Completed(const RequestRecord& r);

struct ClassSummary {
  std::string slo_class;  // "" for the all-classes row
  SloTarget target;       // the target applied (all-classes row: none, zeros)
  int64_t requests = 0, completed = 0, met = 0, rejected = 0, errors = 0, cancelled = 0;
  LatencyStats ttft, queue, compute, tpot, e2e;  // over completed requests
  double goodput_rps = 0;
  double attainment = 0;  // 0..1
};

struct RunSummary {
  double duration_s = 0;
  int64_t input_tokens = 0, output_tokens = 0, cached_tokens = 0;  // completed requests
  double request_rps = 0, input_tps = 0, output_tps = 0;
  ClassSummary all;                  // every class together; met uses each request's own target
  std::vector<ClassSummary> classes; // one per class seen, sorted by name
};

RunSummary Summarize(const std::vector<RequestRecord>& records, const SloTargets& targets);

// Achieved fractions of the machine's limits (0 where a limit or cost is unknown).
struct LimitFractions {
  // weight_bytes / (mean TPOT x mem_read_bytes_per_s): how close a decode step runs to reading the
  // weights once at full bandwidth.
  double decode_bandwidth = 0;
  // 2 x matmul_params x (prompt - cached tokens) / compute time, mean over the completed requests
  // with uncached prompt tokens and a positive compute time, divided by gemm_flops. Compute time is
  // TTFT where the server reported no queueing (an upper bound, so the fraction is a lower one).
  double prefill_gemm = 0;
  // disk tier bytes moved (host->disk, disk->host) / duration, over the raw disk bandwidth
  // (write and read respectively).
  double disk_write = 0, disk_read = 0;
};

LimitFractions Fractions(const RunSummary& summary, const std::vector<RequestRecord>& records,
                         const MetricsDelta& metrics, const MachineLimits& limits,
                         const ModelCosts& costs);

// One workload run against one server config at one offered load.
struct RunReport {
  std::string label;        // the config's name (file stem) or "server"
  std::string workload;     // "W1".."W5"
  double rate_rps = 0;      // offered request rate (0: closed loop)
  int concurrency = 0;      // closed loop's fixed concurrency (0: open loop)
  RunSummary summary;
  MetricsDelta metrics;
  LimitFractions fractions;
  std::vector<RequestRecord> records;
  // Named pass/fail numbers of fault workloads (W5): mismatched_outputs, leaked_running,
  // leaked_waiting, device_kv_usage_after, healthy_after (1/0), ... Empty for the others.
  std::map<std::string, double> checks;
};

}  // namespace strata::bench
