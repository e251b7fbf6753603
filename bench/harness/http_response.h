// An incremental parser of one HTTP/1.1 response as the load generator reads it off a socket:
// the status line, headers, a body framed by Content-Length, chunked encoding or the connection's
// end, and the Server-Sent Events inside a text/event-stream body. Owned by one request of the
// load generator; its thread only.
#pragma once

#include <deque>
#include <string>
#include <string_view>

namespace strata::bench {

class ResponseParser {
 public:
  // Appends bytes as they arrived; malformed input sets error().
  void Feed(std::string_view bytes);
  // The peer closed the connection: a body framed by the close is complete now.
  void FeedEof();

  int status() const { return status_; }          // 0 until the status line arrived
  bool complete() const { return complete_; }     // the whole body arrived
  const std::string& error() const { return error_; }
  const std::string& body() const { return body_; }  // de-chunked body so far

  // The `data:` payload of every complete SSE event since the last call, in order.
  std::deque<std::string> TakeEvents();

 private:
  void ParseHead();
  void ParseBody();
  void ParseChunks();
  void ScanEvents();

  std::string raw_;          // bytes not yet consumed
  std::string body_;
  size_t events_from_ = 0;   // body_ offset of the first unscanned event
  std::deque<std::string> events_;
  int status_ = 0;
  bool head_done_ = false, chunked_ = false, until_close_ = false, complete_ = false;
  size_t content_length_ = 0;
  size_t chunk_left_ = 0;    // bytes of the current chunk still to come
  bool in_chunk_ = false;
  std::string error_;
};

}  // namespace strata::bench
