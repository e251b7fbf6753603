// A thousand concurrent SSE streams against one daemon with two I/O threads: every stream gets
// all its tokens and [DONE], and the daemon's thread count stays flat (no thread per request).
// The client (server/stream_client.h) is a single-threaded poll() loop over non-blocking sockets.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include "common/json.h"
#include "server/stream_client.h"
#include "tests/integration/daemon.h"

namespace strata::testing {
namespace {

constexpr int kStreams = 1000;
constexpr int kTokens = 16;

std::string StreamRequest(int i) {
  return server::HttpPost("/v1/completions", Json{{"prompt", "stream " + std::to_string(i)},
                                                  {"max_tokens", kTokens},
                                                  {"ignore_eos", true},
                                                  {"stream", true},
                                                  {"stream_options", {{"include_usage", true}}}}
                                                 .dump());
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = 0; (at = text.find(what, at)) != std::string::npos; at += what.size()) ++n;
  return n;
}

TEST(ManyStreamsTest, AThousandConcurrentStreamsOnAFlatThreadCount) {
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  ASSERT_GE(lim.rlim_cur, 2u * kStreams + 64) << "RLIMIT_NOFILE hard limit too low";
  std::string error;
  auto d = DaemonProcess::Start(
      "model:\n  path: synthetic:tiny\nengine:\n  threads: 1\n  max_num_seqs: 256\n"
      "server:\n  io_threads: 2\n  limits:\n    max_concurrent_streams: 2000\n"
      "logging:\n  level: warn\n",
      &error);
  ASSERT_NE(d, nullptr) << error;
  const int threads_at_start = d->NumThreads();

  std::vector<std::string> requests;
  for (int i = 0; i < kStreams; ++i) requests.push_back(StreamRequest(i));
  server::StreamClient client(d->http_port(), std::move(requests));
  int max_threads = threads_at_start;
  size_t max_open = 0;
  const absl::Status run = client.Run(/*stall_s=*/60, [&] {
    max_open = std::max(max_open, client.num_open());
    max_threads = std::max(max_threads, d->NumThreads());
  });
  EXPECT_TRUE(run.ok()) << run;
  int complete = 0;
  for (const auto& s : client.streams()) {
    // Under load one event may carry several tokens; the usage chunk counts them all.
    const std::string usage = "\"completion_tokens\":" + std::to_string(kTokens) + ",";
    const bool ok = s.received.rfind("HTTP/1.1 200", 0) == 0 &&
                    Count(s.received, "data: ") >= 3 &&
                    s.received.find(usage) != std::string::npos &&
                    s.received.find("data: [DONE]") != std::string::npos;
    complete += ok ? 1 : 0;
    if (!ok && complete == 0) ADD_FAILURE() << "first incomplete stream:\n" << s.received;
  }
  std::printf("%d of %d streams complete, at most %zu open at once, daemon threads %d -> %d\n",
              complete, kStreams, max_open, threads_at_start, max_threads);
  EXPECT_EQ(complete, kStreams);
  EXPECT_GE(max_open, static_cast<size_t>(kStreams) * 3 / 4);  // held at once, not in turn
  EXPECT_LE(max_threads, threads_at_start + 2)
      << "threads grew from " << threads_at_start << " to " << max_threads;
  EXPECT_EQ(d->Stop(), 0) << d->Log();
}

}  // namespace
}  // namespace strata::testing
