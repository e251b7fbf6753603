#include "server/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"

namespace strata::server {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// One HTTP response as a raw-socket client sees it. Header names are lower-cased; body is
// de-chunked, wire_body is the body bytes as sent (chunk framing included).
struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
  std::string wire_body;
  bool Has(const std::string& name) const { return headers.count(name) > 0; }
  std::string Get(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// A blocking loopback client with deadlines on every read.
class Client {
 public:
  explicit Client(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    int one = 1;
    if (connected_) setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~Client() { Close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  // Makes the peer see a reset instead of a clean FIN.
  void Reset() {
    linger l{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    Close();
  }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one response (1xx responses included); nullopt on timeout or early close.
  std::optional<Response> Read(double timeout_s = 5) {
    const auto deadline = Clock::now() + milliseconds(static_cast<int>(timeout_s * 1000));
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(deadline)) return std::nullopt;
    }
    Response r;
    const std::string head = buf_.substr(0, end + 2);
    buf_.erase(0, end + 4);
    size_t line_end = head.find("\r\n");
    r.status = std::stoi(head.substr(9, 3));
    for (size_t pos = line_end + 2; pos < head.size(); pos = line_end + 2) {
      line_end = head.find("\r\n", pos);
      const std::string line = head.substr(pos, line_end - pos);
      const size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(c));
      r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    if (r.status < 200) return r;
    if (r.Has("content-length")) {
      const size_t n = std::stoul(r.Get("content-length"));
      while (buf_.size() < n) {
        if (!Fill(deadline)) return std::nullopt;
      }
      r.body = r.wire_body = buf_.substr(0, n);
      buf_.erase(0, n);
    } else if (r.Get("transfer-encoding") == "chunked") {
      if (!ReadChunked(r, deadline)) return std::nullopt;
    } else {
      while (Fill(deadline)) {
      }
      if (!eof_) return std::nullopt;
      r.body = r.wire_body = std::move(buf_);
      buf_.clear();
    }
    return r;
  }

  // Reads just the head of a streamed response and the first `n` wire bytes of its body.
  std::optional<std::string> ReadBytes(size_t n, double timeout_s = 5) {
    const auto deadline = Clock::now() + milliseconds(static_cast<int>(timeout_s * 1000));
    while (buf_.size() < n) {
      if (!Fill(deadline)) return std::nullopt;
    }
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

  // True when the server closes (EOF or reset) within the timeout; data before that is dropped.
  bool WaitClosed(double timeout_s = 5) {
    const auto deadline = Clock::now() + milliseconds(static_cast<int>(timeout_s * 1000));
    while (Fill(deadline)) buf_.clear();
    return eof_;
  }

  size_t buffered() const { return buf_.size(); }

 private:
  bool ReadChunked(Response& r, Clock::time_point deadline) {
    while (true) {
      size_t eol;
      while ((eol = buf_.find("\r\n")) == std::string::npos) {
        if (!Fill(deadline)) return false;
      }
      const size_t size = std::stoul(buf_.substr(0, eol), nullptr, 16);
      while (buf_.size() < eol + 2 + size + 2) {
        if (!Fill(deadline)) return false;
      }
      r.wire_body += buf_.substr(0, eol + 2 + size + 2);
      r.body += buf_.substr(eol + 2, size);
      buf_.erase(0, eol + 2 + size + 2);
      if (size == 0) return true;
    }
  }

  // Appends what arrives before `deadline`; false on timeout, EOF or error.
  bool Fill(Clock::time_point deadline) {
    if (eof_ || fd_ < 0) return false;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char chunk[65536];
    const ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buf_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buf_;
};

std::unique_ptr<HttpServer> StartOrDie(HttpServerOptions options, HttpHandler handler) {
  auto server = HttpServer::Start(std::move(options), std::move(handler));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(server).value() : nullptr;
}

// Echoes the request: "<method> <path> q=<query> x=<x-test header>\n<body>".
void Echo(HttpRequest req, std::shared_ptr<HttpResponder> r) {
  r->Send(200, "text/plain",
          req.method + " " + req.path + " q=" + req.query + " x=" + req.Header("x-test").value_or("-") +
              "\n" + req.body,
          {{"X-Remote-Set", req.remote.empty() ? "no" : "yes"}});
}

size_t NumThreads() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

template <typename Pred>
bool WaitFor(Pred pred, double timeout_s = 5) {
  const auto deadline = Clock::now() + milliseconds(static_cast<int>(timeout_s * 1000));
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

// The OpenAI error object the server sends, parsed (key order is not part of the contract).
Json ErrorBody(const std::string& message, const char* type = "invalid_request_error") {
  return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
}

Json Parsed(const std::string& body) {
  return Json::parse(body, nullptr, /*allow_exceptions=*/false);
}

TEST(HttpServerTest, GetAndPostOnOneKeepAliveConnection) {
  auto server = StartOrDie({}, Echo);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->port(), 0);
  Client c(server->port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Send("GET /v1/models?a=1&b=2 HTTP/1.1\r\nHost: x\r\nX-Test: hi\r\n\r\n"));
  auto get = c.Read();
  ASSERT_TRUE(get.has_value());
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->body, "GET /v1/models q=a=1&b=2 x=hi\n");
  EXPECT_EQ(get->Get("content-type"), "text/plain");
  EXPECT_EQ(get->Get("connection"), "keep-alive");
  EXPECT_EQ(get->Get("x-remote-set"), "yes");
  EXPECT_EQ(server->num_connections(), 1u);

  ASSERT_TRUE(c.Send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
  auto post = c.Read();
  ASSERT_TRUE(post.has_value());
  EXPECT_EQ(post->status, 200);
  EXPECT_EQ(post->body, "POST /v1/completions q= x=-\nhello");
  EXPECT_EQ(server->num_connections(), 1u);
}

TEST(HttpServerTest, PipelinedRequestsAnsweredInOrder) {
  auto server = StartOrDie({}, Echo);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto one = c.Read();
  auto two = c.Read();
  ASSERT_TRUE(one.has_value() && two.has_value());
  EXPECT_EQ(one->body, "GET /one q= x=-\n");
  EXPECT_EQ(two->body, "GET /two q= x=-\n");
}

TEST(HttpServerTest, ConnectionCloseIsHonoured) {
  auto server = StartOrDie({}, Echo);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "GET /bye q= x=-\n");
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_TRUE(WaitFor([&] { return server->num_connections() == 0; }));
}

TEST(HttpServerTest, Http10ClosesAfterResponse) {
  auto server = StartOrDie({}, Echo);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("GET /old HTTP/1.0\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "GET /old q= x=-\n");
  EXPECT_TRUE(c.WaitClosed());
}

TEST(HttpServerTest, ExpectContinueGetsInterimResponse) {
  auto server = StartOrDie({}, Echo);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"));
  auto interim = c.Read();
  ASSERT_TRUE(interim.has_value());
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(c.Send("abc"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "POST /p q= x=-\nabc");
}

TEST(HttpServerTest, ChunkedRequestBodyIsDecoded) {
  auto server = StartOrDie({}, Echo);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "POST /c q= x=-\nabcde");
}

TEST(HttpServerTest, BodyOverLimitIs413WithContentLength) {
  HttpServerOptions options;
  options.max_body_bytes = 1000;
  std::atomic<int> calls{0};
  auto server = StartOrDie(options, [&](HttpRequest, std::shared_ptr<HttpResponder> r) {
    ++calls;
    r->Send(200, "text/plain", "x");
  });
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" +
                     std::string(5000, 'a')));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->Get("content-type"), "application/json");
  EXPECT_EQ(Parsed(r->body), ErrorBody("request body exceeds 1000 bytes"));
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(calls.load(), 0);
}

TEST(HttpServerTest, BodyOverLimitIs413WhenChunked) {
  HttpServerOptions options;
  options.max_body_bytes = 1000;
  auto server = StartOrDie(options, Echo);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  std::string req = "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) req += "1f4\r\n" + std::string(500, 'b') + "\r\n";
  ASSERT_TRUE(c.Send(req + "0\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(Parsed(r->body), ErrorBody("request body exceeds 1000 bytes"));
  EXPECT_TRUE(c.WaitClosed());
}

TEST(HttpServerTest, HeadersOverLimitIs431) {
  HttpServerOptions options;
  options.max_header_bytes = 4096;
  auto server = StartOrDie(options, Echo);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(8000, 'h') + "\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 431);
  EXPECT_EQ(Parsed(r->body), ErrorBody("request header fields exceed 4096 bytes"));
  EXPECT_TRUE(c.WaitClosed());
}

TEST(HttpServerTest, GarbageIs400) {
  auto server = StartOrDie({}, Echo);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("HELLO THERE\x01\x02\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->Get("content-type"), "application/json");
  EXPECT_NE(r->body.find(R"("message":"malformed HTTP request: )"), std::string::npos) << r->body;
  EXPECT_TRUE(c.WaitClosed());
}

TEST(HttpServerTest, SlowlorisGets408) {
  HttpServerOptions options;
  options.request_timeout_s = 0.3;
  auto server = StartOrDie(options, Echo);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  const auto start = Clock::now();
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nHost: x\r\n"));
  auto r = c.Read(10);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 408);
  EXPECT_EQ(Parsed(r->body), ErrorBody("request not received within 0.3 s"));
  EXPECT_GE(Clock::now() - start, milliseconds(250));
  EXPECT_LT(Clock::now() - start, milliseconds(5000));
  EXPECT_TRUE(c.WaitClosed());
}

TEST(HttpServerTest, IdleConnectionsAreClosed) {
  HttpServerOptions options;
  options.idle_timeout_s = 0.3;
  auto server = StartOrDie(options, Echo);
  ASSERT_NE(server, nullptr);
  Client fresh(server->port());
  Client used(server->port());
  ASSERT_TRUE(used.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(used.Read().has_value());
  EXPECT_TRUE(fresh.WaitClosed(5));
  EXPECT_EQ(fresh.buffered(), 0u);
  EXPECT_TRUE(used.WaitClosed(5));
  EXPECT_TRUE(WaitFor([&] { return server->num_connections() == 0; }));
}

TEST(HttpServerTest, HandlerExceptionIs500) {
  auto server = StartOrDie({}, [](HttpRequest, std::shared_ptr<HttpResponder>) {
    throw std::runtime_error("boom");
  });
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(Parsed(r->body), ErrorBody("internal error in request handler", "server_error"));
}

// Streams `n` events "data: i\n\n" from a thread of its own, then ends.
struct Streamer {
  void operator()(HttpRequest req, std::shared_ptr<HttpResponder> r) {
    const int n = req.query.empty() ? 100 : std::stoi(req.query);
    r->StartStream(200, "text/event-stream");
    std::lock_guard<std::mutex> lock(*mu);
    threads->emplace_back([r, n] {
      for (int i = 0; i < n; ++i) r->Write("data: " + std::to_string(i) + "\n\n");
      r->End();
    });
  }
  std::shared_ptr<std::mutex> mu = std::make_shared<std::mutex>();
  std::shared_ptr<std::vector<std::thread>> threads = std::make_shared<std::vector<std::thread>>();
  void Join() {
    std::lock_guard<std::mutex> lock(*mu);
    for (auto& t : *threads) t.join();
    threads->clear();
  }
};

std::string Events(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += "data: " + std::to_string(i) + "\n\n";
  return out;
}

TEST(HttpServerTest, StreamWritesArriveInOrderChunked) {
  Streamer streamer;
  auto server = StartOrDie({}, streamer);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("GET /stream?100 HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Get("content-type"), "text/event-stream");
  EXPECT_EQ(r->Get("cache-control"), "no-cache");
  EXPECT_EQ(r->Get("transfer-encoding"), "chunked");
  EXPECT_FALSE(r->Has("content-length"));
  EXPECT_EQ(r->body, Events(100));
  EXPECT_EQ(r->wire_body.substr(0, 14), "9\r\ndata: 0\n\n\r\n");
  EXPECT_EQ(r->wire_body.substr(r->wire_body.size() - 5), "0\r\n\r\n");
  // Keep-alive continues after End.
  ASSERT_TRUE(c.Send("GET /stream?3 HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto again = c.Read();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->body, Events(3));
  streamer.Join();
}

TEST(HttpServerTest, Http10StreamEndsWithClose) {
  Streamer streamer;
  auto server = StartOrDie({}, streamer);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("GET /stream?5 HTTP/1.0\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->Has("transfer-encoding"));
  EXPECT_EQ(r->body, Events(5));
  streamer.Join();
}

TEST(HttpServerTest, EachWriteReachesTheClientBeforeTheNext) {
  std::promise<std::shared_ptr<HttpResponder>> got;
  auto server = StartOrDie({}, [&](HttpRequest, std::shared_ptr<HttpResponder> r) {
    r->StartStream(200, "text/event-stream");
    got.set_value(r);
  });
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = got.get_future().get();
  const std::string head_end = "Connection: keep-alive\r\n\r\n";
  auto head = c.ReadBytes(1);  // the head arrives without any Write
  ASSERT_TRUE(head.has_value());
  for (int i = 0; i < 5; ++i) {
    r->Write("data: " + std::to_string(i) + "\n\n");
    // The client must see this event before the server is given the next one.
    std::string seen;
    while (seen.find("data: " + std::to_string(i) + "\n\n") == std::string::npos) {
      auto b = c.ReadBytes(1, 5);
      ASSERT_TRUE(b.has_value()) << "event " << i << " did not arrive";
      seen += *b;
    }
  }
  r->End();
}

TEST(HttpServerTest, CurlSeesStreamedEvents) {
  if (std::system("curl --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "curl not installed";
  Streamer streamer;
  auto server = StartOrDie({}, streamer);
  ASSERT_NE(server, nullptr);
  const std::string cmd = "curl -sN --max-time 20 'http://127.0.0.1:" +
                          std::to_string(server->port()) + "/stream?100'";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(pipe), 0);
  EXPECT_EQ(out, Events(100));
  streamer.Join();
}

TEST(HttpServerTest, CurlPostRoundTrip) {
  if (std::system("curl --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "curl not installed";
  auto server = StartOrDie({}, Echo);
  ASSERT_NE(server, nullptr);
  const std::string cmd = "curl -s --max-time 20 -H 'X-Test: c' -d 'hi=1' 'http://127.0.0.1:" +
                          std::to_string(server->port()) + "/v1/completions?z'";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(pipe), 0);
  EXPECT_EQ(out, "POST /v1/completions q=z x=c\nhi=1");
}

// Records one exchange's responder and counts its OnClose calls.
struct Captured {
  std::mutex mu;
  std::vector<std::shared_ptr<HttpResponder>> responders;
  std::atomic<int> closes{0};
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return responders.size();
  }
  std::shared_ptr<HttpResponder> at(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    return responders.at(i);
  }
  HttpHandler Handler(bool stream) {
    return [this, stream](HttpRequest, std::shared_ptr<HttpResponder> r) {
      r->OnClose([this] { ++closes; });
      if (stream) {
        r->StartStream(200, "text/event-stream");
        r->Write("data: first\n\n");
      }
      std::lock_guard<std::mutex> lock(mu);
      responders.push_back(r);
    };
  }
};

// n clients, each with a GET its handler (cap.Handler(true)) answers with an open stream; returns
// once the handler saw all n (or after WaitFor's deadline: the caller checks cap.size()).
std::vector<std::unique_ptr<Client>> OpenStreams(const HttpServer& server, Captured& cap, int n) {
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < n; ++i) {
    clients.push_back(std::make_unique<Client>(server.port()));
    EXPECT_TRUE(clients.back()->Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  WaitFor([&] { return cap.size() == static_cast<size_t>(n); });
  return clients;
}

TEST(HttpServerTest, OnCloseFiresWhenClientLeavesMidStream) {
  Captured cap;
  auto server = StartOrDie({}, cap.Handler(/*stream=*/true));
  ASSERT_NE(server, nullptr);
  {
    Client c(server->port());
    ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(WaitFor([&] { return cap.size() == 1; }));
    ASSERT_TRUE(c.ReadBytes(1).has_value());
  }
  EXPECT_TRUE(WaitFor([&] { return cap.closes.load() == 1; }));
  EXPECT_TRUE(cap.at(0)->closed());
  cap.at(0)->Write("ignored");  // writes after the close are dropped, not crashes
  cap.at(0)->End();
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(cap.closes.load(), 1);
  EXPECT_TRUE(WaitFor([&] { return server->num_connections() == 0; }));
}

TEST(HttpServerTest, OnCloseFiresWhenClientLeavesBeforeDelayedSend) {
  Captured cap;
  auto server = StartOrDie({}, cap.Handler(/*stream=*/false));
  ASSERT_NE(server, nullptr);
  {
    Client c(server->port());
    ASSERT_TRUE(c.Send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"));
    ASSERT_TRUE(WaitFor([&] { return cap.size() == 1; }));
    c.Reset();
  }
  EXPECT_TRUE(WaitFor([&] { return cap.closes.load() == 1; }));
  EXPECT_TRUE(cap.at(0)->closed());
  cap.at(0)->Send(200, "text/plain", "too late");
  // Registered after the close: runs at once.
  std::atomic<bool> late{false};
  cap.at(0)->OnClose([&] { late = true; });
  EXPECT_TRUE(WaitFor([&] { return late.load(); }));
}

TEST(HttpServerTest, OnCloseDoesNotFireAfterCompletedExchange) {
  std::atomic<int> closes{0};
  std::shared_ptr<HttpResponder> kept;
  auto server = StartOrDie({}, [&](HttpRequest, std::shared_ptr<HttpResponder> r) {
    r->OnClose([&] { ++closes; });
    r->Send(200, "text/plain", "done");
    kept = r;
  });
  ASSERT_NE(server, nullptr);
  {
    Client c(server->port());
    ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->body, "done");
  }
  EXPECT_TRUE(WaitFor([&] { return server->num_connections() == 0; }));
  kept->OnClose([&] { ++closes; });
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(closes.load(), 0);
  EXPECT_FALSE(kept->closed());
}

TEST(HttpServerTest, ClientThatStopsReadingIsCut) {
  HttpServerOptions options;
  options.max_queued_bytes = 4 << 20;
  options.write_timeout_s = 1;
  std::atomic<int> closes{0};
  std::atomic<size_t> max_queued{0};
  std::thread writer;
  auto server = StartOrDie(options, [&](HttpRequest, std::shared_ptr<HttpResponder> r) {
    r->OnClose([&] { ++closes; });
    r->StartStream(200, "application/octet-stream");
    writer = std::thread([&, r] {
      const std::string mib(1 << 20, 'z');
      for (int i = 0; i < 200 && !r->closed(); ++i) {
        r->Write(mib);
        max_queued = std::max(max_queued.load(), r->queued_bytes());
        std::this_thread::sleep_for(milliseconds(5));
      }
    });
  });
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(WaitFor([&] { return closes.load() == 1; }, 20));
  writer.join();
  EXPECT_GT(max_queued.load(), 0u);
  EXPECT_TRUE(WaitFor([&] { return server->num_connections() == 0; }));
}

TEST(HttpServerTest, ConnectionsBeyondTheCapGet503) {
  HttpServerOptions options;
  options.max_connections = 2;
  auto server = StartOrDie(options, Echo);
  ASSERT_NE(server, nullptr);
  Client a(server->port());
  Client b(server->port());
  ASSERT_TRUE(WaitFor([&] { return server->num_connections() == 2; }));
  Client c(server->port());
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(Parsed(r->body), ErrorBody("too many connections; retry later", "service_unavailable"));
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_EQ(server->num_connections(), 2u);
  ASSERT_TRUE(a.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto ok = a.Read();
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->status, 200);
}

TEST(HttpServerTest, BindFailureNamesTheAddress) {
  auto first = StartOrDie({}, Echo);
  ASSERT_NE(first, nullptr);
  HttpServerOptions options;
  options.port = first->port();
  auto second = HttpServer::Start(options, Echo);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(std::string(second.status().message()).find("127.0.0.1:" + std::to_string(first->port())),
            std::string::npos)
      << second.status();
  options.port = 70000;
  EXPECT_EQ(HttpServer::Start(options, Echo).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HttpServerTest, StopWithOpenStreamsIsPromptAndFiresOnClose) {
  Captured cap;
  auto server = StartOrDie({}, cap.Handler(/*stream=*/true));
  ASSERT_NE(server, nullptr);
  std::vector<std::unique_ptr<Client>> clients = OpenStreams(*server, cap, 10);
  ASSERT_EQ(cap.size(), 10u);
  const auto start = Clock::now();
  server->Stop();
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  EXPECT_EQ(cap.closes.load(), 10);
  for (auto& c : clients) EXPECT_TRUE(c->WaitClosed(2));
  server.reset();
  // Responders may outlive the server; their calls do nothing.
  cap.at(0)->Write("after");
  cap.at(0)->End();
  EXPECT_TRUE(cap.at(0)->closed());
  EXPECT_EQ(cap.at(0)->queued_bytes(), 0u);
}

// A stream its handler already ended, but whose bytes are still queued because the client has
// not read them yet, is written out whole by Stop() (the daemon's drain stops the server right
// after the last request finished); only then does the connection close.
TEST(HttpServerTest, StopWritesOutAStreamThatAlreadyEnded) {
  const std::string mib(1 << 20, 'q');
  constexpr int kMiB = 24;  // more than loopback socket buffers take before the client reads
  std::promise<void> ended;
  HttpServerOptions options;
  options.max_queued_bytes = (kMiB + 1) << 20;
  auto server = StartOrDie(options, [&](HttpRequest, std::shared_ptr<HttpResponder> r) {
    r->StartStream(200, "application/octet-stream");
    for (int i = 0; i < kMiB; ++i) r->Write(mib);
    r->End();
    ended.set_value();
  });
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ended.get_future().wait();
  std::thread stopper([&] { server->Stop(); });
  auto r = c.Read(/*timeout_s=*/20);
  ASSERT_TRUE(r.has_value()) << "the stream was cut by Stop()";
  EXPECT_EQ(r->body.size(), static_cast<size_t>(kMiB) << 20);
  EXPECT_TRUE(c.WaitClosed(5));
  stopper.join();
}

// `rounds` times: a server with 4 open streams and a thread per stream calling
// call(responder, n) (n counts its calls) until `stop` has stopped or destroyed the server; every
// stream's OnClose fired.
void StopWhileOtherThreadsCall(int rounds, const std::function<void(HttpResponder&, int)>& call,
                               const std::function<void(std::unique_ptr<HttpServer>&)>& stop) {
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE(testing::Message() << "round " << round);
    Captured cap;
    auto server = StartOrDie({}, cap.Handler(/*stream=*/true));
    ASSERT_NE(server, nullptr);
    std::vector<std::unique_ptr<Client>> clients = OpenStreams(*server, cap, 4);
    ASSERT_EQ(cap.size(), 4u);
    std::atomic<bool> done{false};
    std::vector<std::thread> callers;
    for (int i = 0; i < 4; ++i) {
      callers.emplace_back([&, r = cap.at(i)] {
        for (int n = 0; !done.load(); ++n) call(*r, n);
      });
    }
    stop(server);
    done.store(true);
    for (auto& t : callers) t.join();
    EXPECT_EQ(cap.closes.load(), 4);
  }
}

// The engine thread reaches a connection through its responder (a weak pointer it locks for the
// length of one call), so the last reference to a connection can drop on that thread while the
// server is being destroyed. The server must stay until the connection is wholly gone, sockets
// and timers included (under ASan a connection outliving the io_context is a use after free; the
// window is narrow, so this catches it in about half the runs).
TEST(HttpServerTest, ServerOutlivesAConnectionReleasedOnAnotherThread) {
  // Each call locks the connection for its length, as the engine's sends do; most only look
  // (queued_bytes), so the lock is often the only reference taken.
  StopWhileOtherThreadsCall(
      200,
      [](HttpResponder& r, int n) {
        if (n % 64 == 0) {
          r.Write("x");
        } else {
          (void)r.queued_bytes();
        }
      },
      [](std::unique_ptr<HttpServer>& server) { server.reset(); });
}

// A producer that keeps writing to a stream the server aborted (an engine still emitting tokens)
// does not keep the closed connection alive: its writes return at once instead of queueing work
// on the connection, so Stop() does not wait out its 5 s grace for it.
TEST(HttpServerTest, AWriterStillRunningDoesNotHoldStopUp) {
  StopWhileOtherThreadsCall(
      20, [](HttpResponder& r, int) { r.Write("data: more\n\n"); },
      [](std::unique_ptr<HttpServer>& server) {
        const auto start = Clock::now();
        server->Stop();
        EXPECT_LT(Clock::now() - start, milliseconds(4000));
      });
}

// Idle keep-alive connections do not hold Stop() up.
TEST(HttpServerTest, StopClosesIdleKeepAliveConnectionsAtOnce) {
  auto server = StartOrDie({}, Echo);
  ASSERT_NE(server, nullptr);
  Client c(server->port());
  ASSERT_TRUE(c.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(c.Read().has_value());
  const auto start = Clock::now();
  server->Stop();
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  EXPECT_TRUE(c.WaitClosed(2));
}

TEST(HttpServerTest, TwoThousandConcurrentStreamsOnTwoThreads) {
  constexpr int kStreams = 2000;
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  const rlim_t need = 2 * kStreams + 100;
  if (lim.rlim_cur < need) {
    lim.rlim_cur = std::min(need, lim.rlim_max);
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur < need) GTEST_SKIP() << "RLIMIT_NOFILE is " << lim.rlim_cur << ", need " << need;

  const size_t threads_before = NumThreads();
  HttpServerOptions options;
  options.io_threads = 2;
  Captured cap;
  auto server = StartOrDie(options, cap.Handler(/*stream=*/true));
  ASSERT_NE(server, nullptr);
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.push_back(std::make_unique<Client>(server->port()));
    ASSERT_TRUE(clients.back()->connected()) << "connection " << i;
    ASSERT_TRUE(clients.back()->Send("GET /s HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  ASSERT_TRUE(WaitFor([&] { return cap.size() == kStreams; }, 30)) << cap.size();
  EXPECT_EQ(server->num_connections(), static_cast<size_t>(kStreams));
  const size_t threads_during = NumThreads();
  EXPECT_LE(threads_during, threads_before + options.io_threads + 1)
      << "before " << threads_before << ", during " << threads_during;
  // One "engine" thread (this one) finishes every stream.
  for (int i = 0; i < kStreams; ++i) {
    cap.at(i)->Write("data: last\n\n");
    cap.at(i)->End();
  }
  int complete = 0;
  for (auto& c : clients) {
    auto r = c->Read(20);
    if (r.has_value() && r->body == "data: first\n\ndata: last\n\n") ++complete;
  }
  EXPECT_EQ(complete, kStreams);
  EXPECT_EQ(cap.closes.load(), 0);
  std::printf("[ info ] %d streams: threads before %zu, during %zu\n", kStreams, threads_before,
              threads_during);
}

}  // namespace
}  // namespace strata::server
