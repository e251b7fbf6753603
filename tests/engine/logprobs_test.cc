// Logprobs: LogSoftmaxRow's arithmetic and top-k order, and the engine's logprob events on
// stories260k checked against reference.json's top-5 logits (log-softmax needs the full row, so
// the check is on differences: logprob_a - logprob_b == logit_a - logit_b).
#include "engine/logprobs.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>

#include "common/file.h"
#include "common/json.h"

namespace strata::engine {
namespace {

const std::string kModelDir = STRATA_SOURCE_DIR "/../shared/models/stories260k";

EngineConfig OneThread() {
  EngineConfig c;
  c.threads = 1;
  return c;
}

TEST(LogSoftmaxRowTest, MatchesTheDefinition) {
  std::vector<float> logits{1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
  LogSoftmaxRow row(logits);
  double sum = 0;
  for (float x : logits) sum += std::exp(x);
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(row.LogProb(i), logits[i] - std::log(sum), 1e-6);
  EXPECT_EQ(row.LogProb(5), -INFINITY);
  EXPECT_EQ(row.LogProb(-1), -INFINITY);
}

TEST(LogSoftmaxRowTest, TopIsDescendingWithLowerIdFirstOnTies) {
  std::vector<float> logits{1.0f, 3.0f, -2.0f, 3.0f, 0.5f, NAN};
  LogSoftmaxRow row(logits);
  std::vector<TokenLogprob> top = row.Top(4);
  ASSERT_EQ(top.size(), 4u);
  EXPECT_EQ(top[0].token, 1);
  EXPECT_EQ(top[1].token, 3);
  EXPECT_EQ(top[2].token, 0);
  EXPECT_EQ(top[3].token, 4);
  EXPECT_FLOAT_EQ(top[0].logprob, row.LogProb(1));
  EXPECT_EQ(row.Top(0).size(), 0u);
  EXPECT_EQ(row.Top(100).size(), 6u);  // clamped; the NaN comes last as -inf
  EXPECT_EQ(row.Top(100).back().token, 5);
}

TEST(EngineLogprobsTest, GreedyTokensAreTopOneAndMatchReferenceLogitGaps) {
  if (!FileExists(kModelDir + "/model.safetensors")) GTEST_SKIP() << "no " << kModelDir;
  auto model = LoadModel(kModelDir, {});
  ASSERT_TRUE(model.ok()) << model.status();
  auto engine = Engine::Create(**model, OneThread());
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto ref = ParseJson(*ReadFile(kModelDir + "/reference.json"), "reference.json");
  ASSERT_TRUE(ref.ok());
  const Json& p = (*ref)["prompts"][0];
  RequestOptions o;
  o.prompt_ids = p["prompt_ids"].get<std::vector<int32_t>>();
  o.max_tokens = 16;
  o.sampling.temperature = 0;
  o.logprobs = 5;
  std::atomic<int> notified{0};
  o.notify = [&] { ++notified; };
  auto sub = (*engine)->Submit(o);
  ASSERT_TRUE(sub.ok());
  std::vector<TokenEvent> events;
  for (;;) {
    events.push_back(sub->channel->Pop());
    if (!events.back().finish_reason.empty()) break;
  }
  ASSERT_EQ(events.size(), 16u);
  // notify runs on the engine thread after each Deliver, so the last call may still be in flight
  // when the consumer pops the final event; joining the engine thread settles the count.
  engine->reset();
  EXPECT_EQ(notified.load(), 16);
  auto continuation = p["continuation_ids"].get<std::vector<int32_t>>();
  for (size_t i = 0; i < events.size(); ++i) {
    const TokenEvent& e = events[i];
    EXPECT_EQ(e.token, continuation[i]);
    ASSERT_TRUE(e.logprob.has_value());
    ASSERT_EQ(e.top_logprobs.size(), 5u);
    EXPECT_EQ(e.top_logprobs[0].token, e.token);
    EXPECT_FLOAT_EQ(e.top_logprobs[0].logprob, e.logprob->logprob);
    EXPECT_LE(e.logprob->logprob, 0.0f);
    EXPECT_GT(e.first_scheduled_at, 0.0);
  }
  const Json& top = p["top5"][0];  // position of the first continuation token
  ASSERT_EQ(top["predicts_continuation_index"].get<int>(), 0);
  auto ids = top["top5_ids"].get<std::vector<int32_t>>();
  auto logits = top["top5_logits"].get<std::vector<float>>();
  for (int k = 0; k < 5; ++k) {
    EXPECT_EQ(events[0].top_logprobs[k].token, ids[k]);
    EXPECT_NEAR(events[0].top_logprobs[k].logprob - events[0].top_logprobs[0].logprob,
                logits[k] - logits[0], 2e-4);
  }
}

TEST(EngineLogprobsTest, NoLogprobsUnlessAsked) {
  auto model = LoadModel("synthetic:tiny", {});
  ASSERT_TRUE(model.ok());
  auto engine = Engine::Create(**model, OneThread());
  ASSERT_TRUE(engine.ok());
  RequestOptions o;
  o.prompt_ids = {256, 10, 11};
  o.max_tokens = 3;
  o.sampling.temperature = 0;
  auto sub = (*engine)->Submit(o);
  ASSERT_TRUE(sub.ok());
  TokenEvent e = sub->channel->Pop();
  EXPECT_FALSE(e.logprob.has_value());
  EXPECT_TRUE(e.top_logprobs.empty());
}

}  // namespace
}  // namespace strata::engine
