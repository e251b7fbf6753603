// MakeEngineConfig's KV pool carving (DESIGN.md §5): one pool per codec the policies name, equal
// byte shares of the device budget, KIVI pools with 32-token pages and room for the largest
// residual window their policies ask for.
#include "server/serve_setup.h"

#include <gtest/gtest.h>

#include "engine/model.h"
#include "kvcache/kv_layout.h"
#include "server/config.h"

namespace strata::server {
namespace {

constexpr char kPolicies[] = R"(
model:
  path: synthetic:tiny
  max_model_len: 256
kvcache:
  block_size: 16
  tiers:
    device:
      capacity: 64MiB
policies:
  full:
    codec: fp32
  short_kivi:
    codec: kivi4
    residual_tokens: 64
    tiers: [device]
  long_kivi:
    codec: kivi4
    residual_tokens: 192
    tiers: [device]
  bf16:
    codec: bf16
    tiers: [device]
)";

TEST(ServeSetupTest, PoolsShareTheBudgetAndKiviPoolsFitTheirLargestWindow) {
  auto config = ParseConfig(kPolicies, "test");
  ASSERT_TRUE(config.ok()) << config.status();
  auto model = engine::LoadModel("synthetic:tiny", {});
  ASSERT_TRUE(model.ok()) << model.status();
  const engine::EngineConfig e = MakeEngineConfig(*config, **model);
  ASSERT_EQ(e.codec_pools.size(), 2u);  // bf16 and kivi4 besides pool 0 (fp32)
  const kvcache::KvLayout base{.num_layers = static_cast<int32_t>((*model)->config.num_layers),
                               .num_kv_heads = static_cast<int32_t>((*model)->config.num_kv_heads),
                               .head_dim = static_cast<int32_t>((*model)->config.head_dim),
                               .block_size = 16};
  const int64_t share = int64_t{64} << 20;  // 64 MiB over three codecs
  EXPECT_NEAR(static_cast<double>(e.num_kv_pages) * base.PageBytes(), share / 3.0,
              static_cast<double>(base.PageBytes()));
  for (const engine::KvPoolSpec& pool : e.codec_pools) {
    kvcache::KvLayout l = base;
    l.codec = pool.codec;
    l.block_size = pool.block_size;
    EXPECT_NEAR(static_cast<double>(pool.num_pages) * l.PageBytes(), share / 3.0,
                static_cast<double>(l.PageBytes()))
        << kernels::CodecName(pool.codec);
    if (pool.codec == kernels::KvCodec::kKivi4) {
      EXPECT_EQ(pool.block_size, 32);
      EXPECT_EQ(pool.max_residual_tokens, 192);  // the larger of its two policies' windows
    } else {
      EXPECT_EQ(pool.codec, kernels::KvCodec::kBf16);
      EXPECT_EQ(pool.block_size, 16);
      EXPECT_EQ(pool.max_residual_tokens, 0);
    }
  }
}

}  // namespace
}  // namespace strata::server
