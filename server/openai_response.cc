// ResponseBuilder (openai_api.h): completion and chat completion objects and stream chunks.
#include "server/openai_api.h"

namespace strata::server {
namespace {

std::string Dump(const Json& j) {
  // Token texts of byte-fallback pieces can be partial UTF-8: replace rather than throw.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json Bytes(const std::string& s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

Json FinishReason(const std::string& reason) {
  return reason.empty() ? Json(nullptr) : Json(reason);
}

}  // namespace

ResponseBuilder::ResponseBuilder(ResponseOptions options, const GenerationStream& stream)
    : options_(std::move(options)), stream_(stream), choices_(stream.n()) {
  for (Choice& c : choices_) {
    if (options_.kind == ApiKind::kChat) {
      c.logprobs = {{"content", Json::array()}};
    } else {
      c.logprobs = {{"tokens", Json::array()},
                    {"token_logprobs", Json::array()},
                    {"top_logprobs", Json::array()},
                    {"text_offset", Json::array()}};
    }
    if (options_.echo) c.text_offset = stream.prompt_text().size();
  }
}

Json ResponseBuilder::Envelope(const char* object) const {
  return {{"id", stream_.id()},
          {"object", object},
          {"created", static_cast<int64_t>(stream_.created())},
          {"model", options_.model}};
}

Json ResponseBuilder::UsageJson() const {
  const Usage& u = stream_.usage();
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

// Server-side timings (an extension, as llama.cpp's server has): queue_ms = arrival until the
// request first joined an engine step (null when it never did), so that clients can split their
// TTFT into queueing and compute.
Json ResponseBuilder::TimingsJson() const {
  const double q = stream_.usage().queue_time_s;
  return {{"queue_ms", q >= 0 ? Json(q * 1e3) : Json(nullptr)}};
}

// The logprobs of `lps` in this API's shape; also advances the choice's text offset.
Json ResponseBuilder::LogprobsJson(Choice& choice, const std::vector<TokenLogprobs>& lps) {
  if (options_.kind == ApiKind::kChat) {
    Json content = Json::array();
    for (const TokenLogprobs& lp : lps) {
      Json top = Json::array();
      for (const auto& [text, logprob] : lp.top) {
        top.push_back({{"token", text}, {"logprob", logprob}, {"bytes", Bytes(text)}});
      }
      content.push_back({{"token", lp.text}, {"logprob", lp.logprob}, {"bytes", Bytes(lp.text)},
                         {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  Json out = {{"tokens", Json::array()},
              {"token_logprobs", Json::array()},
              {"top_logprobs", Json::array()},
              {"text_offset", Json::array()}};
  for (const TokenLogprobs& lp : lps) {
    out["tokens"].push_back(lp.text);
    out["token_logprobs"].push_back(lp.logprob);
    Json top = Json::object();
    for (const auto& [text, logprob] : lp.top) {
      if (!top.contains(text)) top[text] = logprob;  // two ids can decode alike
    }
    out["top_logprobs"].push_back(top);
    out["text_offset"].push_back(choice.text_offset);
    choice.text_offset += lp.text.size();
  }
  return out;
}

void ResponseBuilder::AppendLogprobs(Choice& choice, const std::vector<TokenLogprobs>& lps) {
  Json part = LogprobsJson(choice, lps);
  for (auto& [key, values] : part.items()) {
    for (Json& v : values) choice.logprobs[key].push_back(std::move(v));
  }
}

std::string ResponseBuilder::StreamEvents(const std::vector<CompletionDelta>& deltas) {
  const bool chat = options_.kind == ApiKind::kChat;
  std::string out;
  for (const CompletionDelta& d : deltas) {
    Choice& c = choices_[d.index];
    Json choice = {{"index", d.index}, {"finish_reason", FinishReason(d.finish_reason)}};
    std::string text = d.text;
    if (!c.started && options_.echo) text = stream_.prompt_text() + text;
    if (chat) {
      Json delta = Json::object();
      if (!c.started) delta["role"] = "assistant";
      if (!text.empty() || !c.started) delta["content"] = text;
      choice["delta"] = delta;
    } else {
      choice["text"] = text;
    }
    c.started = true;
    choice["logprobs"] = options_.logprobs ? LogprobsJson(c, d.logprobs) : Json(nullptr);
    if (options_.return_token_ids) choice["token_ids"] = d.token_ids;
    Json chunk = Envelope(chat ? "chat.completion.chunk" : "text_completion");
    chunk["choices"] = Json::array({choice});
    if (options_.include_usage) chunk["usage"] = nullptr;
    out += "data: " + Dump(chunk) + "\n\n";
  }
  return out;
}

std::string ResponseBuilder::StreamEnd() {
  std::string out;
  if (options_.include_usage) {
    Json chunk = Envelope(options_.kind == ApiKind::kChat ? "chat.completion.chunk"
                                                          : "text_completion");
    chunk["choices"] = Json::array();
    chunk["usage"] = UsageJson();
    chunk["timings"] = TimingsJson();
    out += "data: " + Dump(chunk) + "\n\n";
  }
  return out + "data: [DONE]\n\n";
}

void ResponseBuilder::Add(const std::vector<CompletionDelta>& deltas) {
  for (const CompletionDelta& d : deltas) {
    Choice& c = choices_[d.index];
    c.text += d.text;
    if (!d.finish_reason.empty()) c.finish_reason = d.finish_reason;
    if (options_.logprobs) AppendLogprobs(c, d.logprobs);
    if (options_.return_token_ids) {
      c.token_ids.insert(c.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
    }
  }
}

std::string ResponseBuilder::Final() {
  const bool chat = options_.kind == ApiKind::kChat;
  Json response = Envelope(chat ? "chat.completion" : "text_completion");
  Json choices = Json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    Choice& c = choices_[i];
    Json choice = {{"index", i}, {"finish_reason", FinishReason(c.finish_reason)}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    } else {
      choice["text"] = options_.echo ? stream_.prompt_text() + c.text : c.text;
    }
    choice["logprobs"] = options_.logprobs ? c.logprobs : Json(nullptr);
    if (options_.return_token_ids) choice["token_ids"] = c.token_ids;
    choices.push_back(std::move(choice));
  }
  response["choices"] = std::move(choices);
  response["usage"] = UsageJson();
  response["timings"] = TimingsJson();
  return Dump(response);
}

}  // namespace strata::server
