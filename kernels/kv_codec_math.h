// The KV codecs' element math and page layout arithmetic (kernels/kv_codec.h), as inline
// functions that compile for the host and, under nvcc, for the device too (STRATA_HD):
//   - element conversions: bf16, IEEE fp16, OCP fp8 e4m3fn (round-to-nearest-even);
//   - per-token codes: the fp8 / int8 max-abs scale and codes;
//   - KIVI codes: f16 stats rounded outward (min down, scale up), codes, packing, dequantize;
//   - byte offsets of a page's regions and of one (token, head) row.
// kernels/kv_codec.cc (the CPU) and the CUDA kernels (kernels/cuda/cuda_codec.cu) both run these,
// so a page encoded on either side holds the same bytes and decodes to the same floats.
// Pure functions over caller-owned bytes; any thread.
//
// What makes them mean the same thing on both sides:
//   - bit casts and multi-byte loads / stores go through __builtin_memcpy (std::bit_cast and
//     std::memcpy are host-only with nvcc 13 unless --expt-relaxed-constexpr), so pages need no
//     alignment; on the device an aligned load is taken directly;
//   - min / max / clamp are spelled out with the comparison std::min / std::max / std::clamp
//     use, so NaN inputs take the same path everywhere;
//   - rounding to integer is std::nearbyint on the host and rintf on the device (both
//     round-half-even in the default rounding mode);
//   - KIVI dequantization is one explicit fused multiply-add (std::fma / __fmaf_rn), which is
//     what GCC's default -ffp-contract=fast already made of the CPU's min + code * scale; a
//     lone product (fp8 / int8 decode) is __fmul_rn on the device, so nvcc cannot fuse it with
//     a neighbouring add.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "common/host_device.h"
#include "kernels/kv_codec.h"

#if !defined(__CUDA_ARCH__)
#include <cmath>
#endif


namespace strata::kernels::codec {

// ---- Bits and unaligned bytes -------------------------------------------------------------

STRATA_HD inline uint32_t F32Bits(float x) {
  uint32_t bits;
  __builtin_memcpy(&bits, &x, 4);
  return bits;
}

STRATA_HD inline float F32FromBits(uint32_t bits) {
  float x;
  __builtin_memcpy(&x, &bits, 4);
  return x;
}

STRATA_HD inline float LoadF32(const std::byte* p) {
#if defined(__CUDA_ARCH__)
  if (reinterpret_cast<uintptr_t>(p) % 4 == 0) return *reinterpret_cast<const float*>(p);
#endif
  float x;
  __builtin_memcpy(&x, p, 4);
  return x;
}

STRATA_HD inline void StoreF32(std::byte* p, float x) { __builtin_memcpy(p, &x, 4); }

STRATA_HD inline uint16_t LoadU16(const std::byte* p) {
#if defined(__CUDA_ARCH__)
  if (reinterpret_cast<uintptr_t>(p) % 2 == 0) return *reinterpret_cast<const uint16_t*>(p);
#endif
  uint16_t x;
  __builtin_memcpy(&x, p, 2);
  return x;
}

STRATA_HD inline void StoreU16(std::byte* p, uint16_t x) { __builtin_memcpy(p, &x, 2); }

// |x| by clearing the sign bit (also for NaN).
STRATA_HD inline float AbsF32(float x) { return F32FromBits(F32Bits(x) & 0x7fffffffu); }

// Neither NaN nor +-inf.
STRATA_HD inline bool IsFiniteF32(float x) { return (F32Bits(x) & 0x7f800000u) != 0x7f800000u; }

// x rounded to an integer, halfway cases to even (the default rounding mode).
STRATA_HD inline float RoundHalfEven(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return std::nearbyint(x);
#endif
}

// a * b, rounded once (never fused into an FMA on the device).
STRATA_HD inline float MulRn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

// a * b + c with a single rounding.
STRATA_HD inline float FmaF32(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// m >> shift, rounded to nearest even.  REQUIRES: 1 <= shift <= 31.
STRATA_HD inline uint32_t ShiftRne(uint32_t m, int shift) {
  const uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  return q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
}

// ---- Element conversions ------------------------------------------------------------------

// bf16 and IEEE binary16 decode / bf16 encode are common/dtype.h's (the weights' conversions):
// bf16 round-to-nearest-even keeps a NaN's top payload bits (so every bf16 NaN round-trips), f16
// decode is exact (subnormals renormalised, NaN payload kept).
STRATA_HD inline float DecodeBf16(uint16_t code) { return Bf16ToF32(code); }
STRATA_HD inline uint16_t EncodeBf16(float x) { return F32ToBf16(x); }
STRATA_HD inline float DecodeFp16(uint16_t code) { return F16ToF32(code); }

// f32 to IEEE binary16, round-to-nearest-even: overflow to inf, subnormals, NaN payload kept.
STRATA_HD inline uint16_t EncodeFp16(float x) {
  uint32_t bits = F32Bits(x);
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

// OCP fp8 e4m3fn to f32: no inf, 0x7f / 0xff are NaN, subnormal step 2^-9.
STRATA_HD inline float DecodeFp8E4m3(uint8_t code) {
  const uint32_t exp = (code >> 3) & 0xfu, mant = code & 7u;
  float mag;
  if (exp == 15 && mant == 7) {
    mag = F32FromBits(0x7fc00000u);  // the quiet NaN
  } else if (exp == 0) {
    mag = static_cast<float>(mant) * 0x1p-9f;  // exact
  } else {
    mag = F32FromBits(((exp + 120u) << 23) | (mant << 20));
  }
  return (code & 0x80u) ? -mag : mag;
}

// f32 to e4m3fn, round-to-nearest-even; finite or infinite |x| >= 448 saturates to +-448.
STRATA_HD inline uint8_t EncodeFp8E4m3(float x) {
  uint32_t bits = F32Bits(x);
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

// ---- Per-token codes (fp8, int8) ----------------------------------------------------------

inline constexpr float kFp8Max = 448.0f;
inline constexpr float kInt8Max = 127.0f;

// One step of the max-abs reduction, std::max(amax, |x|): a NaN x leaves amax as it is. Any
// order of steps (and of combining partial maxima) gives the same result.
STRATA_HD inline float AbsMaxStep(float amax, float x) {
  const float a = AbsF32(x);
  return amax < a ? a : amax;
}

// A (token, head) row's scale from its max-abs: amax / max_code, 1 for an all-zero (or
// unusable) row.
STRATA_HD inline float TokenScale(float amax, float max_code) {
  const float scale = amax / max_code;
  return (scale > 0.0f && IsFiniteF32(scale)) ? scale : 1.0f;
}

// The byte of element x (already divided by the row's scale): fp8 e4m3fn, or int8 rounded to
// nearest even and clamped to [-127, 127] (NaN: 0).
STRATA_HD inline uint8_t EncodeScaledByte(float x, bool fp8) {
  if (fp8) return EncodeFp8E4m3(x);
  const float r = RoundHalfEven(x);
  const float clamped = r < -kInt8Max ? -kInt8Max : (kInt8Max < r ? kInt8Max : r);  // std::clamp
  if (!(clamped == clamped)) return 0;
  return static_cast<uint8_t>(static_cast<int8_t>(static_cast<int32_t>(clamped)));
}

// decode(code) * scale for an fp8 or int8 code.
STRATA_HD inline float DecodeScaledByte(uint8_t code, bool fp8, float scale) {
  const float x = fp8 ? DecodeFp8E4m3(code) : static_cast<float>(static_cast<int8_t>(code));
  return MulRn(x, scale);
}

// ---- KIVI codes ---------------------------------------------------------------------------

// The f16 neighbours of a finite code toward +inf / -inf (across zero: -0 -> +2^-24, +0 ->
// -2^-24).
STRATA_HD inline uint16_t NextF16Up(uint16_t code) {
  if (code == 0x8000u) return 0x0001u;
  return static_cast<uint16_t>((code & 0x8000u) ? code - 1 : code + 1);
}
STRATA_HD inline uint16_t NextF16Down(uint16_t code) {
  if (code == 0x0000u) return 0x8001u;
  return static_cast<uint16_t>((code & 0x8000u) ? code + 1 : code - 1);
}

// +-inf becomes +-65504: KIVI stats stay finite (inputs beyond the f16 range are clamped).
STRATA_HD inline uint16_t SaturateF16(uint16_t code) {
  return (code & 0x7fffu) == 0x7c00u ? static_cast<uint16_t>((code & 0x8000u) | 0x7bffu) : code;
}

// The largest f16 <= x. One step from the nearest code is enough. NaN stays NaN.
STRATA_HD inline uint16_t F16AtMost(float x) {
  uint16_t code = EncodeFp16(x);
  if (DecodeFp16(code) > x) code = NextF16Down(code);
  return SaturateF16(code);
}

// The smallest f16 >= x.  REQUIRES: x <= 65504 (or NaN). float(x) is within 2^-24 relative of
// x, far inside one f16 step, so one step from the nearest code of float(x) is enough.
STRATA_HD inline uint16_t F16AtLeast(double x) {
  uint16_t code = EncodeFp16(static_cast<float>(x));
  if (DecodeFp16(code) < x) code = NextF16Up(code);
  return SaturateF16(code);
}

// A KIVI group's stats as stored (f16 codes) and as decoded (what the codes are computed
// against, and what decoding reads back).
struct KiviStats {
  uint16_t min_code = 0, scale_code = 0;
  float min = 0.0f, scale = 0.0f;
};

// Stats of n >= 1 values load(0), ..., load(n - 1), scanned in that order, for b-bit codes
// (max_code = 2^b - 1): min rounded down to f16, then the smallest f16 scale with
// stored_min + max_code * scale >= max, so the group fits [0, max_code]. Beyond the f16 range
// the stats saturate (min to -65504 or 65504, scale to [0, 65504]) and the codes clamp.
template <typename Load>
STRATA_HD KiviStats GroupStats(int32_t n, uint32_t max_code, Load load) {
  float lo = load(0), hi = lo;
  for (int32_t i = 1; i < n; ++i) {
    const float x = load(i);
    lo = x < lo ? x : lo;  // std::min(lo, x)
    hi = hi < x ? x : hi;  // std::max(hi, x)
  }
  KiviStats st;
  st.min_code = F16AtMost(lo);
  st.min = DecodeFp16(st.min_code);
  const double range = (static_cast<double>(hi) - st.min) / max_code;
  st.scale_code = F16AtLeast(range < 0.0 ? 0.0 : (65504.0 < range ? 65504.0 : range));
  st.scale = DecodeFp16(st.scale_code);
  return st;
}

// round((x - min) / scale) clamped to [0, max_code]; 0 when scale is 0 or anything is NaN.
STRATA_HD inline uint32_t KiviCode(float x, float min, float scale, uint32_t max_code) {
  if (!(scale > 0.0f)) return 0;
  const float q = RoundHalfEven((x - min) / scale);
  if (!(q >= 0.0f)) return 0;
  const float top = static_cast<float>(max_code);
  return static_cast<uint32_t>(top < q ? top : q);  // std::min(q, top)
}

// min + code * scale as one fused multiply-add (a single rounding).
STRATA_HD inline float KiviDequantize(float min, uint32_t code, float scale) {
  return FmaF32(static_cast<float>(code), scale, min);
}

// Codes are packed little-end-first: channel d of a row sits in byte d * bits / 8 at bit
// (d * bits) % 8.
STRATA_HD inline int32_t CodeByte(int32_t d, int32_t bits) { return d * bits / 8; }
STRATA_HD inline int32_t CodeShift(int32_t d, int32_t bits) { return d * bits % 8; }

// Channel d of a packed code row.
STRATA_HD inline uint32_t UnpackCode(const std::byte* row, int32_t d, int32_t bits) {
  return (static_cast<uint32_t>(row[CodeByte(d, bits)]) >> CodeShift(d, bits)) &
         ((1u << bits) - 1u);
}

// ---- Page layout --------------------------------------------------------------------------

enum class KvSide { kKey = 0, kValue = 1 };

STRATA_HD inline bool IsKiviCodec(KvCodec codec) {
  return codec == KvCodec::kKivi4 || codec == KvCodec::kKivi2;
}

STRATA_HD inline bool HasTokenScales(KvCodec codec) {
  return codec == KvCodec::kFp8 || codec == KvCodec::kInt8;
}

STRATA_HD inline int32_t CodeBits(KvCodec codec) {
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

// The offsets below are kv_codec.h's layout; KvPageFormat's methods return these.
// REQUIRES (all of them): f.Validate().ok().
STRATA_HD inline size_t RowBytes(const KvPageFormat& f) {
  return static_cast<size_t>(f.head_dim) * CodeBits(f.codec) / 8;
}
STRATA_HD inline int32_t KeyStatGroups(const KvPageFormat& f) {
  return IsKiviCodec(f.codec) ? f.block_size / kKiviGroupTokens : 0;
}
STRATA_HD inline int32_t ValueStatGroups(const KvPageFormat& f) {
  return IsKiviCodec(f.codec) ? (f.head_dim + kKiviChannelGroup - 1) / kKiviChannelGroup : 0;
}
STRATA_HD inline size_t VCodesOffset(const KvPageFormat& f) {
  return static_cast<size_t>(f.block_size) * f.num_kv_heads * RowBytes(f);
}
STRATA_HD inline size_t KStatsOffset(const KvPageFormat& f) { return 2 * VCodesOffset(f); }
STRATA_HD inline size_t VStatsOffset(const KvPageFormat& f) {
  const size_t rows = static_cast<size_t>(f.block_size) * f.num_kv_heads;
  if (HasTokenScales(f.codec)) return KStatsOffset(f) + rows * 4;
  // KIVI: f16 mins then f16 scales, [Gk][H][D] each (Gk = 0 otherwise).
  return KStatsOffset(f) + static_cast<size_t>(KeyStatGroups(f)) * f.num_kv_heads * f.head_dim * 4;
}
STRATA_HD inline size_t PageBytes(const KvPageFormat& f) {
  const size_t rows = static_cast<size_t>(f.block_size) * f.num_kv_heads;
  if (HasTokenScales(f.codec)) return VStatsOffset(f) + rows * 4;
  return VStatsOffset(f) + rows * ValueStatGroups(f) * 2 * 2;  // f16 mins and scales, [B][H][Gv]
}

// Row-major index of (token, head) in the [B][H] grids (code rows, fp8/int8 scales).
STRATA_HD inline size_t RowIndex(const KvPageFormat& f, int32_t token, int32_t head) {
  return static_cast<size_t>(token) * f.num_kv_heads + head;
}

// The code row of (side, token, head): RowBytes(f) bytes.
STRATA_HD inline size_t CodeRowOffset(const KvPageFormat& f, KvSide side, int32_t token,
                                      int32_t head) {
  const size_t base = side == KvSide::kKey ? 0 : VCodesOffset(f);
  return base + RowIndex(f, token, head) * RowBytes(f);
}

// fp8/int8: the f32 scale of (side, token, head).
STRATA_HD inline size_t TokenScaleOffset(const KvPageFormat& f, KvSide side, int32_t token,
                                         int32_t head) {
  const size_t base = side == KvSide::kKey ? KStatsOffset(f) : VStatsOffset(f);
  return base + RowIndex(f, token, head) * 4;
}

// kivi keys: the f16 min[slot][head][0] and scale[slot][head][0] (slot = token / 32).
STRATA_HD inline size_t KeyMinOffset(const KvPageFormat& f, int32_t slot, int32_t head) {
  return KStatsOffset(f) + (static_cast<size_t>(slot) * f.num_kv_heads + head) * f.head_dim * 2;
}
STRATA_HD inline size_t KeyScaleOffset(const KvPageFormat& f, int32_t slot, int32_t head) {
  return KeyMinOffset(f, slot, head) +
         static_cast<size_t>(KeyStatGroups(f)) * f.num_kv_heads * f.head_dim * 2;
}

// kivi values: the f16 min[token][head][0] and scale[token][head][0] (one per channel group).
STRATA_HD inline size_t ValueMinOffset(const KvPageFormat& f, int32_t token, int32_t head) {
  return VStatsOffset(f) + RowIndex(f, token, head) * ValueStatGroups(f) * 2;
}
STRATA_HD inline size_t ValueScaleOffset(const KvPageFormat& f, int32_t token, int32_t head) {
  return ValueMinOffset(f, token, head) +
         static_cast<size_t>(f.block_size) * f.num_kv_heads * ValueStatGroups(f) * 2;
}

// ---- One element of a page ----------------------------------------------------------------

// Channel c of the (side, token, head) row of `page`, decoded to f32: exactly what
// kv_codec.h's DecodePage returns for it.  REQUIRES: f.Validate().ok(), the indices in range.
STRATA_HD inline float DecodeElement(const KvPageFormat& f, const std::byte* page, KvSide side,
                                     int32_t token, int32_t head, int32_t c) {
  const std::byte* row = page + CodeRowOffset(f, side, token, head);
  switch (f.codec) {
    case KvCodec::kF32: return LoadF32(row + 4 * c);
    case KvCodec::kBf16: return DecodeBf16(LoadU16(row + 2 * c));
    case KvCodec::kFp16: return DecodeFp16(LoadU16(row + 2 * c));
    case KvCodec::kFp8:
    case KvCodec::kInt8:
      return DecodeScaledByte(static_cast<uint8_t>(row[c]), f.codec == KvCodec::kFp8,
                              LoadF32(page + TokenScaleOffset(f, side, token, head)));
    case KvCodec::kKivi4:
    case KvCodec::kKivi2: break;
  }
  const uint32_t code = UnpackCode(row, c, CodeBits(f.codec));
  size_t min_at, scale_at;
  if (side == KvSide::kKey) {
    const int32_t slot = token / kKiviGroupTokens;
    min_at = KeyMinOffset(f, slot, head) + 2 * c;
    scale_at = KeyScaleOffset(f, slot, head) + 2 * c;
  } else {
    const int32_t g = c / kKiviChannelGroup;
    min_at = ValueMinOffset(f, token, head) + 2 * g;
    scale_at = ValueScaleOffset(f, token, head) + 2 * g;
  }
  return KiviDequantize(DecodeFp16(LoadU16(page + min_at)), code,
                        DecodeFp16(LoadU16(page + scale_at)));
}

// Stores x as element c of a per-token-codec (fp32, bf16, fp16) row; other codecs need the
// row's scale or group and are encoded by their own loops.
STRATA_HD inline void EncodeHalfOrF32(KvCodec codec, std::byte* row, int32_t c, float x) {
  if (codec == KvCodec::kF32) {
    StoreF32(row + 4 * c, x);
  } else {
    StoreU16(row + 2 * c, codec == KvCodec::kBf16 ? EncodeBf16(x) : EncodeFp16(x));
  }
}

// ---- KiviWriteKv's per-sequence step ------------------------------------------------------

// Sequence s of a KiviWriteKvParams call (kernels/kv_codec.h): token counts before and after
// the step, where its new rows and block-table row are, and the table entries its residual
// pages take (old residual on entry, new residual on return).
struct KiviStep {
  int32_t n_old = 0, context_len = 0, quant_before = 0, quant_after = 0;
  int64_t first_row = 0;           // of its new rows in k, v
  const int32_t* table = nullptr;  // its block-table row (after the step)
  int32_t residual_entry = 0;      // entry of its first residual page: ceil(quant_after / B)
  int32_t num_residual = 0;        // residual entries: enough for the old and the new residual
};

// Fills `st` for sequence s with q_len new rows. False when its quantized counts break the
// rules (multiples of 32, quant_before <= old tokens, quant_before <= quant_after <= context).
STRATA_HD inline bool MakeKiviStep(const KiviWriteKvParams& p, int32_t s, int32_t q_len,
                                   KiviStep& st) {
  st.context_len = p.context_lens[s];
  st.n_old = st.context_len - q_len;
  st.quant_before = p.quant_before[s];
  st.quant_after = p.quant_after[s];
  st.first_row = p.query_start[s];
  st.table = p.block_tables + s * static_cast<int64_t>(p.max_blocks_per_seq);
  if (st.quant_before < 0 || st.quant_before % kKiviGroupTokens != 0 ||
      st.quant_after % kKiviGroupTokens != 0 || st.quant_before > st.n_old ||
      st.quant_after < st.quant_before || st.quant_after > st.context_len) {
    return false;
  }
  const int32_t bs = p.format.block_size, rbs = p.residual_format.block_size;
  st.residual_entry = (st.quant_after + bs - 1) / bs;
  const int32_t old_residual = (st.n_old - st.quant_before + rbs - 1) / rbs;
  const int32_t new_residual = (st.context_len - st.quant_after + rbs - 1) / rbs;
  st.num_residual = old_residual > new_residual ? old_residual : new_residual;
  return true;
}

}  // namespace strata::kernels::codec
