// `strata serve` configuration handling: the YAML is validated before anything loads, and every
// problem names the key path.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/file.h"
#include "tests/integration/run_binary.h"

namespace {

using strata::testing::RunStrata;

std::string WriteConfig(const std::string& name, const std::string& yaml) {
  std::string path = std::filesystem::temp_directory_path() / ("strata_serve_" + name + ".yaml");
  EXPECT_TRUE(strata::WriteFile(path, yaml).ok());
  return path;
}

TEST(ServeCliTest, UnknownKeyStopsStartUpNamingIt) {
  auto r = RunStrata("serve --config " + WriteConfig("unknown", "engine:\n  threads: 1\n  thread: 2\n"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("unknown key 'engine.thread'"), std::string::npos) << r.stderr_text;
}

TEST(ServeCliTest, WrongTypeStopsStartUpNamingTheKey) {
  auto r = RunStrata("serve --config " + WriteConfig("type", "kvcache:\n  block_size: sixteen\n"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("kvcache.block_size"), std::string::npos) << r.stderr_text;
}

TEST(ServeCliTest, MissingConfigFileIsNamed) {
  auto r = RunStrata("serve --config /nonexistent/strata.yaml");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("/nonexistent/strata.yaml"), std::string::npos) << r.stderr_text;
}

TEST(ServeCliTest, DefaultConfigLoadsTheSyntheticModelAndChecksIt) {
  auto r = RunStrata("serve --config " STRATA_SOURCE_DIR "/configs/default.yaml");
  EXPECT_NE(r.stderr_text.find("synthetic:tiny"), std::string::npos) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("meaningless"), std::string::npos) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("model check: generated 4 tokens on cpu"), std::string::npos)
      << r.stderr_text;
}

}  // namespace
