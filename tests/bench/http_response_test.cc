// The load generator's response parser: the same response fed whole or split at every byte gives
// the same status, body and SSE events (chunked, Content-Length, or ended by the close), and a
// response cut short or malformed is reported, never taken as complete.
#include "bench/harness/http_response.h"

#include <gtest/gtest.h>

namespace strata::bench {
namespace {

std::string Chunked(const std::vector<std::string>& chunks) {
  std::string out =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
      "transfer-encoding: chunked\r\n\r\n";
  for (const std::string& c : chunks) {
    char size[16];
    std::snprintf(size, sizeof(size), "%zx\r\n", c.size());
    out += size + c + "\r\n";
  }
  return out + "0\r\n\r\n";
}

struct Parsed {
  int status = 0;
  bool complete = false;
  std::string body, error;
  std::vector<std::string> events;
};

// Feeds `wire` in pieces of `step` bytes (0 = whole), then the close when `eof`.
Parsed Parse(const std::string& wire, size_t step, bool eof) {
  ResponseParser p;
  Parsed out;
  for (size_t at = 0; at < wire.size(); at += step == 0 ? wire.size() : step) {
    p.Feed(std::string_view(wire).substr(at, step == 0 ? wire.size() : step));
    for (std::string& e : p.TakeEvents()) out.events.push_back(std::move(e));
  }
  if (eof) p.FeedEof();
  for (std::string& e : p.TakeEvents()) out.events.push_back(std::move(e));
  out.status = p.status();
  out.complete = p.complete();
  out.body = p.body();
  out.error = p.error();
  return out;
}

TEST(ResponseParserTest, ChunkedEventsSurviveEverySplit) {
  // Events straddle chunk boundaries, as a server's writes may.
  const std::string wire =
      Chunked({"data: {\"a\":1}\n\nda", "ta: {\"b\":2}\n", "\ndata: [DONE]\n\n"});
  for (size_t step : {0, 1, 2, 3, 5, 7, 13}) {
    Parsed p = Parse(wire, step, /*eof=*/false);
    EXPECT_EQ(p.status, 200);
    EXPECT_TRUE(p.complete) << step;
    EXPECT_EQ(p.error, "");
    EXPECT_EQ(p.events, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", "[DONE]"})) << step;
  }
}

TEST(ResponseParserTest, ContentLengthBodyIsCompleteAtItsLength) {
  const std::string body = "{\"error\":{\"message\":\"slow down\"}}";
  const std::string wire =
      "HTTP/1.1 429 Too Many Requests\r\ncontent-length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body;
  for (size_t step : {0, 1, 4}) {
    Parsed p = Parse(wire, step, /*eof=*/false);
    EXPECT_EQ(p.status, 429);
    EXPECT_TRUE(p.complete);
    EXPECT_EQ(p.body, body);
    EXPECT_TRUE(p.events.empty());
  }
  Parsed cut = Parse(wire.substr(0, wire.size() - 3), 0, /*eof=*/true);
  EXPECT_FALSE(cut.complete);
  EXPECT_EQ(cut.error, "connection closed mid-body");
}

TEST(ResponseParserTest, BodyWithoutFramingEndsWithTheConnection) {
  const std::string wire = "HTTP/1.0 200 OK\r\n\r\ndata: x\ndata: y\n\n";
  Parsed open = Parse(wire, 3, /*eof=*/false);
  EXPECT_FALSE(open.complete);
  EXPECT_EQ(open.events, (std::vector<std::string>{"x\ny"}));  // multi-line data joins
  Parsed closed = Parse(wire, 3, /*eof=*/true);
  EXPECT_TRUE(closed.complete);
}

TEST(ResponseParserTest, TruncatedAndMalformedResponsesAreErrors) {
  EXPECT_EQ(Parse("", 0, true).error, "connection closed before a response");
  const std::string wire = Chunked({"data: 1\n\n"});
  Parsed cut = Parse(wire.substr(0, wire.size() - 5), 0, /*eof=*/true);
  EXPECT_FALSE(cut.complete);
  EXPECT_EQ(cut.events, (std::vector<std::string>{"1"}));
  EXPECT_EQ(cut.error, "connection closed mid-body");
  EXPECT_EQ(Parse("SMTP ready\r\n\r\n", 0, false).error, "malformed status line");
  EXPECT_EQ(Parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, false).error,
            "malformed chunk size");
}

}  // namespace
}  // namespace strata::bench
