// Runs the real `strata generate` binary as a user would and checks what it prints.
#include <gtest/gtest.h>

#include <string>

#include "common/file.h"
#include "common/json.h"
#include "tests/integration/run_binary.h"

namespace {

const std::string kModelDir = STRATA_SOURCE_DIR "/../shared/models/stories260k";

using strata::testing::RunResult;
using strata::testing::RunStrata;

TEST(GenerateCliTest, GreedyContinuationOfStories260kMatchesReference) {
  if (!strata::FileExists(kModelDir)) GTEST_SKIP() << kModelDir << " is absent";
  auto ref = strata::ParseJson(*strata::ReadFile(kModelDir + "/reference.json"), "reference");
  const auto& p = (*ref)["prompts"][0];
  RunResult r = RunStrata("generate --model " + kModelDir + " --prompt '" +
                    p["prompt"].get<std::string>() + "' --max-tokens 48 --temperature 0");
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(r.stdout_text, p["continuation_text"].get<std::string>() + "\n");
  EXPECT_NE(r.stderr_text.find("prompt tokens: 5, generated tokens: 48"), std::string::npos)
      << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("decode:"), std::string::npos);
  EXPECT_NE(r.stderr_text.find("tok/s"), std::string::npos);
}

TEST(GenerateCliTest, StopStringEndsTheOutputBeforeIt) {
  if (!strata::FileExists(kModelDir)) GTEST_SKIP() << kModelDir << " is absent";
  // Greedy continuation: ", there was a little girl named Lily. She loved to play outside ..."
  RunResult r = RunStrata("generate --model " + kModelDir +
                          " --prompt 'Once upon a time' --max-tokens 48 --stop 'named Lily'");
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(r.stdout_text, ", there was a little girl \n");
  EXPECT_NE(r.stderr_text.find("finish: stop"), std::string::npos) << r.stderr_text;
}

TEST(GenerateCliTest, SeededSamplingIsReproducibleAndSeedsDiffer) {
  if (!strata::FileExists(kModelDir)) GTEST_SKIP() << kModelDir << " is absent";
  std::string base = "generate --model " + kModelDir +
                     " --prompt 'The dog' --max-tokens 40 --temperature 1.0 --top-p 0.95 --seed ";
  RunResult a = RunStrata(base + "7"), b = RunStrata(base + "7"), c = RunStrata(base + "8");
  ASSERT_EQ(a.exit_code, 0) << a.stderr_text;
  EXPECT_EQ(a.stdout_text, b.stdout_text);
  EXPECT_NE(a.stdout_text, c.stdout_text);
}

TEST(GenerateCliTest, SyntheticModelSaysItsOutputIsMeaningless) {
  RunResult r = RunStrata("generate --model synthetic:tiny --prompt hello --max-tokens 8");
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("meaningless"), std::string::npos) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("generated tokens: 8"), std::string::npos) << r.stderr_text;
}

TEST(GenerateCliTest, BadInputGivesAClearErrorAndExitCode) {
  RunResult missing = RunStrata("generate --model /nonexistent/model --prompt hi");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.stderr_text.find("/nonexistent/model"), std::string::npos)
      << missing.stderr_text;
  RunResult flag = RunStrata("generate --model synthetic:tiny --prompt hi --bogus 1");
  EXPECT_EQ(flag.exit_code, 2);
  EXPECT_NE(flag.stderr_text.find("unknown flag --bogus"), std::string::npos);
  RunResult top_p = RunStrata("generate --model synthetic:tiny --prompt hi --top-p 1.5");
  EXPECT_EQ(top_p.exit_code, 1);
  EXPECT_NE(top_p.stderr_text.find("top_p"), std::string::npos) << top_p.stderr_text;
  RunResult preset = RunStrata("generate --model synthetic:nope --prompt hi");
  EXPECT_EQ(preset.exit_code, 1);
  EXPECT_NE(preset.stderr_text.find("tiny"), std::string::npos) << preset.stderr_text;
}

}  // namespace
