#include "engine/hf_hub_http.h"

#include <curl/curl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/logging.h"

namespace strata::engine {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxErrorBodyBytes = 300;
constexpr auto kLogInterval = std::chrono::seconds(5);
constexpr auto kRedrawInterval = std::chrono::milliseconds(200);

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Mib(int64_t bytes) { return absl::StrFormat("%.1f MiB", bytes / 1048576.0); }

// One file's progress: a redrawn line on a terminal, else a log line every few seconds.
class Progress {
 public:
  Progress(std::string label, int64_t start_bytes)
      : label_(std::move(label)), tty_(isatty(STDERR_FILENO) == 1), start_bytes_(start_bytes) {}

  void Update(int64_t done, int64_t total) {
    const Clock::time_point now = Clock::now();
    if (now - last_ < (tty_ ? kRedrawInterval : kLogInterval)) return;
    last_ = now;
    const double s = std::chrono::duration<double>(now - start_).count();
    const double rate = s > 0 ? (done - start_bytes_) / s : 0;
    const std::string total_text = total > 0 ? Mib(total) : std::string("?");
    if (tty_) {
      const int pct = total > 0 ? static_cast<int>(100 * done / total) : 0;
      std::string bar(20, ' ');
      std::fill_n(bar.begin(), pct / 5, '#');
      std::fprintf(stderr, "\r%s [%s] %3d%% %s / %s  %s/s   ", label_.c_str(), bar.c_str(), pct,
                   Mib(done).c_str(), total_text.c_str(), Mib(static_cast<int64_t>(rate)).c_str());
      drew_ = true;
    } else if (s > 1) {
      LOG_INFO("downloading {}: {} / {} at {}/s", label_, Mib(done), total_text,
               Mib(static_cast<int64_t>(rate)));
    }
  }
  // Draws the final state (a terminal would otherwise be left at the last throttled redraw).
  void Finish(int64_t bytes) {
    if (!tty_ || !drew_) return;
    last_ = Clock::time_point();
    Update(bytes, bytes);
  }
  ~Progress() {
    if (drew_) std::fputc('\n', stderr);
  }

 private:
  std::string label_;
  bool tty_;
  int64_t start_bytes_;
  bool drew_ = false;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_ = Clock::now();
};

// Where a response body goes: memory, or a file that may already hold a prefix.
struct Sink {
  CURL* curl = nullptr;
  std::string* memory = nullptr;
  FILE* file = nullptr;
  int64_t offset = 0;           // bytes already in the file, requested with Range
  bool started = false;
  std::string error_body;       // start of a non-2xx body, for the error message
  int write_errno = 0;
  Progress* progress = nullptr;
};

size_t OnData(char* ptr, size_t size, size_t nmemb, void* userdata) {
  Sink* sink = static_cast<Sink*>(userdata);
  const size_t n = size * nmemb;
  long status = 0;
  curl_easy_getinfo(sink->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 300) {
    const size_t room = kMaxErrorBodyBytes - std::min(kMaxErrorBodyBytes, sink->error_body.size());
    sink->error_body.append(ptr, std::min(room, n));
    return n;
  }
  if (sink->memory != nullptr) {
    sink->memory->append(ptr, n);
    return n;
  }
  if (!sink->started) {
    sink->started = true;
    if (status == 200 && sink->offset > 0) {  // The server ignored Range: start over.
      if (ftruncate(fileno(sink->file), 0) != 0 || std::fseek(sink->file, 0, SEEK_SET) != 0) {
        sink->write_errno = errno;
        return 0;
      }
      sink->offset = 0;
    }
  }
  if (std::fwrite(ptr, 1, n, sink->file) != n) {
    sink->write_errno = errno;
    return 0;  // Makes curl fail with CURLE_WRITE_ERROR.
  }
  return n;
}

int OnProgress(void* userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  Sink* sink = static_cast<Sink*>(userdata);
  sink->progress->Update(sink->offset + dlnow, dltotal > 0 ? sink->offset + dltotal : 0);
  return 0;
}

struct Outcome {
  CURLcode rc = CURLE_OK;
  long status = 0;
  std::string curl_error;
};

Outcome PerformOnce(const std::string& url, const HubHttpOptions& opts, Sink& sink) {
  GlobalInitOnce();
  CURL* curl = curl_easy_init();
  CHECK(curl != nullptr);
  sink.curl = curl;
  char error_buffer[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  if (!opts.token.empty()) {
    // libcurl sends a custom Authorization header to the original host only, so a redirect to
    // a CDN never sees the token.
    headers = curl_slist_append(headers, StrCat("Authorization: Bearer ", opts.token).c_str());
  }
  headers = curl_slist_append(headers, "User-Agent: strata/" STRATA_VERSION);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, static_cast<long>(opts.connect_timeout_s));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, static_cast<long>(opts.stall_timeout_s));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnData);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  const std::string range = StrCat(sink.offset, "-");
  if (sink.offset > 0) curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
  if (sink.progress != nullptr) {
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, OnProgress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &sink);
  }
  Outcome out;
  out.rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
  out.curl_error = error_buffer[0] != 0 ? error_buffer : curl_easy_strerror(out.rc);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return out;
}

bool IsTransient(const Outcome& o) {
  switch (o.rc) {
    case CURLE_OK:
      return o.status == 429 || o.status >= 500;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

absl::Status OutcomeError(const std::string& url, const Outcome& o, const Sink& sink) {
  if (o.rc == CURLE_WRITE_ERROR && sink.write_errno != 0) {
    return absl::InternalError(
        StrCat("GET ", url, ": writing the download failed: ", std::strerror(sink.write_errno)));
  }
  if (o.rc != CURLE_OK) {
    return absl::UnavailableError(StrCat("GET ", url, ": ", o.curl_error));
  }
  std::string msg = StrCat("GET ", url, ": HTTP ", o.status);
  if (o.status == 401 || o.status == 403) {
    msg += " (not authorized: gated or private model? set HF_TOKEN)";
  } else if (o.status == 404) {
    msg += " (not found: check the model id and revision)";
  }
  if (!sink.error_body.empty()) msg += StrCat(": ", sink.error_body);
  if (o.status == 404) return absl::NotFoundError(msg);
  if (o.status == 401 || o.status == 403) return absl::PermissionDeniedError(msg);
  return absl::UnavailableError(msg);
}

void Backoff(int attempt) {
  std::this_thread::sleep_for(std::chrono::milliseconds(250 * attempt));
}

int64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

}  // namespace

absl::StatusOr<std::string> HubGet(const std::string& url, const HubHttpOptions& opts) {
  for (int attempt = 1;; ++attempt) {
    std::string body;
    Sink sink;
    sink.memory = &body;
    Outcome o = PerformOnce(url, opts, sink);
    if (o.rc == CURLE_OK && o.status >= 200 && o.status < 300) return body;
    if (!IsTransient(o) || attempt >= opts.max_attempts) return OutcomeError(url, o, sink);
    LOG_WARN("GET {} failed ({}), retrying", url, o.rc == CURLE_OK ? StrCat("HTTP ", o.status)
                                                                   : o.curl_error);
    Backoff(attempt);
  }
}

absl::Status HubDownload(const std::string& url, const std::string& partial_path,
                         int64_t expected_bytes, const std::string& label,
                         const HubHttpOptions& opts) {
  for (int attempt = 1;; ++attempt) {
    int64_t have = std::max<int64_t>(FileSize(partial_path), 0);
    if (expected_bytes >= 0 && have == expected_bytes) return absl::OkStatus();
    if (expected_bytes >= 0 && have > expected_bytes) have = 0;  // Not a prefix: start over.
    FILE* file = std::fopen(partial_path.c_str(), have > 0 ? "ab" : "wb");
    if (file == nullptr) {
      return absl::InternalError(StrCat(partial_path, ": open: ", std::strerror(errno)));
    }
    Progress progress(label, have);
    Sink sink;
    sink.file = file;
    sink.offset = have;
    sink.progress = &progress;
    Outcome o = PerformOnce(url, opts, sink);
    const bool closed = std::fclose(file) == 0;
    if (o.rc == CURLE_OK && o.status >= 200 && o.status < 300) {
      if (!closed) return absl::InternalError(StrCat(partial_path, ": write failed"));
      const int64_t got = FileSize(partial_path);
      if (expected_bytes < 0 || got == expected_bytes) {
        progress.Finish(got);
        return absl::OkStatus();
      }
      if (got < expected_bytes && attempt < opts.max_attempts) continue;  // Resume the rest.
      std::remove(partial_path.c_str());
      return absl::DataLossError(StrCat("GET ", url, ": got ", got, " bytes, expected ",
                                        expected_bytes));
    }
    // 416: the prefix is not a prefix of this file (or all of it, size unknown): refetch it.
    const bool restart = o.rc == CURLE_OK && o.status == 416 && have > 0;
    if (restart) std::remove(partial_path.c_str());
    if ((!restart && !IsTransient(o)) || attempt >= opts.max_attempts) {
      return OutcomeError(url, o, sink);
    }
    LOG_WARN("GET {} failed ({}), resuming", url, o.rc == CURLE_OK ? StrCat("HTTP ", o.status)
                                                                   : o.curl_error);
    Backoff(attempt);
  }
}

}  // namespace strata::engine
