#include "engine/synthetic.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::engine {
namespace {

using ::testing::HasSubstr;

struct Shape {
  std::string_view preset;
  Architecture arch;
  int64_t vocab, hidden, intermediate, layers, heads, kv_heads, head_dim, max_position;
  double rope_theta;
  bool tied, qkv_bias;
  DType dtype;
};

const Shape kShapes[] = {
    {"tiny", Architecture::kLlama, 512, 256, 688, 4, 8, 4, 32, 2048, 1e4, false, false,
     DType::kF32},
    {"llama-3.2-1b", Architecture::kLlama, 128256, 2048, 8192, 16, 32, 8, 64, 131072, 5e5, true,
     false, DType::kBF16},
    {"qwen2.5-0.5b", Architecture::kQwen2, 151936, 896, 4864, 24, 14, 2, 64, 32768, 1e6, true, true,
     DType::kBF16},
    {"llama-3-8b", Architecture::kLlama, 128256, 4096, 14336, 32, 32, 8, 128, 8192, 5e5, false,
     false, DType::kBF16},
};

std::vector<float> MatrixToF32(const kernels::MatrixView& m) {
  std::vector<float> out(static_cast<size_t>(m.rows * m.cols));
  ConvertToF32(m.data, m.dtype, out.data(), out.size());
  return out;
}

// Every matrix of a model, in a fixed order.
std::vector<kernels::MatrixView> Matrices(const ModelWeights& w) {
  std::vector<kernels::MatrixView> all = {w.embed_tokens, w.lm_head};
  for (const LayerWeights& l : w.layers) {
    for (const kernels::MatrixView& m :
         {l.q_proj, l.k_proj, l.v_proj, l.o_proj, l.gate_proj, l.up_proj, l.down_proj}) {
      all.push_back(m);
    }
  }
  return all;
}

bool SameBytes(const ModelWeights& a, const ModelWeights& b) {
  const std::vector<kernels::MatrixView> ma = Matrices(a), mb = Matrices(b);
  if (ma.size() != mb.size()) return false;
  for (size_t i = 0; i < ma.size(); ++i) {
    const size_t bytes = static_cast<size_t>(ma[i].rows * ma[i].cols) * DTypeSize(ma[i].dtype);
    if (ma[i].rows != mb[i].rows || ma[i].cols != mb[i].cols) return false;
    if (std::memcmp(ma[i].data, mb[i].data, bytes) != 0) return false;
  }
  return true;
}

TEST(SyntheticTest, PresetConfigsHaveRealShapesAndValidate) {
  ASSERT_THAT(SyntheticPresetNames(),
              ::testing::ElementsAre("tiny", "llama-3.2-1b", "qwen2.5-0.5b", "llama-3-8b"));
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(std::string(s.preset));
    absl::StatusOr<ModelConfig> config = SyntheticModelConfig(s.preset);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_TRUE(config->Validate().ok()) << config->Validate();
    EXPECT_EQ(config->arch, s.arch);
    EXPECT_EQ(config->vocab_size, s.vocab);
    EXPECT_EQ(config->hidden_size, s.hidden);
    EXPECT_EQ(config->intermediate_size, s.intermediate);
    EXPECT_EQ(config->num_layers, s.layers);
    EXPECT_EQ(config->num_heads, s.heads);
    EXPECT_EQ(config->num_kv_heads, s.kv_heads);
    EXPECT_EQ(config->head_dim, s.head_dim);
    EXPECT_EQ(config->max_position_embeddings, s.max_position);
    EXPECT_EQ(config->rope_theta, s.rope_theta);
    EXPECT_EQ(config->tie_word_embeddings, s.tied);
    EXPECT_EQ(config->qkv_bias, s.qkv_bias);
    EXPECT_EQ(config->dtype, s.dtype);
    EXPECT_EQ(config->bos_token_id, 256);
    EXPECT_EQ(config->eos_token_ids, std::vector<int64_t>{257});
  }
}

TEST(SyntheticTest, Llama32UsesLlama3RopeScaling) {
  absl::StatusOr<ModelConfig> config = SyntheticModelConfig("llama-3.2-1b");
  ASSERT_TRUE(config.ok());
  const RopeScaling& rs = config->rope_scaling;
  EXPECT_EQ(rs.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(rs.factor, 32.0);
  EXPECT_EQ(rs.low_freq_factor, 1.0);
  EXPECT_EQ(rs.high_freq_factor, 4.0);
  EXPECT_EQ(rs.original_max_position_embeddings, 8192);
  EXPECT_EQ(SyntheticModelConfig("llama-3-8b")->rope_scaling.type, RopeScaling::Type::kNone);
}

TEST(SyntheticTest, ParameterCountsMatchThePublishedModels) {
  EXPECT_NEAR(SyntheticModelConfig("qwen2.5-0.5b")->NumParameters(), 494e6, 494e6 * 0.01);
  EXPECT_NEAR(SyntheticModelConfig("llama-3.2-1b")->NumParameters(), 1.24e9, 1.24e9 * 0.01);
  EXPECT_NEAR(SyntheticModelConfig("llama-3-8b")->NumParameters(), 8.03e9, 8.03e9 * 0.01);
}

TEST(SyntheticTest, UnknownPresetListsTheKnownOnes) {
  for (const absl::Status& status :
       {SyntheticModelConfig("gpt-9").status(), MakeSyntheticModel("gpt-9").status()}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(),
              "unknown synthetic model preset \"gpt-9\"; known presets: tiny, llama-3.2-1b, "
              "qwen2.5-0.5b, llama-3-8b");
  }
}

TEST(SyntheticTest, TinyIsDeterministicPerSeed) {
  absl::StatusOr<SyntheticModel> a = MakeSyntheticModel("tiny");
  absl::StatusOr<SyntheticModel> b = MakeSyntheticModel("tiny", 0);
  absl::StatusOr<SyntheticModel> c = MakeSyntheticModel("tiny", 1);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(SameBytes(a->weights, b->weights));
  EXPECT_FALSE(SameBytes(a->weights, c->weights));
  EXPECT_EQ(a->weights.fingerprint_hi, b->weights.fingerprint_hi);
  EXPECT_EQ(a->weights.fingerprint_lo, b->weights.fingerprint_lo);
  EXPECT_NE(a->weights.fingerprint_lo, c->weights.fingerprint_lo);
  EXPECT_NE(a->weights.fingerprint_hi, c->weights.fingerprint_hi);
}

TEST(SyntheticTest, BytesDoNotDependOnThreadCount) {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  absl::StatusOr<SyntheticModel> one = MakeSyntheticModel("tiny", 7);
  omp_set_num_threads(3);
  absl::StatusOr<SyntheticModel> three = MakeSyntheticModel("tiny", 7);
  omp_set_num_threads(threads);
  ASSERT_TRUE(one.ok() && three.ok());
  EXPECT_TRUE(SameBytes(one->weights, three->weights));
}

TEST(SyntheticTest, TinyWeightsHaveTheDocumentedLayoutAndStatistics) {
  absl::StatusOr<SyntheticModel> model = MakeSyntheticModel("tiny");
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelWeights& w = model->weights;
  ASSERT_EQ(w.layers.size(), 4u);
  const LayerWeights& l = w.layers[0];
  EXPECT_EQ(l.q_proj.rows, 256);
  EXPECT_EQ(l.k_proj.rows, 128);
  EXPECT_EQ(l.o_proj.cols, 256);
  EXPECT_EQ(l.gate_proj.rows, 688);
  EXPECT_EQ(l.down_proj.cols, 688);
  EXPECT_TRUE(l.q_bias.empty());
  EXPECT_NE(w.lm_head.data, w.embed_tokens.data);  // untied
  const int64_t matrix_params = 2 * 512 * 256 + 4 * (2 * 256 * 256 + 2 * 128 * 256 + 3 * 256 * 688);
  EXPECT_EQ(w.total_bytes, matrix_params * 4);
  EXPECT_THAT(w.final_norm, ::testing::Each(1.0f));
  EXPECT_THAT(l.post_attention_norm, ::testing::Each(1.0f));
  for (const kernels::MatrixView& m : Matrices(w)) {
    ASSERT_EQ(m.dtype, DType::kF32);
    const std::vector<float> v = MatrixToF32(m);
    double sum = 0.0, sum_sq = 0.0;
    for (float x : v) {
      ASSERT_TRUE(std::isfinite(x));
      sum += x;
      sum_sq += static_cast<double>(x) * x;
    }
    const double mean = sum / v.size();
    const double std_dev = std::sqrt(sum_sq / v.size() - mean * mean);
    const double expected = 1.0 / std::sqrt(static_cast<double>(m.cols));
    EXPECT_NEAR(std_dev, expected, 0.03 * expected);
    EXPECT_NEAR(mean, 0.0, 0.03 * expected);
  }
  EXPECT_THAT(model->description, HasSubstr("synthetic:tiny"));
  EXPECT_THAT(model->description, HasSubstr("meaningless"));
  std::printf("%s\n", model->description.c_str());
}

TEST(SyntheticTest, ProjectionsKeepActivationsOrderOne) {
  // y = W x with x of unit-variance entries has unit-variance entries when std(W) = 1/sqrt(in).
  absl::StatusOr<SyntheticModel> model = MakeSyntheticModel("tiny");
  ASSERT_TRUE(model.ok());
  const kernels::MatrixView& down = model->weights.layers[3].down_proj;  // [256, 688]
  const std::vector<float> w = MatrixToF32(down);
  double sum_sq = 0.0;
  for (int64_t r = 0; r < down.rows; ++r) {
    double y = 0.0;
    for (int64_t c = 0; c < down.cols; ++c) y += w[r * down.cols + c] * ((c % 2) ? 1.0 : -1.0);
    sum_sq += y * y;
  }
  EXPECT_NEAR(std::sqrt(sum_sq / down.rows), 1.0, 0.15);
}

TEST(SyntheticTest, QwenHasSmallQkvBiasesAndTiedEmbeddings) {
  absl::StatusOr<SyntheticModel> model = MakeSyntheticModel("qwen2.5-0.5b");
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelWeights& w = model->weights;
  EXPECT_EQ(w.lm_head.data, w.embed_tokens.data);
  ASSERT_EQ(w.layers.size(), 24u);
  const LayerWeights& l = w.layers[23];
  EXPECT_EQ(l.q_proj.rows, 896);
  EXPECT_EQ(l.k_proj.rows, 128);
  ASSERT_EQ(l.q_bias.size(), 896u);
  ASSERT_EQ(l.k_bias.size(), 128u);
  ASSERT_EQ(l.v_bias.size(), 128u);
  double sum_sq = 0.0;
  for (float b : l.q_bias) sum_sq += static_cast<double>(b) * b;
  EXPECT_NEAR(std::sqrt(sum_sq / l.q_bias.size()), 0.02, 0.003);
  EXPECT_NE(l.k_bias, l.v_bias);
  EXPECT_NE(w.layers[0].q_bias, l.q_bias);
}

TEST(SyntheticTest, Llama32BuildsTiedBf16WeightsQuickly) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<SyntheticModel> model = MakeSyntheticModel("llama-3.2-1b", 3);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(model.ok()) << model.status();
  std::printf("llama-3.2-1b generated in %.2f s\n", seconds);
  const ModelWeights& w = model->weights;
  EXPECT_EQ(w.lm_head.data, w.embed_tokens.data);  // tied: stored once
  EXPECT_EQ(w.embed_tokens.dtype, DType::kBF16);
  // Tied embeddings are counted once; norms are f32 vectors, not matrices.
  const int64_t norms = 2 * 16 * 2048 + 2048;
  EXPECT_EQ(w.total_bytes, (model->config.NumParameters() - norms) * 2);
  const std::vector<float> head = MatrixToF32(w.layers[15].down_proj);
  double sum_sq = 0.0;
  for (float x : head) {
    ASSERT_TRUE(std::isfinite(x));
    sum_sq += static_cast<double>(x) * x;
  }
  EXPECT_NEAR(std::sqrt(sum_sq / head.size()), 1.0 / std::sqrt(8192.0), 0.02 / std::sqrt(8192.0));
}

}  // namespace
}  // namespace strata::engine
