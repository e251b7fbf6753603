// Fuzzes Tokenizer::FromJsonText with arbitrary tokenizer.json text (and, after a NUL byte, an
// arbitrary tokenizer_config.json); whatever loads must then encode, decode and stream-decode a
// fixed string full of edge cases without crashing. Writes nothing to disk.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer.h"

namespace {

constexpr std::string_view kText =
    "Hello world 12345 it's <s></s><unk><|begin_of_text|> caf\xC3\xA9 \xF0\x9F\x8D\xB0 "
    "\xE4\xB8\x96\n\n  x\t\xC2\xA0\xFF\xC3 aaaa bab \xE2\x96\x81";

void Exercise(const strata::engine::Tokenizer& tok) {
  std::vector<int32_t> ids = tok.Encode(kText, true);
  (void)tok.Decode(ids, false);
  (void)tok.Decode(ids, true);
  ids.push_back(-1);
  ids.push_back(static_cast<int32_t>(tok.vocab_size()));
  strata::engine::IncrementalDecoder stream(
      tok, std::span<const int32_t>(ids).first(ids.size() / 2), true);
  for (size_t i = ids.size() / 2; i < ids.size(); ++i) (void)stream.Push(ids[i]);
  (void)stream.Flush();
  (void)tok.TokenToId("<s>");
  (void)tok.IsSpecial(tok.bos_id());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view json = input.substr(0, nul);
  const std::string_view config = nul == std::string_view::npos ? "" : input.substr(nul + 1);
  auto tok = strata::engine::Tokenizer::FromJsonText(json, config, "fuzz/tokenizer.json");
  if (tok.ok()) Exercise(**tok);
  return 0;
}
