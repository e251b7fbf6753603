#include "engine/tokenizer_unicode.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

namespace strata::engine::tokenizer_internal {
namespace {

constexpr char32_t kReplacement = 0xFFFD;
// The byte-level alphabet lies in U+0021..U+0143.
constexpr char32_t kMaxAlphabetCodePoint = 0x143;

// The byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes are
// moved to U+0100.. in byte order (GPT-2's bytes_to_unicode()).
struct ByteLevelTables {
  std::array<char32_t, 256> to_code_point{};
  std::array<std::string, 256> utf8;
  std::array<int16_t, kMaxAlphabetCodePoint + 1> to_byte{};  // -1: not in the alphabet
  ByteLevelTables() {
    to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_code_point[b] = printable ? static_cast<char32_t>(b) : next++;
      AppendUtf8(to_code_point[b], &utf8[b]);
      to_byte[to_code_point[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelTables& Tables() {
  static const ByteLevelTables tables;
  return tables;
}

const icu::Normalizer2* NormalizerFor(NormalForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case NormalForm::kNfc:
      n = icu::Normalizer2::getNFCInstance(status);
      break;
    case NormalForm::kNfd:
      n = icu::Normalizer2::getNFDInstance(status);
      break;
    case NormalForm::kNfkc:
      n = icu::Normalizer2::getNFKCInstance(status);
      break;
    case NormalForm::kNfkd:
      n = icu::Normalizer2::getNFKDInstance(status);
      break;
  }
  return U_SUCCESS(status) ? n : nullptr;
}

void AppendNormalizedRun(const icu::Normalizer2* normalizer, std::string_view run, bool ascii,
                         std::string* out) {
  // Every normal form leaves ASCII unchanged; skipping ICU there keeps English text fast.
  if (ascii || normalizer == nullptr) {
    out->append(run);
    return;
  }
  UErrorCode status = U_ZERO_ERROR;
  icu::UnicodeString src =
      icu::UnicodeString::fromUTF8(icu::StringPiece(run.data(), static_cast<int32_t>(run.size())));
  icu::UnicodeString dst = normalizer->normalize(src, status);
  if (U_FAILURE(status)) {
    out->append(run);
    return;
  }
  dst.toUTF8String(*out);
}

}  // namespace

Utf8Unit DecodeUtf8(std::string_view s, size_t pos) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) return {b0, 1, true};
  int num_continuation;
  char32_t cp;
  uint8_t lo = 0x80;
  uint8_t hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    num_continuation = 1;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    num_continuation = 2;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    num_continuation = 3;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {kReplacement, 1, false};
  }
  uint32_t len = 1;
  for (int i = 0; i < num_continuation; ++i) {
    if (pos + len >= s.size()) return {kReplacement, len, false};
    const auto b = static_cast<uint8_t>(s[pos + len]);
    if (b < lo || b > hi) return {kReplacement, len, false};
    cp = (cp << 6) | (b & 0x3F);
    ++len;
    lo = 0x80;
    hi = 0xBF;
  }
  return {cp, len, true};
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsValidUtf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    Utf8Unit u = DecodeUtf8(s, pos);
    if (!u.valid) return false;
    pos += u.length_bytes;
  }
  return true;
}

std::string Utf8Lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    Utf8Unit u = DecodeUtf8(bytes, pos);
    if (u.valid) {
      out.append(bytes.substr(pos, u.length_bytes));
    } else {
      AppendUtf8(kReplacement, &out);
    }
    pos += u.length_bytes;
  }
  return out;
}

uint8_t ClassifyCodePoint(char32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return kClassLetter;
    if (cp >= '0' && cp <= '9') return kClassNumber;
    if (cp == '\r' || cp == '\n') return kClassSpace | kClassNewline;
    if (cp == ' ' || (cp >= '\t' && cp <= '\r')) return kClassSpace;
    return 0;
  }
  const auto c = static_cast<UChar32>(cp);
  const uint32_t mask = U_GET_GC_MASK(c);
  if (mask & U_GC_L_MASK) return kClassLetter;
  if (mask & U_GC_N_MASK) return kClassNumber;
  if (u_isUWhiteSpace(c)) return kClassSpace;
  return 0;
}

bool IsWhiteSpace(char32_t cp) { return (ClassifyCodePoint(cp) & kClassSpace) != 0; }

std::string NormalizeUnicode(NormalForm form, std::string_view text) {
  const icu::Normalizer2* normalizer = NormalizerFor(form);
  std::string out;
  out.reserve(text.size());
  size_t run_start = 0;
  bool run_ascii = true;
  for (size_t pos = 0; pos < text.size();) {
    Utf8Unit u = DecodeUtf8(text, pos);
    if (!u.valid) {
      AppendNormalizedRun(normalizer, text.substr(run_start, pos - run_start), run_ascii, &out);
      out.append(text.substr(pos, u.length_bytes));
      run_start = pos + u.length_bytes;
      run_ascii = true;
    } else if (u.code_point >= 0x80) {
      run_ascii = false;
    }
    pos += u.length_bytes;
  }
  AppendNormalizedRun(normalizer, text.substr(run_start), run_ascii, &out);
  return out;
}

char32_t ByteToCodePoint(uint8_t byte) { return Tables().to_code_point[byte]; }

int CodePointToByte(char32_t cp) {
  if (cp > kMaxAlphabetCodePoint) return -1;
  return Tables().to_byte[cp];
}

const std::array<std::string, 256>& ByteLevelAlphabet() { return Tables().utf8; }

}  // namespace strata::engine::tokenizer_internal
