#include "server/hub_env.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "common/file.h"

namespace strata::server {
namespace {

namespace fs = std::filesystem;

TEST(HubOptionsTest, FromEnvironment) {
  const std::string home = ::testing::TempDir() + "/hf_env_home";
  fs::create_directories(home);
  setenv("HF_HOME", home.c_str(), 1);
  for (const char* v : {"HF_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE"}) unsetenv(v);
  fs::remove(home + "/token");
  engine::HubOptions plain = HubOptionsFromEnv();
  EXPECT_EQ(plain.cache_dir, home + "/hub");
  EXPECT_EQ(plain.endpoint, "https://huggingface.co");
  EXPECT_EQ(plain.token, "");
  EXPECT_FALSE(plain.offline);
  EXPECT_TRUE(plain.Validate().ok());

  ASSERT_TRUE(WriteFile(home + "/token", "from-file\n").ok());
  EXPECT_EQ(HubOptionsFromEnv().token, "from-file");
  setenv("HF_HUB_CACHE", "/elsewhere/hub", 1);
  setenv("HF_ENDPOINT", "http://mirror.local/", 1);
  setenv("HF_TOKEN", "hf_abc", 1);
  setenv("HF_HUB_OFFLINE", "1", 1);
  engine::HubOptions env = HubOptionsFromEnv();
  EXPECT_EQ(env.cache_dir, "/elsewhere/hub");
  EXPECT_EQ(env.endpoint, "http://mirror.local");
  EXPECT_EQ(env.token, "hf_abc");
  EXPECT_TRUE(env.offline);
  for (const char* v : {"HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE"}) {
    unsetenv(v);
  }
  engine::HubOptions bad;
  bad.endpoint = "ftp://x";
  EXPECT_FALSE(bad.Validate().ok());
}

}  // namespace
}  // namespace strata::server
