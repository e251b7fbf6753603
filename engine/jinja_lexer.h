// Lexer of the chat-template interpreter: splits a Jinja2 source into data and tag tokens with
// the whitespace rules Hugging Face's environment uses (trim_blocks=True, lstrip_blocks=True,
// keep_trailing_newline=False, `{%-`/`-%}`/`{{-`/`-}}`/`{#-`/`-#}` and `{%+`/`+%}`), so data
// tokens hold exactly the text jinja2 would emit. Comments are dropped here.
//
// Stateless; any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::engine::jinja {

enum class TokenType {
  kData,        // literal template text (already whitespace-controlled)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifiers and keywords
  kString,      // string literal, `text` holds the unescaped value
  kInt,
  kFloat,
  kOp,          // operator or punctuation, `text` holds it ("==", "(", "|", ...)
  kEof,
};

struct Token {
  TokenType type;
  std::string text;
  int line;  // 1-based line of the token's first character
};

// Errors name the line: "chat template line 3: unterminated tag '{%'".
absl::StatusOr<std::vector<Token>> Lex(std::string_view source);

}  // namespace strata::engine::jinja
