// One accepted TCP connection of HttpServer (internal to server/http_*.cc): reads and parses
// requests, runs the handler, serializes responses through a bounded write queue, and enforces
// the deadlines. Everything here runs on the connection's strand, except the Queue*/Post entry
// points HttpResponder calls, which hop onto it.
//
// Life cycle per exchange:
//   kReading --request parsed--> kExchange --Send/End queued--> (write queue flushed)
//     --keep-alive--> kReading    --close--> kDraining --EOF or 1 s--> closed
//   Any state --peer EOF/reset, timeout, queue overflow, Stop--> closed (OnClose if exchange open)
//
// Ownership: pending asynchronous operations hold shared_ptrs to the connection; while an
// exchange is open it also holds itself (self_), because the handler may answer only much later.
#pragma once

#include <utility>  // Boost 1.74 Asio with g++ 12 in C++20 needs it before asio.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/http_server.h"

namespace strata::server {

class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  // `server` outlives every connection (it destroys its io_context before anything else).
  // reject: answer 503 and close without reading a request.
  HttpConnection(HttpServer* server, uint64_t id, boost::asio::ip::tcp::socket socket,
                 bool reject);
  ~HttpConnection();

  void Start();

  // HttpResponder entry points, any thread: they post to the strand.
  void QueueSend(std::shared_ptr<HttpResponder> responder, int status, std::string content_type,
                 std::string body, HttpResponder::Headers extra);
  void QueueStartStream(std::shared_ptr<HttpResponder> responder, int status,
                        std::string content_type, HttpResponder::Headers extra);
  void QueueWrite(std::shared_ptr<HttpResponder> responder, std::string chunk);
  void QueueEnd(std::shared_ptr<HttpResponder> responder);
  void QueueOnClose(std::shared_ptr<HttpResponder> responder, std::function<void()> fn);
  void Post(std::function<void()> fn);
  // Server shutdown, on the strand: an exchange still open is aborted (its OnClose fires); a
  // response that is complete but not yet written goes out first and then the connection closes
  // (so a stream that ended just before Stop keeps its tail); an idle connection closes at once.
  void PostShutdown();

  size_t queued_bytes() const { return queued_bytes_.load(std::memory_order_relaxed); }

 private:
  // kFailing: an error response is being written; input is dropped.
  enum class State { kReading, kExchange, kFailing, kDraining, kClosed };
  enum class AfterFlush { kNothing, kNextRequest, kClose };
  using Clock = std::chrono::steady_clock;

  // Reading and parsing.
  void DoRead();
  void OnRead(boost::system::error_code ec, size_t bytes);
  void ParseBuffered();
  void MaybeSendContinue();
  void FailRequest(boost::system::error_code ec);
  HttpRequest TakeRequest();  // moves the parsed request out; sets keep_alive_, head_request_
  void Dispatch();
  void StartNextRequest();
  void ArmReadTimer(double seconds);
  void OnReadTimer(boost::system::error_code ec);

  // Writing.
  bool IsCurrent(const HttpResponder* responder) const;
  std::string Head(int status, std::string_view content_type, size_t content_length,
                   bool stream, const HttpResponder::Headers& extra);
  void Enqueue(std::string bytes);
  void CompleteExchange();
  void SendErrorAndClose(int status, std::string_view message);
  void DoWrite();
  void OnWrite(boost::system::error_code ec);
  void OnWriteTimer(boost::system::error_code ec);
  void RunAfterFlush();

  // Closing. Abort closes at once and fires the open exchange's OnClose.
  void Abort(std::string_view why);
  void Shutdown();
  void StartDrain();

  // Counts the connection as live in its server from construction until the very end of its
  // destruction: declared first, so destroyed after the socket and timers (which need the
  // server's io_context). HttpServer::Stop waits for the count to reach zero before it destroys
  // the io_context, whichever thread drops the last reference.
  class LiveToken {
   public:
    explicit LiveToken(HttpServer* server);
    ~LiveToken();
    LiveToken(const LiveToken&) = delete;
    LiveToken& operator=(const LiveToken&) = delete;

   private:
    HttpServer* const server_;
  };

  HttpServer* const server_;
  const LiveToken live_;
  const HttpServerOptions& options_;
  const uint64_t id_;
  boost::asio::ip::tcp::socket socket_;
  const boost::asio::any_io_executor executor_;  // the connection's strand
  boost::asio::steady_timer read_timer_;
  boost::asio::steady_timer write_timer_;
  const bool reject_;
  const bool counted_;  // one of num_connections (not a 503 rejection)
  std::string remote_;

  State state_ = State::kReading;
  boost::beast::flat_buffer in_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  bool request_started_ = false;  // a byte of the current request arrived
  bool continue_sent_ = false;
  bool read_in_flight_ = false;

  // The open exchange.
  std::shared_ptr<HttpResponder> responder_;
  std::shared_ptr<HttpConnection> self_;
  int request_version_ = 11;
  bool keep_alive_ = true;
  bool head_request_ = false;
  bool chunked_ = false;   // streaming with chunked framing (HTTP/1.1)
  bool peer_eof_ = false;  // the peer half-closed after its request was answered

  std::deque<std::string> out_;
  std::vector<std::string> writing_;
  size_t writing_bytes_ = 0;
  bool write_in_flight_ = false;
  AfterFlush after_flush_ = AfterFlush::kNothing;
  std::atomic<size_t> queued_bytes_{0};
};

}  // namespace strata::server
