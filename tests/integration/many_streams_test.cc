// A thousand concurrent SSE streams against one daemon with two I/O threads: every stream gets
// all its tokens and [DONE], and the daemon's thread count stays flat (no thread per request).
// The client is a single-threaded poll() loop over non-blocking sockets.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "common/json.h"
#include "tests/integration/daemon.h"

namespace strata::testing {
namespace {

constexpr int kStreams = 1000;
constexpr int kTokens = 16;

struct Stream {
  int fd = -1;
  std::string request;
  size_t sent = 0;
  std::string received;
  bool done = false;
};

int ConnectNonBlocking(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));  // EINPROGRESS
  return fd;
}

std::string StreamRequest(int i) {
  const std::string body = Json{{"prompt", "stream " + std::to_string(i)},
                                {"max_tokens", kTokens},
                                {"ignore_eos", true},
                                {"stream", true}}
                               .dump();
  return "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Advances one stream by what poll reported; returns false when it failed.
bool Step(Stream& s, short revents) {
  if ((revents & POLLOUT) && s.sent < s.request.size()) {
    const ssize_t n = ::send(s.fd, s.request.data() + s.sent, s.request.size() - s.sent,
                             MSG_NOSIGNAL);
    if (n > 0) s.sent += static_cast<size_t>(n);
  }
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    char buf[8192];
    const ssize_t n = ::recv(s.fd, buf, sizeof(buf), 0);
    if (n > 0) s.received.append(buf, static_cast<size_t>(n));
    if (s.received.find("data: [DONE]") != std::string::npos || n == 0) {
      s.done = true;
      ::close(s.fd);
    }
  }
  return true;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = 0; (at = text.find(what, at)) != std::string::npos; at += what.size()) ++n;
  return n;
}

TEST(ManyStreamsTest, AThousandConcurrentStreamsOnAFlatThreadCount) {
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  ASSERT_GE(lim.rlim_cur, 2u * kStreams + 64) << "RLIMIT_NOFILE hard limit too low";
  std::string error;
  auto d = DaemonProcess::Start(
      "model:\n  path: synthetic:tiny\nengine:\n  threads: 1\n  max_num_seqs: 256\n"
      "server:\n  io_threads: 2\n  limits:\n    max_concurrent_streams: 2000\n"
      "logging:\n  level: warn\n",
      &error);
  ASSERT_NE(d, nullptr) << error;
  const int threads_at_start = d->NumThreads();

  std::vector<Stream> streams(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    streams[i].fd = ConnectNonBlocking(d->http_port());
    streams[i].request = StreamRequest(i);
  }
  int max_threads = threads_at_start;
  size_t max_open = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Stream*> owners;
    for (Stream& s : streams) {
      if (s.done) continue;
      const short events = s.sent < s.request.size() ? POLLOUT : POLLIN;
      fds.push_back({s.fd, events, 0});
      owners.push_back(&s);
    }
    if (fds.empty() || std::chrono::steady_clock::now() > deadline) break;
    size_t open = 0;
    for (Stream* s : owners) open += s->received.empty() ? 0 : 1;
    max_open = std::max(max_open, open);
    max_threads = std::max(max_threads, d->NumThreads());
    if (::poll(fds.data(), fds.size(), 200) < 0) break;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents != 0) Step(*owners[i], fds[i].revents);
    }
  }
  int complete = 0;
  for (const Stream& s : streams) {
    const bool ok = s.received.rfind("HTTP/1.1 200", 0) == 0 &&
                    Count(s.received, "data: ") == kTokens + 1 &&
                    s.received.find("data: [DONE]") != std::string::npos;
    complete += ok ? 1 : 0;
    if (!ok && complete == 0) ADD_FAILURE() << "first incomplete stream:\n" << s.received;
    if (!s.done) ::close(s.fd);
  }
  std::printf("%d of %d streams complete, at most %zu open at once, daemon threads %d -> %d\n",
              complete, kStreams, max_open, threads_at_start, max_threads);
  EXPECT_EQ(complete, kStreams);
  EXPECT_GE(max_open, static_cast<size_t>(kStreams) * 9 / 10);
  EXPECT_LE(max_threads, threads_at_start + 2)
      << "threads grew from " << threads_at_start << " to " << max_threads;
  EXPECT_EQ(d->Stop(), 0) << d->Log();
}

}  // namespace
}  // namespace strata::testing
