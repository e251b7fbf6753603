// deploy/docker without a Docker daemon: what can be checked about the Dockerfiles statically.
// The runtime stage installs a package for every shared library the binary asks for by name and
// reaches every library `ldd` lists through those packages' dependencies (resolved with dpkg on
// this Debian 12 machine, where the binary was built); the image runs as an unprivileged user;
// the build stage uses the scripts `make` uses; ports, health check and config match the daemon.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_split.h"
#include "server/config.h"
#include "tests/deploy/deploy_util.h"

namespace strata::testing {
namespace {

struct Stage {
  std::string from;                // the FROM line
  std::vector<std::string> lines;  // its instructions, continuation lines joined
};

// The stages of a Dockerfile, comments dropped and `\` continuations joined.
std::vector<Stage> ParseDockerfile(const std::string& path) {
  std::vector<Stage> stages;
  std::istringstream in(ReadFile(path).value_or(""));
  std::string line, joined;
  while (std::getline(in, line)) {
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    const bool more = !line.empty() && line.back() == '\\';
    joined += (joined.empty() ? "" : " ") +
              line.substr(first, more ? line.size() - first - 1 : std::string::npos);
    if (more) continue;
    if (joined.rfind("FROM ", 0) == 0) {
      stages.push_back({joined, {}});
    } else if (!stages.empty()) {
      stages.back().lines.push_back(joined);
    }
    joined.clear();
  }
  return stages;
}

// The instructions of `stage` starting with `keyword` (e.g. "USER ").
std::vector<std::string> Instructions(const Stage& stage, const std::string& keyword) {
  std::vector<std::string> out;
  for (const std::string& l : stage.lines) {
    if (l.rfind(keyword, 0) == 0) out.push_back(l.substr(keyword.size()));
  }
  return out;
}

// The package names after `apt-get install` in the stage's RUN lines (flags skipped).
std::set<std::string> InstalledPackages(const Stage& stage) {
  std::set<std::string> out;
  for (const std::string& run : Instructions(stage, "RUN ")) {
    for (size_t at = run.find("apt-get install"); at != std::string::npos;
         at = run.find("apt-get install", at + 1)) {
      std::istringstream words(run.substr(at + 15));
      std::string w;
      while (words >> w && w != "&&") {
        if (w[0] != '-') out.insert(w);
      }
    }
  }
  return out;
}

std::string Trim(std::string s) {
  s.erase(0, s.find_first_not_of(" \n"));
  s.erase(s.find_last_not_of(" \n") + 1);
  return s;
}

// The Debian packages that installed `paths` (path -> package; a path that no package
// installed, e.g. the CUDA toolkit's, is missing). One dpkg call for all of them.
std::map<std::string, std::string> OwningPackages(const std::vector<std::string>& paths) {
  std::string cmd = "dpkg -S";
  for (const std::string& p : paths) cmd += " " + ShellQuote(p);
  std::map<std::string, std::string> owner;
  std::istringstream in(Shell(cmd + " 2>/dev/null"));
  std::string line;
  while (std::getline(in, line)) {  // "libfoo1:amd64: /usr/lib/x86_64-linux-gnu/libfoo.so.1"
    const size_t sep = line.find(": /");
    if (sep == std::string::npos) continue;
    owner[line.substr(sep + 2)] = line.substr(0, line.find_first_of(":,"));
  }
  return owner;
}

// `pkgs` and everything they depend on (Depends and Pre-Depends, every alternative), as far as
// the packages are installed here.
std::set<std::string> DependencyClosure(std::set<std::string> pkgs) {
  std::map<std::string, std::string> depends;  // package -> "a (>= 1), b | c, ..."
  std::istringstream in(Shell("dpkg-query -W -f='${Package}\\t${Depends},${Pre-Depends}\\n'"));
  std::string line;
  while (std::getline(in, line)) {
    const size_t tab = line.find('\t');
    if (tab != std::string::npos) depends[line.substr(0, tab)] += line.substr(tab + 1) + ",";
  }
  std::vector<std::string> todo(pkgs.begin(), pkgs.end());
  while (!todo.empty()) {
    const std::string p = todo.back();
    todo.pop_back();
    for (absl::string_view item : absl::StrSplit(depends[p], absl::ByAnyChar(",|"))) {
      std::string name = Trim(std::string(item.substr(0, item.find('('))));
      name = name.substr(0, name.find(':'));  // libfoo:any
      if (!name.empty() && pkgs.insert(name).second) todo.push_back(name);
    }
  }
  return pkgs;
}

struct Library {
  std::string soname;
  std::string path;
};

// The binary the images ship: built like `make` builds it. A sanitizer build's own binary also
// loads libasan and links its libraries without --as-needed, so there the regular build's binary
// (build/, which `make test` builds before `make test SANITIZE=1`) is the one to check.
std::string ShippedBinary() {
#ifdef STRATA_SANITIZE
  return STRATA_SOURCE_DIR "/build/bin/strata";
#else
  return STRATA_BINARY_DIR "/bin/strata";
#endif
}

// What `ldd` resolves for the shipped binary.
std::vector<Library> LddLibraries() {
  std::vector<Library> libs;
  std::istringstream in(Shell("ldd " + ShippedBinary()));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string first, arrow, path;
    words >> first >> arrow >> path;
    if (arrow == "=>" && path[0] == '/') libs.push_back({first, path});
    if (first[0] == '/') libs.push_back({first, first});  // the dynamic loader
  }
  return libs;
}

// The sonames the binary names itself (DT_NEEDED), as opposed to its libraries' dependencies.
std::set<std::string> NeededSonames() {
  std::set<std::string> out;
  std::istringstream in(Shell("objdump -p " + ShippedBinary()));
  std::string word;
  while (in >> word) {
    if (word == "NEEDED" && in >> word) out.insert(word);
  }
  return out;
}

bool FromCudaToolkit(const Library& lib) { return lib.path.rfind("/usr/local/cuda", 0) == 0; }

// CUDA's libraries come from NVIDIA's repository, named after the CUDA version.
std::string CudaPackagePrefix(const std::string& soname) {
  if (soname.rfind("libcudart.", 0) == 0) return "cuda-cudart-";
  if (soname.rfind("libcublas", 0) == 0) return "libcublas-";
  return "?" + soname;
}

void ExpectRuntimeCoversTheBinary(const std::string& dockerfile, bool cuda) {
  SCOPED_TRACE(dockerfile);
  if (!std::filesystem::exists(ShippedBinary())) {
    GTEST_SKIP() << "no regular build at " << ShippedBinary() << " (run `make test` first)";
  }
  const std::vector<Stage> stages = ParseDockerfile(SourcePath(dockerfile));
  ASSERT_EQ(stages.size(), 2u);
  const std::set<std::string> listed = InstalledPackages(stages[1]);
  const std::set<std::string> closure = DependencyClosure(listed);
  const std::set<std::string> needed = NeededSonames();
  const std::vector<Library> libs = LddLibraries();
  ASSERT_GT(libs.size(), 10u);
  // dpkg knows a file by the path its package ships, before or after the /usr merge.
  auto candidates = [](const Library& lib) {
    return std::vector<std::string>{std::filesystem::canonical(lib.path).string(), lib.path,
                                    "/usr" + lib.path};
  };
  std::vector<std::string> paths;
  for (const Library& lib : libs) {
    for (const std::string& c : candidates(lib)) paths.push_back(c);
  }
  const std::map<std::string, std::string> owner = OwningPackages(paths);
  for (const Library& lib : libs) {
    if (FromCudaToolkit(lib)) {
      // This machine's build links CUDA when nvcc is present; the CPU image builds without it.
      if (!cuda) continue;
      const std::string prefix = CudaPackagePrefix(lib.soname);
      EXPECT_TRUE(std::any_of(listed.begin(), listed.end(),
                              [&](const std::string& p) { return p.rfind(prefix, 0) == 0; }))
          << lib.soname << ": no " << prefix << "* package";
      continue;
    }
    std::string pkg;
    for (const std::string& c : candidates(lib)) {
      if (pkg.empty() && owner.count(c)) pkg = owner.at(c);
    }
    ASSERT_FALSE(pkg.empty()) << lib.path << " belongs to no package";
    if (needed.count(lib.soname)) {
      EXPECT_TRUE(listed.count(pkg)) << lib.soname << " (named by the binary) needs " << pkg;
    } else {
      EXPECT_TRUE(closure.count(pkg))
          << lib.soname << " needs " << pkg << ", which no listed package depends on";
    }
  }
  // Not libraries, but the image needs them: TLS roots for downloads, curl for HEALTHCHECK.
  EXPECT_TRUE(listed.count("ca-certificates"));
  EXPECT_TRUE(listed.count("curl"));
}

TEST(DockerTest, CpuRuntimeStageHasEveryLibraryTheBinaryLoads) {
  ExpectRuntimeCoversTheBinary("deploy/docker/Dockerfile.cpu", /*cuda=*/false);
}

TEST(DockerTest, CudaRuntimeStageHasEveryLibraryTheBinaryLoads) {
  ExpectRuntimeCoversTheBinary("deploy/docker/Dockerfile.cuda", /*cuda=*/true);
}

TEST(DockerTest, ImagesRunAsAnUnprivilegedUserAndServeTheDaemonsPorts) {
  auto config = server::LoadConfigFile(SourcePath("deploy/k8s/base/strata.yaml"));
  ASSERT_TRUE(config.ok());
  for (const char* file : {"deploy/docker/Dockerfile.cpu", "deploy/docker/Dockerfile.cuda"}) {
    SCOPED_TRACE(file);
    const std::vector<Stage> stages = ParseDockerfile(SourcePath(file));
    ASSERT_EQ(stages.size(), 2u);
    const Stage& run = stages[1];
    const std::vector<std::string> users = Instructions(run, "USER ");
    ASSERT_FALSE(users.empty()) << "the runtime stage runs as root";
    const std::string user = users.back().substr(0, users.back().find(':'));
    EXPECT_NE(user, "root");
    EXPECT_NE(user, "0");
    const std::vector<std::string> runs = Instructions(run, "RUN ");
    EXPECT_TRUE(std::any_of(runs.begin(), runs.end(),
                            [&](const std::string& r) {
                              return r.find("useradd") != std::string::npos &&
                                     r.find("--uid " + user) != std::string::npos;
                            }))
        << "user " << user << " is never created";
    EXPECT_EQ(Instructions(run, "EXPOSE "),
              std::vector<std::string>{std::to_string(config->server.http_port) + " " +
                                       std::to_string(config->server.grpc_port)});
    const std::vector<std::string> health = Instructions(run, "HEALTHCHECK ");
    ASSERT_EQ(health.size(), 1u);
    EXPECT_NE(
        health[0].find("http://127.0.0.1:" + std::to_string(config->server.http_port) + "/health"),
        std::string::npos);
    EXPECT_EQ(Instructions(run, "ENTRYPOINT "),
              std::vector<std::string>{R"(["/usr/local/bin/strata"])"});
    EXPECT_EQ(Instructions(run, "CMD "),
              std::vector<std::string>{R"(["serve", "--config", "/etc/strata/strata.yaml"])"});
  }
}

TEST(DockerTest, BuildStageUsesMakesScriptsAndTheRuntimeStageGetsOnlyTheBinary) {
  for (const char* file : {"deploy/docker/Dockerfile.cpu", "deploy/docker/Dockerfile.cuda"}) {
    SCOPED_TRACE(file);
    const std::vector<Stage> stages = ParseDockerfile(SourcePath(file));
    ASSERT_EQ(stages.size(), 2u);
    EXPECT_EQ(stages[0].from, "FROM debian:12 AS build");
    EXPECT_EQ(stages[1].from, "FROM debian:12-slim AS runtime");
    std::string build;
    for (const std::string& l : stages[0].lines) build += l + "\n";
    EXPECT_NE(build.find("bash /src/scripts/install-deps.sh"), std::string::npos);
    EXPECT_NE(build.find("cmake --build build --target strata"), std::string::npos);
    // Built for an instruction set, not for the machine that builds the image.
    EXPECT_NE(build.find("-DSTRATA_NATIVE=OFF"), std::string::npos);
    // From the build stage only the binary; the configs come from the checkout.
    std::map<std::string, std::string> copies;
    for (const std::string& c : Instructions(stages[1], "COPY ")) {
      std::istringstream words(c);
      std::string a, b, d;
      words >> a >> b >> d;
      if (a == "--from=build") {
        EXPECT_EQ(b, "/src/build/bin/strata");
      } else {
        copies[b] = a;
        EXPECT_TRUE(std::filesystem::exists(SourcePath(a))) << a;
      }
    }
    ASSERT_TRUE(copies.count("/etc/strata/strata.yaml"));
    EXPECT_TRUE(server::LoadConfigFile(SourcePath(copies["/etc/strata/strata.yaml"])).ok());
    // A missing library fails `docker build` instead of the first `docker run`.
    const std::vector<std::string> runs = Instructions(stages[1], "RUN ");
    EXPECT_TRUE(std::find(runs.begin(), runs.end(),
                          "! ldd /usr/local/bin/strata | grep 'not found'") != runs.end());
    EXPECT_TRUE(std::filesystem::exists(SourcePath(std::string(file) + ".dockerignore")));
  }
}

}  // namespace
}  // namespace strata::testing
