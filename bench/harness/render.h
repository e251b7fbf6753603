// Renders benchmark results: the terminal table, the JSON file and the PNG plots (drawn by
// gnuplot, Debian's gnuplot-nox, from data files written next to them). The comparison table
// prints, for each offered load, config B's metrics over config A's. Any thread.
#pragma once

#include <string>
#include <vector>

#include "bench/harness/report.h"
#include "common/status.h"

namespace strata::bench {

// Run-level metadata printed above the table and stored in the JSON.
struct BenchMeta {
  std::string command;   // the exact command line
  std::string commit;    // git commit of the build (STRATA_VERSION or `git rev-parse`)
  std::string machine;   // CPU model, cores, memory
  std::string model;
  MachineLimits limits;
};

// One row per run (and per class when there are several): rate, requests, TTFT p50/p90/p99 with
// the queueing/compute split at p50, TPOT p50/p99, e2e p50, tokens/s, goodput, attainment, hit
// rate per tier, bytes moved, preemptions, achieved fractions. Markdown (pastes into
// bench/README.md, reads on a terminal): a meta list, then four padded tables of <= ~120 columns:
// latency (ms); throughput and SLO; prefix cache, preemptions, tier errors; KV MB moved and % of
// the limits.
std::string RenderTable(const BenchMeta& meta, const std::vector<RunReport>& runs);

// Pairs the runs of label `a` and label `b` by (workload, rate, concurrency) and prints b/a for
// goodput, attainment, throughput and TTFT/TPOT percentiles.
std::string RenderComparison(const std::vector<RunReport>& runs, const std::string& a,
                             const std::string& b);

// Everything: meta, per run summary, metrics delta, fractions and every record.
std::string RenderJson(const BenchMeta& meta, const std::vector<RunReport>& runs);

// Writes `<stem>.png` (latency CDFs: TTFT, TPOT, e2e, one curve per run) and, when a label has
// several rates, `<stem>_goodput.png` (goodput and attainment vs offered rate, one line per
// label and workload) into `dir` (created if missing), through `gnuplot` on PATH. The script
// `<stem>.gp` and its `.dat` files stay beside them. Returns the PNG paths (none for no runs);
// FailedPrecondition when gnuplot cannot be run, Internal (with gnuplot's output) when it fails.
absl::StatusOr<std::vector<std::string>> WritePlots(const std::string& dir,
                                                    const std::string& stem,
                                                    const std::vector<RunReport>& runs);

}  // namespace strata::bench
