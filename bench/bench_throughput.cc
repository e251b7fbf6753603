// W4 offline throughput (BENCHMARKS.md): N requests with fixed input and output lengths submitted
// at once to the continuous-batching Engine, for several N, against the machine's own limits
// measured in the same run:
//   memory bandwidth  = bytes read + written per second by a large multi-threaded memcpy
//   GEMM rate         = the CPU device's best bf16 GEMM rate over a few large shapes
//   decode step limit = max((weight bytes + KV bytes read) / bandwidth,
//                           2 * matmul parameters * N / GEMM rate)
// The decode step time is the wall time from the moment every request has its first token to the
// moment all finish, divided by output_tokens - 1: the prefill of the last admitted prompts is
// over by then, so the phase holds only decode steps of the full batch.
// The largest N also runs with prefix caching off and on again (prompts are unique, so caching
// has 0% hits and should cost nothing). Prints a table and writes bench/results/throughput.json.
// Not a test: it never fails on time.
//
//   bench_throughput [--model synthetic:llama-3.2-1b] [--concurrency 1,4,16,64]
//                    [--input-tokens 64] [--output-tokens 32] [--threads 0] [--seed 1]
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "common/clock.h"
#include "common/json.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "bench/bench_limits.h"
#include "bench/bench_prompts.h"

namespace strata::bench {
namespace {

using engine::ModelConfig;

std::map<std::string, std::string> ParseArgs(int argc, char** argv) {
  std::map<std::string, std::string> a = {{"model", "synthetic:llama-3.2-1b"},
                                          {"concurrency", "1,4,16,64"}, {"input-tokens", "64"},
                                          {"output-tokens", "32"}, {"threads", "0"}, {"seed", "1"}};
  for (int i = 1; i + 1 < argc; i += 2) a[std::string(argv[i]).substr(2)] = argv[i + 1];
  return a;
}

std::vector<int> ParseIntList(const std::string& text) {
  std::vector<int> values;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) values.push_back(std::stoi(item));
  return values;
}

struct Workload {
  int concurrency = 1;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
};

struct RunResult {
  double wall_s = 0;           // first Submit to the last request's final token
  double decode_step_s = 0;    // mean step time once every request has its first token
  int64_t output_tokens = 0;   // generated tokens over all requests
  int64_t cached_tokens = 0;   // prompt tokens served by the prefix cache (expected 0)
  int64_t preemptions = 0;
};

// One consumer per request: blocking Pop keeps timestamps exact without a polling interval.
absl::StatusOr<RunResult> RunOnce(const engine::Model& model, const engine::EngineConfig& config,
                                  const Workload& w, std::mt19937_64& rng) {
  ASSIGN_OR_RETURN(auto eng, engine::Engine::Create(model, config));
  auto prompts = MakePrompts(rng, w.concurrency, w.input_tokens, model.config.vocab_size);
  std::vector<double> first(w.concurrency), last(w.concurrency);
  std::vector<int64_t> tokens(w.concurrency), cached(w.concurrency);
  std::vector<std::string> reasons(w.concurrency);
  std::vector<std::thread> consumers;
  const double t0 = NowSeconds();
  for (int i = 0; i < w.concurrency; ++i) {
    engine::RequestOptions options;
    options.prompt_ids = std::move(prompts[i]);
    options.max_tokens = w.output_tokens;
    options.sampling.temperature = 0;
    ASSIGN_OR_RETURN(auto sub, eng->Submit(std::move(options)));
    consumers.emplace_back([&, i, channel = sub.channel] {
      for (;;) {
        engine::TokenEvent e = channel->Pop();
        double now = NowSeconds();
        if (e.token >= 0 && tokens[i]++ == 0) first[i] = now;
        cached[i] = e.num_cached_tokens;
        if (!e.finish_reason.empty()) {
          last[i] = now;
          reasons[i] = e.finish_reason;
          return;
        }
      }
    });
  }
  for (auto& t : consumers) t.join();
  RunResult r;
  for (int i = 0; i < w.concurrency; ++i) {
    if (reasons[i] != "length" || tokens[i] != w.output_tokens) {
      return absl::InternalError(StrCat("request ", i, " ended with '", reasons[i], "' after ",
                                        tokens[i], " of ", w.output_tokens, " tokens"));
    }
    r.output_tokens += tokens[i];
    r.cached_tokens += cached[i];
  }
  const double all_first = *std::max_element(first.begin(), first.end());
  const double all_done = *std::max_element(last.begin(), last.end());
  r.wall_s = all_done - t0;
  r.decode_step_s = w.output_tokens > 1 ? (all_done - all_first) / (w.output_tokens - 1) : 0;
  r.preemptions = eng->Stats().num_preemptions;
  return r;
}

struct Limits {
  double bandwidth = 0;          // bytes/s, memcpy read + write
  double gemm_rate = 0;          // FLOP/s
  double weight_bytes = 0;       // matmul weight bytes read per decode step
  double kv_bytes_per_token = 0; // K and V of all layers, as stored in the KV cache
  double matmul_params = 0;

  // Each step of the decode phase reads every sequence's KV, on average input + output / 2 tokens.
  double StepSeconds(const Workload& w) const {
    double kv_bytes = kv_bytes_per_token * w.concurrency * (w.input_tokens + w.output_tokens / 2.0);
    return std::max((weight_bytes + kv_bytes) / bandwidth,
                    2.0 * matmul_params * w.concurrency / gemm_rate);
  }
};

// Runs `f` on a thread that exits afterwards, so the OpenMP team it creates is torn down and
// does not sit next to the engine thread's team (libgomp then treats the process as
// oversubscribed and stops spin-waiting, which slows every kernel).
template <typename F>
void OnOwnThread(F f) {
  std::thread(f).join();
}

Limits MeasureLimits(const engine::Model& model, int threads) {
  const ModelConfig& c = model.config;
  auto dev = kernels::MakeCpuDevice({.threads = threads});
  CHECK_OK(dev.status());
  Limits l;
  l.bandwidth = MeasureCopyBandwidth(size_t{1} << 30, 3);
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{512, 4864, 896},
                         {512, 4096, 4096}, {1024, 2048, 2048}}) {
    l.gemm_rate = std::max(l.gemm_rate, MeasureGemmRate(**dev, m, n, k, 3));
  }
  l.matmul_params = static_cast<double>(MatmulParams(c));
  l.weight_bytes = l.matmul_params * DTypeSize(model.weights.lm_head.dtype);
  // The KV arena stores f32 (kvcache::KvLayout::PageBytes).
  l.kv_bytes_per_token = 2.0 * c.num_layers * c.num_kv_heads * c.head_dim * sizeof(float);
  return l;
}

Json RowJson(const Workload& w, const RunResult& r, const Limits& l, bool caching) {
  return Json{{"concurrency", w.concurrency},
              {"prefix_caching", caching},
              {"wall_s", r.wall_s},
              {"output_tokens_per_s", r.output_tokens / r.wall_s},
              {"decode_step_s", r.decode_step_s},
              {"limit_step_s", l.StepSeconds(w)},
              {"fraction_of_limit", l.StepSeconds(w) / r.decode_step_s},
              {"cached_prompt_tokens", r.cached_tokens},
              {"preemptions", r.preemptions}};
}

struct Row {
  Workload workload;
  RunResult result;
  bool caching = true;
  const char* note = "";
};

// Prints the table and returns its rows as JSON.
Json PrintTable(const std::string& model, int64_t input_tokens, int64_t output_tokens,
                const Limits& l, const std::vector<Row>& rows) {
  std::printf("\noffline throughput (W4): %s, %d threads, input %lld, output %lld tokens, greedy\n",
              model.c_str(), omp_get_max_threads(), static_cast<long long>(input_tokens),
              static_cast<long long>(output_tokens));
  std::printf("  memory bandwidth %.2f GB/s (memcpy, read+write), GEMM rate %.1f GFLOP/s (bf16), "
              "weights %.1f MB/step, KV %.1f KB/token\n",
              l.bandwidth / 1e9, l.gemm_rate / 1e9, l.weight_bytes / 1e6,
              l.kv_bytes_per_token / 1e3);
  std::printf("\n  %6s %10s %10s %12s %12s %10s %8s %6s\n", "seqs", "wall s", "out tok/s",
              "step ms", "limit ms", "of limit", "cached", "preem");
  Json json = Json::array();
  for (const Row& row : rows) {
    const Workload& w = row.workload;
    const RunResult& r = row.result;
    const double limit = l.StepSeconds(w);
    std::printf("  %6d %10.1f %10.1f %12.1f %12.1f %9.1f%% %8lld %6lld  %s\n", w.concurrency,
                r.wall_s, r.output_tokens / r.wall_s, r.decode_step_s * 1e3, limit * 1e3,
                100.0 * limit / r.decode_step_s, static_cast<long long>(r.cached_tokens),
                static_cast<long long>(r.preemptions), row.note);
    json.push_back(RowJson(w, r, l, row.caching));
  }
  return json;
}

engine::EngineConfig MakeEngineConfig(int threads, int max_concurrency, int64_t input_tokens,
                                      int64_t output_tokens) {
  engine::EngineConfig config;
  config.backend = "cpu";
  config.threads = threads;
  config.scheduler.max_num_seqs = max_concurrency;
  // Room for the prefill of a few prompts per step next to the decodes of the whole batch.
  config.scheduler.max_batch_tokens = std::max<int64_t>(2048, input_tokens + max_concurrency);
  config.max_model_len = input_tokens + output_tokens + 16;
  return config;
}

void WriteJson(const Json& out) {
  std::filesystem::create_directories("bench/results");
  std::ofstream("bench/results/throughput.json") << out.dump(2) << "\n";
}

int Run(int argc, char** argv) {
  auto args = ParseArgs(argc, argv);
  const std::vector<int> concurrency = ParseIntList(args["concurrency"]);
  const int64_t input_tokens = std::stoll(args["input-tokens"]);
  const int64_t output_tokens = std::stoll(args["output-tokens"]);
  const int threads = std::stoi(args["threads"]);
  if (concurrency.empty() || input_tokens < 1 || output_tokens < 2) {
    std::fprintf(stderr, "need --concurrency N[,N...], --input-tokens >= 1, --output-tokens >= 2\n");
    return 1;
  }
  auto model = engine::LoadModel(args["model"], {});
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  const int max_concurrency = *std::max_element(concurrency.begin(), concurrency.end());
  // Measured before and after the runs, the better of each: the limit is a ceiling, and other
  // processes on a shared machine only ever push a measurement below it.
  Limits limits;  // on a short-lived thread: see OnOwnThread
  OnOwnThread([&] { limits = MeasureLimits(**model, threads); });

  const engine::EngineConfig config =
      MakeEngineConfig(threads, max_concurrency, input_tokens, output_tokens);

  std::mt19937_64 rng(std::stoull(args["seed"]));
  std::vector<Row> rows;
  auto run = [&](const Workload& w, bool caching, const char* note) -> std::optional<RunResult> {
    std::fprintf(stderr, "running %d seqs, %s\n", w.concurrency, note);
    engine::EngineConfig c = config;
    c.enable_prefix_caching = caching;
    auto r = RunOnce(**model, c, w, rng);
    if (!r.ok()) {
      std::fprintf(stderr, "run failed: %s\n", std::string(r.status().message()).c_str());
      return std::nullopt;
    }
    rows.push_back({w, *r, caching, note});
    return *r;
  };
  for (int n : concurrency) {
    if (!run({n, input_tokens, output_tokens}, true, "caching on")) return 1;
  }
  // Off and on alternate twice and the best of each counts, so that a noisy shared machine
  // (other processes come and go) hits both alike.
  const Workload largest{max_concurrency, input_tokens, output_tokens};
  double best_off = 0, best_on = 0;
  for (int pass = 0; pass < 2; ++pass) {
    auto off = run(largest, false, "caching off");
    auto on = run(largest, true, "caching on (repeat)");
    if (!off || !on) return 1;
    best_off = std::max(best_off, off->output_tokens / off->wall_s);
    best_on = std::max(best_on, on->output_tokens / on->wall_s);
  }
  Limits after;
  OnOwnThread([&] { after = MeasureLimits(**model, threads); });
  std::printf("\nlimits measured before / after the runs: %.2f / %.2f GB/s, %.1f / %.1f GFLOP/s "
              "(the better of each is used)\n", limits.bandwidth / 1e9, after.bandwidth / 1e9,
              limits.gemm_rate / 1e9, after.gemm_rate / 1e9);
  limits.bandwidth = std::max(limits.bandwidth, after.bandwidth);
  limits.gemm_rate = std::max(limits.gemm_rate, after.gemm_rate);
  const Json rows_json = PrintTable(args["model"], input_tokens, output_tokens, limits, rows);
  const double ratio = best_on / best_off;
  std::printf("\n  prefix caching on / off at %d seqs, 0%% hits, best of 2 each: %.3f of the "
              "throughput (target > 0.98)\n", max_concurrency, ratio);

  Json out{{"workload", "W4"}, {"model", args["model"]}, {"threads", omp_get_max_threads()},
           {"input_tokens", input_tokens}, {"output_tokens", output_tokens},
           {"bandwidth_bytes_per_s", limits.bandwidth}, {"gemm_flops_per_s", limits.gemm_rate},
           {"weight_bytes_per_step", limits.weight_bytes},
           {"kv_bytes_per_token", limits.kv_bytes_per_token}, {"runs", rows_json},
           {"caching_on_over_off", ratio}};
  WriteJson(out);
  return 0;
}

}  // namespace
}  // namespace strata::bench

int main(int argc, char** argv) { return strata::bench::Run(argc, argv); }
