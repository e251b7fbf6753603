// The text stages of a tokenizer.json around the BPE model, each parsed from its JSON object
// and run as an ordered list of steps:
//   Normalizer    (normalizer)     Sequence, Prepend, Replace (string pattern), NFC/NFD/NFKC/NFKD
//   PreTokenizer  (pre_tokenizer)  Sequence, Split (recognised regex or string), ByteLevel,
//                                  Metaspace
//   Decoder       (decoder)        Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel,
//                                  Metaspace
//   SpecialTokensTemplate (post_processor)  TemplateProcessing, ByteLevel, Sequence
// Anything else is refused at load with an error naming the file and the unsupported type, so a
// model is never silently tokenized wrong. All classes are immutable after parsing; their const
// methods are callable from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "common/status.h"
#include "engine/tokenizer_regex.h"
#include "engine/tokenizer_unicode.h"

namespace strata::engine::tokenizer_internal {

class Normalizer {
 public:
  // `json` may be null (no normalizer). Errors start with `what`.
  static absl::StatusOr<Normalizer> FromJson(const Json& json, std::string_view what);
  std::string Apply(std::string_view text) const;

 private:
  enum class Kind { kPrepend, kReplace, kUnicode };
  struct Step {
    Kind kind;
    std::string text;         // kPrepend: prefix; kReplace: pattern
    std::string replacement;  // kReplace
    NormalForm form = NormalForm::kNfc;
  };
  static absl::Status Parse(const Json& json, std::string_view what, std::vector<Step>* steps);
  std::vector<Step> steps_;
};

// How a Split keeps the text its pattern matched (tokenizers' SplitDelimiterBehavior).
enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
 public:
  static absl::StatusOr<PreTokenizer> FromJson(const Json& json, std::string_view what);
  // Appends the words of one normalized segment. `at_text_start`: the segment begins the input
  // (Metaspace's prepend_scheme "first" prepends only there).
  void Apply(std::string_view segment, bool at_text_start, std::vector<std::string>* words) const;

 private:
  enum class Kind { kSplitRegex, kSplitString, kByteLevel, kMetaspace };
  enum class Prepend { kAlways, kFirst, kNever };
  struct Step {
    Kind kind;
    SplitPattern pattern = SplitPattern::kGpt2;  // kSplitRegex; kByteLevel with use_regex
    std::string text{};                          // kSplitString: literal; kMetaspace: replacement
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool flag = false;                   // kByteLevel: add_prefix_space; kMetaspace: split
    bool use_regex = false;              // kByteLevel
    Prepend prepend = Prepend::kAlways;  // kMetaspace
  };
  static absl::Status Parse(const Json& json, std::string_view what, std::vector<Step>* steps);
  static absl::StatusOr<Step> ParseSplit(const Json& json, std::string_view what);
  static absl::StatusOr<Step> ParseMetaspace(const Json& json, std::string_view what);
  void ApplyStep(const Step& step, std::string_view piece, bool at_text_start,
                 std::vector<std::string>* out) const;
  std::vector<Step> steps_;
};

class Decoder {
 public:
  static absl::StatusOr<Decoder> FromJson(const Json& json, std::string_view what);
  // Token strings -> text (valid UTF-8 whenever the tokens are, or the decoder repairs bytes).
  // Without a decoder, tokens are joined with spaces, as tokenizers does.
  std::string Decode(std::vector<std::string> tokens) const;
  // True when the decoder maps GPT-2's alphabet back to bytes.
  bool byte_level() const;

 private:
  enum class Kind { kReplace, kByteFallback, kFuse, kStrip, kByteLevel, kMetaspace };
  struct Step {
    Kind kind;
    std::string from{};  // kReplace: pattern; kMetaspace: replacement
    std::string to{};    // kReplace
    char32_t strip_char = 0;
    int64_t strip_start = 0;
    int64_t strip_stop = 0;
    bool prepend_never = false;  // kMetaspace
  };
  static absl::Status Parse(const Json& json, std::string_view what, std::vector<Step>* steps);
  static void ApplyStep(const Step& step, std::vector<std::string>* tokens);
  std::vector<Step> steps_;
};

// The special tokens the post_processor adds around a single sequence.
struct SpecialTokensTemplate {
  std::vector<int32_t> prefix;
  std::vector<int32_t> suffix;
  static absl::StatusOr<SpecialTokensTemplate> FromJson(const Json& json, std::string_view what);
};

// The byte a byte-fallback token "<0xNN>" stands for, or -1.
int ByteFallbackValue(std::string_view token);

}  // namespace strata::engine::tokenizer_internal
