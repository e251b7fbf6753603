// The load generator: sends a workload's requests to a running Strata over the OpenAI HTTP API
// (/v1/completions, streaming, token-id prompts, greedy, ignore_eos) from one thread, over the
// non-blocking sockets of server::StreamClient, and records every request's timestamps down to each
// token. Open loop: each request goes at its arrival_s (and after the request it depends on).
// Closed loop: `concurrency` requests in flight, the next one sent as one finishes. Bounded in
// count and time; loopback only. The calling thread runs it.
#pragma once

#include <string>
#include <vector>

#include "bench/harness/record.h"
#include "bench/harness/workloads.h"
#include "common/status.h"

namespace strata::bench {

struct LoadOptions {
  int port = 8000;            // the daemon's HTTP port on 127.0.0.1
  std::string model;          // the `model` field ("" = the daemon's only model)
  std::string api_key;        // sent as a bearer token when not empty
  int concurrency = 0;        // > 0: closed loop with this many in flight; 0: open loop
  int64_t max_requests = 0;   // send at most this many (0 = the whole workload)
  double time_limit_s = 600;  // send nothing new after this long
  double drain_s = 120;       // then cut off what is still in flight after this long
  bool collect_text = false;  // keep the generated text in each record (W5)
};

// Runs the workload; one record per request that was sent, in workload order. Fails only when the
// harness itself cannot run (bad options); request failures are in the records.
absl::StatusOr<std::vector<RequestRecord>> RunLoad(const LoadOptions& options,
                                                   const std::vector<BenchRequest>& requests);

struct HttpReply {
  int status = 0;
  std::string body;
};

// A GET on 127.0.0.1:port (e.g. /metrics, /ready), over the same client; fails on no response.
absl::StatusOr<HttpReply> HttpGet(int port, const std::string& path, const std::string& api_key,
                                  double timeout_s = 30);

// The JSON body the load generator sends for `r` (exposed for tests and for re-runs).
std::string CompletionBody(const BenchRequest& r, const std::string& model);

}  // namespace strata::bench
