// What the benchmark harness measured: one RequestRecord per request the load generator sent, the
// SLO targets it is judged against, and the machine limits of the run. Plain data shared by the
// load generator (which fills records), the report arithmetic and the renderers.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace strata::bench {

// One request as the client saw it. Times are seconds since the run started (the load
// generator's clock); -1 means "did not happen".
struct RequestRecord {
  int64_t id = 0;
  std::string slo_class;              // as sent; "" = the server's default class
  double scheduled_s = 0;             // when the arrival process wanted it sent
  double sent_s = -1;                 // when its first byte was written
  double first_token_s = -1;          // the first chunk carrying generated text or tokens
  double end_s = -1;                  // the response ended (or the client hung up)
  std::vector<double> chunk_times_s;  // one per generated token: the arrival of its SSE chunk
  int64_t prompt_tokens = 0;          // usage.prompt_tokens (the request's own count if none)
  int64_t output_tokens = 0;          // usage.completion_tokens
  int64_t cached_tokens = 0;          // usage.prompt_tokens_details.cached_tokens
  double server_queue_s = -1;         // server-reported arrival -> first engine step
  int http_status = 0;                // 0: no response head (connect failed, or hung up first)
  std::string finish_reason;          // "" when the stream did not finish
  std::string error;                  // the OpenAI error message or a transport error
  bool cancelled = false;             // the workload hung up on purpose (W5)
  std::string text;                   // the generated text (W5 compares it across runs)
};

// A class's latency targets (BENCHMARKS.md goodput: both must hold). 0 = no target, as in the
// server's `slo_classes` config.
struct SloTarget {
  double ttft_s = 0;
  double tpot_s = 0;
};

// Targets by class name; the entry "" is used for a class without its own entry.
using SloTargets = std::map<std::string, SloTarget>;

// Physical limits measured in the same run as the workload (BENCHMARKS.md "Limits"); 0 = not
// measured.
struct MachineLimits {
  double mem_read_bytes_per_s = 0;   // streaming read (the decode ceiling)
  double mem_copy_bytes_per_s = 0;   // memcpy, read + write counted
  double gemm_flops = 0;             // the CPU device's bf16 GEMM
  double disk_write_bytes_per_s = 0; // O_DIRECT sequential write + fdatasync, in disk_dir
  double disk_read_bytes_per_s = 0;  // O_DIRECT sequential read, in disk_dir
  std::string disk_dir;              // the disk tier's directory that was measured
};

// Per-token costs of the served model, for the achieved fractions (0 = unknown model).
struct ModelCosts {
  int64_t matmul_params = 0;         // parameters every token multiplies (projections + lm_head)
  int64_t weight_bytes = 0;          // bytes a decode step reads at least once
  int64_t kv_bytes_per_token = 0;    // 2 x layers x kv_heads x head_dim x element bytes
};

}  // namespace strata::bench
