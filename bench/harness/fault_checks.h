// The checks of the fault workload (W5) after its load ran: every request that completed is sent
// again alone and must produce the same text (greedy, so the faults around it changed nothing),
// and the daemon must be idle and healthy with nothing leaked (no running or waiting request, no
// KV page held). The bench command's thread.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "bench/harness/load_generator.h"
#include "bench/harness/record.h"
#include "bench/harness/workloads.h"
#include "common/status.h"

namespace strata::bench {

// Keys: rerun_requests, mismatched_outputs, leaked_running, leaked_waiting,
// device_kv_usage_after, healthy_after (1 or 0).
absl::StatusOr<std::map<std::string, double>> CheckFaults(
    const LoadOptions& load, const std::vector<BenchRequest>& requests,
    const std::vector<RequestRecord>& records);

}  // namespace strata::bench
