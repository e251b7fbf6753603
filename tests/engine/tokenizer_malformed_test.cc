// Malformed tokenizer.json / tokenizer_config.json: every problem is an error that names the file
// and says what is wrong, never a crash.
#include <filesystem>
#include <string>

#include "common/file.h"
#include "engine/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::engine {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kPath[] = "/models/bad/tokenizer.json";

// A minimal valid file with `model` spliced in, or `extra` top-level members added.
std::string WithModel(const std::string& model, const std::string& extra = "") {
  return R"({"added_tokens": [{"id": 0, "content": "<s>", "special": true}],)" + extra +
         R"("model": )" + model + "}";
}
const std::string kGoodModel =
    R"({"type": "BPE", "vocab": {"<s>": 0, "a": 1, "b": 2, "ab": 3}, "merges": ["a b"]})";

struct Case {
  const char* name;
  std::string json;
  const char* problem;  // a substring the message must contain
};

class MalformedTokenizerTest : public ::testing::TestWithParam<Case> {};

TEST_P(MalformedTokenizerTest, ErrorNamesFileAndProblem) {
  const Case& c = GetParam();
  auto tok = Tokenizer::FromJsonText(c.json, "", kPath);
  ASSERT_FALSE(tok.ok()) << c.name;
  EXPECT_THAT(std::string(tok.status().message()), AllOf(HasSubstr(kPath), HasSubstr(c.problem)));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedTokenizerTest,
    ::testing::Values(
        Case{"NotJson", "{\"model\": ", "not valid JSON"},
        Case{"NotAnObject", "[1, 2]", "expected a JSON object"},
        Case{"MissingModel", "{\"version\": \"1.0\"}", "missing 'model'"},
        Case{"UnknownModelType", WithModel(R"({"type": "Unigram", "vocab": []})"), "Unigram"},
        Case{"VocabNotObject", WithModel(R"({"type": "BPE", "vocab": [], "merges": []})"),
             "model.vocab: expected an object"},
        Case{"VocabIdNotInteger",
             WithModel(R"({"type": "BPE", "vocab": {"a": "zero"}, "merges": []})"),
             "id of 'a' is not an integer"},
        Case{"VocabIdHuge",
             WithModel(R"({"type": "BPE", "vocab": {"a": 4000000000}, "merges": []})"),
             "far beyond"},
        Case{"MergeUnknownToken", WithModel(R"({"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
                           "merges": ["a c"]})"),
             "'c', which is not in the vocab"},
        Case{"MergeResultUnknown",
             WithModel(R"({"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]})"),
             "'ab', which is not in the vocab"},
        Case{"MergeWrongType", WithModel(R"({"type": "BPE", "vocab": {"a": 0}, "merges": [7]})"),
             "model.merges[0]"},
        Case{"MergeThreeParts",
             WithModel(R"({"type": "BPE", "vocab": {"a": 0}, "merges": ["a a a"]})"),
             "two tokens separated by one space"},
        Case{"MergesNotArray",
             WithModel(R"({"type": "BPE", "vocab": {"a": 0}, "merges": {"a": 1}})"),
             "model.merges: expected an array"},
        Case{"UnkNotInVocab",
             WithModel(R"({"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "?"})"),
             "unk_token '?'"},
        Case{"FlagWrongType",
             WithModel(R"({"type": "BPE", "vocab": {"a": 0}, "merges": [], "fuse_unk": "yes"})"),
             "fuse_unk"},
        Case{"AddedTokensNotArray", R"({"added_tokens": {}, "model": )" + kGoodModel + "}",
             "added_tokens: expected an array"},
        Case{"AddedTokenWithoutContent",
             R"({"added_tokens": [{"id": 5}], "model": )" + kGoodModel + "}", "added_tokens[0]"},
        Case{"UnknownRegex", WithModel(kGoodModel, R"("pre_tokenizer": {"type": "Split",
                 "pattern": {"Regex": "\\w+|\\d"}, "behavior": "Isolated"},)"),
             "regex '\\w+|\\d' is not one of the supported patterns"},
        Case{"UnknownNormalizer", WithModel(kGoodModel, R"("normalizer": {"type": "Lowercase"},)"),
             "normalizer type 'Lowercase'"},
        Case{"NormalizerRegexReplace", WithModel(kGoodModel, R"("normalizer": {"type": "Replace",
                 "pattern": {"Regex": " +"}, "content": " "},)"),
             "regex pattern ' +'"},
        Case{"UnknownPreTokenizer",
             WithModel(kGoodModel, R"("pre_tokenizer": {"type": "BertPreTokenizer"},)"),
             "pre_tokenizer type 'BertPreTokenizer'"},
        Case{"UnknownDecoder", WithModel(kGoodModel, R"("decoder": {"type": "WordPiece"},)"),
             "decoder type 'WordPiece'"},
        Case{"DecoderNotObject", WithModel(kGoodModel, R"("decoder": 3,)"),
             "decoder: expected an object"},
        Case{"UnknownPostProcessor",
             WithModel(kGoodModel, R"("post_processor": {"type": "BertProcessing"},)"),
             "post_processor type 'BertProcessing'"},
        Case{"TemplateUnknownSpecial",
             WithModel(kGoodModel, R"("post_processor": {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": "<bos>"}}, {"Sequence": {"id": "A"}}],
                 "special_tokens": {}},)"),
             "special token '<bos>'"},
        Case{"NestedSequence",
             WithModel(kGoodModel, R"("normalizer": {"type": "Sequence", "normalizers": [
                 {"type": "Sequence", "normalizers": []}]},)"),
             "nested Sequence"}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

TEST(MalformedTokenizerConfigTest, ConfigErrorsNameTheConfigFile) {
  const std::string json = WithModel(kGoodModel);
  auto tok = Tokenizer::FromJsonText(json, "{bad", kPath, "/models/bad/tokenizer_config.json");
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()),
              AllOf(HasSubstr("/models/bad/tokenizer_config.json"), HasSubstr("not valid JSON")));
  tok = Tokenizer::FromJsonText(json, R"({"bos_token": "<bos>"})", kPath);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()),
              AllOf(HasSubstr(kPath), HasSubstr("tokenizer_config.json"),
                    HasSubstr("bos_token '<bos>' is not in the tokenizer's vocabulary")));
  tok = Tokenizer::FromJsonText(json, R"({"add_bos_token": true})", kPath);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr("no bos_token"));
  tok = Tokenizer::FromJsonText(json, R"({"add_eos_token": "yes"})", kPath);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr("add_eos_token"));
}

TEST(MalformedTokenizerConfigTest, FromFilesNamesThePaths) {
  const std::string dir = ::testing::TempDir() + "/tokenizer_malformed";
  std::filesystem::create_directories(dir);
  const std::string json_path = dir + "/tokenizer.json";
  ASSERT_TRUE(WriteFile(json_path, "{\"model\": 1}").ok());
  auto tok = Tokenizer::FromFiles(json_path, dir + "/missing_config.json");
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()),
              AllOf(HasSubstr(json_path), HasSubstr("missing 'model'")));
  tok = Tokenizer::FromFiles(dir + "/nope.json", "");
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr(dir + "/nope.json"));
  // A valid tokenizer.json with a missing config loads with defaults.
  ASSERT_TRUE(WriteFile(json_path, WithModel(kGoodModel)).ok());
  tok = Tokenizer::FromFiles(json_path, dir + "/missing_config.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->bos_id(), -1);
  const std::string config_path = dir + "/tokenizer_config.json";
  ASSERT_TRUE(WriteFile(config_path, "[]").ok());
  tok = Tokenizer::FromFiles(json_path, config_path);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()),
              AllOf(HasSubstr(config_path), HasSubstr("expected a JSON object")));
}

}  // namespace
}  // namespace strata::engine
