// Single-stream prefill and decode throughput against the machine's own limits, measured in the
// same run (BENCHMARKS.md "Limits"):
//   memory bandwidth  = bytes read + written per second by a large multi-threaded memcpy
//   GEMM rate         = the CPU device's bf16 GEMM (oneDNN) at a large square-ish shape
//   decode limit      = bytes of weights read per token / bandwidth
//   prefill limit     = 2 * matmul parameters * tokens (+ attention FLOPs) / GEMM rate
// Prints a table and writes bench/results/single_stream.json. Not a test: it never fails on time.
//
//   bench_single_stream [--model synthetic:llama-3.2-1b] [--prompt-tokens 512] [--decode-tokens 64]
//                       [--threads 0] [--repeats 3]
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "common/clock.h"
#include "engine/local_runtime.h"
#include "engine/model.h"
#include "bench/bench_limits.h"

namespace strata::bench {
namespace {

using engine::ModelConfig;

std::map<std::string, std::string> ParseArgs(int argc, char** argv) {
  std::map<std::string, std::string> a = {{"model", "synthetic:llama-3.2-1b"},
                                          {"prompt-tokens", "512"}, {"decode-tokens", "64"},
                                          {"threads", "0"}, {"repeats", "3"}};
  for (int i = 1; i + 1 < argc; i += 2) a[std::string(argv[i]).substr(2)] = argv[i + 1];
  return a;
}





int Run(int argc, char** argv) {
  auto args = ParseArgs(argc, argv);
  const int64_t prompt_tokens = std::stoll(args["prompt-tokens"]);
  const int64_t decode_tokens = std::stoll(args["decode-tokens"]);
  const int repeats = std::stoi(args["repeats"]);
  auto model = engine::LoadModel(args["model"], {});
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  const ModelConfig& c = (*model)->config;
  auto rt = engine::LocalRuntime::Create(
      **model, {.backend = "cpu", .threads = std::stoi(args["threads"]),
                .max_batch_tokens = prompt_tokens,
                .max_model_len = prompt_tokens + decode_tokens + 1});
  CHECK_OK(rt.status());
  const int threads = omp_get_max_threads();
  const double bandwidth = MeasureCopyBandwidth(size_t{1} << 30, repeats);
  const double read_bandwidth = MeasureReadBandwidth(size_t{1} << 30, repeats);
  // The library's rate: the best of a few large shapes (the model's own shapes and a square one).
  double gemm_rate = 0;
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{512, 4864, 896},
                         {512, 4096, 4096}, {1024, 2048, 2048}}) {
    gemm_rate = std::max(gemm_rate, MeasureGemmRate((*rt)->device(), m, n, k, repeats));
  }

  std::vector<int32_t> prompt(prompt_tokens);
  for (int64_t i = 0; i < prompt_tokens; ++i) prompt[i] = static_cast<int32_t>((i * 7919) % 256);
  engine::GenerateOptions options;
  options.max_tokens = decode_tokens;
  options.sampling.temperature = 0;
  engine::GenerateStats best;
  best.prefill_seconds = best.decode_seconds = 1e30;
  for (int r = 0; r < repeats; ++r) {
    auto result = (*rt)->generator().Generate(prompt, options, nullptr);
    CHECK_OK(result.status());
    best.prefill_seconds = std::min(best.prefill_seconds, result->stats.prefill_seconds);
    best.decode_seconds = std::min(best.decode_seconds, result->stats.decode_seconds);
    best.prompt_tokens = result->stats.prompt_tokens;
    best.generated_tokens = result->stats.generated_tokens;
  }
  const double weight_bytes_per_token =
      static_cast<double>(MatmulParams(c)) * DTypeSize((*model)->weights.lm_head.dtype);
  const double decode_step_s = best.decode_seconds / (best.generated_tokens - 1);
  const double decode_limit_s = weight_bytes_per_token / bandwidth;
  const double attn_flops = 4.0 * c.num_layers * c.num_heads * c.head_dim *
                            (prompt_tokens * (prompt_tokens + 1) / 2.0);
  // Prefill projects every prompt token but computes logits for the last one only.
  const double lm_head_params = static_cast<double>(c.vocab_size) * c.hidden_size;
  const double prefill_flops =
      2.0 * (MatmulParams(c) - lm_head_params) * prompt_tokens + 2.0 * lm_head_params + attn_flops;
  const double prefill_limit_s = prefill_flops / gemm_rate;

  std::printf("\nsingle-stream benchmark: %s, %d threads\n", args["model"].c_str(), threads);
  std::printf("  %-34s %12.2f GB/s (memcpy, read+write, 1 GiB)\n", "memory bandwidth", bandwidth / 1e9);
  std::printf("  %-34s %12.2f GB/s (streaming read, 1 GiB)\n", "read bandwidth", read_bandwidth / 1e9);
  std::printf("  %-34s %12.1f GFLOP/s (bf16, best of 3 large shapes)\n", "GEMM rate", gemm_rate / 1e9);
  std::printf("  %-34s %12.1f MB\n", "weight bytes read per token", weight_bytes_per_token / 1e6);
  std::printf("\n  %-10s %10s %12s %12s %10s\n", "phase", "tokens", "tok/s", "limit tok/s", "of limit");
  std::printf("  %-10s %10lld %12.1f %12.1f %9.1f%%\n", "prefill", (long long)prompt_tokens,
              prompt_tokens / best.prefill_seconds, prompt_tokens / prefill_limit_s,
              100.0 * prefill_limit_s / best.prefill_seconds);
  std::printf("  %-10s %10lld %12.2f %12.2f %9.1f%%\n", "decode", (long long)(best.generated_tokens - 1),
              1.0 / decode_step_s, 1.0 / decode_limit_s, 100.0 * decode_limit_s / decode_step_s);
  const double read_limit_s = weight_bytes_per_token / read_bandwidth;
  std::printf("  %-10s %10s %12s %12.2f %9.1f%%   (limit from the streaming read instead)\n",
              "decode", "", "", 1.0 / read_limit_s, 100.0 * read_limit_s / decode_step_s);
  std::printf("  decode weight stream: %.2f GB/s\n", weight_bytes_per_token / decode_step_s / 1e9);

  std::filesystem::create_directories("bench/results");
  std::ofstream json("bench/results/single_stream.json");
  json << "{\"model\":\"" << args["model"] << "\",\"threads\":" << threads
       << ",\"bandwidth_bytes_per_s\":" << bandwidth
       << ",\"read_bandwidth_bytes_per_s\":" << read_bandwidth << ",\"gemm_flops_per_s\":" << gemm_rate
       << ",\"prompt_tokens\":" << prompt_tokens << ",\"prefill_s\":" << best.prefill_seconds
       << ",\"prefill_fraction_of_limit\":" << prefill_limit_s / best.prefill_seconds
       << ",\"decode_step_s\":" << decode_step_s
       << ",\"decode_fraction_of_limit\":" << decode_limit_s / decode_step_s << "}\n";
  return 0;
}

}  // namespace
}  // namespace strata::bench

int main(int argc, char** argv) { return strata::bench::Run(argc, argv); }
