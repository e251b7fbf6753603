// FaultFileSystem: a FileSystem for tests that forwards to another one (not owned) and injects
// faults chosen at run time: failed reads/writes (EIO), short reads, a flipped byte in read data,
// writes/preallocation failing with ENOSPC, and reads/writes whose completion is held back until
// the test releases it. Files are the wrapped file system's own.
//
// Thread-safe: rules may be changed from any thread while I/O is in flight. Injected failures
// complete on the FaultFileSystem's own completion thread (never inline in Submit), forwarded
// requests on the wrapped file system's. Destroy it after everything that submits to it.
#pragma once

#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "kvcache/file_system.h"

namespace strata::kvcache {

struct FaultCounts {
  int64_t failed_reads = 0;
  int64_t failed_writes = 0;
  int64_t failed_preallocates = 0;
  int64_t short_reads = 0;
  int64_t corrupted_reads = 0;
  int64_t held_reads = 0;  // completions parked so far
  int64_t held_writes = 0;
};

class FaultFileSystem : public FileSystem {
 public:
  // A rule count: how many of the next operations it hits; kAlways hits every one until reset.
  static constexpr int kAlways = -1;

  explicit FaultFileSystem(FileSystem* base);
  ~FaultFileSystem() override;  // Shutdown()

  // The next `count` reads fail with `err` (EIO by default). count 0 clears the rule.
  void FailReads(int count, int err = EIO);
  // The next `count` writes fail with `err` without touching the file.
  void FailWrites(int count, int err = EIO);
  // The next `count` Preallocate calls fail with `err` (ENOSPC by default).
  void FailPreallocate(int count, int err = ENOSPC);
  // The next `count` successful reads report at most `bytes_kept` bytes.
  void ShortReads(int count, size_t bytes_kept);
  // The next `count` successful reads get the byte at `byte_index` of the buffer inverted.
  void CorruptReads(int count, size_t byte_index);
  // The next `count` reads / writes submitted do their I/O but their completion is parked until
  // ReleaseHeld() (called after they were submitted): a deterministic "still in flight".
  void HoldReads(int count);
  void HoldWrites(int count);
  // Reports every parked completion (on the completion thread).
  void ReleaseHeld();
  FaultCounts counts() const;

  absl::Status CreateDir(const std::string& path) override { return base_->CreateDir(path); }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) override {
    return base_->ListDir(path);
  }
  absl::Status DeleteFile(const std::string& path) override { return base_->DeleteFile(path); }
  absl::StatusOr<int64_t> FileSize(const std::string& path) override {
    return base_->FileSize(path);
  }
  absl::StatusOr<std::unique_ptr<RandomRWFile>> OpenForDirectIo(const std::string& path,
                                                                bool create) override {
    return base_->OpenForDirectIo(path, create);
  }
  absl::Status Preallocate(RandomRWFile* file, int64_t bytes) override;
  void Submit(std::vector<IoRequest> batch) override;
  // Releases held writes and waits for every request that passed through here. Does not shut
  // down the wrapped file system.
  void Shutdown() override;

 private:
  struct Rule {
    int count = 0;  // remaining hits, kAlways, or 0 (off)
    int err = 0;
    size_t arg = 0;  // bytes_kept / byte_index
  };
  // Consumes one hit of `rule` if it is active. REQUIRES: mu_ held.
  static bool Take(Rule& rule);
  // Runs `fn` on the completion thread.
  void Post(std::function<void()> fn);
  void CompletionLoop();
  struct ReadFaults {
    bool short_read = false;
    size_t bytes_kept = 0;
    bool corrupt = false;
    size_t byte_index = 0;
  };
  // Wraps `r.done`: applies read faults, parks a held completion, counts the request finished.
  // `hold_epoch` >= 0: park unless ReleaseHeld() ran since submission. REQUIRES: mu_ held.
  void ForwardLocked(IoRequest& r, ReadFaults faults, int64_t hold_epoch);
  void Finished();

  FileSystem* const base_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // posted_ grew, stop_ set, or outstanding_ reached 0
  Rule fail_reads_, fail_writes_, fail_preallocate_, short_reads_, corrupt_reads_;
  Rule hold_reads_, hold_writes_;
  int64_t release_epoch_ = 0;  // bumped by ReleaseHeld()
  std::vector<std::function<void()>> held_;
  std::deque<std::function<void()>> posted_;
  int64_t outstanding_ = 0;
  bool refusing_ = false;  // Shutdown started: new requests fail inline
  bool stop_ = false;       // completion thread exits once posted_ is empty
  FaultCounts counts_;
  std::thread completer_;
};

}  // namespace strata::kvcache
