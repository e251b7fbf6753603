// The architecture hyper-parameters of a model, parsed from a Hugging Face config.json (or made by
// a synthetic preset). Immutable after loading; shared read-only by every thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace strata::engine {

enum class Architecture { kLlama, kMistral, kQwen2 };
std::string_view ArchitectureName(Architecture a);

// config.json "rope_scaling". Only what the supported families use.
struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;                  // llama3
  double high_freq_factor = 4.0;                 // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string model_type;        // config.json "model_type", e.g. "llama", "qwen2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;        // num_hidden_layers
  int64_t num_heads = 0;         // num_attention_heads
  int64_t num_kv_heads = 0;      // num_key_value_heads (defaults to num_heads)
  int64_t head_dim = 0;          // defaults to hidden_size / num_heads
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;         // Qwen2 family: q/k/v projections carry a bias
  // Mistral/Qwen2 "sliding_window" when in effect (Qwen2 also needs use_sliding_window: true);
  // 0: full attention. Recorded only: the executor decides whether it honours it.
  int64_t sliding_window = 0;
  int64_t bos_token_id = -1;     // -1: none
  std::vector<int64_t> eos_token_ids;  // config.json eos_token_id (int or list)
  DType dtype = DType::kF32;     // torch_dtype, informational: tensors carry their own dtype

  // Parameters in the transformer (embeddings counted once when tied).
  int64_t NumParameters() const;
  // Checks internal consistency (positive sizes, heads divide, ...). Errors name the field.
  absl::Status Validate() const;
};

// Parses config.json text. `path` prefixes every error. Rejects unsupported architectures with
// a message naming "architectures"/"model_type" and the value found.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view path);

// Rotary inverse frequencies [head_dim / 2] with rope_scaling applied (llama3: per-frequency
// smooth interpolation as in transformers' _compute_llama3_parameters; linear: divided by factor).
std::vector<float> RopeInvFreq(const ModelConfig& config);

// The longest sequence served: `configured` when > 0, else min(the model's maximum, 4096).
inline int64_t MaxModelLen(const ModelConfig& config, int64_t configured) {
  return configured > 0 ? configured : std::min<int64_t>(config.max_position_embeddings, 4096);
}

}  // namespace strata::engine
