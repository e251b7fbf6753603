// Model: everything needed to run one model — config, weights, tokenizer — loaded from a Hugging
// Face folder, an `org/name` in the local hub cache (downloaded when missing), or a
// `synthetic:<preset>`. Immutable after LoadModel; shared read-only by all threads.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "engine/hf_hub.h"
#include "engine/model_config.h"
#include "engine/tokenizer.h"
#include "engine/weights.h"

namespace strata::engine {

struct Model {
  std::string name;         // as requested: a path, org/name or synthetic:NAME
  std::string path;         // resolved folder; empty for synthetic models
  bool synthetic = false;   // true: random weights, the output is meaningless text
  std::string description;  // one line for logs
  ModelConfig config;
  ModelWeights weights;
  std::unique_ptr<Tokenizer> tokenizer;

  // End-of-sequence ids: the tokenizer's (tokenizer_config.json) and config.json's eos_token_id,
  // merged without duplicates (Llama 3 instruct lists several; either file may lack them).
  std::vector<int32_t> EosIds() const;
};

struct ModelLoadOptions {
  HubOptions hub;              // where org/name models are cached and fetched from
  uint64_t synthetic_seed = 0; // weights of synthetic models are a function of preset and seed
};

absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& spec,
                                                 const ModelLoadOptions& options);

}  // namespace strata::engine
