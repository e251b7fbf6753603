#include "bench/harness/http_response.h"

#include <strings.h>

#include <cstdlib>

namespace strata::bench {
namespace {

// The value of header `name` in `head` (case-insensitive name), or "".
std::string_view HeaderValue(std::string_view head, std::string_view name) {
  size_t at = head.find("\r\n");
  while (at != std::string_view::npos && at + 2 < head.size()) {
    const size_t begin = at + 2;
    const size_t end = head.find("\r\n", begin);
    std::string_view line = head.substr(begin, end == std::string_view::npos ? end : end - begin);
    const size_t colon = line.find(':');
    if (colon == name.size() && ::strncasecmp(line.data(), name.data(), name.size()) == 0) {
      std::string_view v = line.substr(colon + 1);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      return v;
    }
    at = end;
  }
  return {};
}

}  // namespace

void ResponseParser::Feed(std::string_view bytes) {
  if (complete_ || !error_.empty()) return;
  raw_.append(bytes);
  if (!head_done_) ParseHead();
  if (head_done_) ParseBody();
}

void ResponseParser::FeedEof() {
  if (until_close_ && error_.empty()) {
    complete_ = true;
    ScanEvents();
  } else if (!complete_ && error_.empty()) {
    error_ = status_ == 0 ? "connection closed before a response" : "connection closed mid-body";
  }
}

void ResponseParser::ParseHead() {
  const size_t end = raw_.find("\r\n\r\n");
  if (end == std::string::npos) return;
  std::string_view head(raw_.data(), end);
  if (head.substr(0, 5) != "HTTP/" || head.find(' ') == std::string_view::npos) {
    error_ = "malformed status line";
    return;
  }
  status_ = std::atoi(head.data() + head.find(' ') + 1);
  const std::string_view te = HeaderValue(head, "Transfer-Encoding");
  const std::string_view cl = HeaderValue(head, "Content-Length");
  chunked_ = te.find("chunked") != std::string_view::npos;
  if (!chunked_ && !cl.empty()) {
    content_length_ = std::strtoull(std::string(cl).c_str(), nullptr, 10);
  } else if (!chunked_) {
    until_close_ = true;
  }
  head_done_ = true;
  raw_.erase(0, end + 4);
}

void ResponseParser::ParseBody() {
  if (chunked_) {
    ParseChunks();
  } else {
    body_ += raw_;
    raw_.clear();
    if (!until_close_ && body_.size() >= content_length_) {
      body_.resize(content_length_);
      complete_ = true;
    }
  }
  ScanEvents();
}

void ResponseParser::ParseChunks() {
  size_t at = 0;
  while (!complete_) {
    if (in_chunk_) {
      const size_t take = std::min(chunk_left_, raw_.size() - at);
      body_.append(raw_, at, take);
      at += take;
      chunk_left_ -= take;
      if (chunk_left_ > 0) break;
      if (raw_.size() - at < 2) break;  // the CRLF after the chunk
      at += 2;
      in_chunk_ = false;
      continue;
    }
    const size_t eol = raw_.find("\r\n", at);
    if (eol == std::string::npos) break;
    char* end = nullptr;
    const unsigned long long size = std::strtoull(raw_.c_str() + at, &end, 16);
    if (end == raw_.c_str() + at) {
      error_ = "malformed chunk size";
      return;
    }
    at = eol + 2;
    if (size == 0) {
      complete_ = true;  // trailers, if any, are not needed
      break;
    }
    chunk_left_ = size;
    in_chunk_ = true;
  }
  raw_.erase(0, at);
}

void ResponseParser::ScanEvents() {
  for (;;) {
    const size_t end = body_.find("\n\n", events_from_);
    if (end == std::string::npos) break;
    std::string_view event(body_.data() + events_from_, end - events_from_);
    // One `data:` line per event is what the daemon sends; join several with newlines as SSE says.
    std::string data;
    bool any = false;
    for (size_t at = 0; at <= event.size();) {
      size_t nl = event.find('\n', at);
      if (nl == std::string_view::npos) nl = event.size();
      std::string_view line = event.substr(at, nl - at);
      if (line.substr(0, 5) == "data:") {
        line.remove_prefix(line.size() > 5 && line[5] == ' ' ? 6 : 5);
        if (any) data += '\n';
        data.append(line);
        any = true;
      }
      at = nl + 1;
    }
    if (any) events_.push_back(std::move(data));
    events_from_ = end + 2;
  }
}

std::deque<std::string> ResponseParser::TakeEvents() {
  std::deque<std::string> out;
  out.swap(events_);
  return out;
}

}  // namespace strata::bench
