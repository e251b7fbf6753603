#include "kvcache/fault_file_system.h"

#include <utility>

namespace strata::kvcache {

FaultFileSystem::FaultFileSystem(FileSystem* base) : base_(base) {
  completer_ = std::thread([this] { CompletionLoop(); });
}

FaultFileSystem::~FaultFileSystem() { Shutdown(); }

void FaultFileSystem::FailReads(int count, int err) {
  std::lock_guard lock(mu_);
  fail_reads_ = {count, err, 0};
}

void FaultFileSystem::FailWrites(int count, int err) {
  std::lock_guard lock(mu_);
  fail_writes_ = {count, err, 0};
}

void FaultFileSystem::FailPreallocate(int count, int err) {
  std::lock_guard lock(mu_);
  fail_preallocate_ = {count, err, 0};
}

void FaultFileSystem::ShortReads(int count, size_t bytes_kept) {
  std::lock_guard lock(mu_);
  short_reads_ = {count, 0, bytes_kept};
}

void FaultFileSystem::CorruptReads(int count, size_t byte_index) {
  std::lock_guard lock(mu_);
  corrupt_reads_ = {count, 0, byte_index};
}

void FaultFileSystem::HoldReads(int count) {
  std::lock_guard lock(mu_);
  hold_reads_ = {count, 0, 0};
}

void FaultFileSystem::HoldWrites(int count) {
  std::lock_guard lock(mu_);
  hold_writes_ = {count, 0, 0};
}

void FaultFileSystem::ReleaseHeld() {
  std::lock_guard lock(mu_);
  ++release_epoch_;
  for (auto& fn : held_) posted_.push_back(std::move(fn));
  held_.clear();
  cv_.notify_all();
}

FaultCounts FaultFileSystem::counts() const {
  std::lock_guard lock(mu_);
  return counts_;
}

bool FaultFileSystem::Take(Rule& rule) {
  if (rule.count == 0) return false;
  if (rule.count > 0) --rule.count;
  return true;
}

absl::Status FaultFileSystem::Preallocate(RandomRWFile* file, int64_t bytes) {
  {
    std::lock_guard lock(mu_);
    if (Take(fail_preallocate_)) {
      ++counts_.failed_preallocates;
      return ErrnoStatus(fail_preallocate_.err, StrCat("fallocate ", file->path(), " (injected)"));
    }
  }
  return base_->Preallocate(file, bytes);
}

void FaultFileSystem::Submit(std::vector<IoRequest> batch) {
  std::vector<IoRequest> forward;
  std::unique_lock lock(mu_);
  if (refusing_) {
    lock.unlock();
    for (IoRequest& r : batch) r.done(absl::FailedPreconditionError("file system is shut down"));
    return;
  }
  for (IoRequest& r : batch) {
    ++outstanding_;
    const bool is_read = r.kind == IoRequest::Kind::kRead;
    Rule& fail = is_read ? fail_reads_ : fail_writes_;
    if (Take(fail)) {
      ++(is_read ? counts_.failed_reads : counts_.failed_writes);
      absl::Status status =
          ErrnoStatus(fail.err, StrCat(is_read ? "read " : "write ", r.file->path(), " (injected)"));
      posted_.push_back([this, done = std::move(r.done), status] {
        done(status);
        Finished();
      });
      cv_.notify_all();
      continue;
    }
    ReadFaults faults;
    if (is_read && Take(short_reads_)) faults = {true, short_reads_.arg, false, 0};
    if (is_read && Take(corrupt_reads_)) {
      faults.corrupt = true;
      faults.byte_index = corrupt_reads_.arg;
    }
    const bool hold = Take(is_read ? hold_reads_ : hold_writes_);
    ForwardLocked(r, faults, hold ? release_epoch_ : -1);
    forward.push_back(std::move(r));
  }
  lock.unlock();
  if (!forward.empty()) base_->Submit(std::move(forward));
}

void FaultFileSystem::ForwardLocked(IoRequest& r, ReadFaults faults, int64_t hold_epoch) {
  const bool is_read = r.kind == IoRequest::Kind::kRead;
  r.done = [this, done = std::move(r.done), buffer = r.buffer, faults, hold_epoch,
            is_read](absl::StatusOr<size_t> n) {
    std::unique_lock lock(mu_);
    if (n.ok() && faults.short_read && *n > faults.bytes_kept) {
      n = faults.bytes_kept;
      ++counts_.short_reads;
    }
    if (n.ok() && faults.corrupt && faults.byte_index < *n) {
      buffer[faults.byte_index] ^= std::byte{0xFF};
      ++counts_.corrupted_reads;
    }
    if (hold_epoch >= 0 && hold_epoch == release_epoch_) {
      ++(is_read ? counts_.held_reads : counts_.held_writes);
      held_.push_back([this, done, n] {
        done(n);
        Finished();
      });
      return;
    }
    lock.unlock();
    done(n);
    Finished();
  };
}

void FaultFileSystem::Finished() {
  std::lock_guard lock(mu_);
  --outstanding_;
  cv_.notify_all();
}

void FaultFileSystem::CompletionLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !posted_.empty(); });
    if (posted_.empty()) return;
    std::function<void()> fn = std::move(posted_.front());
    posted_.pop_front();
    lock.unlock();
    fn();
    lock.lock();
  }
}

void FaultFileSystem::Shutdown() {
  std::unique_lock lock(mu_);
  if (refusing_) return;
  refusing_ = true;
  ++release_epoch_;
  for (auto& fn : held_) posted_.push_back(std::move(fn));
  held_.clear();
  cv_.notify_all();
  cv_.wait(lock, [this] { return outstanding_ == 0; });
  stop_ = true;
  cv_.notify_all();
  lock.unlock();
  completer_.join();
}

}  // namespace strata::kvcache
