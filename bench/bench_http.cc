// What the HTTP path costs: one workload — N concurrent requests of fixed input and output
// length, greedy, ignore_eos — run two ways on one Engine in one process:
//   in-process  Engine::Submit, one blocked consumer thread per request (the engine's own API);
//   HTTP        the daemon's stack (GenerationService + HttpApi + HttpServer, configured from a
//               Config exactly as `strata serve` does) driven over loopback by a single-threaded
//               poll() client reading N SSE streams of POST /v1/completions.
// Prefix caching is off and every run has fresh random prompts, so both do the same engine work.
// The two alternate (order flipped each repeat, so drift hits both) and the table reports output
// tokens per second of each and their ratio; the median ratio is the result. Writes
// bench/results/http.json. Not a test: it never fails on time.
//
//   bench_http [--model synthetic:qwen2.5-0.5b] [--streams 64] [--input-tokens 32]
//              [--output-tokens 64] [--threads 0] [--io-threads 2] [--repeats 5] [--seed 1]
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_prompts.h"
#include "common/clock.h"
#include "common/json.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "server/config.h"
#include "server/serve_setup.h"
#include "server/stream_client.h"

namespace strata::bench {
namespace {

using Prompts = std::vector<std::vector<int32_t>>;

std::map<std::string, std::string> ParseArgs(int argc, char** argv) {
  std::map<std::string, std::string> a = {
      {"model", "synthetic:qwen2.5-0.5b"}, {"streams", "64"}, {"input-tokens", "32"},
      {"output-tokens", "64"}, {"threads", "0"}, {"io-threads", "2"}, {"repeats", "5"},
      {"seed", "1"}};
  for (int i = 1; i + 1 < argc; i += 2) a[std::string(argv[i]).substr(2)] = argv[i + 1];
  return a;
}

// Wall seconds from the first Submit to the last request's final token.
absl::StatusOr<double> RunInProcess(engine::Engine& eng, const Prompts& prompts,
                                    int64_t output_tokens) {
  std::vector<int64_t> tokens(prompts.size());
  std::vector<std::thread> consumers;
  const double t0 = NowSeconds();
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine::RequestOptions o;
    o.prompt_ids = prompts[i];
    o.max_tokens = output_tokens;
    o.sampling.temperature = 0;
    ASSIGN_OR_RETURN(auto sub, eng.Submit(std::move(o)));
    consumers.emplace_back([&tokens, i, channel = sub.channel] {
      for (;;) {
        engine::TokenEvent e = channel->Pop();
        if (e.token >= 0) ++tokens[i];
        if (!e.finish_reason.empty()) return;
      }
    });
  }
  for (auto& t : consumers) t.join();
  const double wall = NowSeconds() - t0;
  for (int64_t n : tokens) {
    if (n != output_tokens) return absl::InternalError(StrCat("in-process: ", n, " tokens"));
  }
  return wall;
}

std::string CompletionRequest(const std::vector<int32_t>& prompt, int64_t output_tokens) {
  return server::HttpPost("/v1/completions", Json{{"prompt", prompt},
                                                  {"max_tokens", output_tokens},
                                                  {"ignore_eos", true},
                                                  {"temperature", 0},
                                                  {"stream", true},
                                                  {"stream_options", {{"include_usage", true}}}}
                                                 .dump());
}

// completion_tokens of the stream's usage chunk; -1 when there is none.
int64_t CompletionTokens(const std::string& received) {
  const std::string key = "\"completion_tokens\":";
  const size_t at = received.rfind(key);
  return at == std::string::npos ? -1 : std::stoll(received.substr(at + key.size()));
}

// Wall seconds from the first connect to the last stream's [DONE].
absl::StatusOr<double> RunHttp(int port, const Prompts& prompts, int64_t output_tokens) {
  std::vector<std::string> requests;
  for (const auto& p : prompts) requests.push_back(CompletionRequest(p, output_tokens));
  const double t0 = NowSeconds();
  server::StreamClient client(port, std::move(requests));
  RETURN_IF_ERROR(client.Run(/*stall_s=*/60));
  const double wall = NowSeconds() - t0;
  for (const auto& s : client.streams()) {
    if (CompletionTokens(s.received) != output_tokens) {
      return absl::InternalError(StrCat("http stream: ", s.received.substr(0, 300)));
    }
  }
  return wall;
}

server::Config BenchConfig(std::map<std::string, std::string>& args) {
  server::Config c;
  const int streams = std::stoi(args["streams"]);
  c.model.path = args["model"];
  c.model.max_model_len = std::stoll(args["input-tokens"]) + std::stoll(args["output-tokens"]) + 16;
  c.engine.backend = "cpu";
  c.engine.threads = std::stoi(args["threads"]);
  c.engine.max_num_seqs = streams;
  c.engine.max_batch_tokens = std::max<int64_t>(2048, std::stoll(args["input-tokens"]) + streams);
  c.kvcache.prefix_caching = false;
  c.server.http_port = 0;
  c.server.io_threads = std::stoi(args["io-threads"]);
  c.server.limits.max_concurrent_streams = std::max<int64_t>(1024, 2 * streams);
  return c;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

int Run(int argc, char** argv) {
  auto args = ParseArgs(argc, argv);
  const server::Config c = BenchConfig(args);
  const int streams = std::stoi(args["streams"]);
  const int64_t input_tokens = std::stoll(args["input-tokens"]);
  const int64_t output_tokens = std::stoll(args["output-tokens"]);
  const int repeats = std::stoi(args["repeats"]);
  auto model = engine::LoadModel(c.model.path, {});
  if (!model.ok()) return std::fprintf(stderr, "%s\n", model.status().ToString().c_str()), 1;
  auto eng = engine::Engine::Create(**model, server::MakeEngineConfig(c, **model));
  if (!eng.ok()) return std::fprintf(stderr, "%s\n", eng.status().ToString().c_str()), 1;
  // The daemon's HTTP side exactly as `strata serve` builds it (gRPC does not carry this load).
  server::HttpFrontEnd front;
  if (absl::Status s = server::StartHttpFrontEnd(c, **eng, **model, nullptr, "bench", &front);
      !s.ok()) {
    return std::fprintf(stderr, "%s\n", s.ToString().c_str()), 1;
  }
  const int port = front.server->port();
  std::mt19937_64 rng(std::stoull(args["seed"]));
  auto prompts = [&] {
    return MakePrompts(rng, streams, input_tokens, (*model)->config.vocab_size);
  };
  // Warm-up: first-touch of the KV arena and the weights, connection set-up paths.
  if (!RunInProcess(**eng, prompts(), 4).ok() || !RunHttp(port, prompts(), 4).ok()) return 1;

  std::printf("\nHTTP path vs in-process engine: %s, %d streams, input %lld, output %lld tokens,"
              " %d I/O threads\n",
              c.model.path.c_str(), streams, static_cast<long long>(input_tokens),
              static_cast<long long>(output_tokens), c.server.io_threads);
  std::printf("%-6s %18s %18s %10s\n", "run", "in-process tok/s", "HTTP tok/s", "HTTP/in");
  const double total = static_cast<double>(streams * output_tokens);
  std::vector<double> ratios;
  Json rows = Json::array();
  for (int r = 0; r < repeats; ++r) {
    double in_s = 0, http_s = 0;
    for (int k = 0; k < 2; ++k) {
      const bool http_now = (k == 0) == (r % 2 == 1);
      auto wall = http_now ? RunHttp(port, prompts(), output_tokens)
                           : RunInProcess(**eng, prompts(), output_tokens);
      if (!wall.ok()) return std::fprintf(stderr, "%s\n", wall.status().ToString().c_str()), 1;
      (http_now ? http_s : in_s) = *wall;
    }
    ratios.push_back(in_s / http_s);
    std::printf("%-6d %18.1f %18.1f %10.3f\n", r + 1, total / in_s, total / http_s, in_s / http_s);
    rows.push_back({{"in_process_tok_s", total / in_s}, {"http_tok_s", total / http_s}});
  }
  const double median = Median(ratios);
  std::printf("median HTTP/in-process throughput ratio %.3f (HTTP %+.1f%% against in-process)\n",
              median, 100.0 * (median - 1.0));
  std::filesystem::create_directories("bench/results");
  std::ofstream("bench/results/http.json")
      << Json{{"model", c.model.path}, {"streams", streams}, {"input_tokens", input_tokens},
              {"output_tokens", output_tokens}, {"io_threads", c.server.io_threads},
              {"runs", rows}, {"median_ratio", median}}
             .dump(2)
      << "\n";
  front.server->Stop();
  eng->reset();  // joins the engine thread before the service goes
  return 0;
}

}  // namespace
}  // namespace strata::bench

int main(int argc, char** argv) { return strata::bench::Run(argc, argv); }
