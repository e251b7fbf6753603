// `strata bench` end to end: the harness starts real daemons (or drives a running one) over
// loopback HTTP, and what it reports agrees with what the daemon itself counted in /metrics: the
// prefix-cache hits of W2's second asks, the tokens generated, the comparison of two configs, the
// fault workload's checks, and the limits it measured. Small sizes on synthetic:tiny.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/json.h"
#include "tests/integration/daemon.h"

namespace strata::testing {
namespace {

const std::string kStrata = STRATA_BINARY_DIR "/bin/strata";

// A scratch directory with config files and the bench's outputs.
class BenchCliTest : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directories(dir_); }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Config(const std::string& name, const std::string& yaml) {
    const std::string path = dir_ + "/" + name + ".yaml";
    std::ofstream(path) << yaml;
    return path;
  }
  // Runs `strata bench ARGS --out DIR`; returns stdout+stderr, sets *status.
  std::string Bench(const std::string& args, int* status) {
    return Shell(kStrata + " bench " + args + " --out " + dir_ + " 2>&1", status);
  }
  Json Results(const std::string& name) {
    auto text = ReadFile(dir_ + "/" + name + ".json");
    EXPECT_TRUE(text.ok()) << name;
    auto j = ParseJson(text.value_or("{}"), name);
    EXPECT_TRUE(j.ok()) << j.status();
    return j.value_or(Json::object());
  }
  bool IsPng(const std::string& file) {
    auto bytes = ReadFile(dir_ + "/" + file);
    return bytes.ok() && bytes->size() > 1000 && bytes->substr(1, 3) == "PNG";
  }

  const std::string dir_ = TempPath("bench");
};

constexpr char kTiny[] = "model:\n  path: synthetic:tiny\nengine:\n  threads: 1\n";

TEST_F(BenchCliTest, DocumentQaHitsAreTheDaemonsOwnCount) {
  const std::string config = Config("tiny", kTiny);
  int status = -1;
  const std::string out = Bench("--workload W2 --config " + config +
                                " --documents 3 --doc-tokens 64 --question-tokens 8"
                                " --qa-answer-tokens 4 --concurrency 1 --no-limits --name w2",
                                &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("| tiny W2"), std::string::npos) << out;
  const Json j = Results("w2");
  ASSERT_EQ(j["runs"].size(), 1u);
  const Json& run = j["runs"][0];
  const Json& records = run["records"];
  ASSERT_EQ(records.size(), 6u);
  int64_t cached = 0, generated = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const Json& r = records[i];
    EXPECT_EQ(r["http_status"], 200);
    EXPECT_EQ(r["output_tokens"], 4);
    EXPECT_EQ(r["prompt_tokens"], 72);
    EXPECT_EQ(r["chunk_times_s"].size(), 4u);  // a timestamp per token
    // interleave: d0 d1 d0 d2 d1 d2 -> asks 2, 4 and 5 repeat a document: 64 tokens = 4 blocks.
    EXPECT_EQ(r["cached_tokens"], (i == 2 || i == 4 || i == 5) ? 64 : 0) << i;
    cached += r["cached_tokens"].get<int64_t>();
    generated += r["output_tokens"].get<int64_t>();
    EXPECT_GE(r["server_queue_s"].get<double>(), 0.0);
  }
  EXPECT_EQ(run["metrics"]["prefix_hit_tokens"]["device"].get<double>(), cached);
  EXPECT_EQ(run["metrics"]["prefix_query_tokens"].get<double>(), 6 * 72);
  EXPECT_EQ(run["metrics"]["generation_tokens"].get<double>(), generated);
  EXPECT_EQ(run["summary"]["all"]["completed"], 6);
  EXPECT_TRUE(IsPng("w2.png"));
}

TEST_F(BenchCliTest, ComparisonRunsBothConfigsAtEveryRateAndPrintsRatios) {
  const std::string classes =
      "slo_classes:\n  interactive: {ttft_ms: 2000, tpot_ms: 500}\n  batch: {}\n"
      "scheduler:\n  default_slo_class: batch\n";
  const std::string a = Config("fcfs", std::string(kTiny) + "  max_num_seqs: 2\n" + classes);
  const std::string b = Config("wide", std::string(kTiny) + "  max_num_seqs: 16\n" + classes);
  int status = -1;
  const std::string out = Bench("--workload W3 --config " + a + " --compare " + b +
                                " --rates 20,40 --requests 10 --input-median 24"
                                " --output-median 6 --classes interactive:1,batch:1"
                                " --no-limits --name cmp",
                                &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("wide/fcfs"), std::string::npos) << out;
  const Json j = Results("cmp");
  ASSERT_EQ(j["runs"].size(), 4u);
  std::map<std::string, int> by_label;
  for (const Json& run : j["runs"]) {
    ++by_label[run["label"].get<std::string>()];
    EXPECT_EQ(run["records"].size(), 10u);
    EXPECT_EQ(run["summary"]["all"]["completed"], 10);
    // Both classes are reported, each judged by its own target from the first config.
    ASSERT_EQ(run["summary"]["classes"].size(), 2u);
    EXPECT_EQ(run["summary"]["classes"][1]["slo_class"], "interactive");
    EXPECT_DOUBLE_EQ(run["summary"]["classes"][1]["target"]["ttft_s"].get<double>(), 2.0);
    int64_t generated = 0;
    for (const Json& r : run["records"]) generated += r["output_tokens"].get<int64_t>();
    EXPECT_EQ(run["metrics"]["generation_tokens"].get<double>(), generated);
  }
  EXPECT_EQ(by_label["fcfs"], 2);
  EXPECT_EQ(by_label["wide"], 2);
  EXPECT_TRUE(IsPng("cmp.png"));
  EXPECT_TRUE(IsPng("cmp_goodput.png"));
}

// B0 / B2 / B3 in one command: a device tier too small for the documents, then a host tier, then
// a host tier as small as the device with a disk below it. The tile order repeats every document
// after all the others, so B0's repeat asks miss and the lower tiers must serve them.
TEST_F(BenchCliTest, TierBaselinesRunInOneCommandAndTheLowerTiersServeTheRepeats) {
  const std::string tiers =
      "model:\n  path: synthetic:tiny\n  max_model_len: 192\nengine:\n  threads: 1\n"
      "kvcache:\n  tiers:\n    device: {capacity: 768KiB}\n";
  const std::string b0 = Config("b0", tiers);
  const std::string b2 = Config("b2", tiers + "    host: {capacity: 16MiB}\n");
  const std::string b3 = Config("b3", tiers +
                                          "    host: {capacity: 768KiB}\n"
                                          "    disk: {capacity: 64MiB, path: " + dir_ +
                                          "/kv, min_hits: 0, persist: false}\n");
  int status = -1;
  const std::string out = Bench("--workload W2 --config " + b0 + " --compare " + b2 + "," + b3 +
                                    " --documents 3 --doc-tokens 128 --question-tokens 8"
                                    " --qa-answer-tokens 4 --order tile --concurrency 1"
                                    " --no-limits --no-plots --name tiers",
                                &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("b2/b0"), std::string::npos) << out;
  EXPECT_NE(out.find("b3/b0"), std::string::npos) << out;
  std::map<std::string, Json> runs;
  const Json j = Results("tiers");
  for (const Json& run : j["runs"]) runs[run["label"].get<std::string>()] = run;
  ASSERT_EQ(runs.size(), 3u);
  auto hits = [&](const std::string& label, const char* tier) {
    const Json& h = runs[label]["metrics"]["prefix_hit_tokens"];
    return h.contains(tier) ? h[tier].get<double>() : 0.0;
  };
  for (const auto& [label, run] : runs) {
    EXPECT_EQ(run["summary"]["all"]["completed"], 6) << label;
  }
  // B0 recomputes the repeats; B2 finds them in host RAM; B3 finds (most of) them on disk.
  EXPECT_EQ(hits("b0", "host") + hits("b0", "disk"), 0);
  EXPECT_GE(hits("b2", "host"), 2 * 128);
  EXPECT_GT(hits("b3", "disk"), 0);
}

TEST_F(BenchCliTest, FaultWorkloadFindsNothingLostAndOutputsUnchanged) {
  const std::string config = Config("tiny", kTiny);
  int status = -1;
  const std::string out = Bench("--workload W5 --config " + config +
                                " --requests 16 --cancel-fraction 0.5 --cancel-after 2"
                                " --input-median 24 --output-median 8 --concurrency 6"
                                " --no-limits --no-plots --name w5",
                                &status);
  ASSERT_EQ(status, 0) << out;
  const Json run = Results("w5")["runs"][0];
  const Json& checks = run["checks"];
  int cancelled = 0, completed = 0;
  for (const Json& r : run["records"]) {
    cancelled += r["cancelled"].get<bool>() ? 1 : 0;
    completed += r["cancelled"].get<bool>() ? 0 : 1;
  }
  EXPECT_GT(cancelled, 0);
  EXPECT_EQ(checks["rerun_requests"], completed);
  EXPECT_EQ(checks["mismatched_outputs"], 0);
  EXPECT_EQ(checks["leaked_running"], 0);
  EXPECT_EQ(checks["leaked_waiting"], 0);
  EXPECT_EQ(checks["device_kv_usage_after"], 0);
  EXPECT_EQ(checks["healthy_after"], 1);
}

TEST_F(BenchCliTest, DrivesARunningServerWithATraceAndMeasuresTheLimits) {
  std::string error;
  auto d = DaemonProcess::Start(kTiny, &error);
  ASSERT_NE(d, nullptr) << error;
  const std::string trace = dir_ + "/trace.jsonl";
  std::ofstream(trace)
      << "{\"timestamp\": 0, \"input_length\": 40, \"output_length\": 3, \"hash_ids\": [1, 2, 3]}\n"
         "{\"timestamp\": 300, \"input_length\": 40, \"output_length\": 3, \"hash_ids\": [1, 2, 4]}\n";
  int status = -1;
  const std::string out =
      Bench("--workload trace --trace " + trace + " --trace-block-tokens 16 --server " +
                d->url() + " --model synthetic:tiny --disk-dir " + dir_ + " --name tr",
            &status);
  ASSERT_EQ(status, 0) << out;
  const Json j = Results("tr");
  const Json& limits = j["meta"]["limits"];
  for (const char* k : {"mem_read_bytes_per_s", "mem_copy_bytes_per_s", "gemm_flops",
                        "disk_write_bytes_per_s", "disk_read_bytes_per_s"}) {
    EXPECT_GT(limits[k].get<double>(), 0) << k;
  }
  const Json& records = j["runs"][0]["records"];
  ASSERT_EQ(records.size(), 2u);
  EXPECT_GE(records[1]["sent_s"].get<double>() - records[0]["sent_s"].get<double>(), 0.29);
  EXPECT_EQ(records[1]["cached_tokens"], 32);  // blocks 1 and 2
}

TEST_F(BenchCliTest, BadFlagsAreNamedAndOnlyLoopbackIsDriven) {
  int status = -1;
  std::string out = Bench("--workload W3 --server http://10.0.0.1:8000", &status);
  EXPECT_EQ(status, 2);
  EXPECT_NE(out.find("loopback only"), std::string::npos) << out;
  out = Bench("--workload W7 --server http://127.0.0.1:9", &status);
  EXPECT_EQ(status, 2);
  EXPECT_NE(out.find("--workload"), std::string::npos) << out;
  out = Bench("--workload W3 --server http://127.0.0.1:9 --rates 1,x", &status);
  EXPECT_EQ(status, 2);
  EXPECT_NE(out.find("--rates"), std::string::npos) << out;
  out = Bench("--workload W3 --frobnicate 1 --server http://127.0.0.1:9", &status);
  EXPECT_EQ(status, 2);
  EXPECT_NE(out.find("frobnicate"), std::string::npos) << out;
}

}  // namespace
}  // namespace strata::testing
