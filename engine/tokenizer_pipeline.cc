#include "engine/tokenizer_pipeline.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace strata::engine::tokenizer_internal {
namespace {

absl::Status Invalid(std::string_view what, std::string_view problem) {
  return absl::InvalidArgumentError(StrCat(what, ": ", problem));
}

absl::Status Unsupported(std::string_view what, std::string_view section, std::string_view type) {
  return absl::InvalidArgumentError(
      StrCat(what, ": ", section, " type '", type, "' is not supported"));
}

// The "type" of a pipeline object, with errors naming the section.
absl::StatusOr<std::string> TypeOf(const Json& json, std::string_view section,
                                   std::string_view what) {
  if (!json.is_object()) return Invalid(what, StrCat(section, ": expected an object"));
  return JsonString(json, "type", StrCat(what, ": ", section));
}

// Sequences hold plain steps in real files; refusing nested ones bounds the recursion on
// hostile input.
absl::Status CheckNotSequence(const Json& item, std::string_view section, std::string_view what) {
  if (!item.is_object()) return absl::OkStatus();
  auto type = item.find("type");
  if (type != item.end() && type->is_string() && *type == "Sequence") {
    return Invalid(what, StrCat(section, ": nested Sequence is not supported"));
  }
  return absl::OkStatus();
}

absl::StatusOr<const Json*> ArrayMember(const Json& json, std::string_view key,
                                        std::string_view section, std::string_view what) {
  auto it = json.find(std::string(key));
  if (it == json.end() || !it->is_array()) {
    return Invalid(what, StrCat(section, ": key '", key, "': expected an array"));
  }
  return &*it;
}

// A Replace/Split "pattern": {"String": s} only; {"Regex": r} is refused by the caller when it
// cannot handle it. Returns {is_regex, text}.
absl::StatusOr<std::pair<bool, std::string>> ParsePattern(const Json& json,
                                                          std::string_view section,
                                                          std::string_view what) {
  auto it = json.find("pattern");
  if (it != json.end() && it->is_object()) {
    for (const char* key : {"String", "Regex"}) {
      auto p = it->find(key);
      if (p != it->end() && p->is_string()) {
        return std::make_pair(std::string_view(key) == "Regex", p->get<std::string>());
      }
    }
  }
  return Invalid(what, StrCat(section,
                              ": key 'pattern': expected {\"String\": ...} or "
                              "{\"Regex\": ...}"));
}

std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string_view::npos; pos = hit + from.size()) {
    out.append(s.substr(pos, hit - pos));
    out.append(to);
  }
  out.append(s.substr(pos));
  return out;
}

struct Span {
  size_t begin;
  size_t end;
  bool is_match;
};

// tokenizers' SplitDelimiterBehavior applied to consecutive spans covering a piece.
std::vector<Span> ApplyBehavior(const std::vector<Span>& spans, SplitBehavior behavior) {
  std::vector<Span> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      return spans;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans) {
        if (!s.is_match) out.push_back(s);
      }
      return out;
    case SplitBehavior::kMergedWithPrevious:
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        const bool merge = behavior == SplitBehavior::kContiguous ? s.is_match == previous_match
                                                                  : s.is_match && !previous_match;
        if (merge && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back(s);
        }
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      return out;
  }
  return out;
}

void AppendSpans(std::string_view piece, const std::vector<Span>& spans, SplitBehavior behavior,
                 std::vector<std::string>* out) {
  for (const Span& s : ApplyBehavior(spans, behavior)) {
    if (s.end > s.begin) out->emplace_back(piece.substr(s.begin, s.end - s.begin));
  }
}

std::vector<Span> LiteralSpans(std::string_view piece, std::string_view literal) {
  std::vector<Span> spans;
  size_t pos = 0;
  for (size_t hit; (hit = piece.find(literal, pos)) != std::string_view::npos;
       pos = hit + literal.size()) {
    if (hit > pos) spans.push_back({pos, hit, false});
    spans.push_back({hit, hit + literal.size(), true});
  }
  if (pos < piece.size()) spans.push_back({pos, piece.size(), false});
  return spans;
}

absl::StatusOr<SplitBehavior> ParseBehavior(const Json& json, std::string_view what) {
  ASSIGN_OR_RETURN(std::string name, JsonOptionalString(json, "behavior", "Isolated",
                                                        StrCat(what, ": pre_tokenizer Split")));
  static const std::pair<const char*, SplitBehavior> kNames[] = {
      {"Isolated", SplitBehavior::kIsolated},
      {"Removed", SplitBehavior::kRemoved},
      {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious},
      {"MergedWithNext", SplitBehavior::kMergedWithNext},
      {"Contiguous", SplitBehavior::kContiguous}};
  for (const auto& [n, b] : kNames) {
    if (name == n) return b;
  }
  return Invalid(what, StrCat("pre_tokenizer Split: unknown behavior '", name, "'"));
}

// The single character of a JSON string field (Strip's content, Metaspace's replacement).
absl::StatusOr<char32_t> SingleChar(const std::string& s, std::string_view field,
                                    std::string_view what) {
  if (!s.empty()) {
    Utf8Unit u = DecodeUtf8(s, 0);
    if (u.valid && u.length_bytes == s.size()) return u.code_point;
  }
  return Invalid(what, StrCat(field, ": expected a single character, got '", s, "'"));
}

// tokenizers' ByteFallback: a run of <0xNN> tokens becomes its bytes when they are valid UTF-8,
// else one U+FFFD per token.
void FuseByteFallbackRuns(std::vector<std::string>* tokens) {
  std::vector<std::string> out;
  std::string bytes;
  size_t num_bytes = 0;
  auto flush = [&]() {
    if (num_bytes == 0) return;
    if (IsValidUtf8(bytes)) {
      out.push_back(bytes);
    } else {
      for (size_t i = 0; i < num_bytes; ++i) out.emplace_back("\xEF\xBF\xBD");
    }
    bytes.clear();
    num_bytes = 0;
  };
  for (std::string& t : *tokens) {
    const int b = ByteFallbackValue(t);
    if (b >= 0) {
      bytes.push_back(static_cast<char>(b));
      ++num_bytes;
    } else {
      flush();
      out.push_back(std::move(t));
    }
  }
  flush();
  tokens->swap(out);
}

// tokenizers' ByteLevel decoder: each token's characters map back to bytes (a token with a
// character outside the alphabet, such as an added "\n\n", contributes its own bytes), then the
// bytes become text the way from_utf8_lossy does it.
std::string ByteLevelToText(const std::vector<std::string>& tokens) {
  std::string bytes;
  for (const std::string& t : tokens) {
    std::string mapped;
    bool all_mapped = true;
    for (size_t pos = 0; pos < t.size() && all_mapped;) {
      Utf8Unit u = DecodeUtf8(t, pos);
      const int b = u.valid ? CodePointToByte(u.code_point) : -1;
      all_mapped = b >= 0;
      mapped.push_back(static_cast<char>(b));
      pos += u.length_bytes;
    }
    bytes.append(all_mapped ? mapped : t);
  }
  return Utf8Lossy(bytes);
}

}  // namespace

int ByteFallbackValue(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  int value = 0;
  for (char c : token.substr(3, 2)) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Normalizer

absl::StatusOr<Normalizer> Normalizer::FromJson(const Json& json, std::string_view what) {
  Normalizer n;
  if (!json.is_null()) RETURN_IF_ERROR(Parse(json, what, &n.steps_));
  return n;
}

absl::Status Normalizer::Parse(const Json& json, std::string_view what, std::vector<Step>* steps) {
  constexpr std::string_view kSection = "normalizer";
  ASSIGN_OR_RETURN(std::string type, TypeOf(json, kSection, what));
  const std::string field_what = StrCat(what, ": normalizer ", type);
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const Json* list, ArrayMember(json, "normalizers", kSection, what));
    for (const Json& item : *list) {
      RETURN_IF_ERROR(CheckNotSequence(item, kSection, what));
      RETURN_IF_ERROR(Parse(item, what, steps));
    }
  } else if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prefix, JsonString(json, "prepend", field_what));
    steps->push_back(Step{Kind::kPrepend, std::move(prefix), "", NormalForm::kNfc});
  } else if (type == "Replace") {
    ASSIGN_OR_RETURN(auto pattern, ParsePattern(json, "normalizer Replace", what));
    if (pattern.first) {
      return Invalid(what, StrCat("normalizer Replace: regex pattern '", pattern.second,
                                  "' is not supported"));
    }
    if (pattern.second.empty()) return Invalid(what, "normalizer Replace: empty pattern");
    ASSIGN_OR_RETURN(std::string content, JsonString(json, "content", field_what));
    steps->push_back(
        Step{Kind::kReplace, std::move(pattern.second), std::move(content), NormalForm::kNfc});
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    const NormalForm form = type == "NFC"    ? NormalForm::kNfc
                            : type == "NFD"  ? NormalForm::kNfd
                            : type == "NFKC" ? NormalForm::kNfkc
                                             : NormalForm::kNfkd;
    steps->push_back(Step{Kind::kUnicode, "", "", form});
  } else {
    return Unsupported(what, kSection, type);
  }
  return absl::OkStatus();
}

std::string Normalizer::Apply(std::string_view text) const {
  std::string s(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kPrepend:
        // tokenizers' Prepend leaves an empty string empty.
        if (!s.empty()) s.insert(0, step.text);
        break;
      case Kind::kReplace:
        s = ReplaceAll(s, step.text, step.replacement);
        break;
      case Kind::kUnicode:
        s = NormalizeUnicode(step.form, s);
        break;
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// PreTokenizer

absl::StatusOr<PreTokenizer> PreTokenizer::FromJson(const Json& json, std::string_view what) {
  PreTokenizer p;
  if (!json.is_null()) RETURN_IF_ERROR(Parse(json, what, &p.steps_));
  return p;
}

absl::Status PreTokenizer::Parse(const Json& json, std::string_view what,
                                 std::vector<Step>* steps) {
  constexpr std::string_view kSection = "pre_tokenizer";
  ASSIGN_OR_RETURN(std::string type, TypeOf(json, kSection, what));
  const std::string field_what = StrCat(what, ": pre_tokenizer ", type);
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const Json* list, ArrayMember(json, "pretokenizers", kSection, what));
    for (const Json& item : *list) {
      RETURN_IF_ERROR(CheckNotSequence(item, kSection, what));
      RETURN_IF_ERROR(Parse(item, what, steps));
    }
  } else if (type == "Split") {
    ASSIGN_OR_RETURN(Step step, ParseSplit(json, what));
    steps->push_back(std::move(step));
  } else if (type == "ByteLevel") {
    Step step{Kind::kByteLevel};
    ASSIGN_OR_RETURN(step.flag, JsonOptionalBool(json, "add_prefix_space", false, field_what));
    ASSIGN_OR_RETURN(step.use_regex, JsonOptionalBool(json, "use_regex", true, field_what));
    steps->push_back(std::move(step));
  } else if (type == "Metaspace") {
    ASSIGN_OR_RETURN(Step step, ParseMetaspace(json, what));
    steps->push_back(std::move(step));
  } else {
    return Unsupported(what, kSection, type);
  }
  return absl::OkStatus();
}

absl::StatusOr<PreTokenizer::Step> PreTokenizer::ParseSplit(const Json& json,
                                                            std::string_view what) {
  ASSIGN_OR_RETURN(auto pattern, ParsePattern(json, "pre_tokenizer Split", what));
  ASSIGN_OR_RETURN(bool invert,
                   JsonOptionalBool(json, "invert", false, StrCat(what, ": pre_tokenizer Split")));
  if (invert) return Invalid(what, "pre_tokenizer Split: invert=true is not supported");
  Step step{Kind::kSplitString};
  ASSIGN_OR_RETURN(step.behavior, ParseBehavior(json, what));
  if (pattern.first) {
    std::optional<SplitPattern> known = RecognizeSplitPattern(pattern.second);
    if (!known) {
      return Invalid(what, StrCat("pre_tokenizer Split: regex '", pattern.second,
                                  "' is not one of the supported patterns (GPT-2, Llama 3, "
                                  "Qwen2)"));
    }
    step.kind = Kind::kSplitRegex;
    step.pattern = *known;
  } else {
    if (pattern.second.empty()) return Invalid(what, "pre_tokenizer Split: empty pattern");
    step.text = std::move(pattern.second);
  }
  return step;
}

absl::StatusOr<PreTokenizer::Step> PreTokenizer::ParseMetaspace(const Json& json,
                                                                std::string_view what) {
  const std::string field_what = StrCat(what, ": pre_tokenizer Metaspace");
  Step step{Kind::kMetaspace};
  ASSIGN_OR_RETURN(step.text, JsonOptionalString(json, "replacement", "\xE2\x96\x81", field_what));
  RETURN_IF_ERROR(SingleChar(step.text, "pre_tokenizer Metaspace replacement", what).status());
  ASSIGN_OR_RETURN(step.flag, JsonOptionalBool(json, "split", true, field_what));
  // Older files say add_prefix_space instead of prepend_scheme.
  ASSIGN_OR_RETURN(bool add_prefix_space,
                   JsonOptionalBool(json, "add_prefix_space", true, field_what));
  ASSIGN_OR_RETURN(std::string scheme,
                   JsonOptionalString(json, "prepend_scheme", add_prefix_space ? "always" : "never",
                                      field_what));
  if (scheme == "always") {
    step.prepend = Prepend::kAlways;
  } else if (scheme == "first") {
    step.prepend = Prepend::kFirst;
  } else if (scheme == "never") {
    step.prepend = Prepend::kNever;
  } else {
    return Invalid(what, StrCat("pre_tokenizer Metaspace: unknown prepend_scheme '", scheme, "'"));
  }
  return step;
}

void PreTokenizer::Apply(std::string_view segment, bool at_text_start,
                         std::vector<std::string>* words) const {
  if (steps_.empty()) {
    if (!segment.empty()) words->emplace_back(segment);
    return;
  }
  std::vector<std::string> pieces{std::string(segment)};
  std::vector<std::string> next;
  for (const Step& step : steps_) {
    next.clear();
    for (size_t i = 0; i < pieces.size(); ++i) {
      ApplyStep(step, pieces[i], at_text_start && i == 0, &next);
    }
    pieces.swap(next);
  }
  for (std::string& p : pieces) {
    if (!p.empty()) words->push_back(std::move(p));
  }
}

void PreTokenizer::ApplyStep(const Step& step, std::string_view piece, bool at_text_start,
                             std::vector<std::string>* out) const {
  switch (step.kind) {
    case Kind::kSplitRegex:
    case Kind::kSplitString: {
      std::vector<Span> spans;
      if (step.kind == Kind::kSplitString) {
        spans = LiteralSpans(piece, step.text);
      } else {
        std::vector<std::string_view> matches;
        SplitByPattern(step.pattern, piece, &matches);
        for (std::string_view m : matches) {
          const auto begin = static_cast<size_t>(m.data() - piece.data());
          spans.push_back({begin, begin + m.size(), true});
        }
      }
      AppendSpans(piece, spans, step.behavior, out);
      return;
    }
    case Kind::kByteLevel: {
      std::string text(piece);
      if (step.flag && (text.empty() || text[0] != ' ')) text.insert(0, " ");
      std::vector<std::string_view> parts;
      if (step.use_regex) {
        SplitByPattern(SplitPattern::kGpt2, text, &parts);
      } else {
        parts.push_back(text);
      }
      const auto& alphabet = ByteLevelAlphabet();
      for (std::string_view part : parts) {
        std::string mapped;
        mapped.reserve(part.size() * 2);
        for (char c : part) mapped.append(alphabet[static_cast<uint8_t>(c)]);
        out->push_back(std::move(mapped));
      }
      return;
    }
    case Kind::kMetaspace: {
      std::string text = ReplaceAll(piece, " ", step.text);
      const bool prepend =
          step.prepend == Prepend::kAlways || (step.prepend == Prepend::kFirst && at_text_start);
      if (prepend && text.compare(0, step.text.size(), step.text) != 0) {
        text.insert(0, step.text);
      }
      if (step.flag) {
        AppendSpans(text, LiteralSpans(text, step.text), SplitBehavior::kMergedWithNext, out);
      } else {
        out->push_back(std::move(text));
      }
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decoder

absl::StatusOr<Decoder> Decoder::FromJson(const Json& json, std::string_view what) {
  Decoder d;
  if (!json.is_null()) RETURN_IF_ERROR(Parse(json, what, &d.steps_));
  return d;
}

absl::Status Decoder::Parse(const Json& json, std::string_view what, std::vector<Step>* steps) {
  constexpr std::string_view kSection = "decoder";
  ASSIGN_OR_RETURN(std::string type, TypeOf(json, kSection, what));
  const std::string field_what = StrCat(what, ": decoder ", type);
  Step step{Kind::kFuse};
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const Json* list, ArrayMember(json, "decoders", kSection, what));
    for (const Json& item : *list) {
      RETURN_IF_ERROR(CheckNotSequence(item, kSection, what));
      RETURN_IF_ERROR(Parse(item, what, steps));
    }
    return absl::OkStatus();
  } else if (type == "Replace") {
    ASSIGN_OR_RETURN(auto pattern, ParsePattern(json, "decoder Replace", what));
    if (pattern.first || pattern.second.empty()) {
      return Invalid(what, StrCat("decoder Replace: pattern '", pattern.second,
                                  "' is not a non-empty string pattern"));
    }
    step.kind = Kind::kReplace;
    step.from = std::move(pattern.second);
    ASSIGN_OR_RETURN(step.to, JsonString(json, "content", field_what));
  } else if (type == "ByteFallback") {
    step.kind = Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = Kind::kStrip;
    ASSIGN_OR_RETURN(std::string content, JsonString(json, "content", field_what));
    ASSIGN_OR_RETURN(step.strip_char, SingleChar(content, "decoder Strip content", what));
    ASSIGN_OR_RETURN(step.strip_start, JsonOptionalInt(json, "start", 0, field_what));
    ASSIGN_OR_RETURN(step.strip_stop, JsonOptionalInt(json, "stop", 0, field_what));
    if (step.strip_start < 0 || step.strip_stop < 0) {
      return Invalid(what, "decoder Strip: start and stop must not be negative");
    }
  } else if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
  } else if (type == "Metaspace") {
    step.kind = Kind::kMetaspace;
    ASSIGN_OR_RETURN(step.from,
                     JsonOptionalString(json, "replacement", "\xE2\x96\x81", field_what));
    RETURN_IF_ERROR(SingleChar(step.from, "decoder Metaspace replacement", what).status());
    ASSIGN_OR_RETURN(bool add_prefix_space,
                     JsonOptionalBool(json, "add_prefix_space", true, field_what));
    ASSIGN_OR_RETURN(std::string scheme,
                     JsonOptionalString(json, "prepend_scheme",
                                        add_prefix_space ? "always" : "never", field_what));
    step.prepend_never = scheme == "never";
  } else {
    return Unsupported(what, kSection, type);
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

bool Decoder::byte_level() const {
  return std::any_of(steps_.begin(), steps_.end(),
                     [](const Step& s) { return s.kind == Kind::kByteLevel; });
}

std::string Decoder::Decode(std::vector<std::string> tokens) const {
  std::string out;
  if (steps_.empty()) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out.push_back(' ');
      out.append(tokens[i]);
    }
    return out;
  }
  for (const Step& step : steps_) ApplyStep(step, &tokens);
  for (const std::string& t : tokens) out.append(t);
  return out;
}

void Decoder::ApplyStep(const Step& step, std::vector<std::string>* tokens_ptr) {
  std::vector<std::string>& tokens = *tokens_ptr;
  switch (step.kind) {
    case Kind::kReplace:
      for (std::string& t : tokens) t = ReplaceAll(t, step.from, step.to);
      return;
    case Kind::kByteFallback:
      FuseByteFallbackRuns(&tokens);
      return;
    case Kind::kFuse: {
      std::string all;
      for (const std::string& t : tokens) all.append(t);
      tokens.assign(1, std::move(all));
      return;
    }
    case Kind::kStrip:
      for (std::string& t : tokens) {
        std::string c;
        AppendUtf8(step.strip_char, &c);
        size_t begin = 0;
        for (int64_t i = 0; i < step.strip_start && t.compare(begin, c.size(), c) == 0; ++i) {
          begin += c.size();
        }
        size_t end = t.size();
        for (int64_t i = 0; i < step.strip_stop && end >= begin + c.size() &&
                            t.compare(end - c.size(), c.size(), c) == 0;
             ++i) {
          end -= c.size();
        }
        t = t.substr(begin, end - begin);
      }
      return;
    case Kind::kByteLevel:
      tokens.assign(1, ByteLevelToText(tokens));
      return;
    case Kind::kMetaspace:
      for (size_t i = 0; i < tokens.size(); ++i) {
        const bool drop = i == 0 && !step.prepend_never;
        tokens[i] = ReplaceAll(tokens[i], step.from, drop ? "" : " ");
      }
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Post-processor

absl::StatusOr<SpecialTokensTemplate> SpecialTokensTemplate::FromJson(const Json& json,
                                                                      std::string_view what) {
  SpecialTokensTemplate result;
  if (json.is_null()) return result;
  constexpr std::string_view kSection = "post_processor";
  ASSIGN_OR_RETURN(std::string type, TypeOf(json, kSection, what));
  if (type == "ByteLevel") return result;  // only adjusts offsets
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const Json* list, ArrayMember(json, "processors", kSection, what));
    for (const Json& item : *list) {
      RETURN_IF_ERROR(CheckNotSequence(item, kSection, what));
      ASSIGN_OR_RETURN(SpecialTokensTemplate part, FromJson(item, what));
      result.prefix.insert(result.prefix.end(), part.prefix.begin(), part.prefix.end());
      result.suffix.insert(result.suffix.begin(), part.suffix.begin(), part.suffix.end());
    }
    return result;
  }
  if (type != "TemplateProcessing") return Unsupported(what, kSection, type);
  ASSIGN_OR_RETURN(const Json* single, ArrayMember(json, "single", kSection, what));
  auto specials = json.find("special_tokens");
  bool seen_sequence = false;
  for (const Json& item : *single) {
    if (item.is_object() && item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const Json* ref =
        item.is_object() && item.contains("SpecialToken") ? &item["SpecialToken"] : nullptr;
    if (ref == nullptr || !ref->is_object() || !ref->contains("id") || !(*ref)["id"].is_string()) {
      return Invalid(what,
                     "post_processor TemplateProcessing: single: expected items "
                     "{\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": ...}");
    }
    const std::string& name = (*ref)["id"].get_ref<const std::string&>();
    const Json* entry = nullptr;
    if (specials != json.end() && specials->is_object() && specials->contains(name)) {
      entry = &(*specials)[name];
    }
    if (entry == nullptr || !entry->is_object() || !entry->contains("ids") ||
        !(*entry)["ids"].is_array()) {
      return Invalid(what, StrCat("post_processor TemplateProcessing: special token '", name,
                                  "' has no entry with 'ids' in special_tokens"));
    }
    for (const Json& id : (*entry)["ids"]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return Invalid(what, StrCat("post_processor TemplateProcessing: special token '", name,
                                    "': ids must be non-negative integers"));
      }
      (seen_sequence ? result.suffix : result.prefix).push_back(id.get<int32_t>());
    }
  }
  return result;
}

}  // namespace strata::engine::tokenizer_internal
