// `strata serve --config FILE [--model SPEC] [--http-port N] [--grpc-port N] [--host ADDR]`:
// the daemon. Start-up order: config (validated; errors name the key), model, engine, chat
// template, metrics, the generation service, then the HTTP and gRPC front ends. SIGTERM/SIGINT
// drain it: readiness turns false, new requests get 503, requests in flight may finish within
// server.shutdown_grace_seconds, then everything stops and the process exits 0.
#include <cstdio>
#include <thread>

#include "common/clock.h"
#include "common/logging.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "server/cli_flags.h"
#include "server/commands.h"
#include "server/config.h"
#include "server/generation.h"
#include "server/grpc_service.h"
#include "server/http_api.h"
#include "server/http_server.h"
#include "server/hub_env.h"
#include "server/metrics.h"
#include "server/serve_setup.h"
#include "server/shutdown_signals.h"

namespace strata::server {
namespace {

absl::StatusOr<Config> LoadWithOverrides(const CliFlags& flags) {
  ASSIGN_OR_RETURN(Config c, LoadConfigFile(flags.GetOr("config", "configs/default.yaml")));
  if (auto m = flags.Get("model")) c.model.path = *m;
  if (auto h = flags.Get("host")) c.server.host = *h;
  for (auto [flag, port] : {std::pair{"http-port", &c.server.http_port},
                            std::pair{"grpc-port", &c.server.grpc_port}}) {
    if (auto v = flags.Get(flag)) {
      char* end = nullptr;
      const long n = std::strtol(v->c_str(), &end, 10);
      if (v->empty() || *end != '\0' || n < -1 || n > 65535) {
        return absl::InvalidArgumentError(StrCat("--", flag, ": not a port: '", *v, "'"));
      }
      *port = static_cast<int>(n);
    }
  }
  if (c.model.path.empty()) c.model.path = "synthetic:tiny";
  RETURN_IF_ERROR(c.Validate());
  return c;
}

// Everything the daemon runs, destroyed front ends first and the model last.
struct Daemon {
  std::unique_ptr<engine::Model> model;
  std::unique_ptr<engine::Engine> engine;
  HttpFrontEnd front;
  std::unique_ptr<GrpcServer> grpc;

  ~Daemon() {
    if (front.server) front.server->Stop();  // closes streams: their requests are cancelled
    if (grpc) grpc->Shutdown(0);
    front.server.reset();
    grpc.reset();
    front.api.reset();
    engine.reset();  // joins the engine thread before the service and model go
    front.service.reset();
  }
};

absl::Status StartDaemon(const Config& c, Daemon* d) {
  ASSIGN_OR_RETURN(d->model, engine::LoadModel(c.model.path, {.hub = HubOptionsFromEnv()}));
  LOG_INFO("model: {}", d->model->description);
  if (d->model->synthetic) {
    LOG_WARN("{} has random weights: its output is meaningless text", c.model.path);
  }
  ASSIGN_OR_RETURN(d->engine, engine::Engine::Create(*d->model, MakeEngineConfig(c, *d->model)));
  ASSIGN_OR_RETURN(auto chat_template, LoadChatTemplate(c, *d->model));
  const std::string served = ServedName(c, *d->model);
  RETURN_IF_ERROR(
      StartHttpFrontEnd(c, *d->engine, *d->model, std::move(chat_template), served, &d->front));
  if (c.server.grpc_port >= 0) {
    ASSIGN_OR_RETURN(d->grpc, GrpcServer::Start(c.server.host, c.server.grpc_port,
                                                d->front.service.get(), c.server.api_keys));
  }
  LOG_INFO("serving '{}' ({} KV pages of {} tokens) on http://{}:{}{}", served,
           d->engine->Stats().num_pages, c.kvcache.block_size, c.server.host,
           d->front.server->port(),
           d->grpc ? StrCat(", gRPC ", c.server.host, ":", d->grpc->port()) : "");
  // One machine-readable line on stdout: how tests and scripts learn ephemeral ports.
  std::printf("strata: listening http_port=%d grpc_port=%d\n", d->front.server->port(),
              d->grpc ? d->grpc->port() : -1);
  std::fflush(stdout);
  return absl::OkStatus();
}

// Waits for SIGTERM/SIGINT, then drains: no new work, in-flight requests get `grace` seconds.
// While waiting, gRPC health follows readiness once a second (an engine fault turns /ready and
// health off together).
void WaitAndDrain(ShutdownSignals& signals, double grace, Daemon& d) {
  int sig = -1;
  while ((sig = signals.Wait(/*timeout_s=*/1)) < 0) {
    if (d.grpc) d.grpc->SetServing(d.front.service->ready());
  }
  LOG_INFO("signal {}: draining ({} requests in flight, grace {} s)", sig,
           d.front.service->num_in_flight(), grace);
  d.front.service->StartDraining();
  if (d.grpc) d.grpc->SetServing(false);
  const double deadline = NowSeconds() + grace;
  while (d.front.service->num_in_flight() > 0 && NowSeconds() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int64_t left = d.front.service->num_in_flight();
  if (left > 0) LOG_WARN("grace period over: cancelling {} requests", left);
  LOG_INFO("stopped");
}

absl::Status Serve(const CliFlags& flags) {
  ShutdownSignals signals;  // first: every thread started from here on inherits the block
  ASSIGN_OR_RETURN(Config c, LoadWithOverrides(flags));
  InitLogging(c.logging.level, c.logging.format);
  Daemon d;
  RETURN_IF_ERROR(StartDaemon(c, &d));
  WaitAndDrain(signals, c.server.shutdown_grace_seconds, d);
  return absl::OkStatus();
}

}  // namespace

int RunServe(const std::vector<std::string>& args) {
  auto flags = CliFlags::Parse(args, {"config", "model", "http-port", "grpc-port", "host"});
  absl::Status s = flags.ok() ? Serve(*flags) : flags.status();
  if (!s.ok()) {
    std::fprintf(stderr, "strata serve: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace strata::server
