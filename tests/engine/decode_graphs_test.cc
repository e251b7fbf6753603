// ModelRunner's decode graphs (model_runner_graphs.cc) on a device that replays recorded kernels
// the way a CUDA graph does (GraphReplayDevice): decode steps padded to bucket shapes and
// replayed give what eager launches give, step after step, as sequences join and leave and their
// block tables grow; prefill and mixed steps stay eager; a capture that fails runs uncaptured;
// the padding rows never touch a real KV page.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "engine/model_runner.h"
#include "engine/synthetic.h"
#include "tests/engine/graph_replay_device.h"
#include "tests/engine/runner_stepper.h"

namespace strata::engine {
namespace {

constexpr int32_t kPages = 512;

RunnerConfig TestRunnerConfig() {
  return RunnerConfig{.max_batch_tokens = 64, .max_num_seqs = 12, .max_logit_rows = 12,
                      .num_kv_pages = kPages, .block_size = 4, .max_model_len = 64,
                      .extra_pools = {}};
}

class DecodeGraphsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = TinyRunnerModel();
    std::unique_ptr<kernels::Device> eager_dev = TestCpuDevice();
    std::unique_ptr<kernels::Device> graph_dev = TestCpuDevice();
    ASSERT_TRUE(model_ && eager_dev && graph_dev);
    eager_ = std::make_unique<Stepper>(*model_, std::move(eager_dev), TestRunnerConfig());
    auto replay = std::make_unique<testing::GraphReplayDevice>(std::move(graph_dev));
    replay_ = replay.get();
    graphs_ = std::make_unique<Stepper>(*model_, std::move(replay), TestRunnerConfig());
  }

  // Runs the same step on both runners; the graph runner's logits must match the eager ones.
  // Returns each sequence's greedy next token (from the eager logits).
  std::vector<int32_t> StepBoth(const std::vector<int>& seqs,
                                const std::vector<std::vector<int32_t>>& tokens) {
    const std::vector<float> want = eager_->Step(seqs, tokens);
    const std::vector<float> got = graphs_->Step(seqs, tokens);
    EXPECT_EQ(want.size(), got.size());
    const int64_t vocab = eager_->runner().vocab_size();
    std::vector<int32_t> next;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const float* w = want.data() + i * vocab;
      const float* g = got.data() + i * vocab;
      for (int64_t v = 0; v < vocab; ++v) {
        EXPECT_NEAR(w[v], g[v], 1e-4f) << "step " << step_ << " seq " << seqs[i] << " logit " << v;
        if (std::abs(w[v] - g[v]) > 1e-4f) return next;  // one report per step is enough
      }
      next.push_back(static_cast<int32_t>(std::max_element(w, w + vocab) - w));
    }
    ++step_;
    return next;
  }

  // Decodes `seqs` one token each, `steps` times, feeding back each one's greedy token.
  void Decode(const std::vector<int>& seqs, int steps) {
    for (int i = 0; i < steps; ++i) {
      std::vector<std::vector<int32_t>> tokens;
      for (int s : seqs) tokens.push_back({last_[s]});
      const std::vector<int32_t> next = StepBoth(seqs, tokens);
      ASSERT_EQ(next.size(), seqs.size());
      for (size_t j = 0; j < seqs.size(); ++j) last_[seqs[j]] = next[j];
    }
  }

  void Prefill(const std::vector<int>& seqs, const std::vector<std::vector<int32_t>>& prompts) {
    const std::vector<int32_t> next = StepBoth(seqs, prompts);
    ASSERT_EQ(next.size(), seqs.size());
    for (size_t j = 0; j < seqs.size(); ++j) last_[seqs[j]] = next[j];
  }

  std::unique_ptr<SyntheticModel> model_;
  std::unique_ptr<Stepper> eager_, graphs_;
  testing::GraphReplayDevice* replay_ = nullptr;
  std::map<int, int32_t> last_;
  int step_ = 0;
};

TEST_F(DecodeGraphsTest, ReplayedDecodeStepsMatchEagerAsTheBatchChanges) {
  Prefill({0, 1, 2}, {{5, 6, 7, 8, 9}, {11, 12}, {40, 41, 42, 43, 44, 45, 46, 47, 48}});
  EXPECT_EQ(replay_->captures(), 0) << "a prefill step is not a decode step";
  Decode({0, 1, 2}, 6);  // 3 sequences -> bucket 4, replayed after the first capture
  Prefill({3, 4, 5, 6, 7}, {{1}, {2, 3}, {4, 5, 6}, {7}, {8, 9, 10, 11}});
  Decode({0, 1, 2, 3, 4, 5, 6, 7}, 5);  // bucket 8
  Decode({1, 3, 5}, 4);                 // back to bucket 4, with other sequences
  Decode({6}, 3);                       // bucket 1
  Decode({0, 1, 2, 3, 4, 5, 6, 7}, 16);  // contexts cross 32 tokens: block tables 8 -> 16 wide
  EXPECT_GT(replay_->captures(), 3);
  EXPECT_GT(replay_->replays(), 2 * replay_->captures());
  EXPECT_EQ(replay_->failed_captures(), 0);
  // Every decode step above ran as a graph; the eager runner ran none.
  EXPECT_EQ(graphs_->runner().num_graph_steps(), 6 + 5 + 4 + 3 + 16);
  EXPECT_EQ(eager_->runner().num_graph_steps(), 0);
}

TEST_F(DecodeGraphsTest, AMixedStepStaysEagerAndAFailedCaptureRunsUncaptured) {
  Prefill({0, 1}, {{3, 4, 5}, {6, 7}});
  Decode({0, 1}, 1);  // captures bucket (2 seqs, 8 blocks)
  const int captures = replay_->captures();
  // A step where one sequence decodes and another prefills is not a graph step.
  const int64_t graph_steps = graphs_->runner().num_graph_steps();
  StepBoth({0, 2}, {{last_[0]}, {9, 10, 11}});
  EXPECT_EQ(graphs_->runner().num_graph_steps(), graph_steps);
  // The next new shape fails to capture once: that step runs uncaptured, the one after captures.
  const uint64_t key_4x8 = (uint64_t{4} << 32) | 8;
  replay_->FailNextCapture(key_4x8);
  last_[2] = 12;
  Decode({0, 1, 2}, 3);
  EXPECT_EQ(replay_->failed_captures(), 1);
  EXPECT_EQ(replay_->captures(), captures + 1);
}

TEST_F(DecodeGraphsTest, PaddingRowsWriteOnlyThePaddingPage) {
  Prefill({0, 1, 2}, {{5, 6, 7}, {8}, {9, 10, 11, 12, 13}});
  Decode({0, 1, 2}, 9);  // 3 -> bucket 4: one padding row per step
  ASSERT_GT(replay_->replays(), 0);
  const std::vector<std::byte> want = eager_->Pages();
  const std::vector<std::byte> got = graphs_->Pages();
  ASSERT_EQ(want.size(), got.size());
  // Pages no sequence owns stay all zero on both; owned pages agree to rounding.
  const size_t floats = want.size() / sizeof(float);
  const float* w = reinterpret_cast<const float*>(want.data());
  const float* g = reinterpret_cast<const float*>(got.data());
  int differing = 0;
  for (size_t i = 0; i < floats; ++i) {
    if ((w[i] == 0.0f) != (g[i] == 0.0f) || std::abs(w[i] - g[i]) > 1e-4f) ++differing;
  }
  EXPECT_EQ(differing, 0);
}

TEST(DecodeGraphsConfigTest, GraphsOffOrUnsupportedMeansNoPaddingPageAndNoGraphSteps) {
  std::unique_ptr<SyntheticModel> m = TinyRunnerModel();
  std::unique_ptr<kernels::Device> dev = TestCpuDevice();
  ASSERT_TRUE(m && dev);
  auto owned = std::make_unique<testing::GraphReplayDevice>(std::move(dev));
  testing::GraphReplayDevice& replay = *owned;
  RunnerConfig rc = TestRunnerConfig();
  rc.decode_graphs = false;
  Stepper stepper(*m, std::move(owned), rc);
  stepper.Step({0}, {{3}});  // one token for one sequence: a graph step were graphs on
  EXPECT_EQ(stepper.runner().num_graph_steps(), 0);
  EXPECT_EQ(replay.captures() + replay.replays(), 0);
}

}  // namespace
}  // namespace strata::engine
