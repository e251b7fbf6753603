// Chat templates: the Jinja2 `chat_template` of tokenizer_config.json, rendered by Strata's own
// interpreter (engine/jinja_*.h, DESIGN.md §4) byte-exact with Hugging Face's
// apply_chat_template (jinja2 with trim_blocks, lstrip_blocks, no trailing newline).
//
// A ChatTemplate owns its parsed syntax tree. Thread safety: immutable after Parse; Render is
// const and may run on many threads at once.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace strata::engine {

namespace jinja {
struct Stmt;
}  // namespace jinja

struct ChatMessage {
  std::string role;     // system | user | assistant | tool ...
  std::string content;
};

struct ChatTemplateOptions {
  bool add_generation_prompt = true;
  std::string bos_token, eos_token;  // exposed to the template as bos_token / eos_token
};

class ChatTemplate {
 public:
  // Parses the template once (at model load). Errors: "chat template line N: ..." naming the
  // construct, e.g. "chat template line 3: unsupported filter 'wordwrap'".
  static absl::StatusOr<std::shared_ptr<const ChatTemplate>> Parse(std::string_view source);

  // The template's variables: messages (list of {role, content}), add_generation_prompt,
  // bos_token, eos_token, tools = documents = None (as transformers passes them),
  // strftime_now(format) (local time) and raise_exception(message), which fails the render with
  // InvalidArgument carrying exactly that message. Other errors: "chat template line N: ...".
  // Bounded: 1M loop iterations, 4 MiB of output, 64 nested macro calls.
  absl::StatusOr<std::string> Render(const std::vector<ChatMessage>& messages,
                                     const ChatTemplateOptions& options) const;

 private:
  explicit ChatTemplate(std::shared_ptr<const std::vector<jinja::Stmt>> body)
      : body_(std::move(body)) {}

  std::shared_ptr<const std::vector<jinja::Stmt>> body_;
};

}  // namespace strata::engine
