#include "server/http_server.h"

#include <utility>  // Boost 1.74 Asio with g++ 12 in C++20 needs it before asio.

#include <pthread.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <limits>

#include "common/json.h"
#include "common/logging.h"
#include "common/status.h"
#include "server/api_error.h"
#include "server/http_connection.h"

namespace strata::server {
namespace {

namespace net = boost::asio;
using boost::system::error_code;
using tcp = net::ip::tcp;

// Stop() waits this long for connections to wind down before it stops the I/O threads.
constexpr std::chrono::seconds kStopGrace{5};
// After a failed accept (e.g. out of file descriptors) the next try waits this long.
constexpr std::chrono::milliseconds kAcceptRetry{50};

}  // namespace

struct HttpServer::Io {
  explicit Io(int threads)
      : context(threads),
        work(net::make_work_guard(context)),
        acceptor(net::make_strand(context)),
        accept_retry(acceptor.get_executor()) {}

  net::io_context context;
  net::executor_work_guard<net::io_context::executor_type> work;
  tcp::acceptor acceptor;
  net::steady_timer accept_retry;
  std::vector<std::thread> threads;
};

absl::Status HttpServerOptions::Validate() const {
  if (io_threads < 1) return absl::InvalidArgumentError("http: io_threads must be >= 1");
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(StrCat("http: port ", port, " is not in [0, 65535]"));
  }
  if (max_body_bytes == 0) return absl::InvalidArgumentError("http: max_body_bytes must be > 0");
  if (max_header_bytes < 256 || max_header_bytes > std::numeric_limits<std::uint32_t>::max()) {
    return absl::InvalidArgumentError("http: max_header_bytes must be in [256, 2^32)");
  }
  if (!(request_timeout_s > 0) || !(idle_timeout_s > 0) || !(write_timeout_s > 0)) {
    return absl::InvalidArgumentError("http: request/idle/write timeouts must be > 0");
  }
  if (max_connections == 0) return absl::InvalidArgumentError("http: max_connections must be > 0");
  if (max_queued_bytes == 0) {
    return absl::InvalidArgumentError("http: max_queued_bytes must be > 0");
  }
  return absl::OkStatus();
}

std::optional<std::string> HttpRequest::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return std::nullopt;
}

std::string HttpErrorBody(int status, std::string_view message) {
  Json error = {{"error",
                 {{"message", std::string(message)},
                  {"type", ErrorTypeOf(status)},
                  {"param", nullptr},
                  {"code", nullptr}}}};
  return error.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// ---- HttpResponder ----------------------------------------------------------------------------

void HttpResponder::Send(int status, std::string content_type, std::string body,
                         Headers extra_headers) {
  if (closed()) return;
  if (auto c = connection_.lock()) {
    c->QueueSend(shared_from_this(), status, std::move(content_type), std::move(body),
                 std::move(extra_headers));
  }
}

void HttpResponder::StartStream(int status, std::string content_type, Headers extra_headers) {
  if (closed()) return;
  if (auto c = connection_.lock()) {
    c->QueueStartStream(shared_from_this(), status, std::move(content_type),
                        std::move(extra_headers));
  }
}

void HttpResponder::Write(std::string chunk) {
  if (closed()) return;  // nothing more goes out, and a closed connection is let go
  if (auto c = connection_.lock()) c->QueueWrite(shared_from_this(), std::move(chunk));
}

void HttpResponder::End() {
  if (closed()) return;
  if (auto c = connection_.lock()) c->QueueEnd(shared_from_this());
}

void HttpResponder::OnClose(std::function<void()> fn) {
  if (auto c = connection_.lock()) {
    c->QueueOnClose(shared_from_this(), std::move(fn));
    return;
  }
  // The connection only goes away once the exchange completed or was aborted.
  if (aborted_.load(std::memory_order_acquire) && !completed_.load(std::memory_order_acquire)) {
    fn();
  }
}

void HttpResponder::Post(std::function<void()> fn) {
  if (auto c = connection_.lock()) c->Post(std::move(fn));
}

size_t HttpResponder::queued_bytes() const {
  if (completed_.load(std::memory_order_acquire) || aborted_.load(std::memory_order_acquire)) {
    return 0;
  }
  auto c = connection_.lock();
  return c ? c->queued_bytes() : 0;
}

// ---- HttpServer -------------------------------------------------------------------------------

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler)
    : options_(std::move(options)),
      handler_(std::move(handler)),
      io_(std::make_unique<Io>(options_.io_threads)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                              HttpHandler handler) {
  RETURN_IF_ERROR(options.Validate());
  if (!handler) return absl::InvalidArgumentError("http: no handler given");
  std::unique_ptr<HttpServer> server(new HttpServer(std::move(options), std::move(handler)));
  RETURN_IF_ERROR(server->Listen());
  server->Accept();
  Io* io = server->io_.get();
  for (int i = 0; i < server->options_.io_threads; ++i) {
    io->threads.emplace_back([io] {
      pthread_setname_np(pthread_self(), "strata-http");
      io->context.run();
    });
  }
  LOG_INFO("http server listening on {}:{} with {} I/O threads", server->options_.host,
           server->port_, server->options_.io_threads);
  return server;
}

absl::Status HttpServer::Listen() {
  const std::string where = StrCat(options_.host, ":", options_.port);
  error_code ec;
  tcp::resolver resolver(io_->context);
  const auto endpoints = resolver.resolve(options_.host, std::to_string(options_.port),
                                          tcp::resolver::passive | tcp::resolver::numeric_service,
                                          ec);
  if (ec || endpoints.empty()) {
    return absl::InvalidArgumentError(
        StrCat("http: cannot resolve listen address ", where, ": ", ec.message()));
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  tcp::acceptor& acceptor = io_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(StrCat("http: cannot listen on ", where, ": ", ec.message()));
  port_ = acceptor.local_endpoint(ec).port();
  return absl::OkStatus();
}

void HttpServer::Accept() {
  io_->acceptor.async_accept(net::make_strand(io_->context), [this](error_code ec,
                                                                    tcp::socket socket) {
    if (stopping_.load() || ec == net::error::operation_aborted) return;
    if (ec) {
      LOG_WARN("http: accept failed: {}", ec.message());
      io_->accept_retry.expires_after(kAcceptRetry);
      io_->accept_retry.async_wait([this](error_code wait_ec) {
        if (!wait_ec && !stopping_.load()) Accept();
      });
      return;
    }
    const bool reject = num_connections_.load() >= options_.max_connections;
    const uint64_t id = next_connection_id_++;
    auto connection = std::make_shared<HttpConnection>(this, id, std::move(socket), reject);
    if (Register(id, connection, /*counted=*/!reject)) connection->Start();
    Accept();
  });
}

bool HttpServer::Register(uint64_t id, std::weak_ptr<HttpConnection> connection, bool counted) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopped_) return false;
  connections_.emplace(id, std::move(connection));
  if (counted) num_connections_.fetch_add(1);
  return true;
}

void HttpServer::Unregister(uint64_t id, bool counted) {
  std::lock_guard<std::mutex> lock(mu_);
  if (connections_.erase(id) > 0 && counted) num_connections_.fetch_sub(1);
}

void HttpServer::ConnectionCreated() {
  std::lock_guard<std::mutex> lock(mu_);
  ++num_live_;
}

void HttpServer::ConnectionDestroyed() {
  std::lock_guard<std::mutex> lock(mu_);
  --num_live_;
  if (num_live_ == 0) live_cv_.notify_all();
}

void HttpServer::Stop() {
  std::vector<std::weak_ptr<HttpConnection>> open;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_.store(true);
    for (const auto& [id, connection] : connections_) open.push_back(connection);
  }
  net::post(io_->acceptor.get_executor(), [io = io_.get()] {
    error_code ec;
    io->acceptor.close(ec);
    io->accept_retry.cancel();
  });
  for (const auto& weak : open) {
    if (auto connection = weak.lock()) connection->PostShutdown();
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!live_cv_.wait_for(lock, kStopGrace, [this] { return num_live_ == 0; })) {
      LOG_WARN("http: {} connections still alive {} s after Stop()", num_live_,
               kStopGrace.count());
    }
  }
  io_->work.reset();
  io_->context.stop();
  for (std::thread& t : io_->threads) t.join();
  io_->threads.clear();
  LOG_INFO("http server on port {} stopped", port_);
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace strata::server
