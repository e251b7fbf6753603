// The tiered KV store in a live daemon (DESIGN.md §5) on stories260K with a device tier of a few
// requests' worth of pages: a multi-turn workload gives token-exact greedy outputs with the tiers
// on and off while its history comes back from host RAM and from disk; a restarted daemon serves
// an old conversation from the disk segments it re-indexed; corrupted, deleted and foreign
// segments are misses (counted), never wrong output; swap preemption keeps outputs exact; and
// nothing is left running or pinned afterwards.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/json.h"
#include "tests/integration/daemon.h"

namespace strata::testing {
namespace {

namespace fs = std::filesystem;

// stories260K: 5 layers x 4 KV heads x 8 dims, fp32 -> 4 KiB pages, 20 KiB per 16-token block.
// The device holds 100 pages = 20 blocks (one 256-token sequence needs 80 pages).
std::string Yaml(const std::string& disk_dir, const std::string& tiers_extra = "",
                 bool tiers = true) {
  std::string y = "model:\n  path: " + StoriesDir() +
                  "\n  served_name: stories\n  max_model_len: 256\n"
                  "engine:\n  threads: 1\n  max_num_seqs: 8\n"
                  "kvcache:\n  tiers:\n    device: {capacity: 400KiB}\n";
  if (tiers) {
    y += "    host: {capacity: 200KiB" + tiers_extra + "}\n"
         "    disk: {capacity: 8MiB, path: " + disk_dir + ", min_hits: 0}\n";
  }
  return y;
}

struct Turn {
  std::string text;
  int64_t cached = 0;
};

Turn Complete(const DaemonProcess& d, const std::string& prompt, int max_tokens = 12) {
  Json body = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  CurlResult r = Curl("POST", d.url("/v1/completions"), body.dump());
  EXPECT_EQ(r.http_code, 200) << r.body;
  auto j = ParseJson(r.body, "completion");
  if (!j.ok() || !j->contains("choices")) return {"<error: " + r.body + ">", 0};
  return {(*j)["choices"][0]["text"], (*j)["usage"]["prompt_tokens_details"]["cached_tokens"]};
}

// All prompts at once: one curl process each, started together (Curl() is not thread-safe).
std::vector<std::string> CompleteTogether(const DaemonProcess& d,
                                          const std::vector<std::string>& prompts, int max_tokens) {
  const std::string dir = TempPath("together");
  fs::create_directories(dir);
  std::string cmd;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string in = dir + "/in" + std::to_string(i);
    WriteFile(in, Json({{"prompt", prompts[i]}, {"max_tokens", max_tokens}, {"temperature", 0}})
                      .dump())
        .IgnoreError();
    cmd += "curl -sS -H 'Content-Type: application/json' --data-binary @" + in + " -o " + dir +
           "/out" + std::to_string(i) + " " + ShellQuote(d.url("/v1/completions")) + " & ";
  }
  Shell(cmd + "wait");
  std::vector<std::string> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string body = ReadFile(dir + "/out" + std::to_string(i)).value_or("");
    auto j = ParseJson(body, "completion");
    out.push_back(j.ok() && j->contains("choices") ? std::string((*j)["choices"][0]["text"])
                                                   : "<error: " + body + ">");
  }
  fs::remove_all(dir);
  return out;
}

double Metric(const DaemonProcess& d, const std::string& name, const std::string& label = "") {
  return MetricSample(Curl("GET", d.url("/metrics")).body, name, label);
}

// Four conversations of four rounds, interleaved: each round's prompt is the whole history, so
// earlier rounds' blocks are reused while the other conversations push them off the device.
std::vector<std::string> MultiTurn(const DaemonProcess& d, std::vector<int64_t>* cached) {
  const char* openings[] = {
      "Once upon a time, there was a little girl named Lily. She lived in a small house with "
      "her mom and dad and a fluffy white cat.",
      "Tom had a big red ball. He liked to play with it in the park with his best friend Sam "
      "every day after lunch.",
      "The sun was hot and the bird sang in the tall green tree next to the river where the "
      "fish swam all day long.",
      "Anna wanted to bake a cake for her grandma. She took flour, eggs and sugar from the "
      "kitchen and began to mix them."};
  const char* turns[] = {" She went outside.", " Then it started to rain.",
                         " Mom called them home.", " They were happy."};
  std::vector<std::string> history(std::begin(openings), std::end(openings));
  std::vector<std::string> outputs;
  for (const char* turn : turns) {
    for (std::string& h : history) {
      h += turn;
      Turn t = Complete(d, h, 24);
      outputs.push_back(t.text);
      if (cached) cached->push_back(t.cached);
      h += t.text;
    }
  }
  return outputs;
}

class TieredKvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveStories()) GTEST_SKIP() << "no " << StoriesDir();
    dir_ = TempPath("kv-tier");
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::unique_ptr<DaemonProcess> Start(const std::string& yaml) {
    std::string error;
    auto d = DaemonProcess::Start(yaml, &error);
    EXPECT_NE(d, nullptr) << error;
    return d;
  }
  // Stops a daemon cleanly (SIGTERM) after checking that it holds nothing.
  void StopIdle(std::unique_ptr<DaemonProcess>& d) {
    EXPECT_EQ(Metric(*d, "strata_num_requests_running"), 0);
    EXPECT_EQ(Metric(*d, "strata_num_requests_waiting"), 0);
    EXPECT_EQ(Metric(*d, "strata_kv_cache_usage_ratio", "tier=\"device\""), 0);
    EXPECT_EQ(d->Stop(), 0) << d->Log();
  }
  std::vector<fs::path> Segments() const {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string dir_;
};

TEST_F(TieredKvTest, MultiTurnOutputsAreIdenticalWithTiersOnAndOff) {
  auto off = Start(Yaml(dir_, "", /*tiers=*/false));
  ASSERT_NE(off, nullptr);
  const std::vector<std::string> expected = MultiTurn(*off, nullptr);
  StopIdle(off);

  auto on = Start(Yaml(dir_));
  ASSERT_NE(on, nullptr);
  std::vector<int64_t> cached;
  const std::vector<std::string> got = MultiTurn(*on, &cached);
  EXPECT_EQ(got, expected);
  const std::string m = Curl("GET", on->url("/metrics")).body;
  const double host = MetricSample(m, "strata_prefix_cache_hits_tokens_total", "tier=\"host\"");
  const double disk = MetricSample(m, "strata_prefix_cache_hits_tokens_total", "tier=\"disk\"");
  EXPECT_GT(host, 0) << m;
  EXPECT_GT(disk, 0) << m;
  EXPECT_GT(MetricSample(m, "strata_kv_transfer_bytes_total", "dst=\"host\",model=\"stories\",src=\"device\""), 0);
  EXPECT_GT(MetricSample(m, "strata_kv_transfer_bytes_total", "dst=\"device\",model=\"stories\",src=\"host\""), 0);
  EXPECT_GT(MetricSample(m, "strata_kv_transfer_bytes_total", "dst=\"disk\",model=\"stories\",src=\"host\""), 0);
  // Later rounds find most of their history somewhere.
  int64_t later = 0;
  for (size_t i = 3; i < cached.size(); ++i) later += cached[i];
  EXPECT_GT(later, 0);
  StopIdle(on);
}

TEST_F(TieredKvTest, RestartServesAnOldConversationFromDisk) {
  const std::string prompt =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "sun. One day, she saw a big tree with a swing. She ran to the tree and sat on the swing.";
  std::string first;
  {
    auto d = Start(Yaml(dir_, ", write_through: true"));
    ASSERT_NE(d, nullptr);
    first = Complete(*d, prompt).text;
    // Push the conversation out of host RAM (and so onto disk): other prompts fill it.
    for (int i = 0; i < 6; ++i) Complete(*d, "Tom and Sam went to the park number " + std::to_string(i) + ". " + prompt.substr(60));
    StopIdle(d);
  }
  ASSERT_FALSE(Segments().empty());
  auto d = Start(Yaml(dir_));
  ASSERT_NE(d, nullptr);
  EXPECT_NE(d->Log().find("kept from before"), std::string::npos) << d->Log();
  Turn again = Complete(*d, prompt);
  EXPECT_EQ(again.text, first);
  EXPECT_GT(again.cached, 0);
  EXPECT_EQ(Metric(*d, "strata_prefix_cache_hits_tokens_total", "tier=\"disk\""), again.cached);
  StopIdle(d);
}

// Every slot's payload gets a flipped byte; deleted and foreign segments lose their records.
TEST_F(TieredKvTest, DamagedDeletedAndForeignSegmentsAreMissesNotWrongOutput) {
  const std::string prompt =
      "Lily and Ben found a small dog in the garden. The dog was sad and hungry. They gave it "
      "some milk and a warm blanket, and the dog wagged its tail.";
  std::string expected;
  auto fill = [&] {
    auto d = Start(Yaml(dir_, ", write_through: true"));
    ASSERT_NE(d, nullptr);
    expected = Complete(*d, prompt).text;
    for (int i = 0; i < 6; ++i) Complete(*d, std::to_string(i) + " birds sat in a tree. " + prompt);
    StopIdle(d);
  };
  fill();
  // Flip one byte in the middle of every 4 KiB sector after each file's first one.
  for (const fs::path& seg : Segments()) {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = static_cast<int64_t>(fs::file_size(seg));
    for (int64_t off = 4096 + 2048; off < size; off += 4096) {
      f.seekg(off);
      char c = 0;
      f.read(&c, 1);
      c = static_cast<char>(c ^ 0x5a);
      f.seekp(off);
      f.write(&c, 1);
    }
  }
  {
    auto d = Start(Yaml(dir_));
    ASSERT_NE(d, nullptr);
    Turn t = Complete(*d, prompt);
    EXPECT_EQ(t.text, expected);
    EXPECT_GT(Metric(*d, "strata_kv_tier_errors_total", "kind=\"checksum\""), 0) << d->Log();
    EXPECT_EQ(Metric(*d, "strata_prefix_cache_hits_tokens_total", "tier=\"disk\""), 0);
    EXPECT_EQ(Complete(*d, prompt).text, expected);  // serving goes on
    StopIdle(d);
  }
  // Deleted segments: the records are gone, the tier recreates its files.
  fs::remove_all(dir_);
  fill();
  for (const fs::path& seg : Segments()) fs::remove(seg);
  {
    auto d = Start(Yaml(dir_));
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(Complete(*d, prompt).text, expected);
    EXPECT_EQ(Metric(*d, "strata_prefix_cache_hits_tokens_total", "tier=\"disk\""), 0);
    StopIdle(d);
  }
  // Segments written for another model in the same folder are never served nor overwritten.
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  {
    std::string other = Yaml(dir_, ", write_through: true");
    other.replace(other.find("path: " + StoriesDir()), 6 + StoriesDir().size(),
                  "path: synthetic:tiny");
    other.replace(other.find("capacity: 400KiB"), 16, "capacity: 8MiB");  // 16 KiB pages
    auto d = Start(other);
    ASSERT_NE(d, nullptr);
    Complete(*d, prompt);
    for (int i = 0; i < 4; ++i) Complete(*d, std::to_string(i) + " cats. " + prompt);
    StopIdle(d);
  }
  std::map<fs::path, uintmax_t> foreign;
  for (const fs::path& seg : Segments()) foreign[seg] = fs::file_size(seg);
  ASSERT_FALSE(foreign.empty());
  std::map<fs::path, std::string> foreign_bytes;
  for (const auto& [seg, size] : foreign) foreign_bytes[seg] = *ReadFile(seg.string());
  {
    auto d = Start(Yaml(dir_, ", write_through: true"));
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(Complete(*d, prompt).text, expected);
    EXPECT_EQ(Metric(*d, "strata_prefix_cache_hits_tokens_total", "tier=\"disk\""), 0);
    EXPECT_GT(Metric(*d, "strata_kv_tier_errors_total", "kind=\"foreign\""), 0) << d->Log();
    for (int i = 0; i < 4; ++i) Complete(*d, std::to_string(i) + " cows. " + prompt);
    StopIdle(d);
  }
  for (const auto& [seg, bytes] : foreign_bytes) {
    EXPECT_EQ(*ReadFile(seg.string()), bytes) << seg << " was overwritten";
  }
}

// Concurrent streams on a device that cannot hold them all: preempted requests are swapped to
// host and back, and every output equals the one computed alone.
TEST_F(TieredKvTest, SwapPreemptionKeepsOutputsExact) {
  std::vector<std::string> prompts;
  for (int i = 0; i < 8; ++i) {
    prompts.push_back("Story " + std::to_string(i) +
                      ": Once upon a time, a little bunny hopped into the big forest to find "
                      "some carrots for dinner.");
  }
  std::string yaml = Yaml(dir_);
  yaml.replace(yaml.find("capacity: 200KiB"), 16, "capacity: 4MiB");
  auto d = Start(yaml);
  ASSERT_NE(d, nullptr);
  std::vector<std::string> alone;
  for (const std::string& p : prompts) alone.push_back(Complete(*d, p, 60).text);
  EXPECT_EQ(CompleteTogether(*d, prompts, 60), alone);
  const std::string m = Curl("GET", d->url("/metrics")).body;
  EXPECT_GT(MetricSample(m, "strata_preemptions_total"), 0) << m;
  EXPECT_GT(MetricSample(m, "strata_kv_swaps_total", "direction=\"out\""), 0) << m;
  EXPECT_EQ(MetricSample(m, "strata_kv_swaps_total", "direction=\"in\""),
            MetricSample(m, "strata_kv_swaps_total", "direction=\"out\""));
  StopIdle(d);
}

}  // namespace
}  // namespace strata::testing
