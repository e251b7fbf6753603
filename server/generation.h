// GenerationService: the transport-neutral front end shared by the OpenAI HTTP API and the gRPC
// service (DESIGN.md §2, §7). It turns a parsed request into engine work — chat template,
// tokenization, limits, policy/class names — submits it, and turns the engine's token events
// back into text deltas: incremental detokenization, stop strings, logprobs, usage, metrics.
//
//   transport thread                       engine thread
//   Start(request, notify) --Submit-->     ... Deliver(event) -> notify()
//   notify() posts Poll() to the transport's executor; Poll() drains the channels into deltas.
//
// GenerationService is thread-safe. A GenerationStream belongs to one transport executor (one
// strand): Poll and Cancel must not run concurrently. Dropping an unfinished stream cancels it.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/chat_template.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "engine/stop_matcher.h"

namespace strata::server {

class Metrics;

// Limits and names the service enforces; from the config's server.limits, policies and classes.
struct ServiceOptions {
  std::string served_name;               // the one model name /v1/models lists
  int64_t max_prompt_tokens = 0;         // 0 = the engine's max_model_len
  int64_t max_tokens = 4096;             // cap on a request's max_tokens
  int32_t max_n = 8;
  int32_t max_stop_strings = 8;
  int32_t max_stop_string_bytes = 256;
  int32_t max_logprobs = 20;
  int64_t max_concurrent_requests = 1024;  // in flight (streaming or not) before 429
  std::map<std::string, kvcache::KvAccess> policies;  // valid kv_policy names, as the engine
                                                      // applies them
  std::string default_policy = "full";
  std::map<std::string, engine::SloSpec> slo_classes;  // valid slo_class names, as the engine
                                                      // schedules them
  std::string default_slo_class = "default";
  bool slo_admission = false;            // scheduler.policy slo: classes with `reject` may get 429
};

// One request, as every transport parses it. Validation of types and JSON happens in the
// transport; ranges and names are checked by GenerationService::Start.
struct GenerationRequest {
  std::string model;                          // "" = the served model
  std::string prompt_text;                    // completions / gRPC text prompt
  std::vector<int32_t> prompt_ids;            // a token prompt; wins over prompt_text
  std::optional<std::vector<engine::ChatMessage>> messages;  // chat: rendered by the template
  bool add_generation_prompt = true;
  std::optional<int64_t> max_tokens;          // unset: as many as max_model_len leaves
  engine::SamplingParams sampling;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  int32_t n = 1;
  int32_t logprobs = -1;                      // -1 none; k >= 0: sampled + top k
  bool echo = false;                          // completions: the prompt text starts the output
  bool skip_special_tokens = true;
  std::string kv_policy;                      // "" = the default policy
  std::string slo_class;                      // "" = the default class
  int32_t priority = 0;
  std::optional<std::string> cache_salt;
  double arrival_time = 0;                    // NowSeconds() when it arrived; 0 = at Start
};

struct TokenLogprobs {
  int32_t token = -1;
  std::string text;                           // the token decoded alone
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // the k most likely, descending
  std::vector<int32_t> top_ids;
};

// What one Poll produced for one of the n completions.
struct CompletionDelta {
  int32_t index = 0;
  std::string text;                           // new text, possibly empty
  std::vector<int32_t> token_ids;             // new tokens
  std::vector<TokenLogprobs> logprobs;        // one per new token, when requested
  std::string finish_reason;                  // "" | "stop" | "length" | "abort"
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;              // all n completions
  int64_t cached_tokens = 0;                  // prompt tokens served by the prefix cache
  double queue_time_s = -1;                   // arrival -> first engine step; -1 = never ran
};

class GenerationService;

class GenerationStream {
 public:
  ~GenerationStream();  // cancels what is still running
  GenerationStream(const GenerationStream&) = delete;
  GenerationStream& operator=(const GenerationStream&) = delete;

  // Appends what the engine produced since the last call (at most one delta per completion).
  // Returns true once every completion has finished; later calls return true and add nothing.
  bool Poll(std::vector<CompletionDelta>* out);
  // The client went away: cancels every completion in the engine (freed within one step).
  void Cancel();
  bool finished() const { return num_finished_ == static_cast<int32_t>(completions_.size()); }
  // ResourceExhausted with the scheduler's reason when SLO admission rejected the request before
  // it produced a token (HTTP 429, gRPC RESOURCE_EXHAUSTED); OK otherwise.
  const absl::Status& rejection() const { return rejection_; }
  // Whether the scheduler may still reject it (SLO admission, class `reject` with a TTFT target):
  // a streaming transport then holds its response head until the first token.
  bool may_be_rejected() const { return may_be_rejected_; }

  const Usage& usage() const { return usage_; }
  const std::string& prompt_text() const { return prompt_text_; }  // decoded prompt (echo)
  const std::vector<int32_t>& prompt_ids() const { return prompt_ids_; }
  int32_t n() const { return static_cast<int32_t>(completions_.size()); }
  const std::string& id() const { return id_; }          // "cmpl-..." request id
  double created() const { return created_; }            // Unix seconds

 private:
  friend class GenerationService;
  struct Completion {
    engine::RequestId engine_id = 0;
    std::shared_ptr<engine::OutputChannel> channel;
    std::unique_ptr<engine::IncrementalDecoder> decoder;
    std::unique_ptr<engine::StopMatcher> stops;
    int64_t num_tokens = 0;
    double first_token_time = 0;
    double last_token_time = 0;
    double first_scheduled_at = 0;
    bool finished = false;
  };
  GenerationStream(GenerationService* service, const GenerationRequest& request);
  void PollOne(int32_t index, std::vector<CompletionDelta>* out);
  void OnToken(Completion& c, const engine::TokenEvent& e, CompletionDelta* delta);
  void Finish(Completion& c, const std::string& reason, CompletionDelta* delta);
  static double TimePerOutputToken(const Completion& c);
  const char* SloOutcome(const engine::SloSpec& target) const;

  GenerationService* service_;
  std::string id_;
  double created_ = 0;
  double arrival_time_ = 0;
  std::string slo_class_;
  int32_t logprobs_ = -1;
  bool skip_special_tokens_ = true;
  std::string prompt_text_;
  std::vector<int32_t> prompt_ids_;
  std::vector<Completion> completions_;
  int32_t num_finished_ = 0;
  bool cancelled_ = false;
  absl::Status rejection_;
  bool may_be_rejected_ = false;
  Usage usage_;
};

class GenerationService {
 public:
  // engine, model and metrics must outlive the service; chat_template may be null (chat then
  // fails with a 400 saying the model has none); metrics may be null.
  GenerationService(engine::Engine* engine, const engine::Model* model,
                    std::shared_ptr<const engine::ChatTemplate> chat_template,
                    ServiceOptions options, Metrics* metrics);

  // Validates, renders/tokenizes and submits. Errors carry the api_error.h mapping (400 naming
  // the field, 404 unknown model, 429 too many requests in flight, 503 draining). `notify` is
  // called on the engine thread whenever the stream has something to Poll; it may run after the
  // stream is gone, so it must hold only weak references.
  absl::StatusOr<std::unique_ptr<GenerationStream>> Start(const GenerationRequest& request,
                                                          std::function<void()> notify);

  absl::StatusOr<std::vector<int32_t>> Tokenize(const GenerationRequest& request) const;
  absl::StatusOr<std::string> Detokenize(const std::vector<int32_t>& ids) const;
  // Checks a request's `model` field: "" or the served name.
  absl::Status CheckModel(const std::string& model) const;

  // Readiness: model loaded and not draining. Draining rejects new work with 503.
  void StartDraining() { draining_ = true; }
  bool draining() const { return draining_; }
  bool ready() const;
  int64_t num_in_flight() const { return in_flight_; }

  const ServiceOptions& options() const { return options_; }
  const engine::Model& model() const { return *model_; }
  engine::Engine& engine() { return *engine_; }
  Metrics* metrics() { return metrics_; }

 private:
  friend class GenerationStream;
  absl::Status Validate(const GenerationRequest& r, int64_t num_prompt_tokens) const;
  // The request's class as the scheduler sees it; a request's own non-zero `priority` replaces
  // its class's.
  engine::SloSpec SloSpecOf(const GenerationRequest& r) const;
  absl::StatusOr<std::vector<int32_t>> PromptIds(const GenerationRequest& r) const;
  std::string TokenText(int32_t id) const;

  engine::Engine* engine_;
  const engine::Model* model_;
  std::shared_ptr<const engine::ChatTemplate> chat_template_;
  ServiceOptions options_;
  Metrics* metrics_;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace strata::server
