// kvcache::SparsityState: which tokens each policy keeps, when it compacts, and that its scores
// follow the tokens they belong to.
#include "kvcache/sparsity.h"

#include <gtest/gtest.h>

#include "tests/common/tokens.h"

namespace strata::kvcache {
namespace {

using Type = SparsitySpec::Type;

TEST(SparsityTest, SinkWindowKeepsSinksAndTheLatestWindowOnceABlockOver) {
  SparsityState s({.type = Type::kSinkWindow, .sink_tokens = 4, .window_tokens = 28}, 2, 3);
  KeepSets keep;
  EXPECT_FALSE(s.Plan(32, false, false, 16, &keep)) << "at the budget";
  EXPECT_FALSE(s.Plan(47, false, false, 16, &keep)) << "within the slack";
  ASSERT_TRUE(s.Plan(48, false, false, 16, &keep));
  ASSERT_EQ(keep.size(), 2u);
  for (const auto& layer : keep) {
    ASSERT_EQ(layer.size(), 3u);
    for (const auto& head : layer) EXPECT_EQ(head, Concat(Range(0, 4), Range(20, 28)));
  }
}

TEST(SparsityTest, NothingIsEvictedWhileThePromptIsComputedThenAllAtOnce) {
  SparsityState s({.type = Type::kSinkWindow, .sink_tokens = 2, .window_tokens = 6}, 1, 1);
  KeepSets keep;
  EXPECT_FALSE(s.Plan(100, true, false, 16, &keep));
  ASSERT_TRUE(s.Plan(10, false, true, 16, &keep)) << "the prompt's end compacts without slack";
  EXPECT_EQ(keep[0][0], Concat(Range(0, 2), Range(4, 6)));
}

TEST(SparsityTest, NoneNeverCompacts) {
  SparsityState s({}, 1, 1);
  KeepSets keep;
  EXPECT_FALSE(s.Plan(100000, false, true, 16, &keep));
}

TEST(SparsityTest, H2oKeepsRecentAndHeavyHittersPerHeadAndCarriesScores) {
  SparsityState s({.type = Type::kH2o, .budget_tokens = 6, .recent_tokens = 2}, 1, 2);
  // Head 0 favours tokens 1, 3, 5, 7; head 1 tokens 0, 2, 4, 6 (10 tokens, stride 10).
  std::vector<float> scores(20, 0.0f);
  for (int j : {1, 3, 5, 7}) scores[j] = 1.0f + j;
  for (int j : {0, 2, 4, 6}) scores[10 + j] = 10.0f - j;
  s.AddScores(0, scores, 10, 10);
  KeepSets keep;
  ASSERT_TRUE(s.Plan(10, false, false, 4, &keep));
  EXPECT_EQ(keep[0][0], (std::vector<int32_t>{1, 3, 5, 7, 8, 9}));
  EXPECT_EQ(keep[0][1], (std::vector<int32_t>{0, 2, 4, 6, 8, 9}));
  // Scores moved with their tokens: one more step on the 6 kept (+4 new) tokens. A new score on
  // head 0's kept index 0 (token 1, score 2) makes it the strongest; recent are now 8, 9.
  std::vector<float> more(20, 0.0f);
  more[0] = 100.0f;
  s.AddScores(0, more, 10, 10);
  ASSERT_TRUE(s.Plan(10, false, false, 4, &keep));
  // Head 0 older kept scores: [102, 4, 6, 8, 0, 0, 0, 0]: top 4 are indices 0..3.
  EXPECT_EQ(keep[0][0], (std::vector<int32_t>{0, 1, 2, 3, 8, 9}));
}

TEST(SparsityTest, SnapKvVotesOnceAfterThePromptWithPooling) {
  SparsityState s({.type = Type::kSnapKv, .budget_tokens = 5, .observation_tokens = 2,
                   .pool_kernel = 3}, 1, 1);
  std::vector<float> votes(12, 0.0f);
  votes[2] = 9.0f;   // pooled over [1, 3]: 1, 2, 3 all get 3
  votes[8] = 30.0f;  // pooled: 7, 8, 9 get 10
  s.AddScores(0, votes, 12, 12);
  KeepSets keep;
  EXPECT_FALSE(s.Plan(12, true, false, 16, &keep)) << "still in the prompt";
  ASSERT_TRUE(s.Plan(12, false, true, 16, &keep));
  // Window [10, 12) kept; 3 more from the pooled votes: 7, 8, 9 (10 each).
  EXPECT_EQ(keep[0][0], (std::vector<int32_t>{7, 8, 9, 10, 11}));
  // It voted once: decode grows the KV freely afterwards.
  EXPECT_FALSE(s.Plan(100, false, false, 16, &keep));
}

TEST(SparsityTest, SnapKvLeavesAPromptWithinBudgetAlone) {
  SparsityState s({.type = Type::kSnapKv, .budget_tokens = 64, .observation_tokens = 8,
                   .pool_kernel = 5}, 2, 2);
  KeepSets keep;
  EXPECT_FALSE(s.Plan(40, false, true, 16, &keep));
  EXPECT_FALSE(s.Plan(400, false, false, 16, &keep));
}

}  // namespace
}  // namespace strata::kvcache
