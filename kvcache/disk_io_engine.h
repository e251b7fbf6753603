// IoEngine: the asynchronous half of PosixFileSystem. Two implementations:
//   - io_uring: one ring; Submit() pushes onto a pending queue and fills the submission queue
//     under `submit_mu_` (at most queue_depth requests in flight, so the completion queue never
//     overflows); one completion thread reaps CQEs, runs callbacks and tops the ring up again.
//   - a thread pool running pread/pwrite.
// Both return short transfers as-is. For buffered (non-O_DIRECT) files the transferred range is
// dropped from the page cache (posix_fadvise DONTNEED) so the disk tier does not double-cache.
// Thread-safe; callbacks run on the engine's threads.
#pragma once

#include <memory>
#include <vector>

#include "kvcache/file_system.h"

namespace strata::kvcache {

class IoEngine {
 public:
  virtual ~IoEngine() = default;
  virtual bool is_io_uring() const = 0;
  virtual void Submit(std::vector<IoRequest> batch) = 0;
  // Waits for every submitted request (callbacks included), stops the threads; later requests
  // fail inline with FailedPrecondition. Idempotent.
  virtual void Shutdown() = 0;
};

// io_uring when it initialises (unless `options.force_thread_pool`), else the thread pool. Logs
// once per process which one is used.
std::unique_ptr<IoEngine> NewIoEngine(const PosixFileSystemOptions& options);

}  // namespace strata::kvcache
