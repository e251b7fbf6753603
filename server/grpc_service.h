// GrpcServer: the gRPC front end of `strata serve` (DESIGN.md §7). It serves strata.v1.Generation
// (Generate streams deltas from the shared GenerationService, ListModels) and the standard
// grpc.health.v1.Health (grpc++'s default health service; SERVING until SetServing(false) or
// Shutdown). Calls use the callback API, so an open stream holds no thread: the engine's notify
// only posts to one pump thread this server owns, which polls the stream and starts the write.
// API keys, when configured, are required on Generation calls ("authorization: Bearer KEY" or
// "x-api-key: KEY"); Health is always open.
//
// Start, SetServing, Shutdown and the destructor are called from one owner thread; port() from
// any. The GenerationService (and its engine) must outlive Shutdown; engine notifications that
// arrive after it are dropped safely.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/generation.h"

namespace strata::server {

class GrpcServer {
 public:
  // Listens on host:port (0 = an ephemeral port, see port()). Unavailable when the address
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const std::string& host, int port,
                                                           GenerationService* service,
                                                           std::vector<std::string> api_keys);
  ~GrpcServer();  // Shutdown(0) when not yet shut down
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  int port() const;
  // The health status of "" and "strata.v1.Generation": false while draining.
  void SetServing(bool serving);
  // Stops accepting calls; calls still running get grace_seconds to finish, then are cancelled
  // (their engine requests too). Returns once every call is done. Idempotent.
  void Shutdown(double grace_seconds);

  struct Impl;

 private:
  explicit GrpcServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::server
