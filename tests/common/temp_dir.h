// A fresh directory (mkdtemp) for a test, removed with everything in it when the object dies.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "common/status.h"

namespace strata {

class TempDir {
 public:
  // `parent` may be another file system (e.g. /dev/shm for tmpfs).
  explicit TempDir(const std::string& parent = "/tmp") {
    std::string pattern = parent + "/strata_test_XXXXXX";
    CHECK(mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace strata
