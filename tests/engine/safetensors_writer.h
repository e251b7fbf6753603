// Test helpers (header-only): writes safetensors files byte by byte, independently of the reader
// under test, and builds tiny Llama/Qwen2 model folders with deterministic weights.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace strata::testing {

struct TensorSpec {
  std::string name;
  std::string dtype;           // "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;
  std::string bytes;           // raw little-endian data
};

inline std::string F32Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}
inline std::string U16Bytes(const std::vector<uint16_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 2);
}
inline std::string F16Bytes(const std::vector<float>& v) {
  // Only used with values exactly representable in f16 (see RandomF16Exact).
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t b;
    std::memcpy(&b, &v[i], 4);
    const uint32_t sign = (b >> 16) & 0x8000u;
    const int32_t exp = static_cast<int32_t>((b >> 23) & 0xff) - 127 + 15;
    const uint32_t mant = (b >> 13) & 0x3ffu;
    h[i] = (b & 0x7fffffffu) == 0 ? static_cast<uint16_t>(sign)
                                  : static_cast<uint16_t>(sign | (exp << 10) | mant);
  }
  return U16Bytes(h);
}
inline std::string Bf16Bytes(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = F32ToBf16(v[i]);
  return U16Bytes(h);
}

inline std::string ShapeJson(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// A whole file image: u64 header length, JSON header padded with spaces to 8 bytes, data in
// the order given.
inline std::string SerializeSafetensors(const std::vector<TensorSpec>& tensors,
                                        const std::string& metadata_json = "{\"format\":\"pt\"}") {
  std::string header = "{\"__metadata__\":" + metadata_json;
  uint64_t offset = 0;
  std::string data;
  for (const TensorSpec& t : tensors) {
    header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" +
              ShapeJson(t.shape) + ",\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
    data += t.bytes;
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// A file image from a raw header string (for malformed-header tests); data appended as is.
inline std::string RawSafetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
}

// Random values that f16 represents exactly: k / 1024 for |k| < 2048.
inline std::vector<float> RandomF16Exact(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(static_cast<int>(rng() % 4095) - 2047) / 1024.0f;
  return v;
}

// A tiny model's shape; written as config.json by TinyModelConfigJson.
struct TinyModel {
  std::string architecture = "LlamaForCausalLM";
  std::string model_type = "llama";
  int64_t vocab = 32, hidden = 16, inter = 24, layers = 2, heads = 4, kv_heads = 2;
  bool tied = false;
  bool qkv_bias = false;

  int64_t head_dim() const { return hidden / heads; }
};

inline std::string TinyModelConfigJson(const TinyModel& m) {
  return "{\"architectures\":[\"" + m.architecture + "\"],\"model_type\":\"" + m.model_type +
         "\",\"vocab_size\":" + std::to_string(m.vocab) +
         ",\"hidden_size\":" + std::to_string(m.hidden) +
         ",\"intermediate_size\":" + std::to_string(m.inter) +
         ",\"num_hidden_layers\":" + std::to_string(m.layers) +
         ",\"num_attention_heads\":" + std::to_string(m.heads) +
         ",\"num_key_value_heads\":" + std::to_string(m.kv_heads) +
         ",\"tie_word_embeddings\":" + (m.tied ? "true" : "false") +
         ",\"rms_norm_eps\":1e-6,\"bos_token_id\":1,\"eos_token_id\":2}";
}

// Every tensor the loader expects, F32 with deterministic values (f16-exact), in HF order.
inline std::vector<TensorSpec> TinyModelTensors(const TinyModel& m, uint64_t seed = 7) {
  std::vector<TensorSpec> out;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    out.push_back({name, "F32", shape, F32Bytes(RandomF16Exact(n, seed + out.size()))});
  };
  const int64_t q = m.heads * m.head_dim(), kv = m.kv_heads * m.head_dim();
  add("model.embed_tokens.weight", {m.vocab, m.hidden});
  for (int64_t i = 0; i < m.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "self_attn.q_proj.weight", {q, m.hidden});
    add(p + "self_attn.k_proj.weight", {kv, m.hidden});
    add(p + "self_attn.v_proj.weight", {kv, m.hidden});
    add(p + "self_attn.o_proj.weight", {m.hidden, q});
    if (m.qkv_bias) {
      add(p + "self_attn.q_proj.bias", {q});
      add(p + "self_attn.k_proj.bias", {kv});
      add(p + "self_attn.v_proj.bias", {kv});
    }
    add(p + "mlp.gate_proj.weight", {m.inter, m.hidden});
    add(p + "mlp.up_proj.weight", {m.inter, m.hidden});
    add(p + "mlp.down_proj.weight", {m.hidden, m.inter});
    add(p + "input_layernorm.weight", {m.hidden});
    add(p + "post_attention_layernorm.weight", {m.hidden});
  }
  add("model.norm.weight", {m.hidden});
  if (!m.tied) add("lm_head.weight", {m.vocab, m.hidden});
  return out;
}

// Writes config.json and model.safetensors for `m` into `dir` (created).
inline void WriteTinyModel(const std::string& dir, const TinyModel& m,
                           const std::vector<TensorSpec>& tensors) {
  std::filesystem::create_directories(dir);
  WriteBytes(dir + "/config.json", TinyModelConfigJson(m));
  WriteBytes(dir + "/model.safetensors", SerializeSafetensors(tensors));
}

// Writes `tensors` as shards of at most `per_shard` tensors plus model.safetensors.index.json.
inline void WriteSharded(const std::string& dir, const std::vector<TensorSpec>& tensors,
                         size_t per_shard) {
  const size_t num_shards = (tensors.size() + per_shard - 1) / per_shard;
  std::string map;
  for (size_t s = 0; s < num_shards; ++s) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", s + 1, num_shards);
    std::vector<TensorSpec> part;
    for (size_t i = s * per_shard; i < std::min(tensors.size(), (s + 1) * per_shard); ++i) {
      part.push_back(tensors[i]);
      map += std::string(map.empty() ? "" : ",") + "\"" + tensors[i].name + "\":\"" + name + "\"";
    }
    WriteBytes(dir + "/" + name, SerializeSafetensors(part));
  }
  WriteBytes(dir + "/model.safetensors.index.json",
             "{\"metadata\":{\"total_size\":0},\"weight_map\":{" + map + "}}");
}

}  // namespace strata::testing
