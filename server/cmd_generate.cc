// `strata generate --model PATH|org/name|synthetic:NAME --prompt TEXT [...]`: one prompt, the
// continuation streamed to stdout, then the stats on stderr.
#include <cstdio>
#include <iostream>

#include "common/logging.h"
#include "engine/local_runtime.h"
#include "engine/model.h"
#include "engine/stop_matcher.h"
#include "engine/tokenizer.h"
#include "server/cli_flags.h"
#include "server/hub_env.h"
#include "server/commands.h"

namespace strata::server {
namespace {

const std::vector<std::string> kFlags = {
    "model",  "prompt", "max-tokens", "temperature", "top-k", "top-p", "min-p",
    "repetition-penalty", "presence-penalty", "frequency-penalty", "seed", "kv-policy",
    "threads", "backend", "log-level", "max-model-len", "stop"};

absl::StatusOr<engine::SamplingParams> ParseSampling(const CliFlags& f) {
  engine::SamplingParams s;
  ASSIGN_OR_RETURN(double temperature, f.GetDouble("temperature", 0.0));
  ASSIGN_OR_RETURN(int64_t top_k, f.GetInt("top-k", 0));
  ASSIGN_OR_RETURN(double top_p, f.GetDouble("top-p", 1.0));
  ASSIGN_OR_RETURN(double min_p, f.GetDouble("min-p", 0.0));
  ASSIGN_OR_RETURN(double rep, f.GetDouble("repetition-penalty", 1.0));
  ASSIGN_OR_RETURN(double presence, f.GetDouble("presence-penalty", 0.0));
  ASSIGN_OR_RETURN(double frequency, f.GetDouble("frequency-penalty", 0.0));
  s.temperature = static_cast<float>(temperature);
  s.top_k = static_cast<int32_t>(top_k);
  s.top_p = static_cast<float>(top_p);
  s.min_p = static_cast<float>(min_p);
  s.repetition_penalty = static_cast<float>(rep);
  s.presence_penalty = static_cast<float>(presence);
  s.frequency_penalty = static_cast<float>(frequency);
  if (f.Get("seed")) {
    ASSIGN_OR_RETURN(int64_t seed, f.GetInt("seed", 0));
    s.seed = static_cast<uint64_t>(seed);
  }
  RETURN_IF_ERROR(s.Validate());
  return s;
}

absl::Status Generate(const CliFlags& f) {
  auto model_spec = f.Get("model");
  auto prompt = f.Get("prompt");
  if (!model_spec || !prompt) return absl::InvalidArgumentError("--model and --prompt are required");
  std::string policy = f.GetOr("kv-policy", "full");
  if (policy != "full") {
    return absl::InvalidArgumentError(StrCat("--kv-policy '", policy,
                                             "': `strata generate` keeps fp32 KV ('full'); other "
                                             "policies are served by `strata serve` (kv_policy)"));
  }
  ASSIGN_OR_RETURN(engine::SamplingParams sampling, ParseSampling(f));
  ASSIGN_OR_RETURN(int64_t max_tokens, f.GetInt("max-tokens", 64));
  if (max_tokens <= 0) return absl::InvalidArgumentError("--max-tokens must be > 0");
  ASSIGN_OR_RETURN(int64_t threads, f.GetInt("threads", 0));
  ASSIGN_OR_RETURN(int64_t max_model_len, f.GetInt("max-model-len", 0));

  engine::ModelLoadOptions load_options{.hub = HubOptionsFromEnv()};
  ASSIGN_OR_RETURN(auto model, engine::LoadModel(*model_spec, load_options));
  LOG_INFO("model: {}", model->description);
  if (model->synthetic) {
    std::fprintf(stderr, "note: %s is a synthetic model with random weights; its output is "
                 "meaningless text\n", model_spec->c_str());
  }
  engine::RuntimeConfig rc{.backend = f.GetOr("backend", "auto"),
                           .threads = static_cast<int>(threads),
                           .max_model_len = max_model_len};
  ASSIGN_OR_RETURN(auto runtime, engine::LocalRuntime::Create(*model, rc));
  std::vector<int32_t> prompt_ids = model->tokenizer->Encode(*prompt, true);
  engine::IncrementalDecoder decoder(*model->tokenizer, prompt_ids, true);
  std::vector<std::string> stops;
  if (auto stop = f.Get("stop")) stops.push_back(*stop);
  engine::StopMatcher matcher(std::move(stops));
  engine::GenerateOptions options{.max_tokens = max_tokens, .sampling = sampling,
                                  .stop_token_ids = model->EosIds()};
  ASSIGN_OR_RETURN(auto result, runtime->generator().Generate(prompt_ids, options, [&](int32_t id) {
    engine::StopMatcher::Result r = matcher.Push(decoder.Push(id));
    std::cout << r.text << std::flush;
    return !r.stopped;
  }));
  if (matcher.stopped()) {
    result.finish_reason = "stop";
  } else {
    std::cout << matcher.Push(decoder.Flush()).text << matcher.Flush();
  }
  std::cout << std::endl;
  const engine::GenerateStats& s = result.stats;
  std::fprintf(stderr,
               "prompt tokens: %lld, generated tokens: %lld, finish: %s\n"
               "prefill: %.1f tok/s (%.3f s), decode: %.1f tok/s (%.3f s)\n",
               static_cast<long long>(s.prompt_tokens), static_cast<long long>(s.generated_tokens),
               result.finish_reason.c_str(), s.PrefillTokensPerSecond(), s.prefill_seconds,
               s.DecodeTokensPerSecond(), s.decode_seconds);
  return absl::OkStatus();
}

}  // namespace

int RunGenerate(const std::vector<std::string>& args) {
  auto flags = CliFlags::Parse(args, kFlags);
  if (!flags.ok()) {
    std::fprintf(stderr, "strata generate: %s\n", std::string(flags.status().message()).c_str());
    return 2;
  }
  InitLogging(flags->GetOr("log-level", "warn"));
  absl::Status s = Generate(*flags);
  if (!s.ok()) {
    std::fprintf(stderr, "strata generate: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace strata::server
