// The sentencepiece-style tokenizer (Llama 2 layout, byte fallback) against the real
// stories260k files and their reference.json (produced by an independent implementation), the
// edge cases its README lists, incremental decoding, and the synthetic tokenizer.
#include "engine/tokenizer.h"

#include <string>
#include <vector>

#include "common/file.h"
#include "common/json.h"
#include "common/status.h"
#include "engine/tokenizer_unicode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::engine {
namespace {

using ::testing::ElementsAre;

const std::string kModelDir = STRATA_SOURCE_DIR "/../shared/models/stories260k";

class Stories260kTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!FileExists(kModelDir + "/tokenizer.json")) {
      GTEST_SKIP() << "stories260k not found at " << kModelDir;
    }
    auto tok =
        Tokenizer::FromFiles(kModelDir + "/tokenizer.json", kModelDir + "/tokenizer_config.json");
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = std::move(*tok);
  }

  std::vector<int32_t> Enc(std::string_view text) const { return tok_->Encode(text, false); }

  std::unique_ptr<Tokenizer> tok_;
};

struct Feed {
  std::vector<std::string> chunks;
  std::string joined;
};

Feed FeedAll(const Tokenizer& tok, const std::vector<int32_t>& prompt,
             const std::vector<int32_t>& generated, bool skip_special) {
  IncrementalDecoder dec(tok, prompt, skip_special);
  Feed f;
  for (int32_t id : generated) f.chunks.push_back(dec.Push(id));
  f.chunks.push_back(dec.Flush());
  for (const std::string& c : f.chunks) f.joined += c;
  return f;
}

std::vector<int32_t> Ids(const Json& array) { return array.get<std::vector<int32_t>>(); }

TEST_F(Stories260kTokenizerTest, Metadata) {
  EXPECT_EQ(tok_->vocab_size(), 512);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_THAT(tok_->eos_ids(), ElementsAre(2));
  EXPECT_TRUE(tok_->IsSpecial(0));
  EXPECT_TRUE(tok_->IsSpecial(1));
  EXPECT_TRUE(tok_->IsSpecial(2));
  EXPECT_FALSE(tok_->IsSpecial(410));
  EXPECT_EQ(tok_->TokenToId("\u2581the"), 265);
  EXPECT_EQ(tok_->TokenToId("<0x0A>"), 13);
  EXPECT_EQ(tok_->TokenToId("no such piece"), std::nullopt);
  EXPECT_EQ(tok_->IdToToken(403), "\u2581Once");
  EXPECT_NE(tok_->fingerprint(), Tokenizer::Synthetic(512)->fingerprint());
}

TEST_F(Stories260kTokenizerTest, MatchesReferenceJson) {
  auto text = ReadFile(kModelDir + "/reference.json");
  ASSERT_TRUE(text.ok()) << text.status();
  auto ref = ParseJson(*text, "reference.json");
  ASSERT_TRUE(ref.ok()) << ref.status();
  const Json& prompts = (*ref)["prompts"];
  ASSERT_EQ(prompts.size(), 8u);
  for (const Json& p : prompts) {
    const std::string prompt = p["prompt"].get<std::string>();
    SCOPED_TRACE(prompt);
    const std::vector<int32_t> prompt_ids = Ids(p["prompt_ids"]);
    const std::vector<int32_t> continuation = Ids(p["continuation_ids"]);
    EXPECT_EQ(tok_->Encode(prompt, true), prompt_ids);
    std::vector<int32_t> all = prompt_ids;
    all.insert(all.end(), continuation.begin(), continuation.end());
    EXPECT_EQ(tok_->Decode(all, true), p["full_text"].get<std::string>());
    EXPECT_EQ(tok_->Decode(continuation, true),
              p["continuation_text_hf_decode"].get<std::string>());
    Feed f = FeedAll(*tok_, prompt_ids, continuation, true);
    EXPECT_EQ(f.joined, p["continuation_text"].get<std::string>());
    for (const std::string& c : f.chunks) EXPECT_TRUE(tokenizer_internal::IsValidUtf8(c)) << c;
  }
}

// Expected ids below follow from the vocab and merges: the normalizer turns "x" into "▁x";
// byte-fallback ids are 3 + the byte value.
TEST_F(Stories260kTokenizerTest, DigitsAndPunctuation) {
  EXPECT_THAT(Enc("2"), ElementsAre(410, 479));                // ▁ 2 (no "▁2" piece)
  EXPECT_THAT(Enc("123"), ElementsAre(410, 475, 479, 472));    // digits never merge
  EXPECT_THAT(Enc("Hi!"), ElementsAre(320, 417, 443));         // ▁H i !
  EXPECT_THAT(Enc("a, b."), ElementsAre(261, 432, 268, 426));  // ▁a , ▁b .
}

TEST_F(Stories260kTokenizerTest, WhitespaceIsKept) {
  EXPECT_THAT(Enc("a\nb"), ElementsAre(261, 13, 430));       // '\n' -> <0x0A>
  EXPECT_THAT(Enc("\t"), ElementsAre(410, 12));              // <0x09>
  EXPECT_THAT(Enc("a\u00A0b"), ElementsAre(261, 498, 430));  // NBSP is a vocab piece
  EXPECT_THAT(Enc(" a"), ElementsAre(410, 261));             // leading space
  EXPECT_THAT(Enc("a "), ElementsAre(261, 410));             // trailing space
  EXPECT_THAT(Enc("a  b"), ElementsAre(261, 410, 268));      // double space
}

TEST_F(Stories260kTokenizerTest, UnicodeFallsBackToBytes) {
  EXPECT_THAT(Enc("é"), ElementsAre(410, 485));               // in the vocab
  EXPECT_THAT(Enc("café"), ElementsAre(280, 412, 431, 485));  // ▁c a f é
  EXPECT_THAT(Enc("世"), ElementsAre(410, 3 + 0xE4, 3 + 0xB8, 3 + 0x96));
  EXPECT_THAT(Enc("🍰"), ElementsAre(410, 3 + 0xF0, 3 + 0x9F, 3 + 0x8D, 3 + 0xB0));
  EXPECT_THAT(Enc("a\xFF"), ElementsAre(261, 3 + 0xFF));  // invalid byte
}

TEST_F(Stories260kTokenizerTest, SpecialTokensInText) {
  EXPECT_THAT(Enc("<s>"), ElementsAre(1));
  EXPECT_THAT(tok_->Encode("<s>", true), ElementsAre(1, 1));
  EXPECT_THAT(Enc("</s><unk>"), ElementsAre(2, 0));
  // Each text segment around an added token is normalized on its own (gets its own "▁").
  EXPECT_THAT(Enc("a<s>b"), ElementsAre(261, 1, 268));
  EXPECT_THAT(Enc("<s"), ElementsAre(410, 504, 419));  // no match: ▁ < s
  EXPECT_THAT(Enc("\u2581"), ElementsAre(410, 410));   // literal ▁ is the piece ▁
  EXPECT_THAT(Enc(""), ElementsAre());
  EXPECT_THAT(tok_->Encode("", true), ElementsAre(1));
}

TEST_F(Stories260kTokenizerTest, DecodeFollowsTheLlamaDecoder) {
  EXPECT_EQ(tok_->Decode(std::vector<int32_t>{1, 261, 13, 430}, true), "a\nb");
  EXPECT_EQ(tok_->Decode(std::vector<int32_t>{1, 261}, false), "<s> a");
  // An incomplete or invalid byte run: one U+FFFD per byte token, as ByteFallback does.
  EXPECT_EQ(tok_->Decode(std::vector<int32_t>{261, 3 + 0xF0, 3 + 0x9F}, true), "a\uFFFD\uFFFD");
  EXPECT_EQ(tok_->Decode(std::vector<int32_t>{261, 3 + 0xFF, 268}, true), "a\uFFFD b");
  EXPECT_EQ(tok_->Decode(std::vector<int32_t>{261, 9999, -1}, true), "a");
}

TEST_F(Stories260kTokenizerTest, RoundTrips) {
  for (std::string_view s :
       {"Once upon a time", " leading", "trailing ", "double  space", "tabs\tand\nnewlines\n",
        "Zoë's café 🍰 and 世界!", "\u00A0nbsp", "numbers 0123456789", "mixed 👋🏽 emoji",
        "\"quotes\" and 'apostrophes' — dashes…"}) {
    EXPECT_EQ(tok_->Decode(tok_->Encode(s, true), true), s) << s;
    // Unskipped, bos shows up and the decoder's Strip no longer eats the "▁" space.
    EXPECT_EQ(tok_->Decode(tok_->Encode(s, true), false), StrCat("<s> ", s)) << s;
  }
  // Legacy Llama behaviour: each segment between added tokens gets its own "▁".
  EXPECT_EQ(tok_->Decode(Enc("<s> text </s>"), false), "<s>  text </s>");
  EXPECT_EQ(tok_->Decode(Enc("<s> text </s>"), true), " text ");
}

TEST_F(Stories260kTokenizerTest, IncrementalDecoderNeverSplitsAnEmoji) {
  const std::vector<int32_t> ids = Enc("big 🍰 cake");
  ASSERT_THAT(ids, ElementsAre(370, 410, 243, 162, 144, 179, 280, 412, 354));
  Feed f = FeedAll(*tok_, {1}, ids, true);
  EXPECT_THAT(f.chunks, ElementsAre("big", " ", "", "", "", "🍰", " c", "a", "ke", ""));
  std::vector<int32_t> all = {1};
  all.insert(all.end(), ids.begin(), ids.end());
  EXPECT_EQ(f.joined, tok_->Decode(all, true));
}

TEST_F(Stories260kTokenizerTest, IncrementalDecoderWindowStartsOnACharacter) {
  // The prompt's last five tokens begin inside the first cake; a window starting there would
  // turn the whole byte run (and the next cake) into U+FFFD.
  const std::vector<int32_t> prompt = tok_->Encode("🍰🍰", true);
  ASSERT_EQ(prompt.size(), 10u);
  const std::vector<int32_t> more = {243, 162, 144, 179, 280};
  Feed f = FeedAll(*tok_, prompt, more, true);
  EXPECT_THAT(f.chunks, ElementsAre("", "", "", "🍰", " c", ""));
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), more.begin(), more.end());
  EXPECT_EQ(tok_->Decode(prompt, true) + f.joined, tok_->Decode(all, true));
}

TEST_F(Stories260kTokenizerTest, IncrementalDecoderFlushesInvalidBytes) {
  Feed f = FeedAll(*tok_, {1, 261}, {3 + 0xF0, 3 + 0x9F}, true);
  EXPECT_THAT(f.chunks, ElementsAre("", "", "\uFFFD\uFFFD"));
  // A special token mid-stream is skipped without losing the next word's space.
  f = FeedAll(*tok_, {1, 261}, {426, 1, 403}, true);
  EXPECT_EQ(f.joined, ". Once");
  f = FeedAll(*tok_, {1, 261}, {426, 1, 403}, false);
  EXPECT_EQ(f.joined, ".<s> Once");
}

TEST_F(Stories260kTokenizerTest, EncodesALongTextAsOneWord) {
  auto sample = ReadFile(kModelDir + "/tinystories_sample.txt");
  ASSERT_TRUE(sample.ok());
  std::string text;
  while (text.size() < 400000) text += *sample;
  const std::vector<int32_t> ids = tok_->Encode(text, false);
  EXPECT_GT(ids.size(), 100000u);
  EXPECT_EQ(tok_->Decode(ids, true), text);
}

TEST(SyntheticTokenizerTest, MapsBytesAndRoundTrips) {
  auto tok = Tokenizer::Synthetic(1000);
  EXPECT_EQ(tok->vocab_size(), 1000);
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_THAT(tok->eos_ids(), ElementsAre(257));
  EXPECT_TRUE(tok->IsSpecial(256));
  EXPECT_FALSE(tok->IsSpecial(258));
  EXPECT_THAT(tok->Encode("hi", true), ElementsAre(256, 'h', 'i'));
  EXPECT_THAT(tok->Encode("<s>", false), ElementsAre('<', 's', '>'));
  EXPECT_THAT(tok->Encode("é", false), ElementsAre(0xC3, 0xA9));
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{256, 'h', 'i', 300, 999}, true), "hi w300 w999");
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{256, 'h', 257}, false), "<s>h</s>");
  for (std::string_view s : {"plain", "🍰 and 世界", "  spaces\n\t", "<s></s>"}) {
    EXPECT_EQ(tok->Decode(tok->Encode(s, true), true), s);
  }
  EXPECT_EQ(tok->fingerprint(), Tokenizer::Synthetic(1000)->fingerprint());
  EXPECT_NE(tok->fingerprint(), Tokenizer::Synthetic(1001)->fingerprint());
}

TEST(SyntheticTokenizerTest, IncrementalDecoderHoldsSplitCharacters) {
  auto tok = Tokenizer::Synthetic(300);
  const std::vector<int32_t> ids = tok->Encode("a🍰b", false);
  ASSERT_THAT(ids, ElementsAre('a', 0xF0, 0x9F, 0x8D, 0xB0, 'b'));
  Feed f = FeedAll(*tok, {256}, ids, true);
  EXPECT_THAT(f.chunks, ElementsAre("a", "", "", "", "🍰", "b", ""));
  f = FeedAll(*tok, {256}, {'a', 0xF0, 0x9F}, true);
  EXPECT_THAT(f.chunks, ElementsAre("a", "", "", "\uFFFD"));  // lossy: one U+FFFD per subpart
}

}  // namespace
}  // namespace strata::engine
