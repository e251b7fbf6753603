// The workloads of BENCHMARKS.md, W1-W5, as lists of requests with token-id prompts (sent to
// /v1/completions as lists of ids, so prefixes are shared token for token, never re-tokenized).
// Every random choice comes from one fixed seed, and every sibling segment that follows a shared
// prefix begins with a distinct two-token tag, so two prompts share exactly the prefix the
// workload defines and not one token more (with more siblings than the id range, two of them may
// share one further token: never a whole KV block of two or more tokens). Pure functions; any
// thread.
//
// - W1 multi-turn chat: `users` users, `rounds` rounds each. Round r of user u is
//   system prompt + (turn, answer) for every earlier round + turn r; the answers in the history
//   are recorded (seeded) answers, as replays of ShareGPT conversations use, so the prompt does
//   not depend on what the server generated. Round r + 1 is sent only after round r finished.
// - W2 long-document QA: `documents` documents of `doc_tokens` tokens, each asked twice (a distinct
//   question of `question_tokens` each time). Orders: interleave (d0 d1 d0 d2 d1 d3 ...: the
//   second ask one document later), random (seeded shuffle), tile (d0..dN-1 d0..dN-1: the reuse
//   distance is N-1, LRU's worst case when the cache holds fewer than N documents).
// - W3 open-loop mix: `requests` unique prompts with ShareGPT-like lognormal input and output
//   lengths; each request draws its SLO class from `classes` by weight.
// - W4 offline throughput: `requests` unique prompts of exactly `input_tokens`, `output_tokens`.
// - W5 faults: W3's mix where a `cancel_fraction` of the requests hang up after
//   `cancel_after_tokens` tokens; the others are checked against a quiet re-run.
// - trace: a recorded trace (arrivals.h): prompt block i is the block of hash_ids[i] (a block of
//   `trace_block_tokens` seeded by the id), the last block cut to input_length.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bench/harness/arrivals.h"
#include "common/status.h"

namespace strata::bench {

struct BenchRequest {
  int64_t id = 0;                 // index in the workload
  std::string group;              // what it is, e.g. "user3/round2", "doc1/ask2", "req17"
  double arrival_s = 0;           // open loop: when to send it (seconds from the start)
  int64_t after = -1;             // id of a request that must have finished first (W1 rounds)
  std::vector<int32_t> prompt;    // token ids
  int32_t max_tokens = 16;        // generated exactly (ignore_eos)
  std::string slo_class;          // "" = the server's default class
  int32_t cancel_after_tokens = -1;  // W5: hang up after this many tokens arrived
};

struct WorkloadOptions {
  std::string name = "W3";        // W1 | W2 | W3 | W4 | W5 | trace
  uint64_t seed = 1;
  int32_t token_lo = 3;           // prompt ids are drawn from [token_lo, token_hi)
  int32_t token_hi = 500;
  // W1
  int32_t users = 8, rounds = 4, system_tokens = 256, turn_tokens = 64, answer_tokens = 100;
  // W2
  int32_t documents = 4, doc_tokens = 1024, question_tokens = 32, qa_answer_tokens = 32;
  std::string order = "interleave";  // interleave | random | tile
  // W3 / W5 (lognormal: median and sigma of log; clipped to [1, max])
  int64_t requests = 64;
  double input_median = 128, input_sigma = 1.0, output_median = 64, output_sigma = 0.8;
  int32_t max_input_tokens = 1024, max_output_tokens = 256;
  std::vector<std::pair<std::string, double>> classes;  // (name, weight); empty = default class
  double cancel_fraction = 0.25;
  int32_t cancel_after_tokens = 4;
  // W4
  int32_t input_tokens = 512, output_tokens = 128;
  // trace
  std::string trace_path;
  int32_t trace_block_tokens = 512;
};

// The requests of the named workload; arrival_s is left 0 except for traces (the caller applies
// an arrival process). Errors name the bad option.
absl::StatusOr<std::vector<BenchRequest>> MakeWorkload(const WorkloadOptions& o);

// Sets arrival_s of each request in order: "poisson", "gamma" (with `cv`) at `rate` req/s, or
// "none" (all at 0, for closed loop). Traces keep their own timestamps.
absl::Status ApplyArrivals(std::vector<BenchRequest>& requests, const std::string& process,
                           double rate, double cv, uint64_t seed);

}  // namespace strata::bench
