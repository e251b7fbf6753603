#include "engine/tokenizer_regex.h"

#include <cstdint>

#include "engine/tokenizer_unicode.h"

namespace strata::engine::tokenizer_internal {
namespace {

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The text as code points with their classes; index n is one past the end. Each method below
// is one regex construct; a match function returns the end index, or `start` for no match.
class Matcher {
 public:
  explicit Matcher(std::string_view text) {
    for (size_t pos = 0; pos < text.size();) {
      Utf8Unit u = DecodeUtf8(text, pos);
      offsets_.push_back(static_cast<uint32_t>(pos));
      code_points_.push_back(u.valid ? u.code_point : 0xFFFD);
      classes_.push_back(u.valid ? ClassifyCodePoint(u.code_point) : 0);
      pos += u.length_bytes;
    }
    offsets_.push_back(static_cast<uint32_t>(text.size()));
  }

  size_t size() const { return classes_.size(); }
  uint32_t offset(size_t i) const { return offsets_[i]; }

  // One Oniguruma match of the pattern starting exactly at i (i < size()).
  size_t MatchLlama3Family(size_t i, size_t max_digits) const {
    size_t end = Contraction(i, /*ignore_case=*/true);
    if (end > i) return end;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    size_t j = (!Is(i, kClassNewline | kClassLetter | kClassNumber) && Is(i + 1, kClassLetter))
                   ? i + 1
                   : i;
    if (Is(j, kClassLetter)) return RunEnd(j, kClassLetter);
    // \p{N}{1,max_digits}
    if (Is(i, kClassNumber)) {
      for (j = i; j < size() && j - i < max_digits && Is(j, kClassNumber);) ++j;
      return j;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    j = (code_points_[i] == ' ' && IsSymbol(i + 1)) ? i + 1 : i;
    if (IsSymbol(j)) {
      while (IsSymbol(j)) ++j;
      return RunEnd(j, kClassNewline);
    }
    // \s*[\r\n]+ ends after the last newline of the whitespace run.
    const size_t run_end = RunEnd(i, kClassSpace);
    for (size_t k = run_end; k > i; --k) {
      if (Is(k - 1, kClassNewline)) return k;
    }
    return WhitespaceTail(i, run_end);
  }

  size_t MatchGpt2(size_t i) const {
    size_t end = Contraction(i, /*ignore_case=*/false);
    if (end > i) return end;
    // ' ?\p{L}+', ' ?\p{N}+'
    for (uint8_t cls : {kClassLetter, kClassNumber}) {
      size_t j = (code_points_[i] == ' ' && Is(i + 1, cls)) ? i + 1 : i;
      if (Is(j, cls)) return RunEnd(j, cls);
    }
    // ' ?[^\s\p{L}\p{N}]+'
    size_t j = (code_points_[i] == ' ' && IsSymbol(i + 1)) ? i + 1 : i;
    if (IsSymbol(j)) {
      while (IsSymbol(j)) ++j;
      return j;
    }
    return WhitespaceTail(i, RunEnd(i, kClassSpace));
  }

 private:
  bool Is(size_t i, uint8_t cls) const { return i < size() && (classes_[i] & cls) != 0; }
  // [^\s\p{L}\p{N}]
  bool IsSymbol(size_t i) const {
    return i < size() && (classes_[i] & (kClassSpace | kClassLetter | kClassNumber)) == 0;
  }
  size_t RunEnd(size_t i, uint8_t cls) const {
    while (Is(i, cls)) ++i;
    return i;
  }
  char32_t AsciiLower(size_t i, bool ignore_case) const {
    if (i >= size()) return 0;
    char32_t c = code_points_[i];
    return (ignore_case && c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
  }
  // 's|'t|'re|'ve|'m|'ll|'d: no alternative is a prefix of another, so order does not matter.
  size_t Contraction(size_t i, bool ignore_case) const {
    if (code_points_[i] != '\'') return i;
    const char32_t c1 = AsciiLower(i + 1, ignore_case);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
    const char32_t c2 = AsciiLower(i + 2, ignore_case);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
      return i + 3;
    }
    return i;
  }
  // \s+(?!\S)|\s+ over the whitespace run [i, run_end): the run minus its last character when
  // a non-space follows (that character then leads the next word), else the whole run.
  size_t WhitespaceTail(size_t i, size_t run_end) const {
    if (run_end == i) return i + 1;  // unreachable: every character is in some class above
    if (run_end == size() || run_end - i == 1) return run_end;
    return run_end - 1;
  }

  std::vector<uint32_t> offsets_;
  std::vector<char32_t> code_points_;
  std::vector<uint8_t> classes_;
};

}  // namespace

std::optional<SplitPattern> RecognizeSplitPattern(std::string_view regex) {
  if (regex == kGpt2Pattern) return SplitPattern::kGpt2;
  if (regex == kLlama3Pattern) return SplitPattern::kLlama3;
  if (regex == kQwen2Pattern) return SplitPattern::kQwen2;
  return std::nullopt;
}

void SplitByPattern(SplitPattern pattern, std::string_view text,
                    std::vector<std::string_view>* pieces) {
  const Matcher m(text);
  for (size_t i = 0; i < m.size();) {
    size_t end = i + 1;
    switch (pattern) {
      case SplitPattern::kGpt2:
        end = m.MatchGpt2(i);
        break;
      case SplitPattern::kLlama3:
        end = m.MatchLlama3Family(i, 3);
        break;
      case SplitPattern::kQwen2:
        end = m.MatchLlama3Family(i, 1);
        break;
    }
    pieces->push_back(text.substr(m.offset(i), m.offset(end) - m.offset(i)));
    i = end;
  }
}

}  // namespace strata::engine::tokenizer_internal
