// The continuous-batching Engine end to end on the CPU device: many concurrent requests produce,
// token for token, what each produces alone; prefix reuse, cache_salt isolation, preemption under
// a tiny KV budget, cancellation and bad submissions.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "common/file.h"
#include "tests/engine/engine_test_util.h"

namespace strata::engine {
namespace {

const std::string kModelDir = STRATA_SOURCE_DIR "/../shared/models/stories260k";

// Runs every request alone (one at a time), then all at once; returns both.
std::pair<std::vector<Output>, std::vector<Output>> SoloAndConcurrent(
    Engine& engine, const std::vector<RequestOptions>& requests) {
  std::vector<Output> solo, together;
  for (const RequestOptions& r : requests) {
    auto s = engine.Submit(r);
    EXPECT_TRUE(s.ok()) << s.status();
    solo.push_back(Drain(*s->channel));
  }
  std::vector<Engine::Submission> subs;
  for (const RequestOptions& r : requests) subs.push_back(*engine.Submit(r));
  for (auto& s : subs) together.push_back(Drain(*s.channel));
  return {solo, together};
}

std::vector<std::vector<int32_t>> VariedPrompts(int count, int32_t vocab, uint32_t seed) {
  std::vector<std::vector<int32_t>> prompts;
  uint32_t x = seed;
  for (int i = 0; i < count; ++i) {
    std::vector<int32_t> p{1};
    int len = 1 + (i * 7) % 45;
    for (int t = 0; t < len; ++t) {
      x = x * 1664525u + 1013904223u;
      p.push_back(3 + static_cast<int32_t>((x >> 8) % (vocab - 3)));
    }
    prompts.push_back(p);
  }
  return prompts;
}

std::unique_ptr<Model> LoadOrSkip(const std::string& spec) {
  if (spec.rfind("synthetic:", 0) != 0 && !FileExists(spec)) return nullptr;
  auto model = LoadModel(spec, {});
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

void ExpectBatchInvariance(const std::string& spec) {
  auto model = LoadOrSkip(spec);
  if (!model) GTEST_SKIP() << spec << " is absent";
  auto engine = Engine::Create(*model, SmallEngineConfig());
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<RequestOptions> requests;
  auto prompts = VariedPrompts(32, static_cast<int32_t>(model->config.vocab_size), 7);
  for (size_t i = 0; i < prompts.size(); ++i) requests.push_back(Greedy(prompts[i], 8 + i % 25));
  auto [solo, together] = SoloAndConcurrent(**engine, requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(together[i].tokens, solo[i].tokens) << spec << " request " << i;
    EXPECT_EQ(together[i].finish_reason, "length");
    EXPECT_EQ(static_cast<int64_t>(solo[i].tokens.size()), requests[i].max_tokens);
  }
  EXPECT_GT((*engine)->Stats().num_steps, 0);
}

TEST(EngineTest, BatchInvarianceStories260k) { ExpectBatchInvariance(kModelDir); }
TEST(EngineTest, BatchInvarianceSyntheticTiny) { ExpectBatchInvariance("synthetic:tiny"); }

TEST(EngineTest, MatchesTheGoldenReferenceWhileBatched) {
  auto model = LoadOrSkip(kModelDir);
  if (!model) GTEST_SKIP() << kModelDir << " is absent";
  auto engine = Engine::Create(*model, SmallEngineConfig());
  ASSERT_TRUE(engine.ok());
  // The first reference prompt: ", there was a little girl named Lily..." (reference.json).
  std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
  std::vector<int32_t> want = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338};
  std::vector<Engine::Submission> subs;
  for (int i = 0; i < 6; ++i) subs.push_back(*(*engine)->Submit(Greedy(prompt, 12)));
  for (auto& s : subs) EXPECT_EQ(Drain(*s.channel).tokens, want);
}

TEST(EngineTest, PrefixReuseReportsCachedTokensAndKeepsOutput) {
  auto model = LoadOrSkip("synthetic:tiny");
  auto engine = Engine::Create(*model, SmallEngineConfig());
  ASSERT_TRUE(engine.ok());
  std::vector<int32_t> shared = VariedPrompts(1, 512, 3)[0];
  shared.resize(18);  // 4 full blocks of 4 + 2
  auto first = Drain(*(*engine)->Submit(Greedy(shared, 5))->channel);
  EXPECT_EQ(first.num_cached_tokens, 0);
  std::vector<int32_t> longer = shared;
  longer.insert(longer.end(), {40, 41, 42});
  auto second = Drain(*(*engine)->Submit(Greedy(longer, 5))->channel);
  EXPECT_EQ(second.num_cached_tokens, 16);  // full blocks only
  auto again = Drain(*(*engine)->Submit(Greedy(shared, 5))->channel);
  EXPECT_EQ(again.num_cached_tokens, 16);
  EXPECT_EQ(again.tokens, first.tokens);
  RequestOptions salted = Greedy(shared, 5);
  salted.cache_salt = "tenant-b";
  auto other = Drain(*(*engine)->Submit(salted)->channel);
  EXPECT_EQ(other.num_cached_tokens, 0);
  EXPECT_EQ(other.tokens, first.tokens);
  // Without prefix caching the output is the same and nothing is reported cached.
  EngineConfig off = SmallEngineConfig();
  off.enable_prefix_caching = false;
  auto plain = Engine::Create(*model, off);
  ASSERT_TRUE(plain.ok());
  auto uncached = Drain(*(*plain)->Submit(Greedy(longer, 5))->channel);
  EXPECT_EQ(uncached.num_cached_tokens, 0);
  EXPECT_EQ(uncached.tokens, second.tokens);
}

TEST(EngineTest, PreemptionUnderATinyKvBudgetKeepsEveryOutput) {
  auto model = LoadOrSkip("synthetic:tiny");
  EngineConfig c = SmallEngineConfig();
  c.max_model_len = 64;
  c.num_kv_pages = 16 * 4 * 3;  // three full-length sequences of 4 layers
  auto engine = Engine::Create(*model, c);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<RequestOptions> requests;
  for (auto& p : VariedPrompts(12, 512, 11)) {
    p.resize(std::min<size_t>(p.size(), 30));
    requests.push_back(Greedy(p, 24));
  }
  auto [solo, together] = SoloAndConcurrent(**engine, requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(together[i].tokens, solo[i].tokens) << "request " << i;
  }
  EngineStats stats = (*engine)->Stats();
  EXPECT_GT(stats.num_preemptions, 0);
  EXPECT_EQ(stats.num_running + stats.num_waiting, 0);
  EXPECT_EQ(stats.num_free_pages, stats.num_pages);
}

TEST(EngineTest, CancelFreesTheRequestAndOthersFinish) {
  auto model = LoadOrSkip("synthetic:tiny");
  auto engine = Engine::Create(*model, SmallEngineConfig());
  ASSERT_TRUE(engine.ok());
  auto victim = *(*engine)->Submit(Greedy({1, 2, 3}, 100));
  auto other = *(*engine)->Submit(Greedy({1, 5, 6}, 20));
  victim.channel->Pop();  // it is running
  (*engine)->Cancel(victim.id);
  Output v = Drain(*victim.channel);
  EXPECT_EQ(v.finish_reason, "abort");
  EXPECT_LT(v.tokens.size(), 99u);
  EXPECT_EQ(Drain(*other.channel).tokens.size(), 20u);
  EngineStats stats = (*engine)->Stats();
  EXPECT_EQ(stats.num_free_pages, stats.num_pages);
  (*engine)->Cancel(12345);  // unknown: ignored
}

TEST(EngineTest, BadSubmissionsAreRejectedAndQueueNothing) {
  auto model = LoadOrSkip("synthetic:tiny");
  auto engine = Engine::Create(*model, SmallEngineConfig());
  ASSERT_TRUE(engine.ok());
  EXPECT_EQ((*engine)->Submit(Greedy({}, 4)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*engine)->Submit(Greedy({1, 512}, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*engine)->Submit(Greedy({1, 2}, 127)).status().code(),
            absl::StatusCode::kInvalidArgument);
  RequestOptions bad = Greedy({1, 2}, 4);
  bad.sampling.top_p = 2;
  EXPECT_EQ((*engine)->Submit(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*engine)->Stats().num_steps, 0);
}

TEST(EngineTest, StopTokenEndsWithStop) {
  auto model = LoadOrSkip("synthetic:tiny");
  auto engine = Engine::Create(*model, SmallEngineConfig());
  ASSERT_TRUE(engine.ok());
  Output free_run = Drain(*(*engine)->Submit(Greedy({1, 9, 9}, 10))->channel);
  RequestOptions o = Greedy({1, 9, 9}, 10);
  o.stop_token_ids = {free_run.tokens[3]};
  Output stopped = Drain(*(*engine)->Submit(o)->channel);
  EXPECT_EQ(stopped.finish_reason, "stop");
  auto first = std::find(free_run.tokens.begin(), free_run.tokens.end(), free_run.tokens[3]);
  EXPECT_EQ(stopped.tokens, std::vector<int32_t>(free_run.tokens.begin(), first + 1));
}

}  // namespace
}  // namespace strata::engine

namespace strata::engine {
namespace {

// n > 1: siblings fork the parent's full prompt blocks; each completion must equal a solo run
// (greedy: identical; seeded: sibling i == a solo run with seed + i), with caching on and off.
TEST(EngineTest, ParallelCompletionsShareThePromptAndMatchSoloRuns) {
  auto model = LoadOrSkip("synthetic:tiny");
  for (bool caching : {true, false}) {
    EngineConfig c = SmallEngineConfig();
    c.enable_prefix_caching = caching;
    auto engine = Engine::Create(*model, c);
    ASSERT_TRUE(engine.ok());
    std::vector<int32_t> prompt = VariedPrompts(1, 512, 5)[0];
    prompt.resize(14);
    RequestOptions sampled = Greedy(prompt, 12);
    sampled.sampling.temperature = 1.0f;
    sampled.sampling.seed = 100;
    std::vector<Output> solo;
    for (uint64_t i = 0; i < 3; ++i) {
      RequestOptions one = sampled;
      one.sampling.seed = 100 + i;
      solo.push_back(Drain(*(*engine)->Submit(one)->channel));
    }
    sampled.n = 3;
    auto sub = (*engine)->Submit(sampled);
    ASSERT_TRUE(sub.ok());
    ASSERT_EQ(sub->channels.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(Drain(*sub->channels[i]).tokens, solo[i].tokens) << "sibling " << i << " caching "
                                                                 << caching;
    }
    EXPECT_NE(solo[0].tokens, solo[1].tokens);  // the seeds really differ
    RequestOptions greedy = Greedy(prompt, 12);
    greedy.n = 4;
    auto g = *(*engine)->Submit(greedy);
    Output first = Drain(*g.channels[0]);
    for (int i = 1; i < 4; ++i) EXPECT_EQ(Drain(*g.channels[i]).tokens, first.tokens);
    EngineStats stats = (*engine)->Stats();
    EXPECT_EQ(stats.num_free_pages, stats.num_pages);
    EXPECT_EQ((*engine)->Submit([&] { RequestOptions o = greedy; o.n = 0; return o; }())
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace strata::engine
