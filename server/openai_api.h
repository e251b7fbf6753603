// The OpenAI wire format (DESIGN.md §7): request bodies of /v1/completions and
// /v1/chat/completions parsed into GenerationRequest (type errors name the field, OpenAI's
// `param`), and the response objects, stream chunks and error objects built from
// GenerationStream deltas. Pure functions and a per-request accumulator; any thread.
#pragma once

#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"
#include "server/generation.h"

namespace strata::server {

enum class ApiKind { kCompletion, kChat };

// What the response writer needs besides the GenerationRequest.
struct ResponseOptions {
  ApiKind kind = ApiKind::kCompletion;
  bool stream = false;
  bool include_usage = false;   // stream_options.include_usage
  bool echo = false;            // completions: the prompt text starts each choice
  bool logprobs = false;        // report logprobs (chat: logprobs=true; completions: logprobs=k)
  bool return_token_ids = false;  // vLLM's extension: each choice carries its `token_ids`
  std::string model;            // echoed in every object
};

struct ParsedRequest {
  GenerationRequest request;
  ResponseOptions response;
};

absl::StatusOr<ParsedRequest> ParseOpenAiRequest(const Json& body, ApiKind kind);

// {"error":{"message","type","param","code"}} for a Status (see api_error.h).
std::string ErrorBody(const absl::Status& status);

// Collects deltas into the final (non-streaming) response, or formats each delta as one SSE
// event. One per request, on the request's strand.
class ResponseBuilder {
 public:
  ResponseBuilder(ResponseOptions options, const GenerationStream& stream);

  // Streaming: the SSE events ("data: {...}\n\n") for these deltas.
  std::string StreamEvents(const std::vector<CompletionDelta>& deltas);
  // Streaming: the usage chunk when asked for, then "data: [DONE]".
  std::string StreamEnd();
  // Non-streaming: accumulate, then the whole response object.
  void Add(const std::vector<CompletionDelta>& deltas);
  std::string Final();

 private:
  struct Choice {
    std::string text;
    std::string finish_reason;
    bool started = false;           // chat stream: the role was sent
    Json logprobs;                  // accumulated logprobs object
    std::vector<int32_t> token_ids; // accumulated, when return_token_ids
    size_t text_offset = 0;         // completions: bytes of text so far (for text_offset)
  };
  Json Envelope(const char* object) const;
  Json LogprobsJson(Choice& choice, const std::vector<TokenLogprobs>& lps);
  void AppendLogprobs(Choice& choice, const std::vector<TokenLogprobs>& lps);
  Json UsageJson() const;
  Json TimingsJson() const;

  ResponseOptions options_;
  const GenerationStream& stream_;
  std::vector<Choice> choices_;
};

}  // namespace strata::server
