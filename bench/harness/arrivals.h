// Arrival processes of the open-loop load generator (BENCHMARKS.md W1-W3): Poisson, Gamma
// (bursty: coefficient of variation > 1) and a recorded trace in the Mooncake format (one JSON
// object per line: `timestamp` in ms, `input_length`, `output_length`, `hash_ids` naming the
// prompt's blocks so that traces share prefixes). Fixed seeds: the same flags give the same
// arrivals. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace strata::bench {

// `n` arrival times in seconds from 0 (the first at its own gap after 0), inter-arrival gaps drawn
// i.i.d. with mean 1/rate. Poisson: exponential gaps (CV 1). Gamma: shape 1/cv^2 and scale
// cv^2/rate, so the mean rate is `rate` and the gaps' coefficient of variation is `cv`.
std::vector<double> PoissonArrivals(int64_t n, double rate, uint64_t seed);
std::vector<double> GammaArrivals(int64_t n, double rate, double cv, uint64_t seed);

struct TraceEntry {
  double timestamp_s = 0;          // arrival, relative to the trace's start
  int64_t input_length = 0;        // prompt tokens
  int64_t output_length = 0;       // tokens to generate
  std::vector<int64_t> hash_ids;   // one per prompt block; equal ids = equal token blocks
};

// Reads a JSONL trace; errors name the file and line. Timestamps are made relative to the first.
absl::StatusOr<std::vector<TraceEntry>> LoadTrace(const std::string& path);

}  // namespace strata::bench
