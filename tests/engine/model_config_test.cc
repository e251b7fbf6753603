#include "engine/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "common/file.h"

namespace strata::engine {
namespace {

using ::testing::HasSubstr;

constexpr char kLlama31_8B[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 128256})";

constexpr char kLlama32_1B[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "head_dim": 64,
  "bos_token_id": 128000, "eos_token_id": 128001, "hidden_size": 2048,
  "intermediate_size": 8192, "max_position_embeddings": 131072, "num_attention_heads": 32,
  "num_hidden_layers": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "vocab_size": 128256})";

constexpr char kLlama2_7B[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "bos_token_id": 1,
  "eos_token_id": 2, "hidden_size": 4096, "intermediate_size": 11008,
  "max_position_embeddings": 4096, "num_attention_heads": 32, "num_hidden_layers": 32,
  "rms_norm_eps": 1e-05, "rope_scaling": null, "torch_dtype": "float16", "vocab_size": 32000})";

constexpr char kMistral7B[] = R"({
  "architectures": ["MistralForCausalLM"], "model_type": "mistral", "bos_token_id": 1,
  "eos_token_id": 2, "hidden_size": 4096, "intermediate_size": 14336,
  "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
  "sliding_window": SW, "vocab_size": 32768})";

constexpr char kQwen25_05B[] = R"({
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 21,
  "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_sliding_window": false,
  "vocab_size": 151936})";

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  s.replace(s.find(from), from.size(), to);
  return s;
}

TEST(ModelConfigTest, Stories260k) {
  const std::string path = STRATA_SOURCE_DIR "/../shared/models/stories260k/config.json";
  if (!FileExists(path)) GTEST_SKIP() << "no " << path;
  absl::StatusOr<ModelConfig> c = ParseModelConfig(*ReadFile(path), path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kLlama);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 172);
  EXPECT_EQ(c->num_layers, 5);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->max_position_embeddings, 512);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_EQ(c->NumParameters(), 260032);
  // theta_j = 10000^(-2j/8).
  std::vector<float> inv = RopeInvFreq(*c);
  ASSERT_EQ(inv.size(), 4u);
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
  EXPECT_FLOAT_EQ(inv[1], 0.1f);
  EXPECT_FLOAT_EQ(inv[2], 0.01f);
  EXPECT_FLOAT_EQ(inv[3], 0.001f);
}

TEST(ModelConfigTest, Llama31WithLlama3RopeScaling) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kLlama31_8B, "l31/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c->dtype, DType::kBF16);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_EQ(c->NumParameters(), 8030261248);  // The published Llama-3.1-8B count.
}

// An independent double-precision transcription of _compute_llama3_parameters.
std::vector<double> Llama3Reference(double theta, int dim, double factor, double lo, double hi,
                                    double old_len) {
  std::vector<double> out;
  for (int i = 0; i < dim; i += 2) {
    const double inv = 1.0 / std::pow(theta, static_cast<double>(i) / dim);
    const double wavelen = 2 * std::numbers::pi / inv;
    if (wavelen < old_len / hi) {
      out.push_back(inv);
    } else if (wavelen > old_len / lo) {
      out.push_back(inv / factor);
    } else {
      const double smooth = (old_len / wavelen - lo) / (hi - lo);
      out.push_back((1 - smooth) * inv / factor + smooth * inv);
    }
  }
  return out;
}

TEST(ModelConfigTest, Llama3InvFreqMatchesReferenceInAllThreeBands) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kLlama31_8B, "l31/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<float> inv = RopeInvFreq(*c);
  std::vector<double> ref = Llama3Reference(500000.0, 128, 8.0, 1.0, 4.0, 8192.0);
  ASSERT_EQ(inv.size(), 64u);
  int high = 0, medium = 0, low = 0;
  for (size_t i = 0; i < inv.size(); ++i) {
    EXPECT_NEAR(inv[i], ref[i], 2e-6 * ref[i]) << "i=" << i;
    const double plain = 1.0 / std::pow(500000.0, 2.0 * i / 128);
    if (std::abs(ref[i] - plain) < 1e-12 * plain) {
      ++high;
    } else if (std::abs(ref[i] - plain / 8) < 1e-12 * plain) {
      ++low;
    } else {
      ++medium;
    }
  }
  // Wavelengths below 2048 keep their frequency, above 8192 are divided by 8, between blend.
  EXPECT_EQ(high, 29);
  EXPECT_EQ(medium, 6);
  EXPECT_EQ(low, 29);
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
  EXPECT_FLOAT_EQ(inv[63], static_cast<float>(std::pow(500000.0, -126.0 / 128) / 8));
}

TEST(ModelConfigTest, Llama32TiedWithExplicitHeadDim) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kLlama32_1B, "l32/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->rope_scaling.factor, 32.0);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>{128001});
  EXPECT_EQ(c->NumParameters(), 1235814400);  // The published Llama-3.2-1B count.
  std::vector<float> inv = RopeInvFreq(*c);
  std::vector<double> ref = Llama3Reference(500000.0, 64, 32.0, 1.0, 4.0, 8192.0);
  ASSERT_EQ(inv.size(), 32u);
  for (size_t i = 0; i < inv.size(); ++i) EXPECT_NEAR(inv[i], ref[i], 2e-6 * ref[i]);
}

TEST(ModelConfigTest, Llama2DefaultsKvHeadsAndHeadDim) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kLlama2_7B, "l2/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 32);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->dtype, DType::kF16);
  EXPECT_EQ(c->NumParameters(), 6738415616);  // The published Llama-2-7B count.
}

TEST(ModelConfigTest, MistralSlidingWindowNullOrInt) {
  absl::StatusOr<ModelConfig> none =
      ParseModelConfig(Replace(kMistral7B, "SW", "null"), "m/config.json");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->arch, Architecture::kMistral);
  EXPECT_EQ(none->model_type, "mistral");
  EXPECT_EQ(none->sliding_window, 0);
  absl::StatusOr<ModelConfig> windowed =
      ParseModelConfig(Replace(kMistral7B, "SW", "4096"), "m/config.json");
  ASSERT_TRUE(windowed.ok()) << windowed.status();
  EXPECT_EQ(windowed->sliding_window, 4096);
  EXPECT_EQ(ArchitectureName(windowed->arch), "MistralForCausalLM");
}

TEST(ModelConfigTest, Qwen25HasQkvBiasTiedEmbeddingsAndTheta1e6) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(kQwen25_05B, "q/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kQwen2);
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->sliding_window, 0);  // use_sliding_window is false
  EXPECT_EQ(c->NumParameters(), 494032768);  // The published Qwen2.5-0.5B count.
}

TEST(ModelConfigTest, LinearRopeScalingDividesByFactor) {
  std::string json = Replace(kLlama2_7B, "\"rope_scaling\": null",
                             "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}");
  absl::StatusOr<ModelConfig> c = ParseModelConfig(json, "lin/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  std::vector<float> inv = RopeInvFreq(*c);
  ASSERT_EQ(inv.size(), 64u);
  EXPECT_FLOAT_EQ(inv[0], 0.25f);
  EXPECT_FLOAT_EQ(inv[32], static_cast<float>(std::pow(10000.0, -0.5) / 4));
}

TEST(ModelConfigTest, UnsupportedRopeScalingIsAnErrorNamingRopeScaling) {
  for (const char* type : {"yarn", "dynamic", "longrope"}) {
    std::string json = Replace(kLlama2_7B, "\"rope_scaling\": null",
                               std::string("\"rope_scaling\": {\"rope_type\": \"") + type +
                                   "\", \"factor\": 4.0}");
    absl::StatusOr<ModelConfig> c = ParseModelConfig(json, "x/config.json");
    ASSERT_FALSE(c.ok()) << type;
    EXPECT_THAT(c.status().message(), HasSubstr("x/config.json"));
    EXPECT_THAT(c.status().message(), HasSubstr("rope_scaling"));
    EXPECT_THAT(c.status().message(), HasSubstr(type));
  }
}

TEST(ModelConfigTest, UnsupportedArchitectureNamesFileKeyAndValue) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(
      R"({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257})",
      "/models/gpt2/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("/models/gpt2/config.json"));
  EXPECT_THAT(c.status().message(), HasSubstr("architectures"));
  EXPECT_THAT(c.status().message(), HasSubstr("GPT2LMHeadModel"));
}

TEST(ModelConfigTest, BadValuesAreErrorsNamingTheKey) {
  struct Case {
    std::string from, to, expect;
  };
  for (const Case& k : std::vector<Case>{
           {"\"num_attention_heads\": 32", "\"num_attention_heads\": 32, "
                                           "\"num_key_value_heads\": 5", "num_key_value_heads"},
           {"\"vocab_size\": 32000", "\"vocab_size\": 0", "vocab_size"},
           {"\"vocab_size\": 32000", "\"vocab_size\": \"big\"", "vocab_size"},
           {"\"hidden_size\": 4096,", "", "hidden_size"},
           {"\"eos_token_id\": 2", "\"eos_token_id\": \"2\"", "eos_token_id"},
           {"\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\"}", "factor"},
           {"\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 1e-05, \"hidden_act\": \"gelu\"",
            "hidden_act"}}) {
    absl::StatusOr<ModelConfig> c =
        ParseModelConfig(Replace(kLlama2_7B, k.from, k.to), "bad/config.json");
    ASSERT_FALSE(c.ok()) << k.to;
    EXPECT_THAT(c.status().message(), HasSubstr("bad/config.json")) << k.to;
    EXPECT_THAT(c.status().message(), HasSubstr(k.expect)) << c.status();
  }
  absl::StatusOr<ModelConfig> not_json = ParseModelConfig("{\"vocab", "trunc/config.json");
  ASSERT_FALSE(not_json.ok());
  EXPECT_THAT(not_json.status().message(), HasSubstr("trunc/config.json"));
}

}  // namespace
}  // namespace strata::engine
