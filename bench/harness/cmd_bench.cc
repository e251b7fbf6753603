#include "bench/harness/cmd_bench.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>

#include "bench/harness/bench_options.h"
#include "bench/harness/daemon_launcher.h"
#include "bench/harness/fault_checks.h"
#include "bench/harness/limits.h"
#include "bench/harness/render.h"
#include "server/config.h"

namespace strata::bench {
namespace {

// One daemon configuration the runs go against: a config file, or the --server daemon.
struct Target {
  std::string label;
  std::string config;  // "" = the running daemon at --server
};

std::vector<Target> Targets(const BenchOptions& o) {
  if (o.configs.empty()) return {{"server", ""}};
  std::vector<Target> out;
  for (const std::string& c : o.configs) {
    std::string label = std::filesystem::path(c).stem().string();
    if (!out.empty() && out.back().label == label) label += "-2";
    out.push_back({label, c});
  }
  return out;
}

// The targets of the first config's slo_classes (ms -> s, 0 -> none); "" is its default class.
SloTargets TargetsFromConfig(const server::Config& c) {
  SloTargets out;
  const double inf = std::numeric_limits<double>::infinity();
  for (const auto& [name, k] : c.slo_classes) {
    out[name] = {k.ttft_ms > 0 ? k.ttft_ms / 1e3 : inf, k.tpot_ms > 0 ? k.tpot_ms / 1e3 : inf};
  }
  if (auto it = out.find(c.scheduler.default_slo_class); it != out.end()) out[""] = it->second;
  return out;
}

// Fills what the config can tell when the flags did not: targets, model, disk directory.
absl::Status Complete(BenchOptions& o) {
  if (o.configs.empty()) {
    if (o.disk_dir.empty()) o.disk_dir = o.out_dir;
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(server::Config c, server::LoadConfigFile(o.configs[0]));
  if (o.slo.empty()) o.slo = TargetsFromConfig(c);
  if (o.model.empty()) o.model = c.model.path.empty() ? "synthetic:tiny" : c.model.path;
  if (o.disk_dir.empty()) {
    const server::TierConfig& disk = c.kvcache.tiers.disk;
    o.disk_dir = disk.capacity_bytes > 0 && !disk.path.empty() ? disk.path : o.out_dir;
  }
  return absl::OkStatus();
}

std::string DefaultStem(const BenchOptions& o) {
  char when[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof(when), "%Y%m%d-%H%M%S", std::localtime(&now));
  return StrCat(o.workload.name, "-", when);
}

// The commit of the working tree the bench runs in (with "-dirty" for local changes), else the
// version the binary was built as.
std::string Commit() {
  std::string out;
  if (FILE* p = ::popen("git rev-parse --short HEAD 2>/dev/null && "
                        "git status --porcelain --untracked-files=no 2>/dev/null | head -1",
                        "r")) {
    char buf[256];
    while (std::fgets(buf, sizeof(buf), p)) out += buf;
    ::pclose(p);
  }
  const size_t nl = out.find('\n');
  if (nl == std::string::npos) return StrCat("v", STRATA_VERSION);
  return out.substr(0, nl) + (out.size() > nl + 1 ? "-dirty" : "");
}

std::string SelfBinary() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "strata" : p.string();
}

absl::StatusOr<PromSamples> Scrape(const LoadOptions& load) {
  ASSIGN_OR_RETURN(HttpReply r, HttpGet(load.port, "/metrics", load.api_key));
  if (r.status != 200) return absl::UnavailableError(StrCat("/metrics answered ", r.status));
  return ParsePromText(r.body);
}

class Bench {
 public:
  explicit Bench(BenchOptions o) : o_(std::move(o)) {}

  absl::Status Go() {
    RETURN_IF_ERROR(Complete(o_));
    std::filesystem::create_directories(o_.out_dir);
    stem_ = o_.name.empty() ? DefaultStem(o_) : o_.name;
    RETURN_IF_ERROR(Prepare());
    const std::vector<Target> targets = Targets(o_);
    const std::vector<double> rates = o_.rates.empty() ? std::vector<double>{0} : o_.rates;
    // Rate-major: the configs compared at one rate run back to back, so that drift of a shared
    // machine between the two halves of a sweep does not masquerade as a difference.
    for (size_t i = 0; i < rates.size(); ++i) {
      for (const Target& t : targets) {
        // A running daemon keeps its cache between runs: give each run its own prompts there.
        const uint64_t seed = o_.workload.seed + (t.config.empty() ? i : 0);
        ASSIGN_OR_RETURN(RunReport r, RunOne(t, rates[i], seed));
        runs_.push_back(std::move(r));
      }
    }
    return Report(targets);
  }

 private:
  absl::Status Prepare() {
    meta_.command = o_.command;
    meta_.commit = Commit();
    meta_.machine = DescribeMachine();
    meta_.model = o_.model;
    if (!o_.model.empty()) {
      absl::StatusOr<ModelCosts> c = CostsOfModel(o_.model);
      if (c.ok()) costs_ = *c;
      else std::fprintf(stderr, "bench: no model costs (%s)\n", c.status().ToString().c_str());
    }
    if (!o_.limits) return absl::OkStatus();
    std::fprintf(stderr, "bench: measuring the machine's limits (memory, GEMM, disk %s)\n",
                 o_.disk_dir.c_str());
    ASSIGN_OR_RETURN(meta_.limits, MeasureLimits({.disk_dir = o_.disk_dir}));
    return absl::OkStatus();
  }

  absl::StatusOr<RunReport> RunOne(const Target& t, double rate, uint64_t seed) {
    WorkloadOptions w = o_.workload;
    w.seed = seed;
    ASSIGN_OR_RETURN(std::vector<BenchRequest> requests, MakeWorkload(w));
    if (w.name != "trace") {
      RETURN_IF_ERROR(ApplyArrivals(requests, rate > 0 ? o_.arrivals : "none", rate, o_.cv, seed));
    }
    std::unique_ptr<LaunchedDaemon> daemon;
    LoadOptions load = o_.load;
    load.collect_text = w.name == "W5";
    if (!t.config.empty()) {
      const std::string log = StrCat(o_.out_dir, "/", stem_, ".", t.label, ".log");
      ASSIGN_OR_RETURN(daemon, LaunchedDaemon::Start(SelfBinary(), t.config, o_.model, log));
      load.port = daemon->http_port();
    }
    std::fprintf(stderr, "bench: %s %s rate=%g concurrency=%d: %zu requests\n", t.label.c_str(),
                 w.name.c_str(), rate, load.concurrency, requests.size());
    ASSIGN_OR_RETURN(PromSamples before, Scrape(load));
    ASSIGN_OR_RETURN(std::vector<RequestRecord> records, RunLoad(load, requests));
    ASSIGN_OR_RETURN(PromSamples after, Scrape(load));
    RunReport r;
    if (w.name == "W5") {
      ASSIGN_OR_RETURN(r.checks, CheckFaults(load, requests, records));
    }
    if (daemon) daemon->Stop();
    r.label = t.label;
    r.workload = w.name;
    r.rate_rps = rate;
    r.concurrency = load.concurrency;
    r.summary = Summarize(records, o_.slo);
    r.metrics = DiffMetrics(before, after);
    r.fractions = Fractions(r.summary, records, r.metrics, meta_.limits, costs_);
    r.records = std::move(records);
    return r;
  }

  absl::Status Report(const std::vector<Target>& targets) {
    std::fputs(RenderTable(meta_, runs_).c_str(), stdout);
    // Every compared config against the first one (the baseline).
    for (size_t i = 1; i < targets.size(); ++i) {
      std::fputs("\n", stdout);
      std::fputs(RenderComparison(runs_, targets[0].label, targets[i].label).c_str(), stdout);
    }
    const std::string json = StrCat(o_.out_dir, "/", stem_, ".json");
    std::ofstream(json) << RenderJson(meta_, runs_);
    std::printf("\nresults: %s\n", json.c_str());
    if (o_.plots) {
      ASSIGN_OR_RETURN(std::vector<std::string> pngs, WritePlots(o_.out_dir, stem_, runs_));
      for (const std::string& p : pngs) std::printf("plot: %s\n", p.c_str());
    }
    return absl::OkStatus();
  }

  BenchOptions o_;
  std::string stem_;
  BenchMeta meta_;
  ModelCosts costs_;
  std::vector<RunReport> runs_;
};

}  // namespace

int RunBench(const std::vector<std::string>& args) {
  absl::StatusOr<BenchOptions> o = ParseBenchOptions(args);
  if (!o.ok()) {
    std::fprintf(stderr, "strata bench: %s\n%s", std::string(o.status().message()).c_str(),
                 kBenchUsage);
    return 2;
  }
  absl::Status s = Bench(std::move(*o)).Go();
  if (!s.ok()) {
    std::fprintf(stderr, "strata bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace strata::bench
