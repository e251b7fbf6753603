// The official `openai` npm client (tests/integration/node, installed by `make test`) against a
// live daemon with an API key: non-streaming completions, a streamed chat with usage, models,
// an aborted stream, and the library's typed errors for 400, 404 and 401.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "common/json.h"
#include "tests/integration/daemon.h"

namespace strata::testing {
namespace {

constexpr char kNodeDir[] = STRATA_SOURCE_DIR "/tests/integration/node";
constexpr char kKey[] = "sk-strata-test-0123456789";

TEST(OpenAiClientTest, OfficialNodeClientSeesTheReferenceAndTypedErrors) {
  if (!HaveStories()) GTEST_SKIP() << "no " << StoriesDir();
  // Not a skip: `make test` installs the client; its absence is a broken setup.
  ASSERT_TRUE(std::filesystem::exists(std::string(kNodeDir) + "/node_modules/openai"))
      << "run `npm ci --prefix tests/integration/node` (make test does)";
  const std::string tmpl = TempPath("chat.jinja");
  ASSERT_TRUE(WriteFile(tmpl, "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}")
                  .ok());
  std::string error;
  auto d = DaemonProcess::Start("model:\n  path: " + StoriesDir() +
                                    "\n  served_name: stories\n  chat_template: " + tmpl +
                                    "\nserver:\n  api_keys: [" + kKey +
                                    "]\nengine:\n  threads: 1\n",
                                &error);
  ASSERT_NE(d, nullptr) << error;
  auto ref = ParseJson(*ReadFile(StoriesDir() + "/reference.json"), "reference.json");
  const Json p = (*ref)["prompts"][0];

  int status = 0;
  const std::string out =
      Shell("node " + std::string(kNodeDir) + "/openai_client.mjs " + d->url("/v1") + " " +
                kKey + " " + ShellQuote(p["prompt"].get<std::string>()) + " 2>&1",
            &status);
  ASSERT_EQ(status, 0) << out;
  auto parsed = ParseJson(out, "client output");
  ASSERT_TRUE(parsed.ok()) << out;
  const Json& j = *parsed;
  EXPECT_EQ(j["completion_text"], p["continuation_text"]);
  EXPECT_EQ(j["completion_usage"]["completion_tokens"], 48);
  EXPECT_EQ(j["chat_text"], p["continuation_text"]);
  EXPECT_EQ(j["chat_message"]["content"], p["continuation_text"]);
  EXPECT_EQ(j["chat_message"]["role"], "assistant");
  ASSERT_EQ(j["chat_logprobs"].size(), 3u);
  EXPECT_EQ(j["chat_logprobs"][0]["token"], ",");  // the reference's first greedy token
  EXPECT_EQ(j["chat_logprobs"][0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(j["n2_indices"], Json::array({0, 1}));
  EXPECT_EQ(j["n2_token_counts"], Json::array({8, 8}));
  EXPECT_EQ(j["n2_usage"]["completion_tokens"], 16);
  EXPECT_EQ(j["chat_usage"]["prompt_tokens"], p["prompt_ids"].size());
  EXPECT_GT(j["chat_chunks"].get<int>(), 2);
  EXPECT_EQ(j["models"], Json::array({"stories"}));
  EXPECT_EQ(j["bad_max_tokens"]["status"], 400);
  EXPECT_EQ(j["bad_max_tokens"]["name"], "BadRequestError");
  EXPECT_EQ(j["bad_max_tokens"]["param"], "max_tokens");
  EXPECT_EQ(j["unknown_model"]["status"], 404);
  EXPECT_EQ(j["unknown_model"]["name"], "NotFoundError");
  EXPECT_EQ(j["wrong_key"]["status"], 401);
  EXPECT_EQ(j["wrong_key"]["name"], "AuthenticationError");

  // The aborted stream is freed: nothing runs, nothing waits.
  const std::string metrics = WaitForMetric(*d, "strata_num_requests_running", 0);
  EXPECT_EQ(MetricSample(metrics, "strata_num_requests_running"), 0) << metrics;
  EXPECT_EQ(MetricSample(metrics, "strata_num_requests_waiting"), 0) << metrics;
  EXPECT_EQ(d->Stop(), 0) << d->Log();
  std::filesystem::remove(tmpl);
}

}  // namespace
}  // namespace strata::testing
