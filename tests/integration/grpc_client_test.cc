// The gRPC front end of a live `strata serve`, driven by a Python client on Debian's
// python3-grpcio (tests/integration/grpc_client.py): streamed greedy output equal to
// reference.json, ListModels, the standard health service through a drain, API keys, and the
// same validation and status mapping as HTTP.
#include <gtest/gtest.h>

#include <sstream>

#include "common/json.h"
#include "tests/integration/daemon.h"
#include "tests/integration/sse_reader.h"

namespace strata::testing {
namespace {

constexpr char kKey[] = "grpc-test-key-0123";

struct ClientRun {
  int status = -1;
  std::vector<Json> lines;  // one per JSON line printed
  std::string text;         // all output
};

ClientRun RunClient(const DaemonProcess& d, const std::string& args, const char* key = kKey) {
  ClientRun r;
  std::string cmd = "/usr/bin/python3 " STRATA_SOURCE_DIR "/tests/integration/grpc_client.py "
                    "--port " + std::to_string(d.grpc_port());
  if (key != nullptr) cmd += std::string(" --api-key ") + key;
  r.text = Shell(cmd + " " + args + " 2>/dev/null", &r.status);
  std::istringstream in(r.text);
  std::string line;
  while (std::getline(in, line)) {
    auto j = ParseJson(line, "client line");
    if (j.ok()) r.lines.push_back(*j);
  }
  return r;
}

class GrpcClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveStories()) GTEST_SKIP() << "no " << StoriesDir();
    std::string error;
    daemon_ = DaemonProcess::Start("model:\n  path: " + StoriesDir() +
                                       "\n  served_name: stories\nserver:\n  api_keys: [" + kKey +
                                       "]\nengine:\n  threads: 1\n",
                                   &error);
    ASSERT_NE(daemon_, nullptr) << error;
    ASSERT_GT(daemon_->grpc_port(), 0);
  }
  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_F(GrpcClientTest, StreamedGreedyTextEqualsTheReference) {
  auto ref = ParseJson(*ReadFile(StoriesDir() + "/reference.json"), "reference.json");
  const Json p = (*ref)["prompts"][3];
  auto r = RunClient(*daemon_, "generate --prompt " + ShellQuote(p["prompt"].get<std::string>()) +
                                   " --max-tokens 48 --temperature 0");
  ASSERT_EQ(r.status, 0) << r.text;
  ASSERT_GT(r.lines.size(), 1u) << r.text;  // streamed, not one message
  std::string text;
  std::vector<int32_t> ids;
  for (const Json& m : r.lines) {
    text += m.value("text", "");
    for (const Json& id : m.value("token_ids", Json::array())) ids.push_back(id.get<int32_t>());
  }
  EXPECT_EQ(text, p["continuation_text"]);
  EXPECT_EQ(Json(ids), p["continuation_ids"]);
  EXPECT_EQ(r.lines.back()["finish_reason"], "length");
  EXPECT_EQ(r.lines.back()["usage"]["completion_tokens"], 48);
  EXPECT_EQ(r.lines.back()["usage"]["prompt_tokens"], p["prompt_ids"].size());
}

TEST_F(GrpcClientTest, ModelsAndHealth) {
  auto models = RunClient(*daemon_, "models");
  ASSERT_EQ(models.status, 0) << models.text;
  EXPECT_EQ(models.lines.at(0)["models"][0]["id"], "stories");
  auto health = RunClient(*daemon_, "health", nullptr);  // health needs no key
  EXPECT_EQ(health.status, 0) << health.text;
  EXPECT_EQ(health.text, "SERVING\n");
}

// A stream in flight keeps a draining daemon up: meanwhile health says NOT_SERVING. A slow
// synthetic model on one thread keeps the stream going long enough to look.
TEST(GrpcDrainTest, HealthTurnsNotServingWhileDraining) {
  std::string error;
  auto d = DaemonProcess::Start(
      "model:\n  path: synthetic:qwen2.5-0.5b\n  max_model_len: 1024\nengine:\n  threads: 1\n",
      &error);
  ASSERT_NE(d, nullptr) << error;
  EXPECT_EQ(RunClient(*d, "health", nullptr).text, "SERVING\n");
  SseReader stream(d->url("/v1/completions"),
                   R"({"prompt":"hi","max_tokens":40,"ignore_eos":true,"stream":true})");
  ASSERT_TRUE(stream.WaitForEvents(1, 60)) << d->Log();
  d->Signal(SIGTERM);
  std::string seen;
  for (int i = 0; i < 50 && seen != "NOT_SERVING\n"; ++i) seen = RunClient(*d, "health", nullptr).text;
  EXPECT_EQ(seen, "NOT_SERVING\n");
  EXPECT_NE(stream.WaitForEnd(120).find("data: [DONE]"), std::string::npos);
  EXPECT_EQ(d->Wait(60), 0) << d->Log();
}

struct BadCall {
  const char* args;
  const char* code;
};

TEST_F(GrpcClientTest, BadCallsGetTheSameStatusesAsHttp) {
  const BadCall cases[] = {
      {"generate --no-prompt", "INVALID_ARGUMENT"},
      {"generate --prompt hi --max-tokens 0", "INVALID_ARGUMENT"},
      {"generate --prompt hi --n 1000", "INVALID_ARGUMENT"},
      {"generate --prompt hi --temperature -1", "INVALID_ARGUMENT"},
      {"generate --token-ids 1,99999", "INVALID_ARGUMENT"},
      {"generate --prompt hi --kv-policy nope", "INVALID_ARGUMENT"},
      {"generate --prompt hi --slo-class nope", "INVALID_ARGUMENT"},
      {"generate --prompt hi --model gpt-9", "NOT_FOUND"},
      {"generate --chat hi", "INVALID_ARGUMENT"},  // stories260K has no chat template
  };
  for (const BadCall& c : cases) {
    auto r = RunClient(*daemon_, c.args);
    EXPECT_EQ(r.status, 1) << c.args << ": " << r.text;
    ASSERT_FALSE(r.lines.empty()) << c.args;
    EXPECT_EQ(r.lines.back()["error"]["code"], c.code) << c.args << ": " << r.text;
  }
  auto no_key = RunClient(*daemon_, "generate --prompt hi --max-tokens 2", nullptr);
  EXPECT_EQ(no_key.lines.back()["error"]["code"], "UNAUTHENTICATED") << no_key.text;
  auto wrong_key = RunClient(*daemon_, "models", "not-the-key-0000");
  EXPECT_EQ(wrong_key.lines.back()["error"]["code"], "UNAUTHENTICATED") << wrong_key.text;
  // Nothing was left behind, and a good call still works.
  const std::string m = Curl("GET", daemon_->url("/metrics")).body;
  EXPECT_EQ(MetricSample(m, "strata_num_requests_running"), 0) << m;
  auto ok = RunClient(*daemon_, "generate --prompt hi --max-tokens 2");
  EXPECT_EQ(ok.status, 0) << ok.text;
}

}  // namespace
}  // namespace strata::testing
