// The hand-written matchers for the Llama 3 / Qwen2 / GPT-2 pre-tokenizer regexes: exact pieces
// for inputs that exercise every alternative, worked out from Oniguruma's leftmost-first rules.
#include "engine/tokenizer_regex.h"

#include <string>
#include <vector>

#include "engine/tokenizer_unicode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::engine::tokenizer_internal {
namespace {

using ::testing::ElementsAre;

constexpr std::string_view kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::vector<std::string> Split(SplitPattern p, std::string_view text) {
  std::vector<std::string_view> views;
  SplitByPattern(p, text, &views);
  return {views.begin(), views.end()};
}

TEST(TokenizerRegexTest, RecognisesExactlyTheKnownPatterns) {
  EXPECT_EQ(RecognizeSplitPattern(kLlama3), SplitPattern::kLlama3);
  EXPECT_EQ(RecognizeSplitPattern(kQwen2), SplitPattern::kQwen2);
  EXPECT_EQ(RecognizeSplitPattern(kGpt2), SplitPattern::kGpt2);
  EXPECT_EQ(RecognizeSplitPattern(R"(\s+)"), std::nullopt);
  EXPECT_EQ(RecognizeSplitPattern(std::string(kLlama3) + "|x"), std::nullopt);
}

TEST(TokenizerRegexTest, Llama3SplitsTheBriefExample) {
  EXPECT_THAT(Split(SplitPattern::kLlama3, "Hello world 12345 it's\n\n  x"),
              ElementsAre("Hello", " world", " ", "123", "45", " it", "'s", "\n\n", " ", " x"));
}

TEST(TokenizerRegexTest, Qwen2TakesOneDigitPerPiece) {
  EXPECT_THAT(
      Split(SplitPattern::kQwen2, "Hello world 12345 it's\n\n  x"),
      ElementsAre("Hello", " world", " ", "1", "2", "3", "4", "5", " it", "'s", "\n\n", " ", " x"));
}

TEST(TokenizerRegexTest, Gpt2KeepsSpaceWithDigitsAndSplitsSpaceRuns) {
  EXPECT_THAT(Split(SplitPattern::kGpt2, "Hello world 12345 it's\n\n  x"),
              ElementsAre("Hello", " world", " 12345", " it", "'s", "\n\n ", " x"));
}

TEST(TokenizerRegexTest, ContractionsIgnoreCaseOnlyInLlama3) {
  EXPECT_THAT(Split(SplitPattern::kLlama3, "I'M WE'LL"), ElementsAre("I", "'M", " WE", "'LL"));
  EXPECT_THAT(Split(SplitPattern::kGpt2, "I'M we'll"), ElementsAre("I", "'", "M", " we", "'ll"));
}

TEST(TokenizerRegexTest, SymbolsAbsorbFollowingNewlines) {
  EXPECT_THAT(Split(SplitPattern::kLlama3, "a...\n\nb"), ElementsAre("a", "...\n\n", "b"));
  EXPECT_THAT(Split(SplitPattern::kLlama3, "$100 !?"), ElementsAre("$", "100", " !?"));
}

TEST(TokenizerRegexTest, SymbolBeforeLettersJoinsThem) {
  // [^\r\n\p{L}\p{N}]? takes one leading symbol, tab or NBSP, never a newline.
  EXPECT_THAT(Split(SplitPattern::kLlama3, "(hi)\tyo\u00A0ok\nno"),
              ElementsAre("(hi", ")", "\tyo", "\u00A0ok", "\n", "no"));
}

TEST(TokenizerRegexTest, UnicodeLettersAndDigits) {
  // U+0661..U+0664 are Arabic-Indic digits (\p{N}); CJK ideographs are letters.
  EXPECT_THAT(Split(SplitPattern::kLlama3, "día 世界 ١٢٣٤"),
              ElementsAre("día", " 世界", " ", "١٢٣", "٤"));
}

TEST(TokenizerRegexTest, TrailingWhitespaceStaysTogether) {
  EXPECT_THAT(Split(SplitPattern::kLlama3, "x  \t"), ElementsAre("x", "  \t"));
  EXPECT_THAT(Split(SplitPattern::kLlama3, "x \r\n \r\ny"), ElementsAre("x", " \r\n \r\n", "y"));
}

TEST(TokenizerRegexTest, EmojiAndInvalidBytesAreSymbols) {
  EXPECT_THAT(Split(SplitPattern::kLlama3, "hi 👋!"), ElementsAre("hi", " 👋!"));
  EXPECT_THAT(Split(SplitPattern::kLlama3,
                    "a\xFF"
                    "b \xC3"),
              ElementsAre("a",
                          "\xFF"
                          "b",
                          " \xC3"));
}

TEST(TokenizerRegexTest, PiecesAlwaysCoverTheInput) {
  const std::string text =
      "  Mixed: tabs\t\t, 1234567 numbers; ünïcödé \xF0\x9F\x8D\xB0\n\r\n end  ";
  for (SplitPattern p : {SplitPattern::kGpt2, SplitPattern::kLlama3, SplitPattern::kQwen2}) {
    std::string joined;
    for (const std::string& piece : Split(p, text)) {
      EXPECT_FALSE(piece.empty());
      joined += piece;
    }
    EXPECT_EQ(joined, text);
  }
}

TEST(TokenizerUnicodeTest, LossyUtf8ReplacesMaximalSubparts) {
  EXPECT_EQ(Utf8Lossy("a\xFF"
                      "b"),
            "a\uFFFD"
            "b");
  EXPECT_EQ(Utf8Lossy("\xF0\x9F\x8D"), "\uFFFD");              // truncated 4-byte sequence
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // surrogate: 3 subparts
  EXPECT_EQ(Utf8Lossy("\xC3\xA9\xC3"), "é\uFFFD");
  EXPECT_TRUE(IsValidUtf8("é🍰"));
  EXPECT_FALSE(IsValidUtf8("\xC0\x80"));  // overlong
}

TEST(TokenizerUnicodeTest, ByteLevelAlphabetMatchesGpt2) {
  EXPECT_EQ(ByteToCodePoint('A'), U'A');
  EXPECT_EQ(ByteToCodePoint(' '), U'\u0120');   // Ġ
  EXPECT_EQ(ByteToCodePoint('\n'), U'\u010A');  // Ċ
  EXPECT_EQ(ByteToCodePoint(0xA0), U'\u0142');  // ł
  EXPECT_EQ(ByteToCodePoint(0xAD), U'\u0143');  // Ń, the last remapped byte
  for (int b = 0; b < 256; ++b) EXPECT_EQ(CodePointToByte(ByteToCodePoint(b)), b);
  EXPECT_EQ(CodePointToByte(U'\u0144'), -1);
}

TEST(TokenizerUnicodeTest, NfcComposesAndKeepsInvalidBytes) {
  EXPECT_EQ(NormalizeUnicode(NormalForm::kNfc, "e\u0301\xFF"), "\u00E9\xFF");
  EXPECT_EQ(NormalizeUnicode(NormalForm::kNfd, "\u00E9"), "e\u0301");
  EXPECT_EQ(NormalizeUnicode(NormalForm::kNfkc, "\uFB01"), "fi");
}

}  // namespace
}  // namespace strata::engine::tokenizer_internal
