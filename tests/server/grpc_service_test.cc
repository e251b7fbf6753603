// GrpcServer end to end in one process: stories260k on the CPU engine behind a
// GenerationService, a C++ stub client over loopback. Streaming greedy output equals the golden
// reference; n, logprobs, ListModels, health, bad input codes, API keys, client cancellation and
// shutdown with calls in flight (the engine ends with nothing running and every page free).
#include "server/grpc_service.h"

#include <chrono>
#include <functional>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/clock.h"
#include "common/file.h"
#include "common/json.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/generation.h"
#include "strata/v1/generation.grpc.pb.h"

namespace strata::server {
namespace {

namespace health = ::grpc::health::v1;

const std::string kModelDir = STRATA_SOURCE_DIR "/../shared/models/stories260k";

struct Reference {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> ids;
  std::string text;
};

// reference.json's first prompt, "Once upon a time": 48 greedy tokens.
Reference LoadReference() {
  Reference r;
  auto text = ReadFile(kModelDir + "/reference.json");
  EXPECT_TRUE(text.ok()) << text.status();
  auto json = ParseJson(*text, "reference.json");
  EXPECT_TRUE(json.ok()) << json.status();
  const Json& p = (*json)["prompts"][0];
  EXPECT_EQ(p["prompt"].get<std::string>(), "Once upon a time");
  r.prompt_ids = p["prompt_ids"].get<std::vector<int32_t>>();
  r.ids = p["continuation_ids"].get<std::vector<int32_t>>();
  r.text = p["continuation_text"].get<std::string>();
  return r;
}

struct Call {
  grpc::Status status;
  std::vector<v1::GenerateResponse> responses;
};

class GrpcServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!FileExists(kModelDir + "/model.safetensors")) {
      GTEST_SKIP() << kModelDir << " is absent";
    }
    auto model = engine::LoadModel(kModelDir, {});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    engine::EngineConfig config;
    config.backend = "cpu";
    config.threads = 1;
    config.block_size = 16;
    config.max_model_len = 512;
    config.scheduler.max_num_seqs = 16;
    auto engine = engine::Engine::Create(*model_, config);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    ServiceOptions options;
    options.served_name = "stories260k";
    options.max_n = 4;
    options.policies = {{"full", {}}};
    options.slo_classes = {{"default", {}}};
    service_ = std::make_unique<GenerationService>(engine_.get(), model_.get(), nullptr,
                                                   options, nullptr);
    StartServer({});
  }

  void TearDown() override {
    if (server_) server_->Shutdown(0);
    server_.reset();
    service_.reset();
    engine_.reset();
  }

  void StartServer(std::vector<std::string> api_keys) {
    if (server_) server_->Shutdown(0);
    auto server = GrpcServer::Start("127.0.0.1", 0, service_.get(), std::move(api_keys));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
    channel_ = grpc::CreateChannel(StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Generation::NewStub(channel_);
  }

  Call Generate(const v1::GenerateRequest& request,
                const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    for (const auto& [k, v] : metadata) context.AddMetadata(k, v);
    Call call;
    auto reader = stub_->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) call.responses.push_back(response);
    call.status = reader->Finish();
    return call;
  }

  health::HealthCheckResponse::ServingStatus HealthOf(const std::string& name) {
    auto stub = health::Health::NewStub(channel_);
    grpc::ClientContext context;
    health::HealthCheckRequest request;
    request.set_service(name);
    health::HealthCheckResponse response;
    grpc::Status s = stub->Check(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.status();
  }

  // Waits (up to 5 s) for the engine to run nothing and hold no page.
  void ExpectEngineIdle() {
    engine::EngineStats stats;
    for (double end = NowSeconds() + 5; NowSeconds() < end;) {
      stats = engine_->Stats();
      if (stats.num_running == 0 && stats.num_waiting == 0 &&
          stats.num_free_pages == stats.num_pages && service_->num_in_flight() == 0) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "engine not idle: running " << stats.num_running << ", waiting "
                  << stats.num_waiting << ", free pages " << stats.num_free_pages << " of "
                  << stats.num_pages << ", in flight " << service_->num_in_flight();
  }

  std::unique_ptr<engine::Model> model_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<GenerationService> service_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> stub_;
};

v1::GenerateRequest Greedy(const std::string& text, int64_t max_tokens) {
  v1::GenerateRequest r;
  r.set_text(text);
  r.set_max_tokens(max_tokens);
  r.set_temperature(0);
  return r;
}

// Concatenates completion `index`'s text and ids; checks that only its last message carries a
// finish reason.
std::pair<std::string, std::vector<int32_t>> Joined(const Call& call, int32_t index,
                                                    std::string* finish_reason) {
  std::string text;
  std::vector<int32_t> ids;
  finish_reason->clear();
  for (const v1::GenerateResponse& m : call.responses) {
    if (m.index() != index) continue;
    EXPECT_TRUE(finish_reason->empty()) << "a message after the finish reason";
    text += m.text();
    ids.insert(ids.end(), m.token_ids().begin(), m.token_ids().end());
    *finish_reason = m.finish_reason();
  }
  return {text, ids};
}

TEST_F(GrpcServiceTest, StreamsTheGreedyReference) {
  const Reference ref = LoadReference();
  Call call = Generate(Greedy("Once upon a time", 48));
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  ASSERT_GT(call.responses.size(), 1u) << "expected a stream, not one message";
  std::string finish;
  auto [text, ids] = Joined(call, 0, &finish);
  EXPECT_EQ(ids, ref.ids);
  EXPECT_EQ(text, ref.text);
  EXPECT_EQ(finish, "length");
  for (size_t i = 0; i + 1 < call.responses.size(); ++i) {
    EXPECT_FALSE(call.responses[i].has_usage()) << "usage on message " << i;
  }
  const v1::Usage& usage = call.responses.back().usage();
  EXPECT_EQ(usage.prompt_tokens(), static_cast<int64_t>(ref.prompt_ids.size()));
  EXPECT_EQ(usage.completion_tokens(), 48);
}

TEST_F(GrpcServiceTest, TokenIdPromptMatchesTextPrompt) {
  const Reference ref = LoadReference();
  v1::GenerateRequest r = Greedy("", 12);
  r.mutable_token_ids()->mutable_ids()->Add(ref.prompt_ids.begin(), ref.prompt_ids.end());
  Call call = Generate(r);
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  std::string finish;
  auto [text, ids] = Joined(call, 0, &finish);
  EXPECT_EQ(ids, std::vector<int32_t>(ref.ids.begin(), ref.ids.begin() + 12));
}

TEST_F(GrpcServiceTest, TwoCompletionsInterleaveWithOneUsage) {
  const Reference ref = LoadReference();
  v1::GenerateRequest r = Greedy("Once upon a time", 16);
  r.set_n(2);
  Call call = Generate(r);
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  const std::vector<int32_t> want(ref.ids.begin(), ref.ids.begin() + 16);
  for (int32_t index : {0, 1}) {
    std::string finish;
    auto [text, ids] = Joined(call, index, &finish);
    EXPECT_EQ(ids, want) << "completion " << index;
    EXPECT_EQ(finish, "length") << "completion " << index;
  }
  for (const v1::GenerateResponse& m : call.responses) EXPECT_LT(m.index(), 2);
  EXPECT_EQ(call.responses.back().usage().completion_tokens(), 32);
}

TEST_F(GrpcServiceTest, LogprobsPerTokenWithTopK) {
  v1::GenerateRequest r = Greedy("Once upon a time", 6);
  r.set_logprobs(3);
  Call call = Generate(r);
  ASSERT_TRUE(call.status.ok()) << call.status.error_message();
  int num_tokens = 0;
  for (const v1::GenerateResponse& m : call.responses) {
    ASSERT_EQ(m.logprobs_size(), m.token_ids_size());
    for (int i = 0; i < m.logprobs_size(); ++i) {
      const v1::TokenLogprob& lp = m.logprobs(i);
      ++num_tokens;
      EXPECT_EQ(lp.token(), m.token_ids(i));
      EXPECT_FALSE(lp.text().empty());
      EXPECT_LE(lp.logprob(), 0.0f);
      ASSERT_EQ(lp.top_size(), 3);
      // Greedy: the sampled token is the most likely one.
      EXPECT_EQ(lp.top(0).token(), lp.token());
      EXPECT_FLOAT_EQ(lp.top(0).logprob(), lp.logprob());
      EXPECT_GE(lp.top(0).logprob(), lp.top(1).logprob());
      EXPECT_GE(lp.top(1).logprob(), lp.top(2).logprob());
    }
  }
  EXPECT_EQ(num_tokens, 6);
}

TEST_F(GrpcServiceTest, ListModels) {
  grpc::ClientContext context;
  v1::ListModelsResponse response;
  grpc::Status s = stub_->ListModels(&context, v1::ListModelsRequest(), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.models_size(), 1);
  EXPECT_EQ(response.models(0).id(), "stories260k");
  EXPECT_EQ(response.models(0).owned_by(), "strata");
  EXPECT_EQ(response.models(0).max_model_len(), 512);
}

TEST_F(GrpcServiceTest, HealthFollowsServing) {
  EXPECT_EQ(HealthOf(""), health::HealthCheckResponse::SERVING);
  EXPECT_EQ(HealthOf("strata.v1.Generation"), health::HealthCheckResponse::SERVING);
  server_->SetServing(false);
  EXPECT_EQ(HealthOf(""), health::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(HealthOf("strata.v1.Generation"), health::HealthCheckResponse::NOT_SERVING);
  server_->SetServing(true);
  EXPECT_EQ(HealthOf(""), health::HealthCheckResponse::SERVING);
}

TEST_F(GrpcServiceTest, BadInputsGetTheHttpMapping) {
  struct Case {
    std::string name;
    std::function<void(v1::GenerateRequest*)> edit;
    grpc::StatusCode code;
    std::string message_has;
  };
  const std::vector<Case> cases = {
      {"no prompt", [](v1::GenerateRequest* r) { r->clear_prompt(); },
       grpc::INVALID_ARGUMENT, "no prompt"},
      {"prompt and messages",
       [](v1::GenerateRequest* r) { r->add_messages()->set_content("hi"); },
       grpc::INVALID_ARGUMENT, "messages"},
      {"empty token ids", [](v1::GenerateRequest* r) { r->mutable_token_ids(); },
       grpc::INVALID_ARGUMENT, "token_ids"},
      {"unknown model", [](v1::GenerateRequest* r) { r->set_model("gpt-9"); },
       grpc::NOT_FOUND, "gpt-9"},
      {"unknown kv_policy", [](v1::GenerateRequest* r) { r->set_kv_policy("zip"); },
       grpc::INVALID_ARGUMENT, "kv_policy"},
      {"unknown slo_class", [](v1::GenerateRequest* r) { r->set_slo_class("gold"); },
       grpc::INVALID_ARGUMENT, "slo_class"},
      {"max_tokens 0", [](v1::GenerateRequest* r) { r->set_max_tokens(0); },
       grpc::INVALID_ARGUMENT, "max_tokens"},
      {"n over max", [](v1::GenerateRequest* r) { r->set_n(5); }, grpc::INVALID_ARGUMENT,
       "'n'"},
      {"token id outside the vocabulary",
       [](v1::GenerateRequest* r) { r->mutable_token_ids()->add_ids(512); },
       grpc::INVALID_ARGUMENT, "outside the vocabulary"},
      {"negative logprobs", [](v1::GenerateRequest* r) { r->set_logprobs(-1); },
       grpc::INVALID_ARGUMENT, "logprobs"},
      {"top_p 1.5", [](v1::GenerateRequest* r) { r->set_top_p(1.5f); },
       grpc::INVALID_ARGUMENT, "top_p"},
      {"chat without a template",
       [](v1::GenerateRequest* r) {
         r->clear_prompt();
         r->add_messages()->set_content("hi");
       },
       grpc::INVALID_ARGUMENT, "chat template"},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest r = Greedy("Once upon a time", 8);
    c.edit(&r);
    Call call = Generate(r);
    EXPECT_EQ(call.status.error_code(), c.code) << c.name << ": " << call.status.error_message();
    EXPECT_NE(call.status.error_message().find(c.message_has), std::string::npos)
        << c.name << ": " << call.status.error_message();
    EXPECT_TRUE(call.responses.empty()) << c.name;
  }
  EXPECT_EQ(service_->num_in_flight(), 0);
  // The server still serves after all of them.
  EXPECT_TRUE(Generate(Greedy("Once upon a time", 2)).status.ok());
}

TEST_F(GrpcServiceTest, DrainingIsUnavailable) {
  service_->StartDraining();
  Call call = Generate(Greedy("Once upon a time", 4));
  EXPECT_EQ(call.status.error_code(), grpc::UNAVAILABLE) << call.status.error_message();
}

// Starts a 4 x 500-token stream, reads its first message, runs `interrupt`, reads whatever
// still comes and returns the call's final status.
grpc::Status InterruptLongStream(v1::Generation::Stub& stub,
                                 const std::function<void(grpc::ClientContext&)>& interrupt) {
  v1::GenerateRequest r = Greedy("Once upon a time", 500);
  r.set_ignore_eos(true);
  r.set_n(4);
  grpc::ClientContext context;
  auto reader = stub.Generate(&context, r);
  v1::GenerateResponse response;
  if (!reader->Read(&response)) return grpc::Status(grpc::INTERNAL, "no first message");
  interrupt(context);
  while (reader->Read(&response)) {
  }
  return reader->Finish();
}

TEST_F(GrpcServiceTest, ClientCancelStopsTheEngineRequest) {
  const grpc::Status status =
      InterruptLongStream(*stub_, [](grpc::ClientContext& context) { context.TryCancel(); });
  EXPECT_EQ(status.error_code(), grpc::CANCELLED) << status.error_message();
  ExpectEngineIdle();
  // Cancelled well before 4 x 500 tokens.
  EXPECT_LT(engine_->Stats().num_generated_tokens, 2000);
}

TEST_F(GrpcServiceTest, ConcurrentStreamsEachMatchTheReference) {
  const Reference ref = LoadReference();
  std::vector<Call> calls(8);
  std::vector<std::thread> threads;
  for (Call& call : calls) {
    threads.emplace_back([&] { call = Generate(Greedy("Once upon a time", 48)); });
  }
  for (std::thread& t : threads) t.join();
  for (const Call& call : calls) {
    ASSERT_TRUE(call.status.ok()) << call.status.error_message();
    std::string finish;
    EXPECT_EQ(Joined(call, 0, &finish).second, ref.ids);
  }
  ExpectEngineIdle();
}

TEST_F(GrpcServiceTest, ShutdownCancelsCallsInFlight) {
  const grpc::Status status =
      InterruptLongStream(*stub_, [&](grpc::ClientContext&) { server_->Shutdown(0); });
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.error_message(), "no first message");
  ExpectEngineIdle();
  EXPECT_LT(engine_->Stats().num_generated_tokens, 2000);
}

TEST_F(GrpcServiceTest, ApiKeysGuardGenerationButNotHealth) {
  StartServer({"key-one", "key-two"});
  const v1::GenerateRequest r = Greedy("Once upon a time", 2);
  EXPECT_EQ(Generate(r).status.error_code(), grpc::UNAUTHENTICATED);
  EXPECT_EQ(Generate(r, {{"authorization", "Bearer key-onf"}}).status.error_code(),
            grpc::UNAUTHENTICATED);
  EXPECT_EQ(Generate(r, {{"authorization", "Bearer key-on"}}).status.error_code(),
            grpc::UNAUTHENTICATED);
  EXPECT_EQ(Generate(r, {{"authorization", "key-one"}}).status.error_code(),
            grpc::UNAUTHENTICATED);
  EXPECT_TRUE(Generate(r, {{"authorization", "Bearer key-two"}}).status.ok());
  EXPECT_TRUE(Generate(r, {{"x-api-key", "key-one"}}).status.ok());
  {
    grpc::ClientContext context;
    v1::ListModelsResponse response;
    EXPECT_EQ(stub_->ListModels(&context, v1::ListModelsRequest(), &response).error_code(),
              grpc::UNAUTHENTICATED);
  }
  EXPECT_EQ(HealthOf(""), health::HealthCheckResponse::SERVING);
}

TEST_F(GrpcServiceTest, PortInUseIsAnError) {
  auto second = GrpcServer::Start("127.0.0.1", server_->port(), service_.get(), {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

}  // namespace
}  // namespace strata::server
