// FileSystem: every disk access of the KV cache's disk tier goes through this interface (LevelDB's
// Env idea), so tests can wrap it with FaultFileSystem and inject errors.
//
// Two implementations: PosixFileSystem (below; io_uring or a pread/pwrite thread pool) and
// FaultFileSystem (fault_file_system.h, a test wrapper).
//
// Threading: all methods may be called from any thread. Callbacks of Submit() run on an I/O
// thread owned by the FileSystem (the "completion thread"); they must not block for long.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "common/file.h"  // ErrnoStatus
#include "common/status.h"

namespace strata::kvcache {

// O_DIRECT needs buffer address, file offset and length aligned; 4 KiB covers every device.
inline constexpr size_t kDirectIoAlignment = 4096;

constexpr int64_t RoundUp(int64_t n, int64_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}


// Owns a zero-filled heap block aligned to kDirectIoAlignment whose size is rounded up to a
// multiple of it. Movable, not copyable.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t size_bytes);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<std::byte> span() { return {data_, size_}; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Hands out AlignedBuffers of one size and takes them back when their last shared_ptr dies (on
// any thread), keeping up to `max_spare` for reuse: a fresh buffer per I/O would cost an
// allocation, page faults and a zero fill of the whole buffer on the submitting thread. A reused
// buffer holds whatever its last user left. Thread-safe; the pool lives until its last buffer
// is back.
class AlignedBufferPool : public std::enable_shared_from_this<AlignedBufferPool> {
 public:
  static std::shared_ptr<AlignedBufferPool> Create(size_t buffer_bytes, size_t max_spare);
  std::shared_ptr<AlignedBuffer> Get();

 private:
  AlignedBufferPool(size_t buffer_bytes, size_t max_spare)
      : buffer_bytes_(buffer_bytes), max_spare_(max_spare) {}
  void Put(AlignedBuffer* buffer);

  const size_t buffer_bytes_;
  const size_t max_spare_;
  std::mutex mu_;
  std::vector<std::unique_ptr<AlignedBuffer>> spare_;  // guarded by mu_
};

// An open file for positioned reads and writes. Closed by the destructor. The FileSystem that
// opened it does the I/O (Submit); the file only says what it is.
class RandomRWFile {
 public:
  virtual ~RandomRWFile() = default;
  virtual const std::string& path() const = 0;
  // True when opened with O_DIRECT: buffers, offsets and lengths must then be 4 KiB aligned.
  virtual bool is_direct() const = 0;
  // The OS descriptor (PosixFileSystem only; -1 for files of other implementations).
  virtual int fd() const = 0;
};

// One asynchronous read or write. `buffer` (kDirectIoAlignment-aligned) must stay valid until
// `done` has run. `done` receives the number of bytes transferred, which may be less than
// `length` (a short read at the end of a file): the caller decides what that means.
struct IoRequest {
  enum class Kind { kRead, kWrite };
  Kind kind = Kind::kRead;
  RandomRWFile* file = nullptr;
  int64_t offset = 0;
  std::byte* buffer = nullptr;
  size_t length = 0;
  std::function<void(absl::StatusOr<size_t> bytes_done)> done;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Creates `path` and its missing parents; OK if it exists.
  virtual absl::Status CreateDir(const std::string& path) = 0;
  // Names (not paths) of the entries of `path`, without "." and "..", in no particular order.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) = 0;
  virtual absl::Status DeleteFile(const std::string& path) = 0;
  virtual absl::StatusOr<int64_t> FileSize(const std::string& path) = 0;
  // Opens for reading and writing with O_DIRECT where the file system allows it; otherwise
  // buffered (see RandomRWFile::is_direct).
  virtual absl::StatusOr<std::unique_ptr<RandomRWFile>> OpenForDirectIo(const std::string& path,
                                                                        bool create) = 0;
  // Reserves `bytes` of space from offset 0. ENOSPC -> ResourceExhausted("disk full ...").
  virtual absl::Status Preallocate(RandomRWFile* file, int64_t bytes) = 0;
  // Queues every request of `batch`; each `done` runs exactly once on the completion thread.
  // Never blocks on I/O. After Shutdown, requests fail with FailedPrecondition (inline).
  virtual void Submit(std::vector<IoRequest> batch) = 0;
  // Waits for every submitted request to complete (callbacks included), then refuses new ones.
  virtual void Shutdown() = 0;
};

// Submits one request and waits for it. Must not be called from a completion thread.
absl::StatusOr<size_t> SyncIo(FileSystem* fs, IoRequest request);

struct PosixFileSystemOptions {
  int queue_depth = 64;            // io_uring entries, and most requests in flight at once
  bool force_thread_pool = false;  // skip io_uring (tests cover both paths)
  int num_pool_threads = 4;        // pread/pwrite threads when io_uring is not used
  bool direct_io = true;           // false: always buffered + POSIX_FADV_DONTNEED (the fallback)

  absl::Status Validate() const;
};

class IoEngine;  // disk_io_engine.h

// The real file system: POSIX calls, asynchronous I/O through io_uring (one ring, a completion
// thread) or, when io_uring_queue_init fails or the option forces it, a pread/pwrite thread pool.
class PosixFileSystem : public FileSystem {
 public:
  explicit PosixFileSystem(PosixFileSystemOptions options = {});
  ~PosixFileSystem() override;  // Shutdown()

  // True when asynchronous I/O goes through io_uring.
  bool uses_io_uring() const;

  absl::Status CreateDir(const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) override;
  absl::Status DeleteFile(const std::string& path) override;
  absl::StatusOr<int64_t> FileSize(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<RandomRWFile>> OpenForDirectIo(const std::string& path,
                                                                bool create) override;
  absl::Status Preallocate(RandomRWFile* file, int64_t bytes) override;
  void Submit(std::vector<IoRequest> batch) override;
  void Shutdown() override;

 private:
  const bool direct_io_;
  std::unique_ptr<IoEngine> engine_;
};

}  // namespace strata::kvcache
