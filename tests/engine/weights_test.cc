#include "engine/weights.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "engine/safetensors.h"
#include "tests/engine/safetensors_writer.h"

namespace strata::engine {
namespace {

namespace fs = std::filesystem;
using ::strata::testing::TensorSpec;
using ::strata::testing::TinyModel;
using ::testing::HasSubstr;

const std::string kStories = STRATA_SOURCE_DIR "/../shared/models/stories260k";

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/weights_test_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string MatrixBytes(const kernels::MatrixView& m) {
  return std::string(static_cast<const char*>(m.data), m.rows * m.cols * DTypeSize(m.dtype));
}

// Every tensor of a loaded model as (name, f32-or-stored bytes), in a fixed order.
std::vector<std::string> AllBytes(const ModelWeights& w) {
  auto vec = [](const std::vector<float>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  };
  std::vector<std::string> out = {MatrixBytes(w.embed_tokens), MatrixBytes(w.lm_head),
                                  vec(w.final_norm)};
  for (const LayerWeights& l : w.layers) {
    for (const auto* m : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj,
                          &l.down_proj}) {
      out.push_back(MatrixBytes(*m));
    }
    for (const auto* v : {&l.q_bias, &l.k_bias, &l.v_bias, &l.input_norm,
                          &l.post_attention_norm}) {
      out.push_back(vec(*v));
    }
  }
  return out;
}


void Expect2D(const kernels::MatrixView& m, int64_t rows, int64_t cols) {
  EXPECT_EQ(m.rows, rows);
  EXPECT_EQ(m.cols, cols);
  EXPECT_EQ(m.dtype, DType::kF32);
  EXPECT_NE(m.data, nullptr);
}

TEST(WeightsTest, LoadsStories260k) {
  if (!fs::exists(kStories)) GTEST_SKIP() << "no " << kStories << " (../shared absent)";
  absl::StatusOr<LoadedModel> m = LoadModelFiles(kStories);
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelWeights& w = m->weights;
  ASSERT_EQ(w.layers.size(), 5u);
  Expect2D(w.embed_tokens, 512, 64);
  EXPECT_EQ(w.lm_head.data, w.embed_tokens.data);  // tied: the same view
  EXPECT_EQ(w.final_norm.size(), 64u);
  int64_t params = w.embed_tokens.rows * w.embed_tokens.cols + 64;
  for (const LayerWeights& l : w.layers) {
    Expect2D(l.q_proj, 64, 64);
    Expect2D(l.k_proj, 32, 64);
    Expect2D(l.v_proj, 32, 64);
    Expect2D(l.o_proj, 64, 64);
    Expect2D(l.gate_proj, 172, 64);
    Expect2D(l.up_proj, 172, 64);
    Expect2D(l.down_proj, 64, 172);
    EXPECT_EQ(l.input_norm.size(), 64u);
    EXPECT_EQ(l.post_attention_norm.size(), 64u);
    EXPECT_TRUE(l.q_bias.empty());
    for (const auto* v : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj,
                          &l.down_proj}) {
      params += v->rows * v->cols;
    }
    params += 128;
  }
  EXPECT_EQ(params, 260032);
  EXPECT_EQ(m->config.NumParameters(), 260032);
  EXPECT_EQ(w.total_bytes, (260032 - 5 * 128 - 64) * 4);  // matrices as stored, embed once
  // F32 stays mapped: views point into the one mapping, nothing was copied.
  ASSERT_EQ(w.mapped_files.size(), 1u);
  const uint8_t* base = w.mapped_files[0]->data();
  const auto* q = static_cast<const uint8_t*>(w.layers[4].down_proj.data);
  EXPECT_TRUE(q > base && q < base + w.mapped_files[0]->size());
  EXPECT_TRUE(w.owned.empty());
  EXPECT_NE(w.fingerprint_hi | w.fingerprint_lo, 0u);
  // The same bytes as the file says: spot-check against an independent read.
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(kStories + "/model.safetensors");
  ASSERT_TRUE(f.ok());
  const SafetensorsTensor* norm = (*f)->Find("model.layers.2.input_layernorm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(std::memcmp((*f)->TensorBytes(*norm).data(), w.layers[2].input_norm.data(), 256), 0);
}

TEST(WeightsTest, ShardedCopyOfStoriesLoadsIdentically) {
  if (!fs::exists(kStories)) GTEST_SKIP() << "no " << kStories << " (../shared absent)";
  absl::StatusOr<LoadedModel> single = LoadModelFiles(kStories);
  ASSERT_TRUE(single.ok()) << single.status();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(kStories + "/model.safetensors");
  ASSERT_TRUE(f.ok());
  std::vector<TensorSpec> tensors;
  for (const SafetensorsTensor& t : (*f)->header().tensors) {
    std::span<const uint8_t> b = (*f)->TensorBytes(t);
    tensors.push_back({t.name, t.dtype, t.shape, std::string(b.begin(), b.end())});
  }
  const std::string dir = FreshDir("sharded_stories");
  fs::copy_file(kStories + "/config.json", dir + "/config.json");
  testing::WriteSharded(dir, tensors, 10);  // 47 tensors -> 5 shards
  absl::StatusOr<LoadedModel> sharded = LoadModelFiles(dir);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  EXPECT_EQ(sharded->weights.mapped_files.size(), 5u);
  EXPECT_EQ(AllBytes(sharded->weights), AllBytes(single->weights));
  EXPECT_EQ(sharded->weights.fingerprint_hi, single->weights.fingerprint_hi);
  EXPECT_EQ(sharded->weights.fingerprint_lo, single->weights.fingerprint_lo);
  EXPECT_EQ(sharded->weights.total_bytes, single->weights.total_bytes);
}

// Rewrites every tensor of a tiny model in `dtype` and loads it.
absl::StatusOr<LoadedModel> LoadTinyAs(const std::string& dir, const std::string& dtype,
                                       std::vector<TensorSpec>* f32_tensors) {
  TinyModel m;
  *f32_tensors = testing::TinyModelTensors(m);
  std::vector<TensorSpec> converted = *f32_tensors;
  for (TensorSpec& t : converted) {
    std::vector<float> v(t.bytes.size() / 4);
    std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
    t.dtype = dtype;
    t.bytes = dtype == "F16" ? testing::F16Bytes(v) : testing::Bf16Bytes(v);
  }
  testing::WriteTinyModel(dir, m, converted);
  return LoadModelFiles(dir);
}

TEST(WeightsTest, F16IsConvertedExactlyToOwnedF32) {
  std::vector<TensorSpec> f32;
  absl::StatusOr<LoadedModel> m = LoadTinyAs(FreshDir("f16"), "F16", &f32);
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelWeights& w = m->weights;
  EXPECT_EQ(w.embed_tokens.dtype, DType::kF32);
  EXPECT_EQ(MatrixBytes(w.embed_tokens), f32[0].bytes);  // model.embed_tokens.weight
  EXPECT_EQ(MatrixBytes(w.lm_head), f32.back().bytes);   // lm_head.weight
  EXPECT_EQ(MatrixBytes(w.layers[1].down_proj), f32[16].bytes);  // layer 1's down_proj
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(w.final_norm.data()), 16 * 4),
            f32[f32.size() - 2].bytes);
  EXPECT_EQ(w.owned.size(), 2u + 2u * 7u);  // embed, lm_head, 7 matrices per layer
  EXPECT_EQ(w.total_bytes, (32 * 16 * 2 + 2 * (16 * 16 * 2 + 8 * 16 * 2 + 3 * 24 * 16)) * 2);
}

TEST(WeightsTest, Bf16StaysAViewIntoTheMapping) {
  std::vector<TensorSpec> f32;
  absl::StatusOr<LoadedModel> m = LoadTinyAs(FreshDir("bf16"), "BF16", &f32);
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelWeights& w = m->weights;
  EXPECT_TRUE(w.owned.empty());
  const kernels::MatrixView& q = w.layers[0].q_proj;
  EXPECT_EQ(q.dtype, DType::kBF16);
  const uint8_t* base = w.mapped_files[0]->data();
  const auto* p = static_cast<const uint8_t*>(q.data);
  EXPECT_TRUE(p > base && p < base + w.mapped_files[0]->size());
  std::vector<float> expect(16 * 16);
  std::memcpy(expect.data(), f32[1].bytes.data(), f32[1].bytes.size());
  for (size_t i = 0; i < expect.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    EXPECT_EQ(Bf16ToF32(h), Bf16ToF32(F32ToBf16(expect[i]))) << i;
  }
}

TEST(WeightsTest, Qwen2BiasesAreLoaded) {
  TinyModel m;
  m.architecture = "Qwen2ForCausalLM";
  m.model_type = "qwen2";
  m.qkv_bias = true;
  m.tied = true;
  std::vector<TensorSpec> tensors = testing::TinyModelTensors(m);
  const std::string dir = FreshDir("qwen2");
  testing::WriteTinyModel(dir, m, tensors);
  absl::StatusOr<LoadedModel> loaded = LoadModelFiles(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const LayerWeights& l = loaded->weights.layers[1];
  ASSERT_EQ(l.q_bias.size(), 16u);
  ASSERT_EQ(l.k_bias.size(), 8u);
  ASSERT_EQ(l.v_bias.size(), 8u);
  const TensorSpec* k_bias = nullptr;
  for (const TensorSpec& t : tensors) {
    if (t.name == "model.layers.1.self_attn.k_proj.bias") k_bias = &t;
  }
  ASSERT_NE(k_bias, nullptr);
  EXPECT_EQ(std::memcmp(l.k_bias.data(), k_bias->bytes.data(), 32), 0);
  EXPECT_EQ(loaded->weights.lm_head.data, loaded->weights.embed_tokens.data);
}

TEST(WeightsTest, MisalignedDataIsCopiedNotReadUnaligned) {
  TinyModel m;
  std::vector<TensorSpec> tensors = testing::TinyModelTensors(m);
  std::string image = testing::SerializeSafetensors(tensors);
  uint64_t n;
  std::memcpy(&n, image.data(), 8);
  image.insert(8 + n, "  ");  // two more header spaces shift the data by 2 bytes
  n += 2;
  std::memcpy(image.data(), &n, 8);
  const std::string dir = FreshDir("misaligned");
  testing::WriteTinyModel(dir, m, tensors);
  testing::WriteBytes(dir + "/model.safetensors", image);
  absl::StatusOr<LoadedModel> loaded = LoadModelFiles(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const kernels::MatrixView& e = loaded->weights.embed_tokens;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(e.data) % 4, 0u);
  EXPECT_EQ(MatrixBytes(e), tensors[0].bytes);
}

TEST(WeightsTest, FingerprintFollowsTheData) {
  TinyModel m;
  std::vector<TensorSpec> tensors = testing::TinyModelTensors(m);
  const std::string a = FreshDir("fp_a"), b = FreshDir("fp_b");
  testing::WriteTinyModel(a, m, tensors);
  tensors[3].bytes[5] ^= 1;
  testing::WriteTinyModel(b, m, tensors);
  absl::StatusOr<LoadedModel> la = LoadModelFiles(a), lb = LoadModelFiles(b);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_NE(la->weights.fingerprint_lo, lb->weights.fingerprint_lo);
  absl::StatusOr<LoadedModel> la2 = LoadModelFiles(a);
  ASSERT_TRUE(la2.ok());
  EXPECT_EQ(la->weights.fingerprint_lo, la2->weights.fingerprint_lo);
  EXPECT_EQ(la->weights.fingerprint_hi, la2->weights.fingerprint_hi);
}

// ---- Bad input: each error names the file and the problem. ----

struct BadModel {
  std::string dir;
  TinyModel model;
  std::vector<TensorSpec> tensors;
};

BadModel MakeBad(const std::string& name) {
  BadModel b{FreshDir(name), TinyModel(), {}};
  b.tensors = testing::TinyModelTensors(b.model);
  return b;
}

void ExpectLoadError(const std::string& dir, const std::vector<std::string>& expect) {
  absl::StatusOr<LoadedModel> m = LoadModelFiles(dir);
  ASSERT_FALSE(m.ok());
  for (const std::string& s : expect) {
    EXPECT_THAT(m.status().message(), HasSubstr(s)) << m.status();
  }
}

TEST(WeightsBadInputTest, MissingModelSafetensors) {
  BadModel b = MakeBad("missing_file");
  testing::WriteBytes(b.dir + "/config.json", testing::TinyModelConfigJson(b.model));
  absl::StatusOr<LoadedModel> m = LoadModelFiles(b.dir);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr(b.dir + "/model.safetensors: not found"));
}

TEST(WeightsBadInputTest, MissingConfig) {
  ExpectLoadError(FreshDir("no_config"), {"config.json"});
}

TEST(WeightsBadInputTest, TruncatedFile) {
  BadModel b = MakeBad("truncated");
  std::string image = testing::SerializeSafetensors(b.tensors);
  testing::WriteTinyModel(b.dir, b.model, b.tensors);
  testing::WriteBytes(b.dir + "/model.safetensors", image.substr(0, image.size() - 100));
  ExpectLoadError(b.dir, {b.dir + "/model.safetensors", "tensor 'lm_head.weight'",
                          "runs past the data"});
}

TEST(WeightsBadInputTest, OffsetsPastTheFile) {
  BadModel b = MakeBad("offsets");
  testing::WriteTinyModel(b.dir, b.model, b.tensors);
  testing::WriteBytes(
      b.dir + "/model.safetensors",
      testing::RawSafetensors(
          R"({"model.embed_tokens.weight":{"dtype":"F32","shape":[32,16],"data_offsets":[0,2048]}})",
          std::string(1000, '\0')));
  ExpectLoadError(b.dir, {b.dir + "/model.safetensors", "model.embed_tokens.weight",
                          "end 2048 runs past the data (1000 bytes)"});
}

TEST(WeightsBadInputTest, HeaderLengthBeyondFileSize) {
  BadModel b = MakeBad("header_len");
  testing::WriteTinyModel(b.dir, b.model, b.tensors);
  std::string image(8, '\0');
  image[2] = 1;  // 65536
  testing::WriteBytes(b.dir + "/model.safetensors", image + "{}");
  ExpectLoadError(b.dir, {b.dir + "/model.safetensors", "header length 65536 exceeds"});
}

TEST(WeightsBadInputTest, WrongShape) {
  BadModel b = MakeBad("shape");
  b.tensors[1].shape = {8, 32};  // layer 0 q_proj should be [16, 16]
  testing::WriteTinyModel(b.dir, b.model, b.tensors);
  ExpectLoadError(b.dir, {b.dir + "/model.safetensors", "model.layers.0.self_attn.q_proj.weight",
                          "expected shape [16, 16]", "found [8, 32]"});
}

TEST(WeightsBadInputTest, WrongDtype) {
  BadModel b = MakeBad("dtype");
  TensorSpec& norm = b.tensors[8];  // model.layers.0.input_layernorm.weight, 16 floats
  ASSERT_EQ(norm.name, "model.layers.0.input_layernorm.weight");
  norm.dtype = "I64";
  norm.shape = {16};
  norm.bytes = std::string(128, '\0');
  testing::WriteTinyModel(b.dir, b.model, b.tensors);
  ExpectLoadError(b.dir, {b.dir + "/model.safetensors", "model.layers.0.input_layernorm.weight",
                          "expected dtype F32, F16 or BF16, found I64"});
}

TEST(WeightsBadInputTest, UnsupportedArchitecture) {
  BadModel b = MakeBad("arch");
  b.model.architecture = "GPT2LMHeadModel";
  testing::WriteTinyModel(b.dir, b.model, b.tensors);
  ExpectLoadError(b.dir, {b.dir + "/config.json", "architectures", "GPT2LMHeadModel"});
}

TEST(WeightsBadInputTest, MissingTensor) {
  BadModel b = MakeBad("missing_tensor");
  std::erase_if(b.tensors, [](const TensorSpec& t) {
    return t.name == "model.layers.1.mlp.up_proj.weight";
  });
  testing::WriteTinyModel(b.dir, b.model, b.tensors);
  ExpectLoadError(b.dir, {b.dir + "/model.safetensors",
                          "missing tensor 'model.layers.1.mlp.up_proj.weight'"});
}

TEST(WeightsBadInputTest, UntiedWithoutLmHead) {
  BadModel b = MakeBad("no_lm_head");
  b.tensors.pop_back();  // lm_head.weight
  testing::WriteTinyModel(b.dir, b.model, b.tensors);
  ExpectLoadError(b.dir, {b.dir + "/model.safetensors", "missing tensor 'lm_head.weight'",
                          "tie_word_embeddings false"});
}

TEST(WeightsBadInputTest, IndexNamesAMissingShard) {
  BadModel b = MakeBad("missing_shard");
  testing::WriteBytes(b.dir + "/config.json", testing::TinyModelConfigJson(b.model));
  testing::WriteSharded(b.dir, b.tensors, 8);
  fs::remove(b.dir + "/model-00002-of-00003.safetensors");
  ExpectLoadError(b.dir, {b.dir + "/model.safetensors.index.json",
                          b.dir + "/model-00002-of-00003.safetensors", "is missing"});
}

TEST(WeightsBadInputTest, IndexPlacesATensorInTheWrongShard) {
  BadModel b = MakeBad("wrong_shard");
  testing::WriteBytes(b.dir + "/config.json", testing::TinyModelConfigJson(b.model));
  testing::WriteSharded(b.dir, b.tensors, 8);
  testing::WriteBytes(b.dir + "/model.safetensors.index.json",
                      R"({"weight_map":{"model.norm.weight":"model-00001-of-00003.safetensors"}})");
  ExpectLoadError(b.dir, {b.dir + "/model-00001-of-00003.safetensors",
                          "missing tensor 'model.norm.weight'"});
}

TEST(WeightsBadInputTest, IndexShardOutsideTheFolder) {
  BadModel b = MakeBad("escape");
  testing::WriteBytes(b.dir + "/config.json", testing::TinyModelConfigJson(b.model));
  testing::WriteBytes(b.dir + "/model.safetensors.index.json",
                      R"({"weight_map":{"model.norm.weight":"../x.safetensors"}})");
  ExpectLoadError(b.dir, {"model.safetensors.index.json", "not a file name in the model folder"});
}

}  // namespace
}  // namespace strata::engine
