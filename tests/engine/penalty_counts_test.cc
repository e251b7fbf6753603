#include "engine/penalty_counts.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <tuple>
#include <vector>

namespace strata::engine {
namespace {

using Entries = std::vector<std::tuple<int32_t, int32_t, int32_t>>;  // (row, token, output_count)

Entries Listed(const PenaltyCounts& counts, int32_t row) {
  std::vector<kernels::PenaltyEntry> out;
  counts.AppendTo(row, &out);
  Entries listed;
  for (const auto& e : out) listed.emplace_back(e.row, e.token, e.output_count);
  return listed;
}

// What the entries must be, counted the plain way: an ordered map over every id.
Entries Expected(bool with_prompt, const std::vector<int32_t>& prompt,
                 const std::vector<int32_t>& output, int64_t vocab, int32_t row) {
  std::map<int32_t, int32_t> counts;
  for (int32_t id : output) {
    if (id >= 0 && id < vocab) ++counts[id];
  }
  if (with_prompt) {
    for (int32_t id : prompt) {
      if (id >= 0 && id < vocab) counts.emplace(id, 0);
    }
  }
  Entries expected;
  for (const auto& [token, n] : counts) expected.emplace_back(row, token, n);
  return expected;
}

// A request growing one token a step, with now and then several at once (more than the
// incremental limit too), ids outside the vocabulary, and repeats: after every Update the entries
// are the plain count's.
TEST(PenaltyCountsTest, GrowingRequestKeepsThePlainCountEveryStep) {
  std::mt19937 rng(7);
  for (bool with_prompt : {true, false}) {
    for (int64_t vocab : {5, 300, 32000}) {
      std::uniform_int_distribution<int32_t> id(-2, static_cast<int32_t>(vocab) + 2);
      std::vector<int32_t> prompt(40);
      for (int32_t& t : prompt) t = id(rng);
      std::vector<int32_t> output;
      PenaltyCounts counts(with_prompt);
      for (int step = 0; step < 300; ++step) {
        const int add = step % 37 == 5 ? 100 : step % 11 == 3 ? 7 : step % 13 == 0 ? 0 : 1;
        for (int i = 0; i < add; ++i) output.push_back(id(rng));
        counts.Update(prompt, output, vocab);
        ASSERT_EQ(Listed(counts, 3), Expected(with_prompt, prompt, output, vocab, 3))
            << "vocab " << vocab << " step " << step;
      }
    }
  }
}

// A call that does not extend the last one (another prompt, fewer output ids, another vocab)
// counts afresh instead of adding to stale counts.
TEST(PenaltyCountsTest, ACallThatDoesNotExtendTheLastCountsAfresh) {
  PenaltyCounts counts(/*with_prompt=*/true);
  const std::vector<int32_t> prompt = {4, 4, 9};
  std::vector<int32_t> output = {1, 2, 2};
  counts.Update(prompt, output, 10);
  ASSERT_EQ(Listed(counts, 0), Expected(true, prompt, output, 10, 0));
  output = {2};  // fewer
  counts.Update(prompt, output, 10);
  EXPECT_EQ(Listed(counts, 0), Expected(true, prompt, output, 10, 0));
  const std::vector<int32_t> other_prompt = {7};
  counts.Update(other_prompt, output, 10);
  EXPECT_EQ(Listed(counts, 0), Expected(true, other_prompt, output, 10, 0));
  counts.Update(other_prompt, output, 2);  // 7 leaves the vocabulary
  EXPECT_EQ(Listed(counts, 0), Expected(true, other_prompt, output, 2, 0));
  EXPECT_EQ(Listed(counts, 0).size(), 0u);
}

TEST(PenaltyCountsTest, AppendToKeepsWhatWasThereAndSetsTheRow) {
  PenaltyCounts counts(/*with_prompt=*/false);
  counts.Update(std::vector<int32_t>{3}, std::vector<int32_t>{6, 2, 6}, 8);
  std::vector<kernels::PenaltyEntry> out = {{.row = 9, .token = 1, .output_count = 4}};
  counts.AppendTo(5, &out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].row, 9);
  EXPECT_EQ(out[1].row, 5);
  EXPECT_EQ(out[1].token, 2);
  EXPECT_EQ(out[2].token, 6);
  EXPECT_EQ(out[2].output_count, 2);
  EXPECT_EQ(counts.entries()[0].row, 0);
}

}  // namespace
}  // namespace strata::engine
