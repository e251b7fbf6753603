#include "engine/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/engine/safetensors_writer.h"

namespace strata::engine {
namespace {

using ::strata::testing::F32Bytes;
using ::strata::testing::RawSafetensors;
using ::strata::testing::SerializeSafetensors;
using ::testing::HasSubstr;

absl::StatusOr<SafetensorsHeader> Parse(const std::string& image) {
  return SafetensorsFile::ParseHeader(
      std::span(reinterpret_cast<const uint8_t*>(image.data()), image.size()), "mem.safetensors");
}

// Parses `header` + `data`, expecting an error that contains every string in `expect`.
void ExpectRejected(const std::string& header, const std::string& data,
                    const std::vector<std::string>& expect) {
  absl::StatusOr<SafetensorsHeader> h = Parse(RawSafetensors(header, data));
  ASSERT_FALSE(h.ok()) << header;
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(h.status().message(), HasSubstr("mem.safetensors")) << h.status();
  for (const std::string& s : expect) EXPECT_THAT(h.status().message(), HasSubstr(s)) << header;
}

TEST(SafetensorsTest, ParsesTensorsMetadataAndBytes) {
  std::string image = SerializeSafetensors(
      {{"b", "F32", {2, 3}, F32Bytes({1, 2, 3, 4, 5, 6})},
       {"a", "BF16", {2}, std::string("\x80\x3f\x00\x40", 4)},
       {"empty", "I64", {0, 4}, ""},
       {"ids", "I64", {1}, std::string(8, '\x01')}},
      R"({"format":"pt","note":"x"})");
  absl::StatusOr<SafetensorsHeader> h = Parse(image);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_EQ(h->tensors.size(), 4u);
  EXPECT_EQ(h->tensors[0].name, "a");  // sorted by name
  EXPECT_EQ(h->metadata.at("format"), "pt");
  EXPECT_EQ(h->metadata.at("note"), "x");
  EXPECT_EQ(h->data_start % 8, 0u);
  const SafetensorsTensor* b = h->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, "F32");
  EXPECT_EQ(b->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(b->NumElements(), 6);
  EXPECT_EQ(b->Loadable(), DType::kF32);
  EXPECT_EQ(h->Find("a")->Loadable(), DType::kBF16);
  EXPECT_EQ(h->Find("ids")->Loadable(), std::nullopt);
  EXPECT_EQ(h->Find("empty")->NumBytes(), 0u);
  EXPECT_EQ(h->Find("missing"), nullptr);
  std::span<const uint8_t> bytes =
      TensorBytesIn(std::span(reinterpret_cast<const uint8_t*>(image.data()), image.size()), *h,
                    *b);
  ASSERT_EQ(bytes.size(), 24u);
  float last;
  std::memcpy(&last, bytes.data() + 20, 4);
  EXPECT_EQ(last, 6.0f);
}

TEST(SafetensorsTest, OpenMapsAFileAndNamesItInErrors) {
  const std::string dir = ::testing::TempDir() + "/st_open";
  std::filesystem::create_directories(dir);
  testing::WriteBytes(dir + "/ok.safetensors",
                      SerializeSafetensors({{"w", "F16", {2}, std::string("\x00\x3c\x00\xc0", 4)}}));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(dir + "/ok.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  const SafetensorsTensor* w = (*f)->Find("w");
  ASSERT_NE(w, nullptr);
  std::span<const uint8_t> bytes = (*f)->TensorBytes(*w);
  ASSERT_EQ(bytes.size(), 4u);
  EXPECT_EQ(bytes[1], 0x3c);
  EXPECT_EQ(bytes[3], 0xc0);

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> missing =
      SafetensorsFile::Open(dir + "/none.safetensors");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(dir + "/none.safetensors"));

  testing::WriteBytes(dir + "/short.safetensors", "abc");
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> short_file =
      SafetensorsFile::Open(dir + "/short.safetensors");
  ASSERT_FALSE(short_file.ok());
  EXPECT_THAT(short_file.status().message(), HasSubstr(dir + "/short.safetensors"));
  EXPECT_THAT(short_file.status().message(), HasSubstr("fewer than the 8-byte header length"));
}

TEST(SafetensorsTest, HeaderLengthLargerThanFile) {
  std::string image = SerializeSafetensors({{"w", "F32", {1}, F32Bytes({1})}});
  image[0] = static_cast<char>(0xff);
  image[1] = static_cast<char>(0xff);
  absl::StatusOr<SafetensorsHeader> h = Parse(image);
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(), HasSubstr("header length 65535 exceeds the file size"));
  image[7] = static_cast<char>(0x80);  // 2^63 + ...: must not overflow the comparison
  EXPECT_FALSE(Parse(image).ok());
}

TEST(SafetensorsTest, HeaderThatIsNotAnObject) {
  ExpectRejected("[1, 2, 3]", "", {"not a JSON object"});
  ExpectRejected("{\"w\": {\"dtype\": \"F32\"", "", {"not valid JSON"});
  ExpectRejected("{\"w\": 5}", "", {"tensor 'w'", "not a JSON object"});
  ExpectRejected("{\"__metadata__\": {\"n\": 1}}", "", {"__metadata__", "'n'"});
}

TEST(SafetensorsTest, BadEntriesNameTheTensor) {
  const std::string data(16, '\0');
  ExpectRejected(R"({"w":{"dtype":"F7","shape":[4],"data_offsets":[0,16]}})", data,
                 {"tensor 'w'", "unknown dtype \"F7\""});
  ExpectRejected(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}})", data,
                 {"tensor 'w'", "end 32 runs past the data (16 bytes)"});
  ExpectRejected(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}})", data,
                 {"tensor 'w'", "begin 16 > end 0"});
  ExpectRejected(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", data,
                 {"tensor 'w'", "span 16 bytes but shape x F32 needs 12"});
  ExpectRejected(R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", data,
                 {"tensor 'w'", "non-negative"});
  ExpectRejected(R"({"w":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}})", data,
                 {"tensor 'w'", "non-negative integers"});
  ExpectRejected(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0]}})", data,
                 {"tensor 'w'", "data_offsets"});
  ExpectRejected(R"({"w":{"shape":[4],"data_offsets":[0,16]}})", data,
                 {"tensor 'w'", "dtype"});
  ExpectRejected(
      R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", data,
      {"tensor 'w'", "overflows int64"});
  ExpectRejected(
      R"({"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,16]}})", data,
      {"tensor 'w'", "byte size overflows int64"});
}

TEST(SafetensorsTest, RangesMustTileTheDataExactly) {
  const std::string data(16, '\0');
  ExpectRejected(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},
                     "b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                 data, {"tensor 'b'", "overlap tensor 'a'"});
  ExpectRejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                     "b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
                 data, {"tensor 'b'", "gap of 4"});
  ExpectRejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data,
                 {"tensors cover 8 of the 16 data bytes"});
}

}  // namespace
}  // namespace strata::engine
