#include "engine/synthetic.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <thread>
#include <utility>

#include "xxhash.h"

namespace strata::engine {
namespace {

// Vocabulary ids of the synthetic tokenizer's specials.
constexpr int64_t kBosTokenId = 256;
constexpr int64_t kEosTokenId = 257;

// Biases are uniform with this std: small next to the O(1) projections they are added to.
constexpr float kBiasStd = 0.02f;

// Elements per OpenMP work item: large enough to amortise scheduling, small enough to balance.
constexpr int64_t kFillChunk = int64_t{1} << 16;

// Tensor indices feed the generator, so they are fixed per role, never derived from order.
constexpr uint64_t kEmbedTensor = 0;
constexpr uint64_t kLmHeadTensor = 1;
constexpr uint64_t kTensorsPerLayer = 16;
constexpr uint64_t kFirstLayerTensor = 16;
enum LayerSlot : uint64_t { kQ, kK, kV, kO, kGate, kUp, kDown, kQBias, kKBias, kVBias };

ModelConfig LlamaConfig() {
  ModelConfig c;
  c.arch = Architecture::kLlama;
  c.model_type = "llama";
  c.rms_norm_eps = 1e-5;
  c.bos_token_id = kBosTokenId;
  c.eos_token_ids = {kEosTokenId};
  c.dtype = DType::kBF16;
  return c;
}

ModelConfig Tiny() {
  ModelConfig c = LlamaConfig();
  c.vocab_size = 512;
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_layers = 4;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 32;
  c.max_position_embeddings = 2048;
  c.rope_theta = 10000.0;
  c.dtype = DType::kF32;
  return c;
}

ModelConfig Llama32_1B() {
  ModelConfig c = LlamaConfig();
  c.vocab_size = 128256;
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_layers = 16;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 64;
  c.max_position_embeddings = 131072;
  c.rope_theta = 500000.0;
  c.rope_scaling = {.type = RopeScaling::Type::kLlama3,
                    .factor = 32.0,
                    .low_freq_factor = 1.0,
                    .high_freq_factor = 4.0,
                    .original_max_position_embeddings = 8192};
  c.tie_word_embeddings = true;
  return c;
}

ModelConfig Qwen25_05B() {
  ModelConfig c = LlamaConfig();
  c.arch = Architecture::kQwen2;
  c.model_type = "qwen2";
  c.vocab_size = 151936;
  c.hidden_size = 896;
  c.intermediate_size = 4864;
  c.num_layers = 24;
  c.num_heads = 14;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.max_position_embeddings = 32768;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 1000000.0;
  c.tie_word_embeddings = true;
  c.qkv_bias = true;
  return c;
}

ModelConfig Llama3_8B() {
  ModelConfig c = LlamaConfig();
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 8192;
  c.rope_theta = 500000.0;
  return c;
}

struct Preset {
  std::string_view name;
  ModelConfig (*make)();
};
constexpr std::array<Preset, 4> kPresets = {{{"tiny", Tiny},
                                             {"llama-3.2-1b", Llama32_1B},
                                             {"qwen2.5-0.5b", Qwen25_05B},
                                             {"llama-3-8b", Llama3_8B}}};

// The SplitMix64 finaliser: a bijective 64-bit mixer with full avalanche.
inline uint64_t Mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

// Counter-based generation: element i of a tensor is a pure function of (seed, tensor, i), so
// threads fill disjoint ranges in any order and the bytes never depend on the thread count.
uint64_t TensorStream(uint64_t seed, uint64_t tensor) {
  return Mix64(Mix64(seed + kGolden) ^ (tensor * kGolden + 0x632be59bd9b4e019ull));
}

// Uniform in [-bound, bound): the top 24 bits of a hash as a signed integer, scaled.
inline float UniformAt(uint64_t stream, uint64_t i, float bound) {
  const int32_t top = static_cast<int32_t>(Mix64(stream + i * kGolden) >> 32) >> 8;
  return static_cast<float>(top) * (bound * 0x1.0p-23f);
}

// Bound of the uniform distribution with the given std (std of U(-a, a) is a / sqrt(3)).
float BoundForStd(float std_dev) { return std_dev * std::sqrt(3.0f); }

// Fills [begin, end) of one tensor.
void FillRange(void* out, DType dtype, int64_t begin, int64_t end, uint64_t stream, float bound) {
  if (dtype == DType::kF32) {
    float* f = static_cast<float*>(out);
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) f[i] = UniformAt(stream, i, bound);
  } else {  // kBF16: no preset uses F16
    uint16_t* h = static_cast<uint16_t*>(out);
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) h[i] = F32ToBf16(UniformAt(stream, i, bound));
  }
}

// Declares every tensor first, then allocates and fills them all in one OpenMP region: page
// faults of the allocations (most of the cost) spread over the threads too, and one region
// avoids a barrier per tensor, which costs more than a small tensor's fill on a busy machine.
class WeightBuilder {
 public:
  explicit WeightBuilder(ModelWeights& weights) : weights_(weights) {}

  // Declares `view` as a [rows, cols] matrix (nn.Linear [out, in]) with std 1/sqrt(cols) in a
  // buffer of weights.owned; its data pointer is set by Fill().
  // REQUIRES: *view stays where it is until Fill().
  void Matrix(kernels::MatrixView* view, DType dtype, int64_t rows, int64_t cols, uint64_t stream) {
    *view = {.data = nullptr, .dtype = dtype, .rows = rows, .cols = cols};
    const float bound = BoundForStd(1.0f / std::sqrt(static_cast<float>(cols)));
    jobs_.push_back({view, nullptr, dtype, rows * cols, stream, bound});
    weights_.total_bytes += rows * cols * static_cast<int64_t>(DTypeSize(dtype));
  }

  // REQUIRES: `bias` is not destroyed or resized before Fill().
  void Bias(std::vector<float>& bias, int64_t n, uint64_t stream) {
    bias.resize(static_cast<size_t>(n));
    jobs_.push_back({nullptr, bias.data(), DType::kF32, n, stream, BoundForStd(kBiasStd)});
  }

  void Fill() {
    std::vector<std::pair<size_t, int64_t>> chunks;  // (job, first element)
    for (size_t j = 0; j < jobs_.size(); ++j) {
      for (int64_t begin = 0; begin < jobs_[j].n; begin += kFillChunk) chunks.push_back({j, begin});
    }
    const size_t first_buffer = weights_.owned.size();
    weights_.owned.resize(first_buffer + jobs_.size());
    const int64_t num_jobs = static_cast<int64_t>(jobs_.size());
    const int64_t num_chunks = static_cast<int64_t>(chunks.size());
    // The fill runs on a short-lived thread so that its OpenMP team dies with it: libgomp keeps a
    // master thread's team alive, and an idle extra team makes the engine thread's team count as
    // oversubscribed on a small machine, which cuts its spin-waiting and slows every kernel.
    std::thread([&] {
#pragma omp parallel
      {
#pragma omp for schedule(dynamic)
        for (int64_t j = 0; j < num_jobs; ++j) {
          Job& job = jobs_[j];
          if (job.view == nullptr) continue;
          std::vector<uint8_t>& buffer = weights_.owned[first_buffer + j];
          buffer.resize(static_cast<size_t>(job.n) * DTypeSize(job.dtype));
          job.out = buffer.data();
          job.view->data = buffer.data();
        }
#pragma omp for schedule(dynamic)
        for (int64_t c = 0; c < num_chunks; ++c) {
          const Job& job = jobs_[chunks[c].first];
          const int64_t begin = chunks[c].second;
          FillRange(job.out, job.dtype, begin, std::min(job.n, begin + kFillChunk), job.stream,
                    job.bound);
        }
      }
    }).join();
    std::erase_if(weights_.owned, [](const std::vector<uint8_t>& b) { return b.empty(); });
  }

 private:
  struct Job {
    kernels::MatrixView* view;  // matrices: allocated in weights.owned by Fill()
    void* out;                  // biases: their own storage
    DType dtype;
    int64_t n;
    uint64_t stream;
    float bound;
  };
  ModelWeights& weights_;
  std::vector<Job> jobs_;
};

void DeclareLayer(const ModelConfig& c, uint64_t seed, int64_t layer, LayerWeights& l,
                  WeightBuilder& b) {
  const uint64_t base = kFirstLayerTensor + static_cast<uint64_t>(layer) * kTensorsPerLayer;
  auto stream = [&](LayerSlot slot) { return TensorStream(seed, base + slot); };
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  const int64_t h = c.hidden_size;
  b.Matrix(&l.q_proj, c.dtype, q_dim, h, stream(kQ));
  b.Matrix(&l.k_proj, c.dtype, kv_dim, h, stream(kK));
  b.Matrix(&l.v_proj, c.dtype, kv_dim, h, stream(kV));
  b.Matrix(&l.o_proj, c.dtype, h, q_dim, stream(kO));
  b.Matrix(&l.gate_proj, c.dtype, c.intermediate_size, h, stream(kGate));
  b.Matrix(&l.up_proj, c.dtype, c.intermediate_size, h, stream(kUp));
  b.Matrix(&l.down_proj, c.dtype, h, c.intermediate_size, stream(kDown));
  if (c.qkv_bias) {
    b.Bias(l.q_bias, q_dim, stream(kQBias));
    b.Bias(l.k_bias, kv_dim, stream(kKBias));
    b.Bias(l.v_bias, kv_dim, stream(kVBias));
  }
  l.input_norm.assign(static_cast<size_t>(h), 1.0f);
  l.post_attention_norm.assign(static_cast<size_t>(h), 1.0f);
}

void Fingerprint(std::string_view preset, uint64_t seed, ModelWeights& weights) {
  std::string key = StrCat("synthetic:", preset, "/");
  for (int byte = 0; byte < 8; ++byte) key.push_back(static_cast<char>(seed >> (8 * byte)));
  const XXH128_hash_t hash = XXH3_128bits(key.data(), key.size());
  weights.fingerprint_hi = hash.high64;
  weights.fingerprint_lo = hash.low64;
}

std::string Describe(std::string_view preset, uint64_t seed, const ModelConfig& c) {
  const double params = static_cast<double>(c.NumParameters());
  const std::string size = params >= 1e9 ? absl::StrFormat("%.2fB", params * 1e-9)
                                         : absl::StrFormat("%.1fM", params * 1e-6);
  return absl::StrFormat(
      "synthetic:%s (seed %d): random %s weights in %s shapes (%s parameters, %d layers, "
      "hidden %d, vocab %d); its output is meaningless text",
      std::string(preset), seed, std::string(DTypeName(c.dtype)),
      std::string(ArchitectureName(c.arch)), size, c.num_layers, c.hidden_size, c.vocab_size);
}

}  // namespace

std::vector<std::string_view> SyntheticPresetNames() {
  std::vector<std::string_view> names;
  for (const Preset& p : kPresets) names.push_back(p.name);
  return names;
}

absl::StatusOr<ModelConfig> SyntheticModelConfig(std::string_view preset) {
  for (const Preset& p : kPresets) {
    if (p.name == preset) return p.make();
  }
  std::string known;
  for (const Preset& p : kPresets) known += StrCat(known.empty() ? "" : ", ", p.name);
  return absl::InvalidArgumentError(
      StrCat("unknown synthetic model preset \"", preset, "\"; known presets: ", known));
}

absl::StatusOr<SyntheticModel> MakeSyntheticModel(std::string_view preset, uint64_t seed) {
  SyntheticModel model;
  ASSIGN_OR_RETURN(model.config, SyntheticModelConfig(preset));
  const ModelConfig& c = model.config;
  ModelWeights& w = model.weights;
  WeightBuilder builder(w);
  builder.Matrix(&w.embed_tokens, c.dtype, c.vocab_size, c.hidden_size,
                 TensorStream(seed, kEmbedTensor));
  if (!c.tie_word_embeddings) {
    builder.Matrix(&w.lm_head, c.dtype, c.vocab_size, c.hidden_size,
                   TensorStream(seed, kLmHeadTensor));
  }
  w.layers.resize(static_cast<size_t>(c.num_layers));  // never resized again: views stay put
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    DeclareLayer(c, seed, layer, w.layers[layer], builder);
  }
  builder.Fill();
  if (c.tie_word_embeddings) w.lm_head = w.embed_tokens;
  w.final_norm.assign(static_cast<size_t>(c.hidden_size), 1.0f);
  Fingerprint(preset, seed, w);
  model.description = Describe(preset, seed, c);
  return model;
}

}  // namespace strata::engine
