// Real chat templates (tests/engine/data/chat_templates, verbatim from the models'
// tokenizer_config.json) rendered through ChatTemplate, compared with the exact prompts
// Hugging Face's apply_chat_template produces for them.
#include "engine/chat_template.h"

#include <gtest/gtest.h>

#include <ctime>
#include <thread>

#include "common/file.h"

namespace strata::engine {
namespace {

std::shared_ptr<const ChatTemplate> Load(const std::string& name) {
  const std::string path = STRATA_SOURCE_DIR "/tests/engine/data/chat_templates/" + name;
  absl::StatusOr<std::string> source = ReadFile(path);
  EXPECT_TRUE(source.ok()) << source.status();
  if (!source.ok()) return nullptr;
  absl::StatusOr<std::shared_ptr<const ChatTemplate>> t = ChatTemplate::Parse(*source);
  EXPECT_TRUE(t.ok()) << name << ": " << t.status();
  return t.ok() ? *t : nullptr;
}

const std::vector<ChatMessage> kConversation = {{"system", "You are helpful."},
                                                {"user", "Hello"},
                                                {"assistant", "Hi there!"},
                                                {"user", "How are you?"}};
const std::vector<ChatMessage> kNoSystem = {
    {"user", "Hello"}, {"assistant", "Hi there!"}, {"user", "How are you?"}};
const std::vector<ChatMessage> kUserOnly = {{"user", "Hello"}};
const std::vector<ChatMessage> kUserUser = {{"user", "a"}, {"user", "b"}};

ChatTemplateOptions Options(std::string bos, std::string eos, bool generation_prompt = true) {
  ChatTemplateOptions o;
  o.add_generation_prompt = generation_prompt;
  o.bos_token = std::move(bos);
  o.eos_token = std::move(eos);
  return o;
}

std::string RenderOrError(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                          const ChatTemplateOptions& options) {
  absl::StatusOr<std::string> out = t.Render(messages, options);
  return out.ok() ? *out : "ERROR: " + std::string(out.status().message());
}

TEST(ChatTemplateTest, Llama2) {
  auto t = Load("llama-2-7b-chat.jinja");
  ASSERT_NE(t, nullptr);
  const auto o = Options("<s>", "</s>");
  EXPECT_EQ(RenderOrError(*t, kConversation, o),
            "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHello [/INST] Hi there! </s>"
            "<s>[INST] How are you? [/INST]");
  EXPECT_EQ(RenderOrError(*t, kUserOnly, o), "<s>[INST] Hello [/INST]");
  EXPECT_EQ(RenderOrError(*t, kUserUser, o),
            "ERROR: Conversation roles must alternate user/assistant/user/assistant/...");
}

TEST(ChatTemplateTest, Llama3) {
  auto t = Load("meta-llama-3-8b-instruct.jinja");
  ASSERT_NE(t, nullptr);
  const auto o = Options("<|begin_of_text|>", "<|eot_id|>");
  EXPECT_EQ(RenderOrError(*t, kConversation, o),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(RenderOrError(*t, kUserOnly, o),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(RenderOrError(*t, {{"user", "  padded \n"}}, Options("<|begin_of_text|>", "", false)),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>");
}

TEST(ChatTemplateTest, Llama31UsesFixedDateWhenNoneGiven) {
  auto t = Load("llama-3.1-8b-instruct.jinja");
  ASSERT_NE(t, nullptr);
  const auto o = Options("<|begin_of_text|>", "<|eot_id|>");
  EXPECT_EQ(RenderOrError(*t, kConversation, o),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
            "You are helpful.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(RenderOrError(*t, kUserOnly, o),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateTest, Llama32UsesStrftimeNow) {
  auto t = Load("llama-3.2-instruct.jinja");
  ASSERT_NE(t, nullptr);
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char today[64];
  std::strftime(today, sizeof(today), "%d %b %Y", &local);
  EXPECT_EQ(RenderOrError(*t, kUserOnly, Options("<|begin_of_text|>", "<|eot_id|>")),
            std::string("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                        "Cutting Knowledge Date: December 2023\nToday Date: ") +
                today +
                "\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateTest, Qwen25) {
  auto t = Load("qwen2.5-7b-instruct.jinja");
  ASSERT_NE(t, nullptr);
  const auto o = Options("", "<|im_end|>");
  EXPECT_EQ(RenderOrError(*t, kConversation, o),
            "<|im_start|>system\nYou are helpful.<|im_end|>\n"
            "<|im_start|>user\nHello<|im_end|>\n"
            "<|im_start|>assistant\nHi there!<|im_end|>\n"
            "<|im_start|>user\nHow are you?<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(RenderOrError(*t, kUserOnly, o),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(RenderOrError(*t, kUserOnly, Options("", "<|im_end|>", false)),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n");
}

TEST(ChatTemplateTest, MistralV01Legacy) {
  auto t = Load("mistral-7b-instruct-v0.1-legacy.jinja");
  ASSERT_NE(t, nullptr);
  const auto o = Options("<s>", "</s>");
  EXPECT_EQ(RenderOrError(*t, kNoSystem, o),
            "<s>[INST] Hello [/INST]Hi there!</s> [INST] How are you? [/INST]");
  EXPECT_EQ(RenderOrError(*t, kUserOnly, o), "<s>[INST] Hello [/INST]");
  // The legacy template has no system role: the alternation check fires first.
  EXPECT_EQ(RenderOrError(*t, kConversation, o),
            "ERROR: Conversation roles must alternate user/assistant/user/assistant/...");
  EXPECT_EQ(RenderOrError(*t, kUserUser, o),
            "ERROR: Conversation roles must alternate user/assistant/user/assistant/...");
}

TEST(ChatTemplateTest, MixtralLegacy) {
  auto t = Load("mixtral-8x7b-instruct-v0.1-legacy.jinja");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(RenderOrError(*t, kNoSystem, Options("<s>", "</s>")),
            "<s>[INST] Hello [/INST]Hi there!</s>[INST] How are you? [/INST]");
}

TEST(ChatTemplateTest, MistralV02) {
  auto t = Load("mistral-7b-instruct-v0.2.jinja");
  ASSERT_NE(t, nullptr);
  const auto o = Options("<s>", "</s>");
  EXPECT_EQ(RenderOrError(*t, kConversation, o),
            "<s> [INST] You are helpful.\n\nHello [/INST] Hi there!</s> [INST] How are you? [/INST]");
  EXPECT_EQ(RenderOrError(*t, kUserOnly, o), "<s> [INST] Hello [/INST]");
  EXPECT_EQ(RenderOrError(*t, kUserUser, o),
            "ERROR: After the optional system message, conversation roles must alternate "
            "user/assistant/user/assistant/...");
}

TEST(ChatTemplateTest, MistralV03) {
  auto t = Load("mistral-7b-instruct-v0.3.jinja");
  ASSERT_NE(t, nullptr);
  const auto o = Options("<s>", "</s>");
  EXPECT_EQ(RenderOrError(*t, kConversation, o),
            "<s>[INST] Hello[/INST] Hi there!</s>[INST] You are helpful.\n\nHow are you?[/INST]");
  EXPECT_EQ(RenderOrError(*t, kUserOnly, o), "<s>[INST] Hello[/INST]");
  EXPECT_EQ(RenderOrError(*t, kUserUser, o),
            "ERROR: After the optional system message, conversation roles must alternate "
            "user/assistant/user/assistant/...");
  EXPECT_EQ(RenderOrError(*t, {{"user", "a"}, {"critic", "b"}}, o),
            "ERROR: Only user and assistant roles are supported, with the exception of an "
            "initial optional system message!");
}

TEST(ChatTemplateTest, MistralNemo) {
  auto t = Load("mistral-nemo-instruct-2407.jinja");
  ASSERT_NE(t, nullptr);
  const auto o = Options("<s>", "</s>");
  EXPECT_EQ(RenderOrError(*t, kConversation, o),
            "<s>[INST]Hello[/INST]Hi there!</s>[INST]You are helpful.\n\nHow are you?[/INST]");
  EXPECT_EQ(RenderOrError(*t, kUserOnly, o), "<s>[INST]Hello[/INST]");
}

TEST(ChatTemplateTest, ContentIsDataNotTemplate) {
  auto t = Load("meta-llama-3-8b-instruct.jinja");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(RenderOrError(*t, {{"user", "{{ 7*7 }} {% if %} caf\xc3\xa9"}}, Options("", "", false)),
            "<|start_header_id|>user<|end_header_id|>\n\n{{ 7*7 }} {% if %} caf\xc3\xa9<|eot_id|>");
}

TEST(ChatTemplateTest, ParseErrorNamesLine) {
  absl::StatusOr<std::shared_ptr<const ChatTemplate>> t =
      ChatTemplate::Parse("{{ bos_token }}\n{{ messages|wordwrap }}");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.status().message(), "chat template line 2: unsupported filter 'wordwrap'");
}

TEST(ChatTemplateTest, ConcurrentRendersAgree) {
  auto t = Load("mistral-7b-instruct-v0.3.jinja");
  ASSERT_NE(t, nullptr);
  const auto o = Options("<s>", "</s>");
  const std::string expected = RenderOrError(*t, kConversation, o);
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 200; ++k) mismatches[i] += RenderOrError(*t, kConversation, o) != expected;
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace strata::engine
