#include "kvcache/disk_io_engine.h"

#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "common/logging.h"

namespace strata::kvcache {
namespace {

// Converts a raw transfer result (bytes, or -errno) into what `done` receives.
absl::StatusOr<size_t> FinishTransfer(const IoRequest& r, int64_t result) {
  const char* what = r.kind == IoRequest::Kind::kRead ? "read " : "write ";
  if (result < 0) return ErrnoStatus(static_cast<int>(-result), StrCat(what, r.file->path()));
  if (!r.file->is_direct() && result > 0) {
    posix_fadvise(r.file->fd(), r.offset, result, POSIX_FADV_DONTNEED);
  }
  return static_cast<size_t>(result);
}

void FailInline(std::vector<IoRequest>& batch) {
  for (IoRequest& r : batch) r.done(absl::FailedPreconditionError("file system is shut down"));
}

class UringEngine : public IoEngine {
 public:
  // Returns null (and the error in *err) when the ring cannot be set up.
  static std::unique_ptr<UringEngine> Create(int queue_depth, int* err) {
    auto engine = std::unique_ptr<UringEngine>(new UringEngine(queue_depth));
    *err = -io_uring_queue_init(static_cast<unsigned>(queue_depth), &engine->ring_, 0);
    if (*err != 0) return nullptr;
    engine->ring_ready_ = true;
    engine->reaper_ = std::thread([e = engine.get()] { e->CompletionLoop(); });
    return engine;
  }
  ~UringEngine() override {
    Shutdown();
    if (ring_ready_) io_uring_queue_exit(&ring_);
  }

  bool is_io_uring() const override { return true; }

  void Submit(std::vector<IoRequest> batch) override {
    std::unique_lock lock(mu_);
    if (stopped_) {
      lock.unlock();
      FailInline(batch);
      return;
    }
    outstanding_ += static_cast<int64_t>(batch.size());
    for (IoRequest& r : batch) pending_.push_back(std::move(r));
    PumpLocked();
  }

  void Shutdown() override {
    std::unique_lock lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    if (!ring_ready_) return;  // Create() failed: no ring, no reaper
    drained_.wait(lock, [this] { return outstanding_ == 0; });
    // The ring is empty now: a NOP without user data tells the reaper to exit.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    CHECK(sqe != nullptr);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data(sqe, nullptr);
    io_uring_submit(&ring_);
    lock.unlock();
    reaper_.join();
  }

 private:
  explicit UringEngine(int queue_depth) : queue_depth_(queue_depth) {}

  // Moves pending requests into the ring while fewer than queue_depth_ are in it.
  // REQUIRES: mu_ held.
  void PumpLocked() {
    int prepared = 0;
    while (in_ring_ < queue_depth_ && !pending_.empty()) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) break;
      auto* op = new IoRequest(std::move(pending_.front()));
      pending_.pop_front();
      if (op->kind == IoRequest::Kind::kRead) {
        io_uring_prep_read(sqe, op->file->fd(), op->buffer, static_cast<unsigned>(op->length),
                           static_cast<uint64_t>(op->offset));
      } else {
        io_uring_prep_write(sqe, op->file->fd(), op->buffer, static_cast<unsigned>(op->length),
                            static_cast<uint64_t>(op->offset));
      }
      io_uring_sqe_set_data(sqe, op);
      ++in_ring_;
      ++prepared;
    }
    if (prepared == 0) return;
    int ret = io_uring_submit(&ring_);
    // Unsubmitted entries stay in the SQ ring and go with the next io_uring_submit.
    if (ret < 0) LOG_ERROR("io_uring_submit: {}", ret);
  }

  void CompletionLoop() {
    for (;;) {
      io_uring_cqe* cqe = nullptr;
      int ret = io_uring_wait_cqe(&ring_, &cqe);
      if (ret == -EINTR) continue;
      if (ret < 0) {
        LOG_ERROR("io_uring_wait_cqe: {}", ret);
        continue;
      }
      auto* op = static_cast<IoRequest*>(io_uring_cqe_get_data(cqe));
      int64_t res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (op == nullptr) return;  // Shutdown's NOP
      std::unique_ptr<IoRequest> owned(op);
      {
        // Taking mu_ also orders this thread after the Submit that prepared `op` (the kernel's
        // ring is invisible to the C++ memory model and to TSan).
        std::lock_guard lock(mu_);
        --in_ring_;
        PumpLocked();
      }
      owned->done(FinishTransfer(*owned, res));
      owned.reset();  // the callback's captures die before Shutdown may return
      std::lock_guard lock(mu_);
      if (--outstanding_ == 0) drained_.notify_all();
    }
  }

  const int queue_depth_;
  io_uring ring_{};
  bool ring_ready_ = false;
  std::thread reaper_;
  std::mutex mu_;  // guards the submission side of ring_ and the fields below
  std::condition_variable drained_;
  std::deque<IoRequest> pending_;  // submitted, not yet in the ring
  int in_ring_ = 0;
  int64_t outstanding_ = 0;  // pending_ + in the ring + callback running
  bool stopped_ = false;
};

class ThreadPoolEngine : public IoEngine {
 public:
  explicit ThreadPoolEngine(int num_threads) {
    for (int i = 0; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  }
  ~ThreadPoolEngine() override { Shutdown(); }

  bool is_io_uring() const override { return false; }

  void Submit(std::vector<IoRequest> batch) override {
    std::unique_lock lock(mu_);
    if (stopped_) {
      lock.unlock();
      FailInline(batch);
      return;
    }
    for (IoRequest& r : batch) queue_.push_back(std::move(r));
    work_.notify_all();
  }

  // Workers exit only once the queue is empty, so joining them drains every request.
  void Shutdown() override {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      work_.notify_all();
    }
    for (std::thread& t : workers_) t.join();
  }

 private:
  void WorkerLoop() {
    for (;;) {
      std::unique_lock lock(mu_);
      work_.wait(lock, [this] { return stopped_ || !queue_.empty(); });
      if (queue_.empty()) return;
      IoRequest r = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      r.done(FinishTransfer(r, Transfer(r)));
    }
  }

  static int64_t Transfer(const IoRequest& r) {
    for (;;) {
      ssize_t n = r.kind == IoRequest::Kind::kRead
                      ? pread(r.file->fd(), r.buffer, r.length, r.offset)
                      : pwrite(r.file->fd(), r.buffer, r.length, r.offset);
      if (n >= 0) return n;
      if (errno != EINTR) return -errno;
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_;
  std::deque<IoRequest> queue_;
  bool stopped_ = false;
};

}  // namespace

std::unique_ptr<IoEngine> NewIoEngine(const PosixFileSystemOptions& options) {
  static std::atomic<bool> logged{false};
  if (!options.force_thread_pool) {
    int err = 0;
    std::unique_ptr<UringEngine> uring = UringEngine::Create(options.queue_depth, &err);
    if (uring != nullptr) {
      if (!logged.exchange(true)) LOG_INFO("disk I/O: io_uring, queue depth {}", options.queue_depth);
      return uring;
    }
    if (!logged.exchange(true)) {
      LOG_WARN("disk I/O: io_uring_queue_init failed ({}), using a pread/pwrite thread pool",
               std::strerror(err));
    }
  } else if (!logged.exchange(true)) {
    LOG_INFO("disk I/O: pread/pwrite thread pool of {} (forced)", options.num_pool_threads);
  }
  return std::make_unique<ThreadPoolEngine>(options.num_pool_threads);
}

}  // namespace strata::kvcache
