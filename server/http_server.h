// The asynchronous HTTP/1.1 transport under Strata's OpenAI API: Boost.Beast on Asio with a fixed
// pool of io_threads I/O threads, so that thousands of concurrent SSE streams need no thread each.
// It knows nothing about OpenAI or the engine; handlers sit on top of it.
//
// Ownership: HttpServer owns the io_context, the acceptor, the I/O threads and (through pending
// asynchronous operations) every connection. Each connection runs on its own strand. A handler
// gets one HttpResponder per request (exchange); the responder holds only a weak reference to its
// connection, so a responder kept by engine code after the peer left (or after the server was
// destroyed) costs nothing and its calls do nothing.
//
// Threads: HttpServer::Start/Stop/port/num_connections from any thread except the I/O threads.
// HttpResponder: every method from any thread.
//
// Self-protection: header/body size limits (431/413), a whole-request deadline (408), an idle
// keep-alive deadline, a write deadline and a bounded write queue for readers that stop reading,
// a connection cap (503). Error bodies the core writes itself are OpenAI error objects.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;                        // 0: an ephemeral port (see HttpServer::port())
  int io_threads = 2;                  // the only threads the server creates
  size_t max_body_bytes = 1 << 20;     // larger (Content-Length or chunked): 413
  size_t max_header_bytes = 16 << 10;  // request line + headers larger: 431
  double request_timeout_s = 30;       // from a request's first byte to its last: else 408
  double idle_timeout_s = 60;          // keep-alive connection with no request: closed silently
  double write_timeout_s = 30;         // a queued write making no progress this long: closed
  size_t max_connections = 8192;       // beyond: accept, answer 503, close
  size_t max_queued_bytes = 8 << 20;   // one exchange's unsent output beyond this: closed

  absl::Status Validate() const;
};

// One parsed request. Header names are lower-cased; values are as sent.
struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // target without the query string
  std::string query;   // after '?', undecoded; empty when absent
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string remote;  // peer "address:port", for logs
  int version = 11;    // 10 for HTTP/1.0, 11 for HTTP/1.1

  // The first header named `lower_name` (lower case), if any.
  std::optional<std::string> Header(std::string_view lower_name) const;
};

class HttpConnection;

// One exchange's reply. Thread-safe: any thread may call any method (engine output arrives on
// other threads); every socket operation runs on the connection's strand, in call order per
// calling thread. Exactly one of Send, or StartStream + Write* + End, completes the exchange;
// calls out of that order are ignored (and logged). Once the exchange was aborted (closed()),
// Send/StartStream/Write/End return at once: a producer still running cannot keep the closed
// connection alive by queueing work on it.
class HttpResponder : public std::enable_shared_from_this<HttpResponder> {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  // A complete response with Content-Length. Connection/Content-Length/Transfer-Encoding in
  // extra_headers are ignored (the core owns framing), except "Connection: close", which closes
  // the connection after this response.
  void Send(int status, std::string content_type, std::string body, Headers extra_headers = {});
  // Starts a streamed response: chunked (HTTP/1.1) or until close (HTTP/1.0), with
  // "Cache-Control: no-cache". Each Write goes to the socket promptly (TCP_NODELAY).
  void StartStream(int status, std::string content_type, Headers extra_headers = {});
  void Write(std::string chunk);  // in order; empty chunks are skipped
  void End();                     // last chunk; keep-alive continues

  // Runs `fn` once, on the strand, when the peer disconnects, a timeout fires, the write queue
  // overflows or the server stops before the exchange completed; never after it completed (Send
  // or End called). Registered after such a close, it runs at once (on the calling thread when
  // the connection is already gone). A later call replaces an earlier, not yet run, fn.
  void OnClose(std::function<void()> fn);
  // Runs `fn` on the connection's strand. Dropped without running when the connection is gone.
  void Post(std::function<void()> fn);

  // True once the exchange was aborted (the OnClose condition); false while open and after a
  // normal completion.
  bool closed() const { return aborted_.load(std::memory_order_acquire); }
  // Bytes passed to Send/Write/StartStream not yet handed to the socket.
  size_t queued_bytes() const;

 private:
  friend class HttpConnection;
  explicit HttpResponder(std::weak_ptr<HttpConnection> connection)
      : connection_(std::move(connection)) {}

  std::weak_ptr<HttpConnection> connection_;
  std::atomic<bool> aborted_{false};
  std::atomic<bool> completed_{false};  // Send or End reached the strand
  // Strand-only state.
  bool started_ = false;  // response head queued
  std::function<void()> on_close_;
};

using HttpHandler = std::function<void(HttpRequest request, std::shared_ptr<HttpResponder>)>;

class HttpServer {
 public:
  // Binds host:port, starts listening and the I/O threads. An error naming host:port when the
  // address is bad or the bind fails. `handler` is called on the connection's strand and must
  // not block; it may reply later from any thread.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                           HttpHandler handler);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  // Stops accepting, closes every connection (OnClose fires for open exchanges; a response
  // already completed by its handler is written out first, within a few seconds), joins the I/O
  // threads. Idempotent. REQUIRES: not called on an I/O thread (i.e. not from a handler).
  void Stop();
  // Open client connections, not counting those being turned away with 503.
  size_t num_connections() const { return num_connections_.load(std::memory_order_relaxed); }

 private:
  friend class HttpConnection;
  struct Io;  // the io_context, acceptor and threads (keeps Asio out of this header)

  HttpServer(HttpServerOptions options, HttpHandler handler);
  absl::Status Listen();
  void Accept();
  // False once Stop() began: the caller drops the connection.
  bool Register(uint64_t id, std::weak_ptr<HttpConnection> connection, bool counted);
  void Unregister(uint64_t id, bool counted);
  void ConnectionCreated();
  void ConnectionDestroyed();

  const HttpServerOptions options_;
  const HttpHandler handler_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> num_connections_{0};
  std::atomic<uint64_t> next_connection_id_{1};

  std::mutex mu_;  // guards connections_, num_live_, stopped_
  std::condition_variable live_cv_;
  std::unordered_map<uint64_t, std::weak_ptr<HttpConnection>> connections_;
  size_t num_live_ = 0;  // HttpConnection objects not yet destroyed
  bool stopped_ = false;

  // Declared last: destroyed first, while the members above (used by connections that die with
  // the io_context) are still alive.
  std::unique_ptr<Io> io_;
};

// The OpenAI error object the core writes for its own errors:
// {"error":{"message":...,"type":"invalid_request_error","param":null,"code":null}}
std::string HttpErrorBody(int status, std::string_view message);

}  // namespace strata::server
