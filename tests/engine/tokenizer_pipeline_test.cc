// Pipeline pieces not covered by the Llama 2 / Llama 3 / Qwen2 files: the Metaspace
// pre-tokenizer and decoder (newer Llama 2 / Mistral files), unk with and without fuse_unk,
// string Split behaviours, and BPE merge order details, each on a tiny inline tokenizer.json.
#include <filesystem>
#include <string>
#include <vector>

#include "common/file.h"
#include "engine/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::engine {
namespace {

using ::testing::ElementsAre;

// Vocab: 0 <unk> 1 ▁ 2 a 3 b 4 ▁a 5 ▁b 6 aa 7 aaa
std::unique_ptr<Tokenizer> Make(const std::string& extra, const std::string& model_extra = "",
                                const std::string& merges = R"(["▁ a", "▁ b", "a a", "aa a"])") {
  const std::string json = R"({"added_tokens": [{"id": 0, "content": "<unk>", "special": true}],)" +
                           extra + R"("model": {"type": "BPE", "unk_token": "<unk>",)" +
                           model_extra +
                           R"("vocab": {"<unk>": 0, "▁": 1, "a": 2, "b": 3, "▁a": 4, "▁b": 5,
                                        "aa": 6, "aaa": 7},
                             "merges": )" +
                           merges + "}}";
  auto tok = Tokenizer::FromJsonText(json, "", "inline");
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

const char kMetaspace[] =
    R"("pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                         "split": true},
       "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                   "split": true},)";

TEST(TokenizerPipelineTest, MetaspaceSplitsOnReplacementAndPrependsFirst) {
  auto tok = Make(kMetaspace);
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(tok->Encode("a b", false), ElementsAre(4, 5));
  EXPECT_THAT(tok->Encode("a  b", false), ElementsAre(4, 1, 5));  // ▁a | ▁ | ▁b
  // prepend_scheme "first": the segment after an added token gets no "▁".
  EXPECT_THAT(tok->Encode("<unk>a", false), ElementsAre(0, 2));
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{4, 1, 5}, false), "a  b");
}

TEST(TokenizerPipelineTest, UnknownCharactersBecomeUnk) {
  auto fused = Make(kMetaspace, R"("fuse_unk": true,)");
  auto unfused = Make(kMetaspace, R"("fuse_unk": false,)");
  ASSERT_NE(fused, nullptr);
  ASSERT_NE(unfused, nullptr);
  EXPECT_THAT(fused->Encode("xyb", false), ElementsAre(1, 0, 3));  // ▁ <unk> b
  EXPECT_THAT(unfused->Encode("xyb", false), ElementsAre(1, 0, 0, 3));
  // Without unk and byte fallback, unknown characters vanish (as in tokenizers).
  auto none = Tokenizer::FromJsonText(
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})", "", "inline");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT((*none)->Encode("xax", false), ElementsAre(0));
}

TEST(TokenizerPipelineTest, EqualRanksMergeLeftmostFirst) {
  auto tok = Make("");
  ASSERT_NE(tok, nullptr);
  // "aaaa": a a a a -> (aa) a a -> (aa)(aa): rank 2 "a a" twice before rank 3 "aa a".
  EXPECT_THAT(tok->Encode("aaaa", false), ElementsAre(6, 6));
  // "aaa": (aa) a -> aaa via rank 3.
  EXPECT_THAT(tok->Encode("aaa", false), ElementsAre(7));
  // With "aa a" ranked first, each "aa" becomes "aaa" as soon as an "a" follows it.
  auto reordered = Make("", "", R"(["aa a", "a a"])");
  ASSERT_NE(reordered, nullptr);
  EXPECT_THAT(reordered->Encode("aaaaa", false), ElementsAre(7, 6));
}

TEST(TokenizerPipelineTest, StringSplitBehaviours) {
  const auto split = [](const char* behavior) {
    return Make(std::string(R"("pre_tokenizer": {"type": "Split", "pattern": {"String": "b"},
                                                  "behavior": ")") +
                behavior + R"(", "invert": false},)");
  };
  // Words feed BPE separately, so "aa" merges only where a and a share a word.
  EXPECT_THAT(split("Isolated")->Encode("abab", false), ElementsAre(2, 3, 2, 3));
  EXPECT_THAT(split("Removed")->Encode("abaab", false), ElementsAre(2, 6));
  EXPECT_THAT(split("MergedWithPrevious")->Encode("aabaa", false), ElementsAre(6, 3, 6));
  EXPECT_THAT(split("MergedWithNext")->Encode("aabaa", false), ElementsAre(6, 3, 6));
}

TEST(TokenizerPipelineTest, NoDecoderJoinsTokensWithSpaces) {
  auto tok = Make("");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{4, 5, 0}, false), "▁a ▁b <unk>");
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{4, 5, 0}, true), "▁a ▁b");
}

// The fuzz seeds must be valid tokenizers, or the fuzzer mutates mostly rejected input.
TEST(TokenizerPipelineTest, FuzzSeedCorpusLoads) {
  const std::string dir = STRATA_SOURCE_DIR "/tests/fuzz/corpus/tokenizer_json_fuzz";
  int num_seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    auto text = ReadFile(entry.path().string());
    ASSERT_TRUE(text.ok()) << text.status();
    const size_t nul = text->find('\0');
    const std::string config = nul == std::string::npos ? "" : text->substr(nul + 1);
    auto tok = Tokenizer::FromJsonText(text->substr(0, nul), config, entry.path().string());
    EXPECT_TRUE(tok.ok()) << tok.status();
    ++num_seeds;
  }
  EXPECT_GE(num_seeds, 5);
}

}  // namespace
}  // namespace strata::engine
