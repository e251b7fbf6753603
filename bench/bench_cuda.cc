// bench_cuda: the CUDA backend on one GPU against that GPU's own limits, all measured in ONE run
// (BENCHMARKS.md "Limits", issue 9). Prints a Markdown table with ratios and writes
// bench/results/cuda.json. Not a test: it never fails on a time; it exits 1 when a measurement
// could not be made (the table's row says why), and 0 with one line saying why when there is no
// GPU or the build has no CUDA.
//
//   1. the card (name, SMs, memory) and the commit given with --commit;
//   2. reference copies (bench/cuda_reference.cu): device to device, 1 GiB, counted as bytes read
//      + written per second; host to device from pinned (cudaMallocHost) and pageable memory;
//   3. reference GEMM: cuBLAS bf16 8192^3 with f32 accumulation, best of 10;
//   4. the engine (engine::Engine, backend "cuda") on synthetic:llama-3-8b (bf16 weights):
//      the decode step at batch 1 against (weight + KV bytes read) / the D2D bandwidth (target
//      >= 80%); output tokens/s and step time at 64 and 256 concurrent sequences; prefill tokens/s
//      as a fraction of the GEMM rate (2 x matmul parameters x tokens FLOPs; target >= 60%);
//   5. host-tier KV loads: the engine has no timed hook for them, so this times what a host-tier
//      hit does per layer page (TieredStore -> ModelRunner::WritePage -> Device::CopyToDevice of
//      one page from the host tier's page-locked arena, Device::AllocateHost) on KV-page-sized
//      spans into scattered pages of a device pool, against the pinned bulk copy (target >= 80%).
//
//   bench_cuda [--commit SHA] [--quick] [--model SPEC] [--probe]
//     --quick   a smoke run: small copies and GEMM, synthetic:llama-3.2-1b, short workloads
//     --probe   only says whether a GPU is usable (one line) and exits 0
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_limits.h"
#include "bench/bench_prompts.h"
#include "bench/cuda_reference.h"
#include "common/clock.h"
#include "common/json.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "kernels/device.h"
#include "kvcache/kv_layout.h"

namespace strata::bench {
namespace {

constexpr char kUsage[] = "usage: bench_cuda [--commit SHA] [--quick] [--model SPEC] [--probe]\n";
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct Options {
  std::string commit = "unknown (pass --commit $(git rev-parse --short HEAD))";
  std::string model;  // empty: the plan's default
  bool quick = false;
  bool probe = false;
};

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--quick") {
      o.quick = true;
    } else if (flag == "--probe") {
      o.probe = true;
    } else if ((flag == "--commit" || flag == "--model") && i + 1 < argc) {
      (flag == "--commit" ? o.commit : o.model) = argv[++i];
    } else {
      return absl::InvalidArgumentError(StrCat("unknown flag or missing value: '", flag, "'"));
    }
  }
  return o;
}

// What one run measures; --quick shrinks every size.
struct Plan {
  std::string mode;  // "full" or "quick"
  std::string model;
  size_t copy_bytes = 0;
  int copy_repeats = 0;
  int64_t gemm_size = 0;  // m = n = k
  int gemm_repeats = 0;
  int64_t decode_prompt_tokens = 0;  // batch-1 decode: one request
  int64_t decode_tokens = 0;
  int runs = 0;                  // decode and prefill: best of
  std::vector<int> concurrency;  // throughput: that many requests at once
  int64_t batch_input_tokens = 0;
  int64_t batch_output_tokens = 0;
  int prefill_requests = 0;  // prefill: that many prompts at once, one output token
  int64_t prefill_tokens = 0;
  int64_t max_batch_tokens = 0;  // the engine's step budget (prefill chunk)
  int page_loads = 0;            // KV pages copied per repeat in the host-tier measurement
  double run_timeout_s = 0;      // one engine workload; then everything is cancelled
};

Plan MakePlan(const Options& o) {
  Plan p;
  if (o.quick) {
    p = {.mode = "quick",
         .model = "synthetic:llama-3.2-1b",
         .copy_bytes = size_t{256} << 20,
         .copy_repeats = 3,
         .gemm_size = 4096,
         .gemm_repeats = 3,
         .decode_prompt_tokens = 32,
         .decode_tokens = 32,
         .runs = 1,
         .concurrency = {4, 16},
         .batch_input_tokens = 32,
         .batch_output_tokens = 16,
         .prefill_requests = 4,
         .prefill_tokens = 256,
         .max_batch_tokens = 1024,
         .page_loads = 1024,
         .run_timeout_s = 120};
  } else {
    p = {.mode = "full",
         .model = "synthetic:llama-3-8b",
         .copy_bytes = size_t{1} << 30,
         .copy_repeats = 10,
         .gemm_size = 8192,
         .gemm_repeats = 10,
         .decode_prompt_tokens = 128,
         .decode_tokens = 128,
         .runs = 2,
         .concurrency = {64, 256},
         .batch_input_tokens = 128,
         .batch_output_tokens = 128,
         .prefill_requests = 16,
         .prefill_tokens = 1024,
         .max_batch_tokens = 4096,
         .page_loads = 8192,
         .run_timeout_s = 150};
  }
  if (!o.model.empty()) p.model = o.model;
  return p;
}

// ---- Report ------------------------------------------------------------------------------------

// Every member has a default initializer, so rows name only what they have.
struct Row {
  std::string name{};
  std::string measured{};
  std::string reference{};  // what it is compared with
  double ratio = -1;        // measured against the reference, as a fraction; < 0: none
  std::string target{};     // e.g. ">= 80%"
  std::string error{};      // non-empty: the measurement failed
};

std::string Percent(double ratio) {
  return ratio < 0 ? "-" : absl::StrFormat("%.1f%%", 100.0 * ratio);
}

// Collects the rows and the JSON, prints progress as it goes and the table at the end.
class Report {
 public:
  explicit Report(std::string header) : header_(std::move(header)), t0_(NowSeconds()) {}

  void Progress(const std::string& what) const {
    std::printf("[%7.1f s] %s\n", NowSeconds() - t0_, what.c_str());
    std::fflush(stdout);
  }
  void Add(Row row) {
    Progress(row.error.empty() ? StrCat(row.name, ": ", row.measured)
                               : StrCat(row.name, ": FAILED: ", row.error));
    rows_.push_back(std::move(row));
  }
  void Fail(const std::string& name, const absl::Status& status) {
    Add({.name = name, .error = std::string(status.message())});
  }
  void Note(const std::string& note) { notes_.push_back(note); }
  bool failed() const {
    return std::any_of(rows_.begin(), rows_.end(), [](const Row& r) { return !r.error.empty(); });
  }
  Json& json() { return json_; }

  void Print() const {
    std::printf("\n%s\n\n| measurement | measured | reference | ratio | target |\n",
                header_.c_str());
    std::printf("|---|---|---|---:|---|\n");
    for (const Row& r : rows_) {
      if (!r.error.empty()) {
        std::printf("| %s | FAILED: %s | | | %s |\n", r.name.c_str(), r.error.c_str(),
                    r.target.c_str());
      } else {
        std::printf("| %s | %s | %s | %s | %s |\n", r.name.c_str(), r.measured.c_str(),
                    r.reference.c_str(), Percent(r.ratio).c_str(), r.target.c_str());
      }
    }
    for (const std::string& n : notes_) std::printf("\n%s\n", n.c_str());
    std::fflush(stdout);
  }

  void WriteJson(const std::string& path) const {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    std::ofstream out(path);
    out << json_.dump(2) << "\n";
    if (!out)
      std::printf("(could not write %s; the table above has everything)\n", path.c_str());
    else
      std::printf("\nwrote %s\n", path.c_str());
  }

 private:
  std::string header_;
  double t0_;
  std::vector<Row> rows_;
  std::vector<std::string> notes_;
  Json json_ = Json::object();
};

std::string DescribeCard(const CardInfo& c) {
  return absl::StrFormat(
      "%s (GPU %d): %d SMs, compute %d.%d, %.1f GiB memory (%.1f GiB free), L2 %.1f MiB, "
      "driver %d.%d, runtime %d.%d",
      c.name, c.ordinal, c.num_sms, c.compute_major, c.compute_minor, c.total_memory_bytes / kGiB,
      c.free_memory_bytes / kGiB, c.l2_bytes / 1048576.0, c.driver_version / 1000,
      c.driver_version % 1000 / 10, c.runtime_version / 1000, c.runtime_version % 1000 / 10);
}

Json RateJson(const Rate& r) {
  return Json{{"best_per_s", r.best_per_s},
              {"median_per_s", r.median_per_s},
              {"best_s", r.best_s},
              {"repeats", r.repeats}};
}

// ---- 2, 3: the references ----------------------------------------------------------------------

struct References {
  double d2d_bytes_per_s = 0;  // read + write
  double pinned_h2d_bytes_per_s = 0;
  double gemm_flops_per_s = 0;
};

void AddCopyRow(const std::string& key, const std::string& name, const absl::StatusOr<Rate>& rate,
                const Plan& p, const std::string& reference, double reference_rate,
                Report& report) {
  if (!rate.ok()) return report.Fail(name, rate.status());
  report.json()[key] = RateJson(*rate);
  report.Add(
      {.name = StrCat(name, ", ", p.copy_bytes >> 20, " MiB"),
       .measured = absl::StrFormat("%.1f GB/s (median %.1f, best of %d)", rate->best_per_s / 1e9,
                                   rate->median_per_s / 1e9, rate->repeats),
       .reference = reference,
       .ratio = reference_rate > 0 ? rate->best_per_s / reference_rate : -1});
}

References MeasureReferences(const Plan& p, Report& report) {
  References refs;
  report.Progress("reference copies and GEMM");
  auto d2d = MeasureDeviceCopy(p.copy_bytes, p.copy_repeats);
  AddCopyRow("d2d_copy", "device-to-device copy (read + write bytes)", d2d, p, "", 0, report);
  if (d2d.ok()) refs.d2d_bytes_per_s = d2d->best_per_s;
  auto pinned = MeasureHostToDevice(p.copy_bytes, p.copy_repeats, true);
  AddCopyRow("h2d_pinned", "host-to-device copy, pinned", pinned, p, "", 0, report);
  if (pinned.ok()) refs.pinned_h2d_bytes_per_s = pinned->best_per_s;
  auto pageable = MeasureHostToDevice(p.copy_bytes, p.copy_repeats, false);
  AddCopyRow("h2d_pageable", "host-to-device copy, pageable", pageable, p,
             absl::StrFormat("pinned %.1f GB/s", refs.pinned_h2d_bytes_per_s / 1e9),
             refs.pinned_h2d_bytes_per_s, report);
  const std::string gemm_name =
      absl::StrFormat("cuBLAS bf16 GEMM %d^3, f32 accumulate", p.gemm_size);
  auto gemm = MeasureBf16Gemm(p.gemm_size, p.gemm_size, p.gemm_size, p.gemm_repeats);
  if (!gemm.ok()) {
    report.Fail(gemm_name, gemm.status());
  } else {
    refs.gemm_flops_per_s = gemm->best_per_s;
    report.json()["gemm"] = RateJson(*gemm);
    report.Add({.name = gemm_name,
                .measured = absl::StrFormat("%.1f TFLOP/s (median %.1f, best of %d)",
                                            gemm->best_per_s / 1e12, gemm->median_per_s / 1e12,
                                            gemm->repeats)});
  }
  return refs;
}

// ---- 4: the engine -----------------------------------------------------------------------------

// What the model costs per token, from its shapes (bench_limits.h).
struct ModelCosts {
  double matmul_params = 0;  // every projection and the lm_head
  double lm_head_params = 0;
  double weight_bytes = 0;        // matmul weights read per decode step
  double kv_bytes_per_token = 0;  // K and V of all layers in the f32 KV arena

  explicit ModelCosts(const engine::Model& model) {
    const engine::ModelConfig& c = model.config;
    matmul_params = static_cast<double>(MatmulParams(c));
    lm_head_params = static_cast<double>(c.vocab_size) * c.hidden_size;
    weight_bytes = matmul_params * DTypeSize(model.weights.lm_head.dtype);
    kv_bytes_per_token = 2.0 * c.num_layers * c.num_kv_heads * c.head_dim * sizeof(float);
  }
  // A decode step of `seqs` sequences holding `context` tokens each on average.
  double StepBytes(int seqs, double context) const {
    return weight_bytes + seqs * context * kv_bytes_per_token;
  }
  // Prefill of `requests` prompts, `tokens` in all: logits for one row per request only.
  double PrefillFlops(int requests, double tokens) const {
    return 2.0 * (matmul_params - lm_head_params) * tokens + 2.0 * lm_head_params * requests;
  }
};

struct BatchResult {
  double wall_s = 0;         // first Submit to the last request's final event
  double decode_step_s = 0;  // (all finished - all have their first token) / (max_tokens - 1)
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
};

// One request's events as its consumer thread saw them.
struct Tracker {
  double first_token_at = 0;
  double done_at = 0;
  int64_t tokens = 0;
  std::string finish_reason;
};

void Consume(engine::OutputChannel& channel, Tracker& t) {
  for (;;) {
    engine::TokenEvent e = channel.Pop();
    const double now = NowSeconds();
    if (e.token >= 0 && t.tokens++ == 0) t.first_token_at = now;
    if (!e.finish_reason.empty()) {
      t.done_at = now;
      t.finish_reason =
          e.reason.empty() ? e.finish_reason : StrCat(e.finish_reason, ": ", e.reason);
      return;
    }
  }
}

// Waits until `done` reaches `count` or the clock passes `deadline`; true if it did.
bool WaitFor(const std::atomic<size_t>& done, size_t count, double deadline) {
  while (done.load() < count) {
    if (NowSeconds() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

absl::StatusOr<BatchResult> Summarize(const std::vector<Tracker>& track,
                                      const std::vector<std::vector<int32_t>>& prompts,
                                      int64_t max_tokens, double t0) {
  BatchResult r;
  double all_first = 0, all_done = 0;
  for (size_t i = 0; i < track.size(); ++i) {
    if (track[i].finish_reason != "length" || track[i].tokens != max_tokens) {
      return absl::InternalError(
          StrCat("request ", i, " of ", track.size(), " ended with '", track[i].finish_reason,
                 "' after ", track[i].tokens, " of ", max_tokens,
                 " tokens (an 'abort' is a failed step: the engine's log above says why)"));
    }
    all_first = std::max(all_first, track[i].first_token_at);
    all_done = std::max(all_done, track[i].done_at);
    r.prompt_tokens += static_cast<int64_t>(prompts[i].size());
    r.output_tokens += track[i].tokens;
  }
  r.wall_s = all_done - t0;
  r.decode_step_s = max_tokens > 1 ? (all_done - all_first) / (max_tokens - 1) : 0;
  return r;
}

// Submits every prompt at once (greedy, max_tokens each) and waits for all of them. Past
// `timeout_s` it cancels everything and fails; an engine that ignores the cancel for 30 s more
// ends the process (the output so far says where it stopped).
absl::StatusOr<BatchResult> RunBatch(engine::Engine& eng,
                                     const std::vector<std::vector<int32_t>>& prompts,
                                     int64_t max_tokens, double timeout_s) {
  std::vector<Tracker> track(prompts.size());
  std::vector<engine::RequestId> ids;
  std::vector<std::thread> consumers;
  std::atomic<size_t> done{0};
  absl::Status submitted = absl::OkStatus();
  const double t0 = NowSeconds();
  for (size_t i = 0; i < prompts.size() && submitted.ok(); ++i) {
    engine::RequestOptions o;
    o.prompt_ids = prompts[i];
    o.max_tokens = max_tokens;
    o.sampling.temperature = 0;
    auto sub = eng.Submit(std::move(o));
    if (!sub.ok()) {
      submitted = sub.status();
      break;
    }
    ids.push_back(sub->id);
    consumers.emplace_back([&track, &done, i, channel = sub->channel] {
      Consume(*channel, track[i]);
      done.fetch_add(1);
    });
  }
  const bool finished = submitted.ok() && WaitFor(done, ids.size(), t0 + timeout_s);
  if (!finished) {
    for (engine::RequestId id : ids) eng.Cancel(id);
    if (!WaitFor(done, ids.size(), NowSeconds() + 30)) {
      std::printf("bench_cuda: the engine did not answer a cancel within 30 s; giving up\n");
      std::fflush(stdout);
      std::_Exit(1);
    }
  }
  for (std::thread& t : consumers) t.join();
  if (!submitted.ok()) return submitted;
  if (!finished) {
    return absl::DeadlineExceededError(
        absl::StrFormat("not finished within %.0f s (cancelled)", timeout_s));
  }
  return Summarize(track, prompts, max_tokens, t0);
}

int64_t Blocks(int64_t tokens, int64_t block_size) {
  return (tokens + block_size - 1) / block_size;
}

// backend cuda; KV pages for the largest workload of the plan, prefix caching off (every prompt
// is unique anyway), one step holds every sequence of the largest batch.
engine::EngineConfig EngineConfigFor(const Plan& p, const engine::ModelConfig& c) {
  engine::EngineConfig e;
  e.backend = "cuda";
  e.block_size = 16;
  e.enable_prefix_caching = false;
  const int max_seqs = *std::max_element(p.concurrency.begin(), p.concurrency.end());
  e.scheduler.max_num_seqs = max_seqs;
  e.scheduler.max_batch_tokens = std::max<int64_t>(p.max_batch_tokens, max_seqs);
  e.max_model_len = std::max({p.decode_prompt_tokens + p.decode_tokens,
                              p.batch_input_tokens + p.batch_output_tokens, p.prefill_tokens + 1}) +
                    e.block_size;
  const int64_t b = e.block_size;
  const int64_t blocks =
      std::max({max_seqs * Blocks(p.batch_input_tokens + p.batch_output_tokens, b),
                p.prefill_requests * Blocks(p.prefill_tokens + 1, b), Blocks(e.max_model_len, b)});
  e.num_kv_pages = static_cast<int32_t>((blocks + 4) * c.num_layers);
  return e;
}

std::vector<std::vector<int32_t>> Prompts(int count, int64_t length, const engine::Model& model,
                                          std::mt19937_64& rng) {
  return MakePrompts(rng, count, length, model.config.vocab_size);
}

// The best decode step time at batch 1 over p.runs requests.
absl::StatusOr<double> BestDecodeStep(engine::Engine& eng, const engine::Model& model,
                                      const Plan& p, std::mt19937_64& rng) {
  double best = 0;
  for (int r = 0; r < p.runs; ++r) {
    ASSIGN_OR_RETURN(BatchResult run, RunBatch(eng, Prompts(1, p.decode_prompt_tokens, model, rng),
                                               p.decode_tokens, p.run_timeout_s));
    if (r == 0 || run.decode_step_s < best) best = run.decode_step_s;
  }
  return best;
}

// Returns the step time (0 when it failed).
double DecodeRow(engine::Engine& eng, const engine::Model& model, const Plan& p,
                 const References& refs, std::mt19937_64& rng, Report& report) {
  const std::string name = absl::StrFormat("decode step, batch 1 (%d prompt + %d tokens)",
                                           p.decode_prompt_tokens, p.decode_tokens);
  report.Progress(name);
  absl::StatusOr<double> step_s = BestDecodeStep(eng, model, p, rng);
  if (!step_s.ok()) {
    report.Fail(name, step_s.status());
    return 0;
  }
  const double step = *step_s;
  const ModelCosts costs(model);
  const double bytes = costs.StepBytes(1, p.decode_prompt_tokens + p.decode_tokens / 2.0);
  const double limit_s = refs.d2d_bytes_per_s > 0 ? bytes / refs.d2d_bytes_per_s : 0;
  report.json()["decode_batch1"] =
      Json{{"step_s", step}, {"limit_s", limit_s}, {"bytes_per_step", bytes}};
  report.Add({.name = name,
              .measured = absl::StrFormat("%.2f ms/step (%.1f tok/s)", step * 1e3,
                                          1.0 / step),
              .reference = limit_s > 0
                               ? absl::StrFormat("%.2f ms = %.2f GB weights + KV / D2D bandwidth",
                                                 limit_s * 1e3, bytes / 1e9)
                               : "no D2D reference",
              .ratio = limit_s > 0 ? limit_s / step : -1,
              .target = ">= 80%"});
  return step;
}

// The batch-1 decode step again on an engine with cuda_graphs off: what the graphs save.
void EagerDecodeRow(const engine::Model& model, const Plan& p, double graph_step_s,
                    Report& report) {
  const std::string name = "decode step, batch 1, eager launches (engine.cuda_graphs: false)";
  report.Progress(name);
  engine::EngineConfig config = EngineConfigFor(p, model.config);
  config.cuda_graphs = false;
  auto eng = engine::Engine::Create(model, config);
  if (!eng.ok()) return report.Fail(name, eng.status());
  std::mt19937_64 rng(2);
  absl::StatusOr<double> step_s = BestDecodeStep(**eng, model, p, rng);
  if (!step_s.ok()) return report.Fail(name, step_s.status());
  report.json()["decode_batch1_eager"] = Json{{"step_s", *step_s}, {"graph_step_s", graph_step_s}};
  report.Add({.name = name,
              .measured = absl::StrFormat("%.2f ms/step", *step_s * 1e3),
              .reference = absl::StrFormat("%.2f ms/step with graphs", graph_step_s * 1e3),
              .ratio = graph_step_s > 0 ? graph_step_s / *step_s : -1});
}

void ThroughputRow(engine::Engine& eng, const engine::Model& model, const Plan& p, int seqs,
                   const References& refs, std::mt19937_64& rng, Report& report) {
  const std::string name = absl::StrFormat("throughput, %d sequences (%d prompt + %d tokens)", seqs,
                                           p.batch_input_tokens, p.batch_output_tokens);
  report.Progress(name);
  auto run = RunBatch(eng, Prompts(seqs, p.batch_input_tokens, model, rng), p.batch_output_tokens,
                      p.run_timeout_s);
  if (!run.ok()) return report.Fail(name, run.status());
  const ModelCosts costs(model);
  const double bytes = costs.StepBytes(seqs, p.batch_input_tokens + p.batch_output_tokens / 2.0);
  const double bw_s = refs.d2d_bytes_per_s > 0 ? bytes / refs.d2d_bytes_per_s : 0;
  const double flop_s =
      refs.gemm_flops_per_s > 0 ? 2.0 * costs.matmul_params * seqs / refs.gemm_flops_per_s : 0;
  const double limit_s = std::max(bw_s, flop_s);
  const double tokens_per_s = run->output_tokens / run->wall_s;
  report.json()[StrCat("throughput_", seqs)] = Json{{"wall_s", run->wall_s},
                                                    {"output_tokens_per_s", tokens_per_s},
                                                    {"decode_step_s", run->decode_step_s},
                                                    {"limit_step_s", limit_s}};
  report.Add(
      {.name = name,
       .measured = absl::StrFormat("%.0f output tok/s (wall, prefill included); step %.2f ms",
                                   tokens_per_s, run->decode_step_s * 1e3),
       .reference = limit_s > 0 ? absl::StrFormat("step limit %.2f ms (%s-bound)", limit_s * 1e3,
                                                  bw_s >= flop_s ? "bandwidth" : "GEMM")
                                : "no D2D / GEMM reference",
       .ratio = limit_s > 0 && run->decode_step_s > 0 ? limit_s / run->decode_step_s : -1});
}

void PrefillRow(engine::Engine& eng, const engine::Model& model, const Plan& p,
                const References& refs, std::mt19937_64& rng, Report& report) {
  const std::string name = absl::StrFormat("prefill, %d prompts x %d tokens (1 output token)",
                                           p.prefill_requests, p.prefill_tokens);
  report.Progress(name);
  std::optional<BatchResult> run;
  for (int r = 0; r < p.runs; ++r) {
    auto one = RunBatch(eng, Prompts(p.prefill_requests, p.prefill_tokens, model, rng), 1,
                        p.run_timeout_s);
    if (!one.ok()) return report.Fail(name, one.status());
    if (!run || one->wall_s < run->wall_s) run = *one;
  }
  const ModelCosts costs(model);
  const double flops = costs.PrefillFlops(p.prefill_requests, run->prompt_tokens);
  const double achieved = flops / run->wall_s;
  report.json()["prefill"] = Json{{"wall_s", run->wall_s},
                                  {"prompt_tokens", run->prompt_tokens},
                                  {"flops", flops},
                                  {"flops_per_s", achieved}};
  report.Add({.name = name,
              .measured = absl::StrFormat("%.0f tok/s = %.1f TFLOP/s",
                                          run->prompt_tokens / run->wall_s, achieved / 1e12),
              .reference = absl::StrFormat("GEMM %.1f TFLOP/s", refs.gemm_flops_per_s / 1e12),
              .ratio = refs.gemm_flops_per_s > 0 ? achieved / refs.gemm_flops_per_s : -1,
              .target = ">= 60%"});
}

void MeasureEngine(const engine::Model& model, const Plan& p, const References& refs,
                   Report& report) {
  const engine::EngineConfig config = EngineConfigFor(p, model.config);
  report.Progress(
      absl::StrFormat("engine: backend cuda, %d KV pages, max_num_seqs %d, "
                      "max_batch_tokens %d, max_model_len %d",
                      config.num_kv_pages, config.scheduler.max_num_seqs,
                      config.scheduler.max_batch_tokens, config.max_model_len));
  auto eng = engine::Engine::Create(model, config);
  if (!eng.ok()) return report.Fail("engine (backend cuda): create", eng.status());
  if (std::string dev = (*eng)->device_name(); dev.rfind("cuda", 0) != 0) {
    return report.Fail("engine (backend cuda): create",
                       absl::InternalError(StrCat("the engine runs on '", dev, "', not CUDA")));
  }
  std::mt19937_64 rng(1);
  report.Progress("engine warm-up (one short request)");
  auto warm = RunBatch(**eng, Prompts(1, 16, model, rng), 4, p.run_timeout_s);
  if (!warm.ok()) return report.Fail("engine warm-up request", warm.status());
  const double graph_step_s = DecodeRow(**eng, model, p, refs, rng, report);
  for (int seqs : p.concurrency) ThroughputRow(**eng, model, p, seqs, refs, rng, report);
  PrefillRow(**eng, model, p, refs, rng, report);
  const engine::EngineStats s = (*eng)->Stats();
  report.json()["engine"] = Json{{"steps", s.num_steps},
                                 {"graph_steps", s.num_graph_steps},
                                 {"preemptions", s.num_preemptions},
                                 {"step_errors", s.num_step_errors}};
  if (s.num_preemptions > 0 || s.num_step_errors > 0) {
    report.Note(absl::StrFormat("engine: %d preemptions, %d failed steps during the runs",
                                s.num_preemptions, s.num_step_errors));
  }
  eng->reset();  // its weights and KV leave the GPU before the eager engine loads its own
  if (graph_step_s > 0) EagerDecodeRow(model, p, graph_step_s, report);
}

// ---- 5: host-tier KV page loads ----------------------------------------------------------------

// Device::CopyToDevice of one KV page at a time from Device::AllocateHost memory (what HostTier's
// arenas are made of) into shuffled pages of a device pool; best of `repeats` passes over
// `num_pages` pages after one warm-up pass, then one page read back and compared.
absl::StatusOr<Rate> MeasurePageLoads(const engine::ModelConfig& c, int num_pages, int repeats) {
  const kvcache::KvLayout layout{.num_layers = static_cast<int32_t>(c.num_layers),
                                 .num_kv_heads = static_cast<int32_t>(c.num_kv_heads),
                                 .head_dim = static_cast<int32_t>(c.head_dim),
                                 .block_size = 16};
  const size_t page_bytes = layout.PageBytes();
  const size_t total = page_bytes * num_pages;
  ASSIGN_OR_RETURN(auto device, kernels::MakeCudaDevice(0));
  ASSIGN_OR_RETURN(auto pool, device->Allocate(total));
  ASSIGN_OR_RETURN(auto host_buffer, device->AllocateHost(total));
  std::byte* host = host_buffer->as<std::byte>();
  for (size_t i = 0; i < total; ++i) host[i] = static_cast<std::byte>(i * 131 + 7);
  std::vector<int32_t> order(num_pages);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  std::byte* base = static_cast<std::byte*>(pool->data());
  std::vector<double> seconds;
  for (int r = 0; r <= repeats; ++r) {  // r == 0: warm-up
    const double t0 = NowSeconds();
    for (int i = 0; i < num_pages; ++i) {
      RETURN_IF_ERROR(device->CopyToDevice(base + order[i] * page_bytes,
                                           host + i * page_bytes, page_bytes));
    }
    if (r > 0) seconds.push_back(NowSeconds() - t0);
  }
  std::vector<std::byte> back(page_bytes);
  RETURN_IF_ERROR(
      device->CopyToHost(back.data(), base + order[1 % num_pages] * page_bytes, page_bytes));
  if (std::memcmp(back.data(), host + (1 % num_pages) * page_bytes, page_bytes) != 0) {
    return absl::InternalError("a page read back differs from what was copied");
  }
  std::sort(seconds.begin(), seconds.end());
  return Rate{.best_per_s = total / seconds.front(),
              .median_per_s = total / seconds[seconds.size() / 2],
              .best_s = seconds.front(),
              .repeats = repeats};
}

void PageLoadRow(const engine::ModelConfig& c, const Plan& p, const References& refs,
                 Report& report) {
  const kvcache::KvLayout layout{.num_layers = static_cast<int32_t>(c.num_layers),
                                 .num_kv_heads = static_cast<int32_t>(c.num_kv_heads),
                                 .head_dim = static_cast<int32_t>(c.head_dim),
                                 .block_size = 16};
  const std::string name =
      absl::StrFormat("host-tier KV loads: %d pages of %d KiB, one Device::CopyToDevice each",
                      p.page_loads, layout.PageBytes() / 1024);
  report.Progress(name);
  auto rate = MeasurePageLoads(c, p.page_loads, 3);
  if (!rate.ok()) return report.Fail(name, rate.status());
  report.json()["host_tier_page_loads"] = RateJson(*rate);
  report.json()["host_tier_page_bytes"] = layout.PageBytes();
  report.Add(
      {.name = name,
       .measured = absl::StrFormat("%.1f GB/s (median %.1f)", rate->best_per_s / 1e9,
                                   rate->median_per_s / 1e9),
       .reference = absl::StrFormat("pinned bulk %.1f GB/s", refs.pinned_h2d_bytes_per_s / 1e9),
       .ratio =
           refs.pinned_h2d_bytes_per_s > 0 ? rate->best_per_s / refs.pinned_h2d_bytes_per_s : -1,
       .target = ">= 80%"});
  report.Note(
      "host-tier KV loads are measured without the engine: it has no timed hook for them. The "
      "row times what a host-tier hit does per layer page (TieredStore -> ModelRunner::WritePage "
      "-> Device::CopyToDevice, synchronous, from the page-locked HostTier arena) into shuffled "
      "pages of a device pool.");
}

// ---- main --------------------------------------------------------------------------------------

int Measure(const Options& o, const CardInfo& card) {
  const Plan p = MakePlan(o);
  Report report(StrCat("bench_cuda (", p.mode, "): ", DescribeCard(card), "; commit ", o.commit,
                       "; model ", p.model));
  report.json()["card"] = Json{{"name", card.name},
                               {"sms", card.num_sms},
                               {"memory_bytes", card.total_memory_bytes},
                               {"compute", StrCat(card.compute_major, ".", card.compute_minor)}};
  report.json()["commit"] = o.commit;
  report.json()["mode"] = p.mode;
  report.json()["model"] = p.model;
  report.Progress(StrCat("card: ", DescribeCard(card), "; commit ", o.commit));
  const References refs = MeasureReferences(p, report);
  report.Progress(StrCat("loading ", p.model));
  auto model = engine::LoadModel(p.model, {});
  if (!model.ok()) {
    report.Fail(StrCat("load ", p.model), model.status());
  } else {
    report.Progress(StrCat("loaded: ", (*model)->description));
    MeasureEngine(**model, p, refs, report);
    PageLoadRow((*model)->config, p, refs, report);
  }
  report.Print();
  report.WriteJson(StrCat("bench/results/cuda", p.mode == "quick" ? "_quick" : "", ".json"));
  return report.failed() ? 1 : 0;
}

int Run(int argc, char** argv) {
  auto options = ParseOptions(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "bench_cuda: %s\n%s", std::string(options.status().message()).c_str(),
                 kUsage);
    return 2;
  }
  auto card = QueryCard(0);
  if (!card.ok() && absl::IsUnavailable(card.status())) {
    std::printf("bench_cuda: no usable GPU, nothing measured: %s\n",
                std::string(card.status().message()).c_str());
    return 0;
  }
  if (!card.ok()) {
    std::printf("bench_cuda: cannot query GPU 0: %s\n",
                std::string(card.status().message()).c_str());
    return 1;
  }
  if (options->probe) {
    std::printf("bench_cuda: GPU found: %s\n", DescribeCard(*card).c_str());
    return 0;
  }
  return Measure(*options, *card);
}

}  // namespace
}  // namespace strata::bench

int main(int argc, char** argv) { return strata::bench::Run(argc, argv); }
