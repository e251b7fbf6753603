// The BPE model of a Hugging Face tokenizer.json: vocabulary, ranked merges, unk and byte
// fallback. Tokenize() turns one pre-tokenized word into ids exactly like tokenizers' BPE:
// characters (or <0xNN> byte tokens, or unk) first, then merges applied lowest rank first,
// leftmost first among equal ranks, with a priority queue over a linked list of symbols
// (O(n log n) in the word length: a 100k-token text without a pre-tokenizer is one word).
// Immutable after construction; every method is const and callable from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace strata::engine::tokenizer_internal {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // Parses tokenizer.json's "model" object; errors start with `what` (the file).
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const Json& model,
                                                            std::string_view what);
  // No merges, no unk; token i has id i.
  static std::unique_ptr<BpeModel> FromVocab(std::vector<std::string> tokens);

  // Appends the ids of `word` (an empty word adds nothing).
  void Tokenize(std::string_view word, std::vector<int32_t>* ids) const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // nullptr when no vocabulary entry has this id.
  const std::string* IdToToken(int32_t id) const;
  // Largest id + 1.
  int64_t num_ids() const { return static_cast<int64_t>(id_to_token_.size()); }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  // One piece of the word being merged; len_bytes == 0 marks a symbol merged into its left.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    uint32_t len_bytes;
  };

  BpeModel() = default;
  absl::Status LoadVocab(const Json& vocab, std::string_view what);
  absl::Status LoadMerges(const Json& merges, std::string_view what);
  absl::Status AddMerge(std::string_view left, std::string_view right, int32_t rank,
                        std::string_view what);
  void FinishSetup();
  std::vector<Symbol> InitialSymbols(std::string_view word) const;
  void ApplyMerges(std::vector<Symbol>* symbols) const;
  const Merge* FindMerge(int32_t left, int32_t right) const;

  StringMap<int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_token_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};  // id of "<0xNN>", -1 when absent
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
};

}  // namespace strata::engine::tokenizer_internal
