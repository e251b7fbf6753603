// LocalRuntime wires one model to one device for single-stream use: the Device, a ModelRunner
// with its KV arena, the PagePool over that arena and a Generator. `strata generate`, the golden
// tests and the single-stream benchmark share it. One thread at a time.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "engine/generator.h"
#include "engine/model.h"
#include "engine/model_runner.h"
#include "kernels/device.h"
#include "kvcache/page_pool.h"

namespace strata::engine {

struct RuntimeConfig {
  std::string backend = "auto";  // auto | cpu | cuda  (auto: the first GPU if there is one)
  int threads = 0;               // CPU kernel threads; 0 = all cores
  int32_t block_size = 16;       // tokens per KV page
  int64_t max_batch_tokens = 512;  // prefill chunk size
  int64_t max_model_len = 0;     // 0 = min(model maximum, 4096)
  int32_t max_logit_rows = 64;   // rows of logits per step (scoring uses all of them)

  absl::Status Validate() const;
};

class LocalRuntime {
 public:
  // `model` must outlive the runtime.
  static absl::StatusOr<std::unique_ptr<LocalRuntime>> Create(const Model& model,
                                                              const RuntimeConfig& config);
  Generator& generator() { return *generator_; }
  kernels::Device& device() { return *device_; }
  const ModelRunner& runner() const { return *runner_; }

 private:
  LocalRuntime() = default;
  std::unique_ptr<kernels::Device> device_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<kvcache::PagePool> pool_;
  std::unique_ptr<Generator> generator_;
};

absl::StatusOr<std::unique_ptr<kernels::Device>> MakeDevice(const std::string& backend,
                                                            int threads);

}  // namespace strata::engine
