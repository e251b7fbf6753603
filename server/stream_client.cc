#include "server/stream_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>

namespace strata::server {
namespace {

// A socket error that is not "try again": the stream is over.
bool Failed(ssize_t n) { return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR; }

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

StreamClient::StreamClient(int port, std::vector<std::string> requests) : port_(port) {
  for (std::string& r : requests) Add(std::move(r));
}

StreamClient::~StreamClient() {
  for (size_t i = 0; i < streams_.size(); ++i) Close(i);
}

size_t StreamClient::Add(std::string request) {
  Stream& s = streams_.emplace_back();
  s.request = std::move(request);
  s.fd = ConnectNonBlocking(port_);
  s.done = s.fd < 0;
  return streams_.size() - 1;
}

void StreamClient::Close(size_t index) {
  Stream& s = streams_[index];
  if (s.done) return;
  s.done = true;
  ::close(s.fd);
}

size_t StreamClient::num_open() const {
  size_t n = 0;
  for (const Stream& s : streams_) n += !s.done && !s.received.empty() ? 1 : 0;
  return n;
}

void StreamClient::Advance(size_t index, short revents, const DataFn& on_data) {
  Stream& s = streams_[index];
  if ((revents & POLLOUT) && s.sent < s.request.size()) {
    const ssize_t n =
        ::send(s.fd, s.request.data() + s.sent, s.request.size() - s.sent, MSG_NOSIGNAL);
    if (n > 0) s.sent += static_cast<size_t>(n);
    if (Failed(n)) {  // e.g. the connection was refused
      Close(index);
      return;
    }
  }
  if (revents & (POLLIN | POLLHUP | POLLERR)) {
    static constexpr std::string_view kDone = "data: [DONE]";
    char buf[16384];
    const ssize_t n = ::recv(s.fd, buf, sizeof(buf), 0);
    // Only the new bytes (and a marker split across reads) need searching.
    const size_t from = s.received.size() >= kDone.size() ? s.received.size() - kDone.size() : 0;
    if (n > 0) {
      s.received.append(buf, static_cast<size_t>(n));
      if (on_data) on_data(index, std::string_view(buf, static_cast<size_t>(n)));
    }
    if (n == 0 || Failed(n) || s.received.find(kDone, from) != std::string::npos) Close(index);
  }
}

absl::StatusOr<int> StreamClient::Poll(int timeout_ms, const DataFn& on_data) {
  fds_.clear();
  owners_.clear();
  for (size_t i = 0; i < streams_.size(); ++i) {
    const Stream& s = streams_[i];
    if (s.done) continue;
    fds_.push_back({s.fd, static_cast<short>(s.sent < s.request.size() ? POLLOUT : POLLIN), 0});
    owners_.push_back(i);
  }
  if (fds_.empty()) return 0;
  const int ready = ::poll(fds_.data(), fds_.size(), timeout_ms);
  if (ready < 0) return absl::InternalError("poll failed");
  for (size_t i = 0; i < fds_.size(); ++i) {
    if (fds_[i].revents != 0 && !streams_[owners_[i]].done) {
      Advance(owners_[i], fds_[i].revents, on_data);
    }
  }
  return ready;
}

absl::Status StreamClient::Run(double stall_s, const std::function<void()>& on_tick) {
  for (;;) {
    if (std::all_of(streams_.begin(), streams_.end(), [](const Stream& s) { return s.done; })) {
      return absl::OkStatus();
    }
    if (on_tick) on_tick();
    const size_t open = std::count_if(streams_.begin(), streams_.end(),
                                      [](const Stream& s) { return !s.done; });
    ASSIGN_OR_RETURN(const int ready, Poll(static_cast<int>(stall_s * 1000)));
    if (ready == 0) {
      return absl::DeadlineExceededError(
          StrCat(open, " streams made no progress for ", stall_s, " s"));
    }
  }
}

}  // namespace strata::server
