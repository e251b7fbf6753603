// The OpenAI-compatible HTTP API of a real `strata serve` on stories260K, driven with curl over
// loopback: greedy output equal to reference.json through every route and dialect, SSE framing,
// usage and cached tokens, logprobs, echo, n, tokenize, models, and a table of bad requests that
// each get an OpenAI error object and disturb nothing.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "common/json.h"
#include "tests/integration/daemon.h"

namespace strata::testing {
namespace {

Json Reference() {
  auto ref = ParseJson(*ReadFile(StoriesDir() + "/reference.json"), "reference.json");
  return ref.ok() ? *ref : Json();
}

Json Body(const CurlResult& r) {
  auto j = ParseJson(r.body, "response");
  return j.ok() ? *j : Json();
}

// The data: payloads of an SSE body, in order.
std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while ((at = body.find("data: ", at)) != std::string::npos) {
    const size_t end = body.find("\n\n", at);
    out.push_back(body.substr(at + 6, end - at - 6));
    at = end == std::string::npos ? body.size() : end + 2;
  }
  return out;
}

class HttpApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!HaveStories()) return;
    template_path_ = new std::string(TempPath("chat.jinja"));
    // stories260K has no chat template: a minimal one that concatenates the turns after BOS.
    ASSERT_TRUE(WriteFile(*template_path_,
                          "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}")
                    .ok());
    const std::string yaml = "model:\n  path: " + StoriesDir() + "\n  served_name: stories\n" +
                             "  chat_template: " + *template_path_ +
                             "\nengine:\n  threads: 1\nlogging:\n  level: warn\n";
    std::string error;
    daemon_ = DaemonProcess::Start(yaml, &error).release();
    ASSERT_NE(daemon_, nullptr) << error;
  }
  static void TearDownTestSuite() {
    std::string log;
    EXPECT_EQ(StopAndDelete(daemon_, &log), 0) << log;
    if (template_path_ != nullptr) std::filesystem::remove(*template_path_);
    delete template_path_;
  }
  void SetUp() override {
    if (!HaveStories()) GTEST_SKIP() << "no " << StoriesDir();
    ASSERT_NE(daemon_, nullptr);
  }
  static CurlResult Post(const std::string& path, const Json& body, const std::string& extra = "") {
    return Curl("POST", daemon_->url(path), body.dump(), extra);
  }
  static std::string Metrics() { return Curl("GET", daemon_->url("/metrics")).body; }

  static DaemonProcess* daemon_;
  static std::string* template_path_;
};
DaemonProcess* HttpApiTest::daemon_ = nullptr;
std::string* HttpApiTest::template_path_ = nullptr;

TEST_F(HttpApiTest, GreedyCompletionsEqualTheReferenceForEveryPrompt) {
  const Json ref = Reference();
  for (const Json& p : ref["prompts"]) {
    auto r = Post("/v1/completions", {{"model", "stories"},
                                       {"prompt", p["prompt"]},
                                       {"max_tokens", 48},
                                       {"temperature", 0}});
    ASSERT_EQ(r.http_code, 200) << r.body;
    const Json j = Body(r);
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_EQ(j["model"], "stories");
    EXPECT_EQ(j["choices"][0]["text"], p["continuation_text"]) << p["prompt"];
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(j["usage"]["prompt_tokens"], p["prompt_ids"].size());
    EXPECT_EQ(j["usage"]["completion_tokens"], 48);
    EXPECT_EQ(j["usage"]["total_tokens"], p["prompt_ids"].size() + 48);
  }
}

TEST_F(HttpApiTest, TokenIdPromptGivesTheSameText) {
  const Json p = Reference()["prompts"][1];
  auto r = Post("/v1/completions",
                {{"prompt", p["prompt_ids"]}, {"max_tokens", 48}, {"temperature", 0}});
  ASSERT_EQ(r.http_code, 200) << r.body;
  EXPECT_EQ(Body(r)["choices"][0]["text"], p["continuation_text"]);
}

TEST_F(HttpApiTest, StreamedChunksConcatenateToTheReferenceAndEndWithUsageAndDone) {
  const Json p = Reference()["prompts"][0];
  auto r = Post("/v1/completions",
                {{"prompt", p["prompt"]}, {"max_tokens", 48}, {"temperature", 0},
                 {"stream", true}, {"stream_options", {{"include_usage", true}}}},
                "-N");
  ASSERT_EQ(r.http_code, 200) << r.body;
  const std::vector<std::string> events = SseData(r.body);
  ASSERT_GE(events.size(), 3u) << r.body;
  EXPECT_EQ(events.back(), "[DONE]");
  const Json usage_chunk = *ParseJson(events[events.size() - 2], "usage chunk");
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"]["completion_tokens"], 48);
  std::string text;
  std::string finish;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    const Json chunk = *ParseJson(events[i], "chunk");
    EXPECT_TRUE(chunk["usage"].is_null());
    text += chunk["choices"][0]["text"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) {
      EXPECT_EQ(i + 3, events.size()) << "finish_reason before the last chunk";
      finish = chunk["choices"][0]["finish_reason"];
    }
  }
  EXPECT_EQ(text, p["continuation_text"]);
  EXPECT_EQ(finish, "length");
}

// vLLM's `return_token_ids` extension and the llama.cpp-style `timings` (what `strata bench` reads
// for per-token timestamps and the queueing share of TTFT).
TEST_F(HttpApiTest, ReturnTokenIdsAndTimingsReportTheReferenceTokensAndQueueTime) {
  const Json p = Reference()["prompts"][0];
  const Json expected = Json(std::vector<int>(p["continuation_ids"].begin(),
                                              p["continuation_ids"].begin() + 16));
  auto whole = Post("/v1/completions", {{"prompt", p["prompt_ids"]}, {"max_tokens", 16},
                                        {"temperature", 0}, {"return_token_ids", true}});
  ASSERT_EQ(whole.http_code, 200) << whole.body;
  EXPECT_EQ(Body(whole)["choices"][0]["token_ids"], expected);
  EXPECT_GE(Body(whole)["timings"]["queue_ms"].get<double>(), 0.0);
  auto streamed = Post("/v1/completions",
                       {{"prompt", p["prompt_ids"]}, {"max_tokens", 16}, {"temperature", 0},
                        {"return_token_ids", true}, {"stream", true},
                        {"stream_options", {{"include_usage", true}}}},
                       "-N");
  ASSERT_EQ(streamed.http_code, 200) << streamed.body;
  const std::vector<std::string> events = SseData(streamed.body);
  ASSERT_GE(events.size(), 3u);
  Json ids = Json::array();
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    const Json chunk = *ParseJson(events[i], "chunk");
    for (const Json& t : chunk["choices"][0]["token_ids"]) ids.push_back(t);
  }
  EXPECT_EQ(ids, expected);
  const Json usage_chunk = *ParseJson(events[events.size() - 2], "usage chunk");
  EXPECT_GE(usage_chunk["timings"]["queue_ms"].get<double>(), 0.0);
  // Without the flag the choices carry no ids, as OpenAI's do.
  auto plain = Post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}});
  EXPECT_FALSE(Body(plain)["choices"][0].contains("token_ids"));
  EXPECT_EQ(Post("/v1/completions", {{"prompt", "Once"}, {"return_token_ids", 3}}).http_code, 400);
}

TEST_F(HttpApiTest, ChatRendersTheTemplateAndStreamsTheReference) {
  const Json p = Reference()["prompts"][0];
  const Json messages = Json::array({{{"role", "user"}, {"content", p["prompt"]}}});
  auto r = Post("/v1/chat/completions",
                {{"messages", messages}, {"max_completion_tokens", 48}, {"temperature", 0}});
  ASSERT_EQ(r.http_code, 200) << r.body;
  const Json j = Body(r);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], p["continuation_text"]);
  EXPECT_EQ(j["usage"]["prompt_tokens"], p["prompt_ids"].size());

  auto s = Post("/v1/chat/completions",
                {{"messages", messages}, {"max_tokens", 48}, {"temperature", 0},
                 {"stream", true}},
                "-N");
  ASSERT_EQ(s.http_code, 200);
  std::vector<std::string> events = SseData(s.body);
  ASSERT_EQ(events.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const Json delta = (*ParseJson(events[i], "chunk"))["choices"][0]["delta"];
    if (i == 0) {
      EXPECT_EQ(delta["role"], "assistant");
    }
    if (delta.contains("content")) text += delta["content"].get<std::string>();
  }
  EXPECT_EQ(text, p["continuation_text"]);
}

TEST_F(HttpApiTest, RepeatedPromptReportsCachedTokensAndTheSameText) {
  // Four sentences: several full 16-token blocks.
  const Json ref = Reference();
  std::string prompt;
  for (const Json& p : ref["prompts"]) prompt += p["prompt"].get<std::string>() + " ";
  const Json body = {{"prompt", prompt}, {"max_tokens", 8}, {"temperature", 0}};
  auto first = Post("/v1/completions", body);
  auto second = Post("/v1/completions", body);
  ASSERT_EQ(first.http_code, 200);
  ASSERT_EQ(second.http_code, 200);
  const Json a = Body(first), b = Body(second);
  const int64_t prompt_tokens = a["usage"]["prompt_tokens"];
  const int64_t cached = b["usage"]["prompt_tokens_details"]["cached_tokens"];
  EXPECT_GE(cached, 16) << first.body << "\n" << second.body;
  EXPECT_EQ(cached % 16, 0);
  EXPECT_LT(cached, prompt_tokens);  // the last token is always computed
  EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]);
}

TEST_F(HttpApiTest, SeededSamplingIsReproducibleAndNGivesIndexedChoices) {
  const Json body = {{"prompt", "The cat"}, {"max_tokens", 12}, {"temperature", 0.9},
                     {"top_p", 0.95}, {"n", 3}, {"seed", 1234}};
  auto a = Post("/v1/completions", body);
  auto b = Post("/v1/completions", body);
  ASSERT_EQ(a.http_code, 200) << a.body;
  const Json ja = Body(a), jb = Body(b);
  ASSERT_EQ(ja["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ja["choices"][i]["index"], i);
    EXPECT_EQ(ja["choices"][i]["text"], jb["choices"][i]["text"]);
  }
  EXPECT_EQ(ja["usage"]["completion_tokens"], 36);
}

TEST_F(HttpApiTest, CompletionLogprobsHaveOneEntryPerTokenWithTheGreedyTokenOnTop) {
  auto r = Post("/v1/completions",
                {{"prompt", "Once upon a time"}, {"max_tokens", 6}, {"temperature", 0},
                 {"logprobs", 3}});
  ASSERT_EQ(r.http_code, 200) << r.body;
  const Json lp = Body(r)["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 6u);
  ASSERT_EQ(lp["token_logprobs"].size(), 6u);
  ASSERT_EQ(lp["top_logprobs"].size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    const double chosen = lp["token_logprobs"][i];
    EXPECT_LE(chosen, 0.0);
    EXPECT_LE(lp["top_logprobs"][i].size(), 3u);
    for (const auto& [token, logprob] : lp["top_logprobs"][i].items()) {
      EXPECT_LE(logprob.get<double>(), chosen + 1e-6) << token;
    }
  }
  EXPECT_EQ(lp["text_offset"][0], 0);
}

TEST_F(HttpApiTest, ChatLogprobsUseTheChatShape) {
  auto r = Post("/v1/chat/completions",
                {{"messages", Json::array({{{"role", "user"}, {"content", "The cat"}}})},
                 {"max_tokens", 4}, {"temperature", 0}, {"logprobs", true},
                 {"top_logprobs", 2}});
  ASSERT_EQ(r.http_code, 200) << r.body;
  const Json content = Body(r)["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 4u);
  EXPECT_EQ(content[0]["top_logprobs"].size(), 2u);
  EXPECT_TRUE(content[0]["bytes"].is_array());
}

TEST_F(HttpApiTest, EchoPrependsThePrompt) {
  const Json p = Reference()["prompts"][0];
  auto r = Post("/v1/completions",
                {{"prompt", p["prompt"]}, {"max_tokens", 48}, {"temperature", 0}, {"echo", true}});
  ASSERT_EQ(r.http_code, 200);
  EXPECT_EQ(Body(r)["choices"][0]["text"], p["full_text"]);
}

TEST_F(HttpApiTest, StopStringEndsTheTextBeforeIt) {
  auto r = Post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 48},
                                    {"temperature", 0}, {"stop", Json::array({"Lily"})}});
  ASSERT_EQ(r.http_code, 200);
  const Json c = Body(r)["choices"][0];
  EXPECT_EQ(c["text"], ", there was a little girl named ");
  EXPECT_EQ(c["finish_reason"], "stop");
}

TEST_F(HttpApiTest, ModelsTokenizeDetokenizeHealthReady) {
  auto models = Curl("GET", daemon_->url("/v1/models"));
  ASSERT_EQ(models.http_code, 200);
  EXPECT_EQ(Body(models)["data"][0]["id"], "stories");
  EXPECT_GT(Body(models)["data"][0]["created"].get<int64_t>(), 1700000000);  // start-up time
  EXPECT_EQ(Curl("GET", daemon_->url("/v1/models/stories")).http_code, 200);
  auto missing = Curl("GET", daemon_->url("/v1/models/gpt-9"));
  EXPECT_EQ(missing.http_code, 404);
  EXPECT_EQ(Body(missing)["error"]["code"], "model_not_found");

  const Json p = Reference()["prompts"][7];  // non-ASCII text
  auto tok = Post("/tokenize", {{"prompt", p["prompt"]}});
  ASSERT_EQ(tok.http_code, 200) << tok.body;
  EXPECT_EQ(Body(tok)["tokens"], p["prompt_ids"]);
  EXPECT_EQ(Body(tok)["count"], p["prompt_ids"].size());
  // Like Hugging Face's decode (and vLLM's /detokenize), special tokens are kept.
  std::vector<int32_t> ids = p["prompt_ids"];
  auto with_bos = Post("/detokenize", {{"tokens", ids}});
  ASSERT_EQ(with_bos.http_code, 200) << with_bos.body;
  EXPECT_EQ(Body(with_bos)["prompt"].get<std::string>().rfind("<s>", 0), 0u) << with_bos.body;
  auto detok = Post("/detokenize", {{"tokens", std::vector<int32_t>(ids.begin() + 1, ids.end())}});
  ASSERT_EQ(detok.http_code, 200) << detok.body;
  EXPECT_EQ(Body(detok)["prompt"], p["prompt"]);

  EXPECT_EQ(Curl("GET", daemon_->url("/health")).http_code, 200);
  EXPECT_EQ(Curl("GET", daemon_->url("/ready")).http_code, 200);
  EXPECT_EQ(Curl("GET", daemon_->url("/nope")).http_code, 404);
}

struct BadRequest {
  const char* path;
  const char* body;
  int status;
  const char* param;  // expected error.param ("" = none expected)
};

TEST_F(HttpApiTest, BadRequestsGetOpenAiErrorsAndDisturbNothing) {
  const BadRequest cases[] = {
      {"/v1/completions", "{not json", 400, ""},
      {"/v1/completions", "[1,2]", 400, ""},
      {"/v1/completions", R"({"max_tokens":4})", 400, "prompt"},
      {"/v1/completions", R"({"prompt":"a","max_tokens":0})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt":"a","max_tokens":-5})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt":"a","max_tokens":1e30})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt":"a","max_tokens":"four"})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt":"a","max_tokens":100000})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt":"a","temperature":-1})", 400, "temperature"},
      {"/v1/completions", R"({"prompt":"a","top_p":1.5})", 400, "top_p"},
      {"/v1/completions", R"({"prompt":"a","n":0})", 400, "n"},
      {"/v1/completions", R"({"prompt":"a","n":1000})", 400, "n"},
      {"/v1/completions", R"({"prompt":"a","logprobs":1000})", 400, "logprobs"},
      {"/v1/completions", R"({"prompt":[1,2,99999]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt":"a","stop":[1]})", 400, "stop"},
      {"/v1/completions", R"({"prompt":"a","stop":["1","2","3","4","5","6","7","8","9"]})", 400,
       "stop"},
      {"/v1/completions", R"({"prompt":"a","kv_policy":"nope"})", 400, "kv_policy"},
      {"/v1/completions", R"({"prompt":"a","slo_class":"nope"})", 400, "slo_class"},
      {"/v1/completions", R"({"prompt":"a","model":"gpt-9"})", 404, "model"},
      {"/v1/chat/completions", R"({"messages":[]})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages":[{"role":"user"}]})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages":"hi"})", 400, "messages"},
      {"/tokenize", R"({"prompt":5})", 400, "prompt"},
      {"/detokenize", R"({"tokens":[-1]})", 400, "tokens"},
  };
  const std::string long_prompt = Json{{"prompt", std::vector<int32_t>(600, 300)}}.dump();
  const std::string huge_body = "{\"prompt\":\"" + std::string(2 << 20, 'a') + "\"}";
  const std::string big_header = "-H 'X-Padding: " + std::string(20000, 'p') + "'";
  const std::string long_stop = Json{{"prompt", "a"}, {"stop", std::string(300, 's')}}.dump();
  const struct {
    std::string body;
    std::string extra;
    int status;
    const char* param;
  } raw_cases[] = {
      {"{\"prompt\":\"\xff\xfe\"}", "", 400, ""},      // invalid UTF-8
      {long_prompt, "", 400, "prompt"},                   // over max_model_len (512)
      {long_stop, "", 400, "stop"},                       // over max_stop_string_bytes (256)
      {huge_body, "", 413, ""},                           // over max_body_bytes (1 MiB)
      {R"({"prompt":"a"})", big_header, 431, ""},         // over max_header_bytes (16 KiB)
  };
  for (const auto& c : raw_cases) {
    auto r = Curl("POST", daemon_->url("/v1/completions"), c.body, c.extra);
    EXPECT_EQ(r.http_code, c.status) << c.body.substr(0, 80) << " -> " << r.body.substr(0, 300);
    const Json j = Body(r);
    ASSERT_TRUE(j.contains("error")) << r.body.substr(0, 300);
    if (*c.param != '\0') {
      EXPECT_EQ(j["error"]["param"], c.param) << r.body;
    }
  }
  for (const BadRequest& c : cases) {
    auto r = Curl("POST", daemon_->url(c.path), c.body);
    EXPECT_EQ(r.http_code, c.status) << c.path << " " << c.body << " -> " << r.body;
    const Json j = Body(r);
    ASSERT_TRUE(j.contains("error")) << c.body << " -> " << r.body;
    EXPECT_TRUE(j["error"]["message"].is_string());
    EXPECT_TRUE(j["error"]["type"].is_string());
    if (*c.param != '\0') {
      EXPECT_EQ(j["error"]["param"], c.param) << c.body << " -> " << r.body;
    }
  }
  const std::string m = Metrics();
  EXPECT_EQ(MetricSample(m, "strata_num_requests_running"), 0) << m;
  EXPECT_EQ(MetricSample(m, "strata_num_requests_waiting"), 0) << m;
  EXPECT_EQ(MetricSample(m, "strata_kv_cache_usage_ratio"), 0) << m;  // no page leaked
  // And the daemon still serves.
  auto ok = Post("/v1/completions", {{"prompt", "The cat"}, {"max_tokens", 2}});
  EXPECT_EQ(ok.http_code, 200) << ok.body;
}

TEST_F(HttpApiTest, MetricsCountRequestsAndTokens) {
  const double before = MetricSample(Metrics(), "strata_generation_tokens_total");
  auto r = Post("/v1/completions", {{"prompt", "The cat"}, {"max_tokens", 5}, {"temperature", 0}});
  ASSERT_EQ(r.http_code, 200);
  const std::string m = Metrics();
  EXPECT_EQ(MetricSample(m, "strata_generation_tokens_total"), before + 5) << m;
  EXPECT_NE(m.find("strata_time_to_first_token_seconds_bucket"), std::string::npos);
  EXPECT_NE(m.find("strata_build_info{"), std::string::npos);
}

TEST(HttpApiKeyTest, KeysGuardEveryRouteButHealthReadyAndMetrics) {
  std::string error;
  auto d = DaemonProcess::Start(
      "model:\n  path: synthetic:tiny\nserver:\n  api_keys: [first-key-0001, second-key-002]\n",
      &error);
  ASSERT_NE(d, nullptr) << error;
  const std::string body = R"({"prompt":"hi","max_tokens":2})";
  for (const std::string& headers :
       {std::string(""), std::string("-H 'Authorization: Bearer wrong-key-0001'"),
        std::string("-H 'Authorization: first-key-0001'")}) {
    auto r = Curl("POST", d->url("/v1/completions"), body, headers);
    EXPECT_EQ(r.http_code, 401) << headers << " -> " << r.body;
    EXPECT_EQ(Body(r)["error"]["type"], "authentication_error") << r.body;
    EXPECT_EQ(Curl("GET", d->url("/v1/models"), "", headers).http_code, 401);
  }
  EXPECT_EQ(Curl("POST", d->url("/v1/completions"), body,
                 "-H 'Authorization: Bearer second-key-002'").http_code,
            200);
  EXPECT_EQ(Curl("POST", d->url("/tokenize"), R"({"prompt":"hi"})",
                 "-H 'x-api-key: first-key-0001'").http_code,
            200);
  EXPECT_EQ(Curl("GET", d->url("/health")).http_code, 200);
  EXPECT_EQ(Curl("GET", d->url("/ready")).http_code, 200);
  EXPECT_EQ(Curl("GET", d->url("/metrics")).http_code, 200);
  EXPECT_EQ(d->Stop(), 0);
}

TEST(HttpApiKeyTest, MetricsCanRequireAKey) {
  std::string error;
  auto d = DaemonProcess::Start(
      "model:\n  path: synthetic:tiny\nserver:\n  api_keys: [metrics-key-001]\n"
      "  metrics_require_api_key: true\n",
      &error);
  ASSERT_NE(d, nullptr) << error;
  EXPECT_EQ(Curl("GET", d->url("/metrics")).http_code, 401);
  EXPECT_EQ(Curl("GET", d->url("/metrics"), "", "-H 'Authorization: Bearer metrics-key-001'")
                .http_code,
            200);
  EXPECT_EQ(d->Stop(), 0);
}

}  // namespace
}  // namespace strata::testing
