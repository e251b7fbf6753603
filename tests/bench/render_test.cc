#include "bench/harness/render.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "common/file.h"
#include "common/json.h"

namespace strata::bench {
namespace {

namespace fs = std::filesystem;

BenchMeta Meta() {
  BenchMeta meta;
  meta.command = "strata bench --workload W3 --rates 2,4";
  meta.commit = "abc1234";
  meta.machine = "Xeon, 2 cores, 8 GiB";
  meta.model = "synthetic:tiny";
  meta.limits.mem_read_bytes_per_s = 12.34e9;
  meta.limits.gemm_flops = 56.7e9;
  meta.limits.disk_read_bytes_per_s = 1500e6;
  meta.limits.disk_write_bytes_per_s = 800e6;
  return meta;
}

// A streamed completion of 3 tokens: TTFT `ttft_s`, then one token every `tpot_s`.
RequestRecord Streamed(int64_t id, const std::string& slo_class, double sent, double ttft_s,
                       double tpot_s) {
  RequestRecord r;
  r.id = id;
  r.slo_class = slo_class;
  r.sent_s = sent;
  r.first_token_s = sent + ttft_s;
  r.chunk_times_s = {r.first_token_s, r.first_token_s + tpot_s, r.first_token_s + 2 * tpot_s};
  r.end_s = r.chunk_times_s.back();
  r.prompt_tokens = 10;
  r.output_tokens = 3;
  r.http_status = 200;
  r.finish_reason = "length";
  r.text = "a\xff b";  // a token cut mid-character: invalid UTF-8
  return r;
}

// Label `label` at `rate_rps`, four requests: TTFTs 0.1..0.4 s scaled by `slow`, TPOT 20 ms x
// `slow`, classes chat and batch.
RunReport MakeRun(const std::string& label, double rate_rps, double slow) {
  RunReport run;
  run.label = label;
  run.workload = "W3";
  run.rate_rps = rate_rps;
  for (int i = 0; i < 4; ++i) {
    run.records.push_back(
        Streamed(i, i % 2 ? "batch" : "chat", i * 0.5, 0.1 * (i + 1) * slow, 0.02 * slow));
  }
  run.summary = Summarize(run.records, {{"", {.ttft_s = 0.25, .tpot_s = 0.05}}});
  run.metrics.prefix_query_tokens = 400;
  run.metrics.prefix_hit_tokens = {{"device", 100}, {"host", 50}, {"disk", 0}};
  run.metrics.transfer_bytes = {{"host->device", 25e6}, {"disk->host", 1.5e6}};
  run.metrics.tier_errors = {{"disk/io", 2}, {"disk/checksum", 1}};
  run.metrics.preemptions = 4;
  run.fractions.decode_bandwidth = 0.456;
  run.fractions.prefill_gemm = 0.0123;
  return run;
}

void ExpectHas(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in:\n" << text;
}

// Runs of blanks collapsed to one, so a test need not know the column widths.
std::string Squash(const std::string& s) { return std::regex_replace(s, std::regex(" +"), " "); }

TEST(RenderTableTest, MetaHeaderAndNumbers) {
  std::string table = RenderTable(Meta(), {MakeRun("fcfs", 2, 1)});
  std::string t = Squash(table);
  ExpectHas(t, "- commit: abc1234\n");
  ExpectHas(t, "- command: `strata bench --workload W3 --rates 2,4`\n");
  ExpectHas(t, "- limits: mem read 12.3 GB/s, GEMM 56.7 GFLOP/s, disk r/w 1500 MB/s / 800 MB/s\n");
  // TTFTs 100 200 300 400 ms: p50 250, p90 370, p99 397; TPOT 20; e2e p50 250 + 40.
  ExpectHas(t, "| fcfs W3 2 rps | all | 250 | 370 | 397 | - | - | 20.0 | 20.0 | 290 |");
  // Sent at 0, .5, 1, 1.5 s, the last ending .44 s later: 1.94 s. 4 / 1.94 = 2.06 req/s, 40 and
  // 12 tokens; TTFT <= 250 ms met by 2 of 4 (one chat, one batch): 2 / 1.94 = 1.03 req/s.
  ExpectHas(t, "| fcfs W3 2 rps | all | 4 | 4 | 0 | 0 | 0 | 2.06 | 20.6 | 6.19 | 1.03 | 50.0 |");
  ExpectHas(t, "| fcfs W3 2 rps | chat | 2 | 2 | 0 | 0 | 0 | | | | 0.52 | 50.0 |");
  ExpectHas(t, "| fcfs W3 2 rps | batch | 2 | 2 | 0 | 0 | 0 | | | | 0.52 | 50.0 |");
  // Hit rates 25 % and 12.5 %, 4 preemptions, 3 tier errors; MB moved, fractions in %.
  ExpectHas(t, "| fcfs W3 2 rps | 25.0 | 12.5 | 0 | 4 | 3 |");
  ExpectHas(t, "| fcfs W3 2 rps | 0 | 25.0 | 0 | 1.50 | 45.6 | 1.23 | 0 | 0 |");
}

TEST(RenderTableTest, MarkdownTablesAreAlignedAndFitATerminal) {
  std::string table = RenderTable(Meta(), {MakeRun("fcfs", 2, 1), MakeRun("slo_aware", 4, 3)});
  std::istringstream lines(table);
  size_t width = 0;
  int table_lines = 0;
  for (std::string line; std::getline(lines, line);) {
    EXPECT_LE(line.size(), 120u) << line;
    if (line.empty() || line[0] != '|') {
      width = 0;
      continue;
    }
    ++table_lines;
    EXPECT_EQ(line.back(), '|') << line;
    if (width == 0) width = line.size();
    EXPECT_EQ(line.size(), width) << "misaligned: " << line;
  }
  // 4 tables: latency and throughput with 2 runs x (all + 2 classes) rows, cache and traffic with
  // 2; each with a header and a rule.
  EXPECT_EQ(table_lines, 2 * (2 + 6) + 2 * (2 + 2));
}

TEST(RenderTableTest, OneClassGetsNoClassRows) {
  RunReport run = MakeRun("fcfs", 2, 1);
  run.summary = Summarize({run.records[0]}, {});
  std::string t = Squash(RenderTable(Meta(), {run}));
  EXPECT_EQ(t.find("| chat |"), std::string::npos) << t;
  ExpectHas(t, "| fcfs W3 2 rps | all |");
}

TEST(RenderComparisonTest, PairsByLoadAndPrintsRatios) {
  std::vector<RunReport> runs{MakeRun("fcfs", 2, 3), MakeRun("slo", 2, 1), MakeRun("fcfs", 4, 1),
                              MakeRun("slo", 8, 1)};
  std::string c = RenderComparison(runs, "fcfs", "slo");
  std::string t = Squash(c);
  ExpectHas(t, "| workload | load | metric | fcfs | slo | slo/fcfs |");
  // fcfs 3x slower: TTFT p50 750 vs 250 ms, TPOT 60 vs 20 ms, so no goodput: no ratio.
  ExpectHas(t, "| W3 | 2 rps | TTFT p50 ms | 750 | 250 | 0.33 |");
  ExpectHas(t, "| W3 | 2 rps | TPOT p99 ms | 60.0 | 20.0 | 0.33 |");
  ExpectHas(t, "| W3 | 2 rps | goodput req/s | 0 | 1.03 | - |");
  ExpectHas(t, "| W3 | 2 rps | SLO % | 0 | 50.0 | - |");
  EXPECT_EQ(t.find("| W3 | 4 rps |"), std::string::npos) << c;
  ExpectHas(t, "unpaired: fcfs W3 4 rps, slo W3 8 rps");
}

TEST(RenderComparisonTest, SaysSoWhenNothingPairs) {
  std::string c = RenderComparison({MakeRun("fcfs", 2, 1), MakeRun("slo", 4, 1)}, "fcfs", "slo");
  EXPECT_EQ(c,
            "slo vs fcfs: no runs at the same workload and load\n\n"
            "unpaired: fcfs W3 2 rps, slo W3 4 rps\n");
}

TEST(RenderJsonTest, RoundTrips) {
  RunReport run = MakeRun("fcfs", 2, 1);
  std::string text = RenderJson(Meta(), {run});
  absl::StatusOr<Json> parsed = ParseJson(text, "report.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Json& j = *parsed;
  EXPECT_EQ(j["meta"]["commit"], "abc1234");
  EXPECT_EQ(j["meta"]["limits"]["gemm_flops"], 56.7e9);
  ASSERT_EQ(j["runs"].size(), 1u);
  const Json& r = j["runs"][0];
  EXPECT_EQ(r["label"], "fcfs");
  EXPECT_EQ(r["workload"], "W3");
  EXPECT_EQ(r["rate_rps"], 2);
  EXPECT_EQ(r["summary"]["duration_s"], run.summary.duration_s);
  EXPECT_EQ(r["summary"]["all"]["ttft"]["p90"], run.summary.all.ttft.p90);
  EXPECT_EQ(r["summary"]["all"]["met"], 2);
  EXPECT_EQ(r["summary"]["classes"][1]["slo_class"], "chat");
  EXPECT_EQ(r["summary"]["classes"][1]["target"]["ttft_s"], 0.25);
  EXPECT_EQ(r["metrics"]["transfer_bytes"]["host->device"], 25e6);
  EXPECT_EQ(r["metrics"]["tier_errors"]["disk/io"], 2);
  EXPECT_EQ(r["hit_rate"]["device"], 0.25);
  EXPECT_EQ(r["fractions"]["decode_bandwidth"], 0.456);
  ASSERT_EQ(r["records"].size(), 4u);
  EXPECT_EQ(r["records"][3]["sent_s"], 1.5);
  EXPECT_EQ(r["records"][3]["chunk_times_s"].size(), 3u);
  EXPECT_EQ(r["records"][3]["slo_class"], "batch");
  EXPECT_EQ(r["records"][0]["text"], "a\xef\xbf\xbd b");  // U+FFFD for the bad byte
}

bool IsPng(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFile(path);
  return bytes.ok() && bytes->size() > 1000 && bytes->compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
}

// A fresh folder under the test's temporary directory, removed with the object. The pid keeps
// parallel CTest runs (one process per test) apart.
struct ScratchDir {
  explicit ScratchDir(const std::string& name)
      : path(StrCat(::testing::TempDir(), "/render_test_", getpid(), "_", name)) {
    fs::remove_all(path);
  }
  ~ScratchDir() { fs::remove_all(path); }
  std::string path;
};

TEST(WritePlotsTest, DrawsCdfsAndGoodputVsRate) {
  ScratchDir scratch("sweep");
  std::string dir = scratch.path + "/nested";
  RunReport no_tpot = MakeRun("it's_b", 2, 1);
  for (RequestRecord& r : no_tpot.records) r.chunk_times_s.clear();  // an empty TPOT panel
  std::vector<RunReport> runs{MakeRun("fcfs_a", 2, 1), MakeRun("fcfs_a", 4, 2), no_tpot};
  absl::StatusOr<std::vector<std::string>> pngs = WritePlots(dir, "w3_sweep", runs);
  ASSERT_TRUE(pngs.ok()) << pngs.status();
  EXPECT_EQ(*pngs,
            (std::vector<std::string>{dir + "/w3_sweep.png", dir + "/w3_sweep_goodput.png"}));
  for (const std::string& png : *pngs) EXPECT_TRUE(IsPng(png)) << png;
  absl::StatusOr<std::string> script = ReadFile(dir + "/w3_sweep.gp");
  ASSERT_TRUE(script.ok());
  ExpectHas(*script, "noenhanced");
  ExpectHas(*script, "title 'fcfs_a 4 rps'");
  ExpectHas(*script, "title 'it''s_b 2 rps'");
}

// One rate per label: no goodput plot. No run has TPOT samples: gnuplot fails on an empty plot,
// so the panel must say "no data" instead.
TEST(WritePlotsTest, OneRateDrawsNoGoodputPlot) {
  ScratchDir scratch("single");
  const std::string& dir = scratch.path;
  RunReport run = MakeRun("fcfs", 2, 1);
  for (RequestRecord& r : run.records) r.chunk_times_s.clear();
  absl::StatusOr<std::vector<std::string>> pngs = WritePlots(dir, "one", {run});
  ASSERT_TRUE(pngs.ok()) << pngs.status();
  EXPECT_EQ(*pngs, std::vector<std::string>{dir + "/one.png"});
  EXPECT_TRUE(IsPng(dir + "/one.png"));
  EXPECT_FALSE(fs::exists(dir + "/one_goodput.png"));
  absl::StatusOr<std::string> script = ReadFile(dir + "/one.gp");
  ASSERT_TRUE(script.ok());
  ExpectHas(*script, "'no data'");
}

// WritePlots of one run with PATH set to `path` (restored after).
absl::StatusOr<std::vector<std::string>> PlotWithPath(const std::string& path) {
  const char* old = getenv("PATH");
  std::string saved = old != nullptr ? old : "";
  setenv("PATH", path.c_str(), 1);
  absl::StatusOr<std::vector<std::string>> pngs =
      WritePlots(ScratchDir("out").path, "x", {MakeRun("fcfs", 2, 1)});
  setenv("PATH", saved.c_str(), 1);
  return pngs;
}

TEST(WritePlotsTest, ClearErrorWithoutGnuplot) {
  ScratchDir empty_bin("empty_bin");
  fs::create_directories(empty_bin.path);
  absl::StatusOr<std::vector<std::string>> pngs = PlotWithPath(empty_bin.path);
  ASSERT_FALSE(pngs.ok());
  EXPECT_EQ(pngs.status().code(), absl::StatusCode::kFailedPrecondition) << pngs.status();
  ExpectHas(pngs.status().ToString(), "gnuplot is not runnable");
  ExpectHas(pngs.status().ToString(), "gnuplot: not found");
}

TEST(WritePlotsTest, GnuplotFailureCarriesItsOutput) {
  ScratchDir scratch("fake_bin");
  const std::string& bin = scratch.path;
  fs::create_directories(bin);
  ASSERT_TRUE(
      WriteFile(bin + "/gnuplot", "#!/bin/sh\necho 'line 3: bad terminal' >&2\nexit 1\n").ok());
  fs::permissions(bin + "/gnuplot", fs::perms::owner_all);
  absl::StatusOr<std::vector<std::string>> pngs = PlotWithPath(bin);
  ASSERT_FALSE(pngs.ok());
  EXPECT_EQ(pngs.status().code(), absl::StatusCode::kInternal) << pngs.status();
  ExpectHas(pngs.status().ToString(), "exit status 1): line 3: bad terminal");
}

TEST(WritePlotsTest, NoRunsNoFiles) {
  absl::StatusOr<std::vector<std::string>> pngs = WritePlots(ScratchDir("none").path, "x", {});
  ASSERT_TRUE(pngs.ok());
  EXPECT_TRUE(pngs->empty());
}

}  // namespace
}  // namespace strata::bench
