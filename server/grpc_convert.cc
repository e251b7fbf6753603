#include "server/grpc_convert.h"

#include <cctype>
#include <optional>

#include "common/clock.h"
#include "server/api_error.h"

namespace strata::server {
namespace {

// Time depends on the lengths only, never on where the bytes differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

bool MatchesAnyKey(std::string_view candidate, const std::vector<std::string>& keys) {
  bool match = false;
  for (const std::string& key : keys) match |= ConstantTimeEquals(candidate, key);
  return match;
}

std::string_view View(grpc::string_ref s) { return {s.data(), s.size()}; }

// "Bearer KEY" (scheme case-insensitive) -> KEY; anything else -> nullopt.
std::optional<std::string_view> BearerToken(std::string_view value) {
  constexpr std::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size()) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(value[i])) != kScheme[i]) return std::nullopt;
  }
  value.remove_prefix(kScheme.size());
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  return value;
}

void CopySampling(const v1::GenerateRequest& p, engine::SamplingParams* s) {
  if (p.has_temperature()) s->temperature = p.temperature();
  if (p.has_top_p()) s->top_p = p.top_p();
  s->top_k = p.top_k();
  s->min_p = p.min_p();
  if (p.has_repetition_penalty()) s->repetition_penalty = p.repetition_penalty();
  s->presence_penalty = p.presence_penalty();
  s->frequency_penalty = p.frequency_penalty();
  if (p.has_seed()) s->seed = p.seed();
}

absl::Status CopyPrompt(const v1::GenerateRequest& p, GenerationRequest* r) {
  const bool has_chat = p.messages_size() > 0;
  switch (p.prompt_case()) {
    case v1::GenerateRequest::kText:
      r->prompt_text = p.text();
      break;
    case v1::GenerateRequest::kTokenIds:
      if (p.token_ids().ids().empty()) return BadParam("token_ids", "must not be empty");
      r->prompt_ids.assign(p.token_ids().ids().begin(), p.token_ids().ids().end());
      break;
    case v1::GenerateRequest::PROMPT_NOT_SET:
      if (!has_chat) {
        return BadParam("prompt", "no prompt: set one of text, token_ids or messages");
      }
      break;
  }
  if (!has_chat) return absl::OkStatus();
  if (p.prompt_case() != v1::GenerateRequest::PROMPT_NOT_SET) {
    return BadParam("messages", "set either messages or a prompt (text or token_ids), not both");
  }
  std::vector<engine::ChatMessage> messages;
  for (const v1::ChatMessage& m : p.messages()) messages.push_back({m.role(), m.content()});
  r->messages = std::move(messages);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& p) {
  GenerationRequest r;
  r.arrival_time = NowSeconds();
  r.model = p.model();
  RETURN_IF_ERROR(CopyPrompt(p, &r));
  if (p.has_max_tokens()) r.max_tokens = p.max_tokens();
  CopySampling(p, &r.sampling);
  r.stop.assign(p.stop().begin(), p.stop().end());
  r.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  if (p.has_n()) r.n = p.n();
  if (p.has_logprobs()) {
    if (p.logprobs() < 0) {
      return BadParam("logprobs", StrCat("must be >= 0 when set, got ", p.logprobs()));
    }
    r.logprobs = p.logprobs();
  }
  r.ignore_eos = p.ignore_eos();
  r.kv_policy = p.kv_policy();
  r.slo_class = p.slo_class();
  r.priority = p.priority();
  if (p.has_cache_salt()) r.cache_salt = p.cache_salt();
  return r;
}

std::vector<v1::GenerateResponse> ToResponses(const std::vector<CompletionDelta>& deltas) {
  std::vector<v1::GenerateResponse> out(deltas.size());
  for (size_t k = 0; k < deltas.size(); ++k) {
    const CompletionDelta& d = deltas[k];
    v1::GenerateResponse& m = out[k];
    m.set_index(d.index);
    m.set_text(d.text);
    m.mutable_token_ids()->Add(d.token_ids.begin(), d.token_ids.end());
    for (const TokenLogprobs& lp : d.logprobs) {
      v1::TokenLogprob* t = m.add_logprobs();
      t->set_token(lp.token);
      t->set_text(lp.text);
      t->set_logprob(lp.logprob);
      for (size_t i = 0; i < lp.top.size(); ++i) {
        v1::TopLogprob* top = t->add_top();
        top->set_token(i < lp.top_ids.size() ? lp.top_ids[i] : -1);
        top->set_text(lp.top[i].first);
        top->set_logprob(lp.top[i].second);
      }
    }
    m.set_finish_reason(d.finish_reason);
  }
  return out;
}

void SetUsage(const Usage& usage, v1::GenerateResponse* response) {
  v1::Usage* u = response->mutable_usage();
  u->set_prompt_tokens(usage.prompt_tokens);
  u->set_completion_tokens(usage.completion_tokens);
  u->set_cached_tokens(usage.cached_tokens);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

bool ApiKeyAccepted(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                    const std::vector<std::string>& keys) {
  if (keys.empty()) return true;
  bool accepted = false;
  auto [auth_begin, auth_end] = metadata.equal_range("authorization");
  for (auto it = auth_begin; it != auth_end; ++it) {
    if (auto key = BearerToken(View(it->second))) accepted |= MatchesAnyKey(*key, keys);
  }
  auto [x_begin, x_end] = metadata.equal_range("x-api-key");
  for (auto it = x_begin; it != x_end; ++it) accepted |= MatchesAnyKey(View(it->second), keys);
  return accepted;
}

}  // namespace strata::server
