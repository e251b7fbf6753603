// Golden tests against ../shared/models/stories260k/reference.json, computed by an independent
// float64 numpy implementation and cross-checked against llama2.c (see that folder's README).
// They drive the real loading path (config.json, safetensors, tokenizer.json) and the CPU device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "common/file.h"
#include "common/json.h"
#include "engine/local_runtime.h"
#include "engine/model.h"

namespace strata::engine {
namespace {

const std::string kModelDir = STRATA_SOURCE_DIR "/../shared/models/stories260k";

class GoldenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!FileExists(kModelDir + "/reference.json")) return;
    auto model = LoadModel(kModelDir, {});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = model->release();
    auto text = ReadFile(kModelDir + "/reference.json");
    ASSERT_TRUE(text.ok());
    reference_ = new Json(*ParseJson(*text, "reference.json"));
  }
  static void TearDownTestSuite() {
    delete reference_;
    delete model_;
  }
  void SetUp() override {
    if (model_ == nullptr) GTEST_SKIP() << kModelDir << " is absent: golden tests need ../shared";
  }
  std::unique_ptr<LocalRuntime> Runtime(int32_t block_size = 16, int64_t chunk = 512) {
    auto rt = LocalRuntime::Create(
        *model_, {.backend = "cpu", .block_size = block_size, .max_batch_tokens = chunk});
    EXPECT_TRUE(rt.ok()) << rt.status();
    return std::move(*rt);
  }
  static std::vector<int32_t> Ids(const Json& j) { return j.get<std::vector<int32_t>>(); }

  static Model* model_;
  static Json* reference_;
};
Model* GoldenTest::model_ = nullptr;
Json* GoldenTest::reference_ = nullptr;

TEST_F(GoldenTest, PromptTokenIdsMatch) {
  for (const Json& p : (*reference_)["prompts"]) {
    std::string prompt = p["prompt"];
    EXPECT_EQ(model_->tokenizer->Encode(prompt, true), Ids(p["prompt_ids"])) << prompt;
  }
}

// 48 greedy tokens, exactly; run with two page sizes and prefill chunkings so that the paged
// layout and chunked prefill are part of what is checked.
TEST_F(GoldenTest, GreedyContinuationsMatch) {
  for (auto [block_size, chunk] : {std::pair{16, 512}, std::pair{5, 3}}) {
    auto rt = Runtime(block_size, chunk);
    for (const Json& p : (*reference_)["prompts"]) {
      std::vector<int32_t> prompt_ids = Ids(p["prompt_ids"]);
      GenerateOptions options;
      options.max_tokens = 48;
      options.sampling.temperature = 0;
      auto result = rt->generator().Generate(prompt_ids, options, nullptr);
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(result->output_ids, Ids(p["continuation_ids"]))
          << p["prompt"] << " block_size=" << block_size << " chunk=" << chunk;
      std::vector<int32_t> all = prompt_ids;
      all.insert(all.end(), result->output_ids.begin(), result->output_ids.end());
      EXPECT_EQ(model_->tokenizer->Decode(all, true), p["full_text"].get<std::string>());
    }
  }
}

// Each recorded top-5 (ids in order, logits within 1e-4) at the recorded positions.
TEST_F(GoldenTest, Top5LogitsMatch) {
  auto rt = Runtime();
  int checked = 0;
  for (const Json& p : (*reference_)["prompts"]) {
    std::vector<int32_t> ids = Ids(p["prompt_ids"]);
    std::vector<int32_t> cont = Ids(p["continuation_ids"]);
    ids.insert(ids.end(), cont.begin(), cont.end());
    std::vector<std::vector<float>> logits(ids.size());
    ASSERT_TRUE(rt->generator()
                    .Score(ids, [&](int64_t i, std::span<const float> l) {
                      logits[i].assign(l.begin(), l.end());
                    })
                    .ok());
    for (const Json& t : p["top5"]) {
      const std::vector<float>& row = logits[t["position"].get<size_t>()];
      std::vector<int32_t> order(row.size());
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                        [&](int32_t a, int32_t b) { return row[a] > row[b]; });
      order.resize(5);
      EXPECT_EQ(order, Ids(t["top5_ids"])) << p["prompt"] << " position " << t["position"];
      std::vector<double> want = t["top5_logits"].get<std::vector<double>>();
      for (int k = 0; k < 5; ++k) {
        EXPECT_NEAR(row[order[k]], want[k], 1e-4) << p["prompt"] << " rank " << k;
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 8 * 4);
}

std::vector<std::string> Passages(const std::string& text) {
  std::vector<std::string> out;
  std::string current, line;
  std::istringstream in(text);
  auto flush = [&] {
    auto b = current.find_first_not_of(" \t\n");
    auto e = current.find_last_not_of(" \t\n");
    if (b != std::string::npos) out.push_back(current.substr(b, e - b + 1));
    current.clear();
  };
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      flush();
    } else {
      current += (current.empty() ? "" : "\n") + line;
    }
  }
  flush();
  return out;
}

// The README's protocol: passages split on blank lines, each encoded with BOS, every token after
// BOS scored. Expect 2,327 tokens and perplexity 5.1795 (within 0.001).
TEST_F(GoldenTest, PerplexityOfSample) {
  auto text = ReadFile(kModelDir + "/tinystories_sample.txt");
  ASSERT_TRUE(text.ok());
  std::vector<std::string> passages = Passages(*text);
  EXPECT_EQ(passages.size(), 20u);
  auto rt = Runtime();
  double nll = 0;
  int64_t scored = 0;
  for (const std::string& passage : passages) {
    std::vector<int32_t> ids = model_->tokenizer->Encode(passage, true);
    ASSERT_TRUE(rt->generator()
                    .Score(ids, [&](int64_t i, std::span<const float> l) {
                      if (i + 1 >= static_cast<int64_t>(ids.size())) return;
                      double mx = *std::max_element(l.begin(), l.end()), sum = 0;
                      for (float v : l) sum += std::exp(v - mx);
                      nll += std::log(sum) + mx - l[ids[i + 1]];
                      ++scored;
                    })
                    .ok());
  }
  EXPECT_EQ(scored, 2327);
  EXPECT_NEAR(std::exp(nll / scored), 5.1795, 0.001);
}

}  // namespace
}  // namespace strata::engine
