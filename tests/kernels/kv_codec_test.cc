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
  for (KvCodec kivi : {KvCodec::kKivi4, KvCodec::kKivi2}) {
    for (int32_t bs : {1, 8, 16, 32, 64, 128}) {
      EXPECT_TRUE((KvPageFormat{kivi, bs, 2, 64}.Validate().ok())) << bs;
    }
    for (int32_t bs : {5, 24, 48}) {
      EXPECT_EQ((KvPageFormat{kivi, bs, 2, 64}.Validate().code()),
                absl::StatusCode::kInvalidArgument) << bs;
    }
  }
  EXPECT_FALSE((KvPageFormat{KvCodec::kKivi2, 16, 1, 6}.Validate().ok()));  // 12 bits per row
  EXPECT_TRUE((KvPageFormat{KvCodec::kKivi4, 16, 1, 6}.Validate().ok()));   // 3 bytes per row
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
      // kivi4 codes 2 * 32 B, key stats 64 ch * 8 B / 16 tokens, value stats 2 groups * 8 B.
      {KvCodec::kKivi4, 16, 1, 64, 64 + 32 + 16}, {KvCodec::kKivi2, 16, 1, 64, 32 + 32 + 16},
      {KvCodec::kKivi4, 32, 1, 64, 64 + 16 + 16}, {KvCodec::kKivi2, 64, 1, 64, 32 + 16 + 16},
      {KvCodec::kF32, 16, 4, 8, 4 * 64},   {KvCodec::kBf16, 16, 4, 8, 4 * 32},
      {KvCodec::kFp8, 16, 4, 8, 4 * 24},   {KvCodec::kInt8, 16, 4, 8, 4 * 24},
      {KvCodec::kKivi4, 16, 4, 8, 4 * (8 + 4 + 8)}, {KvCodec::kKivi2, 16, 4, 8, 4 * (4 + 4 + 8)},
      {KvCodec::kKivi4, 16, 1, 80, 80 + 40 + 24},  // 3 value groups: 32 + 32 + 16 channels
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
  // kivi with block 64 carries two key-stat slots.
  const KvPageFormat k64{KvCodec::kKivi4, 64, 2, 64};
  EXPECT_EQ(k64.KeyStatGroups(), 2);
  EXPECT_EQ(k64.VStatsOffset() - k64.KStatsOffset(), 2u * 2 * 64 * 2 * 4);
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

class KiviCodecTest : public testing::TestWithParam<KvCodec> {};

// Encodes `tokens` (a multiple of 32 and of block_size) into pages group by group.
std::vector<std::vector<std::byte>> EncodeKivi(const KvPageFormat& f, int32_t tokens,
                                               const std::vector<float>& k,
                                               const std::vector<float>& v) {
  std::vector<std::vector<std::byte>> pages(tokens / f.block_size,
                                            std::vector<std::byte>(f.PageBytes()));
  const int64_t tf = static_cast<int64_t>(f.num_kv_heads) * f.head_dim;
  for (int32_t start = 0; start < tokens; start += kKiviGroupTokens) {
    std::vector<std::span<std::byte>> spans;
    const int32_t first_page = start / f.block_size;
    const int32_t num_pages = std::max(1, kKiviGroupTokens / f.block_size);
    for (int32_t i = 0; i < num_pages; ++i) spans.emplace_back(pages[first_page + i]);
    EXPECT_TRUE(EncodeKiviGroup(f, spans, start % f.block_size, k.data() + start * tf,
                                v.data() + start * tf).ok());
  }
  return pages;
}

TEST_P(KiviCodecTest, DecodedPagesAreWithinTheBoundAndUseIt) {
  const KvCodec codec = GetParam();
  const double levels = codec == KvCodec::kKivi4 ? 15.0 : 3.0;
  std::vector<Shape> shapes(std::begin(kShapes), std::end(kShapes));
  shapes.push_back({64, 2, 64});
  shapes.push_back({16, 1, 80});  // a short last value channel group
  for (const Shape& s : shapes) {
    const KvPageFormat f{codec, s.block_size, s.heads, s.head_dim};
    const int32_t tokens = std::max(64, s.block_size);  // two key groups
    const int64_t tf = static_cast<int64_t>(s.heads) * s.head_dim;
    const std::vector<float> k = TestData(tokens, s.heads, s.head_dim, 7);
    const std::vector<float> v = TestData(tokens, s.heads, s.head_dim, 8);
    const auto pages = EncodeKivi(f, tokens, k, v);
    std::vector<float> dk(k.size()), dv(v.size());
    for (size_t p = 0; p < pages.size(); ++p) {
      const int64_t at = static_cast<int64_t>(p) * s.block_size * tf;
      ASSERT_TRUE(DecodePage(f, pages[p], s.block_size, dk.data() + at, dv.data() + at).ok());
    }
    BoundTracker tracker;
    for (int32_t t = 0; t < tokens; ++t) {
      const int32_t group_start = t / kKiviGroupTokens * kKiviGroupTokens;
      for (int32_t h = 0; h < s.heads; ++h) {
        for (int32_t d = 0; d < s.head_dim; ++d) {
          const int64_t i = t * tf + h * s.head_dim + d;
          // Keys: stats of channel (h, d) over the token's 32-token group.
          double lo = k[group_start * tf + h * s.head_dim + d], hi = lo;
          for (int32_t u = group_start; u < group_start + kKiviGroupTokens; ++u) {
            lo = std::min<double>(lo, k[u * tf + h * s.head_dim + d]);
            hi = std::max<double>(hi, k[u * tf + h * s.head_dim + d]);
          }
          tracker.Add(std::abs(double{dk[i]} - k[i]),
                      (hi - lo) / levels / 2 * (1 + 1e-5) + 1e-6 * (std::abs(lo) + std::abs(hi)));
          // Values: stats of the token's channel group.
          const int32_t g0 = d / kKiviChannelGroup * kKiviChannelGroup;
          const int32_t g1 = std::min(s.head_dim, g0 + kKiviChannelGroup);
          const float* row = v.data() + t * tf + h * s.head_dim;
          lo = *std::min_element(row + g0, row + g1);
          hi = *std::max_element(row + g0, row + g1);
          tracker.Add(std::abs(double{dv[i]} - v[i]),
                      (hi - lo) / levels / 2 * (1 + 1e-5) + 1e-6 * (std::abs(lo) + std::abs(hi)));
        }
      }
    }
    EXPECT_GT(tracker.worst_ratio, 0.25) << "bs" << s.block_size << " d" << s.head_dim;
    // Constant channels (keys; the second group) and constant rows (values) come back exactly.
    for (int32_t t = 32; t < 64; ++t) EXPECT_EQ(dk[t * tf + 1], 0.375f) << t;
    for (int32_t d = 0; d < s.head_dim; ++d) EXPECT_EQ(dv[5 * tf + d], -2.5f) << d;
    for (int64_t i = 3 * tf; i < 4 * tf; ++i) EXPECT_EQ(dv[i], 0.0f) << i;
  }
}

// With block_size < 32 every page of a group carries the group's key stats, so the second page
// decodes alone (it never looks at the first).
TEST_P(KiviCodecTest, EveryPageOfAGroupDecodesOnItsOwn) {
  const KvPageFormat f{GetParam(), 16, 2, 64};
  const std::vector<float> k = TestData(32, 2, 64, 9), v = TestData(32, 2, 64, 10);
  auto pages = EncodeKivi(f, 32, k, v);
  ASSERT_EQ(pages.size(), 2u);
  const size_t stats = f.KStatsOffset(), stats_end = f.VStatsOffset();
  EXPECT_TRUE(std::equal(pages[0].begin() + stats, pages[0].begin() + stats_end,
                         pages[1].begin() + stats));
  std::vector<float> dk(16 * 128), dv(16 * 128);
  ASSERT_TRUE(DecodePage(f, pages[1], 16, dk.data(), dv.data()).ok());
  std::fill(pages[0].begin(), pages[0].end(), std::byte{0xff});
  std::vector<float> again_k(16 * 128), again_v(16 * 128);
  ASSERT_TRUE(DecodePage(f, pages[1], 16, again_k.data(), again_v.data()).ok());
  EXPECT_EQ(dk, again_k);
  EXPECT_EQ(dv, again_v);
  for (size_t i = 0; i < dk.size(); ++i) ASSERT_NEAR(dk[i], k[16 * 128 + i], 41.0 / 2) << i;
}

TEST_P(KiviCodecTest, RejectsPerTokenWritesAndBadGroups) {
  const KvCodec codec = GetParam();
  const std::vector<float> k(64 * 128), v(64 * 128);
  const KvPageFormat f16{codec, 16, 2, 64};
  std::vector<std::byte> a(f16.PageBytes()), b(f16.PageBytes()), c(f16.PageBytes());
  EXPECT_EQ(EncodeTokens(f16, a, 0, 1, k.data(), v.data()).code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<std::span<std::byte>> one = {a}, two = {a, b}, three = {a, b, c};
  EXPECT_FALSE(EncodeKiviGroup(f16, one, 0, k.data(), v.data()).ok());
  EXPECT_FALSE(EncodeKiviGroup(f16, three, 0, k.data(), v.data()).ok());
  EXPECT_FALSE(EncodeKiviGroup(f16, two, 16, k.data(), v.data()).ok());
  EXPECT_TRUE(EncodeKiviGroup(f16, two, 0, k.data(), v.data()).ok());
  const std::vector<std::span<std::byte>> short_page = {a, std::span(b).first(10)};
  EXPECT_FALSE(EncodeKiviGroup(f16, short_page, 0, k.data(), v.data()).ok());

  const KvPageFormat f64{codec, 64, 2, 64};
  std::vector<std::byte> big(f64.PageBytes());
  const std::vector<std::span<std::byte>> big_one = {big};
  EXPECT_FALSE(EncodeKiviGroup(f64, big_one, 16, k.data(), v.data()).ok());
  EXPECT_FALSE(EncodeKiviGroup(f64, big_one, 64, k.data(), v.data()).ok());
  EXPECT_TRUE(EncodeKiviGroup(f64, big_one, 32, k.data(), v.data()).ok());
  const KvPageFormat not_kivi{KvCodec::kInt8, 16, 2, 64};
  EXPECT_FALSE(EncodeKiviGroup(not_kivi, two, 0, k.data(), v.data()).ok());
}

INSTANTIATE_TEST_SUITE_P(Codecs, KiviCodecTest, testing::Values(KvCodec::kKivi4, KvCodec::kKivi2),
                         [](const testing::TestParamInfo<KvCodec>& info) {
                           return std::string(CodecName(info.param));
                         });

}  // namespace
}  // namespace strata::kernels
