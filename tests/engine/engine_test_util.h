// Helpers shared by the engine tests.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <cstdint>
#include <utility>
#include <vector>

#include "common/file.h"
#include "engine/engine.h"

namespace strata::engine {

// A greedy request for `max_tokens` tokens of `prompt`.
inline RequestOptions Greedy(std::vector<int32_t> prompt, int64_t max_tokens) {
  RequestOptions o;
  o.prompt_ids = std::move(prompt);
  o.max_tokens = max_tokens;
  o.sampling.temperature = 0;
  return o;
}

// A small engine on `backend` (2 kernel threads): 4-token pages, 128-token sequences, up to 32
// of them, and a 96-token step budget that forces chunked prefill next to decodes.
inline EngineConfig SmallEngineConfig(const std::string& backend = "cpu") {
  EngineConfig c;
  c.backend = backend;
  c.threads = 2;
  c.block_size = 4;
  c.max_model_len = 128;
  c.scheduler.max_batch_tokens = 96;
  c.scheduler.max_num_seqs = 32;
  return c;
}

inline const std::string kStoriesDir = STRATA_SOURCE_DIR "/../shared/models/stories260k";

// stories260K, loaded once per test binary; null (and the test skips) when it is absent.
inline const Model* SharedModel() {
  static std::unique_ptr<Model> model = [] {
    std::unique_ptr<Model> m;
    if (!FileExists(kStoriesDir)) return m;
    auto loaded = LoadModel(kStoriesDir, {});
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    if (loaded.ok()) m = std::move(*loaded);
    return m;
  }();
  return model.get();
}

// What a request produced, from its channel.
struct Output {
  std::vector<int32_t> tokens;
  std::string finish_reason;  // "timeout" when nothing final came within the deadline
  int64_t num_cached_tokens = 0;
  int64_t num_host_cached_tokens = 0;
  int64_t num_disk_cached_tokens = 0;
};

// Pops events until the final one; a bounded wait so that a hung engine fails instead of hanging.
inline Output Drain(OutputChannel& channel, double timeout_s = 20) {
  Output out;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    std::optional<TokenEvent> e = channel.TryPop();
    if (!e) {
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "no final event within " << timeout_s << " s";
        out.finish_reason = "timeout";
        return out;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    if (e->token >= 0) out.tokens.push_back(e->token);
    out.num_cached_tokens = e->num_cached_tokens;
    out.num_host_cached_tokens = e->num_host_cached_tokens;
    out.num_disk_cached_tokens = e->num_disk_cached_tokens;
    if (!e->finish_reason.empty()) {
      out.finish_reason = e->finish_reason;
      return out;
    }
  }
}

inline Output RunOne(Engine& engine, RequestOptions o) {
  auto s = engine.Submit(std::move(o));
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return {};
  return Drain(*s->channel);
}

}  // namespace strata::engine
