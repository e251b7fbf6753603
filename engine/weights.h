// A model's weights as views into memory-mapped safetensors files (or owned buffers for tensors
// that had to be converted, and for synthetic models). Immutable after loading; any thread may
// read. Big matrices keep their file dtype (F32/F16->see below/BF16); small vectors (norms,
// biases) are converted to f32 at load.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/file.h"
#include "engine/model_config.h"
#include "kernels/device.h"

namespace strata::engine {

struct LayerWeights {
  kernels::MatrixView q_proj, k_proj, v_proj, o_proj;  // [out, in] (nn.Linear layout)
  kernels::MatrixView gate_proj, up_proj, down_proj;
  std::vector<float> q_bias, k_bias, v_bias;           // empty unless config.qkv_bias
  std::vector<float> input_norm;                       // [hidden]
  std::vector<float> post_attention_norm;              // [hidden]
};

struct ModelWeights {
  kernels::MatrixView embed_tokens;  // [vocab, hidden]
  kernels::MatrixView lm_head;       // [vocab, hidden]; == embed_tokens when tied
  std::vector<float> final_norm;     // [hidden]
  std::vector<LayerWeights> layers;

  // 128-bit fingerprint of the weights (XXH3-128 over every tensor's name, dtype and shape in
  // name order plus its first and last 4 KiB of data, so it is cheap and independent of how the
  // files are sharded; synthetic: over preset name and seed). Feeds prefix-cache seeds.
  uint64_t fingerprint_hi = 0;
  uint64_t fingerprint_lo = 0;
  int64_t total_bytes = 0;  // bytes of all matrices as stored

  // Ownership of the memory the views point into.
  std::vector<std::unique_ptr<MappedFile>> mapped_files;
  std::vector<std::vector<uint8_t>> owned;
};

// Loads `dir`/model.safetensors or the shards listed in `dir`/model.safetensors.index.json,
// checking every expected tensor's presence, shape and dtype against `config`. F16 matrices are
// converted to F32 once at load (the CPU GEMM has no f16 path); F32 and BF16 stay mapped.
// Errors name the file and the problem; nothing partial is returned.
absl::StatusOr<ModelWeights> LoadWeights(const std::string& dir, const ModelConfig& config);

// A model folder read in one call: `dir`/config.json, then its weights.
struct LoadedModel {
  std::string dir;
  ModelConfig config;
  ModelWeights weights;
};
absl::StatusOr<LoadedModel> LoadModelFiles(const std::string& dir);

}  // namespace strata::engine
