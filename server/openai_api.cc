#include "server/openai_api.h"

#include <cmath>
#include <limits>

#include "server/api_error.h"

namespace strata::server {
namespace {

// Typed optional fields of one JSON object; null counts as absent (OpenAI clients send nulls).
class Fields {
 public:
  explicit Fields(const Json& body) : body_(body) {}

  const Json* Get(const char* key) const {
    auto it = body_.find(key);
    return it == body_.end() || it->is_null() ? nullptr : &*it;
  }
  absl::Status Number(const char* key, float* out) const {
    const Json* v = Get(key);
    if (!v) return absl::OkStatus();
    if (!v->is_number()) return BadParam(key, "expected a number");
    const double d = v->get<double>();
    if (!std::isfinite(d)) return BadParam(key, "must be finite");
    *out = static_cast<float>(d);
    return absl::OkStatus();
  }
  absl::Status Int(const char* key, int64_t* out) const {
    const Json* v = Get(key);
    if (!v) return absl::OkStatus();
    if (!v->is_number_integer()) return BadParam(key, "expected an integer");
    if (v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX) {
      return BadParam(key, "is out of range");
    }
    *out = v->get<int64_t>();
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status Int32(const char* key, T* out) const {
    int64_t v = *out;
    RETURN_IF_ERROR(Int(key, &v));
    if (v < INT32_MIN || v > INT32_MAX) return BadParam(key, StrCat("is out of range: ", v));
    *out = static_cast<T>(v);
    return absl::OkStatus();
  }
  absl::Status Bool(const char* key, bool* out) const {
    const Json* v = Get(key);
    if (!v) return absl::OkStatus();
    if (!v->is_boolean()) return BadParam(key, "expected true or false");
    *out = v->get<bool>();
    return absl::OkStatus();
  }
  absl::Status String(const char* key, std::string* out) const {
    const Json* v = Get(key);
    if (!v) return absl::OkStatus();
    if (!v->is_string()) return BadParam(key, "expected a string");
    *out = v->get<std::string>();
    return absl::OkStatus();
  }

 private:
  const Json& body_;
};

absl::StatusOr<std::vector<int32_t>> TokenList(const Json& v, const char* key) {
  std::vector<int32_t> ids;
  for (const Json& t : v) {
    if (!t.is_number_integer()) return BadParam(key, "token lists must hold integers");
    const int64_t id = t.get<int64_t>();
    if (id < 0 || id > INT32_MAX) return BadParam(key, StrCat("token id ", id, " is invalid"));
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

// prompt: "text" | ["text"] | [ids...] | [[ids...]]; one prompt per request.
absl::Status ParsePrompt(const Json& body, GenerationRequest* r) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return BadParam("prompt", "is required");
  const Json& p = *it;
  if (p.is_string()) {
    r->prompt_text = p.get<std::string>();
    return absl::OkStatus();
  }
  if (!p.is_array() || p.empty()) {
    return BadParam("prompt", "expected a string, a list of token ids, or a list of one of them");
  }
  if (p[0].is_number_integer()) {
    ASSIGN_OR_RETURN(r->prompt_ids, TokenList(p, "prompt"));
    return absl::OkStatus();
  }
  if (p.size() != 1) return BadParam("prompt", "batched prompts are not supported: send one");
  if (p[0].is_string()) {
    r->prompt_text = p[0].get<std::string>();
    return absl::OkStatus();
  }
  if (p[0].is_array() && !p[0].empty()) {
    ASSIGN_OR_RETURN(r->prompt_ids, TokenList(p[0], "prompt"));
    return absl::OkStatus();
  }
  return BadParam("prompt", "expected a string, a list of token ids, or a list of one of them");
}

// content: "text" | [{"type":"text","text":"..."}...]; only an assistant turn may leave it out
// or null (OpenAI's assistant messages that carry tool calls instead).
absl::StatusOr<std::string> MessageContent(const Json& m) {
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) {
    if (m["role"] == "assistant") return std::string();
    return BadParam("messages", StrCat("a '", m["role"].get<std::string>(),
                                       "' message needs a 'content'"));
  }
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) return BadParam("messages", "content must be a string or a list of parts");
  std::string text;
  for (const Json& part : *it) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      return BadParam("messages", "only content parts of type 'text' are supported");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

absl::Status ParseMessages(const Json& body, GenerationRequest* r) {
  auto it = body.find("messages");
  if (it == body.end() || !it->is_array()) {
    return BadParam("messages", "is required and must be a list of messages");
  }
  std::vector<engine::ChatMessage> messages;
  for (const Json& m : *it) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return BadParam("messages", "each message must be an object with a string 'role'");
    }
    ASSIGN_OR_RETURN(std::string content, MessageContent(m));
    messages.push_back({m["role"].get<std::string>(), std::move(content)});
  }
  r->messages = std::move(messages);
  return absl::OkStatus();
}

absl::Status ParseStop(const Fields& f, GenerationRequest* r) {
  if (const Json* v = f.Get("stop")) {
    if (v->is_string()) {
      r->stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      for (const Json& s : *v) {
        if (!s.is_string()) return BadParam("stop", "expected a string or a list of strings");
        r->stop.push_back(s.get<std::string>());
      }
    } else {
      return BadParam("stop", "expected a string or a list of strings");
    }
  }
  if (const Json* v = f.Get("stop_token_ids")) {
    if (!v->is_array()) return BadParam("stop_token_ids", "expected a list of token ids");
    ASSIGN_OR_RETURN(r->stop_token_ids, TokenList(*v, "stop_token_ids"));
  }
  return absl::OkStatus();
}

absl::Status ParseSampling(const Fields& f, engine::SamplingParams* s) {
  RETURN_IF_ERROR(f.Number("temperature", &s->temperature));
  RETURN_IF_ERROR(f.Number("top_p", &s->top_p));
  RETURN_IF_ERROR(f.Int32("top_k", &s->top_k));
  RETURN_IF_ERROR(f.Number("min_p", &s->min_p));
  RETURN_IF_ERROR(f.Number("repetition_penalty", &s->repetition_penalty));
  RETURN_IF_ERROR(f.Number("presence_penalty", &s->presence_penalty));
  RETURN_IF_ERROR(f.Number("frequency_penalty", &s->frequency_penalty));
  if (f.Get("seed")) {
    int64_t seed = 0;
    RETURN_IF_ERROR(f.Int("seed", &seed));
    s->seed = static_cast<uint64_t>(seed);
  }
  return absl::OkStatus();
}

// max_tokens / max_completion_tokens (the newer name wins), n, logprobs in both dialects.
absl::Status ParseCounts(const Fields& f, ApiKind kind, ParsedRequest* p) {
  GenerationRequest& r = p->request;
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (f.Get(key)) {
      int64_t v = 0;
      RETURN_IF_ERROR(f.Int(key, &v));
      if (v < 1) return BadParam(key, StrCat("must be >= 1, got ", v));
      r.max_tokens = v;
    }
  }
  RETURN_IF_ERROR(f.Int32("n", &r.n));
  if (kind == ApiKind::kChat) {
    bool logprobs = false;
    int32_t top = 0;
    RETURN_IF_ERROR(f.Bool("logprobs", &logprobs));
    RETURN_IF_ERROR(f.Int32("top_logprobs", &top));
    if (top < 0) return BadParam("top_logprobs", StrCat("must be >= 0, got ", top));
    if (f.Get("top_logprobs") && !logprobs) {
      return BadParam("top_logprobs", "requires logprobs to be true");
    }
    r.logprobs = logprobs ? top : -1;
  } else if (f.Get("logprobs")) {
    RETURN_IF_ERROR(f.Int32("logprobs", &r.logprobs));
    if (r.logprobs < 0) return BadParam("logprobs", StrCat("must be >= 0, got ", r.logprobs));
  }
  p->response.logprobs = r.logprobs >= 0;
  return absl::OkStatus();
}

absl::Status ParseExtensions(const Fields& f, GenerationRequest* r) {
  RETURN_IF_ERROR(f.String("kv_policy", &r->kv_policy));
  RETURN_IF_ERROR(f.String("slo_class", &r->slo_class));
  RETURN_IF_ERROR(f.Int32("priority", &r->priority));
  if (f.Get("cache_salt")) {
    std::string salt;
    RETURN_IF_ERROR(f.String("cache_salt", &salt));
    r->cache_salt = salt;
  }
  RETURN_IF_ERROR(f.Bool("ignore_eos", &r->ignore_eos));
  RETURN_IF_ERROR(f.Bool("skip_special_tokens", &r->skip_special_tokens));
  std::string user;
  return f.String("user", &user);  // accepted for logs and abuse tracking; only type-checked
}

absl::Status ParseStreamOptions(const Fields& f, ResponseOptions* o) {
  RETURN_IF_ERROR(f.Bool("stream", &o->stream));
  RETURN_IF_ERROR(f.Bool("return_token_ids", &o->return_token_ids));
  if (const Json* so = f.Get("stream_options")) {
    if (!so->is_object()) return BadParam("stream_options", "expected an object");
    if (!o->stream) return BadParam("stream_options", "is only allowed when stream is true");
    Fields sf(*so);
    absl::Status s = sf.Bool("include_usage", &o->include_usage);
    if (!s.ok()) return BadParam("stream_options.include_usage", "expected true or false");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ParsedRequest> ParseOpenAiRequest(const Json& body, ApiKind kind) {
  if (!body.is_object()) return BadParam("body", "the request body must be a JSON object");
  ParsedRequest p;
  GenerationRequest& r = p.request;
  p.response.kind = kind;
  Fields f(body);
  RETURN_IF_ERROR(f.String("model", &r.model));
  if (kind == ApiKind::kChat) {
    RETURN_IF_ERROR(ParseMessages(body, &r));
    RETURN_IF_ERROR(f.Bool("add_generation_prompt", &r.add_generation_prompt));
  } else {
    RETURN_IF_ERROR(ParsePrompt(body, &r));
    RETURN_IF_ERROR(f.Bool("echo", &r.echo));
    p.response.echo = r.echo;
  }
  RETURN_IF_ERROR(ParseSampling(f, &r.sampling));
  RETURN_IF_ERROR(ParseCounts(f, kind, &p));
  RETURN_IF_ERROR(ParseStop(f, &r));
  RETURN_IF_ERROR(ParseExtensions(f, &r));
  RETURN_IF_ERROR(ParseStreamOptions(f, &p.response));
  return p;
}

std::string ErrorBody(const absl::Status& status) {
  ApiErrorView e = ToApiError(status);
  Json err = {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? Json(nullptr) : Json(e.param)},
              {"code", e.code.empty() ? Json(nullptr) : Json(e.code)}};
  return Json({{"error", err}}).dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace strata::server
