// Byte-level BPE (Llama 3 and Qwen2 layouts) on the small fixtures in testdata/tokenizer (see
// make_fixtures.py there): ids 0..255 are the bytes themselves, then merged tokens in rank order:
//   256 Ġw  257 or  258 Ġwor  259 ld  260 Ġworld  261 He  262 ll  263 Hell  264 Hello  265 12
//   266 123  267 's  268 Ġi  269 Ġit  270 ĊĊ  271 Ġx  272 45  273 ä½ (E4 BD)  274 ä½ł (你)
//   275 zz (no merge makes it)
// llama3: specials 300 <|begin_of_text|> 301 <|end_of_text|> 302 <|eot_id|>
//         303 <|start_header_id|> 304 <|end_header_id|>; merges as "a b"; ignore_merges.
// qwen2:  specials 300 <|endoftext|> 301 <|im_start|> 302 <|im_end|>, 303 <think> not special;
//         merges as ["a", "b"]; NFC normalizer; no bos.
#include <string>
#include <vector>

#include "common/file.h"
#include "common/json.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_unicode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kDataDir = STRATA_SOURCE_DIR "/tests/engine/testdata/tokenizer";

std::unique_ptr<Tokenizer> Load(const std::string& name) {
  auto tok = Tokenizer::FromFiles(kDataDir + "/" + name + "/tokenizer.json",
                                  kDataDir + "/" + name + "/tokenizer_config.json");
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

std::string FixtureJson(const std::string& name) {
  auto text = ReadFile(kDataDir + "/" + name + "/tokenizer.json");
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

std::vector<std::string> FeedAll(const Tokenizer& tok, const std::vector<int32_t>& prompt,
                                 const std::vector<int32_t>& ids) {
  IncrementalDecoder dec(tok, prompt, true);
  std::vector<std::string> chunks;
  for (int32_t id : ids) chunks.push_back(dec.Push(id));
  chunks.push_back(dec.Flush());
  return chunks;
}

const char kBriefExample[] = "Hello world 12345 it's\n\n  x";

TEST(Llama3TokenizerTest, Metadata) {
  auto tok = Load("llama3");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 305);
  EXPECT_EQ(tok->bos_id(), 300);
  EXPECT_THAT(tok->eos_ids(), ElementsAre(301));
  EXPECT_TRUE(tok->IsSpecial(302));
  EXPECT_FALSE(tok->IsSpecial(264));
  EXPECT_EQ(tok->TokenToId("<|eot_id|>"), 302);
  EXPECT_EQ(tok->TokenToId("\u0120world"), 260);
}

TEST(Llama3TokenizerTest, EncodesTheBriefExample) {
  auto tok = Load("llama3");
  ASSERT_NE(tok, nullptr);
  // Pre-tokens: Hello | Ġworld | Ġ | 123 | 45 | Ġit | 's | ĊĊ | Ġ | Ġx; bos from the template.
  EXPECT_THAT(tok->Encode(kBriefExample, true),
              ElementsAre(300, 264, 260, 32, 266, 272, 269, 267, 270, 32, 271));
  EXPECT_EQ(tok->Decode(tok->Encode(kBriefExample, true), true), kBriefExample);
}

TEST(Llama3TokenizerTest, MergesByRankAndIgnoreMerges) {
  auto tok = Load("llama3");
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(tok->Encode("zz", false), ElementsAre(275));  // whole word in vocab
  // 你好: E4 BD A0 merges to 274, E5 A5 BD has no merges.
  EXPECT_THAT(tok->Encode("你好", false), ElementsAre(274, 0xE5, 0xA5, 0xBD));
  EXPECT_THAT(tok->Encode("Hellworld", false), ElementsAre(263, 'w', 257, 259));
}

TEST(Llama3TokenizerTest, SpecialTokensInText) {
  auto tok = Load("llama3");
  ASSERT_NE(tok, nullptr);
  const std::string chat = "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>";
  const std::vector<int32_t> ids = tok->Encode(chat, false);
  EXPECT_THAT(ids, ElementsAre(303, 'u', 's', 'e', 'r', 304, 270, 'h', 'i', 302));
  EXPECT_EQ(tok->Decode(ids, false), chat);
  EXPECT_EQ(tok->Decode(ids, true), "user\n\nhi");
  EXPECT_THAT(tok->Encode("<|begin_of_text|><|begin_of_text|>", true), ElementsAre(300, 300, 300));
  EXPECT_THAT(tok->Encode("<|eot_id", false), ElementsAre('<', '|', 'e', 'o', 't', '_', 'i', 'd'));
}

TEST(Llama3TokenizerTest, RoundTripsArbitraryUtf8AndInvalidBytes) {
  auto tok = Load("llama3");
  ASSERT_NE(tok, nullptr);
  for (std::string_view s :
       {"Hello 🍰 世界 \t\n ünï", "  lead and trail  ", "\r\n\r\n", "👋🏽👨‍👩‍👧",
        "I'M 12345678 it'S", "\u00A0\u3000 spaces"}) {
    EXPECT_EQ(tok->Decode(tok->Encode(s, true), true), s) << s;
  }
  EXPECT_THAT(tok->Encode("a\xFF", false), ElementsAre('a', 0xFF));
  // Decoding repairs ill-formed bytes the way from_utf8_lossy does.
  EXPECT_EQ(tok->Decode(tok->Encode("a\xFF"
                                    "b\xC3",
                                    false),
                        true),
            "a\uFFFD"
            "b\uFFFD");
}

TEST(Llama3TokenizerTest, IncrementalDecoderHoldsPartialCharacters) {
  auto tok = Load("llama3");
  ASSERT_NE(tok, nullptr);
  // 273 is the first two bytes of 你; byte 0xA0 completes it.
  EXPECT_THAT(FeedAll(*tok, {300}, {273, 0xA0, 256}), ElementsAre("", "你", " w", ""));
  const std::vector<int32_t> emoji = tok->Encode("🍰!", false);
  ASSERT_THAT(emoji, ElementsAre(0xF0, 0x9F, 0x8D, 0xB0, '!'));
  EXPECT_THAT(FeedAll(*tok, {300}, emoji), ElementsAre("", "", "", "🍰", "!", ""));
  // Left incomplete at the end: Flush gives U+FFFD.
  EXPECT_THAT(FeedAll(*tok, {300, 264}, {273}), ElementsAre("", "\uFFFD"));
}

TEST(Llama3TokenizerTest, ConfigOverridesTheTemplate) {
  const std::string json = FixtureJson("llama3");
  auto tok = Tokenizer::FromJsonText(
      json, R"({"bos_token": {"content": "<|begin_of_text|>"}, "eos_token": "<|eot_id|>",
                "add_bos_token": false, "add_eos_token": true})",
      "llama3/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->bos_id(), 300);
  EXPECT_THAT((*tok)->eos_ids(), ElementsAre(302));
  EXPECT_THAT((*tok)->Encode("zz", true), ElementsAre(275, 302));
  // No config at all: the template's bos, no eos.
  tok = Tokenizer::FromJsonText(json, "", "llama3/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_THAT((*tok)->Encode("zz", true), ElementsAre(300, 275));
  EXPECT_TRUE((*tok)->eos_ids().empty());
}

TEST(Llama3TokenizerTest, AddedTokenStripFlags) {
  auto root = ParseJson(FixtureJson("llama3"), "llama3");
  ASSERT_TRUE(root.ok());
  (*root)["added_tokens"][2]["rstrip"] = true;  // <|eot_id|>
  (*root)["added_tokens"][1]["lstrip"] = true;  // <|end_of_text|>
  auto tok = Tokenizer::FromJsonText(root->dump(), "", "llama3-strip");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_THAT((*tok)->Encode("<|eot_id|>  x", false), ElementsAre(302, 'x'));
  EXPECT_THAT((*tok)->Encode("x  <|end_of_text|>", false), ElementsAre('x', 301));
  // Unchanged tokens keep the whitespace: "  x" -> Ġ | Ġx.
  EXPECT_THAT((*tok)->Encode("<|begin_of_text|>  x", false), ElementsAre(300, 32, 271));
}

TEST(Qwen2TokenizerTest, EncodesOneDigitPerPieceWithoutBos) {
  auto tok = Load("qwen2");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_THAT(tok->eos_ids(), ElementsAre(302));
  EXPECT_THAT(tok->Encode(kBriefExample, true),
              ElementsAre(264, 260, 32, '1', '2', '3', '4', '5', 269, 267, 270, 32, 271));
  EXPECT_THAT(tok->Encode("zz", false), ElementsAre('z', 'z'));  // ignore_merges is false
}

TEST(Qwen2TokenizerTest, NfcAndChatTokens) {
  auto tok = Load("qwen2");
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(tok->Encode("e\u0301", false), ElementsAre(0xC3, 0xA9));  // NFC: é
  EXPECT_THAT(tok->Encode("<|im_start|>user\nhi<|im_end|>", false),
              ElementsAre(301, 'u', 's', 'e', 'r', '\n', 'h', 'i', 302));
  EXPECT_FALSE(tok->IsSpecial(303));
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{301, 303, 'h', 'i', 302}, true), "<think>hi");
}

}  // namespace
}  // namespace strata::engine
