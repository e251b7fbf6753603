#include "server/stream_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace strata::server {
namespace {

int ConnectNonBlocking(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));  // EINPROGRESS: poll finishes it
  return fd;
}

}  // namespace

std::string HttpPost(std::string_view path, std::string_view json_body) {
  return StrCat("POST ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n",
                "Content-Length: ", json_body.size(), "\r\n\r\n", json_body);
}

StreamClient::StreamClient(int port, std::vector<std::string> requests)
    : streams_(requests.size()) {
  for (size_t i = 0; i < requests.size(); ++i) {
    streams_[i].request = std::move(requests[i]);
    streams_[i].fd = ConnectNonBlocking(port);
    streams_[i].done = streams_[i].fd < 0;
  }
}

StreamClient::~StreamClient() {
  for (Stream& s : streams_) {
    if (!s.done) ::close(s.fd);
  }
}

size_t StreamClient::num_open() const {
  size_t n = 0;
  for (const Stream& s : streams_) n += !s.done && !s.received.empty() ? 1 : 0;
  return n;
}

void StreamClient::Advance(Stream& s, short revents) {
  if ((revents & POLLOUT) && s.sent < s.request.size()) {
    const ssize_t n =
        ::send(s.fd, s.request.data() + s.sent, s.request.size() - s.sent, MSG_NOSIGNAL);
    if (n > 0) s.sent += static_cast<size_t>(n);
  }
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    static constexpr std::string_view kDone = "data: [DONE]";
    char buf[16384];
    const ssize_t n = ::recv(s.fd, buf, sizeof(buf), 0);
    // Only the new bytes (and a marker split across reads) need searching.
    const size_t from = s.received.size() >= kDone.size() ? s.received.size() - kDone.size() : 0;
    if (n > 0) s.received.append(buf, static_cast<size_t>(n));
    if (n == 0 || s.received.find(kDone, from) != std::string::npos) {
      s.done = true;
      ::close(s.fd);
    }
  }
}

absl::Status StreamClient::Run(double stall_s, const std::function<void()>& on_tick) {
  std::vector<pollfd> fds;
  std::vector<Stream*> owners;
  for (;;) {
    fds.clear();
    owners.clear();
    for (Stream& s : streams_) {
      if (s.done) continue;
      const short events = s.sent < s.request.size() ? POLLOUT : POLLIN;
      fds.push_back({s.fd, events, 0});
      owners.push_back(&s);
    }
    if (fds.empty()) return absl::OkStatus();
    if (on_tick) on_tick();
    const int ready = ::poll(fds.data(), fds.size(), static_cast<int>(stall_s * 1000));
    if (ready == 0) {
      return absl::DeadlineExceededError(
          StrCat(fds.size(), " streams made no progress for ", stall_s, " s"));
    }
    if (ready < 0) return absl::InternalError("poll failed");
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents != 0) Advance(*owners[i], fds[i].revents);
    }
  }
}

}  // namespace strata::server
