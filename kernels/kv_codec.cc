// KV page codecs; the byte layouts are documented in kv_codec.h. Per-token codecs encode one
// (token, head) row at a time (EncodeRow), KIVI a 32-token group at a time (EncodeKiviKeys,
// EncodeKiviValueRow). Decoding always goes one row at a time through DecodeRow, which both
// DecodePage and the attention kernels' DecodeHeadRows use, so every consumer sees the same f32
// values. The element math and the layout offsets are kv_codec_math.h's, shared with the CUDA
// kernels; this file adds the loops (AVX-512 where it pays) and the argument checks.
#include "kernels/kv_codec.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "kernels/kv_codec_math.h"

#include "kernels/cpu/cpu_simd.h"  // immintrin.h without GCC 12.2's false warnings

namespace strata::kernels {
namespace {

using codec::CodeRowOffset;
using codec::KeyMinOffset;
using codec::KeyScaleOffset;
using codec::KiviCode;
using codec::KiviStats;
using codec::LoadF32;
using codec::LoadU16;
using codec::StoreF32;
using codec::StoreU16;
using codec::TokenScaleOffset;
using codec::ValueMinOffset;
using codec::ValueScaleOffset;
using Side = codec::KvSide;

constexpr int32_t kMaxHeadDim = 1 << 12;  // KvPageFormat::Validate's cap

// Decoded values of the 256 fp8 e4m3fn codes (the AVX-512 decode gathers from it).
std::array<float, 256> MakeFp8Table() {
  std::array<float, 256> table;
  for (uint32_t c = 0; c < 256; ++c) table[c] = codec::DecodeFp8E4m3(static_cast<uint8_t>(c));
  return table;
}

const std::array<float, 256> kFp8Table = MakeFp8Table();

// Max-abs scale for fp8 / int8: amax / max_code, 1 for an all-zero (or unusable) vector.
float AbsMaxScale(const float* x, int32_t n, float max_code) {
  float amax = 0.0f;
  for (int32_t i = 0; i < n; ++i) amax = codec::AbsMaxStep(amax, x[i]);
  return codec::TokenScale(amax, max_code);
}

// Stats of n values `stride` floats apart for b-bit codes (codec::GroupStats).
KiviStats GroupStats(const float* x, int32_t n, int64_t stride, uint32_t max_code) {
  return codec::GroupStats(n, max_code, [x, stride](int32_t i) { return x[i * stride]; });
}

// ORs `code` into channel d of a packed row.
void PackCode(std::byte* row, int32_t d, int32_t bits, uint32_t code) {
  row[codec::CodeByte(d, bits)] |= static_cast<std::byte>(code << codec::CodeShift(d, bits));
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
      for (int32_t i = 0; i < d; ++i) codec::EncodeHalfOrF32(f.codec, row, i, src[i]);
      return;
    case KvCodec::kFp8:
    case KvCodec::kInt8: {
      const bool fp8 = f.codec == KvCodec::kFp8;
      const float scale = AbsMaxScale(src, d, fp8 ? codec::kFp8Max : codec::kInt8Max);
      StoreF32(page + TokenScaleOffset(f, side, token, head), scale);
      for (int32_t i = 0; i < d; ++i) {
        row[i] = static_cast<std::byte>(codec::EncodeScaledByte(src[i] / scale, fp8));
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
    const uint16_t code = LoadU16(row + 2 * i);
    dst[i] = bf16 ? codec::DecodeBf16(code) : codec::DecodeFp16(code);
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
  for (; i < d; ++i) dst[i] = codec::DecodeScaledByte(static_cast<uint8_t>(row[i]), fp8, scale);
}

// dst[i] = min[i] + codes[i] * scale[i] for i < n, with n f16 mins and scales (KIVI keys).
// vcvtph2ps is exact, like DecodeFp16, and both paths are one fused multiply-add
// (codec::KiviDequantize).
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
    _mm512_storeu_ps(dst + i, _mm512_fmadd_ps(c, sc, lo));
  }
#endif
  for (; i < n; ++i) {
    dst[i] = codec::KiviDequantize(codec::DecodeFp16(LoadU16(mins + 2 * i)), codes[i],
                                   codec::DecodeFp16(LoadU16(scales + 2 * i)));
  }
}

// dst[i] = min + codes[i] * scale for i < n (one KIVI value channel group), fused like
// DequantizeChannels.
void DequantizeUniform(const uint8_t* codes, int32_t n, float min, float scale, float* dst) {
  int32_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    const __m512 c = _mm512_cvtepi32_ps(
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i))));
    _mm512_storeu_ps(dst + i, _mm512_fmadd_ps(c, _mm512_set1_ps(scale), _mm512_set1_ps(min)));
  }
#endif
  for (; i < n; ++i) dst[i] = codec::KiviDequantize(min, codes[i], scale);
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
                      codec::DecodeFp16(LoadU16(mins + 2 * g)),
                      codec::DecodeFp16(LoadU16(scales + 2 * g)),
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

int32_t KvPageFormat::CodeBits() const { return codec::CodeBits(codec); }
size_t KvPageFormat::RowBytes() const { return codec::RowBytes(*this); }
int32_t KvPageFormat::KeyStatGroups() const { return codec::KeyStatGroups(*this); }
int32_t KvPageFormat::ValueStatGroups() const { return codec::ValueStatGroups(*this); }
size_t KvPageFormat::VCodesOffset() const { return codec::VCodesOffset(*this); }
size_t KvPageFormat::KStatsOffset() const { return codec::KStatsOffset(*this); }
size_t KvPageFormat::VStatsOffset() const { return codec::VStatsOffset(*this); }
size_t KvPageFormat::PageBytes() const { return codec::PageBytes(*this); }

double BytesPerToken(const KvPageFormat& format) {
  return static_cast<double>(format.PageBytes()) / format.block_size;
}

uint16_t EncodeBf16(float x) { return codec::EncodeBf16(x); }
float DecodeBf16(uint16_t code) { return codec::DecodeBf16(code); }
uint16_t EncodeFp16(float x) { return codec::EncodeFp16(x); }
float DecodeFp16(uint16_t code) { return codec::DecodeFp16(code); }
uint8_t EncodeFp8E4m3(float x) { return codec::EncodeFp8E4m3(x); }
float DecodeFp8E4m3(uint8_t code) { return codec::DecodeFp8E4m3(code); }

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
