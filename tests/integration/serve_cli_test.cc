// `strata serve` configuration handling: the YAML is validated before anything loads, and every
// problem names the key path.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/file.h"
#include "tests/integration/daemon.h"
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

TEST(ServeCliTest, DefaultConfigServesTheSyntheticModelAndStopsCleanly) {
  std::string error;
  auto d = strata::testing::DaemonProcess::Start(
      *strata::ReadFile(STRATA_SOURCE_DIR "/configs/default.yaml"), &error);
  ASSERT_NE(d, nullptr) << error;
  EXPECT_GT(d->http_port(), 0);
  EXPECT_GT(d->grpc_port(), 0);
  const std::string log = d->Log();
  EXPECT_NE(log.find("synthetic:tiny"), std::string::npos) << log;
  EXPECT_NE(log.find("meaningless"), std::string::npos) << log;
  EXPECT_EQ(d->Stop(SIGINT), 0) << d->Log();
  EXPECT_NE(d->Log().find("stopped"), std::string::npos) << d->Log();
}

// A signal that arrives the moment the daemon is up must still drain, whichever thread the
// kernel hands it to (threads that libraries start before main do not block it).
TEST(ServeCliTest, SignalRightAfterStartUpAlwaysDrainsAndExitsZero) {
  for (int i = 0; i < 5; ++i) {
    std::string error;
    auto d = strata::testing::DaemonProcess::Start("model:\n  path: synthetic:tiny\n", &error);
    ASSERT_NE(d, nullptr) << error;
    EXPECT_EQ(d->Stop(i % 2 ? SIGINT : SIGTERM), 0) << d->Log();
  }
}

TEST(ServeCliTest, BadPortFlagIsNamed) {
  auto r = RunStrata("serve --config " STRATA_SOURCE_DIR "/configs/default.yaml --http-port 70000");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("--http-port: not a port: '70000'"), std::string::npos)
      << r.stderr_text;
}

}  // namespace
