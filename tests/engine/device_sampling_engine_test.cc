// The engine samples on the device (ModelRunner::ForwardSample: Device::ApplyPenalties +
// Device::Sample, rows in parallel) whenever no row of a step wants logprobs, and on the host
// (each request's Sampler over copied-back logits) when one does. On stories260K, for seeded
// requests with every sampling knob, both paths and the single-stream Generator (host Sampler,
// one request at a time) give the same tokens, alone and batched together.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/local_runtime.h"
#include "tests/engine/engine_test_util.h"

namespace strata::engine {
namespace {

struct Case {
  std::string name;
  SamplingParams params;
};

std::vector<Case> Cases() {
  auto with = [](float t, int32_t k, float p, float min_p, float rep, float pres, float freq,
                 uint64_t seed) {
    SamplingParams s;
    s.temperature = t;
    s.top_k = k;
    s.top_p = p;
    s.min_p = min_p;
    s.repetition_penalty = rep;
    s.presence_penalty = pres;
    s.frequency_penalty = freq;
    s.seed = seed;
    return s;
  };
  return {{"temperature", with(1.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 11)},
          {"top_k", with(0.8f, 20, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 12)},
          {"top_p", with(1.2f, 0, 0.9f, 0.0f, 1.0f, 0.0f, 0.0f, 13)},
          {"min_p", with(1.5f, 0, 1.0f, 0.05f, 1.0f, 0.0f, 0.0f, 14)},
          {"top_k_top_p_min_p", with(1.0f, 40, 0.8f, 0.02f, 1.0f, 0.0f, 0.0f, 15)},
          {"penalties", with(0.9f, 0, 1.0f, 0.0f, 1.3f, 0.5f, 0.4f, 16)},
          {"greedy_with_penalties", with(0.0f, 0, 1.0f, 0.0f, 1.5f, 0.0f, 0.6f, 17)}};
}

class DeviceSamplingEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = SharedModel();
    if (model_ == nullptr) GTEST_SKIP() << kStoriesDir << " is absent";
  }
  RequestOptions Request(const Case& c, int32_t logprobs) const {
    RequestOptions o = Greedy(prompt_, kTokens);
    o.sampling = c.params;
    o.logprobs = logprobs;
    return o;
  }

  static constexpr int64_t kTokens = 40;
  const Model* model_ = nullptr;
  // Any in-vocabulary prompt (stories260K has 512 tokens).
  std::vector<int32_t> prompt_ = {1, 403, 407, 261, 378, 2, 365, 303, 319, 268, 286};
};

TEST_F(DeviceSamplingEngineTest, DeviceHostAndGeneratorDrawTheSameTokens) {
  auto engine = Engine::Create(*model_, SmallEngineConfig());
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto runtime = LocalRuntime::Create(
      *model_, RuntimeConfig{.backend = "cpu", .threads = 2, .block_size = 4,
                             .max_batch_tokens = 64, .max_model_len = 160, .max_logit_rows = 16});
  ASSERT_TRUE(runtime.ok()) << runtime.status();
  std::vector<std::vector<int32_t>> distinct;
  for (const Case& c : Cases()) {
    const Output device = RunOne(**engine, Request(c, /*logprobs=*/-1));
    const Output host = RunOne(**engine, Request(c, /*logprobs=*/0));  // forces the host path
    auto generated = (*runtime)->generator().Generate(
        prompt_, GenerateOptions{.max_tokens = kTokens, .sampling = c.params, .stop_token_ids = {}}, {});
    ASSERT_TRUE(generated.ok()) << generated.status();
    ASSERT_EQ(static_cast<int64_t>(device.tokens.size()), kTokens) << c.name;
    EXPECT_EQ(device.tokens, host.tokens) << c.name << ": device vs host sampling";
    EXPECT_EQ(device.tokens, generated->output_ids) << c.name << ": engine vs generator";
    distinct.push_back(device.tokens);
  }
  // The cases really sample differently (a path ignoring its parameters would not).
  std::sort(distinct.begin(), distinct.end());
  EXPECT_EQ(std::unique(distinct.begin(), distinct.end()), distinct.end());
  EXPECT_EQ((*engine)->Stats().num_step_errors, 0);
}

TEST_F(DeviceSamplingEngineTest, BatchedRowsDrawWhatTheyDrawAlone) {
  auto engine = Engine::Create(*model_, SmallEngineConfig());
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<Output> solo;
  for (const Case& c : Cases()) solo.push_back(RunOne(**engine, Request(c, -1)));
  std::vector<Engine::Submission> subs;
  for (const Case& c : Cases()) {
    auto s = (*engine)->Submit(Request(c, -1));
    ASSERT_TRUE(s.ok()) << s.status();
    subs.push_back(*s);
  }
  const std::vector<Case> cases = Cases();
  for (size_t i = 0; i < subs.size(); ++i) {
    EXPECT_EQ(Drain(*subs[i].channel).tokens, solo[i].tokens) << cases[i].name;
  }
}

}  // namespace
}  // namespace strata::engine
