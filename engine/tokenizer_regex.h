// The pre-tokenizer regexes of byte-level BPE models, matched by hand. std::regex has no \p{..}
// and a general engine is not needed: real tokenizer.json files carry one of a few patterns, so
// each is recognised by its exact text and run by a small matcher with the same
// leftmost-first-alternative semantics as Oniguruma (which Hugging Face tokenizers uses).
// Stateless: callable from any thread.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace strata::engine::tokenizer_internal {

enum class SplitPattern {
  kGpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kLlama3,  // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
  kQwen2,   // as kLlama3 but \p{N} alone: one digit per piece
};

// The pattern whose text is exactly `regex`, or nullopt.
std::optional<SplitPattern> RecognizeSplitPattern(std::string_view regex);

// Cuts `text` into the pattern's consecutive matches (pieces cover the whole text, in order; an
// ill-formed UTF-8 unit counts as a symbol character). Appends views into `text`.
void SplitByPattern(SplitPattern pattern, std::string_view text,
                    std::vector<std::string_view>* pieces);

}  // namespace strata::engine::tokenizer_internal
