#include "kvcache/file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <utility>

#include "common/logging.h"
#include "kvcache/disk_io_engine.h"

namespace strata::kvcache {


AlignedBuffer::AlignedBuffer(size_t size_bytes)
    : size_(static_cast<size_t>(RoundUp(static_cast<int64_t>(size_bytes), kDirectIoAlignment))) {
  if (size_ == 0) return;
  data_ = static_cast<std::byte*>(std::aligned_alloc(kDirectIoAlignment, size_));
  CHECK(data_ != nullptr);
  std::memset(data_, 0, size_);
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

std::shared_ptr<AlignedBufferPool> AlignedBufferPool::Create(size_t buffer_bytes,
                                                            size_t max_spare) {
  return std::shared_ptr<AlignedBufferPool>(new AlignedBufferPool(buffer_bytes, max_spare));
}

std::shared_ptr<AlignedBuffer> AlignedBufferPool::Get() {
  std::unique_ptr<AlignedBuffer> buffer;
  {
    std::lock_guard lock(mu_);
    if (!spare_.empty()) {
      buffer = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  if (!buffer) buffer = std::make_unique<AlignedBuffer>(buffer_bytes_);
  return std::shared_ptr<AlignedBuffer>(buffer.release(), [self = shared_from_this()](
                                                              AlignedBuffer* b) { self->Put(b); });
}

void AlignedBufferPool::Put(AlignedBuffer* buffer) {
  std::unique_ptr<AlignedBuffer> owned(buffer);
  std::lock_guard lock(mu_);
  if (spare_.size() < max_spare_) spare_.push_back(std::move(owned));
}

absl::StatusOr<size_t> SyncIo(FileSystem* fs, IoRequest request) {
  std::promise<absl::StatusOr<size_t>> result;
  std::future<absl::StatusOr<size_t>> future = result.get_future();
  request.done = [&result](absl::StatusOr<size_t> n) { result.set_value(std::move(n)); };
  std::vector<IoRequest> batch;
  batch.push_back(std::move(request));
  fs->Submit(std::move(batch));
  return future.get();
}

absl::Status PosixFileSystemOptions::Validate() const {
  if (queue_depth < 1 || queue_depth > 4096) {
    return absl::InvalidArgumentError("queue_depth must be in [1, 4096]");
  }
  if (num_pool_threads < 1) return absl::InvalidArgumentError("num_pool_threads must be >= 1");
  return absl::OkStatus();
}

namespace {

class PosixRandomRWFile : public RandomRWFile {
 public:
  PosixRandomRWFile(std::string path, int fd, bool direct)
      : path_(std::move(path)), fd_(fd), direct_(direct) {}
  ~PosixRandomRWFile() override { close(fd_); }

  const std::string& path() const override { return path_; }
  bool is_direct() const override { return direct_; }
  int fd() const override { return fd_; }

 private:
  const std::string path_;
  const int fd_;
  const bool direct_;
};

}  // namespace

PosixFileSystem::PosixFileSystem(PosixFileSystemOptions options) : direct_io_(options.direct_io) {
  CHECK_OK(options.Validate());
  engine_ = NewIoEngine(options);
}

PosixFileSystem::~PosixFileSystem() { Shutdown(); }

bool PosixFileSystem::uses_io_uring() const { return engine_->is_io_uring(); }

absl::Status PosixFileSystem::CreateDir(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return ErrnoStatus(ec.value(), StrCat("mkdir ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> PosixFileSystem::ListDir(const std::string& path) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return ErrnoStatus(errno, StrCat("opendir ", path));
  std::vector<std::string> names;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  closedir(dir);
  return names;
}

absl::Status PosixFileSystem::DeleteFile(const std::string& path) {
  if (unlink(path.c_str()) != 0) return ErrnoStatus(errno, StrCat("unlink ", path));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> PosixFileSystem::FileSize(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, StrCat("stat ", path));
  return static_cast<int64_t>(st.st_size);
}

absl::StatusOr<std::unique_ptr<RandomRWFile>> PosixFileSystem::OpenForDirectIo(
    const std::string& path, bool create) {
  const int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
  int fd = direct_io_ ? open(path.c_str(), flags | O_DIRECT, 0644) : -1;
  bool direct = direct_io_;
  if (direct_io_ && fd < 0 && errno == EINVAL) {  // a file system without O_DIRECT support
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) {
      LOG_WARN("O_DIRECT not supported for {}: buffered I/O with POSIX_FADV_DONTNEED", path);
    }
    direct = false;
  }
  if (!direct) fd = open(path.c_str(), flags, 0644);
  if (fd < 0) return ErrnoStatus(errno, StrCat("open ", path));
  return std::make_unique<PosixRandomRWFile>(path, fd, direct);
}

absl::Status PosixFileSystem::Preallocate(RandomRWFile* file, int64_t bytes) {
  if (fallocate(file->fd(), 0, 0, bytes) == 0) return absl::OkStatus();
  if (errno != EOPNOTSUPP) return ErrnoStatus(errno, StrCat("fallocate ", file->path()));
  // No fallocate on this file system: a sparse file of the right size still works.
  if (ftruncate(file->fd(), bytes) != 0) return ErrnoStatus(errno, StrCat("ftruncate ", file->path()));
  return absl::OkStatus();
}

void PosixFileSystem::Submit(std::vector<IoRequest> batch) { engine_->Submit(std::move(batch)); }

void PosixFileSystem::Shutdown() { engine_->Shutdown(); }

}  // namespace strata::kvcache
