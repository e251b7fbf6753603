#include "server/grpc_service.h"

#include <algorithm>
#include <chrono>

#include <grpcpp/health_check_service_interface.h>

#include "common/logging.h"
#include "server/api_error.h"
#include "server/grpc_convert.h"
#include "server/grpc_generate.h"
#include "strata/v1/generation.grpc.pb.h"

namespace strata::server {
namespace {

constexpr char kServiceName[] = "strata.v1.Generation";

class GenerationImpl final : public v1::Generation::CallbackService {
 public:
  GenerationImpl(GenerationService* service, std::weak_ptr<GrpcPump> pump,
                 std::vector<std::string> api_keys)
      : service_(service), pump_(std::move(pump)), api_keys_(std::move(api_keys)) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override {
    return GenerateReactor::Create(context, *request, service_, pump_, api_keys_);
  }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* /*request*/,
                                       v1::ListModelsResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (!ApiKeyAccepted(context->client_metadata(), api_keys_)) {
      reactor->Finish(ToGrpcStatus(BadApiKey()));
      return reactor;
    }
    v1::Model* m = response->add_models();
    m->set_id(service_->options().served_name);
    m->set_owned_by("strata");
    m->set_max_model_len(service_->engine().max_model_len());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  GenerationService* service_;
  std::weak_ptr<GrpcPump> pump_;
  std::vector<std::string> api_keys_;
};

// gRPC's address syntax wants IPv6 literals in brackets.
std::string Address(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos && host.front() != '[';
  return ipv6 ? StrCat("[", host, "]:", port) : StrCat(host, ":", port);
}

}  // namespace

struct GrpcServer::Impl {
  std::shared_ptr<GrpcPump> pump;
  std::unique_ptr<GenerationImpl> generation;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool shut_down = false;
};

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(const std::string& host, int port,
                                                               GenerationService* service,
                                                               std::vector<std::string> api_keys) {
  auto impl = std::make_unique<Impl>();
  impl->pump = std::make_shared<GrpcPump>();
  impl->generation = std::make_unique<GenerationImpl>(service, impl->pump, std::move(api_keys));
  grpc::EnableDefaultHealthCheckService(true);  // process-wide; read by the builder below
  grpc::ServerBuilder builder;
  // Without this, a second daemon on the same port would silently share its connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  const std::string address = Address(host, port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &impl->port);
  builder.RegisterService(impl->generation.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) {
    impl->pump->Stop();
    return absl::UnavailableError(
        StrCat("gRPC: cannot listen on ", address, " (address in use or not local?)"));
  }
  std::unique_ptr<GrpcServer> server(new GrpcServer(std::move(impl)));
  server->SetServing(service->ready());
  return server;
}

GrpcServer::GrpcServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

GrpcServer::~GrpcServer() { Shutdown(0); }

int GrpcServer::port() const { return impl_->port; }

void GrpcServer::SetServing(bool serving) {
  if (impl_->shut_down) return;
  grpc::HealthCheckServiceInterface* health = impl_->server->GetHealthCheckService();
  if (!health) return;
  health->SetServingStatus(serving);
  health->SetServingStatus(kServiceName, serving);
}

void GrpcServer::Shutdown(double grace_seconds) {
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  const auto deadline =
      std::chrono::system_clock::now() +
      std::chrono::microseconds(static_cast<int64_t>(std::max(0.0, grace_seconds) * 1e6));
  // Turns health NOT_SERVING, waits for calls until the deadline, cancels the rest and returns
  // once every reactor is done; the pump keeps serving them until then.
  impl_->server->Shutdown(deadline);
  impl_->server->Wait();
  impl_->pump->Stop();
  LOG_INFO("gRPC server on port {} stopped", impl_->port);
}

}  // namespace strata::server
