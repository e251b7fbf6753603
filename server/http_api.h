// HttpApi: the OpenAI-compatible routes of DESIGN.md §7 on top of HttpServer:
//   POST /v1/completions, /v1/chat/completions (JSON or SSE), GET /v1/models[/{id}],
//   POST /tokenize, /detokenize, GET /health, /ready, /metrics.
// API keys (Authorization: Bearer) guard every route but health, ready and (unless configured)
// metrics, compared in constant time.
//
// Each generation is an Exchange owned by this object's registry until it completes or its
// client goes away: the engine's notify posts a Pump onto the connection's strand, which drains
// the GenerationStream and writes SSE events or, at the end, the JSON response. No thread is held
// per request. Handle is called on I/O threads; every method is thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/generation.h"
#include "server/http_server.h"

namespace strata::server {

class Metrics;

struct HttpApiOptions {
  std::vector<std::string> api_keys;     // empty: no authentication
  bool metrics_require_api_key = false;
};

class HttpApi {
 public:
  // service must outlive this object; metrics may be null (then /metrics is 404).
  HttpApi(GenerationService* service, Metrics* metrics, HttpApiOptions options);
  ~HttpApi();

  void Handle(HttpRequest request, std::shared_ptr<HttpResponder> responder);
  size_t num_exchanges() const;

 private:
  class Exchange;
  void Generate(const HttpRequest& request, std::shared_ptr<HttpResponder> responder,
                bool chat);
  void Tokenize(const HttpRequest& request, HttpResponder& responder);
  void Detokenize(const HttpRequest& request, HttpResponder& responder);
  void Models(const HttpRequest& request, HttpResponder& responder);
  void MetricsRoute(HttpResponder& responder);
  bool Authorized(const HttpRequest& request) const;
  void Register(std::shared_ptr<Exchange> exchange);
  void Unregister(const Exchange* exchange);

  GenerationService* service_;
  Metrics* metrics_;
  HttpApiOptions options_;
  double created_;  // Unix seconds at start-up: /v1/models' `created`
  mutable std::mutex mu_;
  std::unordered_map<const Exchange*, std::shared_ptr<Exchange>> exchanges_;  // guarded by mu_
};

// Constant-time (in the candidate's length) check of `candidate` against every key.
bool MatchesApiKey(std::string_view candidate, const std::vector<std::string>& keys);

}  // namespace strata::server
