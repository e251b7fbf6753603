// Renders RunReports: Markdown tables (terminal and bench/README.md), the comparison of two
// configs, the JSON file, and the PNG plots drawn by gnuplot from .dat files and a .gp script.
#include "bench/harness/render.h"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <set>

#include "absl/strings/str_join.h"
#include "common/file.h"
#include "common/json.h"

namespace strata::bench {

// JSON forms of the report structs (nlohmann finds these by argument-dependent lookup).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(MachineLimits, mem_read_bytes_per_s, mem_copy_bytes_per_s,
                                   gemm_flops, disk_write_bytes_per_s, disk_read_bytes_per_s,
                                   disk_dir)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(BenchMeta, command, commit, machine, model, limits)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(SloTarget, ttft_s, tpot_s)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(LatencyStats, n, mean, p50, p90, p99, max)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ClassSummary, slo_class, target, requests, completed, met,
                                   rejected, errors, cancelled, ttft, queue, compute, tpot, e2e,
                                   goodput_rps, attainment)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(RunSummary, duration_s, input_tokens, output_tokens,
                                   cached_tokens, request_rps, input_tps, output_tps, all, classes)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(MetricsDelta, prefix_query_tokens, prefix_hit_tokens,
                                   transfer_bytes, tier_errors, preemptions, queue_time_sum_s,
                                   queue_time_count, slo_requests, prompt_tokens, generation_tokens)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(LimitFractions, decode_bandwidth, prefill_gemm, disk_write,
                                   disk_read)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(RequestRecord, id, slo_class, scheduled_s, sent_s, first_token_s,
                                   end_s, chunk_times_s, prompt_tokens, output_tokens,
                                   cached_tokens, server_queue_s, http_status, finish_reason, error,
                                   cancelled, text)

namespace {

const char* const kTiers[] = {"device", "host", "disk"};
// transfer_bytes keys and their (shorter) column headers.
const std::pair<const char*, const char*> kDirections[] = {{"device->host", "dev->host"},
                                                           {"host->device", "host->dev"},
                                                           {"host->disk", "host->disk"},
                                                           {"disk->host", "disk->host"}};

// About three significant digits: 1234, 123, 12.3, 1.23; "-" for what is not a number.
std::string Num(double v) {
  if (!std::isfinite(v)) return "-";
  if (v == 0) return "0";
  double a = std::fabs(v);
  return absl::StrFormat("%.*f", a >= 100 ? 0 : a >= 10 ? 1 : 2, v);
}

std::string Ms(const LatencyStats& s, double LatencyStats::*field) {
  return s.n > 0 ? Num(s.*field * 1e3) : "-";
}

std::string Pct(double fraction) { return Num(fraction * 100); }

std::string Count(double n) { return absl::StrFormat("%.0f", n); }

template <typename Map>
double ValueOr0(const Map& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

// "fcfs 2 rps", "fcfs c=8": how a run's offered load reads in tables and plot titles.
std::string LoadName(const RunReport& r) {
  if (r.rate_rps > 0) return absl::StrFormat("%g rps", r.rate_rps);
  if (r.concurrency > 0) return absl::StrFormat("c=%d", r.concurrency);
  return "";
}

std::string RunName(const RunReport& r) {
  std::string name = StrCat(r.label, " ", r.workload, " ", LoadName(r));
  while (!name.empty() && name.back() == ' ') name.pop_back();
  return name;
}

// A Markdown table whose columns are padded to their widest cell: aligned on a terminal, valid
// Markdown in a README. The first `num_text_columns` are left-aligned text, the rest numbers.
class Table {
 public:
  Table(std::vector<std::string> header, size_t num_text_columns)
      : header_(std::move(header)), num_text_columns_(num_text_columns) {}

  // REQUIRES: row.size() == the header's.
  void AddRow(std::vector<std::string> row) {
    CHECK(row.size() == header_.size());
    rows_.push_back(std::move(row));
  }

  std::string Render() const {
    std::vector<size_t> widths(header_.size(), 3);
    for (const auto* row : AllRows()) {
      for (size_t c = 0; c < row->size(); ++c) widths[c] = std::max(widths[c], (*row)[c].size());
    }
    std::string out = Line(header_, widths);
    std::vector<std::string> rule;
    for (size_t c = 0; c < widths.size(); ++c) {
      rule.push_back(c < num_text_columns_ ? std::string(widths[c], '-')
                                           : std::string(widths[c] - 1, '-') + ":");
    }
    out += Line(rule, widths);
    for (const auto& row : rows_) out += Line(row, widths);
    return out;
  }

 private:
  std::vector<const std::vector<std::string>*> AllRows() const {
    std::vector<const std::vector<std::string>*> all{&header_};
    for (const auto& row : rows_) all.push_back(&row);
    return all;
  }

  std::string Line(const std::vector<std::string>& cells, const std::vector<size_t>& widths) const {
    std::string line = "|";
    for (size_t c = 0; c < cells.size(); ++c) {
      std::string pad(widths[c] - cells[c].size(), ' ');
      line += c < num_text_columns_ ? StrCat(" ", cells[c], pad, " |")
                                    : StrCat(" ", pad, cells[c], " |");
    }
    return line + "\n";
  }

  std::vector<std::string> header_;
  size_t num_text_columns_;
  std::vector<std::vector<std::string>> rows_;
};

std::string Rate(double v, double scale, const char* unit) {
  return v > 0 ? StrCat(Num(v / scale), " ", unit) : "n/a";
}

std::string MetaHeader(const BenchMeta& meta) {
  const MachineLimits& l = meta.limits;
  return StrCat("- machine: ", meta.machine, "\n- commit: ", meta.commit, "\n- model: ", meta.model,
                "\n- command: `", meta.command, "`\n- limits: mem read ",
                Rate(l.mem_read_bytes_per_s, 1e9, "GB/s"), ", GEMM ",
                Rate(l.gemm_flops, 1e9, "GFLOP/s"), ", disk r/w ",
                Rate(l.disk_read_bytes_per_s, 1e6, "MB/s"), " / ",
                Rate(l.disk_write_bytes_per_s, 1e6, "MB/s"), "\n");
}

// Calls fn(run, class row) for each run's all-classes row, then its per-class rows when the run
// has more than one class. The class cell reads "all" or the class name ("(default)" for "").
void ForEachRow(
    const std::vector<RunReport>& runs,
    const std::function<void(const RunReport&, const ClassSummary&, const std::string&)>& fn) {
  for (const RunReport& run : runs) {
    fn(run, run.summary.all, "all");
    if (run.summary.classes.size() < 2) continue;
    for (const ClassSummary& c : run.summary.classes) {
      fn(run, c, c.slo_class.empty() ? "(default)" : c.slo_class);
    }
  }
}

std::string LatencyTable(const std::vector<RunReport>& runs) {
  Table t({"run", "class", "TTFT p50", "TTFT p90", "TTFT p99", "queue p50", "compute", "TPOT p50",
           "TPOT p99", "e2e p50"},
          2);
  ForEachRow(runs, [&](const RunReport& run, const ClassSummary& c, const std::string& cls) {
    t.AddRow({RunName(run), cls, Ms(c.ttft, &LatencyStats::p50), Ms(c.ttft, &LatencyStats::p90),
              Ms(c.ttft, &LatencyStats::p99), Ms(c.queue, &LatencyStats::p50),
              Ms(c.compute, &LatencyStats::p50), Ms(c.tpot, &LatencyStats::p50),
              Ms(c.tpot, &LatencyStats::p99), Ms(c.e2e, &LatencyStats::p50)});
  });
  return StrCat("latency (ms); TTFT split into server queueing and compute at p50\n\n", t.Render());
}

std::string ThroughputTable(const std::vector<RunReport>& runs) {
  Table t({"run", "class", "req", "ok", "429", "err", "cancel", "req/s", "in tok/s", "out tok/s",
           "goodput req/s", "SLO %"},
          2);
  ForEachRow(runs, [&](const RunReport& run, const ClassSummary& c, const std::string& cls) {
    const RunSummary& s = run.summary;
    bool all = &c == &s.all;  // throughput is measured for the run, not per class
    t.AddRow({RunName(run), cls, std::to_string(c.requests), std::to_string(c.completed),
              std::to_string(c.rejected), std::to_string(c.errors), std::to_string(c.cancelled),
              all ? Num(s.request_rps) : "", all ? Num(s.input_tps) : "",
              all ? Num(s.output_tps) : "", Num(c.goodput_rps), Pct(c.attainment)});
  });
  return StrCat("throughput and SLO\n\n", t.Render());
}

std::string CacheTable(const std::vector<RunReport>& runs) {
  Table t({"run", "hit device", "hit host", "hit disk", "preempt", "tier errors"}, 1);
  for (const RunReport& run : runs) {
    const MetricsDelta& m = run.metrics;
    std::vector<std::string> row{RunName(run)};
    for (const char* tier : kTiers) row.push_back(Pct(m.HitRate(tier)));
    double errors = 0;
    for (const auto& [kind, n] : m.tier_errors) errors += n;
    row.insert(row.end(), {Count(m.preemptions), Count(errors)});
    t.AddRow(std::move(row));
  }
  return StrCat("prefix cache hit rate by tier (%), preemptions, KV tier errors\n\n", t.Render());
}

std::string TrafficTable(const std::vector<RunReport>& runs) {
  std::vector<std::string> header{"run"};
  for (const auto& [key, column] : kDirections) header.push_back(column);
  header.insert(header.end(), {"decode BW", "prefill GEMM", "disk w", "disk r"});
  Table t(header, 1);
  for (const RunReport& run : runs) {
    std::vector<std::string> row{RunName(run)};
    for (const auto& [key, column] : kDirections) {
      row.push_back(Num(ValueOr0(run.metrics.transfer_bytes, key) / 1e6));
    }
    const LimitFractions& f = run.fractions;
    row.insert(row.end(),
               {Pct(f.decode_bandwidth), Pct(f.prefill_gemm), Pct(f.disk_write), Pct(f.disk_read)});
    t.AddRow(std::move(row));
  }
  return StrCat("KV bytes moved by src->dst (MB), achieved fraction of the limits (%)\n\n",
                t.Render());
}

// The comparison's metrics: name (with unit) and how to read it from a run.
struct ComparedMetric {
  const char* name;
  double (*value)(const RunReport&);
};

const ComparedMetric kCompared[] = {
    {"goodput req/s", [](const RunReport& r) { return r.summary.all.goodput_rps; }},
    {"SLO %", [](const RunReport& r) { return r.summary.all.attainment * 100; }},
    {"out tok/s", [](const RunReport& r) { return r.summary.output_tps; }},
    {"TTFT p50 ms", [](const RunReport& r) { return r.summary.all.ttft.p50 * 1e3; }},
    {"TTFT p99 ms", [](const RunReport& r) { return r.summary.all.ttft.p99 * 1e3; }},
    {"TPOT p50 ms", [](const RunReport& r) { return r.summary.all.tpot.p50 * 1e3; }},
    {"TPOT p99 ms", [](const RunReport& r) { return r.summary.all.tpot.p99 * 1e3; }},
};

bool SameLoad(const RunReport& x, const RunReport& y) {
  return x.workload == y.workload && x.rate_rps == y.rate_rps && x.concurrency == y.concurrency;
}

// ---- plots ----

namespace fs = std::filesystem;

// A gnuplot single-quoted string (a quote inside is doubled).
std::string GpQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string PlotTitle(const RunReport& r) {
  std::string load = LoadName(r);
  return load.empty() ? r.label : StrCat(r.label, " ", load);
}

// The CDF of `values_s` as "ms fraction" lines, ready for `with steps`: it rises from 0 at the
// smallest value. REQUIRES: values_s not empty.
std::string CdfData(std::vector<double> values_s) {
  std::sort(values_s.begin(), values_s.end());
  std::string out = absl::StrFormat("%.9g 0\n", values_s.front() * 1e3);
  for (size_t k = 0; k < values_s.size(); ++k) {
    out += absl::StrFormat("%.9g %.9g\n", values_s[k] * 1e3,
                           static_cast<double>(k + 1) / static_cast<double>(values_s.size()));
  }
  return out;
}

// One CDF panel: writes a .dat per run that has samples and returns the panel's gnuplot lines.
absl::StatusOr<std::string> CdfPanel(const std::string& dir, const std::string& stem,
                                     const std::vector<RunReport>& runs, const std::string& name,
                                     double RequestLatencies::*field) {
  std::vector<std::string> curves;
  for (size_t i = 0; i < runs.size(); ++i) {
    std::vector<double> values;
    for (const RequestRecord& r : runs[i].records) {
      double v = Latencies(r).*field;
      if (Completed(r) && v >= 0) values.push_back(v);
    }
    if (values.empty()) continue;
    std::string path = StrCat(dir, "/", stem, "_", i, "_", name, ".dat");
    RETURN_IF_ERROR(WriteFile(path, CdfData(values)));
    // A run keeps its colour across the panels even where another run has no samples.
    curves.push_back(StrCat(GpQuote(path), " using 1:2 with steps lw 2 lc ", i + 1, " title ",
                            GpQuote(PlotTitle(runs[i]))));
  }
  std::string head =
      StrCat("set title ", GpQuote(name), "\nset xlabel ", GpQuote(name + " (ms)"), "\n");
  if (curves.empty()) {  // an empty plot is an error in gnuplot: draw an off-range constant
    return head +
           "set label 1 'no data' at graph 0.5,0.5 center\nplot [0:1] 2 notitle\n"
           "unset label 1\n";
  }
  return StrCat(head, "plot ", absl::StrJoin(curves, ", \\\n     "), "\n");
}

std::string Terminal(int width, int height) {
  return absl::StrFormat("set terminal @term noenhanced size %d,%d\n", width, height);
}

absl::StatusOr<std::string> CdfScript(const std::string& dir, const std::string& stem,
                                      const std::vector<RunReport>& runs, const std::string& png) {
  std::string gp = StrCat(Terminal(1800, 500), "set output ", GpQuote(png), "\n",
                          "set multiplot layout 1,3 title ", GpQuote(stem + ": latency CDFs"),
                          "\nset grid\nset key bottom right\nset yrange [0:1]\nset xrange [0:*]\n"
                          "set offsets 0, graph 0.05, 0, 0\n"
                          "set ylabel 'fraction of requests'\n");
  const std::pair<const char*, double RequestLatencies::*> panels[] = {
      {"TTFT", &RequestLatencies::ttft_s},
      {"TPOT", &RequestLatencies::tpot_s},
      {"e2e", &RequestLatencies::e2e_s}};
  for (const auto& [name, field] : panels) {
    ASSIGN_OR_RETURN(std::string panel, CdfPanel(dir, stem, runs, name, field));
    gp += panel;
  }
  return gp + "unset multiplot\nset autoscale xy\nset offsets 0, 0, 0, 0\n";
}

// Open-loop runs grouped by (label, workload), sorted by rate: the lines of the goodput plot.
std::map<std::string, std::vector<const RunReport*>> RateSeries(
    const std::vector<RunReport>& runs) {
  std::map<std::string, std::vector<const RunReport*>> series;
  for (const RunReport& r : runs) {
    if (r.rate_rps > 0) series[StrCat(r.label, " ", r.workload)].push_back(&r);
  }
  for (auto& [name, members] : series) {
    std::stable_sort(members.begin(), members.end(), [](const RunReport* a, const RunReport* b) {
      return a->rate_rps < b->rate_rps;
    });
  }
  return series;
}

bool HasRateSweep(const std::map<std::string, std::vector<const RunReport*>>& series) {
  for (const auto& [name, members] : series) {
    std::set<double> rates;
    for (const RunReport* r : members) rates.insert(r->rate_rps);
    if (rates.size() >= 2) return true;
  }
  return false;
}

absl::StatusOr<std::string> GoodputScript(
    const std::string& dir, const std::string& stem,
    const std::map<std::string, std::vector<const RunReport*>>& series, const std::string& png) {
  std::vector<std::string> goodput, attainment;
  size_t j = 0;
  for (const auto& [name, members] : series) {
    std::string data;
    for (const RunReport* r : members) {
      data += absl::StrFormat("%.9g %.9g %.9g\n", r->rate_rps, r->summary.all.goodput_rps,
                              r->summary.all.attainment * 100);
    }
    std::string path = StrCat(dir, "/", stem, "_goodput_", j++, ".dat");
    RETURN_IF_ERROR(WriteFile(path, data));
    std::string title = StrCat(" with linespoints lw 2 pt 7 title ", GpQuote(name));
    goodput.push_back(StrCat(GpQuote(path), " using 1:2", title));
    attainment.push_back(StrCat(GpQuote(path), " using 1:3", title));
  }
  return StrCat(Terminal(1200, 500), "set output ", GpQuote(png), "\n",
                "set multiplot layout 1,2 title ", GpQuote(stem + ": goodput vs offered rate"),
                "\nset grid\nset key bottom left\nset xlabel 'offered rate (req/s)'\n",
                "set title 'goodput'\nset ylabel 'goodput (req/s)'\nset yrange [0:*]\nplot ",
                absl::StrJoin(goodput, ", "), "\n",
                "set title 'SLO attainment'\nset ylabel 'attainment (%)'\nset yrange [0:105]\n"
                "plot ",
                absl::StrJoin(attainment, ", "), "\nunset multiplot\n");
}

// Runs `gnuplot script`; its output (stderr included) goes into the error.
absl::Status RunGnuplot(const std::string& script) {
  std::string command = StrCat("gnuplot ", ShellQuote(script), " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError(StrCat("cannot start: ", command));
  std::string output;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;) output.append(buf, n);
  int status = pclose(pipe);
  if (status == 0) return absl::OkStatus();
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 127) {
    return absl::FailedPreconditionError(
        StrCat("gnuplot is not runnable (install Debian's gnuplot-nox): ", output));
  }
  return absl::InternalError(
      StrCat("gnuplot ", script, " failed (exit status ", code, "): ", output));
}

absl::Status CheckNonEmpty(const std::string& path) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec || size == 0) return absl::InternalError(StrCat("gnuplot did not write ", path));
  return absl::OkStatus();
}

}  // namespace

// The fault workload's checks, one line per run that has them.
std::string ChecksLines(const std::vector<RunReport>& runs) {
  std::string out;
  for (const RunReport& r : runs) {
    if (r.checks.empty()) continue;
    out += StrCat("\nchecks ", RunName(r), ":");
    for (const auto& [name, value] : r.checks) out += StrCat(" ", name, "=", Num(value));
    out += "\n";
  }
  return out;
}

std::string RenderTable(const BenchMeta& meta, const std::vector<RunReport>& runs) {
  return StrCat(MetaHeader(meta), "\n", LatencyTable(runs), "\n", ThroughputTable(runs), "\n",
                CacheTable(runs), "\n", TrafficTable(runs), ChecksLines(runs));
}

std::string RenderComparison(const std::vector<RunReport>& runs, const std::string& a,
                             const std::string& b) {
  Table t({"workload", "load", "metric", a, b, StrCat(b, "/", a)}, 3);
  std::vector<std::string> unpaired;
  std::set<const RunReport*> paired_b;
  for (const RunReport& x : runs) {
    if (x.label != a) continue;
    auto y = std::find_if(runs.begin(), runs.end(), [&](const RunReport& r) {
      return r.label == b && SameLoad(x, r) && !paired_b.count(&r);
    });
    if (y == runs.end()) {
      unpaired.push_back(RunName(x));
      continue;
    }
    paired_b.insert(&*y);
    for (const ComparedMetric& m : kCompared) {
      double va = m.value(x), vb = m.value(*y);
      t.AddRow({x.workload, LoadName(x), m.name, Num(va), Num(vb), va != 0 ? Num(vb / va) : "-"});
    }
  }
  for (const RunReport& y : runs) {
    if (y.label == b && !paired_b.count(&y)) unpaired.push_back(RunName(y));
  }
  std::string out = paired_b.empty()
                        ? StrCat(b, " vs ", a, ": no runs at the same workload and load\n")
                        : StrCat(b, " vs ", a, "\n\n", t.Render());
  if (!unpaired.empty()) out += StrCat("\nunpaired: ", absl::StrJoin(unpaired, ", "), "\n");
  return out;
}

std::string RenderJson(const BenchMeta& meta, const std::vector<RunReport>& runs) {
  Json out{{"meta", meta}, {"runs", Json::array()}};
  for (const RunReport& r : runs) {
    Json hit_rate = Json::object();
    for (const auto& [tier, hits] : r.metrics.prefix_hit_tokens) {
      hit_rate[tier] = r.metrics.HitRate(tier);
    }
    out["runs"].push_back({{"label", r.label},
                           {"workload", r.workload},
                           {"rate_rps", r.rate_rps},
                           {"concurrency", r.concurrency},
                           {"summary", r.summary},
                           {"metrics", r.metrics},
                           {"hit_rate", hit_rate},
                           {"fractions", r.fractions},
                           {"checks", r.checks},
                           {"records", r.records}});
  }
  // Generated text may hold invalid UTF-8 (a token can end mid-character): replace, never throw.
  return out.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

absl::StatusOr<std::vector<std::string>> WritePlots(const std::string& dir, const std::string& stem,
                                                    const std::vector<RunReport>& runs) {
  if (runs.empty()) return std::vector<std::string>{};
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(StrCat("cannot create ", dir, ": ", ec.message()));
  std::vector<std::string> pngs{StrCat(dir, "/", stem, ".png")};
  std::string gp = "term = (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) ? 'pngcairo' : 'png'\n";
  ASSIGN_OR_RETURN(std::string cdf, CdfScript(dir, stem, runs, pngs[0]));
  gp += cdf;
  auto series = RateSeries(runs);
  if (HasRateSweep(series)) {
    pngs.push_back(StrCat(dir, "/", stem, "_goodput.png"));
    ASSIGN_OR_RETURN(std::string goodput, GoodputScript(dir, stem, series, pngs[1]));
    gp += goodput;
  }
  std::string script = StrCat(dir, "/", stem, ".gp");
  RETURN_IF_ERROR(WriteFile(script, gp));
  RETURN_IF_ERROR(RunGnuplot(script));
  for (const std::string& png : pngs) RETURN_IF_ERROR(CheckNonEmpty(png));
  return pngs;
}

}  // namespace strata::bench
