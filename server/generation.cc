#include "server/generation.h"

#include <chrono>

#include "common/clock.h"
#include "server/api_error.h"
#include "server/metrics.h"

namespace strata::server {
namespace {

// SamplingParams::Validate's messages start with the field's name ("top_p must be ...").
absl::Status SamplingError(const absl::Status& s) {
  std::string message(s.message());
  return BadParam(message.substr(0, message.find(' ')), message);
}

}  // namespace

double GenerationStream::TimePerOutputToken(const Completion& c) {
  if (c.num_tokens < 2) return 0;
  return (c.last_token_time - c.first_token_time) / static_cast<double>(c.num_tokens - 1);
}

GenerationService::GenerationService(engine::Engine* engine, const engine::Model* model,
                                     std::shared_ptr<const engine::ChatTemplate> chat_template,
                                     ServiceOptions options, Metrics* metrics)
    : engine_(engine),
      model_(model),
      chat_template_(std::move(chat_template)),
      options_(std::move(options)),
      metrics_(metrics) {}

bool GenerationService::ready() const {
  return !draining_ && engine_->Stats().num_step_errors == 0;
}

absl::Status GenerationService::CheckModel(const std::string& model) const {
  if (model.empty() || model == options_.served_name) return absl::OkStatus();
  return ModelNotFound(model);
}

absl::StatusOr<std::vector<int32_t>> GenerationService::PromptIds(
    const GenerationRequest& r) const {
  const engine::Tokenizer& tok = *model_->tokenizer;
  if (r.messages) {
    if (!chat_template_) {
      return BadParam("messages",
                      "this model has no chat template (tokenizer_config.json has none); set "
                      "model.chat_template in the config or use /v1/completions");
    }
    if (r.messages->empty()) return BadParam("messages", "must not be empty");
    engine::ChatTemplateOptions o;
    o.add_generation_prompt = r.add_generation_prompt;
    if (tok.bos_id() >= 0) o.bos_token = tok.IdToToken(tok.bos_id()).value_or("");
    if (!tok.eos_ids().empty()) o.eos_token = tok.IdToToken(tok.eos_ids()[0]).value_or("");
    absl::StatusOr<std::string> text = chat_template_->Render(*r.messages, o);
    if (!text.ok()) return BadParam("messages", std::string(text.status().message()));
    // The template writes bos itself (HF apply_chat_template tokenizes without special tokens).
    return tok.Encode(*text, /*add_special_tokens=*/false);
  }
  if (!r.prompt_ids.empty()) {
    for (int32_t id : r.prompt_ids) {
      if (id < 0 || id >= model_->config.vocab_size) {
        return BadParam("prompt", StrCat("token id ", id, " is outside the vocabulary [0, ",
                                         model_->config.vocab_size, ")"));
      }
    }
    return r.prompt_ids;
  }
  std::vector<int32_t> ids = tok.Encode(r.prompt_text, /*add_special_tokens=*/true);
  if (ids.empty()) return BadParam("prompt", "must not be empty");
  return ids;
}

absl::StatusOr<std::vector<int32_t>> GenerationService::Tokenize(
    const GenerationRequest& r) const {
  return PromptIds(r);
}

absl::StatusOr<std::string> GenerationService::Detokenize(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids) {
    if (id < 0 || id >= model_->config.vocab_size) {
      return BadParam("tokens", StrCat("token id ", id, " is outside the vocabulary"));
    }
  }
  return model_->tokenizer->Decode(ids, /*skip_special_tokens=*/false);
}

std::string GenerationService::TokenText(int32_t id) const {
  const int32_t one[1] = {id};
  return model_->tokenizer->Decode(one, /*skip_special_tokens=*/false);
}

absl::Status GenerationService::Validate(const GenerationRequest& r,
                                         int64_t num_prompt_tokens) const {
  const ServiceOptions& o = options_;
  if (r.n < 1 || r.n > o.max_n) {
    return BadParam("n", StrCat("must be in [1, ", o.max_n, "], got ", r.n));
  }
  if (r.max_tokens && (*r.max_tokens < 1 || *r.max_tokens > o.max_tokens)) {
    return BadParam("max_tokens", StrCat("must be in [1, ", o.max_tokens, "], got ", *r.max_tokens));
  }
  if (r.logprobs > o.max_logprobs || r.logprobs < -1) {
    return BadParam("logprobs", StrCat("must be in [0, ", o.max_logprobs, "], got ", r.logprobs));
  }
  if (static_cast<int64_t>(r.stop.size()) > o.max_stop_strings) {
    return BadParam("stop", StrCat("at most ", o.max_stop_strings, " stop strings, got ",
                                   r.stop.size()));
  }
  for (const std::string& s : r.stop) {
    if (static_cast<int64_t>(s.size()) > o.max_stop_string_bytes) {
      return BadParam("stop", StrCat("a stop string is ", s.size(), " bytes; the limit is ",
                                     o.max_stop_string_bytes));
    }
  }
  if (!r.kv_policy.empty() && !o.policies.count(r.kv_policy)) {
    return UnknownName("kv_policy", "KV policy", r.kv_policy);
  }
  if (!r.slo_class.empty() && !o.slo_classes.count(r.slo_class)) {
    return UnknownName("slo_class", "SLO class", r.slo_class);
  }
  if (absl::Status s = r.sampling.Validate(); !s.ok()) return SamplingError(s);
  const int64_t max_len = engine_->max_model_len();
  const int64_t prompt_limit = o.max_prompt_tokens > 0 ? std::min(o.max_prompt_tokens, max_len)
                                                       : max_len;
  const int64_t limit = std::min(prompt_limit, max_len - 1);  // room for one new token
  if (num_prompt_tokens > limit) {
    return BadParam(r.messages ? "messages" : "prompt",
                    StrCat("the prompt has ", num_prompt_tokens, " tokens; the limit is ", limit,
                           " tokens"));
  }
  if (r.max_tokens && num_prompt_tokens + *r.max_tokens > max_len) {
    return BadParam("max_tokens",
                    StrCat("the prompt (", num_prompt_tokens, " tokens) plus max_tokens (",
                           *r.max_tokens, ") exceeds the model's context length ", max_len));
  }
  return absl::OkStatus();
}

engine::SloSpec GenerationService::SloSpecOf(const GenerationRequest& r) const {
  const std::string& name = r.slo_class.empty() ? options_.default_slo_class : r.slo_class;
  auto it = options_.slo_classes.find(name);
  engine::SloSpec s = it != options_.slo_classes.end() ? it->second : engine::SloSpec{};
  s.name = name;
  if (r.priority != 0) s.priority = r.priority;
  return s;
}

absl::StatusOr<std::unique_ptr<GenerationStream>> GenerationService::Start(
    const GenerationRequest& r, std::function<void()> notify) {
  auto reject = [&](absl::Status s) {
    if (metrics_) metrics_->CountRequest(s.code() == absl::StatusCode::kResourceExhausted ||
                                                 s.code() == absl::StatusCode::kUnavailable
                                             ? "rejected"
                                             : "invalid");
    return s;
  };
  if (draining_) return reject(Draining());
  if (absl::Status s = CheckModel(r.model); !s.ok()) return reject(s);
  absl::StatusOr<std::vector<int32_t>> ids = PromptIds(r);
  if (!ids.ok()) return reject(ids.status());
  const int64_t num_prompt = static_cast<int64_t>(ids->size());
  if (absl::Status s = Validate(r, num_prompt); !s.ok()) return reject(s);
  if (in_flight_.fetch_add(1) >= options_.max_concurrent_requests) {
    --in_flight_;
    return reject(Overloaded(StrCat("too many requests in flight (limit ",
                                    options_.max_concurrent_requests, "); retry later")));
  }
  engine::RequestOptions e;
  e.prompt_ids = *ids;
  e.max_tokens = r.max_tokens.value_or(
      std::min<int64_t>(options_.max_tokens, engine_->max_model_len() - num_prompt));
  e.sampling = r.sampling;
  e.stop_token_ids = r.stop_token_ids;
  if (!r.ignore_eos) {
    for (int32_t id : model_->EosIds()) e.stop_token_ids.push_back(id);
  }
  e.cache_salt = r.cache_salt;
  e.kv_access = options_.policies.at(r.kv_policy.empty() ? options_.default_policy : r.kv_policy);
  e.n = r.n;
  e.logprobs = r.logprobs;
  e.slo = SloSpecOf(r);
  const bool may_be_rejected = options_.slo_admission && e.slo.reject_on_overload &&
                               e.slo.ttft_s > 0;
  e.notify = std::move(notify);
  std::unique_ptr<GenerationStream> stream(new GenerationStream(this, r));
  stream->prompt_ids_ = *ids;
  stream->may_be_rejected_ = may_be_rejected;
  absl::StatusOr<engine::Engine::Submission> sub = engine_->Submit(std::move(e));
  if (!sub.ok()) {
    --in_flight_;
    stream->num_finished_ = stream->n();  // nothing to cancel
    return reject(absl::InvalidArgumentError(sub.status().message()));
  }
  const engine::Tokenizer& tok = *model_->tokenizer;
  stream->prompt_text_ = tok.Decode(*ids, r.skip_special_tokens);
  for (size_t i = 0; i < sub->ids.size(); ++i) {
    GenerationStream::Completion c;
    c.engine_id = sub->ids[i];
    c.channel = sub->channels[i];
    c.decoder = std::make_unique<engine::IncrementalDecoder>(tok, *ids, r.skip_special_tokens);
    if (!r.stop.empty()) c.stops = std::make_unique<engine::StopMatcher>(r.stop);
    stream->completions_.push_back(std::move(c));
  }
  stream->usage_.prompt_tokens = num_prompt;
  return stream;
}

GenerationStream::GenerationStream(GenerationService* service, const GenerationRequest& r)
    : service_(service),
      id_(StrCat("cmpl-", service->next_id_++, "-", static_cast<uint64_t>(UnixSeconds() * 1e3))),
      created_(UnixSeconds()),
      arrival_time_(r.arrival_time > 0 ? r.arrival_time : NowSeconds()),
      slo_class_(r.slo_class.empty() ? service->options().default_slo_class : r.slo_class),
      logprobs_(r.logprobs),
      skip_special_tokens_(r.skip_special_tokens) {}

GenerationStream::~GenerationStream() {
  if (completions_.empty()) return;  // never submitted
  if (!finished()) Cancel();
  --service_->in_flight_;
}

void GenerationStream::Cancel() {
  if (finished() || cancelled_) return;
  cancelled_ = true;
  for (Completion& c : completions_) {
    if (!c.finished) service_->engine_->Cancel(c.engine_id);
  }
  if (Metrics* m = service_->metrics()) {
    m->CountRequest("cancelled");
    m->CountSlo(slo_class_, "cancelled");
  }
}

bool GenerationStream::Poll(std::vector<CompletionDelta>* out) {
  for (int32_t i = 0; i < n(); ++i) {
    if (!completions_[i].finished) PollOne(i, out);
  }
  return finished();
}

void GenerationStream::PollOne(int32_t index, std::vector<CompletionDelta>* out) {
  Completion& c = completions_[index];
  CompletionDelta delta;
  delta.index = index;
  bool any = false;
  while (!c.finished) {
    std::optional<engine::TokenEvent> e = c.channel->TryPop();
    if (!e) break;
    any = true;
    OnToken(c, *e, &delta);
  }
  if (any && (!delta.text.empty() || !delta.token_ids.empty() || !delta.finish_reason.empty())) {
    out->push_back(std::move(delta));
  }
}

void GenerationStream::OnToken(Completion& c, const engine::TokenEvent& e,
                               CompletionDelta* delta) {
  if (e.token >= 0) {
    const double now = NowSeconds();
    if (c.num_tokens == 0) {
      c.first_token_time = now;
      c.first_scheduled_at = e.first_scheduled_at;
      if (&c == &completions_[0]) {
        usage_.cached_tokens = e.num_cached_tokens;
        if (e.first_scheduled_at > 0) usage_.queue_time_s = e.first_scheduled_at - arrival_time_;
        if (Metrics* m = service_->metrics()) {
          m->ObserveTimeToFirstToken(now - arrival_time_);
          if (usage_.queue_time_s >= 0) m->ObserveQueueTime(usage_.queue_time_s);
          m->AddPromptTokens(usage_.prompt_tokens);
          m->AddPrefixCacheLookup(usage_.prompt_tokens,
                                  {.device = e.num_cached_tokens - e.num_host_cached_tokens,
                                   .host = e.num_host_cached_tokens - e.num_disk_cached_tokens,
                                   .disk = e.num_disk_cached_tokens});
        }
      }
    }
    c.last_token_time = now;
    ++c.num_tokens;
    ++usage_.completion_tokens;
    if (Metrics* m = service_->metrics()) m->AddGenerationTokens(1);
    delta->token_ids.push_back(e.token);
    if (logprobs_ >= 0 && e.logprob) {
      TokenLogprobs lp;
      lp.token = e.token;
      lp.text = service_->TokenText(e.token);
      lp.logprob = e.logprob->logprob;
      for (const engine::TokenLogprob& t : e.top_logprobs) {
        lp.top.emplace_back(service_->TokenText(t.token), t.logprob);
        lp.top_ids.push_back(t.token);
      }
      delta->logprobs.push_back(std::move(lp));
    }
    std::string text = c.decoder->Push(e.token);
    if (c.stops) {
      engine::StopMatcher::Result r = c.stops->Push(text);
      delta->text += r.text;
      if (r.stopped) {
        service_->engine_->Cancel(c.engine_id);
        Finish(c, "stop", delta);
        return;
      }
    } else {
      delta->text += text;
    }
  }
  if (e.finish_reason == "rejected" && c.num_tokens == 0 && rejection_.ok()) {
    rejection_ = absl::ResourceExhaustedError(e.reason);
  }
  if (!e.finish_reason.empty()) {
    std::string tail = c.decoder->Flush();
    if (c.stops) {
      engine::StopMatcher::Result r = c.stops->Push(tail);
      tail = r.text + (r.stopped ? "" : c.stops->Flush());
    }
    delta->text += tail;
    Finish(c, e.finish_reason, delta);
  }
}

void GenerationStream::Finish(Completion& c, const std::string& reason, CompletionDelta* delta) {
  c.finished = true;
  ++num_finished_;
  delta->finish_reason = reason;
  Metrics* m = service_->metrics();
  if (!m || cancelled_) return;
  if (c.num_tokens > 1) m->ObserveTimePerOutputToken(TimePerOutputToken(c));
  if (!finished()) return;
  if (!rejection_.ok()) {
    m->CountRequest("rejected");
    m->CountSlo(slo_class_, "rejected");
    return;
  }
  const double now = NowSeconds();
  m->ObserveEndToEnd(now - arrival_time_);
  const bool aborted = reason == "abort";
  m->CountRequest(aborted ? "error" : "ok");
  const auto& classes = service_->options().slo_classes;
  auto it = classes.find(slo_class_);
  if (aborted || it == classes.end()) return;
  m->CountSlo(slo_class_, SloOutcome(it->second));
}

// met | missed_ttft | missed_tpot: the first completion against its class's targets.
const char* GenerationStream::SloOutcome(const engine::SloSpec& target) const {
  const Completion& first = completions_[0];
  if (target.ttft_s > 0 && first.first_token_time - arrival_time_ > target.ttft_s) {
    return "missed_ttft";
  }
  if (target.tpot_s > 0 && TimePerOutputToken(first) > target.tpot_s) return "missed_tpot";
  return "met";
}

}  // namespace strata::server
