// StreamClient: many HTTP/1.1 requests in flight at once from one thread, over non-blocking
// sockets and poll(): each request is written whole, then its response read until the server
// closes the connection or the SSE body ends with "data: [DONE]". Used by the load tests and
// bench_http (and meant for the benchmark harness's load generator). Loopback only; one thread;
// not thread-safe.
#pragma once

#include <functional>
#include <string>
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

  // Connects one socket per request to 127.0.0.1:port (connects complete during Run).
  StreamClient(int port, std::vector<std::string> requests);
  ~StreamClient();
  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

  // Runs until every stream is done. `on_tick` runs before each poll. Fails when no socket made
  // progress for `stall_s` seconds.
  absl::Status Run(double stall_s, const std::function<void()>& on_tick = {});

  const std::vector<Stream>& streams() const { return streams_; }
  // Streams that received something and are not done yet.
  size_t num_open() const;

 private:
  void Advance(Stream& s, short revents);

  std::vector<Stream> streams_;
};

}  // namespace strata::server
