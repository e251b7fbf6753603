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
//                                  K mins [Gk][H][D] f16, K scales [Gk][H][D] f16,
//                                  V mins [B][H][Gv] f16, V scales [B][H][Gv] f16
//       Codes are packed little-end-first: channel d of a row sits in byte d*b/8 at bit
//       (d*b)%8. x ~= min + code * scale, scale = (max - min) / (2^b - 1) (0 when max == min).
//       The stats are stored as IEEE f16 and the codes are computed against the STORED (decoded)
//       min and scale: min is rounded toward -inf and scale toward +inf when encoding, so every
//       element of the group still maps into [0, 2^b - 1] (codes are clamped all the same).
//       Keys are quantized per channel over a group of kKiviGroupTokens = 32 consecutive tokens:
//       block_size must be a multiple of 32 and Gk = B / 32 (token t uses key-stat slot t / 32).
//       Values are quantized per token over channel groups of kKiviChannelGroup = 32 channels
//       (the last group may be shorter): Gv = ceil(D / 32). KIVI pages are written a whole
//       32-token group at a time (EncodeKiviGroup, KiviWriteKv); a request's tokens after its
//       last full group live in residual pages of a full-precision format (bf16 or fp32).
//
// Bytes per token and layer (BytesPerToken = PageBytes / B), per KV head:
//   fp32 4D, bf16/fp16 2D, fp8/int8 2D + 8,
//   kivi-b 2*D*b/8 + 4*D/32 + 4*Gv  (D = 64: kivi4 80, kivi2 48; bf16 256, fp32 512).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "common/status.h"

namespace strata::kernels {

enum class KvCodec : uint8_t { kF32, kBf16, kFp16, kFp8, kInt8, kKivi4, kKivi2 };

// "fp32", "bf16", "fp16", "fp8", "int8", "kivi4", "kivi2" (the config's spelling).
std::string_view CodecName(KvCodec codec);
std::optional<KvCodec> ParseCodec(std::string_view name);

inline constexpr int32_t kKiviGroupTokens = 32;   // tokens per key-quantization group
inline constexpr int32_t kKiviChannelGroup = 32;  // channels per value-quantization group

// kivi4 or kivi2: written a 32-token group at a time, with a full-precision residual window.
constexpr bool IsKivi(KvCodec codec) {
  return codec == KvCodec::kKivi4 || codec == KvCodec::kKivi2;
}

// The shape and codec of one page; see the layout above.
struct KvPageFormat {
  KvCodec codec = KvCodec::kF32;
  int32_t block_size = 16;   // tokens per page
  int32_t num_kv_heads = 1;
  int32_t head_dim = 64;

  // Positive sizes; kivi needs block_size % 32 == 0 and whole bytes per (token, head) code row
  // (head_dim * bits % 8 == 0).
  absl::Status Validate() const;

  int32_t CodeBits() const;            // 32, 16, 16, 8, 8, 4, 2
  size_t RowBytes() const;             // one (token, head) code row: head_dim * bits / 8
  int32_t KeyStatGroups() const;       // kivi Gk = block_size / 32; 0 otherwise
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

// Encodes one 32-token KIVI group, k, v [32][H][D], into tokens [first, first + 32) of `page`
// (first % 32 == 0). Other groups' bytes are untouched.
absl::Status EncodeKiviGroup(const KvPageFormat& format, std::span<std::byte> page, int32_t first,
                             const float* k, const float* v);

// Tokens [0, count) of `page` back to f32: k, v [count][H][D].
absl::Status DecodePage(const KvPageFormat& format, std::span<const std::byte> page,
                        int32_t count, float* k, float* v);

// Kernel helper: tokens [0, count) of one KV head, k_rows, v_rows [count][D]. Unchecked.
// REQUIRES: format.Validate().ok(), page holds PageBytes(), 0 <= count <= block_size,
// 0 <= kv_head < num_kv_heads.
void DecodeHeadRows(const KvPageFormat& format, const std::byte* page, int32_t kv_head,
                    int32_t count, float* k_rows, float* v_rows);

// Causal GQA attention over pages in a KV codec (PagedAttentionParams semantics). All pages live
// in one pool of fixed-stride pages: page p starts at pool + p * page_stride. Sequence s reads
// logical blocks [0, quant_blocks[s]) in `format` (block_size tokens each), and the tokens after
// them, [quant_blocks[s] * format.block_size, context_lens[s]), from the residual pages named by
// the following block-table entries, in `residual_format` (residual_format.block_size tokens
// each; KIVI's full-precision residual). A per-token codec simply has quant_blocks[s] = all.
struct QuantAttentionParams {
  const float* q = nullptr;               // [num_tokens, num_q_heads, head_dim], RoPE applied
  float* out = nullptr;                   // [num_tokens, num_q_heads, head_dim]
  KvPageFormat format;                    // codec and shape of the quantized pages
  KvPageFormat residual_format;           // fp32 or bf16; same heads and head_dim as format
  const std::byte* pool = nullptr;        // [num_pages][page_stride] bytes
  size_t page_stride = 0;                 // >= format.PageBytes() and residual_format.PageBytes()
  int32_t num_pages = 0;
  const int32_t* query_start = nullptr;   // [num_seqs + 1]
  const int32_t* context_lens = nullptr;  // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq] page ids: quant
                                          // blocks first, then residual pages
  const int32_t* quant_blocks = nullptr;  // [num_seqs]
  int32_t num_seqs = 0;
  int32_t max_blocks_per_seq = 0;
  int32_t num_q_heads = 0;
  float scale = 1.0f;                     // usually 1/sqrt(head_dim)
  // query_start[num_seqs] when the caller knows it (the engine does), else 0: CUDA then reads
  // it back from the device (one 4-byte copy and a stream sync). The CPU ignores it.
  int64_t num_tokens = 0;
};

// Stores new tokens' K and V, quantized, into their slots: slot = page * block_size + offset,
// page at pool + page * page_stride. Per-token codecs only (fp32, bf16, fp16, fp8, int8).
struct QuantWriteKvParams {
  const float* k = nullptr;          // [num_tokens, num_kv_heads, head_dim]
  const float* v = nullptr;          // [num_tokens, num_kv_heads, head_dim]
  const int64_t* slots = nullptr;    // [num_tokens]
  int64_t num_tokens = 0;
  KvPageFormat format;
  std::byte* pool = nullptr;         // [num_pages][page_stride] bytes
  size_t page_stride = 0;            // >= format.PageBytes()
  int32_t num_pages = 0;
};

// Appends a step's new tokens to KIVI sequences. Sequence s had n_old = context_lens[s] -
// (query_start[s+1] - query_start[s]) tokens, of which [0, quant_before[s]) were quantized and
// [quant_before[s], n_old) sat in its residual pages; after the step it has context_lens[s]
// tokens, [0, quant_after[s]) quantized. Both quant counts are multiples of 32 with
// quant_before <= quant_after <= context_lens. The block table is the one AFTER the step:
// entries [0, quant_after / B) are KIVI pages (those from quant_before / B on are (re)written
// whole, from the old residual tokens followed by the new ones), and the entries after them are
// the residual pages: they hold the old residual tokens from offset 0 (token quant_before) on
// entry, and tokens [quant_after, context_lens) from offset 0 on return.
struct KiviWriteKvParams {
  const float* k = nullptr;               // [num_tokens, num_kv_heads, head_dim] new rows
  const float* v = nullptr;
  const int32_t* query_start = nullptr;   // [num_seqs + 1]
  const int32_t* context_lens = nullptr;  // [num_seqs] after the step
  const int32_t* quant_before = nullptr;  // [num_seqs]
  const int32_t* quant_after = nullptr;   // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  int32_t num_seqs = 0;
  int32_t max_blocks_per_seq = 0;
  KvPageFormat format;                    // kivi4 or kivi2
  KvPageFormat residual_format;           // fp32 or bf16
  std::byte* pool = nullptr;              // [num_pages][page_stride] bytes
  size_t page_stride = 0;
  int32_t num_pages = 0;
};

}  // namespace strata::kernels
