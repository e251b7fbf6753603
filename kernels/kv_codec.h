// KV codecs (DESIGN.md §5): the byte layout of one KV page in each codec, element conversions
// (bf16, fp16, fp8 e4m3) and encode/decode of page bytes. Pure functions over caller-owned bytes,
// no Device: the CPU kernels (kernels/cpu/cpu_quant_attention.cc) decode pages through these same
// functions, so "attention on quantized pages" and "attention on their decoded copy" agree
// bit for bit in the K/V values they see. Any thread.
//
// A page holds block_size (B) tokens of ONE layer's K and V for H = num_kv_heads heads of
// D = head_dim channels. Regions follow each other in this order, without padding (multi-byte
// fields are read and written with memcpy, so no alignment is assumed):
//
//   fp32 / bf16 / fp16             K [B][H][D] elements, V [B][H][D] elements
//                                  (fp32 is byte-identical to a KvPoolView page)
//   fp8 (e4m3fn) / int8            K codes [B][H][D] u8 / i8, V codes [B][H][D] u8 / i8,
//                                  K scales [B][H] f32, V scales [B][H] f32
//       x ~= decode(code) * scale; one scale per (token, kv head), so tokens append one at a
//       time. fp8: scale = amax / 448, saturating RNE. int8: scale = amax / 127, RN, [-127, 127].
//       An all-zero head vector gets scale 1.
//   kivi4 / kivi2 (b = 4 / 2 bits) K codes [B][H][D*b/8] bytes, V codes [B][H][D*b/8] bytes,
//                                  K mins [Gk][H][D] f32, K scales [Gk][H][D] f32,
//                                  V mins [B][H][Gv] f32, V scales [B][H][Gv] f32
//       Codes are packed little-end-first: channel d of a row sits in byte d*b/8 at bit
//       (d*b)%8. x ~= min + code * scale, scale = (max - min) / (2^b - 1) (0 when max == min).
//       Keys are quantized per channel over a group of kKiviGroupTokens = 32 consecutive tokens;
//       Gk = max(1, B / 32) key-stat slots: with B >= 32 token t uses slot t / 32, with B < 32
//       the 32 / B pages of one group each carry a copy of the group's stats in slot 0, so every
//       page decodes on its own. Values are quantized per token over channel groups of
//       kKiviChannelGroup = 32 channels (the last group may be shorter): Gv = ceil(D / 32).
//       KIVI pages are written a whole 32-token group at a time (EncodeKiviGroup); the tokens
//       of an unfinished group live in f32 pages (the full-precision residual).
//
// Bytes per token and layer (BytesPerToken = PageBytes / B), per KV head:
//   fp32 4D, bf16/fp16 2D, fp8/int8 2D + 8,
//   kivi-b 2*D*b/8 + 8*D*Gk/B + 8*Gv  (D = 64, B = 16: kivi4 112, kivi2 80; B = 32: 96, 64).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "common/status.h"
#include "kernels/device.h"

namespace strata::kernels {

enum class KvCodec : uint8_t { kF32, kBf16, kFp16, kFp8, kInt8, kKivi4, kKivi2 };

// "fp32", "bf16", "fp16", "fp8", "int8", "kivi4", "kivi2" (the config's spelling).
std::string_view CodecName(KvCodec codec);
std::optional<KvCodec> ParseCodec(std::string_view name);

inline constexpr int32_t kKiviGroupTokens = 32;   // tokens per key-quantization group
inline constexpr int32_t kKiviChannelGroup = 32;  // channels per value-quantization group

// The shape and codec of one page; see the layout above.
struct KvPageFormat {
  KvCodec codec = KvCodec::kF32;
  int32_t block_size = 16;   // tokens per page
  int32_t num_kv_heads = 1;
  int32_t head_dim = 64;

  // Positive sizes; kivi needs 32 % block_size == 0 or block_size % 32 == 0 and whole bytes
  // per (token, head) code row (head_dim * bits % 8 == 0).
  absl::Status Validate() const;

  int32_t CodeBits() const;            // 32, 16, 16, 8, 8, 4, 2
  size_t RowBytes() const;             // one (token, head) code row: head_dim * bits / 8
  int32_t KeyStatGroups() const;       // kivi Gk = max(1, block_size / 32); 0 otherwise
  int32_t ValueStatGroups() const;     // kivi Gv = ceil(head_dim / 32); 0 otherwise

  // Byte offsets of the regions inside a page. For codecs without scales both stats offsets
  // equal PageBytes().  REQUIRES: Validate().ok().
  size_t KCodesOffset() const { return 0; }
  size_t VCodesOffset() const;
  size_t KStatsOffset() const;
  size_t VStatsOffset() const;
  size_t PageBytes() const;
};

// PageBytes / block_size: bytes of KV per token and layer.
double BytesPerToken(const KvPageFormat& format);

// Element conversions, all round-to-nearest-even.
// bf16: NaN stays NaN (payload kept where it fits, so every bf16 code round-trips).
uint16_t EncodeBf16(float x);
float DecodeBf16(uint16_t code);
// IEEE binary16: overflow to inf, subnormals, NaN payload kept.
uint16_t EncodeFp16(float x);
float DecodeFp16(uint16_t code);
// OCP fp8 e4m3fn: no inf, 0x7f / 0xff are NaN, max 448, subnormal step 2^-9. Saturates: finite
// or infinite |x| >= 448 encodes as +-448.
uint8_t EncodeFp8E4m3(float x);
float DecodeFp8E4m3(uint8_t code);

// Writes tokens [first, first + count) of `page` from k, v [count][H][D] (per-token codecs:
// fp32, bf16, fp16, fp8, int8). Other tokens' bytes are untouched. kivi: InvalidArgument.
absl::Status EncodeTokens(const KvPageFormat& format, std::span<std::byte> page, int32_t first,
                          int32_t count, const float* k, const float* v);

// Encodes one 32-token KIVI group, k, v [32][H][D]. block_size < 32: pages.size() == 32 /
// block_size and the group fills them from token 0. block_size >= 32: one page, and the group
// occupies tokens [first_token_in_first_page, + 32) with first_token_in_first_page % 32 == 0.
absl::Status EncodeKiviGroup(const KvPageFormat& format,
                             std::span<const std::span<std::byte>> pages,
                             int32_t first_token_in_first_page, const float* k, const float* v);

// Tokens [0, count) of `page` back to f32: k, v [count][H][D].
absl::Status DecodePage(const KvPageFormat& format, std::span<const std::byte> page,
                        int32_t count, float* k, float* v);

// Kernel helper: tokens [0, count) of one KV head, k_rows, v_rows [count][D]. Unchecked.
// REQUIRES: format.Validate().ok(), page holds PageBytes(), 0 <= count <= block_size,
// 0 <= kv_head < num_kv_heads.
void DecodeHeadRows(const KvPageFormat& format, const std::byte* page, int32_t kv_head,
                    int32_t count, float* k_rows, float* v_rows);

// Causal GQA attention over pages of one codec (PagedAttentionParams semantics): sequence s
// reads logical blocks [0, quant_blocks[s]) from quant_pool and the later ones (KIVI's
// full-precision residual) from `full`.
struct QuantAttentionParams {
  const float* q = nullptr;               // [num_tokens, num_q_heads, head_dim], RoPE applied
  float* out = nullptr;                   // [num_tokens, num_q_heads, head_dim]
  KvPageFormat format;                    // codec and shape of the quantized pages
  const std::byte* quant_pool = nullptr;  // [num_quant_pages][format.PageBytes()] bytes
  int32_t num_quant_pages = 0;
  KvPoolView full;                        // f32 pages, same shape as format; may have 0 pages
  const int32_t* query_start = nullptr;   // [num_seqs + 1]
  const int32_t* context_lens = nullptr;  // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]: block b < quant_blocks
                                          // [s] is a quant_pool page id, else a `full` page id
  const int32_t* quant_blocks = nullptr;  // [num_seqs], <= the sequence's number of blocks
  int32_t num_seqs = 0;
  int32_t max_blocks_per_seq = 0;
  int32_t num_q_heads = 0;
  float scale = 1.0f;                     // usually 1/sqrt(head_dim)
};

// Stores new tokens' K and V, quantized, into their slots: slot = page * block_size + offset.
// Per-token codecs only (KIVI pages are written by EncodeKiviGroup when a group completes).
struct QuantWriteKvParams {
  const float* k = nullptr;          // [num_tokens, num_kv_heads, head_dim]
  const float* v = nullptr;          // [num_tokens, num_kv_heads, head_dim]
  const int64_t* slots = nullptr;    // [num_tokens]
  int64_t num_tokens = 0;
  KvPageFormat format;
  std::byte* quant_pool = nullptr;   // [num_quant_pages][format.PageBytes()] bytes
  int32_t num_quant_pages = 0;
};

}  // namespace strata::kernels
