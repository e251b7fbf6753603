// Read-only file access: whole-file reads and memory maps (model weights are mapped, never read).
// MappedFile is immutable after Open and may be shared by any number of threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace strata {

// Maps an errno value to a Status: ENOSPC/EDQUOT -> ResourceExhausted ("disk full"),
// ENOENT -> NotFound, EINVAL -> InvalidArgument, anything else -> Internal. `what` names the
// operation and the path; the message is "what: strerror(err)".
absl::Status ErrnoStatus(int err, std::string_view what);

absl::StatusOr<std::string> ReadFile(const std::string& path);
absl::Status WriteFile(const std::string& path, std::string_view contents);
bool FileExists(const std::string& path);

class MappedFile {
 public:
  // Maps the whole file read-only. Errors name the path and the errno text.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace strata
