#include "server/http_api.h"

#include "common/clock.h"
#include "common/json.h"
#include "common/logging.h"
#include "server/api_error.h"
#include "server/metrics.h"
#include "server/openai_api.h"

namespace strata::server {
namespace {

constexpr char kJson[] = "application/json";

void SendError(HttpResponder& r, const absl::Status& status) {
  r.Send(HttpStatusOf(status.code()), kJson, ErrorBody(status));
}

void SendJson(HttpResponder& r, const Json& body) {
  r.Send(200, kJson, body.dump(-1, ' ', false, Json::error_handler_t::replace));
}

absl::StatusOr<Json> ParseBody(const HttpRequest& request) {
  absl::StatusOr<Json> body = ParseJson(request.body, "request body");
  if (!body.ok()) return BadParam("body", StrCat("invalid JSON: ", std::string(body.status().message())));
  if (!body->is_object()) return BadParam("body", "the request body must be a JSON object");
  return body;
}

}  // namespace

bool MatchesApiKey(std::string_view candidate, const std::vector<std::string>& keys) {
  bool match = false;
  for (const std::string& key : keys) {
    // Every byte of the candidate is compared whatever the key, so timing tells nothing about
    // where a guess first differs.
    unsigned diff = candidate.size() != key.size();
    for (size_t i = 0; i < candidate.size(); ++i) {
      diff |= static_cast<unsigned char>(candidate[i]) ^
              static_cast<unsigned char>(i < key.size() ? key[i] : 0);
    }
    match |= diff == 0;
  }
  return match;
}

// One generation over HTTP. Lives in HttpApi's registry until it completes or its client leaves.
class HttpApi::Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(HttpApi* api, std::shared_ptr<HttpResponder> responder, ResponseOptions options)
      : api_(api), responder_(std::move(responder)), options_(std::move(options)) {}

  // Engine thread: at most one Pump queued at a time.
  std::function<void()> Notifier() {
    return [weak = weak_from_this()] {
      auto self = weak.lock();
      if (!self || self->pump_pending_.exchange(true)) return;
      self->responder_->Post([self] {
        self->pump_pending_ = false;
        self->Pump();
      });
    };
  }

  // Strand: the stream was accepted. A streaming response's head goes out now, or with its first
  // event when SLO admission may still reject the request (which then gets a plain 429).
  void Begin(std::unique_ptr<GenerationStream> stream) {
    stream_ = std::move(stream);
    builder_.emplace(options_, *stream_);
    if (options_.stream && !stream_->may_be_rejected()) {
      responder_->StartStream(200, "text/event-stream");
      started_ = true;
    }
    responder_->OnClose([weak = weak_from_this()] {
      if (auto self = weak.lock()) self->Close();
    });
    Pump();
  }

  void Pump() {
    if (!stream_) return;
    std::vector<CompletionDelta> deltas;
    const bool done = stream_->Poll(&deltas);
    if (!started_ && !stream_->rejection().ok()) {
      responder_->Send(429, kJson, ErrorBody(stream_->rejection()));
      Finish();
      return;
    }
    if (options_.stream) {
      if (!started_ && (done || !deltas.empty())) {
        responder_->StartStream(200, "text/event-stream");
        started_ = true;
      }
      if (!deltas.empty()) responder_->Write(builder_->StreamEvents(deltas));
      if (done) {
        responder_->Write(builder_->StreamEnd());
        responder_->End();
      }
    } else {
      builder_->Add(deltas);
      if (done) responder_->Send(200, kJson, builder_->Final());
    }
    if (done) Finish();
  }

  // Strand: the client disconnected or the server is stopping.
  void Close() {
    if (stream_) stream_->Cancel();
    Finish();
  }

 private:
  void Finish() {
    stream_.reset();  // frees the in-flight slot
    api_->Unregister(this);
  }

  HttpApi* api_;
  std::shared_ptr<HttpResponder> responder_;
  ResponseOptions options_;
  std::unique_ptr<GenerationStream> stream_;  // strand only
  std::optional<ResponseBuilder> builder_;    // strand only
  bool started_ = false;                      // strand only: the response head went out
  std::atomic<bool> pump_pending_{false};
};

HttpApi::HttpApi(GenerationService* service, Metrics* metrics, HttpApiOptions options)
    : service_(service),
      metrics_(metrics),
      options_(std::move(options)),
      created_(UnixSeconds()) {}

HttpApi::~HttpApi() {
  std::unordered_map<const Exchange*, std::shared_ptr<Exchange>> exchanges;
  {
    std::lock_guard<std::mutex> lock(mu_);
    exchanges.swap(exchanges_);
  }
}

size_t HttpApi::num_exchanges() const {
  std::lock_guard<std::mutex> lock(mu_);
  return exchanges_.size();
}

void HttpApi::Register(std::shared_ptr<Exchange> exchange) {
  std::lock_guard<std::mutex> lock(mu_);
  exchanges_[exchange.get()] = std::move(exchange);
}

void HttpApi::Unregister(const Exchange* exchange) {
  std::shared_ptr<Exchange> keep;  // destroyed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  auto it = exchanges_.find(exchange);
  if (it == exchanges_.end()) return;
  keep = std::move(it->second);
  exchanges_.erase(it);
}

bool HttpApi::Authorized(const HttpRequest& request) const {
  if (options_.api_keys.empty()) return true;
  std::string key;
  if (auto auth = request.Header("authorization")) {
    constexpr std::string_view kBearer = "Bearer ";
    if (auth->size() > kBearer.size() && auth->compare(0, kBearer.size(), kBearer) == 0) {
      key = auth->substr(kBearer.size());
    }
  } else if (auto k = request.Header("x-api-key")) {
    key = *k;
  }
  return MatchesApiKey(key, options_.api_keys);
}

void HttpApi::Handle(HttpRequest request, std::shared_ptr<HttpResponder> responder) {
  const std::string& path = request.path;
  const bool get = request.method == "GET" || request.method == "HEAD";
  const bool post = request.method == "POST";
  if (path == "/health" && get) {
    return SendJson(*responder, {{"status", "ok"}});
  }
  if (path == "/ready" && get) {
    if (service_->ready()) return SendJson(*responder, {{"status", "ready"}});
    return SendError(*responder, service_->draining()
                                     ? Draining()
                                     : absl::UnavailableError("the engine is not ready"));
  }
  if (path == "/metrics" && get) {
    if (options_.metrics_require_api_key && !Authorized(request)) {
      return SendError(*responder, BadApiKey());
    }
    return MetricsRoute(*responder);
  }
  static const std::vector<std::pair<std::string, std::string>> kRoutes = {
      {"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"}, {"/tokenize", "POST"},
      {"/detokenize", "POST"},     {"/v1/models", "GET"}};
  bool known = path.rfind("/v1/models/", 0) == 0;
  for (const auto& [p, m] : kRoutes) known |= p == path;
  if (!known) {
    return SendError(*responder, absl::NotFoundError(StrCat("no route ", path)));
  }
  if (!Authorized(request)) return SendError(*responder, BadApiKey());
  if (path == "/v1/completions" && post) return Generate(request, responder, false);
  if (path == "/v1/chat/completions" && post) return Generate(request, responder, true);
  if (path == "/tokenize" && post) return Tokenize(request, *responder);
  if (path == "/detokenize" && post) return Detokenize(request, *responder);
  if (path.rfind("/v1/models", 0) == 0 && get) return Models(request, *responder);
  responder->Send(405, kJson,
                  ErrorBody(absl::InvalidArgumentError(
                      StrCat("method ", request.method, " is not allowed on ", path))));
}

void HttpApi::Generate(const HttpRequest& request, std::shared_ptr<HttpResponder> responder,
                       bool chat) {
  const double arrival = NowSeconds();
  absl::StatusOr<ParsedRequest> parsed = [&]() -> absl::StatusOr<ParsedRequest> {
    ASSIGN_OR_RETURN(Json body, ParseBody(request));
    return ParseOpenAiRequest(body, chat ? ApiKind::kChat : ApiKind::kCompletion);
  }();
  if (!parsed.ok()) {
    if (metrics_) metrics_->CountRequest("invalid");
    return SendError(*responder, parsed.status());
  }
  parsed->request.arrival_time = arrival;
  parsed->response.model = service_->options().served_name;
  auto exchange = std::make_shared<Exchange>(this, responder, parsed->response);
  absl::StatusOr<std::unique_ptr<GenerationStream>> stream =
      service_->Start(parsed->request, exchange->Notifier());
  if (!stream.ok()) return SendError(*responder, stream.status());
  Register(exchange);
  exchange->Begin(std::move(*stream));
}

void HttpApi::Tokenize(const HttpRequest& request, HttpResponder& responder) {
  absl::StatusOr<Json> body = ParseBody(request);
  if (!body.ok()) return SendError(responder, body.status());
  const bool chat = body->contains("messages");
  absl::StatusOr<ParsedRequest> parsed =
      ParseOpenAiRequest(*body, chat ? ApiKind::kChat : ApiKind::kCompletion);
  if (!parsed.ok()) return SendError(responder, parsed.status());
  if (absl::Status s = service_->CheckModel(parsed->request.model); !s.ok()) {
    return SendError(responder, s);
  }
  absl::StatusOr<std::vector<int32_t>> ids = service_->Tokenize(parsed->request);
  if (!ids.ok()) return SendError(responder, ids.status());
  SendJson(responder, {{"tokens", *ids},
                       {"count", ids->size()},
                       {"max_model_len", service_->engine().max_model_len()}});
}

void HttpApi::Detokenize(const HttpRequest& request, HttpResponder& responder) {
  absl::StatusOr<Json> body = ParseBody(request);
  if (!body.ok()) return SendError(responder, body.status());
  auto it = body->find("tokens");
  if (it == body->end() || !it->is_array()) {
    return SendError(responder, BadParam("tokens", "is required and must be a list of token ids"));
  }
  std::vector<int32_t> ids;
  for (const Json& t : *it) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX) {
      return SendError(responder, BadParam("tokens", "token ids must be non-negative integers"));
    }
    ids.push_back(t.get<int32_t>());
  }
  absl::StatusOr<std::string> text = service_->Detokenize(ids);
  if (!text.ok()) return SendError(responder, text.status());
  SendJson(responder, {{"prompt", *text}});
}

void HttpApi::Models(const HttpRequest& request, HttpResponder& responder) {
  const std::string& name = service_->options().served_name;
  Json model = {{"id", name},
                {"object", "model"},
                {"created", static_cast<int64_t>(created_)},
                {"owned_by", "strata"},
                {"root", service_->model().name},
                {"max_model_len", service_->engine().max_model_len()}};
  if (request.path == "/v1/models") {
    return SendJson(responder, {{"object", "list"}, {"data", Json::array({model})}});
  }
  const std::string id = request.path.substr(std::string("/v1/models/").size());
  if (id != name) return SendError(responder, ModelNotFound(id));
  SendJson(responder, model);
}

void HttpApi::MetricsRoute(HttpResponder& responder) {
  if (!metrics_) return SendError(responder, absl::NotFoundError("metrics are disabled"));
  responder.Send(200, "text/plain; version=0.0.4; charset=utf-8",
                 metrics_->Render(service_->engine().Stats()));
}

}  // namespace strata::server
