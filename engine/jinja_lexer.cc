#include "engine/jinja_lexer.h"

#include <algorithm>
#include <cctype>

#include "common/status.h"

namespace strata::engine::jinja {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

absl::Status LexError(int line, std::string_view message) {
  return absl::InvalidArgumentError(StrCat("chat template line ", line, ": ", message));
}

// jinja2 normalizes newlines to "\n" and drops one trailing newline (keep_trailing_newline off).
std::string NormalizeSource(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xC0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *out += static_cast<char>(0xE0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (cp >> 18));
    *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Reads `n` hex digits at body[*i]; false when they are not all hex or the value is out of range.
bool ReadHex(std::string_view body, size_t* i, int n, uint32_t* cp) {
  if (*i + n > body.size()) return false;
  uint32_t v = 0;
  for (int k = 0; k < n; ++k) {
    const char c = body[*i + k];
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    v = v * 16 + (std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10));
  }
  if (v > 0x10FFFF) return false;
  *i += n;
  *cp = v;
  return true;
}

// Python "unicode-escape" decoding, which jinja2 applies to string literals.
absl::StatusOr<std::string> Unescape(std::string_view body, int line) {
  std::string out;
  for (size_t i = 0; i < body.size();) {
    if (body[i] != '\\' || i + 1 == body.size()) {
      out += body[i++];
      continue;
    }
    const char c = body[i + 1];
    i += 2;
    switch (c) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case '\n': break;  // line continuation
      case 'x':
      case 'u':
      case 'U': {
        uint32_t cp = 0;
        if (!ReadHex(body, &i, c == 'x' ? 2 : (c == 'u' ? 4 : 8), &cp)) {
          return LexError(line, StrCat("invalid \\", std::string(1, c), " escape in string"));
        }
        AppendUtf8(cp, &out);
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          uint32_t cp = c - '0';
          for (int k = 0; k < 2 && i < body.size() && body[i] >= '0' && body[i] <= '7'; ++k) {
            cp = cp * 8 + (body[i++] - '0');
          }
          AppendUtf8(cp, &out);
        } else {
          out += '\\';  // Python keeps unknown escapes verbatim
          out += c;
        }
    }
  }
  return out;
}

constexpr size_t kMaxTagTokens = 2000;

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      const size_t start = FindTagStart(pos_);
      if (start == std::string::npos) {
        EmitData(src_.substr(pos_), line_);
        break;
      }
      RETURN_IF_ERROR(LexTag(start));
    }
    tokens_.push_back({TokenType::kEof, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t FindTagStart(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }

  void Advance(size_t to) {
    line_ += static_cast<int>(std::count(src_.begin() + pos_, src_.begin() + to, '\n'));
    pos_ = to;
  }

  void EmitData(std::string text, int line) {
    if (!text.empty()) tokens_.push_back({TokenType::kData, std::move(text), line});
  }

  // The data before a tag, after `{%-` stripping or lstrip_blocks.
  std::string LeadingText(size_t start, char kind, char sign) const {
    std::string text = src_.substr(pos_, start - pos_);
    if (sign == '-') {
      while (!text.empty() && IsSpace(text.back())) text.pop_back();
    } else if (sign != '+' && kind != '{') {
      const size_t nl = text.rfind('\n');
      const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting_) &&
          text.find_first_not_of(" \t", l_pos) == std::string::npos) {
        text.resize(l_pos);
      }
    }
    return text;
  }

  absl::Status LexTag(size_t start) {
    const char kind = src_[start + 1];
    const char sign = start + 2 < src_.size() ? src_[start + 2] : '\0';
    const bool has_sign = sign == '-' || (sign == '+' && kind != '{');
    EmitData(LeadingText(start, kind, has_sign ? sign : '\0'), line_);
    Advance(start);
    const int tag_line = line_;
    Advance(start + 2 + (has_sign ? 1 : 0));
    if (kind == '#') return LexComment(tag_line);
    tokens_.push_back({kind == '{' ? TokenType::kVarBegin : TokenType::kBlockBegin,
                       kind == '{' ? "{{" : "{%", tag_line});
    return LexInsideTag(kind, tag_line);
  }

  // After a tag end: `-` strips all following whitespace; otherwise trim_blocks eats one "\n"
  // after `%}` and `#}` unless the tag ended with `+`.
  void AfterTagEnd(size_t end_pos, char sign, bool is_block) {
    size_t p = end_pos;
    if (sign == '-') {
      while (p < src_.size() && IsSpace(src_[p])) ++p;
    } else if (sign != '+' && is_block && p < src_.size() && src_[p] == '\n') {
      ++p;
    }
    line_starting_ = p > 0 && src_[p - 1] == '\n';
    Advance(p);
  }

  absl::Status LexComment(int tag_line) {
    const size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) return LexError(tag_line, "unterminated comment '{#'");
    char sign = '\0';
    if (end > pos_ && (src_[end - 1] == '-' || src_[end - 1] == '+')) sign = src_[end - 1];
    AfterTagEnd(end + 2, sign, /*is_block=*/true);
    return absl::OkStatus();
  }

  // True (and consumes it) when the tag's end marker starts at pos_.
  bool TryTagEnd(char kind) {
    const std::string_view rest(src_.data() + pos_, src_.size() - pos_);
    const std::string_view end = kind == '{' ? "}}" : "%}";
    char sign = '\0';
    size_t len = 0;
    if (rest.size() >= 3 && (rest[0] == '-' || (rest[0] == '+' && kind == '%')) &&
        rest.substr(1, 2) == end) {
      sign = rest[0];
      len = 3;
    } else if (rest.substr(0, 2) == end) {
      len = 2;
    } else {
      return false;
    }
    tokens_.push_back({kind == '{' ? TokenType::kVarEnd : TokenType::kBlockEnd,
                       std::string(end), line_});
    AfterTagEnd(pos_ + len, sign, kind == '%');
    return true;
  }

  absl::Status LexInsideTag(char kind, int tag_line) {
    int depth = 0;
    const size_t first_token = tokens_.size();
    while (true) {
      // Bounds the depth of the expression tree a tag can build, so evaluating and freeing it
      // cannot exhaust the stack.
      if (tokens_.size() - first_token > kMaxTagTokens) {
        return LexError(tag_line, StrCat("tag longer than ", kMaxTagTokens, " tokens"));
      }
      size_t p = pos_;
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      Advance(p);
      if (pos_ >= src_.size()) {
        return LexError(tag_line, kind == '{' ? "unterminated tag '{{'" : "unterminated tag '{%'");
      }
      if (depth == 0 && TryTagEnd(kind)) return absl::OkStatus();
      RETURN_IF_ERROR(LexToken(&depth));
    }
  }

  absl::Status LexToken(int* depth) {
    const char c = src_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') return LexName();
    if (std::isdigit(static_cast<unsigned char>(c))) return LexNumber();
    if (c == '\'' || c == '"') return LexString(c);
    static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", "<=", ">="};
    for (std::string_view op : kTwoChar) {
      if (src_.compare(pos_, 2, op) == 0) {
        tokens_.push_back({TokenType::kOp, std::string(op), line_});
        Advance(pos_ + 2);
        return absl::OkStatus();
      }
    }
    if (std::string_view("+-*/%~<>=()[]{},.:|;").find(c) == std::string_view::npos) {
      return LexError(line_, StrCat("unexpected character '", std::string(1, c), "' in tag"));
    }
    if (c == '(' || c == '[' || c == '{') ++*depth;
    if ((c == ')' || c == ']' || c == '}') && --*depth < 0) {
      return LexError(line_, StrCat("unbalanced '", std::string(1, c), "'"));
    }
    tokens_.push_back({TokenType::kOp, std::string(1, c), line_});
    Advance(pos_ + 1);
    return absl::OkStatus();
  }

  absl::Status LexName() {
    size_t p = pos_;
    while (p < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) {
      ++p;
    }
    tokens_.push_back({TokenType::kName, src_.substr(pos_, p - pos_), line_});
    Advance(p);
    return absl::OkStatus();
  }

  absl::Status LexNumber() {
    auto digits = [&](size_t p) {
      while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) ++p;
      return p;
    };
    size_t p = digits(pos_);
    bool is_float = false;
    // `x.0` is attribute 0, not a float: jinja2 only reads a fraction after a digit run that
    // does not follow a dot.
    const bool after_dot = !tokens_.empty() && tokens_.back().type == TokenType::kOp &&
                           tokens_.back().text == ".";
    if (!after_dot && p + 1 < src_.size() && src_[p] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[p + 1]))) {
      p = digits(p + 1);
      is_float = true;
    }
    if (!after_dot && p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
        p = digits(q);
        is_float = true;
      }
    }
    std::string text = src_.substr(pos_, p - pos_);
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    tokens_.push_back({is_float ? TokenType::kFloat : TokenType::kInt, std::move(text), line_});
    Advance(p);
    return absl::OkStatus();
  }

  absl::Status LexString(char quote) {
    size_t p = pos_ + 1;
    while (p < src_.size() && src_[p] != quote) p += src_[p] == '\\' ? 2 : 1;
    if (p >= src_.size()) return LexError(line_, "unterminated string literal");
    ASSIGN_OR_RETURN(std::string value,
                     Unescape(std::string_view(src_).substr(pos_ + 1, p - pos_ - 1), line_));
    tokens_.push_back({TokenType::kString, std::move(value), line_});
    Advance(p + 1);
    return absl::OkStatus();
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Lex(std::string_view source) {
  return Lexer(NormalizeSource(source)).Run();
}

}  // namespace strata::engine::jinja
