// StopMatcher finds stop strings in a request's streamed text (OpenAI `stop`). Text arrives in
// chunks from the IncrementalDecoder; a stop string may straddle chunks, so the matcher holds back
// the longest tail that could still become a stop string and releases it once it cannot. The
// stop string itself is never emitted (OpenAI semantics). Detokenization and this matching run
// in the front end (DESIGN.md §2), which cancels the request in the engine on a match.
//
// One per request stream; one thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace strata::engine {

class StopMatcher {
 public:
  // Empty strings in `stops` are ignored.
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;      // safe to send now
    bool stopped = false;  // a stop string matched; `text` ends right before it
  };
  // REQUIRES: not stopped yet.
  Result Push(std::string_view chunk);
  // End of the stream without a match: everything held back.
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace strata::engine
