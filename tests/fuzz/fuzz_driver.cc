// A stand-in for libFuzzer's main() when building with g++: replays every seed file under the
// given corpus folders, then feeds random mutations of them (bit flips, truncation, byte
// insertion, splicing two seeds) to LLVMFuzzerTestOneInput until --seconds=N elapse. Crashes and
// sanitizer reports fail the run, exactly as under libFuzzer. Deterministic for a given --seed.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::string> LoadCorpus(const std::vector<std::string>& dirs) {
  std::vector<std::string> seeds;
  for (const auto& dir : dirs) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (!entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      seeds.push_back(ss.str());
    }
  }
  if (seeds.empty()) seeds.push_back("");
  return seeds;
}

std::string Mutate(const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  std::string s = seeds[rng() % seeds.size()];
  int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    switch (rng() % 5) {
      case 0:  // flip a bit
        if (!s.empty()) s[rng() % s.size()] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:  // truncate
        if (!s.empty()) s.resize(rng() % s.size());
        break;
      case 2:  // insert a random byte (often a structural character)
        s.insert(s.begin() + static_cast<long>(s.empty() ? 0 : rng() % s.size()),
                 static_cast<char>("{}[]\":,\\0 9-e"[rng() % 13] ^ (rng() % 3 == 0 ? rng() : 0)));
        break;
      case 3: {  // overwrite a byte
        if (!s.empty()) s[rng() % s.size()] = static_cast<char>(rng());
        break;
      }
      default: {  // splice with another seed
        const std::string& o = seeds[rng() % seeds.size()];
        size_t cut = s.empty() ? 0 : rng() % s.size();
        size_t from = o.empty() ? 0 : rng() % o.size();
        s = s.substr(0, cut) + o.substr(from);
      }
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 10;
  uint64_t seed = 1;
  std::vector<std::string> dirs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--seconds=", 0) == 0) {
      seconds = std::stod(a.substr(10));
    } else if (a.rfind("--seed=", 0) == 0) {
      seed = std::stoull(a.substr(7));
    } else {
      dirs.push_back(a);
    }
  }
  std::vector<std::string> seeds = LoadCorpus(dirs);
  for (const auto& s : seeds) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  std::mt19937_64 rng(seed);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  uint64_t runs = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    std::string s = Mutate(seeds, rng);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    ++runs;
  }
  std::printf("fuzz_driver: %zu seeds, %llu mutated inputs, no crash\n", seeds.size(),
              static_cast<unsigned long long>(runs));
  return 0;
}
