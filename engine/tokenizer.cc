#include "engine/tokenizer.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <limits>
#include <unordered_map>

#include "common/file.h"
#include "common/json.h"
#include "engine/tokenizer_bpe.h"
#include "engine/tokenizer_pipeline.h"
#include "engine/tokenizer_unicode.h"

namespace strata::engine {

using tokenizer_internal::BpeModel;
using tokenizer_internal::Decoder;
using tokenizer_internal::Normalizer;
using tokenizer_internal::PreTokenizer;
using tokenizer_internal::SpecialTokensTemplate;

namespace {

constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

absl::Status Invalid(std::string_view what, std::string_view problem) {
  return absl::InvalidArgumentError(StrCat(what, ": ", problem));
}

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;  // swallows the whitespace before it
  bool rstrip = false;  // swallows the whitespace after it
  bool single_word = false;
};

// A piece of the input: either an added token or text for the normal pipeline.
struct Segment {
  std::string_view text;
  int32_t added_index;  // into Impl::added, -1 for plain text
};

// What tokenizer_config.json says about bos/eos; unset fields fall back to tokenizer.json.
struct ConfigTokens {
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
};

// "bos_token": "<s>" or the AddedToken form {"content": "<s>", ...} or null.
absl::StatusOr<std::optional<std::string>> ConfigToken(const Json& config, const char* key,
                                                       std::string_view what) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_object()) {
    ASSIGN_OR_RETURN(std::string content, JsonString(*it, "content", StrCat(what, ": ", key)));
    return std::optional<std::string>(std::move(content));
  }
  return Invalid(what, StrCat("key '", key, "': expected a string or {\"content\": ...}"));
}

absl::StatusOr<ConfigTokens> ParseConfig(std::string_view text, std::string_view what) {
  ConfigTokens tokens;
  if (text.empty()) return tokens;
  ASSIGN_OR_RETURN(Json config, ParseJson(text, what));
  if (!config.is_object()) return Invalid(what, "expected a JSON object");
  ASSIGN_OR_RETURN(tokens.bos_token, ConfigToken(config, "bos_token", what));
  ASSIGN_OR_RETURN(tokens.eos_token, ConfigToken(config, "eos_token", what));
  for (auto [key, field] : {std::pair{"add_bos_token", &tokens.add_bos_token},
                            std::pair{"add_eos_token", &tokens.add_eos_token}}) {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) continue;
    ASSIGN_OR_RETURN(*field, JsonOptionalBool(config, key, false, what));
  }
  return tokens;
}

absl::StatusOr<AddedToken> ParseAddedToken(const Json& item, size_t index, std::string_view what) {
  const std::string item_what = StrCat(what, ": added_tokens[", index, "]");
  if (!item.is_object()) return Invalid(item_what, "expected an object");
  AddedToken t;
  ASSIGN_OR_RETURN(int64_t id, JsonInt(item, "id", item_what));
  if (id < 0 || id > std::numeric_limits<int32_t>::max() - 1) {
    return Invalid(item_what, StrCat("id ", id, " is out of range"));
  }
  t.id = static_cast<int32_t>(id);
  ASSIGN_OR_RETURN(t.content, JsonString(item, "content", item_what));
  if (t.content.empty()) return Invalid(item_what, "empty content");
  ASSIGN_OR_RETURN(t.special, JsonOptionalBool(item, "special", false, item_what));
  ASSIGN_OR_RETURN(t.lstrip, JsonOptionalBool(item, "lstrip", false, item_what));
  ASSIGN_OR_RETURN(t.rstrip, JsonOptionalBool(item, "rstrip", false, item_what));
  ASSIGN_OR_RETURN(t.single_word, JsonOptionalBool(item, "single_word", false, item_what));
  return t;
}

// The start of the character that ends just before `pos`.
size_t PrevCharStart(std::string_view s, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && pos - start < 4 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) {
    --start;
  }
  return start;
}

bool IsWordChar(const tokenizer_internal::Utf8Unit& u) {
  using tokenizer_internal::ClassifyCodePoint;
  return u.valid && (u.code_point == '_' ||
                     (ClassifyCodePoint(u.code_point) &
                      (tokenizer_internal::kClassLetter | tokenizer_internal::kClassNumber)));
}

bool EndsWithReplacement(std::string_view s) {
  return s.size() >= kReplacementUtf8.size() &&
         s.substr(s.size() - kReplacementUtf8.size()) == kReplacementUtf8;
}

}  // namespace

struct Tokenizer::Impl {
  std::unique_ptr<BpeModel> bpe;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  Decoder decoder;
  std::vector<AddedToken> added;
  std::unordered_map<int32_t, size_t> added_by_id;
  tokenizer_internal::StringMap<int32_t> added_by_content;
  // Added tokens matched in input text, by first byte, longest first. Empty for Synthetic.
  std::array<std::vector<size_t>, 256> match_index;
  std::vector<int32_t> prefix_ids;  // added by add_special_tokens
  std::vector<int32_t> suffix_ids;
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  int64_t vocab_size = 0;
  uint64_t fingerprint = 0;

  absl::Status AddTokens(const Json& list, std::string_view what);
  void BuildMatchIndex();
  absl::Status ApplyConfig(const ConfigTokens& config, const SpecialTokensTemplate& tmpl,
                           std::string_view what, std::string_view config_what);
  absl::StatusOr<int32_t> ConfigTokenId(const std::string& token, const char* key,
                                        std::string_view config_what) const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  const AddedToken* FindAdded(int32_t id) const;
  void SplitOnAddedTokens(std::string_view text, std::vector<Segment>* out) const;
  // The added token matching at `pos`, with the match widened by lstrip/rstrip; -1 if none.
  int64_t MatchAt(std::string_view text, size_t pos, size_t floor, size_t* begin,
                  size_t* end) const;
};

absl::Status Tokenizer::Impl::AddTokens(const Json& list, std::string_view what) {
  if (!list.is_array()) return Invalid(what, "added_tokens: expected an array");
  for (size_t i = 0; i < list.size(); ++i) {
    ASSIGN_OR_RETURN(AddedToken t, ParseAddedToken(list[i], i, what));
    added_by_id[t.id] = added.size();
    added_by_content[t.content] = t.id;
    vocab_size = std::max<int64_t>(vocab_size, int64_t{t.id} + 1);
    added.push_back(std::move(t));
  }
  BuildMatchIndex();
  return absl::OkStatus();
}

void Tokenizer::Impl::BuildMatchIndex() {
  for (size_t i = 0; i < added.size(); ++i) {
    match_index[static_cast<uint8_t>(added[i].content[0])].push_back(i);
  }
  for (auto& candidates : match_index) {
    std::stable_sort(candidates.begin(), candidates.end(), [this](size_t a, size_t b) {
      return added[a].content.size() > added[b].content.size();
    });
  }
}

absl::StatusOr<int32_t> Tokenizer::Impl::ConfigTokenId(const std::string& token, const char* key,
                                                       std::string_view config_what) const {
  std::optional<int32_t> id = TokenToId(token);
  if (!id) {
    return Invalid(config_what, StrCat(key, " '", token, "' is not in the tokenizer's vocabulary"));
  }
  return *id;
}

absl::Status Tokenizer::Impl::ApplyConfig(const ConfigTokens& config,
                                          const SpecialTokensTemplate& tmpl, std::string_view what,
                                          std::string_view config_what) {
  for (int32_t id : tmpl.prefix) {
    if (id >= vocab_size) return Invalid(what, StrCat("post_processor: id ", id, " is unknown"));
  }
  for (int32_t id : tmpl.suffix) {
    if (id >= vocab_size) return Invalid(what, StrCat("post_processor: id ", id, " is unknown"));
  }
  if (config.bos_token) {
    ASSIGN_OR_RETURN(bos_id, ConfigTokenId(*config.bos_token, "bos_token", config_what));
  } else if (!tmpl.prefix.empty()) {
    bos_id = tmpl.prefix.front();
  }
  int32_t eos_id = -1;
  if (config.eos_token) {
    ASSIGN_OR_RETURN(eos_id, ConfigTokenId(*config.eos_token, "eos_token", config_what));
    eos_ids.push_back(eos_id);
  }
  prefix_ids = tmpl.prefix;
  if (config.add_bos_token) {
    if (*config.add_bos_token && bos_id < 0) {
      return Invalid(config_what, "add_bos_token is true but there is no bos_token");
    }
    prefix_ids = *config.add_bos_token ? std::vector<int32_t>{bos_id} : std::vector<int32_t>{};
  }
  suffix_ids = tmpl.suffix;
  if (config.add_eos_token) {
    if (*config.add_eos_token && eos_id < 0) {
      return Invalid(config_what, "add_eos_token is true but there is no eos_token");
    }
    suffix_ids = *config.add_eos_token ? std::vector<int32_t>{eos_id} : std::vector<int32_t>{};
  }
  return absl::OkStatus();
}

std::optional<int32_t> Tokenizer::Impl::TokenToId(std::string_view token) const {
  auto it = added_by_content.find(token);
  if (it != added_by_content.end()) return it->second;
  return bpe->TokenToId(token);
}

const AddedToken* Tokenizer::Impl::FindAdded(int32_t id) const {
  auto it = added_by_id.find(id);
  return it == added_by_id.end() ? nullptr : &added[it->second];
}

int64_t Tokenizer::Impl::MatchAt(std::string_view text, size_t pos, size_t floor, size_t* begin,
                                 size_t* end) const {
  using tokenizer_internal::DecodeUtf8;
  using tokenizer_internal::IsWhiteSpace;
  for (size_t index : match_index[static_cast<uint8_t>(text[pos])]) {
    const AddedToken& t = added[index];
    if (text.compare(pos, t.content.size(), t.content) != 0) continue;
    *begin = pos;
    *end = pos + t.content.size();
    if (t.single_word) {
      const bool word_before =
          *begin > 0 && IsWordChar(DecodeUtf8(text, PrevCharStart(text, *begin)));
      const bool word_after = *end < text.size() && IsWordChar(DecodeUtf8(text, *end));
      if (word_before || word_after) continue;
    }
    while (t.lstrip && *begin > floor) {
      const size_t prev = std::max(PrevCharStart(text, *begin), floor);
      auto u = DecodeUtf8(text, prev);
      if (!u.valid || prev + u.length_bytes != *begin || !IsWhiteSpace(u.code_point)) break;
      *begin = prev;
    }
    while (t.rstrip && *end < text.size()) {
      auto u = DecodeUtf8(text, *end);
      if (!u.valid || !IsWhiteSpace(u.code_point)) break;
      *end += u.length_bytes;
    }
    return static_cast<int64_t>(index);
  }
  return -1;
}

void Tokenizer::Impl::SplitOnAddedTokens(std::string_view text, std::vector<Segment>* out) const {
  size_t segment_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t begin;
    size_t end;
    const int64_t index = MatchAt(text, pos, segment_start, &begin, &end);
    if (index < 0) {
      ++pos;
      continue;
    }
    if (begin > segment_start) {
      out->push_back({text.substr(segment_start, begin - segment_start), -1});
    }
    out->push_back({text.substr(begin, end - begin), static_cast<int32_t>(index)});
    pos = segment_start = end;
  }
  if (segment_start < text.size()) out->push_back({text.substr(segment_start), -1});
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFiles(
    const std::string& tokenizer_json_path, const std::string& tokenizer_config_path) {
  ASSIGN_OR_RETURN(std::string json, ReadFile(tokenizer_json_path));
  std::string config;
  if (!tokenizer_config_path.empty() && FileExists(tokenizer_config_path)) {
    ASSIGN_OR_RETURN(config, ReadFile(tokenizer_config_path));
    if (config.empty()) return Invalid(tokenizer_config_path, "empty file");
  }
  return FromJsonText(json, config, tokenizer_json_path, tokenizer_config_path);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJsonText(std::string_view json,
                                                                   std::string_view config_json,
                                                                   std::string_view what,
                                                                   std::string_view config_what) {
  const std::string config_name =
      config_what.empty() ? StrCat(what, " (tokenizer_config.json)") : std::string(config_what);
  ASSIGN_OR_RETURN(Json root, ParseJson(json, what));
  if (!root.is_object()) return Invalid(what, "expected a JSON object");
  auto model = root.find("model");
  if (model == root.end() || !model->is_object()) {
    return Invalid(what, "missing 'model' object");
  }
  auto type = model->find("type");
  const bool is_bpe =
      type == model->end() ? model->contains("merges") : (type->is_string() && *type == "BPE");
  if (!is_bpe) {
    return Invalid(what, StrCat("model type ", type == model->end() ? "(none)" : type->dump(),
                                " is not supported (only BPE)"));
  }
  static const Json kNull;
  auto member = [&root](const char* key) -> const Json& {
    auto it = root.find(key);
    return it == root.end() ? kNull : *it;
  };
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(impl->bpe, BpeModel::FromJson(*model, what));
  impl->vocab_size = impl->bpe->num_ids();
  if (!member("added_tokens").is_null())
    RETURN_IF_ERROR(impl->AddTokens(member("added_tokens"), what));
  ASSIGN_OR_RETURN(impl->normalizer, Normalizer::FromJson(member("normalizer"), what));
  ASSIGN_OR_RETURN(impl->pre_tokenizer, PreTokenizer::FromJson(member("pre_tokenizer"), what));
  ASSIGN_OR_RETURN(impl->decoder, Decoder::FromJson(member("decoder"), what));
  ASSIGN_OR_RETURN(SpecialTokensTemplate tmpl,
                   SpecialTokensTemplate::FromJson(member("post_processor"), what));
  ASSIGN_OR_RETURN(ConfigTokens config, ParseConfig(config_json, config_name));
  RETURN_IF_ERROR(impl->ApplyConfig(config, tmpl, what, config_name));
  impl->fingerprint = XXH3_64bits_withSeed(config_json.data(), config_json.size(),
                                           XXH3_64bits(json.data(), json.size()));
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

std::unique_ptr<Tokenizer> Tokenizer::Synthetic(int64_t vocab_size) {
  CHECK(vocab_size >= 258 && vocab_size <= std::numeric_limits<int32_t>::max());
  const auto& alphabet = tokenizer_internal::ByteLevelAlphabet();
  std::vector<std::string> tokens(alphabet.begin(), alphabet.end());
  tokens.push_back("<s>");
  tokens.push_back("</s>");
  for (int64_t id = 258; id < vocab_size; ++id) {
    tokens.push_back(StrCat(alphabet[' '], "w", id));
  }
  auto impl = std::make_unique<Impl>();
  impl->bpe = BpeModel::FromVocab(std::move(tokens));
  impl->vocab_size = vocab_size;
  // The specials exist for Decode/IsSpecial but are never matched in text (no match index).
  for (int32_t id : {256, 257}) {
    impl->added_by_id[id] = impl->added.size();
    impl->added.push_back(AddedToken{id, id == 256 ? "<s>" : "</s>", /*special=*/true});
  }
  const Json byte_level_pre = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  impl->pre_tokenizer = PreTokenizer::FromJson(byte_level_pre, "synthetic").value();
  impl->decoder = Decoder::FromJson(Json{{"type", "ByteLevel"}}, "synthetic").value();
  impl->prefix_ids = {256};
  impl->bos_id = 256;
  impl->eos_ids = {257};
  const std::string definition = StrCat("synthetic:", vocab_size);
  impl->fingerprint = XXH3_64bits(definition.data(), definition.size());
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  const Impl& p = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids = p.prefix_ids;
  std::vector<Segment> segments;
  p.SplitOnAddedTokens(text, &segments);
  std::vector<std::string> words;
  for (const Segment& s : segments) {
    if (s.added_index >= 0) {
      ids.push_back(p.added[s.added_index].id);
      continue;
    }
    words.clear();
    p.pre_tokenizer.Apply(p.normalizer.Apply(s.text), s.text.data() == text.data(), &words);
    for (const std::string& w : words) p.bpe->Tokenize(w, &ids);
  }
  if (add_special_tokens) ids.insert(ids.end(), p.suffix_ids.begin(), p.suffix_ids.end());
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& p = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (const AddedToken* a = p.FindAdded(id)) {
      if (!(skip_special_tokens && a->special)) tokens.push_back(a->content);
    } else if (const std::string* t = p.bpe->IdToToken(id)) {
      tokens.push_back(*t);
    }
  }
  return p.decoder.Decode(std::move(tokens));
}

int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
int32_t Tokenizer::bos_id() const { return impl_->bos_id; }
const std::vector<int32_t>& Tokenizer::eos_ids() const { return impl_->eos_ids; }
uint64_t Tokenizer::fingerprint() const { return impl_->fingerprint; }

bool Tokenizer::IsSpecial(int32_t id) const {
  const AddedToken* a = impl_->FindAdded(id);
  return a != nullptr && a->special;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  return impl_->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* a = impl_->FindAdded(id)) return a->content;
  if (const std::string* t = impl_->bpe->IdToToken(id)) return *t;
  return std::nullopt;
}

bool Tokenizer::StartsMidCharacter(int32_t id) const {
  std::optional<std::string> token = IdToToken(id);
  if (!token || token->empty()) return false;
  int byte = tokenizer_internal::ByteFallbackValue(*token);
  if (byte < 0 && impl_->decoder.byte_level()) {
    auto u = tokenizer_internal::DecodeUtf8(*token, 0);
    byte = u.valid ? tokenizer_internal::CodePointToByte(u.code_point) : -1;
  }
  return byte >= 0 && (byte & 0xC0) == 0x80;
}

// ---------------------------------------------------------------------------------------------
// IncrementalDecoder

namespace {
// Prompt tokens kept as context for the first chunk (vLLM's initial offset).
constexpr size_t kPromptContextTokens = 5;
// A character spans at most 4 tokens; text still ending in U+FFFD after this many held tokens
// is genuinely invalid and is emitted rather than held forever.
constexpr size_t kMaxHeldTokens = 8;
}  // namespace

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tok, std::span<const int32_t> prompt_ids,
                                       bool skip_special_tokens)
    : tok_(tok), skip_special_tokens_(skip_special_tokens) {
  // Skipped specials decode to nothing, so they are left out of the window altogether.
  size_t start = prompt_ids.size();
  size_t kept = 0;
  while (start > 0 && kept < kPromptContextTokens) {
    if (!Skipped(prompt_ids[--start])) ++kept;
  }
  // Never start inside a character split over byte tokens: that prefix would decode to U+FFFD
  // differently once the window grows.
  for (int i = 0; i < 3 && start > 0 && tok_.StartsMidCharacter(prompt_ids[start]); ++i) --start;
  for (size_t i = start; i < prompt_ids.size(); ++i) {
    if (!Skipped(prompt_ids[i])) window_.push_back(prompt_ids[i]);
  }
  read_offset_ = window_.size();
  prefix_text_ = DecodeWindow(read_offset_);
}

bool IncrementalDecoder::Skipped(int32_t id) const {
  return skip_special_tokens_ && tok_.IsSpecial(id);
}

std::string IncrementalDecoder::DecodeWindow(size_t end) const {
  return tok_.Decode(std::span<const int32_t>(window_.data(), end), skip_special_tokens_);
}

std::string IncrementalDecoder::Push(int32_t id) {
  if (Skipped(id)) return "";
  window_.push_back(id);
  std::string text = DecodeWindow(window_.size());
  if (EndsWithReplacement(text) && window_.size() - read_offset_ < kMaxHeldTokens) return "";
  return EmitAndSlide(text);
}

std::string IncrementalDecoder::Flush() {
  if (read_offset_ == window_.size()) return "";
  return EmitAndSlide(DecodeWindow(window_.size()));
}

// Emits `text` (the decoded window) minus the already emitted prefix, then makes the emitted
// tokens the context of the next window.
std::string IncrementalDecoder::EmitAndSlide(const std::string& text) {
  size_t cut = prefix_text_.size();
  if (text.compare(0, cut, prefix_text_) != 0) {
    // The new token changed earlier text (only when the window began with a character cut in
    // two): emit from the first difference, on a character boundary.
    cut =
        std::mismatch(text.begin(), text.begin() + std::min(text.size(), cut), prefix_text_.begin())
            .first -
        text.begin();
    while (cut > 0 && (static_cast<uint8_t>(text[cut]) & 0xC0) == 0x80) --cut;
  }
  std::string chunk = text.substr(std::min(cut, text.size()));
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(read_offset_));
  read_offset_ = window_.size();
  prefix_text_ = DecodeWindow(read_offset_);
  return chunk;
}

}  // namespace strata::engine
