// KV codecs (kernels/kv_codec.h): names, page layouts and their byte arithmetic, the element
// conversions (exhaustive round trips, halfway cases, saturation, and an independent
// nearest-value reference), and encode/decode of pages on random data. Every lossy codec is held
// to its error bound AND shown to use it (the largest error seen exceeds a quarter of the bound),
// so a codec that silently kept f32 would fail.
#include "kernels/kv_codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace strata::kernels {
namespace {

constexpr KvCodec kAllCodecs[] = {KvCodec::kF32,  KvCodec::kBf16,  KvCodec::kFp16, KvCodec::kFp8,
                                  KvCodec::kInt8, KvCodec::kKivi4, KvCodec::kKivi2};

TEST(KvCodecNames, RoundTripAndRejectUnknown) {
  const char* names[] = {"fp32", "bf16", "fp16", "fp8", "int8", "kivi4", "kivi2"};
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(CodecName(kAllCodecs[i]), names[i]);
    EXPECT_EQ(ParseCodec(names[i]), kAllCodecs[i]);
  }
  EXPECT_EQ(ParseCodec("f32"), std::nullopt);
  EXPECT_EQ(ParseCodec("KIVI4"), std::nullopt);
  EXPECT_EQ(ParseCodec(""), std::nullopt);
}

TEST(KvPageFormat, ValidateRejectsBadShapes) {
  EXPECT_TRUE((KvPageFormat{KvCodec::kFp8, 5, 2, 3}.Validate().ok()));
  EXPECT_FALSE((KvPageFormat{KvCodec::kFp8, 0, 2, 64}.Validate().ok()));
  EXPECT_FALSE((KvPageFormat{KvCodec::kF32, 16, 0, 64}.Validate().ok()));
  EXPECT_FALSE((KvPageFormat{KvCodec::kBf16, 16, 2, -1}.Validate().ok()));
  // KIVI pages hold whole 32-token key groups.
  for (KvCodec kivi : {KvCodec::kKivi4, KvCodec::kKivi2}) {
    for (int32_t bs : {32, 64, 96, 128}) {
      EXPECT_TRUE((KvPageFormat{kivi, bs, 2, 64}.Validate().ok())) << bs;
    }
    for (int32_t bs : {1, 5, 8, 16, 24, 48, 80}) {
      EXPECT_EQ((KvPageFormat{kivi, bs, 2, 64}.Validate().code()),
                absl::StatusCode::kInvalidArgument) << bs;
    }
  }
  EXPECT_FALSE((KvPageFormat{KvCodec::kKivi2, 32, 1, 6}.Validate().ok()));  // 12 bits per row
  EXPECT_TRUE((KvPageFormat{KvCodec::kKivi4, 32, 1, 6}.Validate().ok()));   // 3 bytes per row
}

// The layout arithmetic of kv_codec.h, written out by hand for the shapes that matter:
// Qwen2.5-0.5B-like heads (64 channels) and stories260K (4 KV heads x 8), block 16.
TEST(KvPageFormat, BytesPerTokenMatchesTheLayout) {
  struct Row {
    KvCodec codec;
    int32_t block_size, heads, head_dim;
    double bytes_per_token;
  };
  const Row rows[] = {
      {KvCodec::kF32, 16, 1, 64, 512},   {KvCodec::kBf16, 16, 1, 64, 256},
      {KvCodec::kFp16, 16, 1, 64, 256},  {KvCodec::kFp8, 16, 1, 64, 128 + 8},
      {KvCodec::kInt8, 16, 1, 64, 136},
      // kivi4: codes 2 * 32 B; f16 key stats 64 ch * 4 B per 32 tokens; f16 value stats
      // 2 groups * 4 B. The same per token for any block size (one key slot per 32 tokens).
      {KvCodec::kKivi4, 32, 1, 64, 80}, {KvCodec::kKivi2, 32, 1, 64, 48},
      {KvCodec::kKivi4, 64, 1, 64, 80}, {KvCodec::kKivi2, 128, 1, 64, 48},
      {KvCodec::kF32, 16, 4, 8, 4 * 64},   {KvCodec::kBf16, 16, 4, 8, 4 * 32},
      {KvCodec::kFp8, 16, 4, 8, 4 * 24},   {KvCodec::kInt8, 16, 4, 8, 4 * 24},
      {KvCodec::kKivi4, 32, 4, 8, 4 * (8 + 1 + 4)}, {KvCodec::kKivi2, 32, 4, 8, 4 * (4 + 1 + 4)},
      {KvCodec::kKivi4, 32, 1, 80, 80 + 10 + 12},  // 3 value groups: 32 + 32 + 16 channels
      {KvCodec::kKivi2, 64, 2, 128, 2 * (64 + 16 + 16)},
  };
  for (const Row& r : rows) {
    const KvPageFormat f{r.codec, r.block_size, r.heads, r.head_dim};
    ASSERT_TRUE(f.Validate().ok());
    EXPECT_EQ(BytesPerToken(f), r.bytes_per_token)
        << CodecName(r.codec) << " bs" << r.block_size << " " << r.heads << "x" << r.head_dim;
  }
  // fp32 is the f32 KvPoolView page: [2][block_size][heads][head_dim] floats.
  const KvPageFormat f32{KvCodec::kF32, 16, 2, 64};
  EXPECT_EQ(f32.PageBytes(), 2u * 16 * 2 * 64 * sizeof(float));
  EXPECT_EQ(f32.VCodesOffset(), 16u * 2 * 64 * sizeof(float));
  // kivi4, block 32, one head of 64: K codes, V codes, K mins, K scales, V mins, V scales.
  const KvPageFormat k32{KvCodec::kKivi4, 32, 1, 64};
  EXPECT_EQ(k32.VCodesOffset(), 32u * 32);
  EXPECT_EQ(k32.KStatsOffset(), 2u * 32 * 32);
  EXPECT_EQ(k32.VStatsOffset(), 2u * 32 * 32 + 64 * 2 * 2);
  EXPECT_EQ(k32.PageBytes(), 2u * 32 * 32 + 64 * 2 * 2 + 32 * 2 * 2 * 2);
  EXPECT_EQ(k32.PageBytes(), 32u * 80);
  // kivi with block 64 carries two key-stat slots of f16 mins and scales.
  const KvPageFormat k64{KvCodec::kKivi4, 64, 2, 64};
  EXPECT_EQ(k64.KeyStatGroups(), 2);
  EXPECT_EQ(k64.ValueStatGroups(), 2);
  EXPECT_EQ(k64.VStatsOffset() - k64.KStatsOffset(), 2u * 2 * 64 * 2 * 2);
}

TEST(ElementConversion, EveryBf16CodeRoundTrips) {
  for (uint32_t code = 0; code < 65536; ++code) {
    const float x = DecodeBf16(static_cast<uint16_t>(code));
    ASSERT_EQ(EncodeBf16(x), code) << std::hex << code;
  }
}

TEST(ElementConversion, Bf16RoundsHalfwayToEvenAndKeepsNan) {
  EXPECT_EQ(EncodeBf16(std::bit_cast<float>(0x3f808000)), 0x3f80);  // 1 + 2^-8: tie, down to even
  EXPECT_EQ(EncodeBf16(std::bit_cast<float>(0x3f818000)), 0x3f82);  // 1 + 3 * 2^-8: tie, up to even
  EXPECT_EQ(EncodeBf16(std::bit_cast<float>(0x3f808001)), 0x3f81);  // just above the tie
  EXPECT_EQ(EncodeBf16(std::bit_cast<float>(0xbf818000)), 0xbf82);
  EXPECT_EQ(EncodeBf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
  EXPECT_TRUE(std::isnan(DecodeBf16(EncodeBf16(std::bit_cast<float>(0x7f800001)))));  // payload in low bits
  EXPECT_TRUE(std::isnan(DecodeBf16(EncodeBf16(std::bit_cast<float>(0xffc00000)))));
  EXPECT_EQ(EncodeBf16(std::numeric_limits<float>::infinity()), 0x7f80);
}

TEST(ElementConversion, EveryFp16CodeRoundTrips) {
  for (uint32_t code = 0; code < 65536; ++code) {
    const float x = DecodeFp16(static_cast<uint16_t>(code));
    ASSERT_EQ(EncodeFp16(x), code) << std::hex << code;
  }
}

TEST(ElementConversion, Fp16RoundsHalfwaySubnormalsAndOverflow) {
  EXPECT_EQ(EncodeFp16(1.0f + 0x1p-11f), 0x3c00);         // tie, down to even
  EXPECT_EQ(EncodeFp16(1.0f + 3 * 0x1p-11f), 0x3c02);     // tie, up to even
  EXPECT_EQ(EncodeFp16(65504.0f), 0x7bff);                // max half
  EXPECT_EQ(EncodeFp16(65519.0f), 0x7bff);
  EXPECT_EQ(EncodeFp16(65520.0f), 0x7c00);                // tie above max: to inf (even)
  EXPECT_EQ(EncodeFp16(-1e10f), 0xfc00);
  EXPECT_EQ(EncodeFp16(0x1p-24f), 0x0001);                // smallest subnormal
  EXPECT_EQ(EncodeFp16(0x1p-25f), 0x0000);                // tie, down to even 0
  EXPECT_EQ(EncodeFp16(3 * 0x1p-25f), 0x0002);            // tie, up to even
  EXPECT_EQ(EncodeFp16(0x1p-14f - 0x1p-25f), 0x0400);     // tie: max subnormal / min normal
  EXPECT_EQ(EncodeFp16(-0.0f), 0x8000);
  EXPECT_EQ(EncodeFp16(1e-30f), 0x0000);
}

#if defined(__F16C__)
// The hardware's vcvtps2ph is an independent RNE reference over random bit patterns.
TEST(ElementConversion, Fp16MatchesHardwareConversion) {
  std::mt19937 rng(7);
  for (int i = 0; i < 1 << 20; ++i) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    const uint16_t hw = _cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT);
    if (std::isnan(x)) {
      ASSERT_TRUE(std::isnan(DecodeFp16(EncodeFp16(x))));
    } else {
      ASSERT_EQ(EncodeFp16(x), hw) << std::hexfloat << x;
    }
  }
}
#endif

TEST(ElementConversion, EveryFp8CodeRoundTrips) {
  for (uint32_t code = 0; code < 256; ++code) {
    const float x = DecodeFp8E4m3(static_cast<uint8_t>(code));
    EXPECT_EQ(std::isnan(x), (code & 0x7f) == 0x7f) << code;
    ASSERT_EQ(EncodeFp8E4m3(x), code) << code;
  }
  EXPECT_EQ(DecodeFp8E4m3(0x7e), 448.0f);
  EXPECT_EQ(DecodeFp8E4m3(0x01), 0x1p-9f);
  EXPECT_EQ(DecodeFp8E4m3(0x08), 0x1p-6f);
  EXPECT_EQ(DecodeFp8E4m3(0x38), 1.0f);
  EXPECT_EQ(DecodeFp8E4m3(0xbe), -1.75f);
}

TEST(ElementConversion, Fp8SaturatesAndRoundsHalfwayToEven) {
  EXPECT_EQ(EncodeFp8E4m3(500.0f), 0x7e);
  EXPECT_EQ(EncodeFp8E4m3(464.0f), 0x7e);  // would be a tie toward 480, which does not exist
  EXPECT_EQ(EncodeFp8E4m3(-1e9f), 0xfe);
  EXPECT_EQ(EncodeFp8E4m3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(EncodeFp8E4m3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(EncodeFp8E4m3(std::nanf("")) & 0x7f, 0x7f);
  EXPECT_EQ(EncodeFp8E4m3(1.0625f), 0x38);      // 1 + 2^-4: tie, down to even 1.0
  EXPECT_EQ(EncodeFp8E4m3(1.1875f), 0x3a);      // 1 + 3 * 2^-4: tie, up to 1.25
  EXPECT_EQ(EncodeFp8E4m3(440.0f), 0x7e);       // tie 432 / 448: even is 448
  EXPECT_EQ(EncodeFp8E4m3(0x1p-10f), 0x00);     // tie, down to even 0
  EXPECT_EQ(EncodeFp8E4m3(3 * 0x1p-10f), 0x02); // tie, up to even 2^-8
  EXPECT_EQ(EncodeFp8E4m3(0x1p-6f - 0x1p-10f), 0x08);  // tie max subnormal / min normal
  EXPECT_EQ(EncodeFp8E4m3(-0.0f), 0x80);
}

// Independent reference: the nearest finite e4m3 value of the same sign, found by brute force
// over all codes, ties to the even code.
TEST(ElementConversion, Fp8IsNearestValueTiesToEven) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> log_mag(-14.0f, 9.5f);
  for (int i = 0; i < 100000; ++i) {
    const float x = std::exp2(log_mag(rng)) * ((rng() & 1) ? -1.0f : 1.0f);
    int best = -1;
    float best_err = std::numeric_limits<float>::infinity();
    for (int c = 0; c < 256; ++c) {
      const float value = DecodeFp8E4m3(static_cast<uint8_t>(c));
      if (std::isnan(value) || std::signbit(value) != std::signbit(x)) continue;
      const float err = std::abs(value - x);
      if (err < best_err || (err == best_err && (c & 1) == 0)) best = c, best_err = err;
    }
    ASSERT_EQ(EncodeFp8E4m3(x), best) << std::hexfloat << x;
  }
}

// ---- Page encode / decode -------------------------------------------------------------------

struct Shape {
  int32_t block_size, heads, head_dim;
};

const Shape kShapes[] = {{16, 4, 8}, {32, 4, 8}, {16, 2, 64}, {32, 2, 64}, {16, 1, 128},
                         {32, 1, 128}};

// [tokens][heads][head_dim] values in [-1, 1] with outliers (x40) and, given 6 tokens or more,
// a constant channel 1 in every head, then an all-zero token 3 and a constant row (token 5,
// head 0): channel 1 stays constant over tokens [6, tokens).
std::vector<float> TestData(int32_t tokens, int32_t heads, int32_t head_dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(tokens) * heads * head_dim);
  for (float& e : x) e = dist(rng) * ((rng() % 50 == 0) ? 40.0f : 1.0f);
  if (tokens < 6) return x;
  const int64_t tf = static_cast<int64_t>(heads) * head_dim;
  for (int32_t t = 0; t < tokens; ++t) {
    for (int32_t h = 0; h < heads; ++h) x[t * tf + h * head_dim + 1] = 0.375f;
  }
  std::fill(x.begin() + 3 * tf, x.begin() + 4 * tf, 0.0f);
  std::fill(x.begin() + 5 * tf, x.begin() + 5 * tf + head_dim, -2.5f);
  return x;
}

float AbsMax(const float* x, int32_t n) {
  float m = 0;
  for (int32_t i = 0; i < n; ++i) m = std::max(m, std::abs(x[i]));
  return m;
}

// The per-element error bound of a per-token codec for x[i] of one head vector x[0, d).
double PerTokenBound(KvCodec codec, const float* x, int32_t d, int32_t i) {
  const double a = std::abs(x[i]);
  switch (codec) {
    case KvCodec::kBf16: return 0x1p-8 * a;
    case KvCodec::kFp16: return std::max(0x1p-11 * a, 0x1p-25);
    case KvCodec::kFp8: {
      const double scale = AbsMax(x, d) > 0 ? AbsMax(x, d) / 448.0 : 1.0;
      return 0x1p-4 * a + 0x1p-9 * scale + 1e-6 * a;
    }
    case KvCodec::kInt8: {
      const double scale = AbsMax(x, d) > 0 ? AbsMax(x, d) / 127.0 : 1.0;
      return scale / 2 * (1 + 1e-5) + 1e-7 * a;
    }
    default: return 0;
  }
}

// Tracks the worst error relative to the bound; Check() asserts bound and tightness.
struct BoundTracker {
  double worst_ratio = 0;
  void Add(double err, double bound) {
    ASSERT_LE(err, bound);
    if (bound > 0) worst_ratio = std::max(worst_ratio, err / bound);
  }
};

class PerTokenCodecTest : public testing::TestWithParam<KvCodec> {};

TEST_P(PerTokenCodecTest, DecodedPageIsWithinTheBoundAndUsesIt) {
  const KvCodec codec = GetParam();
  for (const Shape& s : kShapes) {
    const KvPageFormat f{codec, s.block_size, s.heads, s.head_dim};
    const int64_t tf = static_cast<int64_t>(s.heads) * s.head_dim;
    const std::vector<float> k = TestData(s.block_size, s.heads, s.head_dim, 1);
    const std::vector<float> v = TestData(s.block_size, s.heads, s.head_dim, 2);
    std::vector<std::byte> page(f.PageBytes(), std::byte{0xa5});
    const int32_t split = s.block_size / 3;  // two appends: tokens arrive in pieces
    ASSERT_TRUE(EncodeTokens(f, page, 0, split, k.data(), v.data()).ok());
    ASSERT_TRUE(EncodeTokens(f, page, split, s.block_size - split, k.data() + split * tf,
                             v.data() + split * tf).ok());
    std::vector<float> dk(k.size()), dv(v.size());
    ASSERT_TRUE(DecodePage(f, page, s.block_size, dk.data(), dv.data()).ok());
    if (codec == KvCodec::kF32) {
      EXPECT_EQ(std::memcmp(page.data(), k.data(), k.size() * 4), 0);
      EXPECT_EQ(std::memcmp(page.data() + k.size() * 4, v.data(), v.size() * 4), 0);
      EXPECT_EQ(dk, k);
      EXPECT_EQ(dv, v);
      continue;
    }
    BoundTracker tracker;
    for (const auto& [in, out] : {std::pair{&k, &dk}, std::pair{&v, &dv}}) {
      for (int64_t row = 0; row < s.block_size * s.heads; ++row) {
        const float* x = in->data() + row * s.head_dim;
        for (int32_t i = 0; i < s.head_dim; ++i) {
          const double err = std::abs(double{(*out)[row * s.head_dim + i]} - x[i]);
          tracker.Add(err, PerTokenBound(codec, x, s.head_dim, i));
        }
      }
    }
    EXPECT_GT(tracker.worst_ratio, 0.25) << CodecName(codec) << " bs" << s.block_size;
    // The all-zero token decodes to exact zeros.
    for (int64_t i = 3 * tf; i < 4 * tf; ++i) EXPECT_EQ(dk[i], 0.0f);
  }
}

TEST_P(PerTokenCodecTest, EncodingATokenLeavesTheOthersUntouched) {
  const KvPageFormat f{GetParam(), 16, 2, 64};
  const std::vector<float> k = TestData(16, 2, 64, 3), v = TestData(16, 2, 64, 4);
  std::vector<std::byte> page(f.PageBytes());
  ASSERT_TRUE(EncodeTokens(f, page, 0, 16, k.data(), v.data()).ok());
  std::vector<float> before_k(k.size()), before_v(v.size());
  ASSERT_TRUE(DecodePage(f, page, 16, before_k.data(), before_v.data()).ok());
  const std::vector<float> k2 = TestData(1, 2, 64, 5), v2 = TestData(1, 2, 64, 6);
  ASSERT_TRUE(EncodeTokens(f, page, 9, 1, k2.data(), v2.data()).ok());
  std::vector<float> after_k(k.size()), after_v(v.size());
  ASSERT_TRUE(DecodePage(f, page, 16, after_k.data(), after_v.data()).ok());
  for (size_t i = 0; i < k.size(); ++i) {
    if (i / 128 == 9) continue;
    ASSERT_EQ(std::bit_cast<uint32_t>(after_k[i]), std::bit_cast<uint32_t>(before_k[i])) << i;
    ASSERT_EQ(std::bit_cast<uint32_t>(after_v[i]), std::bit_cast<uint32_t>(before_v[i])) << i;
  }
  // Decoding fewer tokens gives the same rows.
  std::vector<float> part_k(5 * 128), part_v(5 * 128);
  ASSERT_TRUE(DecodePage(f, page, 5, part_k.data(), part_v.data()).ok());
  EXPECT_TRUE(std::equal(part_k.begin(), part_k.end(), after_k.begin()));
  EXPECT_TRUE(std::equal(part_v.begin(), part_v.end(), after_v.begin()));
}

TEST_P(PerTokenCodecTest, RejectsBadRanges) {
  const KvPageFormat f{GetParam(), 16, 2, 64};
  std::vector<std::byte> page(f.PageBytes());
  const std::vector<float> k(17 * 128), v(17 * 128);
  EXPECT_EQ(EncodeTokens(f, page, 10, 7, k.data(), v.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeTokens(f, page, -1, 1, k.data(), v.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeTokens(f, std::span(page).first(page.size() - 1), 0, 1, k.data(), v.data())
                .code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> out(17 * 128);
  EXPECT_EQ(DecodePage(f, page, 17, out.data(), out.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(EncodeTokens(f, page, 10, 6, k.data(), v.data()).ok());
}

INSTANTIATE_TEST_SUITE_P(Codecs, PerTokenCodecTest,
                         testing::Values(KvCodec::kF32, KvCodec::kBf16, KvCodec::kFp16,
                                         KvCodec::kFp8, KvCodec::kInt8),
                         [](const testing::TestParamInfo<KvCodec>& info) {
                           return std::string(CodecName(info.param));
                         });

// ---- KIVI ----------------------------------------------------------------------------------

const Shape kKiviShapes[] = {{32, 4, 8},   {32, 2, 64}, {64, 2, 64},
                             {32, 1, 128}, {64, 1, 80}, {128, 2, 64}};

double Levels(KvCodec codec) { return codec == KvCodec::kKivi4 ? 15.0 : 3.0; }

// Encodes `tokens` (a multiple of block_size) into pages group by group.
std::vector<std::vector<std::byte>> EncodeKivi(const KvPageFormat& f, int32_t tokens,
                                               const std::vector<float>& k,
                                               const std::vector<float>& v) {
  std::vector<std::vector<std::byte>> pages(tokens / f.block_size,
                                            std::vector<std::byte>(f.PageBytes()));
  const int64_t tf = static_cast<int64_t>(f.num_kv_heads) * f.head_dim;
  for (int32_t start = 0; start < tokens; start += kKiviGroupTokens) {
    EXPECT_TRUE(EncodeKiviGroup(f, pages[start / f.block_size], start % f.block_size,
                                k.data() + start * tf, v.data() + start * tf).ok());
  }
  return pages;
}

// The pages back to [tokens][heads][head_dim] K and V.
void DecodeKivi(const KvPageFormat& f, const std::vector<std::vector<std::byte>>& pages,
                std::vector<float>& k, std::vector<float>& v) {
  const int64_t page_floats = int64_t{f.block_size} * f.num_kv_heads * f.head_dim;
  k.assign(pages.size() * page_floats, 0.0f);
  v.assign(pages.size() * page_floats, 0.0f);
  for (size_t p = 0; p < pages.size(); ++p) {
    ASSERT_TRUE(DecodePage(f, pages[p], f.block_size, k.data() + p * page_floats,
                           v.data() + p * page_floats).ok());
  }
}

// Every finite f16 value, ascending: the independent reference for the stats' directed rounding.
const std::vector<double>& FiniteF16Values() {
  static const std::vector<double> values = [] {
    std::vector<double> out;
    for (uint32_t code = 0; code < 65536; ++code) {
      const float x = DecodeFp16(static_cast<uint16_t>(code));
      if (std::isfinite(x)) out.push_back(x);
    }
    std::sort(out.begin(), out.end());
    return out;
  }();
  return values;
}
double LargestF16AtMost(double x) {
  const auto& all = FiniteF16Values();
  return *(std::upper_bound(all.begin(), all.end(), x) - 1);
}
double SmallestF16AtLeast(double x) {
  const auto& all = FiniteF16Values();
  return *std::lower_bound(all.begin(), all.end(), x);
}

// An upper bound on the distance from x to the neighbouring f16 values (within the f16 range).
double F16Step(double x) { return std::max(std::abs(x) * 0x1p-10, 0x1p-24); }

// The per-element KIVI error bound for a group whose values span [lo, hi], with L = 2^b - 1:
//   stored min m:   lo - F16Step(lo) < m <= lo               (rounded toward -inf)
//   stored scale s: N <= s <= N + F16Step(N), N = (hi - m) / L <= (hi - lo + F16Step(lo)) / L
//                                                            (rounded toward +inf)
//   every x in [lo, hi] has (x - m) / s in [0, L], so the nearest code is off by at most s / 2:
//   |x - x'| <= s / 2, plus f32 rounding in (x - m) / s and m + code * s (ulps of |lo|, |hi|).
double KiviBound(double lo, double hi, double levels) {
  const double n = (hi - lo + F16Step(lo)) / levels;
  return (n + F16Step(n)) / 2 + 1e-6 * (std::abs(lo) + std::abs(hi));
}

// Checks decoded K, V [tokens][heads][head_dim] against KiviBound of each element's group (keys:
// the channel over the token's 32-token group; values: the token's 32-channel group).
void CheckKiviBound(const KvPageFormat& f, int32_t tokens, const std::vector<float>& k,
                    const std::vector<float>& v, const std::vector<float>& dk,
                    const std::vector<float>& dv, BoundTracker& tracker) {
  const int32_t h_count = f.num_kv_heads, dim = f.head_dim;
  const int64_t tf = int64_t{h_count} * dim;
  const double levels = Levels(f.codec);
  for (int32_t t = 0; t < tokens; ++t) {
    const int32_t group_start = t / kKiviGroupTokens * kKiviGroupTokens;
    for (int32_t h = 0; h < h_count; ++h) {
      for (int32_t d = 0; d < dim; ++d) {
        const int64_t i = t * tf + h * dim + d;
        double lo = k[group_start * tf + h * dim + d], hi = lo;
        for (int32_t u = group_start; u < group_start + kKiviGroupTokens; ++u) {
          lo = std::min<double>(lo, k[u * tf + h * dim + d]);
          hi = std::max<double>(hi, k[u * tf + h * dim + d]);
        }
        tracker.Add(std::abs(double{dk[i]} - k[i]), KiviBound(lo, hi, levels));
        const int32_t g0 = d / kKiviChannelGroup * kKiviChannelGroup;
        const int32_t g1 = std::min(dim, g0 + kKiviChannelGroup);
        const float* row = v.data() + t * tf + h * dim;
        lo = *std::min_element(row + g0, row + g1);
        hi = *std::max_element(row + g0, row + g1);
        tracker.Add(std::abs(double{dv[i]} - v[i]), KiviBound(lo, hi, levels));
      }
    }
  }
}

class KiviCodecTest : public testing::TestWithParam<KvCodec> {};

TEST_P(KiviCodecTest, DecodedPagesAreWithinTheBoundAndUseIt) {
  for (const Shape& s : kKiviShapes) {
    const KvPageFormat f{GetParam(), s.block_size, s.heads, s.head_dim};
    const int32_t tokens = std::max(64, s.block_size);  // two key groups or more
    const int64_t tf = static_cast<int64_t>(s.heads) * s.head_dim;
    const std::vector<float> k = TestData(tokens, s.heads, s.head_dim, 7);
    const std::vector<float> v = TestData(tokens, s.heads, s.head_dim, 8);
    std::vector<float> dk, dv;
    DecodeKivi(f, EncodeKivi(f, tokens, k, v), dk, dv);
    BoundTracker tracker;
    CheckKiviBound(f, tokens, k, v, dk, dv, tracker);
    EXPECT_GT(tracker.worst_ratio, 0.25) << "bs" << s.block_size << " d" << s.head_dim;
    // Constant channels (keys; the second group) and constant rows (values) of f16-exact values
    // come back exactly, as does the all-zero token.
    for (int32_t t = 32; t < 64; ++t) EXPECT_EQ(dk[t * tf + 1], 0.375f) << t;
    for (int32_t d = 0; d < s.head_dim; ++d) EXPECT_EQ(dv[5 * tf + d], -2.5f) << d;
    for (int64_t i = 3 * tf; i < 4 * tf; ++i) EXPECT_EQ(dv[i], 0.0f) << i;
  }
}

// The stored f16 stats, read at the offsets the header's layout gives, are the directed
// roundings: min = the largest f16 <= the group's min, scale = the smallest f16 with
// min + L * scale >= the group's max. Every element is within scale / 2 of its decoded value.
TEST_P(KiviCodecTest, StoredStatsAreF16RoundedOutward) {
  const KvPageFormat f{GetParam(), 64, 2, 80};  // 2 key slots, value groups of 32, 32, 16
  const int32_t h_count = 2, dim = 80, gv = 3, bs = 64;
  const int64_t tf = h_count * dim;
  const double levels = Levels(f.codec);
  const std::vector<float> k = TestData(bs, h_count, dim, 21), v = TestData(bs, h_count, dim, 22);
  const auto pages = EncodeKivi(f, bs, k, v);
  const std::byte* page = pages[0].data();
  auto stat = [&](size_t offset) {
    uint16_t code;
    std::memcpy(&code, page + offset, 2);
    return double{DecodeFp16(code)};
  };
  std::vector<float> dk, dv;
  DecodeKivi(f, pages, dk, dv);
  auto check = [&](double lo, double hi, double min, double scale, double x, double decoded) {
    ASSERT_EQ(min, LargestF16AtMost(lo));
    ASSERT_EQ(scale, SmallestF16AtLeast((hi - min) / levels));
    ASSERT_LE(std::abs(decoded - x), scale / 2 * (1 + 1e-6) + 1e-6 * (std::abs(lo) + std::abs(hi)));
  };
  const size_t key_stats = f.KStatsOffset(), value_stats = f.VStatsOffset();
  for (int32_t slot = 0; slot < 2; ++slot) {
    for (int32_t h = 0; h < h_count; ++h) {
      for (int32_t d = 0; d < dim; ++d) {
        double lo = INFINITY, hi = -INFINITY;
        for (int32_t t = slot * 32; t < slot * 32 + 32; ++t) {
          lo = std::min<double>(lo, k[t * tf + h * dim + d]);
          hi = std::max<double>(hi, k[t * tf + h * dim + d]);
        }
        const size_t at = key_stats + ((slot * h_count + h) * dim + d) * 2;
        const double min = stat(at), scale = stat(at + 2 * h_count * dim * 2);
        for (int32_t t = slot * 32; t < slot * 32 + 32; ++t) {
          const int64_t i = t * tf + h * dim + d;
          check(lo, hi, min, scale, k[i], dk[i]);
        }
      }
    }
  }
  for (int32_t t = 0; t < bs; ++t) {
    for (int32_t h = 0; h < h_count; ++h) {
      for (int32_t g = 0; g < gv; ++g) {
        const float* row = v.data() + t * tf + h * dim;
        const int32_t g0 = 32 * g, g1 = std::min(dim, g0 + 32);
        const double lo = *std::min_element(row + g0, row + g1);
        const double hi = *std::max_element(row + g0, row + g1);
        const size_t at = value_stats + ((t * h_count + h) * gv + g) * 2;
        const double min = stat(at), scale = stat(at + bs * h_count * gv * 2);
        for (int32_t d = g0; d < g1; ++d) {
          check(lo, hi, min, scale, row[d], dv[t * tf + h * dim + d]);
        }
      }
    }
  }
}

// All-equal groups: an f16 value comes back exactly (scale 0); any other value within the bound
// (the stored min is rounded down, so the scale covers the gap).
TEST_P(KiviCodecTest, AllEqualGroups) {
  const KvPageFormat f{GetParam(), 32, 2, 64};
  const double levels = Levels(f.codec);
  for (float c : {0.375f, -2.5f, 0.0f, 1024.0f, 0.1f, -1e-3f, 1000.3f, 3e-6f, -65504.0f}) {
    const std::vector<float> k(32 * 128, c), v(32 * 128, c);
    std::vector<float> dk, dv;
    DecodeKivi(f, EncodeKivi(f, 32, k, v), dk, dv);
    const bool exact = DecodeFp16(EncodeFp16(c)) == c;
    for (size_t i = 0; i < dk.size(); ++i) {
      if (exact) {
        ASSERT_EQ(dk[i], c) << c;
        ASSERT_EQ(dv[i], c) << c;
      } else {
        ASSERT_LE(std::abs(double{dk[i]} - c), KiviBound(c, c, levels)) << c;
        ASSERT_LE(std::abs(double{dv[i]} - c), KiviBound(c, c, levels)) << c;
      }
    }
  }
}

// The ends of the f16 range and f16 subnormals stay within the bound; values beyond the f16
// range (and infinities) saturate the stats to +-65504 and decode to finite values.
TEST_P(KiviCodecTest, ExtremeValues) {
  const KvPageFormat f{GetParam(), 64, 1, 64};
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::vector<float> k(64 * 64), v(64 * 64);
  for (int32_t t = 0; t < 32; ++t) {  // group 0: the f16 range
    for (int32_t d = 0; d < 64; ++d) {
      const float big = (t + d) % 7 == 0 ? 65504.0f : (t + d) % 7 == 1 ? -65504.0f : 60000.0f;
      k[t * 64 + d] = (t + d) % 3 == 0 ? big : big * unit(rng);
      v[t * 64 + d] = d % 2 == 0 ? big * unit(rng) : 1e-6f * unit(rng);  // subnormal f16 halves
    }
  }
  for (int32_t i = 32 * 64; i < 64 * 64; ++i) k[i] = v[i] = 2e-6f * unit(rng);  // group 1: tiny
  std::vector<float> dk, dv;
  DecodeKivi(f, EncodeKivi(f, 64, k, v), dk, dv);
  BoundTracker tracker;
  CheckKiviBound(f, 64, k, v, dk, dv, tracker);
  EXPECT_GT(tracker.worst_ratio, 0.25);

  const float inf = std::numeric_limits<float>::infinity();
  for (int32_t t = 0; t < 32; ++t) {
    k[t * 64] = t % 2 ? 1e6f : -1e30f;
    k[t * 64 + 1] = t % 2 ? inf : -inf;
    v[t * 64 + 2] = t % 2 ? 3e38f : -inf;
    k[t * 64 + 2] = -1e6f - t;  // the whole group below the f16 range
  }
  DecodeKivi(f, EncodeKivi(f, 64, k, v), dk, dv);
  for (size_t i = 0; i < dk.size(); ++i) {
    ASSERT_TRUE(std::isfinite(dk[i])) << i;
    ASSERT_TRUE(std::isfinite(dv[i])) << i;
  }
  EXPECT_GT(dk[1 * 64], 65504.0f);  // the largest code times the saturated scale
  EXPECT_EQ(dk[0], -65504.0f);      // the saturated min
  for (int32_t t = 0; t < 32; ++t) EXPECT_EQ(dk[t * 64 + 2], -65504.0f) << t;  // scale 0
}

// A 64-token page holds two groups; encoding one writes only its own code rows and stats.
TEST_P(KiviCodecTest, GroupsOfAPageAreIndependent) {
  const KvPageFormat f{GetParam(), 64, 2, 64};
  const int32_t h_count = 2, gv = 2;
  const size_t row_bytes = f.RowBytes(), rows_per_group = 32 * h_count;
  const std::vector<float> k0 = TestData(32, 2, 64, 41), v0 = TestData(32, 2, 64, 42);
  const std::vector<float> k1 = TestData(32, 2, 64, 43), v1 = TestData(32, 2, 64, 44);
  std::vector<std::byte> page(f.PageBytes(), std::byte{0xa5});
  ASSERT_TRUE(EncodeKiviGroup(f, page, 32, k1.data(), v1.data()).ok());
  // Group 1's regions, from the header's layout.
  const size_t key_stat_bytes = 2 * h_count * 64 * 2;  // both slots' mins (or scales)
  const size_t value_stat_bytes = 64 * h_count * gv * 2;
  const std::pair<size_t, size_t> written[] = {
      {rows_per_group * row_bytes, 2 * rows_per_group * row_bytes},  // K codes, tokens 32..63
      {f.VCodesOffset() + rows_per_group * row_bytes,
       f.VCodesOffset() + 2 * rows_per_group * row_bytes},
      {f.KStatsOffset() + key_stat_bytes / 2, f.KStatsOffset() + key_stat_bytes},  // K mins slot 1
      {f.KStatsOffset() + key_stat_bytes * 3 / 2, f.KStatsOffset() + 2 * key_stat_bytes},
      {f.VStatsOffset() + value_stat_bytes / 2, f.VStatsOffset() + value_stat_bytes},
      {f.VStatsOffset() + value_stat_bytes * 3 / 2, f.VStatsOffset() + 2 * value_stat_bytes},
  };
  ASSERT_EQ(f.VStatsOffset() + 2 * value_stat_bytes, f.PageBytes());
  for (size_t i = 0; i < page.size(); ++i) {
    const bool inside = std::any_of(std::begin(written), std::end(written),
                                    [&](auto r) { return i >= r.first && i < r.second; });
    if (!inside) {
      ASSERT_EQ(page[i], std::byte{0xa5}) << "byte " << i;
    }
  }
  std::vector<float> only1_k(64 * 128), only1_v(64 * 128);
  ASSERT_TRUE(DecodePage(f, page, 64, only1_k.data(), only1_v.data()).ok());
  ASSERT_TRUE(EncodeKiviGroup(f, page, 0, k0.data(), v0.data()).ok());
  std::vector<float> both_k(64 * 128), both_v(64 * 128);
  ASSERT_TRUE(DecodePage(f, page, 64, both_k.data(), both_v.data()).ok());
  std::vector<std::byte> fresh(f.PageBytes());
  ASSERT_TRUE(EncodeKiviGroup(f, fresh, 0, k0.data(), v0.data()).ok());
  std::vector<float> only0_k(32 * 128), only0_v(32 * 128);
  ASSERT_TRUE(DecodePage(f, fresh, 32, only0_k.data(), only0_v.data()).ok());
  for (size_t i = 0; i < 32 * 128; ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(both_k[i]), std::bit_cast<uint32_t>(only0_k[i])) << i;
    ASSERT_EQ(std::bit_cast<uint32_t>(both_v[i]), std::bit_cast<uint32_t>(only0_v[i])) << i;
    const size_t j = 32 * 128 + i;
    ASSERT_EQ(std::bit_cast<uint32_t>(both_k[j]), std::bit_cast<uint32_t>(only1_k[j])) << j;
    ASSERT_EQ(std::bit_cast<uint32_t>(both_v[j]), std::bit_cast<uint32_t>(only1_v[j])) << j;
  }
}

TEST_P(KiviCodecTest, RejectsPerTokenWritesAndBadGroups) {
  const KvCodec codec = GetParam();
  const std::vector<float> k(64 * 128), v(64 * 128);
  const KvPageFormat f32{codec, 32, 2, 64};
  std::vector<std::byte> a(f32.PageBytes());
  EXPECT_EQ(EncodeTokens(f32, a, 0, 1, k.data(), v.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(EncodeKiviGroup(f32, a, 0, k.data(), v.data()).ok());
  const auto bad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(EncodeKiviGroup(f32, a, 32, k.data(), v.data()).code(), bad);  // past the page
  EXPECT_EQ(EncodeKiviGroup(f32, a, -32, k.data(), v.data()).code(), bad);
  EXPECT_EQ(EncodeKiviGroup(f32, std::span(a).first(a.size() - 1), 0, k.data(), v.data()).code(),
            bad);
  EXPECT_EQ(EncodeKiviGroup(f32, a, 0, nullptr, v.data()).code(), bad);
  EXPECT_EQ(EncodeKiviGroup(f32, a, 0, k.data(), nullptr).code(), bad);

  const KvPageFormat f64{codec, 64, 2, 64};
  std::vector<std::byte> big(f64.PageBytes());
  EXPECT_EQ(EncodeKiviGroup(f64, big, 16, k.data(), v.data()).code(), bad);
  EXPECT_EQ(EncodeKiviGroup(f64, big, 64, k.data(), v.data()).code(), bad);
  EXPECT_TRUE(EncodeKiviGroup(f64, big, 32, k.data(), v.data()).ok());
  const KvPageFormat f16{codec, 16, 2, 64};  // block_size < 32: no longer a KIVI shape
  EXPECT_EQ(EncodeKiviGroup(f16, big, 0, k.data(), v.data()).code(), bad);
  const KvPageFormat not_kivi{KvCodec::kInt8, 32, 2, 64};
  EXPECT_EQ(EncodeKiviGroup(not_kivi, big, 0, k.data(), v.data()).code(), bad);
}

INSTANTIATE_TEST_SUITE_P(Codecs, KiviCodecTest, testing::Values(KvCodec::kKivi4, KvCodec::kKivi2),
                         [](const testing::TestParamInfo<KvCodec>& info) {
                           return std::string(CodecName(info.param));
                         });

}  // namespace
}  // namespace strata::kernels
