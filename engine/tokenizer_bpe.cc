#include "engine/tokenizer_bpe.h"

#include <algorithm>
#include <limits>
#include <queue>

#include "engine/tokenizer_unicode.h"

namespace strata::engine::tokenizer_internal {
namespace {

absl::Status Invalid(std::string_view what, std::string_view problem) {
  return absl::InvalidArgumentError(StrCat(what, ": ", problem));
}

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// An id we can index a vector with: real vocabularies are dense, so a vocabulary whose ids are
// far sparser than its size is rejected instead of allocating gigabytes.
absl::StatusOr<int32_t> ParseId(const Json& v, size_t num_entries, std::string_view what,
                                std::string_view token) {
  if (!v.is_number_integer()) {
    return Invalid(what, StrCat("model.vocab: the id of '", token, "' is not an integer"));
  }
  const int64_t id = v.get<int64_t>();
  const int64_t limit = 2 * static_cast<int64_t>(num_entries) + 1024;
  if (id < 0 || id >= limit) {
    return Invalid(what, StrCat("model.vocab: id ", v.dump(), " of '", token,
                                "' is negative or far beyond the vocabulary size"));
  }
  return static_cast<int32_t>(id);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const Json& model,
                                                             std::string_view what) {
  std::unique_ptr<BpeModel> bpe(new BpeModel());
  auto vocab = model.find("vocab");
  if (vocab == model.end()) return Invalid(what, "model: missing key 'vocab'");
  RETURN_IF_ERROR(bpe->LoadVocab(*vocab, what));
  auto merges = model.find("merges");
  if (merges != model.end() && !merges->is_null()) {
    RETURN_IF_ERROR(bpe->LoadMerges(*merges, what));
  }
  const std::string model_what = StrCat(what, ": model");
  ASSIGN_OR_RETURN(bpe->fuse_unk_, JsonOptionalBool(model, "fuse_unk", false, model_what));
  ASSIGN_OR_RETURN(bpe->byte_fallback_,
                   JsonOptionalBool(model, "byte_fallback", false, model_what));
  ASSIGN_OR_RETURN(bpe->ignore_merges_,
                   JsonOptionalBool(model, "ignore_merges", false, model_what));
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    ASSIGN_OR_RETURN(std::string affix, JsonOptionalString(model, key, "", model_what));
    if (!affix.empty()) {
      return Invalid(what, StrCat("model.", key, " '", affix,
                                  "' is not supported (Llama/Qwen BPE files have none)"));
    }
  }
  ASSIGN_OR_RETURN(std::string unk, JsonOptionalString(model, "unk_token", "", model_what));
  if (!unk.empty()) {
    std::optional<int32_t> unk_id = bpe->TokenToId(unk);
    if (!unk_id) return Invalid(what, StrCat("model.unk_token '", unk, "' is not in the vocab"));
    bpe->unk_id_ = *unk_id;
  }
  bpe->FinishSetup();
  return bpe;
}

std::unique_ptr<BpeModel> BpeModel::FromVocab(std::vector<std::string> tokens) {
  std::unique_ptr<BpeModel> bpe(new BpeModel());
  bpe->has_token_.assign(tokens.size(), true);
  for (size_t i = 0; i < tokens.size(); ++i) bpe->vocab_.emplace(tokens[i], i);
  bpe->id_to_token_ = std::move(tokens);
  bpe->FinishSetup();
  return bpe;
}

absl::Status BpeModel::LoadVocab(const Json& vocab, std::string_view what) {
  if (!vocab.is_object()) return Invalid(what, "model.vocab: expected an object");
  vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    ASSIGN_OR_RETURN(int32_t id, ParseId(it.value(), vocab.size(), what, it.key()));
    if (static_cast<size_t>(id) >= id_to_token_.size()) {
      id_to_token_.resize(id + 1);
      has_token_.resize(id + 1, false);
    }
    // Two tokens sharing an id: the first keeps the id -> token direction (decoding).
    if (!has_token_[id]) {
      id_to_token_[id] = it.key();
      has_token_[id] = true;
    }
    vocab_.emplace(it.key(), id);
  }
  return absl::OkStatus();
}

absl::Status BpeModel::LoadMerges(const Json& merges, std::string_view what) {
  if (!merges.is_array()) return Invalid(what, "model.merges: expected an array");
  if (merges.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return Invalid(what, "model.merges: too many merges");
  }
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Json& m = merges[rank];
    const auto r = static_cast<int32_t>(rank);
    if (m.is_string()) {
      // The old form "left right": exactly one space, as tokenizers requires.
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return Invalid(what, StrCat("model.merges[", rank, "] '", s,
                                    "' is not two tokens separated by one space"));
      }
      RETURN_IF_ERROR(AddMerge(std::string_view(s).substr(0, space),
                               std::string_view(s).substr(space + 1), r, what));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      RETURN_IF_ERROR(AddMerge(m[0].get_ref<const std::string&>(),
                               m[1].get_ref<const std::string&>(), r, what));
    } else {
      return Invalid(what, StrCat("model.merges[", rank,
                                  "]: expected \"left right\" or [\"left\", \"right\"]"));
    }
  }
  return absl::OkStatus();
}

absl::Status BpeModel::AddMerge(std::string_view left, std::string_view right, int32_t rank,
                                std::string_view what) {
  std::optional<int32_t> l = TokenToId(left);
  std::optional<int32_t> r = TokenToId(right);
  std::string merged = StrCat(left, right);
  std::optional<int32_t> m = TokenToId(merged);
  for (auto [token, id] :
       {std::pair<std::string_view, std::optional<int32_t>>{left, l}, {right, r}, {merged, m}}) {
    if (!id) {
      return Invalid(what, StrCat("model.merges[", rank, "] ('", left, "' + '", right,
                                  "') refers to '", token, "', which is not in the vocab"));
    }
  }
  // A repeated pair takes its last rank, as in tokenizers' HashMap collect.
  merges_.insert_or_assign(PairKey(*l, *r), Merge{rank, *m});
  return absl::OkStatus();
}

void BpeModel::FinishSetup() {
  for (int b = 0; b < 256; ++b) {
    std::optional<int32_t> id = TokenToId(absl::StrFormat("<0x%02X>", b));
    byte_ids_[b] = id.value_or(-1);
  }
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_token_[id]) {
    return nullptr;
  }
  return &id_to_token_[id];
}

const BpeModel::Merge* BpeModel::FindMerge(int32_t left, int32_t right) const {
  auto it = merges_.find(PairKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (std::optional<int32_t> id = TokenToId(word)) {
      ids->push_back(*id);
      return;
    }
  }
  std::vector<Symbol> symbols = InitialSymbols(word);
  ApplyMerges(&symbols);
  for (const Symbol& s : symbols) {
    if (s.len_bytes != 0) ids->push_back(s.id);
  }
}

// One symbol per character; a character missing from the vocab becomes its <0xNN> byte tokens
// (byte_fallback) or unk (consecutive unks fused into one with fuse_unk), else is dropped.
std::vector<BpeModel::Symbol> BpeModel::InitialSymbols(std::string_view word) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](int32_t id, uint32_t len) {
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{id, index - 1, index + 1, len});
  };
  uint32_t pending_unk_bytes = 0;
  auto flush_unk = [&]() {
    if (pending_unk_bytes != 0) add(unk_id_, pending_unk_bytes);
    pending_unk_bytes = 0;
  };
  for (size_t pos = 0; pos < word.size();) {
    const uint32_t len = DecodeUtf8(word, pos).length_bytes;
    const std::string_view ch = word.substr(pos, len);
    pos += len;
    if (std::optional<int32_t> id = TokenToId(ch)) {
      flush_unk();
      add(*id, len);
      continue;
    }
    const bool bytes_known = byte_fallback_ && std::all_of(ch.begin(), ch.end(), [this](char c) {
                               return byte_ids_[static_cast<uint8_t>(c)] >= 0;
                             });
    if (bytes_known) {
      flush_unk();
      for (char c : ch) add(byte_ids_[static_cast<uint8_t>(c)], 1);
    } else if (unk_id_ >= 0) {
      if (!fuse_unk_) flush_unk();
      pending_unk_bytes += len;
    }
  }
  flush_unk();
  if (!symbols.empty()) symbols.back().next = -1;
  return symbols;
}

void BpeModel::ApplyMerges(std::vector<Symbol>* symbols_ptr) const {
  std::vector<Symbol>& symbols = *symbols_ptr;
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  // The queue's top is the lowest rank, then the leftmost position.
  auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
  auto push_pair = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    if (const Merge* m = FindMerge(symbols[pos].id, symbols[next].id)) {
      queue.push(Candidate{m->rank, pos, m->new_id});
    }
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) push_pair(static_cast<int32_t>(i));
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.len_bytes == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Stale entry: the pair at this position changed since it was queued.
    const Merge* current = FindMerge(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;
    left.id = top.new_id;
    left.len_bytes += right.len_bytes;
    left.next = right.next;
    right.len_bytes = 0;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
}

}  // namespace strata::engine::tokenizer_internal
