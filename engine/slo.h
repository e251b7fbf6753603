// A request's latency class as the engine sees it (DESIGN.md §6): the targets it is scheduled
// against, its priority, and whether it is rejected early when its first-token target is out of
// reach. The server resolves `slo_class` names from the config into this. Plain data.
#pragma once

#include <string>

namespace strata::engine {

struct SloSpec {
  std::string name;                // the class name, for logs and rejection reasons
  double ttft_s = 0;               // time-to-first-token target; 0 = none
  double tpot_s = 0;               // time-per-output-token target; 0 = none
  int priority = 0;                // higher is admitted first and may preempt lower
  bool reject_on_overload = false; // true: rejected once the TTFT target is unreachable
};

}  // namespace strata::engine
