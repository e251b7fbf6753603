// KV page codecs; the byte layouts are documented in kv_codec.h. Per-token codecs encode one
// (token, head) row at a time (EncodeRow), KIVI a 32-token group at a time (EncodeKiviKeys,
// EncodeKiviValueRow). Decoding always goes one row at a time through DecodeRow, which both
// DecodePage and the attention kernels' DecodeHeadRows use, so every consumer sees the same f32
// values.
#include "kernels/kv_codec.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/dtype.h"

#include "kernels/cpu/cpu_simd.h"  // immintrin.h without GCC 12.2's false warnings

namespace strata::kernels {
namespace {

constexpr float kFp8Max = 448.0f;
constexpr float kInt8Max = 127.0f;
constexpr int32_t kMaxHeadDim = 1 << 12;  // KvPageFormat::Validate's cap

enum class Side { kKey = 0, kValue = 1 };

float LoadF32(const std::byte* p) {
  float x;
  std::memcpy(&x, p, 4);
  return x;
}

void StoreF32(std::byte* p, float x) { std::memcpy(p, &x, 4); }

uint16_t LoadU16(const std::byte* p) {
  uint16_t x;
  std::memcpy(&x, p, 2);
  return x;
}

void StoreU16(std::byte* p, uint16_t x) { std::memcpy(p, &x, 2); }

// m >> shift, rounded to nearest even.  REQUIRES: 1 <= shift <= 31.
uint32_t ShiftRne(uint32_t m, int shift) {
  const uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  return q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
}

bool HasTokenScales(KvCodec codec) { return codec == KvCodec::kFp8 || codec == KvCodec::kInt8; }

// Decoded values of the 256 fp8 e4m3fn codes.
std::array<float, 256> MakeFp8Table() {
  std::array<float, 256> table;
  for (uint32_t c = 0; c < 256; ++c) {
    const uint32_t exp = (c >> 3) & 0xfu, mant = c & 7u;
    float mag;
    if (exp == 15 && mant == 7) {
      mag = std::numeric_limits<float>::quiet_NaN();
    } else if (exp == 0) {
      mag = static_cast<float>(mant) * 0x1p-9f;
    } else {
      mag = std::bit_cast<float>(((exp + 120u) << 23) | (mant << 20));
    }
    table[c] = (c & 0x80u) ? -mag : mag;
  }
  return table;
}

const std::array<float, 256> kFp8Table = MakeFp8Table();

// Row-major [tokens][heads] (fp8/int8 scales) or [groups][heads][channels] offsets, in bytes.
size_t RowIndex(const KvPageFormat& f, int32_t token, int32_t head) {
  return static_cast<size_t>(token) * f.num_kv_heads + head;
}

size_t CodeRowOffset(const KvPageFormat& f, Side side, int32_t token, int32_t head) {
  const size_t base = side == Side::kKey ? f.KCodesOffset() : f.VCodesOffset();
  return base + RowIndex(f, token, head) * f.RowBytes();
}

// fp8/int8: offset of the scale of (side, token, head).
size_t TokenScaleOffset(const KvPageFormat& f, Side side, int32_t token, int32_t head) {
  const size_t base = side == Side::kKey ? f.KStatsOffset() : f.VStatsOffset();
  return base + RowIndex(f, token, head) * 4;
}

// kivi keys: offsets of the f16 min[slot][head][0] and scale[slot][head][0].
size_t KeyMinOffset(const KvPageFormat& f, int32_t slot, int32_t head) {
  return f.KStatsOffset() + (static_cast<size_t>(slot) * f.num_kv_heads + head) * f.head_dim * 2;
}
size_t KeyScaleOffset(const KvPageFormat& f, int32_t slot, int32_t head) {
  return KeyMinOffset(f, slot, head) +
         static_cast<size_t>(f.KeyStatGroups()) * f.num_kv_heads * f.head_dim * 2;
}

// kivi values: offsets of the f16 min[token][head][0] and scale[token][head][0].
size_t ValueMinOffset(const KvPageFormat& f, int32_t token, int32_t head) {
  return f.VStatsOffset() + RowIndex(f, token, head) * f.ValueStatGroups() * 2;
}
size_t ValueScaleOffset(const KvPageFormat& f, int32_t token, int32_t head) {
  return ValueMinOffset(f, token, head) +
         static_cast<size_t>(f.block_size) * f.num_kv_heads * f.ValueStatGroups() * 2;
}

// Max-abs scale for fp8 / int8: amax / max_code, 1 for an all-zero (or unusable) vector.
float AbsMaxScale(const float* x, int32_t n, float max_code) {
  float amax = 0.0f;
  for (int32_t i = 0; i < n; ++i) amax = std::max(amax, std::abs(x[i]));
  const float scale = amax / max_code;
  return (scale > 0.0f && std::isfinite(scale)) ? scale : 1.0f;
}

// The f16 neighbours of a finite code toward +inf / -inf (across zero: -0 -> +2^-24, +0 -> -2^-24).
uint16_t NextF16Up(uint16_t code) {
  if (code == 0x8000u) return 0x0001u;
  return static_cast<uint16_t>((code & 0x8000u) ? code - 1 : code + 1);
}
uint16_t NextF16Down(uint16_t code) {
  if (code == 0x0000u) return 0x8001u;
  return static_cast<uint16_t>((code & 0x8000u) ? code + 1 : code - 1);
}

// +-inf becomes +-65504: KIVI stats stay finite (inputs beyond the f16 range are clamped).
uint16_t SaturateF16(uint16_t code) {
  return (code & 0x7fffu) == 0x7c00u ? static_cast<uint16_t>((code & 0x8000u) | 0x7bffu) : code;
}

// The largest f16 <= x. One step from the nearest code is enough. NaN stays NaN.
uint16_t F16AtMost(float x) {
  uint16_t code = EncodeFp16(x);
  if (DecodeFp16(code) > x) code = NextF16Down(code);
  return SaturateF16(code);
}

// The smallest f16 >= x.  REQUIRES: x <= 65504 (or NaN). float(x) is within 2^-24 relative of
// x, far inside one f16 step, so one step from the nearest code of float(x) is enough.
uint16_t F16AtLeast(double x) {
  uint16_t code = EncodeFp16(static_cast<float>(x));
  if (DecodeFp16(code) < x) code = NextF16Up(code);
  return SaturateF16(code);
}

// A KIVI group's stats as stored (f16 codes) and as decoded (what the codes are computed
// against, and what DecodeRow reads back).
struct KiviStats {
  uint16_t min_code = 0, scale_code = 0;
  float min = 0.0f, scale = 0.0f;
};

// Stats of n values `stride` floats apart for b-bit codes: min rounded down to f16, then the
// smallest f16 scale with stored_min + max_code * scale >= max, so the group fits [0, max_code].
// Beyond the f16 range the stats saturate (min to -65504 or 65504, scale to [0, 65504]) and the
// codes clamp.
KiviStats GroupStats(const float* x, int32_t n, int64_t stride, uint32_t max_code) {
  float lo = x[0], hi = x[0];
  for (int32_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i * stride]);
    hi = std::max(hi, x[i * stride]);
  }
  KiviStats st;
  st.min_code = F16AtMost(lo);
  st.min = DecodeFp16(st.min_code);
  st.scale_code = F16AtLeast(std::clamp((double{hi} - st.min) / max_code, 0.0, 65504.0));
  st.scale = DecodeFp16(st.scale_code);
  return st;
}

// round((x - min) / scale) clamped to [0, max_code]; 0 when scale is 0 or anything is NaN.
uint32_t KiviCode(float x, float min, float scale, uint32_t max_code) {
  if (!(scale > 0.0f)) return 0;
  const float q = std::nearbyint((x - min) / scale);
  if (!(q >= 0.0f)) return 0;
  return static_cast<uint32_t>(std::min(q, static_cast<float>(max_code)));
}

// ORs `code` into channel d of a packed row.
void PackCode(std::byte* row, int32_t d, int32_t bits, uint32_t code) {
  const int32_t bit = d * bits;
  row[bit / 8] |= static_cast<std::byte>(code << (bit % 8));
}

// codes[i] = channel i of a packed row, i < d.  REQUIRES: d * bits % 8 == 0.
void UnpackRow(const std::byte* row, int32_t d, int32_t bits, uint8_t* codes) {
  const int32_t per_byte = 8 / bits;
  const uint32_t mask = (1u << bits) - 1u;
  for (int32_t byte = 0; byte < d / per_byte; ++byte) {
    const uint32_t packed = static_cast<uint32_t>(row[byte]);
    for (int32_t j = 0; j < per_byte; ++j) {
      codes[byte * per_byte + j] = static_cast<uint8_t>((packed >> (j * bits)) & mask);
    }
  }
}

// One (token, head) row of a per-token codec from src[D].
void EncodeRow(const KvPageFormat& f, std::byte* page, Side side, int32_t token, int32_t head,
               const float* src) {
  const int32_t d = f.head_dim;
  std::byte* row = page + CodeRowOffset(f, side, token, head);
  switch (f.codec) {
    case KvCodec::kF32:
      std::memcpy(row, src, d * sizeof(float));
      return;
    case KvCodec::kBf16:
    case KvCodec::kFp16:
      for (int32_t i = 0; i < d; ++i) {
        const uint16_t code = f.codec == KvCodec::kBf16 ? EncodeBf16(src[i]) : EncodeFp16(src[i]);
        std::memcpy(row + 2 * i, &code, 2);
      }
      return;
    case KvCodec::kFp8:
    case KvCodec::kInt8: {
      const bool fp8 = f.codec == KvCodec::kFp8;
      const float scale = AbsMaxScale(src, d, fp8 ? kFp8Max : kInt8Max);
      StoreF32(page + TokenScaleOffset(f, side, token, head), scale);
      for (int32_t i = 0; i < d; ++i) {
        const float x = src[i] / scale;
        row[i] = static_cast<std::byte>(
            fp8 ? EncodeFp8E4m3(x)
                : static_cast<uint8_t>(static_cast<int8_t>(
                      std::clamp(std::nearbyint(x), -kInt8Max, kInt8Max))));
      }
      return;
    }
    case KvCodec::kKivi4:
    case KvCodec::kKivi2:
      break;  // whole groups only: EncodeKiviGroup
  }
}

// d bf16 or fp16 codes to f32. The AVX-512 conversions are exact, like the scalar ones; the
// only difference is that vcvtph2ps quiets a signalling fp16 NaN.
void DecodeHalfRow(const std::byte* row, int32_t d, bool bf16, float* dst) {
  int32_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= d; i += 16) {
    const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i));
    const __m512 x = bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(codes), 16))
                          : _mm512_cvtph_ps(codes);
    _mm512_storeu_ps(dst + i, x);
  }
#endif
  for (; i < d; ++i) {
    uint16_t code;
    std::memcpy(&code, row + 2 * i, 2);
    dst[i] = bf16 ? DecodeBf16(code) : DecodeFp16(code);
  }
}

// dst[i] = decode(row[i]) * scale for d fp8 or int8 codes (one rounding, as in the scalar loop).
void DecodeByteRow(const std::byte* row, int32_t d, bool fp8, float scale, float* dst) {
  int32_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= d; i += 16) {
    const __m128i codes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i));
    const __m512 x = fp8 ? _mm512_i32gather_ps(_mm512_cvtepu8_epi32(codes), kFp8Table.data(), 4)
                         : _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes));
    _mm512_storeu_ps(dst + i, _mm512_mul_ps(x, _mm512_set1_ps(scale)));
  }
#endif
  for (; i < d; ++i) {
    const uint8_t code = static_cast<uint8_t>(row[i]);
    dst[i] = (fp8 ? kFp8Table[code] : static_cast<float>(static_cast<int8_t>(code))) * scale;
  }
}

// dst[i] = min[i] + codes[i] * scale[i] for i < n, with n f16 mins and scales (KIVI keys).
// vcvtph2ps is exact, like DecodeFp16, and both paths round the product, then the sum.
void DequantizeChannels(const uint8_t* codes, int32_t n, const std::byte* mins,
                        const std::byte* scales, float* dst) {
  int32_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    const __m512 c = _mm512_cvtepi32_ps(
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i))));
    const __m512 lo =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mins + 2 * i)));
    const __m512 sc =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales + 2 * i)));
    _mm512_storeu_ps(dst + i, _mm512_add_ps(lo, _mm512_mul_ps(c, sc)));
  }
#endif
  for (; i < n; ++i) {
    dst[i] = DecodeFp16(LoadU16(mins + 2 * i)) +
             static_cast<float>(codes[i]) * DecodeFp16(LoadU16(scales + 2 * i));
  }
}

// dst[i] = min + codes[i] * scale for i < n (one KIVI value channel group).
void DequantizeUniform(const uint8_t* codes, int32_t n, float min, float scale, float* dst) {
  int32_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    const __m512 c = _mm512_cvtepi32_ps(
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i))));
    _mm512_storeu_ps(dst + i,
                     _mm512_add_ps(_mm512_set1_ps(min), _mm512_mul_ps(c, _mm512_set1_ps(scale))));
  }
#endif
  for (; i < n; ++i) dst[i] = min + static_cast<float>(codes[i]) * scale;
}

// One KIVI (token, head) row back to dst[D]: keys through the token's group's per-channel stats,
// values through the row's per-channel-group stats.
void DecodeKiviRow(const KvPageFormat& f, const std::byte* page, Side side, int32_t token,
                   int32_t head, float* dst) {
  const int32_t d = f.head_dim;
  uint8_t codes[kMaxHeadDim];
  UnpackRow(page + CodeRowOffset(f, side, token, head), d, f.CodeBits(), codes);
  if (side == Side::kKey) {
    const int32_t slot = token / kKiviGroupTokens;
    DequantizeChannels(codes, d, page + KeyMinOffset(f, slot, head),
                       page + KeyScaleOffset(f, slot, head), dst);
    return;
  }
  const std::byte* mins = page + ValueMinOffset(f, token, head);
  const std::byte* scales = page + ValueScaleOffset(f, token, head);
  for (int32_t g = 0; g < f.ValueStatGroups(); ++g) {
    const int32_t begin = g * kKiviChannelGroup;
    DequantizeUniform(codes + begin, std::min(kKiviChannelGroup, d - begin),
                      DecodeFp16(LoadU16(mins + 2 * g)), DecodeFp16(LoadU16(scales + 2 * g)),
                      dst + begin);
  }
}

// One (token, head) row back to dst[D].
void DecodeRow(const KvPageFormat& f, const std::byte* page, Side side, int32_t token,
               int32_t head, float* dst) {
  const int32_t d = f.head_dim;
  const std::byte* row = page + CodeRowOffset(f, side, token, head);
  switch (f.codec) {
    case KvCodec::kF32:
      std::memcpy(dst, row, d * sizeof(float));
      return;
    case KvCodec::kBf16:
    case KvCodec::kFp16:
      DecodeHalfRow(row, d, f.codec == KvCodec::kBf16, dst);
      return;
    case KvCodec::kFp8:
    case KvCodec::kInt8:
      DecodeByteRow(row, d, f.codec == KvCodec::kFp8,
                    LoadF32(page + TokenScaleOffset(f, side, token, head)), dst);
      return;
    case KvCodec::kKivi4:
    case KvCodec::kKivi2:
      DecodeKiviRow(f, page, side, token, head, dst);
      return;
  }
}

// KIVI keys of the group at tokens [first, first + 32): per (head, channel) stats over the
// group's tokens in key-stat slot first / 32, then the codes.
void EncodeKiviKeys(const KvPageFormat& f, std::byte* page, int32_t first, const float* k) {
  const int32_t h_count = f.num_kv_heads, d = f.head_dim, bits = f.CodeBits();
  const uint32_t max_code = (1u << bits) - 1u;
  const int64_t token_floats = static_cast<int64_t>(h_count) * d;
  const int32_t slot = first / kKiviGroupTokens;
  std::vector<KiviStats> stats(d);
  for (int32_t h = 0; h < h_count; ++h) {
    for (int32_t i = 0; i < d; ++i) {
      stats[i] = GroupStats(k + h * d + i, kKiviGroupTokens, token_floats, max_code);
      StoreU16(page + KeyMinOffset(f, slot, h) + 2 * i, stats[i].min_code);
      StoreU16(page + KeyScaleOffset(f, slot, h) + 2 * i, stats[i].scale_code);
    }
    for (int32_t t = 0; t < kKiviGroupTokens; ++t) {
      std::byte* row = page + CodeRowOffset(f, Side::kKey, first + t, h);
      std::fill(row, row + f.RowBytes(), std::byte{0});
      const float* src = k + t * token_floats + h * d;
      for (int32_t i = 0; i < d; ++i) {
        PackCode(row, i, bits, KiviCode(src[i], stats[i].min, stats[i].scale, max_code));
      }
    }
  }
}

// KIVI values of one token: per (head, channel group) stats.
void EncodeKiviValueRow(const KvPageFormat& f, std::byte* page, int32_t token, int32_t head,
                        const float* src) {
  const int32_t d = f.head_dim, bits = f.CodeBits();
  const uint32_t max_code = (1u << bits) - 1u;
  std::byte* row = page + CodeRowOffset(f, Side::kValue, token, head);
  std::fill(row, row + f.RowBytes(), std::byte{0});
  for (int32_t g = 0; g < f.ValueStatGroups(); ++g) {
    const int32_t begin = g * kKiviChannelGroup, end = std::min(d, begin + kKiviChannelGroup);
    const KiviStats st = GroupStats(src + begin, end - begin, 1, max_code);
    StoreU16(page + ValueMinOffset(f, token, head) + 2 * g, st.min_code);
    StoreU16(page + ValueScaleOffset(f, token, head) + 2 * g, st.scale_code);
    for (int32_t i = begin; i < end; ++i) {
      PackCode(row, i, bits, KiviCode(src[i], st.min, st.scale, max_code));
    }
  }
}

absl::Status CheckPage(const KvPageFormat& f, size_t page_bytes, const char* op) {
  RETURN_IF_ERROR(f.Validate());
  if (page_bytes < f.PageBytes()) {
    return absl::InvalidArgumentError(StrCat(op, ": page has ", page_bytes, " bytes, ",
                                             CodecName(f.codec), " needs ", f.PageBytes()));
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view CodecName(KvCodec codec) {
  switch (codec) {
    case KvCodec::kF32: return "fp32";
    case KvCodec::kBf16: return "bf16";
    case KvCodec::kFp16: return "fp16";
    case KvCodec::kFp8: return "fp8";
    case KvCodec::kInt8: return "int8";
    case KvCodec::kKivi4: return "kivi4";
    case KvCodec::kKivi2: return "kivi2";
  }
  return "?";
}

std::optional<KvCodec> ParseCodec(std::string_view name) {
  for (KvCodec codec : {KvCodec::kF32, KvCodec::kBf16, KvCodec::kFp16, KvCodec::kFp8,
                        KvCodec::kInt8, KvCodec::kKivi4, KvCodec::kKivi2}) {
    if (CodecName(codec) == name) return codec;
  }
  return std::nullopt;
}

absl::Status KvPageFormat::Validate() const {
  // The caps keep every byte offset well inside size_t and int64 arithmetic.
  if (block_size <= 0 || num_kv_heads <= 0 || head_dim <= 0 || block_size > (1 << 16) ||
      num_kv_heads > (1 << 10) || head_dim > kMaxHeadDim ||
      static_cast<int>(codec) > static_cast<int>(KvCodec::kKivi2)) {
    return absl::InvalidArgumentError(StrCat("KV page format: bad shape (block_size=", block_size,
                                             " kv_heads=", num_kv_heads, " head_dim=", head_dim,
                                             ")"));
  }
  if (IsKivi(codec)) {
    if (block_size % kKiviGroupTokens != 0) {
      return absl::InvalidArgumentError(StrCat(CodecName(codec), " needs block_size a multiple ",
                                               "of ", kKiviGroupTokens, ", got ", block_size));
    }
    if (head_dim * CodeBits() % 8 != 0) {
      return absl::InvalidArgumentError(StrCat(CodecName(codec), " needs head_dim * ", CodeBits(),
                                               " bits to be whole bytes, got head_dim ",
                                               head_dim));
    }
  }
  return absl::OkStatus();
}

int32_t KvPageFormat::CodeBits() const {
  switch (codec) {
    case KvCodec::kF32: return 32;
    case KvCodec::kBf16:
    case KvCodec::kFp16: return 16;
    case KvCodec::kFp8:
    case KvCodec::kInt8: return 8;
    case KvCodec::kKivi4: return 4;
    case KvCodec::kKivi2: return 2;
  }
  return 32;
}

size_t KvPageFormat::RowBytes() const { return static_cast<size_t>(head_dim) * CodeBits() / 8; }

int32_t KvPageFormat::KeyStatGroups() const {
  return IsKivi(codec) ? block_size / kKiviGroupTokens : 0;
}

int32_t KvPageFormat::ValueStatGroups() const {
  return IsKivi(codec) ? (head_dim + kKiviChannelGroup - 1) / kKiviChannelGroup : 0;
}

size_t KvPageFormat::VCodesOffset() const {
  return static_cast<size_t>(block_size) * num_kv_heads * RowBytes();
}

size_t KvPageFormat::KStatsOffset() const { return 2 * VCodesOffset(); }

size_t KvPageFormat::VStatsOffset() const {
  const size_t rows = static_cast<size_t>(block_size) * num_kv_heads;
  if (HasTokenScales(codec)) return KStatsOffset() + rows * 4;
  // KIVI: f16 mins then f16 scales, [Gk][H][D] each.
  return KStatsOffset() + static_cast<size_t>(KeyStatGroups()) * num_kv_heads * head_dim * 2 * 2;
}

size_t KvPageFormat::PageBytes() const {
  const size_t rows = static_cast<size_t>(block_size) * num_kv_heads;
  if (HasTokenScales(codec)) return VStatsOffset() + rows * 4;
  return VStatsOffset() + rows * ValueStatGroups() * 2 * 2;  // f16 mins and scales, [B][H][Gv]
}

double BytesPerToken(const KvPageFormat& format) {
  return static_cast<double>(format.PageBytes()) / format.block_size;
}

uint16_t EncodeBf16(float x) { return F32ToBf16(x); }
float DecodeBf16(uint16_t code) { return Bf16ToF32(code); }

uint16_t EncodeFp16(float x) {
  uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  bits &= 0x7fffffffu;
  if (bits > 0x7f800000u) {  // NaN: keep the top payload bits, stay a NaN
    const uint16_t mant = static_cast<uint16_t>((bits >> 13) & 0x3ffu);
    return sign | 0x7c00u | (mant != 0 ? mant : 0x200u);
  }
  if (bits >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 (and inf) rounds to inf
  const uint32_t exp = bits >> 23;
  if (exp >= 113) {  // normal half: >= 2^-14
    uint32_t h = ((exp - 112) << 10) | ((bits & 0x7fffffu) >> 13);
    const uint32_t rem = bits & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry may reach the exponent
    return static_cast<uint16_t>(sign | h);
  }
  if (exp < 102) return sign;  // below half the smallest subnormal (2^-25)
  // Subnormal half: value / 2^-24 = mantissa (with its leading 1) >> (126 - exp).
  return static_cast<uint16_t>(sign | ShiftRne((bits & 0x7fffffu) | 0x800000u, 126 - exp));
}

float DecodeFp16(uint16_t code) { return F16ToF32(code); }

uint8_t EncodeFp8E4m3(float x) {
  uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  bits &= 0x7fffffffu;
  if (bits > 0x7f800000u) return sign | 0x7fu;   // NaN
  if (bits >= 0x43e00000u) return sign | 0x7eu;  // >= 448 (and inf) saturates
  const uint32_t exp = bits >> 23;
  if (exp >= 121) {  // normal e4m3: >= 2^-6; below 448 rounding stops at 0x7e
    uint32_t c = ((exp - 120) << 3) | ((bits & 0x7fffffu) >> 20);
    const uint32_t rem = bits & 0xfffffu;
    if (rem > 0x80000u || (rem == 0x80000u && (c & 1u))) ++c;
    return static_cast<uint8_t>(sign | c);
  }
  if (exp < 117) return sign;  // below half the smallest subnormal (2^-10)
  // Subnormal e4m3: value / 2^-9 = mantissa (with its leading 1) >> (141 - exp).
  return static_cast<uint8_t>(sign | ShiftRne((bits & 0x7fffffu) | 0x800000u, 141 - exp));
}

float DecodeFp8E4m3(uint8_t code) { return kFp8Table[code]; }

absl::Status EncodeTokens(const KvPageFormat& format, std::span<std::byte> page, int32_t first,
                          int32_t count, const float* k, const float* v) {
  RETURN_IF_ERROR(CheckPage(format, page.size(), "EncodeTokens"));
  if (IsKivi(format.codec)) {
    return absl::InvalidArgumentError(StrCat("EncodeTokens: ", CodecName(format.codec),
                                             " pages are written a 32-token group at a time"));
  }
  if (first < 0 || count < 0 || first > format.block_size - count ||
      (count > 0 && (k == nullptr || v == nullptr))) {
    return absl::InvalidArgumentError(StrCat("EncodeTokens: tokens [", first, ", +", count,
                                             ") of a ", format.block_size, "-token page"));
  }
  const int64_t token_floats = static_cast<int64_t>(format.num_kv_heads) * format.head_dim;
  for (int32_t t = 0; t < count; ++t) {
    for (int32_t h = 0; h < format.num_kv_heads; ++h) {
      const int64_t src = t * token_floats + h * format.head_dim;
      EncodeRow(format, page.data(), Side::kKey, first + t, h, k + src);
      EncodeRow(format, page.data(), Side::kValue, first + t, h, v + src);
    }
  }
  return absl::OkStatus();
}

absl::Status EncodeKiviGroup(const KvPageFormat& format, std::span<std::byte> page, int32_t first,
                             const float* k, const float* v) {
  RETURN_IF_ERROR(CheckPage(format, page.size(), "EncodeKiviGroup"));
  if (!IsKivi(format.codec) || k == nullptr || v == nullptr) {
    return absl::InvalidArgumentError(StrCat("EncodeKiviGroup: needs a kivi codec and k, v, got ",
                                             CodecName(format.codec)));
  }
  if (first < 0 || first % kKiviGroupTokens != 0 ||
      first > format.block_size - kKiviGroupTokens) {
    return absl::InvalidArgumentError(StrCat("EncodeKiviGroup: group at token ", first, " of a ",
                                             format.block_size, "-token page (needs a multiple ",
                                             "of 32 inside the page)"));
  }
  EncodeKiviKeys(format, page.data(), first, k);
  const int64_t token_floats = static_cast<int64_t>(format.num_kv_heads) * format.head_dim;
  for (int32_t t = 0; t < kKiviGroupTokens; ++t) {
    for (int32_t h = 0; h < format.num_kv_heads; ++h) {
      EncodeKiviValueRow(format, page.data(), first + t, h,
                         v + t * token_floats + h * format.head_dim);
    }
  }
  return absl::OkStatus();
}

absl::Status DecodePage(const KvPageFormat& format, std::span<const std::byte> page,
                        int32_t count, float* k, float* v) {
  RETURN_IF_ERROR(CheckPage(format, page.size(), "DecodePage"));
  if (count < 0 || count > format.block_size || (count > 0 && (k == nullptr || v == nullptr))) {
    return absl::InvalidArgumentError(StrCat("DecodePage: ", count, " tokens of a ",
                                             format.block_size, "-token page"));
  }
  const int64_t token_floats = static_cast<int64_t>(format.num_kv_heads) * format.head_dim;
  for (int32_t t = 0; t < count; ++t) {
    for (int32_t h = 0; h < format.num_kv_heads; ++h) {
      const int64_t dst = t * token_floats + h * format.head_dim;
      DecodeRow(format, page.data(), Side::kKey, t, h, k + dst);
      DecodeRow(format, page.data(), Side::kValue, t, h, v + dst);
    }
  }
  return absl::OkStatus();
}

void DecodeHeadRows(const KvPageFormat& format, const std::byte* page, int32_t kv_head,
                    int32_t count, float* k_rows, float* v_rows) {
  for (int32_t t = 0; t < count; ++t) {
    DecodeRow(format, page, Side::kKey, t, kv_head, k_rows + t * format.head_dim);
    DecodeRow(format, page, Side::kValue, t, kv_head, v_rows + t * format.head_dim);
  }
}

}  // namespace strata::kernels
