// Model resolution: turns what the user typed after --model into a local Hugging Face folder.
//
//   /path/to/folder        -> returned as is
//   org/name[@revision]    -> <cache_dir>/models--org--name/snapshots/<commit>/, downloaded from
//                             the Hub into that cache first when it is not there yet
//
// The cache uses the huggingface_hub layout, so folders it fills are shared with Python tools:
//
//   models--org--name/
//     refs/<revision>              the commit hash the revision pointed to (no newline)
//     blobs/<blob id>              file contents, named by the LFS sha256 or the git blob id
//     blobs/<blob id>.incomplete   a download in progress; resumed with an HTTP Range request
//     snapshots/<commit>/<file>    relative symlink to ../../blobs/<blob id>
//
// A snapshot's links are created only once every blob it needs is complete, so an interrupted
// or failed download never leaves a half-filled snapshot behind.
//
// Free functions; no global state besides libcurl's one-time global init. Callers serialize
// downloads into one cache (two processes fetching the same blob would share its .incomplete).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace strata::engine {

struct HubOptions {
  std::string cache_dir;                          // hub cache root, e.g. ~/.cache/huggingface/hub
  std::string endpoint = "https://huggingface.co";  // tests point it at http://127.0.0.1:PORT
  std::string token;                              // bearer token; empty: anonymous
  bool offline = false;                           // only the cache; never the network
  int max_attempts = 4;                           // per file; later attempts resume with Range
  int64_t connect_timeout_s = 30;                 // TCP + TLS connect
  int64_t stall_timeout_s = 60;                   // abort a transfer that moves < 1 KiB/s this long

  absl::Status Validate() const;
};

// A local folder, or the snapshot folder of a Hub model (downloading config.json,
// tokenizer.json, tokenizer_config.json, generation_config.json when listed, and the safetensors
// weights: model.safetensors or the index and its shards). Errors name the model, and for HTTP
// failures the URL and status.
absl::StatusOr<std::string> ResolveModelPath(const std::string& model, const HubOptions& opts);

}  // namespace strata::engine
