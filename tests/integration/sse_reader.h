// A streaming request made with the real curl binary in a background thread, whose SSE events
// the test can watch arrive (to act mid-stream: disconnect, send SIGTERM). Test thread only.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon.h"

namespace strata::testing {

class SseReader {
 public:
  // POSTs `json` to `url` with curl -N; `max_time_s` > 0 makes curl hang up after that long.
  SseReader(const std::string& url, const std::string& json, double max_time_s = 0) {
    body_file_ = TempPath("stream.json");
    WriteFile(body_file_, json).IgnoreError();
    std::vector<std::string> args = {"curl", "-sS", "-N", "-H", "Content-Type: application/json",
                                     "--data-binary", "@" + body_file_, url};
    if (max_time_s > 0) {
      args.insert(args.begin() + 1, {"--max-time", std::to_string(max_time_s)});
    }
    int out[2];
    if (::pipe(out) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("curl", argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    thread_ = std::thread([this, fd = out[0]] { Read(fd); });
  }
  ~SseReader() {
    Kill();
    if (thread_.joinable()) thread_.join();
    std::filesystem::remove(body_file_);
  }

  // Waits until at least `n` "data:" events arrived (or the stream ended); false on timeout.
  bool WaitForEvents(size_t n, double timeout_s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::duration<double>(timeout_s),
                        [&] { return CountEvents() >= n || done_; }) &&
           CountEvents() >= n;
  }
  // Waits for curl to exit; returns the whole body (empty on timeout).
  std::string WaitForEnd(double timeout_s) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::duration<double>(timeout_s), [&] { return done_; });
    return done_ ? body_ : "";
  }
  // The client goes away abruptly, as a killed application would.
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  size_t CountEvents() const {
    size_t n = 0;
    for (size_t at = 0; (at = body_.find("data: ", at)) != std::string::npos; at += 6) ++n;
    return n;
  }
  void Read(int fd) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) {
      std::lock_guard lock(mu_);
      body_.append(buf, static_cast<size_t>(n));
      cv_.notify_all();
    }
    ::close(fd);
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  pid_t pid_ = -1;
  std::string body_file_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string body_;
  bool done_ = false;
};

}  // namespace strata::testing
