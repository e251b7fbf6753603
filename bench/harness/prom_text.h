// The Prometheus text exposition of Strata's `/metrics`, parsed into samples, and the difference
// of two scrapes (before and after a run) reduced to what the reports show: token-weighted
// prefix-cache hit rate per tier, KV bytes moved per source/destination, tier errors,
// preemptions, server-side queue time and SLO outcomes. Pure functions; any thread.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/status.h"

namespace strata::bench {

// series key -> value. The key is the metric name followed by its labels sorted by name, as
// `name{a="1",b="2"}` (no braces when there are no labels). Comment lines are skipped.
using PromSamples = std::map<std::string, double>;

// Fails (InvalidArgument, naming the line) on a line that is not `series value [timestamp]`.
absl::StatusOr<PromSamples> ParsePromText(std::string_view text);

// Sum of every sample of metric `name` whose labels include all of `match` (e.g. {"tier":"disk"}).
double SumSamples(const PromSamples& s, std::string_view name,
                  const std::map<std::string, std::string>& match = {});

struct MetricsDelta {
  double prefix_query_tokens = 0;                     // strata_prefix_cache_queries_tokens_total
  std::map<std::string, double> prefix_hit_tokens;    // by tier (device, host, disk)
  std::map<std::string, double> transfer_bytes;       // by "src->dst", e.g. "host->device"
  std::map<std::string, double> tier_errors;          // by "tier/kind", e.g. "disk/checksum"
  double preemptions = 0;
  double queue_time_sum_s = 0;                        // strata_request_queue_time_seconds
  double queue_time_count = 0;
  std::map<std::string, double> slo_requests;         // by "class/outcome"
  double prompt_tokens = 0;
  double generation_tokens = 0;

  // hits / queries for `tier` (0 when nothing was queried).
  double HitRate(const std::string& tier) const;
};

// after - before for every counter the reports use.
MetricsDelta DiffMetrics(const PromSamples& before, const PromSamples& after);

}  // namespace strata::bench
