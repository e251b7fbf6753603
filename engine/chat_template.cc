#include "engine/chat_template.h"

#include <ctime>

#include "engine/jinja_ast.h"
#include "engine/jinja_eval.h"
#include "engine/jinja_parser.h"

namespace strata::engine {
namespace {

using jinja::CallArgs;
using jinja::Value;
using jinja::ValueDict;
using jinja::ValueList;

// transformers' strftime_now: datetime.now().strftime(format).
absl::StatusOr<Value> StrftimeNow(const CallArgs& args) {
  const Value* format = args.Get(0, "format");
  if (format == nullptr || !format->is_string()) {
    return absl::InvalidArgumentError("strftime_now() needs a format string");
  }
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[256];
  const size_t n = std::strftime(buf, sizeof(buf), format->str().c_str(), &local);
  if (n == 0 && !format->str().empty()) {
    return absl::InvalidArgumentError("strftime_now(): format gives no or too long output");
  }
  return Value(std::string(buf, n));
}

// transformers' raise_exception: fails the render with the template's own message.
absl::StatusOr<Value> RaiseException(const CallArgs& args) {
  const Value* message = args.Get(0, "message");
  return absl::AbortedError(message != nullptr ? jinja::ToStr(*message) : "raise_exception()");
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ChatTemplate>> ChatTemplate::Parse(std::string_view source) {
  ASSIGN_OR_RETURN(jinja::Body body, jinja::ParseTemplate(source));
  return std::shared_ptr<const ChatTemplate>(
      new ChatTemplate(std::make_shared<const jinja::Body>(std::move(body))));
}

absl::StatusOr<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                                 const ChatTemplateOptions& options) const {
  ValueList list;
  list.reserve(messages.size());
  for (const ChatMessage& m : messages) {
    ValueDict d;
    d.Set("role", Value(m.role));
    d.Set("content", Value(m.content));
    list.emplace_back(std::move(d));
  }
  ValueDict context;
  context.Set("messages", Value(std::move(list)));
  context.Set("add_generation_prompt", Value(options.add_generation_prompt));
  context.Set("bos_token", Value(options.bos_token));
  context.Set("eos_token", Value(options.eos_token));
  context.Set("tools", Value());
  context.Set("documents", Value());
  context.Set("strftime_now", Value::Function("strftime_now", StrftimeNow));
  context.Set("raise_exception", Value::Function("raise_exception", RaiseException));
  return jinja::RenderTemplate(*body_, std::move(context), jinja::RenderLimits());
}

}  // namespace strata::engine
