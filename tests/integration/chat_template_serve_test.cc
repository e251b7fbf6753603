// A model folder whose tokenizer_config.json carries a real chat template (Llama 2's), served by
// a live daemon: chat requests are rendered by it (checked through /tokenize against the prompt
// Llama 2's format defines), generate, and a conversation the template refuses gets a 400 with
// the template's own message.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/json.h"
#include "tests/integration/daemon.h"

namespace strata::testing {
namespace {

namespace fs = std::filesystem;

// stories260K's files plus a tokenizer_config.json that has `chat_template`.
std::string ModelWithTemplate(const std::string& template_file) {
  const std::string dir = TempPath("model");
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) {
    fs::create_symlink(StoriesDir() + "/" + f, dir + "/" + f);
  }
  auto config = ParseJson(*ReadFile(StoriesDir() + "/tokenizer_config.json"), "tokenizer_config");
  (*config)["chat_template"] = *ReadFile(template_file);
  EXPECT_TRUE(WriteFile(dir + "/tokenizer_config.json", config->dump(2)).ok());
  return dir;
}

Json Post(const DaemonProcess& d, const std::string& path, const Json& body) {
  auto r = Curl("POST", d.url(path), body.dump());
  auto j = ParseJson(r.body, path);
  Json out = j.ok() ? *j : Json();
  out["http_code"] = r.http_code;
  return out;
}

TEST(ChatTemplateServeTest, TokenizerConfigTemplateRendersChatRequests) {
  if (!HaveStories()) GTEST_SKIP() << "no " << StoriesDir();
  const std::string model =
      ModelWithTemplate(STRATA_SOURCE_DIR "/tests/engine/data/chat_templates/llama-2-7b-chat.jinja");
  std::string error;
  auto d = DaemonProcess::Start("model:\n  path: " + model + "\nengine:\n  threads: 1\n", &error);
  ASSERT_NE(d, nullptr) << error;
  EXPECT_NE(d->Log().find("chat template from " + model + "/tokenizer_config.json"),
            std::string::npos)
      << d->Log();

  const Json messages = Json::array({{{"role", "system"}, {"content", "Be brief."}},
                                     {{"role", "user"}, {"content", "Once upon a time"}}});
  const Json chat_ids = Post(*d, "/tokenize", {{"messages", messages}});
  ASSERT_EQ(chat_ids["http_code"], 200) << chat_ids;
  // Llama 2's format; /tokenize of plain text adds the BOS the template writes as "<s>".
  const Json text_ids = Post(
      *d, "/tokenize", {{"prompt", "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nOnce upon a time [/INST]"}});
  EXPECT_EQ(chat_ids["tokens"], text_ids["tokens"]);
  EXPECT_EQ(chat_ids["tokens"][0], 1);  // "<s>" in the rendered text is the BOS token

  const Json chat = Post(*d, "/v1/chat/completions",
                         {{"messages", messages}, {"max_tokens", 8}, {"temperature", 0}});
  ASSERT_EQ(chat["http_code"], 200) << chat;
  EXPECT_EQ(chat["usage"]["prompt_tokens"], chat_ids["count"]);
  EXPECT_EQ(chat["usage"]["completion_tokens"], 8);

  const Json refused =
      Post(*d, "/v1/chat/completions",
           {{"messages", Json::array({{{"role", "user"}, {"content", "a"}},
                                      {{"role", "user"}, {"content", "b"}}})}});
  EXPECT_EQ(refused["http_code"], 400) << refused;
  EXPECT_EQ(refused["error"]["param"], "messages");
  EXPECT_NE(refused["error"]["message"].get<std::string>().find(
                "Conversation roles must alternate user/assistant/user/assistant/..."),
            std::string::npos)
      << refused;
  EXPECT_EQ(d->Stop(), 0) << d->Log();
  fs::remove_all(model);
}

TEST(ChatTemplateServeTest, ATemplateThatDoesNotParseStopsStartUpNamingTheFile) {
  if (!HaveStories()) GTEST_SKIP() << "no " << StoriesDir();
  const std::string bad = TempPath("bad.jinja");
  ASSERT_TRUE(WriteFile(bad, "{% for m in messages %}{{ m.content | wordwrap }}{% endfor %}").ok());
  const std::string model = ModelWithTemplate(bad);
  std::string error;
  auto d = DaemonProcess::Start("model:\n  path: " + model + "\n", &error, {}, 60);
  EXPECT_EQ(d, nullptr);
  EXPECT_NE(error.find("tokenizer_config.json"), std::string::npos) << error;
  EXPECT_NE(error.find("unsupported filter 'wordwrap'"), std::string::npos) << error;
  fs::remove_all(model);
  fs::remove(bad);
}

}  // namespace
}  // namespace strata::testing
