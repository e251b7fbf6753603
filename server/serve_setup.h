// Turns a validated Config and a loaded Model into what `strata serve` builds: the engine's
// config, the generation service's limits, the HTTP server's options, the served model name and
// the chat template.
// Pure functions; called once on the main thread at start-up.
#pragma once

#include <memory>
#include <string>

#include "engine/chat_template.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "server/config.h"
#include "server/generation.h"
#include "server/http_api.h"
#include "server/http_server.h"
#include "server/metrics.h"

namespace strata::server {

engine::EngineConfig MakeEngineConfig(const Config& config, const engine::Model& model);
// What a request under `policy` may do with its KV (codec, residual window, prefix cache, tiers).
kvcache::KvAccess KvAccessOf(const KvPolicy& policy);
ServiceOptions MakeServiceOptions(const Config& config, const std::string& served_name);
HttpServerOptions MakeHttpOptions(const Config& config);
// model.served_name, else the spec as given: synthetic:NAME, org/name, or a folder's base name.
std::string ServedName(const Config& config, const engine::Model& model);
// model.chat_template (a .jinja file) when set, else tokenizer_config.json's `chat_template`
// (a string, or a list of {name, template} from which "default" is taken). Null when the model
// has none; an error names the file when a template exists but does not parse.
absl::StatusOr<std::shared_ptr<const engine::ChatTemplate>> LoadChatTemplate(
    const Config& config, const engine::Model& model);

// The HTTP side of `strata serve` over one engine (also what bench_http measures). Whoever owns
// it stops `server` and joins the engine thread before `service` goes (cmd_serve.cc's Daemon).
struct HttpFrontEnd {
  std::unique_ptr<Metrics> metrics;  // null when metrics.enabled is false
  std::unique_ptr<GenerationService> service;
  std::unique_ptr<HttpApi> api;
  std::unique_ptr<HttpServer> server;
};
// Builds metrics, the generation service and the OpenAI API from the config and starts the HTTP
// server on config.server.host/http_port. engine and model must outlive the result.
absl::Status StartHttpFrontEnd(const Config& config, engine::Engine& engine,
                               const engine::Model& model,
                               std::shared_ptr<const engine::ChatTemplate> chat_template,
                               const std::string& served_name, HttpFrontEnd* out);

}  // namespace strata::server
