// The flags of `strata bench`, parsed and checked: which daemon(s) to drive (a running one on
// loopback, or one started per run from each config), the workload and its sizes, the offered
// loads, the SLO targets, and where the results go. Parsing only; the bench command's thread.
#pragma once

#include <string>
#include <vector>

#include "bench/harness/load_generator.h"
#include "bench/harness/record.h"
#include "bench/harness/workloads.h"
#include "common/status.h"

namespace strata::bench {

struct BenchOptions {
  WorkloadOptions workload;
  LoadOptions load;                 // port, concurrency, limits (per run)
  std::string server;               // http://127.0.0.1:PORT of a running daemon ("" = start one)
  std::vector<std::string> configs; // --config, then --compare: one daemon per config and run
  std::string model;                // --model: passed to started daemons; also names the costs
  std::string arrivals = "poisson"; // poisson | gamma | none (closed loop sends everything at 0)
  double cv = 3.0;                  // gamma's coefficient of variation
  std::vector<double> rates;        // offered req/s; empty = one closed-loop run
  SloTargets slo;                   // --slo, else the first config's slo_classes
  std::string out_dir = "bench/results";
  std::string name;                 // file stem of the outputs ("" = workload + time)
  bool limits = true;               // measure the machine's limits first
  bool plots = true;
  std::string disk_dir;             // for the disk probe ("" = the config's disk tier, or out_dir)
  std::string command;              // the command line, for the report
};

absl::StatusOr<BenchOptions> ParseBenchOptions(const std::vector<std::string>& args);

// "interactive=200:50,batch=5000:500" -> targets in seconds (ms in the flag; 0 = no target).
absl::StatusOr<SloTargets> ParseSloTargets(const std::string& text);

extern const char kBenchUsage[];

}  // namespace strata::bench
