// Tokenizer: the Hugging Face tokenizer.json BPE pipeline (DESIGN.md §4) for the two families
// Strata serves:
//   * sentencepiece-style with byte fallback (Llama 2): normalizer Prepend "▁" + Replace " "->"▁",
//     no pre-tokenizer, <0xNN> tokens for bytes outside the vocab, decoder Replace/ByteFallback/
//     Fuse/Strip;
//   * byte-level (Llama 3, Qwen2): a Split pre-tokenizer with the model's regex (matched by hand,
//     see tokenizer_regex.h) and GPT-2's byte <-> unicode alphabet, decoder ByteLevel.
// Encode: split the text on added tokens (longest match, special or not, as tokenizers does;
// matched on the raw text even when marked "normalized": true, which Llama/Qwen files never do),
// normalize and pre-tokenize each remaining segment, BPE each word (merges by rank), then add the
// bos/eos the tokenizer_config.json asks for (add_bos_token / add_eos_token) or, without those
// keys, what the post_processor template adds.
// Decode: ids -> token strings (added tokens included unless skipped) -> the decoder; the result
// is always valid UTF-8 (ill-formed bytes become U+FFFD as tokenizers does).
//
// Thread safety: a Tokenizer is immutable after construction; every const method may be called
// from any thread concurrently. An IncrementalDecoder belongs to one stream (one thread).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace strata::engine {

class Tokenizer {
 public:
  // tokenizer_config_path may name a missing file (then defaults apply). Errors name the file
  // and the problem.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFiles(
      const std::string& tokenizer_json_path, const std::string& tokenizer_config_path);
  // The same from file contents: `what` names tokenizer.json in errors, `config_what` the
  // config (defaults to "<what> (tokenizer_config.json)"). An empty config_json means none.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJsonText(std::string_view json,
                                                                 std::string_view config_json,
                                                                 std::string_view what,
                                                                 std::string_view config_what = {});
  // For synthetic: models (no files). ids 0..255: one per byte; 256 "<s>" (bos), 257 "</s>"
  // (eos), ids >= 258 decode to " w<id>". Encode maps each byte of the text to its id (a literal
  // "<s>" in the text stays bytes); add_special_tokens prepends bos.
  // REQUIRES: vocab_size >= 258.
  static std::unique_ptr<Tokenizer> Synthetic(int64_t vocab_size);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const;
  // Ids outside the vocabulary are skipped.
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // Largest id (model vocab or added token) + 1.
  int64_t vocab_size() const;
  int32_t bos_id() const;  // -1 if none
  const std::vector<int32_t>& eos_ids() const;
  // Added tokens marked "special" (bos, eos, <|im_start|>, ...).
  bool IsSpecial(int32_t id) const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The vocabulary string of an id (byte-level tokens in GPT-2's alphabet), nullopt if none.
  std::optional<std::string> IdToToken(int32_t id) const;
  // XXH3-64 of the tokenizer definition (tokenizer.json and config text); seeds prefix caches.
  uint64_t fingerprint() const;

 private:
  friend class IncrementalDecoder;
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  // True when the token's first byte continues a UTF-8 character begun by an earlier token.
  bool StartsMidCharacter(int32_t id) const;

  std::unique_ptr<const Impl> impl_;
};

// Turns a token stream into text chunks, each valid UTF-8 and never half a character: a chunk is
// Decode(window + new) minus Decode(window) (the vLLM/HF approach, so the first generated
// token's leading space comes out right), and is held back ("") while the decoded text ends in
// U+FFFD, i.e. a character is still incomplete. The window restarts after every emitted chunk, so
// the cost per token is O(1). Concatenating every chunk gives the text that follows the prompt in
// Decode(prompt + generated).
// Thread safety: one stream, one thread. `tok` must outlive the decoder.
class IncrementalDecoder {
 public:
  IncrementalDecoder(const Tokenizer& tok, std::span<const int32_t> prompt_ids,
                     bool skip_special_tokens);
  // New complete text; "" while a UTF-8 character is incomplete.
  std::string Push(int32_t id);
  // Whatever is held back (U+FFFD for bytes that never formed a character).
  std::string Flush();

 private:
  std::string DecodeWindow(size_t end) const;
  std::string EmitAndSlide(const std::string& text);
  bool Skipped(int32_t id) const;

  const Tokenizer& tok_;
  const bool skip_special_tokens_;
  std::vector<int32_t> window_;  // context tokens, then the not yet emitted ones
  size_t read_offset_ = 0;       // window_[read_offset_:] has not been emitted
  std::string prefix_text_;      // DecodeWindow(read_offset_)
};

}  // namespace strata::engine
