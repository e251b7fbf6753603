#include "engine/weights.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "common/json.h"
#include "engine/safetensors.h"

namespace strata::engine {
namespace {

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";
constexpr size_t kFingerprintEdgeBytes = 4096;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += StrCat(i ? ", " : "", shape[i]);
  return s + "]";
}

// Every tensor of a model folder, whichever file holds it. Owns the open files.
class TensorSource {
 public:
  struct Entry {
    const SafetensorsFile* file;
    const SafetensorsTensor* tensor;
  };

  static absl::StatusOr<TensorSource> Open(const std::string& dir);

  // The tensor `name`; an error naming the file(s) searched when absent.
  absl::StatusOr<Entry> Get(const std::string& name) const {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) {
      return absl::NotFoundError(StrCat(origin_, ": missing tensor '", name, "'"));
    }
    return it->second;
  }
  const std::map<std::string, Entry>& by_name() const { return by_name_; }
  std::vector<std::unique_ptr<MappedFile>> ReleaseMappings() {
    std::vector<std::unique_ptr<MappedFile>> out;
    for (auto& f : files_) out.push_back(f->ReleaseMapping());
    return out;
  }

 private:
  absl::Status OpenSharded(const std::string& dir, const std::string& index_path);

  std::string origin_;  // the file that lists the tensors (single file or index)
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> by_name_;
};

absl::StatusOr<TensorSource> TensorSource::Open(const std::string& dir) {
  TensorSource src;
  const std::string index_path = StrCat(dir, "/", kIndexFile);
  if (FileExists(index_path)) {
    RETURN_IF_ERROR(src.OpenSharded(dir, index_path));
    return src;
  }
  src.origin_ = StrCat(dir, "/", kSingleFile);
  if (!FileExists(src.origin_)) {
    return absl::NotFoundError(StrCat(src.origin_, ": not found (and no ", kIndexFile,
                                      " either): not a safetensors model folder"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(src.origin_));
  for (const SafetensorsTensor& t : file->header().tensors) {
    src.by_name_[t.name] = Entry{file.get(), &t};
  }
  src.files_.push_back(std::move(file));
  return src;
}

absl::Status TensorSource::OpenSharded(const std::string& dir, const std::string& index_path) {
  origin_ = index_path;
  ASSIGN_OR_RETURN(std::string text, ReadFile(index_path));
  ASSIGN_OR_RETURN(Json index, ParseJson(text, index_path));
  auto map = index.is_object() ? index.find("weight_map") : index.end();
  if (map == index.end() || !map->is_object()) {
    return absl::InvalidArgumentError(StrCat(index_path, ": missing object 'weight_map'"));
  }
  std::map<std::string, std::vector<std::string>> names_by_shard;
  for (auto it = map->begin(); it != map->end(); ++it) {
    const std::string shard = it->is_string() ? it->get<std::string>() : "";
    // Shard names are plain file names in the folder: refuse anything that could escape it.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      return absl::InvalidArgumentError(StrCat(index_path, ": weight_map entry for '", it.key(),
                                               "' is not a file name in the model folder"));
    }
    names_by_shard[shard].push_back(it.key());
  }
  for (const auto& [shard, names] : names_by_shard) {
    const std::string shard_path = StrCat(dir, "/", shard);
    if (!FileExists(shard_path)) {
      return absl::NotFoundError(StrCat(index_path, ": shard ", shard_path, " (holding '",
                                        names.front(), "') is missing"));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(shard_path));
    for (const std::string& name : names) {
      const SafetensorsTensor* t = file->Find(name);
      if (t == nullptr) {
        return absl::NotFoundError(StrCat(shard_path, ": missing tensor '", name, "' that ",
                                          index_path, " places there"));
      }
      by_name_[name] = Entry{file.get(), t};
    }
    files_.push_back(std::move(file));
  }
  return absl::OkStatus();
}

// Checks one tensor against the config and turns it into a view or a float vector.
class TensorLoader {
 public:
  TensorLoader(const TensorSource& src, ModelWeights& w) : src_(src), w_(w) {}

  absl::StatusOr<kernels::MatrixView> Matrix(const std::string& name, int64_t rows,
                                             int64_t cols);
  absl::StatusOr<std::vector<float>> Vector(const std::string& name, int64_t n);

 private:
  absl::StatusOr<TensorSource::Entry> Checked(const std::string& name,
                                              const std::vector<int64_t>& shape, DType* dtype);
  const TensorSource& src_;
  ModelWeights& w_;
};

absl::StatusOr<TensorSource::Entry> TensorLoader::Checked(const std::string& name,
                                                          const std::vector<int64_t>& shape,
                                                          DType* dtype) {
  ASSIGN_OR_RETURN(TensorSource::Entry e, src_.Get(name));
  if (e.tensor->shape != shape) {
    return absl::InvalidArgumentError(
        StrCat(e.file->path(), ": tensor '", name, "': expected shape ", ShapeString(shape),
               " from config.json, found ", ShapeString(e.tensor->shape)));
  }
  std::optional<DType> loadable = e.tensor->Loadable();
  if (!loadable) {
    return absl::InvalidArgumentError(StrCat(e.file->path(), ": tensor '", name,
                                             "': expected dtype F32, F16 or BF16, found ",
                                             e.tensor->dtype));
  }
  *dtype = *loadable;
  return e;
}

absl::StatusOr<kernels::MatrixView> TensorLoader::Matrix(const std::string& name, int64_t rows,
                                                         int64_t cols) {
  DType dtype;
  ASSIGN_OR_RETURN(TensorSource::Entry e, Checked(name, {rows, cols}, &dtype));
  std::span<const uint8_t> bytes = e.file->TensorBytes(*e.tensor);
  w_.total_bytes += static_cast<int64_t>(bytes.size());
  kernels::MatrixView view{bytes.data(), dtype, rows, cols};
  if (dtype == DType::kF16) {  // The CPU GEMM has no f16 path: widen once, exactly.
    std::vector<uint8_t>& buf = w_.owned.emplace_back(bytes.size() * 2);
    std::vector<uint16_t> halves(bytes.size() / 2);
    std::memcpy(halves.data(), bytes.data(), bytes.size());
    ConvertToF32(halves.data(), DType::kF16, reinterpret_cast<float*>(buf.data()), halves.size());
    view.data = buf.data();
    view.dtype = DType::kF32;
  } else if (reinterpret_cast<uintptr_t>(bytes.data()) % DTypeSize(dtype) != 0) {
    // A header length that is not a multiple of the element size misaligns the data: copy it.
    std::vector<uint8_t>& buf = w_.owned.emplace_back(bytes.begin(), bytes.end());
    view.data = buf.data();
  }
  return view;
}

absl::StatusOr<std::vector<float>> TensorLoader::Vector(const std::string& name, int64_t n) {
  DType dtype;
  ASSIGN_OR_RETURN(TensorSource::Entry e, Checked(name, {n}, &dtype));
  std::span<const uint8_t> bytes = e.file->TensorBytes(*e.tensor);
  std::vector<uint8_t> aligned(bytes.begin(), bytes.end());
  std::vector<float> out(n);
  ConvertToF32(aligned.data(), dtype, out.data(), static_cast<size_t>(n));
  return out;
}

absl::StatusOr<LayerWeights> LoadLayer(TensorLoader& load, const ModelConfig& c, int64_t i) {
  const std::string p = StrCat("model.layers.", i, ".");
  const int64_t h = c.hidden_size, q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim, inter = c.intermediate_size;
  LayerWeights l;
  ASSIGN_OR_RETURN(l.q_proj, load.Matrix(p + "self_attn.q_proj.weight", q_dim, h));
  ASSIGN_OR_RETURN(l.k_proj, load.Matrix(p + "self_attn.k_proj.weight", kv_dim, h));
  ASSIGN_OR_RETURN(l.v_proj, load.Matrix(p + "self_attn.v_proj.weight", kv_dim, h));
  ASSIGN_OR_RETURN(l.o_proj, load.Matrix(p + "self_attn.o_proj.weight", h, q_dim));
  if (c.qkv_bias) {
    ASSIGN_OR_RETURN(l.q_bias, load.Vector(p + "self_attn.q_proj.bias", q_dim));
    ASSIGN_OR_RETURN(l.k_bias, load.Vector(p + "self_attn.k_proj.bias", kv_dim));
    ASSIGN_OR_RETURN(l.v_bias, load.Vector(p + "self_attn.v_proj.bias", kv_dim));
  }
  ASSIGN_OR_RETURN(l.gate_proj, load.Matrix(p + "mlp.gate_proj.weight", inter, h));
  ASSIGN_OR_RETURN(l.up_proj, load.Matrix(p + "mlp.up_proj.weight", inter, h));
  ASSIGN_OR_RETURN(l.down_proj, load.Matrix(p + "mlp.down_proj.weight", h, inter));
  ASSIGN_OR_RETURN(l.input_norm, load.Vector(p + "input_layernorm.weight", h));
  ASSIGN_OR_RETURN(l.post_attention_norm, load.Vector(p + "post_attention_layernorm.weight", h));
  return l;
}

// XXH3-128 over names, dtypes, shapes and the edges of each tensor's data, in name order.
void Fingerprint(const TensorSource& src, ModelWeights& w) {
  XXH3_state_t* state = XXH3_createState();
  CHECK(state != nullptr);
  XXH3_128bits_reset(state);
  static constexpr char kTag[] = "strata-weights-v1";
  XXH3_128bits_update(state, kTag, sizeof(kTag));
  for (const auto& [name, e] : src.by_name()) {
    XXH3_128bits_update(state, name.c_str(), name.size() + 1);
    XXH3_128bits_update(state, e.tensor->dtype.c_str(), e.tensor->dtype.size() + 1);
    const uint64_t rank = e.tensor->shape.size();
    XXH3_128bits_update(state, &rank, sizeof(rank));
    XXH3_128bits_update(state, e.tensor->shape.data(), rank * sizeof(int64_t));
    std::span<const uint8_t> bytes = e.file->TensorBytes(*e.tensor);
    const size_t edge = std::min(bytes.size(), kFingerprintEdgeBytes);
    XXH3_128bits_update(state, bytes.data(), edge);
    XXH3_128bits_update(state, bytes.data() + bytes.size() - edge, edge);
  }
  XXH128_hash_t h = XXH3_128bits_digest(state);
  XXH3_freeState(state);
  w.fingerprint_hi = h.high64;
  w.fingerprint_lo = h.low64;
}

}  // namespace

absl::StatusOr<ModelWeights> LoadWeights(const std::string& dir, const ModelConfig& config) {
  RETURN_IF_ERROR(config.Validate());
  ASSIGN_OR_RETURN(TensorSource src, TensorSource::Open(dir));
  ModelWeights w;
  TensorLoader load(src, w);
  const int64_t vocab = config.vocab_size, hidden = config.hidden_size;
  ASSIGN_OR_RETURN(w.embed_tokens, load.Matrix("model.embed_tokens.weight", vocab, hidden));
  if (config.tie_word_embeddings) {
    w.lm_head = w.embed_tokens;  // HF ties them; a stored lm_head.weight would be ignored too.
  } else {
    absl::StatusOr<kernels::MatrixView> head = load.Matrix("lm_head.weight", vocab, hidden);
    if (!head.ok()) {
      return absl::Status(head.status().code(),
                          StrCat(head.status().message(),
                                 " (config.json has tie_word_embeddings false)"));
    }
    w.lm_head = *head;
  }
  ASSIGN_OR_RETURN(w.final_norm, load.Vector("model.norm.weight", hidden));
  for (int64_t i = 0; i < config.num_layers; ++i) {
    ASSIGN_OR_RETURN(LayerWeights layer, LoadLayer(load, config, i));
    w.layers.push_back(std::move(layer));
  }
  Fingerprint(src, w);
  w.mapped_files = src.ReleaseMappings();
  return w;
}

absl::StatusOr<LoadedModel> LoadModelFiles(const std::string& dir) {
  const std::string config_path = StrCat(dir, "/config.json");
  ASSIGN_OR_RETURN(std::string text, ReadFile(config_path));
  LoadedModel m;
  m.dir = dir;
  ASSIGN_OR_RETURN(m.config, ParseModelConfig(text, config_path));
  ASSIGN_OR_RETURN(m.weights, LoadWeights(dir, m.config));
  return m;
}

}  // namespace strata::engine
