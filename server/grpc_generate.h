// The server side of strata.v1.Generation/Generate: one GenerateReactor per call, and the
// GrpcPump thread that moves engine notifications off the engine thread.
//
//   engine thread: notify() --Post--> pump thread: Pump() -- Poll, StartWrite
//   gRPC callback threads:            OnWriteDone -> Pump(); OnCancel -> Cancel; OnDone -> release
//
// A reactor's mutex serializes Poll/Cancel (GenerationStream's rule) and gRPC operations (at most
// one write in flight, Finish once). It keeps itself alive (self-reference) until OnDone; the
// notify it gives the engine holds only weak references, so a notification that arrives after the
// call ended, or after the pump stopped, does nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "server/generation.h"
#include "strata/v1/generation.pb.h"

namespace strata::server {

// One thread running posted tasks in order. Post is thread-safe; Stop joins the thread and drops
// what was not run. Owned by GrpcServer through a shared_ptr; notifications hold weak_ptrs.
class GrpcPump {
 public:
  GrpcPump();
  ~GrpcPump();
  void Post(std::function<void()> task);
  void Stop();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::thread thread_;
};

class GenerateReactor : public grpc::ServerWriteReactor<v1::GenerateResponse>,
                        public std::enable_shared_from_this<GenerateReactor> {
 public:
  // Checks the API key, converts and starts the request; errors finish the call at once.
  static grpc::ServerWriteReactor<v1::GenerateResponse>* Create(
      grpc::CallbackServerContext* context, const v1::GenerateRequest& request,
      GenerationService* service, std::weak_ptr<GrpcPump> pump,
      const std::vector<std::string>& api_keys);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  GenerateReactor() = default;
  absl::Status Begin(const v1::GenerateRequest& request, GenerationService* service,
                     std::weak_ptr<GrpcPump> pump);
  void OnNotify();
  // Writes the next message, polling the stream when nothing is queued, or finishes the call.
  void PumpLocked();
  void FinishLocked(const grpc::Status& status);

  // Guards everything below but queued_.
  std::mutex mu_;
  std::shared_ptr<GenerateReactor> self_;        // until OnDone
  std::unique_ptr<GenerationStream> stream_;
  std::deque<v1::GenerateResponse> outbox_;      // polled, not yet written
  v1::GenerateResponse writing_;                 // the write in flight
  bool write_in_flight_ = false;
  bool stream_finished_ = false;                 // Poll returned true
  bool wrote_any_ = false;                       // a response message went out
  bool cancelled_ = false;                       // OnCancel or a failed write
  bool finish_called_ = false;
  bool done_ = false;                            // OnDone ran: no gRPC calls any more
  // Set by notify, cleared by the pump before polling: one pump task queued per call at most.
  std::shared_ptr<std::atomic<bool>> queued_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace strata::server
