// String helpers of the chat-template interpreter with Python's str semantics (strip, split,
// title, splitlines, replace) on UTF-8 text. Case mapping is ASCII-only: non-ASCII letters are
// left unchanged (chat templates only case-map role names and keywords).
//
// Stateless; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace strata::engine::jinja {

// Python str.strip()/lstrip()/rstrip() without arguments: strips code points for which
// str.isspace() is true (ASCII whitespace, \x1c-\x1f, \x85, \xa0, U+1680, U+2000-U+200A,
// U+2028, U+2029, U+202F, U+205F, U+3000).
std::string_view StripSpace(std::string_view s, bool left, bool right);
// str.strip(chars): strips any of the code points in `chars`.
std::string StripChars(std::string_view s, std::string_view chars, bool left, bool right);
// str.split() (whitespace runs, no empty parts) and str.split(sep); maxsplit < 0 = no limit.
std::vector<std::string> SplitWhitespace(std::string_view s, int64_t maxsplit);
std::vector<std::string> SplitOn(std::string_view s, std::string_view sep, int64_t maxsplit);
// str.splitlines() (line ends dropped).
std::vector<std::string> SplitLines(std::string_view s);
// str.replace(old, new, count); count < 0 = all. An empty `old` inserts between code points.
std::string Replace(std::string_view s, std::string_view from, std::string_view to,
                    int64_t count);
int64_t CountOccurrences(std::string_view s, std::string_view sub);

std::string AsciiUpper(std::string_view s);
std::string AsciiLower(std::string_view s);
// str.title(): a letter after a non-letter is upper-cased, others lower-cased.
std::string PyTitle(std::string_view s);
// jinja2's title filter: words start after '-', whitespace, '(', '{', '[' or '<'.
std::string JinjaTitle(std::string_view s);
// str.capitalize(): first character upper-cased, the rest lower-cased.
std::string Capitalize(std::string_view s);
// markupsafe.escape: & < > " ' as &amp; &lt; &gt; &#34; &#39;.
std::string HtmlEscape(std::string_view s);

}  // namespace strata::engine::jinja
