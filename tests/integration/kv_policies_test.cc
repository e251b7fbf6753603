// KV policies in a live daemon serving configs/policies.yaml (codec pools carved from one
// budget, sparsity with eviction): every policy answers over HTTP, `full` gives the reference
// continuations, a bf16 request does not hit fp32 blocks of the same prompt, and an invalid
// combination stops start-up with a message naming the policy.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/file.h"
#include "common/json.h"
#include "tests/integration/daemon.h"
#include "tests/integration/run_binary.h"

namespace strata::testing {
namespace {

class KvPoliciesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!HaveStories()) return;
    const std::string yaml = "model:\n  path: " + StoriesDir() +
                             "\n  served_name: stories\n"
                             "engine:\n  threads: 1\n  max_num_seqs: 8\n" +
                             *ReadFile(STRATA_SOURCE_DIR "/configs/policies.yaml");
    std::string error;
    daemon_ = DaemonProcess::Start(yaml, &error).release();
    ASSERT_NE(daemon_, nullptr) << error;
  }
  static void TearDownTestSuite() {
    std::string log;
    EXPECT_EQ(StopAndDelete(daemon_, &log), 0) << log;
  }
  void SetUp() override {
    if (!HaveStories()) GTEST_SKIP() << "no " << StoriesDir();
    ASSERT_NE(daemon_, nullptr);
  }
  static Json Complete(const Json& body) {
    CurlResult r = Curl("POST", daemon_->url("/v1/completions"), body.dump());
    EXPECT_EQ(r.http_code, 200) << r.body;
    auto j = ParseJson(r.body, "completion");
    EXPECT_TRUE(j.ok()) << r.body;
    return j.ok() ? *j : Json();
  }
  static DaemonProcess* daemon_;
};
DaemonProcess* KvPoliciesTest::daemon_ = nullptr;

TEST_F(KvPoliciesTest, EveryPolicyServesAndFullIsTheReference) {
  const Json ref = *ParseJson(*ReadFile(StoriesDir() + "/reference.json"), "reference.json");
  const Json& p = ref["prompts"][0];
  for (const char* policy : {"full", "bf16", "fp8", "int8", "kivi4", "kivi2", "streaming", "h2o",
                             "snapkv"}) {
    Json r = Complete({{"prompt", p["prompt"]}, {"max_tokens", 48}, {"temperature", 0},
                       {"kv_policy", policy}});
    ASSERT_TRUE(r.contains("choices")) << policy << ": " << r.dump();
    EXPECT_EQ(r["choices"][0]["finish_reason"], "length") << policy;
    EXPECT_EQ(r["usage"]["completion_tokens"], 48) << policy;
    if (std::string(policy) == "full") {
      EXPECT_EQ(r["choices"][0]["text"], p["continuation_text"]);
    }
  }
}

TEST_F(KvPoliciesTest, CodecsNeverShareCachedBlocks) {
  const std::string prompt(300, 'a');  // several full blocks
  auto cached = [](const Json& r) -> int64_t {
    const Json& u = r["usage"];
    if (!u.contains("prompt_tokens_details")) return 0;
    return u["prompt_tokens_details"].value("cached_tokens", int64_t{0});
  };
  Complete({{"prompt", prompt}, {"max_tokens", 2}, {"kv_policy", "full"}});
  EXPECT_GT(cached(Complete({{"prompt", prompt}, {"max_tokens", 2}, {"kv_policy", "full"}})), 0)
      << "control: fp32 reuses its own blocks";
  EXPECT_EQ(cached(Complete({{"prompt", prompt}, {"max_tokens", 2}, {"kv_policy", "bf16"}})), 0);
  EXPECT_GT(cached(Complete({{"prompt", prompt}, {"max_tokens", 2}, {"kv_policy", "bf16"}})), 0);
}

TEST_F(KvPoliciesTest, EveryCodecPoolIsExportedAndEmptyWhenIdle) {
  Complete({{"prompt", "Once upon a time"}, {"max_tokens", 4}, {"kv_policy", "kivi2"}});
  const std::string page = Curl("GET", daemon_->url("/metrics")).body;
  for (const char* codec : {"fp32", "bf16", "fp8", "int8", "kivi4", "kivi2"}) {
    const std::string labels = std::string("codec=\"") + codec + "\",model=\"stories\"";
    EXPECT_NE(page.find("strata_kv_pool_usage_ratio{" + labels + "}"), std::string::npos)
        << codec << "\n" << page.substr(0, 2000);
    EXPECT_EQ(MetricSample(page, "strata_kv_pool_usage_ratio", labels), 0.0) << codec;
  }
}

TEST(KvPoliciesConfigTest, AnInvalidCombinationStopsStartUpNamingThePolicy) {
  const std::string path = std::filesystem::temp_directory_path() / "strata_bad_policy.yaml";
  ASSERT_TRUE(WriteFile(path, "policies:\n  full: {}\n  tiny:\n    codec: kivi2\n"
                              "    residual_tokens: 32\n"
                              "    sparsity: {type: h2o, budget_tokens: 64, recent_tokens: 8}\n"
                              "    tiers: [device]\n").ok());
  auto r = RunStrata("serve --config " + path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("policies.tiny.sparsity.type: sparsity h2o needs codec fp32"),
            std::string::npos)
      << r.stderr_text;
}

}  // namespace
}  // namespace strata::testing
