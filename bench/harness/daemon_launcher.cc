#include "bench/harness/daemon_launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "bench/harness/load_generator.h"
#include "common/clock.h"

namespace strata::bench {

absl::StatusOr<std::unique_ptr<LaunchedDaemon>> LaunchedDaemon::Start(
    const std::string& binary, const std::string& config, const std::string& model,
    const std::string& log_path, double timeout_s) {
  std::vector<std::string> args = {binary, "serve", "--config", config,
                                   "--http-port", "0", "--grpc-port", "0"};
  if (!model.empty()) args.insert(args.end(), {"--model", model});
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log < 0) return absl::InternalError("bench: cannot write " + log_path);
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("bench: pipe failed");
  std::unique_ptr<LaunchedDaemon> d(new LaunchedDaemon());
  d->log_path_ = log_path;
  d->pid_ = ::fork();
  if (d->pid_ == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(log);
  absl::Status s = d->WaitForPort(out[0], timeout_s);
  ::close(out[0]);  // the daemon prints nothing else to stdout that we need
  if (!s.ok()) return absl::UnavailableError(StrCat(s.message(), "; see ", log_path));
  // Listening comes before the model is ready; /ready says when it serves.
  for (const double deadline = NowSeconds() + timeout_s; NowSeconds() < deadline;) {
    absl::StatusOr<HttpReply> r = HttpGet(d->http_port_, "/ready", "");
    if (r.ok() && r->status == 200) return d;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError("bench: the daemon was not ready in time; see " + log_path);
}

absl::Status LaunchedDaemon::WaitForPort(int fd, double timeout_s) {
  std::string text;
  for (const double deadline = NowSeconds() + timeout_s; NowSeconds() < deadline;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) return absl::UnavailableError("bench: the daemon exited before it listened");
    text.append(buf, static_cast<size_t>(n));
    const size_t at = text.find("strata: listening");
    if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
      if (std::sscanf(text.c_str() + at, "strata: listening http_port=%d", &http_port_) == 1) {
        return absl::OkStatus();
      }
      return absl::InternalError("bench: cannot read the daemon's port from: " + text);
    }
  }
  return absl::DeadlineExceededError("bench: the daemon did not listen in time");
}

int LaunchedDaemon::Stop(double timeout_s) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  for (const double deadline = NowSeconds() + timeout_s; NowSeconds() < deadline;) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  return -1;
}

LaunchedDaemon::~LaunchedDaemon() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

}  // namespace strata::bench
