#include "engine/model.h"

#include <algorithm>

#include "common/logging.h"
#include "engine/synthetic.h"

namespace strata::engine {
namespace {

constexpr std::string_view kSyntheticPrefix = "synthetic:";

absl::StatusOr<std::unique_ptr<Model>> LoadSynthetic(const std::string& spec, uint64_t seed) {
  std::string preset = spec.substr(kSyntheticPrefix.size());
  ASSIGN_OR_RETURN(SyntheticModel synthetic, MakeSyntheticModel(preset, seed));
  auto model = std::make_unique<Model>();
  model->name = spec;
  model->synthetic = true;
  model->description = synthetic.description;  // says that the output is meaningless
  model->config = std::move(synthetic.config);
  model->weights = std::move(synthetic.weights);
  model->tokenizer = Tokenizer::Synthetic(model->config.vocab_size);
  return model;
}

}  // namespace

std::vector<int32_t> Model::EosIds() const {
  std::vector<int32_t> ids = tokenizer->eos_ids();
  for (int64_t id : config.eos_token_ids) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& spec,
                                                 const ModelLoadOptions& options) {
  if (spec.rfind(kSyntheticPrefix, 0) == 0) return LoadSynthetic(spec, options.synthetic_seed);
  ASSIGN_OR_RETURN(std::string dir, ResolveModelPath(spec, options.hub));
  ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelFiles(dir));
  ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::FromFiles(dir + "/tokenizer.json",
                                                         dir + "/tokenizer_config.json"));
  auto model = std::make_unique<Model>();
  model->name = spec;
  model->path = dir;
  model->config = std::move(loaded.config);
  model->weights = std::move(loaded.weights);
  model->tokenizer = std::move(tokenizer);
  const ModelConfig& c = model->config;
  model->description = absl::StrFormat(
      "%s (%s, %d layers, hidden %d, %.1fM parameters, %.1f MiB of weights)", dir,
      std::string(ArchitectureName(c.arch)), c.num_layers, c.hidden_size,
      c.NumParameters() / 1e6, model->weights.total_bytes / 1048576.0);
  return model;
}

}  // namespace strata::engine
