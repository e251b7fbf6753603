// Unicode helpers for the tokenizer: lenient UTF-8 decoding (invalid bytes survive as their own
// units so byte-level and byte-fallback models still round-trip them), the character classes the
// pre-tokenizer regexes use (\p{L}, \p{N}, \s via ICU), NFC/NFKC/NFD/NFKD normalization, lossy
// UTF-8 repair as Rust's String::from_utf8_lossy does it, and GPT-2's byte <-> unicode map.
// Everything here is stateless or immutable after first use: callable from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace strata::engine::tokenizer_internal {

// One unit of a UTF-8 string. An ill-formed sequence becomes a unit with valid == false whose
// length is the Unicode "maximal subpart" (1..3 bytes), the unit that gets one U+FFFD.
struct Utf8Unit {
  char32_t code_point;  // U+FFFD when !valid
  uint32_t length_bytes;
  bool valid;
};

// REQUIRES: pos < s.size().
Utf8Unit DecodeUtf8(std::string_view s, size_t pos);
void AppendUtf8(char32_t code_point, std::string* out);
bool IsValidUtf8(std::string_view s);
// Each maximal ill-formed subpart becomes U+FFFD (what Rust's from_utf8_lossy does).
std::string Utf8Lossy(std::string_view bytes);

// Character classes as Oniguruma sees them in the pre-tokenizer regexes. An invalid unit is
// none of them (like U+FFFD, a symbol).
enum CharClass : uint8_t {
  kClassLetter = 1,   // \p{L}
  kClassNumber = 2,   // \p{N}
  kClassSpace = 4,    // \s (the White_Space property)
  kClassNewline = 8,  // [\r\n]
};
uint8_t ClassifyCodePoint(char32_t code_point);
bool IsWhiteSpace(char32_t code_point);

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
// Normalizes every well-formed run of `text`; ill-formed bytes are kept as they are.
std::string NormalizeUnicode(NormalForm form, std::string_view text);

// GPT-2's byte-level alphabet: byte b <-> one printable code point.
char32_t ByteToCodePoint(uint8_t byte);
// -1 when the code point is not in the alphabet.
int CodePointToByte(char32_t code_point);
// The UTF-8 spelling of ByteToCodePoint(b), for all 256 bytes.
const std::array<std::string, 256>& ByteLevelAlphabet();

}  // namespace strata::engine::tokenizer_internal
