#include "engine/model_config.h"

#include <cmath>
#include <numbers>
#include <string>

#include "common/json.h"

namespace strata::engine {
namespace {

absl::Status ConfigError(std::string_view path, std::string_view message) {
  return absl::InvalidArgumentError(StrCat(path, ": ", message));
}

// Maps "architectures"[0] (or "model_type" when the list is absent) to a supported family.
absl::StatusOr<Architecture> ParseArchitecture(const Json& j, std::string_view path) {
  auto it = j.find("architectures");
  if (it != j.end() && !it->is_null()) {
    if (!it->is_array() || it->empty() || !(*it)[0].is_string()) {
      return ConfigError(path, "key 'architectures': expected a non-empty list of strings");
    }
    const std::string name = (*it)[0].get<std::string>();
    if (name == "LlamaForCausalLM") return Architecture::kLlama;
    if (name == "MistralForCausalLM") return Architecture::kMistral;
    if (name == "Qwen2ForCausalLM") return Architecture::kQwen2;
    return ConfigError(path, StrCat("unsupported \"architectures\" value \"", name,
                                    "\" (supported: LlamaForCausalLM, MistralForCausalLM, "
                                    "Qwen2ForCausalLM)"));
  }
  ASSIGN_OR_RETURN(std::string type, JsonOptionalString(j, "model_type", "", path));
  if (type == "llama") return Architecture::kLlama;
  if (type == "mistral") return Architecture::kMistral;
  if (type == "qwen2") return Architecture::kQwen2;
  return ConfigError(path, StrCat("no \"architectures\" and unsupported \"model_type\" \"", type,
                                  "\" (supported: llama, mistral, qwen2)"));
}

absl::StatusOr<RopeScaling> ParseRopeScaling(const Json& j, std::string_view path) {
  RopeScaling rs;
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return rs;
  const Json& r = *it;
  if (!r.is_object()) return ConfigError(path, "key 'rope_scaling': expected an object or null");
  const std::string what = StrCat(path, ": rope_scaling");
  ASSIGN_OR_RETURN(std::string type, JsonOptionalString(r, "rope_type", "", what));
  if (type.empty()) {
    ASSIGN_OR_RETURN(type, JsonOptionalString(r, "type", "default", what));
  }
  if (type == "default") return rs;
  if (type != "linear" && type != "llama3") {
    return ConfigError(path, StrCat("unsupported rope_scaling type \"", type,
                                    "\" (supported: default, linear, llama3)"));
  }
  if (r.find("factor") == r.end()) {
    return ConfigError(path, StrCat("rope_scaling type \"", type, "\" needs 'factor'"));
  }
  ASSIGN_OR_RETURN(rs.factor, JsonOptionalDouble(r, "factor", 1.0, what));
  if (type == "linear") {
    rs.type = RopeScaling::Type::kLinear;
    return rs;
  }
  rs.type = RopeScaling::Type::kLlama3;
  ASSIGN_OR_RETURN(rs.low_freq_factor,
                   JsonOptionalDouble(r, "low_freq_factor", rs.low_freq_factor, what));
  ASSIGN_OR_RETURN(rs.high_freq_factor,
                   JsonOptionalDouble(r, "high_freq_factor", rs.high_freq_factor, what));
  ASSIGN_OR_RETURN(rs.original_max_position_embeddings,
                   JsonOptionalInt(r, "original_max_position_embeddings",
                                   rs.original_max_position_embeddings, what));
  return rs;
}

absl::StatusOr<std::vector<int64_t>> ParseEosIds(const Json& j, std::string_view path) {
  std::vector<int64_t> ids;
  auto it = j.find("eos_token_id");
  if (it == j.end() || it->is_null()) return ids;
  if (it->is_number_integer()) {
    ids.push_back(it->get<int64_t>());
    return ids;
  }
  if (it->is_array()) {
    for (const Json& v : *it) {
      if (!v.is_number_integer()) break;
      ids.push_back(v.get<int64_t>());
    }
    if (ids.size() == it->size()) return ids;
  }
  return ConfigError(path, "key 'eos_token_id': expected an integer or a list of integers");
}

absl::StatusOr<DType> ParseDType(const Json& j, std::string_view path) {
  // Newer transformers write "dtype", older ones "torch_dtype".
  ASSIGN_OR_RETURN(std::string name, JsonOptionalString(j, "torch_dtype", "", path));
  if (name.empty()) {
    ASSIGN_OR_RETURN(name, JsonOptionalString(j, "dtype", "float32", path));
  }
  if (name == "bfloat16") return DType::kBF16;
  if (name == "float16") return DType::kF16;
  return DType::kF32;  // Informational only: each tensor carries its own dtype.
}

// Features of the config that would change the math; rejected rather than silently ignored.
absl::Status CheckUnsupportedFeatures(const Json& j, Architecture arch, std::string_view path) {
  ASSIGN_OR_RETURN(std::string act, JsonOptionalString(j, "hidden_act", "silu", path));
  if (act != "silu") {
    return ConfigError(path, StrCat("unsupported hidden_act \"", act, "\" (only silu)"));
  }
  if (arch != Architecture::kQwen2) {
    ASSIGN_OR_RETURN(bool attention_bias, JsonOptionalBool(j, "attention_bias", false, path));
    if (attention_bias) return ConfigError(path, "unsupported attention_bias: true");
  }
  ASSIGN_OR_RETURN(bool mlp_bias, JsonOptionalBool(j, "mlp_bias", false, path));
  if (mlp_bias) return ConfigError(path, "unsupported mlp_bias: true");
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ParseSlidingWindow(const Json& j, Architecture arch,
                                           std::string_view path) {
  if (arch == Architecture::kLlama) return 0;
  ASSIGN_OR_RETURN(int64_t window, JsonOptionalInt(j, "sliding_window", 0, path));
  if (arch == Architecture::kQwen2) {
    ASSIGN_OR_RETURN(bool use, JsonOptionalBool(j, "use_sliding_window", false, path));
    if (!use) window = 0;
  }
  return window;
}

absl::Status ParseSizes(const Json& j, std::string_view path, ModelConfig& c) {
  ASSIGN_OR_RETURN(c.vocab_size, JsonInt(j, "vocab_size", path));
  ASSIGN_OR_RETURN(c.hidden_size, JsonInt(j, "hidden_size", path));
  ASSIGN_OR_RETURN(c.intermediate_size, JsonInt(j, "intermediate_size", path));
  ASSIGN_OR_RETURN(c.num_layers, JsonInt(j, "num_hidden_layers", path));
  ASSIGN_OR_RETURN(c.num_heads, JsonInt(j, "num_attention_heads", path));
  ASSIGN_OR_RETURN(c.num_kv_heads, JsonOptionalInt(j, "num_key_value_heads", c.num_heads, path));
  if (c.num_heads <= 0) return ConfigError(path, "num_attention_heads must be positive");
  ASSIGN_OR_RETURN(c.head_dim, JsonOptionalInt(j, "head_dim", 0, path));
  if (c.head_dim == 0) {
    if (c.hidden_size % c.num_heads != 0) {
      return ConfigError(path, "hidden_size is not a multiple of num_attention_heads and no "
                               "head_dim is given");
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  ASSIGN_OR_RETURN(c.max_position_embeddings,
                   JsonOptionalInt(j, "max_position_embeddings", c.max_position_embeddings, path));
  return absl::OkStatus();
}

}  // namespace

std::string_view ArchitectureName(Architecture a) {
  switch (a) {
    case Architecture::kLlama: return "LlamaForCausalLM";
    case Architecture::kMistral: return "MistralForCausalLM";
    case Architecture::kQwen2: return "Qwen2ForCausalLM";
  }
  return "?";
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view path) {
  ASSIGN_OR_RETURN(Json j, ParseJson(json_text, path));
  if (!j.is_object()) return ConfigError(path, "expected a JSON object");
  ModelConfig c;
  ASSIGN_OR_RETURN(c.arch, ParseArchitecture(j, path));
  ASSIGN_OR_RETURN(c.model_type, JsonOptionalString(j, "model_type", "", path));
  RETURN_IF_ERROR(CheckUnsupportedFeatures(j, c.arch, path));
  RETURN_IF_ERROR(ParseSizes(j, path, c));
  ASSIGN_OR_RETURN(c.rms_norm_eps, JsonOptionalDouble(j, "rms_norm_eps", c.rms_norm_eps, path));
  ASSIGN_OR_RETURN(c.rope_theta, JsonOptionalDouble(j, "rope_theta", c.rope_theta, path));
  ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(j, path));
  ASSIGN_OR_RETURN(c.tie_word_embeddings, JsonOptionalBool(j, "tie_word_embeddings", false, path));
  c.qkv_bias = c.arch == Architecture::kQwen2;
  ASSIGN_OR_RETURN(c.sliding_window, ParseSlidingWindow(j, c.arch, path));
  ASSIGN_OR_RETURN(c.bos_token_id, JsonOptionalInt(j, "bos_token_id", -1, path));
  ASSIGN_OR_RETURN(c.eos_token_ids, ParseEosIds(j, path));
  ASSIGN_OR_RETURN(c.dtype, ParseDType(j, path));
  absl::Status valid = c.Validate();
  if (!valid.ok()) return ConfigError(path, std::string(valid.message()));
  return c;
}

int64_t ModelConfig::NumParameters() const {
  const int64_t q_dim = num_heads * head_dim;
  const int64_t kv_dim = num_kv_heads * head_dim;
  int64_t per_layer = hidden_size * (2 * q_dim + 2 * kv_dim)  // q, k, v, o
                      + 3 * hidden_size * intermediate_size   // gate, up, down
                      + 2 * hidden_size;                      // two norms
  if (qkv_bias) per_layer += q_dim + 2 * kv_dim;
  const int64_t embed = vocab_size * hidden_size;
  return embed + (tie_word_embeddings ? 0 : embed) + hidden_size + num_layers * per_layer;
}

absl::Status ModelConfig::Validate() const {
  struct Positive {
    const char* name;
    int64_t value;
  };
  for (const Positive& p : {Positive{"vocab_size", vocab_size}, {"hidden_size", hidden_size},
                            {"intermediate_size", intermediate_size},
                            {"num_hidden_layers", num_layers},
                            {"num_attention_heads", num_heads},
                            {"num_key_value_heads", num_kv_heads}, {"head_dim", head_dim},
                            {"max_position_embeddings", max_position_embeddings}}) {
    if (p.value <= 0) {
      return absl::InvalidArgumentError(StrCat(p.name, " must be positive, got ", p.value));
    }
  }
  if (num_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(StrCat("num_attention_heads (", num_heads,
                                             ") is not a multiple of num_key_value_heads (",
                                             num_kv_heads, ")"));
  }
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError(StrCat("head_dim must be even for RoPE, got ", head_dim));
  }
  if (!(rms_norm_eps > 0)) return absl::InvalidArgumentError("rms_norm_eps must be positive");
  if (!(rope_theta > 0)) return absl::InvalidArgumentError("rope_theta must be positive");
  if (sliding_window < 0) return absl::InvalidArgumentError("sliding_window must be >= 0");
  const RopeScaling& rs = rope_scaling;
  if (rs.type != RopeScaling::Type::kNone && !(rs.factor > 0)) {
    return absl::InvalidArgumentError("rope_scaling factor must be positive");
  }
  if (rs.type == RopeScaling::Type::kLlama3 &&
      (!(rs.high_freq_factor > rs.low_freq_factor) || !(rs.low_freq_factor > 0) ||
       rs.original_max_position_embeddings <= 0)) {
    return absl::InvalidArgumentError(
        "rope_scaling llama3 needs 0 < low_freq_factor < high_freq_factor and a positive "
        "original_max_position_embeddings");
  }
  return absl::OkStatus();
}

// Mirrors transformers' rope init functions step by step in float32, the dtype torch computes
// them in, so the frequencies match bit for bit up to powf rounding.
std::vector<float> RopeInvFreq(const ModelConfig& config) {
  const int64_t half = config.head_dim / 2;
  const float dim = static_cast<float>(config.head_dim);
  const float base = static_cast<float>(config.rope_theta);
  std::vector<float> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) {
    inv_freq[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) / dim);
  }
  const RopeScaling& rs = config.rope_scaling;
  const float factor = static_cast<float>(rs.factor);
  if (rs.type == RopeScaling::Type::kLinear) {
    for (float& f : inv_freq) f /= factor;
  } else if (rs.type == RopeScaling::Type::kLlama3) {
    const double old_len = static_cast<double>(rs.original_max_position_embeddings);
    const float low_freq_wavelen = static_cast<float>(old_len / rs.low_freq_factor);
    const float high_freq_wavelen = static_cast<float>(old_len / rs.high_freq_factor);
    const float two_pi = static_cast<float>(2 * std::numbers::pi);
    const float low = static_cast<float>(rs.low_freq_factor);
    const float span = static_cast<float>(rs.high_freq_factor - rs.low_freq_factor);
    for (float& f : inv_freq) {
      const float wavelen = two_pi / f;
      if (wavelen > low_freq_wavelen) {
        f = f / factor;
      } else if (!(wavelen < high_freq_wavelen)) {  // medium band: smooth interpolation
        const float smooth = (static_cast<float>(old_len) / wavelen - low) / span;
        f = (1 - smooth) * f / factor + smooth * f;
      }
    }
  }
  return inv_freq;
}

}  // namespace strata::engine
