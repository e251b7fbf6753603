// HTTP for the Hub client (libcurl easy interface): small GETs into memory and resumable file
// downloads with a progress display. Each call uses its own curl handle; any thread may call.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace strata::engine {

struct HubHttpOptions {
  std::string token;               // sent as "Authorization: Bearer <token>" when not empty
  int max_attempts = 4;            // transient failures (cut transfer, 5xx) are retried
  int64_t connect_timeout_s = 30;
  int64_t stall_timeout_s = 60;
};

// GET `url` into memory (for small JSON documents). Non-2xx -> error naming the URL and status.
absl::StatusOr<std::string> HubGet(const std::string& url, const HubHttpOptions& opts);

// Downloads `url` into `partial_path`, appending with "Range: bytes=<size>-" when the file
// already holds a prefix (from an earlier attempt or an earlier run). `expected_bytes` (or -1)
// lets it verify the size and skip a request for a file already complete. On success the file
// is complete; the caller renames it. `label` names the file in the progress display.
absl::Status HubDownload(const std::string& url, const std::string& partial_path,
                         int64_t expected_bytes, const std::string& label,
                         const HubHttpOptions& opts);

}  // namespace strata::engine
