// A real `strata serve` process for integration tests: started on ephemeral ports from a YAML
// config, its ports read from the one line it prints on stdout, its log captured in a file, and
// stopped by a signal the way an operator (or Kubernetes) stops it.
//
// Used from the test's main thread only.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/file.h"

namespace strata::testing {

inline std::string TempPath(const std::string& name) {
  static int counter = 0;
  return std::filesystem::temp_directory_path() /
         ("strata_it_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + name);
}

// A TCP socket bound to 127.0.0.1 on an ephemeral port (not listening: connections to it are
// refused while it stays open); sets *port. The caller closes it.
inline int BindLoopback(int* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// A loopback port that was free a moment ago (for peers that cannot report an ephemeral one,
// such as Prometheus).
inline int FreePort() {
  int port = 0;
  ::close(BindLoopback(&port));
  return port;
}

inline std::string StoriesDir() { return STRATA_SOURCE_DIR "/../shared/models/stories260k"; }
inline bool HaveStories() { return std::filesystem::exists(StoriesDir() + "/model.safetensors"); }

class DaemonProcess {
 public:
  // Writes `yaml` to a file and runs `strata serve --config FILE` plus `extra_args`, on ephemeral
  // ports unless extra_args name --http-port / --grpc-port. Returns null (and fills *error with the log) if it did not print its
  // listening line within `timeout_s`.
  static std::unique_ptr<DaemonProcess> Start(const std::string& yaml, std::string* error,
                                              const std::vector<std::string>& extra_args = {},
                                              double timeout_s = 120) {
    auto d = std::unique_ptr<DaemonProcess>(new DaemonProcess);
    d->config_path_ = TempPath("config.yaml");
    d->log_path_ = TempPath("daemon.log");
    if (!WriteFile(d->config_path_, yaml).ok()) {
      *error = "cannot write " + d->config_path_;
      return nullptr;
    }
    std::vector<std::string> args = {STRATA_BINARY_DIR "/bin/strata", "serve", "--config",
                                     d->config_path_};
    for (const char* port : {"--http-port", "--grpc-port"}) {
      if (std::find(extra_args.begin(), extra_args.end(), port) == extra_args.end()) {
        args.insert(args.end(), {port, "0"});
      }
    }
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    if (!d->Spawn(args) || !d->ReadPorts(timeout_s)) {
      *error = "daemon did not start; log:\n" + d->Log();
      return nullptr;
    }
    return d;
  }

  ~DaemonProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (stdout_fd_ >= 0) ::close(stdout_fd_);
    std::error_code ec;
    std::filesystem::remove(config_path_, ec);
    std::filesystem::remove(log_path_, ec);
  }

  // Sends `sig` and waits up to `timeout_s` for the exit; returns the exit code, or -1 when it
  // was killed by a signal or had to be killed after the timeout.
  int Stop(int sig = SIGTERM, double timeout_s = 60) {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, sig);
    return Wait(timeout_s);
  }

  void Signal(int sig) { ::kill(pid_, sig); }

  // Waits for the process to exit on its own (after a Signal).
  int Wait(double timeout_s) {
    const auto deadline = Now() + timeout_s;
    int status = 0;
    while (Now() < deadline) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return exit_code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    exit_code_ = -1;
    return -1;
  }

  // True until the process exited (reaps it when it has).
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return true;
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return false;
  }
  int http_port() const { return http_port_; }
  int grpc_port() const { return grpc_port_; }
  pid_t pid() const { return pid_; }
  std::string url(const std::string& path = "") const {
    return "http://127.0.0.1:" + std::to_string(http_port_) + path;
  }
  std::string Log() const { return ReadFile(log_path_).value_or(""); }

  // Threads of the daemon process right now (from /proc).
  int NumThreads() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
    }
    return -1;
  }

 private:
  DaemonProcess() = default;
  static double Now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  bool Spawn(const std::vector<std::string>& args) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return false;
    pid_ = ::fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      const int log = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(log, STDERR_FILENO);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    stdout_fd_ = out[0];
    return true;
  }

  // Reads stdout until "strata: listening http_port=N grpc_port=M".
  bool ReadPorts(double timeout_s) {
    const auto deadline = Now() + timeout_s;
    std::string text;
    while (Now() < deadline) {
      pollfd p{stdout_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[512];
      const ssize_t n = ::read(stdout_fd_, buf, sizeof(buf));
      if (n <= 0) return false;  // exited before listening
      text.append(buf, static_cast<size_t>(n));
      const size_t at = text.find("strata: listening");
      if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
        return std::sscanf(text.c_str() + at, "strata: listening http_port=%d grpc_port=%d",
                           &http_port_, &grpc_port_) == 2;
      }
    }
    return false;
  }

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int exit_code_ = -1;
  int http_port_ = -1;
  int grpc_port_ = -1;
  std::string config_path_;
  std::string log_path_;
};

// Runs a shell command; returns its stdout, and its exit status in *status.
inline std::string Shell(const std::string& command, int* status = nullptr) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int s = ::pclose(pipe);
  if (status != nullptr) *status = WIFEXITED(s) ? WEXITSTATUS(s) : -1;
  return out;
}

inline std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

struct CurlResult {
  int http_code = 0;   // 0: no response (connection failed)
  std::string body;
};

// One request with the real curl binary. `body` (JSON) is sent from a file so nothing is
// reinterpreted by the shell; extra holds more curl arguments (headers, -N, --max-time).
inline CurlResult Curl(const std::string& method, const std::string& url,
                       const std::string& body = "", const std::string& extra = "") {
  std::string cmd = "curl -sS -X " + method + " -o - -w '\\n%{http_code}' " + extra;
  std::string body_file;
  if (!body.empty()) {
    body_file = TempPath("body.json");
    WriteFile(body_file, body).IgnoreError();
    cmd += " -H 'Content-Type: application/json' --data-binary @" + body_file;
  }
  cmd += " " + ShellQuote(url) + " 2>/dev/null";
  CurlResult r;
  std::string out = Shell(cmd);
  if (!body_file.empty()) std::filesystem::remove(body_file);
  const size_t nl = out.rfind('\n');
  if (nl == std::string::npos) return r;
  r.http_code = std::atoi(out.c_str() + nl + 1);
  r.body = out.substr(0, nl);
  return r;
}

// The value of the first sample of metric `name` whose label set contains `label` (e.g.
// `status="cancelled"`; "" = any) in a Prometheus text exposition; -1 when there is none.
inline double MetricSample(const std::string& exposition, const std::string& name,
                           const std::string& label = "") {
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != ' ' && next != '{') continue;
    if (!label.empty() && line.find(label) == std::string::npos) continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

// Stops (SIGTERM) and deletes a daemon a test suite shared; returns its exit code (0 when there
// was none) and its log in *log.
inline int StopAndDelete(DaemonProcess*& d, std::string* log) {
  if (d == nullptr) return 0;
  const int code = d->Stop();
  *log = d->Log();
  delete d;
  d = nullptr;
  return code;
}

// Scrapes the daemon's /metrics until `name` reads `value` (or `timeout_s` passes); returns the
// last exposition, for the caller's assertions and messages.
inline std::string WaitForMetric(const DaemonProcess& d, const std::string& name, double value,
                                 double timeout_s = 5) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  std::string exposition;
  do {
    exposition = Curl("GET", d.url("/metrics")).body;
    if (MetricSample(exposition, name) == value) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  } while (std::chrono::steady_clock::now() < deadline);
  return exposition;
}

}  // namespace strata::testing
