// StreamClient: many HTTP/1.1 requests in flight at once from one thread, over non-blocking
// sockets and poll(): each request is written whole, then its response read until the server
// closes the connection or the SSE body ends with "data: [DONE]". Used by the load tests and
// bench_http and the benchmark harness's load generator, which adds requests while others run
// (Add/Poll/Close) and parses what arrives through Poll's callback. Loopback only; one thread;
// not thread-safe.
#pragma once

#include <poll.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace strata::server {

// A POST of a JSON body as raw HTTP/1.1 (keep-alive, so the server decides when to close).
std::string HttpPost(std::string_view path, std::string_view json_body);

class StreamClient {
 public:
  struct Stream {
    int fd = -1;
    std::string request;
    size_t sent = 0;
    std::string received;  // status line, headers and body as they arrived
    bool done = false;
  };

  // Receives the new bytes of stream `index` as they arrive.
  using DataFn = std::function<void(size_t index, std::string_view bytes)>;

  // Connects one socket per request to 127.0.0.1:port (connects complete during Run).
  StreamClient(int port, std::vector<std::string> requests);
  explicit StreamClient(int port) : port_(port) {}
  ~StreamClient();
  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

  // Runs until every stream is done. `on_tick` runs before each poll. Fails when no socket made
  // progress for `stall_s` seconds.
  absl::Status Run(double stall_s, const std::function<void()>& on_tick = {});

  // Connects one more stream (its request is written as the socket allows); returns its index.
  size_t Add(std::string request);
  // Hangs up on a stream now (a client that goes away); no-op when it is done.
  void Close(size_t index);
  // One poll() over the open streams: waits up to `timeout_ms`, moves bytes, hands what arrived
  // to `on_data`, which may Close any stream. Returns how many streams made progress.
  absl::StatusOr<int> Poll(int timeout_ms, const DataFn& on_data = {});

  const std::vector<Stream>& streams() const { return streams_; }
  // Streams that received something and are not done yet.
  size_t num_open() const;

 private:
  void Advance(size_t index, short revents, const DataFn& on_data);

  int port_ = 0;
  std::vector<Stream> streams_;
  std::vector<pollfd> fds_;       // scratch for Poll
  std::vector<size_t> owners_;    // fds_[i] belongs to streams_[owners_[i]]
};

}  // namespace strata::server
