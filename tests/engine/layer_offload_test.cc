// LayerKV end to end (DESIGN.md §6 "memory pressure"): with scheduler.layer_offload on, a device
// tier too small for the batch moves layers of running requests to host RAM, streams them
// through staging pages during their steps and brings them back, and every greedy output of
// stories260K stays identical to the one computed alone with plenty of memory. Both scheduling
// policies; nothing is left pinned or held afterwards.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tests/engine/engine_test_util.h"

namespace strata::engine {
namespace {

constexpr int64_t kBlockBytes = 20 * 1024;  // 5 layers x 16 tokens x K,V x 32 floats
constexpr int64_t kMaxTokens = 24;

EngineConfig Config(const std::string& policy, bool layer_offload, int32_t pages) {
  EngineConfig c;
  c.backend = "cpu";
  c.threads = 1;
  c.block_size = 16;
  c.max_model_len = 256;
  c.num_kv_pages = pages;
  c.scheduler.max_batch_tokens = 256;
  c.scheduler.max_num_seqs = 16;
  c.scheduler.policy = policy;
  c.scheduler.layer_offload = layer_offload;
  if (layer_offload) c.tiers.host_capacity_bytes = 256 * kBlockBytes;
  return c;
}

// 10 prompts of 70-130 tokens; pairs share a 3-block prefix so shared pages are in play.
std::vector<std::vector<int32_t>> Prompts() {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> tok(3, 511), len(22, 82);
  std::vector<std::vector<int32_t>> out;
  std::vector<int32_t> prefix;
  for (int i = 0; i < 10; ++i) {
    if (i % 2 == 0) {
      prefix.assign(1, 1);
      for (int j = 0; j < 47; ++j) prefix.push_back(tok(rng));
    }
    std::vector<int32_t> p = prefix;
    for (int j = len(rng); j > 0; --j) p.push_back(tok(rng));
    out.push_back(p);
  }
  return out;
}

class LayerOffloadTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = SharedModel();
    if (model_ == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
  }
  std::unique_ptr<Engine> Make(const EngineConfig& c) {
    auto e = Engine::Create(*model_, c);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }
  const Model* model_ = nullptr;
};

TEST_P(LayerOffloadTest, OutputsEqualThoseComputedAloneWhileLayersLiveInHostRam) {
  const std::vector<std::vector<int32_t>> prompts = Prompts();
  // The reference: each prompt alone, 1000 pages (all of them fit at once), no offload.
  std::unique_ptr<Engine> roomy = Make(Config("fcfs", false, 1000));
  ASSERT_NE(roomy, nullptr);
  std::vector<std::vector<int32_t>> want;
  for (const auto& p : prompts) want.push_back(RunOne(*roomy, Greedy(p, kMaxTokens)).tokens);

  // 120 pages: 24 blocks of 5 layers, about 3 of the 10 sequences with all their layers.
  std::unique_ptr<Engine> tight = Make(Config(GetParam(), true, 120));
  ASSERT_NE(tight, nullptr);
  std::vector<std::shared_ptr<OutputChannel>> channels;
  for (const auto& p : prompts) {
    auto s = tight->Submit(Greedy(p, kMaxTokens));
    ASSERT_TRUE(s.ok()) << s.status();
    channels.push_back(std::move(s->channel));
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Output o = Drain(*channels[i], 60);
    EXPECT_EQ(o.finish_reason, "length") << i;
    EXPECT_EQ(o.tokens, want[i]) << "prompt " << i;
  }
  // A last request after everything finished: the stats it publishes cover the run.
  EXPECT_EQ(RunOne(*tight, Greedy(prompts[0], 2)).tokens,
            std::vector<int32_t>(want[0].begin(), want[0].begin() + 2));
  const EngineStats s = tight->Stats();
  EXPECT_GT(s.tiers.layer_offloads, 0) << "the device never ran short: the test tests nothing";
  std::printf("layers to host %ld, back %ld, streamed %ld bytes, preemptions %ld\n",
              static_cast<long>(s.tiers.layer_offloads), static_cast<long>(s.tiers.layer_restores),
              static_cast<long>(s.tiers.layer_stream_bytes), static_cast<long>(s.num_preemptions));
  EXPECT_GT(s.tiers.layer_stream_bytes, 0);
  EXPECT_EQ(s.tiers.host_layer_pages, 0);
  EXPECT_EQ(s.tiers.host_pinned, 0);
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_waiting, 0);
}

INSTANTIATE_TEST_SUITE_P(Policies, LayerOffloadTest, ::testing::Values("fcfs", "slo"));

}  // namespace
}  // namespace strata::engine
