#include "server/http_connection.h"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>
#include <cctype>
#include <exception>
#include <limits>

#include "common/logging.h"
#include "common/status.h"

namespace strata::server {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using tcp = net::ip::tcp;

constexpr size_t kReadChunkBytes = 16 << 10;
// One async_write carries at most this much, so the write deadline measures real progress.
constexpr size_t kMaxWriteBatchBytes = 256 << 10;
// After an error response or Connection: close, input is read and dropped this long so that the
// peer sees the response instead of a reset caused by its unread request bytes.
constexpr double kDrainTimeoutS = 1.0;

std::string ToString(beast::string_view s) { return std::string(s.data(), s.size()); }

std::string Lower(beast::string_view s) {
  std::string out(s.data(), s.size());
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::chrono::steady_clock::duration Seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

std::string StatusLine(int status) {
  const http::status code = http::int_to_status(static_cast<unsigned>(status));
  beast::string_view reason =
      code == http::status::unknown ? beast::string_view("Status") : http::obsolete_reason(code);
  return StrCat("HTTP/1.1 ", status, " ", std::string_view(reason.data(), reason.size()), "\r\n");
}

}  // namespace

HttpConnection::HttpConnection(HttpServer* server, uint64_t id, tcp::socket socket, bool reject)
    : server_(server),
      live_(server),
      options_(server->options_),
      id_(id),
      socket_(std::move(socket)),
      executor_(socket_.get_executor()),
      read_timer_(executor_),
      write_timer_(executor_),
      reject_(reject),
      counted_(!reject) {}

HttpConnection::~HttpConnection() = default;

HttpConnection::LiveToken::LiveToken(HttpServer* server) : server_(server) {
  server_->ConnectionCreated();
}

HttpConnection::LiveToken::~LiveToken() { server_->ConnectionDestroyed(); }

void HttpConnection::Start() {
  net::post(executor_, [self = shared_from_this()] {
    error_code ec;
    self->socket_.set_option(tcp::no_delay(true), ec);
    const tcp::endpoint peer = self->socket_.remote_endpoint(ec);
    if (!ec) self->remote_ = StrCat(peer.address().to_string(), ":", peer.port());
    if (self->reject_) {
      self->SendErrorAndClose(503, "too many connections; retry later");
      return;
    }
    self->ArmReadTimer(self->options_.idle_timeout_s);
    self->DoRead();
  });
}

// ---- Reading and parsing ----------------------------------------------------------------------

void HttpConnection::DoRead() {
  if (read_in_flight_ || state_ == State::kClosed) return;
  // During an exchange the read only watches for EOF; pipelined bytes past this wait unread.
  if (state_ == State::kExchange &&
      in_.size() >= options_.max_header_bytes + options_.max_body_bytes) {
    return;
  }
  read_in_flight_ = true;
  socket_.async_read_some(in_.prepare(kReadChunkBytes),
                          [self = shared_from_this()](error_code ec, size_t bytes) {
                            self->OnRead(ec, bytes);
                          });
}

void HttpConnection::OnRead(error_code ec, size_t bytes) {
  read_in_flight_ = false;
  if (state_ == State::kClosed) return;
  if (ec) {
    // A peer that half-closes after a completed response still gets it; any other end of input
    // during an exchange means the client is gone.
    if (ec == net::error::eof && state_ == State::kExchange && !responder_) {
      peer_eof_ = true;
      after_flush_ = AfterFlush::kClose;
      return;
    }
    Abort(StrCat("read: ", ec.message()));
    return;
  }
  in_.commit(bytes);
  switch (state_) {
    case State::kFailing:
    case State::kDraining:
      in_.consume(in_.size());
      DoRead();
      return;
    case State::kExchange:
      DoRead();
      return;
    case State::kReading:
      if (!request_started_) {
        request_started_ = true;
        ArmReadTimer(options_.request_timeout_s);
      }
      ParseBuffered();
      return;
    case State::kClosed:
      return;
  }
}

void HttpConnection::ParseBuffered() {
  if (!parser_) {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(options_.max_header_bytes));
    parser_->body_limit(options_.max_body_bytes);
    parser_->eager(true);
    continue_sent_ = false;
  }
  while (in_.size() > 0) {
    error_code ec;
    const size_t used = parser_->put(in_.data(), ec);
    in_.consume(used);
    if (ec == http::error::need_more) break;
    if (ec) {
      FailRequest(ec);
      return;
    }
    if (parser_->is_done()) {
      Dispatch();
      return;
    }
    if (used == 0) break;
  }
  MaybeSendContinue();
  DoRead();
}

void HttpConnection::MaybeSendContinue() {
  if (continue_sent_ || !parser_->is_header_done()) return;
  continue_sent_ = true;
  const auto& req = parser_->get();
  if (req.version() >= 11 && IEquals(ToString(req[http::field::expect]), "100-continue")) {
    Enqueue("HTTP/1.1 100 Continue\r\n\r\n");
    DoWrite();
  }
}

void HttpConnection::FailRequest(error_code ec) {
  if (ec == http::error::header_limit) {
    SendErrorAndClose(431, StrCat("request header fields exceed ", options_.max_header_bytes,
                                  " bytes"));
  } else if (ec == http::error::body_limit) {
    SendErrorAndClose(413, StrCat("request body exceeds ", options_.max_body_bytes, " bytes"));
  } else {
    SendErrorAndClose(400, StrCat("malformed HTTP request: ", ec.message()));
  }
}

HttpRequest HttpConnection::TakeRequest() {
  http::request<http::string_body> req = parser_->release();
  parser_.reset();
  HttpRequest out;
  out.method = ToString(req.method_string());
  const std::string target = ToString(req.target());
  const size_t q = target.find('?');
  out.path = target.substr(0, q);
  if (q != std::string::npos) out.query = target.substr(q + 1);
  for (const auto& field : req) out.headers.emplace_back(Lower(field.name_string()), ToString(field.value()));
  out.body = std::move(req.body());
  out.remote = remote_;
  out.version = static_cast<int>(req.version());
  keep_alive_ = req.keep_alive();
  head_request_ = req.method() == http::verb::head;
  return out;
}

void HttpConnection::Dispatch() {
  HttpRequest request = TakeRequest();
  request_started_ = false;
  state_ = State::kExchange;
  read_timer_.cancel();
  request_version_ = request.version;
  chunked_ = false;
  responder_ = std::shared_ptr<HttpResponder>(new HttpResponder(weak_from_this()));
  self_ = shared_from_this();
  DoRead();  // notices a peer that leaves while the handler works
  const std::shared_ptr<HttpResponder> responder = responder_;
  try {
    server_->handler_(std::move(request), responder);
  } catch (const std::exception& e) {
    LOG_ERROR("http {}: handler threw: {}", remote_, e.what());
    if (IsCurrent(responder.get()) && !responder->started_) {
      responder->started_ = true;
      const std::string body = HttpErrorBody(500, "internal error in request handler");
      Enqueue(Head(500, "application/json", body.size(), /*stream=*/false, {}));
      Enqueue(body);
      CompleteExchange();
    } else {
      Abort("handler threw");
    }
  }
}

void HttpConnection::StartNextRequest() {
  state_ = State::kReading;
  self_.reset();
  request_started_ = in_.size() > 0;
  ArmReadTimer(request_started_ ? options_.request_timeout_s : options_.idle_timeout_s);
  if (request_started_) {
    ParseBuffered();
  } else {
    DoRead();
  }
}

void HttpConnection::ArmReadTimer(double seconds) {
  read_timer_.expires_after(Seconds(seconds));
  read_timer_.async_wait([self = shared_from_this()](error_code ec) { self->OnReadTimer(ec); });
}

void HttpConnection::OnReadTimer(error_code ec) {
  if (ec == net::error::operation_aborted || state_ == State::kClosed) return;
  if (read_timer_.expiry() > Clock::now()) return;  // re-armed after this wait was queued
  if (state_ == State::kDraining) {
    Abort("drained");
  } else if (state_ == State::kReading && request_started_) {
    SendErrorAndClose(408, StrCat("request not received within ", options_.request_timeout_s,
                                  " s"));
  } else if (state_ == State::kReading) {
    Abort("idle timeout");
  }
}

// ---- Writing ----------------------------------------------------------------------------------

bool HttpConnection::IsCurrent(const HttpResponder* responder) const {
  return state_ == State::kExchange && responder_.get() == responder;
}

std::string HttpConnection::Head(int status, std::string_view content_type,
                                 size_t content_length, bool stream,
                                 const HttpResponder::Headers& extra) {
  if (status < 100 || status > 999) {
    LOG_ERROR("http {}: handler gave status {}; sending 500", remote_, status);
    status = 500;
  }
  std::string head = StatusLine(status);
  if (!content_type.empty()) head += StrCat("Content-Type: ", content_type, "\r\n");
  if (stream) {
    head += "Cache-Control: no-cache\r\n";
    if (chunked_) head += "Transfer-Encoding: chunked\r\n";
  } else {
    head += StrCat("Content-Length: ", content_length, "\r\n");
  }
  for (const auto& [name, value] : extra) {
    if (name.empty() || name.find_first_of("\r\n:") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos) {
      LOG_WARN("http {}: dropped a response header with a bad name or value", remote_);
      continue;
    }
    if (IEquals(name, "connection")) {
      if (IEquals(value, "close")) keep_alive_ = false;
      continue;
    }
    if (IEquals(name, "content-length") || IEquals(name, "transfer-encoding")) continue;
    head += StrCat(name, ": ", value, "\r\n");
  }
  head += keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return head;
}

void HttpConnection::Enqueue(std::string bytes) {
  if (bytes.empty()) return;
  queued_bytes_.fetch_add(bytes.size(), std::memory_order_relaxed);
  out_.push_back(std::move(bytes));
}

void HttpConnection::CompleteExchange() {
  responder_->completed_.store(true, std::memory_order_release);
  responder_->on_close_ = nullptr;
  responder_.reset();
  after_flush_ = keep_alive_ && !peer_eof_ ? AfterFlush::kNextRequest : AfterFlush::kClose;
  DoWrite();
}

void HttpConnection::SendErrorAndClose(int status, std::string_view message) {
  LOG_DEBUG("http {}: {} {}", remote_, status, message);
  state_ = State::kFailing;
  read_timer_.cancel();
  parser_.reset();
  in_.consume(in_.size());
  keep_alive_ = false;
  const std::string body = HttpErrorBody(status, message);
  Enqueue(Head(status, "application/json", body.size(), /*stream=*/false, {}));
  Enqueue(body);
  after_flush_ = AfterFlush::kClose;
  DoRead();  // drops the rest of the request, notices EOF
  DoWrite();
}

void HttpConnection::DoWrite() {
  if (write_in_flight_ || state_ == State::kClosed) return;
  if (out_.empty()) {
    RunAfterFlush();
    return;
  }
  writing_.clear();
  writing_bytes_ = 0;
  while (!out_.empty() &&
         (writing_.empty() || writing_bytes_ + out_.front().size() <= kMaxWriteBatchBytes)) {
    writing_bytes_ += out_.front().size();
    writing_.push_back(std::move(out_.front()));
    out_.pop_front();
  }
  std::vector<net::const_buffer> buffers;
  buffers.reserve(writing_.size());
  for (const std::string& s : writing_) buffers.push_back(net::buffer(s));
  write_in_flight_ = true;
  write_timer_.expires_after(Seconds(options_.write_timeout_s));
  write_timer_.async_wait([self = shared_from_this()](error_code ec) { self->OnWriteTimer(ec); });
  net::async_write(socket_, buffers, [self = shared_from_this()](error_code ec, size_t) {
    self->OnWrite(ec);
  });
}

void HttpConnection::OnWrite(error_code ec) {
  write_in_flight_ = false;
  write_timer_.cancel();
  writing_.clear();
  if (state_ == State::kClosed) return;
  if (ec) {
    Abort(StrCat("write: ", ec.message()));
    return;
  }
  queued_bytes_.fetch_sub(writing_bytes_, std::memory_order_relaxed);
  writing_bytes_ = 0;
  DoWrite();
}

void HttpConnection::OnWriteTimer(error_code ec) {
  if (ec == net::error::operation_aborted || state_ == State::kClosed || !write_in_flight_) return;
  if (write_timer_.expiry() > Clock::now()) return;
  Abort(StrCat("no write progress within ", options_.write_timeout_s, " s"));
}

void HttpConnection::RunAfterFlush() {
  const AfterFlush next = after_flush_;
  after_flush_ = AfterFlush::kNothing;
  if (next == AfterFlush::kNextRequest) {
    StartNextRequest();
  } else if (next == AfterFlush::kClose) {
    StartDrain();
  }
}

// ---- Responder entry points (any thread) ------------------------------------------------------

void HttpConnection::QueueSend(std::shared_ptr<HttpResponder> responder, int status,
                               std::string content_type, std::string body,
                               HttpResponder::Headers extra) {
  net::post(executor_, [self = shared_from_this(), r = std::move(responder), status,
                        content_type = std::move(content_type), body = std::move(body),
                        extra = std::move(extra)]() mutable {
    if (!self->IsCurrent(r.get()) || r->started_) {
      LOG_DEBUG("http {}: Send ignored (exchange closed or already answered)", self->remote_);
      return;
    }
    r->started_ = true;
    self->Enqueue(self->Head(status, content_type, body.size(), /*stream=*/false, extra));
    if (!self->head_request_) self->Enqueue(std::move(body));
    self->CompleteExchange();
  });
}

void HttpConnection::QueueStartStream(std::shared_ptr<HttpResponder> responder, int status,
                                      std::string content_type, HttpResponder::Headers extra) {
  net::post(executor_, [self = shared_from_this(), r = std::move(responder), status,
                        content_type = std::move(content_type), extra = std::move(extra)] {
    if (!self->IsCurrent(r.get()) || r->started_) {
      LOG_DEBUG("http {}: StartStream ignored (exchange closed or answered)", self->remote_);
      return;
    }
    r->started_ = true;
    // HTTP/1.0 has no chunked encoding: the stream ends when the connection closes.
    self->chunked_ = self->request_version_ >= 11;
    if (!self->chunked_) self->keep_alive_ = false;
    self->Enqueue(self->Head(status, content_type, 0, /*stream=*/true, extra));
    self->DoWrite();
  });
}

void HttpConnection::QueueWrite(std::shared_ptr<HttpResponder> responder, std::string chunk) {
  net::post(executor_, [self = shared_from_this(), r = std::move(responder),
                        chunk = std::move(chunk)]() mutable {
    if (!self->IsCurrent(r.get()) || !r->started_ || chunk.empty() || self->head_request_) return;
    if (self->chunked_) {
      self->Enqueue(absl::StrFormat("%x\r\n", chunk.size()));
      self->Enqueue(std::move(chunk));
      self->Enqueue("\r\n");
    } else {
      self->Enqueue(std::move(chunk));
    }
    if (self->queued_bytes() > self->options_.max_queued_bytes) {
      self->Abort(StrCat("more than ", self->options_.max_queued_bytes,
                         " bytes queued for a client that does not read"));
      return;
    }
    self->DoWrite();
  });
}

void HttpConnection::QueueEnd(std::shared_ptr<HttpResponder> responder) {
  net::post(executor_, [self = shared_from_this(), r = std::move(responder)] {
    if (!self->IsCurrent(r.get()) || !r->started_) {
      LOG_DEBUG("http {}: End ignored (no open stream)", self->remote_);
      return;
    }
    if (self->chunked_ && !self->head_request_) self->Enqueue("0\r\n\r\n");
    self->CompleteExchange();
  });
}

void HttpConnection::QueueOnClose(std::shared_ptr<HttpResponder> responder,
                                  std::function<void()> fn) {
  net::post(executor_, [self = shared_from_this(), r = std::move(responder),
                        fn = std::move(fn)]() mutable {
    if (r->completed_.load(std::memory_order_acquire)) return;
    if (r->aborted_.load(std::memory_order_acquire)) {
      fn();
    } else if (self->IsCurrent(r.get())) {
      r->on_close_ = std::move(fn);
    }
  });
}

void HttpConnection::Post(std::function<void()> fn) { net::post(executor_, std::move(fn)); }

void HttpConnection::PostShutdown() {
  net::post(executor_, [self = shared_from_this()] { self->Shutdown(); });
}

// ---- Closing ----------------------------------------------------------------------------------

void HttpConnection::Shutdown() {
  if (state_ == State::kClosed || state_ == State::kDraining) return;  // draining ends by itself
  const bool unwritten = write_in_flight_ || !out_.empty();
  if (responder_ != nullptr || !unwritten) {
    Abort("server stopping");
    return;
  }
  keep_alive_ = false;
  after_flush_ = AfterFlush::kClose;  // flush what the finished exchange left, then close
}

void HttpConnection::StartDrain() {
  if (peer_eof_) {
    Abort("done; peer already closed");
    return;
  }
  state_ = State::kDraining;
  self_.reset();
  error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  in_.consume(in_.size());
  ArmReadTimer(kDrainTimeoutS);
  DoRead();
}

void HttpConnection::Abort([[maybe_unused]] std::string_view why) {
  if (state_ == State::kClosed) return;
  LOG_DEBUG("http {}: closing: {}", remote_, why);
  state_ = State::kClosed;
  error_code ec;
  read_timer_.cancel();
  write_timer_.cancel();
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  out_.clear();  // writing_ stays until the aborted write completes: its buffers point there
  queued_bytes_.store(0, std::memory_order_relaxed);
  parser_.reset();
  server_->Unregister(id_, counted_);
  // Every strand entry point holds a shared_ptr to this, so dropping self_ cannot destroy it here.
  self_.reset();
  if (responder_ != nullptr) {
    const std::shared_ptr<HttpResponder> responder = std::move(responder_);
    responder->aborted_.store(true, std::memory_order_release);
    std::function<void()> on_close = std::move(responder->on_close_);
    if (on_close) on_close();
  }
}

}  // namespace strata::server
