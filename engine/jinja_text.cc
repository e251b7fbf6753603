#include "engine/jinja_text.h"

#include <cctype>

#include "engine/jinja_value.h"

namespace strata::engine::jinja {
namespace {

// Decodes the code point of a (valid or not) UTF-8 sequence; invalid bytes decode to themselves.
uint32_t DecodeUtf8(std::string_view c) {
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(c[i])); };
  if (c.size() == 2) return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
  if (c.size() == 3) return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  if (c.size() == 4) {
    return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
  return b(0);
}

bool IsPySpace(std::string_view c) {
  const uint32_t cp = DecodeUtf8(c);
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Strips code points matching `pred` from the ends of `s`.
template <typename Pred>
std::string_view StripIf(std::string_view s, bool left, bool right, Pred pred) {
  const std::vector<std::string_view> chars = Utf8Chars(s);
  size_t lo = 0, hi = chars.size();
  while (left && lo < hi && pred(chars[lo])) ++lo;
  while (right && hi > lo && pred(chars[hi - 1])) --hi;
  if (lo == hi) return s.substr(0, 0);
  const size_t begin = static_cast<size_t>(chars[lo].data() - s.data());
  const size_t end = static_cast<size_t>(chars[hi - 1].data() - s.data()) + chars[hi - 1].size();
  return s.substr(begin, end - begin);
}

bool IsAsciiAlpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
char Up(char c) { return static_cast<char>(std::toupper(static_cast<unsigned char>(c))); }
char Down(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

}  // namespace

std::string_view StripSpace(std::string_view s, bool left, bool right) {
  return StripIf(s, left, right, IsPySpace);
}

std::string StripChars(std::string_view s, std::string_view chars, bool left, bool right) {
  const std::vector<std::string_view> set = Utf8Chars(chars);
  auto in_set = [&](std::string_view c) {
    for (std::string_view x : set) {
      if (x == c) return true;
    }
    return false;
  };
  return std::string(StripIf(s, left, right, in_set));
}

std::vector<std::string> SplitWhitespace(std::string_view s, int64_t maxsplit) {
  std::vector<std::string> parts;
  const std::vector<std::string_view> chars = Utf8Chars(s);
  size_t i = 0;
  while (i < chars.size()) {
    while (i < chars.size() && IsPySpace(chars[i])) ++i;
    if (i == chars.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
      const size_t begin = static_cast<size_t>(chars[i].data() - s.data());
      parts.emplace_back(s.substr(begin));  // Python keeps the rest's trailing whitespace
      break;
    }
    std::string word;
    while (i < chars.size() && !IsPySpace(chars[i])) word += chars[i++];
    parts.push_back(std::move(word));
  }
  return parts;
}

std::vector<std::string> SplitOn(std::string_view s, std::string_view sep, int64_t maxsplit) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
    const size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) break;
    parts.emplace_back(s.substr(start, pos - start));
    start = pos + sep.size();
  }
  parts.emplace_back(s.substr(start));
  return parts;
}

std::vector<std::string> SplitLines(std::string_view s) {
  std::vector<std::string> lines;
  std::string cur;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\n' || c == '\r' || c == '\v' || c == '\f' || (c >= '\x1c' && c <= '\x1e')) {
      if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      lines.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) lines.push_back(std::move(cur));
  return lines;
}

std::string Replace(std::string_view s, std::string_view from, std::string_view to,
                    int64_t count) {
  std::string out;
  int64_t done = 0;
  if (from.empty()) {
    for (std::string_view c : Utf8Chars(s)) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      out += c;
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t start = 0;
  while (count < 0 || done < count) {
    const size_t pos = s.find(from, start);
    if (pos == std::string_view::npos) break;
    out.append(s.substr(start, pos - start));
    out.append(to);
    start = pos + from.size();
    ++done;
  }
  out.append(s.substr(start));
  return out;
}

int64_t CountOccurrences(std::string_view s, std::string_view sub) {
  if (sub.empty()) return static_cast<int64_t>(Utf8Length(s)) + 1;
  int64_t n = 0;
  for (size_t pos = s.find(sub); pos != std::string_view::npos; pos = s.find(sub, pos + sub.size())) {
    ++n;
  }
  return n;
}

std::string AsciiUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Up(c);
  return out;
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Down(c);
  return out;
}

std::string PyTitle(std::string_view s) {
  std::string out(s);
  bool prev_letter = false;
  for (char& c : out) {
    const bool letter = IsAsciiAlpha(c);
    c = letter ? (prev_letter ? Down(c) : Up(c)) : c;
    // Non-ASCII bytes belong to letters more often than not; treat them as cased.
    prev_letter = letter || (static_cast<unsigned char>(c) >= 0x80);
  }
  return out;
}

std::string JinjaTitle(std::string_view s) {
  std::string out(s);
  bool word_start = true;
  for (char& c : out) {
    const bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' ||
                     std::isspace(static_cast<unsigned char>(c));
    c = sep ? c : (word_start ? Up(c) : Down(c));
    word_start = sep;
  }
  return out;
}

std::string Capitalize(std::string_view s) {
  std::string out = AsciiLower(s);
  if (!out.empty()) out[0] = Up(out[0]);
  return out;
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace strata::engine::jinja
