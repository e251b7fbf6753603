#include "bench/harness/load_generator.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <thread>

#include "bench/harness/http_response.h"
#include "common/clock.h"
#include "common/json.h"
#include "server/stream_client.h"

namespace strata::bench {
namespace {

// One request on the wire.
struct InFlight {
  size_t request = 0;        // index into the workload
  size_t record = 0;         // index into the records
  ResponseParser parser;
};

std::string Auth(const std::string& api_key) {
  return api_key.empty() ? "" : StrCat("Authorization: Bearer ", api_key, "\r\n");
}

std::string HttpRequest(const std::string& body, const std::string& api_key) {
  return StrCat("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
                Auth(api_key), "Content-Type: application/json\r\nContent-Length: ",
                body.size(), "\r\n\r\n", body);
}

// The load generator's state: what is waiting, what is in flight, what was recorded.
class Run {
 public:
  Run(const LoadOptions& o, const std::vector<BenchRequest>& requests)
      : o_(o), requests_(requests), client_(o.port), finished_(requests.size(), false) {
    limit_ = o.max_requests > 0 ? std::min<size_t>(o.max_requests, requests.size())
                                : requests.size();
    for (size_t i = 0; i < limit_; ++i) waiting_.push_back(i);
    // Open loop: in arrival order (stable, so equal times keep the workload's order).
    if (o.concurrency == 0) {
      std::stable_sort(waiting_.begin(), waiting_.end(), [&](size_t a, size_t b) {
        return requests[a].arrival_s < requests[b].arrival_s;
      });
    }
  }

  absl::StatusOr<std::vector<RequestRecord>> Go() {
    t0_ = NowSeconds();
    for (;;) {
      const double now = Now();
      if (now < o_.time_limit_s) Issue(now);
      if (now > o_.time_limit_s + o_.drain_s) CutOff();
      if (active_.empty() && (waiting_.empty() || now >= o_.time_limit_s || Stuck())) break;
      const int timeout_ms = PollTimeoutMs(now);
      if (active_.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
        continue;
      }
      RETURN_IF_ERROR(client_.Poll(timeout_ms, [&](size_t s, std::string_view b) {
                               OnData(s, b);
                             }).status());
      Reap();
    }
    std::sort(records_.begin(), records_.end(),
              [](const RequestRecord& a, const RequestRecord& b) { return a.id < b.id; });
    return std::move(records_);
  }

 private:
  double Now() const { return NowSeconds() - t0_; }

  bool Ready(const BenchRequest& r, double now) const {
    if (r.after >= 0 && !finished_[r.after]) return false;
    return o_.concurrency > 0 || r.arrival_s <= now;
  }

  // Sends every request whose time has come (open loop) or that a free slot admits (closed).
  void Issue(double now) {
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (o_.concurrency > 0 && static_cast<int>(active_.size()) >= o_.concurrency) return;
      const BenchRequest& r = requests_[*it];
      if (o_.concurrency == 0 && r.arrival_s > now) return;  // sorted: the rest come later
      if (!Ready(r, now)) {
        ++it;
        continue;
      }
      Send(*it, now);
      it = waiting_.erase(it);
    }
  }

  void Send(size_t index, double now) {
    const BenchRequest& r = requests_[index];
    RequestRecord rec;
    rec.id = r.id;
    rec.slo_class = r.slo_class;
    rec.scheduled_s = o_.concurrency > 0 ? now : r.arrival_s;
    rec.sent_s = now;
    rec.prompt_tokens = static_cast<int64_t>(r.prompt.size());
    records_.push_back(std::move(rec));
    const size_t stream = client_.Add(HttpRequest(CompletionBody(r, o_.model), o_.api_key));
    auto f = std::make_unique<InFlight>();
    f->request = index;
    f->record = records_.size() - 1;
    active_[stream] = std::move(f);
  }

  // A request waits only on one that was never sent (cut by max_requests or time): give up.
  bool Stuck() const {
    return std::all_of(waiting_.begin(), waiting_.end(), [&](size_t i) {
      const int64_t after = requests_[i].after;
      return after >= 0 && !finished_[after];
    });
  }

  int PollTimeoutMs(double now) const {
    double wait = 0.05;
    if (o_.concurrency == 0 && !waiting_.empty()) {
      wait = std::min(wait, std::max(0.0, requests_[waiting_.front()].arrival_s - now));
    }
    return static_cast<int>(wait * 1000);
  }

  void OnData(size_t stream, std::string_view bytes) {
    InFlight& f = *active_.at(stream);
    f.parser.Feed(bytes);
    const double now = Now();
    for (const std::string& event : f.parser.TakeEvents()) OnEvent(stream, f, event, now);
  }

  void OnEvent(size_t stream, InFlight& f, const std::string& event, double now) {
    RequestRecord& rec = records_[f.record];
    if (event == "[DONE]") return;
    auto j = ParseJson(event, "event");
    if (!j.ok()) {
      rec.error = j.status().ToString();
      return;
    }
    if (j->contains("error")) {
      rec.error = (*j)["error"].value("message", "error event");
      return;
    }
    if (auto u = j->find("usage"); u != j->end() && u->is_object()) ReadUsage(*j, *u, rec);
    const Json& choices = j->value("choices", Json::array());
    if (choices.empty()) return;
    const Json& c = choices[0];
    const size_t tokens = c.value("token_ids", Json::array()).size();
    if (tokens > 0 && rec.first_token_s < 0) rec.first_token_s = now;
    rec.chunk_times_s.insert(rec.chunk_times_s.end(), tokens, now);
    if (o_.collect_text && c.contains("text") && c["text"].is_string()) {
      rec.text += c["text"].get<std::string>();
    }
    if (c.contains("finish_reason") && c["finish_reason"].is_string()) {
      rec.finish_reason = c["finish_reason"].get<std::string>();
    }
    const BenchRequest& r = requests_[f.request];
    if (r.cancel_after_tokens >= 0 &&
        static_cast<int64_t>(rec.chunk_times_s.size()) >= r.cancel_after_tokens) {
      rec.cancelled = true;
      client_.Close(stream);  // a client that goes away mid-stream
    }
  }

  static void ReadUsage(const Json& chunk, const Json& u, RequestRecord& rec) {
    rec.prompt_tokens = u.value("prompt_tokens", rec.prompt_tokens);
    rec.output_tokens = u.value("completion_tokens", int64_t{0});
    if (auto d = u.find("prompt_tokens_details"); d != u.end() && d->is_object()) {
      rec.cached_tokens = d->value("cached_tokens", int64_t{0});
    }
    if (auto t = chunk.find("timings"); t != chunk.end() && t->is_object()) {
      const Json& q = t->value("queue_ms", Json());
      if (q.is_number()) rec.server_queue_s = q.get<double>() / 1e3;
    }
  }

  // Finishes the records of streams the client closed (the server ended them, or we hung up).
  void Reap() {
    const double now = Now();
    for (auto it = active_.begin(); it != active_.end();) {
      if (!client_.streams()[it->first].done) {
        ++it;
        continue;
      }
      Finish(it->first, *it->second, now);
      it = active_.erase(it);
    }
  }

  void Finish(size_t stream, InFlight& f, double now) {
    RequestRecord& rec = records_[f.record];
    f.parser.FeedEof();
    for (const std::string& e : f.parser.TakeEvents()) OnEvent(stream, f, e, now);
    rec.end_s = now;
    rec.http_status = f.parser.status();
    if (rec.http_status == 0 && rec.error.empty() && !rec.cancelled) {
      rec.error = f.parser.error().empty() ? "no response" : f.parser.error();
    } else if (rec.http_status != 200 && rec.error.empty()) {
      auto j = ParseJson(f.parser.body(), "response");
      rec.error = j.ok() && j->contains("error") ? (*j)["error"].value("message", "")
                                                 : StrCat("HTTP ", rec.http_status);
    }
    if (rec.error.empty() && !rec.cancelled && rec.finish_reason.empty()) {
      rec.error = f.parser.error().empty() ? "stream ended without a finish reason"
                                           : f.parser.error();
    }
    finished_[f.request] = true;
  }

  void CutOff() {
    for (auto& [stream, f] : active_) {
      records_[f->record].error = "cut off by the time limit";
      client_.Close(stream);
    }
  }

  const LoadOptions& o_;
  const std::vector<BenchRequest>& requests_;
  server::StreamClient client_;
  std::vector<bool> finished_;             // by workload id: the request ended
  std::deque<size_t> waiting_;             // workload indices not sent yet
  std::map<size_t, std::unique_ptr<InFlight>> active_;  // by stream index
  std::vector<RequestRecord> records_;
  size_t limit_ = 0;
  double t0_ = 0;
};

}  // namespace

std::string CompletionBody(const BenchRequest& r, const std::string& model) {
  Json body = {{"prompt", r.prompt},
               {"max_tokens", r.max_tokens},
               {"temperature", 0},
               {"ignore_eos", true},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}},
               {"return_token_ids", true}};
  if (!model.empty()) body["model"] = model;
  if (!r.slo_class.empty()) body["slo_class"] = r.slo_class;
  return body.dump();
}

absl::StatusOr<HttpReply> HttpGet(int port, const std::string& path, const std::string& api_key,
                                  double timeout_s) {
  server::StreamClient client(port);
  client.Add(StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
                    Auth(api_key), "\r\n"));
  ResponseParser parser;
  const double deadline = NowSeconds() + timeout_s;
  while (!client.streams()[0].done && NowSeconds() < deadline) {
    RETURN_IF_ERROR(client.Poll(100, [&](size_t, std::string_view b) { parser.Feed(b); }).status());
  }
  parser.FeedEof();
  if (!parser.complete()) {
    return absl::UnavailableError(StrCat("GET ", path, ": ",
                                         parser.error().empty() ? "timed out" : parser.error()));
  }
  return HttpReply{parser.status(), parser.body()};
}

absl::StatusOr<std::vector<RequestRecord>> RunLoad(const LoadOptions& options,
                                                   const std::vector<BenchRequest>& requests) {
  if (options.concurrency < 0) return absl::InvalidArgumentError("--concurrency: must be >= 0");
  if (options.port <= 0 || options.port > 65535) {
    return absl::InvalidArgumentError("--server: bad port");
  }
  for (const BenchRequest& r : requests) {
    if (r.after >= static_cast<int64_t>(requests.size())) {
      return absl::InvalidArgumentError(StrCat("request ", r.id, " depends on a missing request"));
    }
  }
  Run run(options, requests);
  return run.Go();
}

}  // namespace strata::bench
