// Starts `strata serve` as a child process for a benchmark run (so that a comparison runs each
// config against a fresh daemon with an empty cache), learns its HTTP port from the line
// `strata: listening http_port=N grpc_port=M`, waits for /ready, and stops it with SIGTERM.
// Its stdout and stderr go to a log file. Owned by the bench command's thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace strata::bench {

class LaunchedDaemon {
 public:
  // `binary` serve --config `config` --http-port 0 --grpc-port 0 [--model `model`].
  static absl::StatusOr<std::unique_ptr<LaunchedDaemon>> Start(const std::string& binary,
                                                               const std::string& config,
                                                               const std::string& model,
                                                               const std::string& log_path,
                                                               double timeout_s = 300);
  ~LaunchedDaemon();  // SIGKILL if still running
  LaunchedDaemon(const LaunchedDaemon&) = delete;
  LaunchedDaemon& operator=(const LaunchedDaemon&) = delete;

  int http_port() const { return http_port_; }
  // SIGTERM, then waits (SIGKILL after `timeout_s`); returns the exit status (-1: killed).
  int Stop(double timeout_s = 60);

 private:
  LaunchedDaemon() = default;
  absl::Status WaitForPort(int fd, double timeout_s);

  pid_t pid_ = -1;
  int http_port_ = 0;
  std::string log_path_;
};

}  // namespace strata::bench
