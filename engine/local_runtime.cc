#include "engine/local_runtime.h"

#include <algorithm>

#include "common/logging.h"

namespace strata::engine {

absl::Status RuntimeConfig::Validate() const {
  if (backend != "auto" && backend != "cpu" && backend != "cuda") {
    return absl::InvalidArgumentError(
        StrCat("backend must be auto, cpu or cuda, got '", backend, "'"));
  }
  if (threads < 0) return absl::InvalidArgumentError("threads must be >= 0");
  if (max_batch_tokens <= 0) return absl::InvalidArgumentError("max_batch_tokens must be > 0");
  if (max_model_len < 0) return absl::InvalidArgumentError("max_model_len must be >= 0");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<kernels::Device>> MakeDevice(const std::string& backend,
                                                            int threads) {
  if (backend == "cuda") return kernels::MakeCudaDevice(0);
  if (backend == "auto") {
    absl::StatusOr<std::unique_ptr<kernels::Device>> cuda = kernels::MakeCudaDevice(0);
    if (cuda.ok()) return cuda;
    LOG_INFO("backend auto: the CPU ({})", std::string(cuda.status().message()));
  }
  return kernels::MakeCpuDevice({.threads = threads});
}

absl::StatusOr<std::unique_ptr<LocalRuntime>> LocalRuntime::Create(const Model& model,
                                                                   const RuntimeConfig& config) {
  RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<LocalRuntime> rt(new LocalRuntime());
  ASSIGN_OR_RETURN(rt->device_, MakeDevice(config.backend, config.threads));
  const int64_t max_len = MaxModelLen(model.config, config.max_model_len);
  RunnerConfig rc{.max_batch_tokens = config.max_batch_tokens,
                  .max_num_seqs = 1,
                  .max_logit_rows = config.max_logit_rows,
                  .block_size = config.block_size,
                  .max_model_len = max_len,
                  .extra_pools = {}};
  // One sequence of max_len tokens in every layer.
  rc.num_kv_pages = static_cast<int32_t>((max_len + config.block_size - 1) / config.block_size *
                                         model.config.num_layers);
  ASSIGN_OR_RETURN(rt->runner_, ModelRunner::Create(rt->device_.get(), model.config,
                                                     model.weights, rc));
  rt->pool_ = std::make_unique<kvcache::PagePool>(rc.num_kv_pages);
  rt->generator_ = std::make_unique<Generator>(rt->runner_.get(), rt->pool_.get());
  return rt;
}

}  // namespace strata::engine
