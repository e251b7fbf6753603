#include "server/grpc_generate.h"

#include "server/api_error.h"
#include "server/grpc_convert.h"

namespace strata::server {

GrpcPump::GrpcPump() : thread_([this] { Run(); }) {}

GrpcPump::~GrpcPump() { Stop(); }

void GrpcPump::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void GrpcPump::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  std::deque<std::function<void()>> dropped;
  std::lock_guard<std::mutex> lock(mu_);
  dropped.swap(tasks_);
}

void GrpcPump::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
    if (stopping_) return;
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    task = nullptr;  // releases what it captured before the lock is taken again
    lock.lock();
  }
}

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerateReactor::Create(
    grpc::CallbackServerContext* context, const v1::GenerateRequest& request,
    GenerationService* service, std::weak_ptr<GrpcPump> pump,
    const std::vector<std::string>& api_keys) {
  std::shared_ptr<GenerateReactor> reactor(new GenerateReactor());
  reactor->self_ = reactor;
  absl::Status status = ApiKeyAccepted(context->client_metadata(), api_keys)
                            ? reactor->Begin(request, service, std::move(pump))
                            : BadApiKey();
  if (!status.ok()) {
    std::lock_guard<std::mutex> lock(reactor->mu_);
    reactor->FinishLocked(ToGrpcStatus(status));
  }
  return reactor.get();
}

absl::Status GenerateReactor::Begin(const v1::GenerateRequest& request,
                                    GenerationService* service, std::weak_ptr<GrpcPump> pump) {
  ASSIGN_OR_RETURN(GenerationRequest r, ToGenerationRequest(request));
  // Runs on the engine thread: must not poll, block, or own the reactor (a temporary strong
  // reference taken there could end up destroying the stream on the engine thread).
  auto notify = [weak = weak_from_this(), queued = queued_, pump = std::move(pump)] {
    if (queued->exchange(true)) return;
    if (std::shared_ptr<GrpcPump> p = pump.lock()) {
      p->Post([weak] {
        if (std::shared_ptr<GenerateReactor> reactor = weak.lock()) reactor->OnNotify();
      });
    }
  };
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(stream_, service->Start(r, std::move(notify)));
  // Events may have arrived before stream_ was set; their notify found the pump task waiting
  // for mu_, so nothing is lost, but polling now saves a hop.
  PumpLocked();
  return absl::OkStatus();
}

void GenerateReactor::OnNotify() {
  queued_->store(false);
  std::lock_guard<std::mutex> lock(mu_);
  PumpLocked();
}

void GenerateReactor::PumpLocked() {
  if (done_ || finish_called_ || write_in_flight_ || !stream_) return;
  if (cancelled_) {
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled"));
    return;
  }
  if (outbox_.empty() && !stream_finished_) {
    std::vector<CompletionDelta> deltas;
    stream_finished_ = stream_->Poll(&deltas);
    if (!stream_->rejection().ok() && !wrote_any_) {  // SLO admission: RESOURCE_EXHAUSTED
      FinishLocked(ToGrpcStatus(stream_->rejection()));
      return;
    }
    for (v1::GenerateResponse& m : ToResponses(deltas)) outbox_.push_back(std::move(m));
    if (stream_finished_) {
      if (outbox_.empty()) outbox_.emplace_back();  // usage still needs a message to ride on
      SetUsage(stream_->usage(), &outbox_.back());
    }
  }
  if (outbox_.empty()) {
    if (stream_finished_) FinishLocked(grpc::Status::OK);
    return;
  }
  writing_ = std::move(outbox_.front());
  outbox_.pop_front();
  write_in_flight_ = true;
  wrote_any_ = true;
  if (stream_finished_ && outbox_.empty()) {
    finish_called_ = true;
    StartWriteAndFinish(&writing_, grpc::WriteOptions(), grpc::Status::OK);
  } else {
    StartWrite(&writing_);
  }
}

void GenerateReactor::FinishLocked(const grpc::Status& status) {
  if (finish_called_ || done_) return;
  finish_called_ = true;
  Finish(status);
}

void GenerateReactor::OnWriteDone(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  write_in_flight_ = false;
  if (!ok && !cancelled_) {
    // The stream broke (client gone): stop generating now rather than at OnCancel.
    cancelled_ = true;
    if (stream_) stream_->Cancel();
  }
  PumpLocked();
}

void GenerateReactor::OnCancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (stream_) stream_->Cancel();
  // With a write in flight, Finish waits for its OnWriteDone.
  if (!write_in_flight_) {
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled"));
  }
}

void GenerateReactor::OnDone() {
  std::shared_ptr<GenerateReactor> self;
  std::unique_ptr<GenerationStream> stream;  // destroyed first: leaves the service's in-flight count
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    self = std::move(self_);
    stream = std::move(stream_);
  }
}

}  // namespace strata::server
