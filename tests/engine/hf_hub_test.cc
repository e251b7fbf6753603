#include "engine/hf_hub.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/file.h"
#include "engine/weights.h"
#include "tests/engine/safetensors_writer.h"

namespace strata::engine {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kSha[] = "0123456789abcdef0123456789abcdef01234567";
constexpr char kPython[] = "/usr/bin/python3";
const std::string kServerScript = STRATA_SOURCE_DIR "/tests/engine/hub_server.py";

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A stable, path-safe blob id for test contents (FNV-1a; the client only needs it unique).
std::string BlobId(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// tests/engine/hub_server.py on a free loopback port; stopped (SIGTERM to its pid) on Stop or
// destruction.
class HubServer {
 public:
  absl::Status Start(const std::string& root, const std::vector<std::string>& extra_args) {
    log_ = root + "/requests.log";
    fs::remove(log_);
    int out[2];
    if (pipe(out) != 0) return absl::InternalError("pipe");
    std::vector<std::string> args = {kPython, kServerScript, "--root", root, "--log", log_};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(kPython, argv.data());
      _exit(127);
    }
    close(out[1]);
    FILE* f = fdopen(out[0], "r");
    int port = 0;
    const bool ok = std::fscanf(f, "PORT %d", &port) == 1;
    std::fclose(f);
    if (!ok) return absl::InternalError("hub_server.py did not print its port");
    port_ = port;
    return absl::OkStatus();
  }
  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  ~HubServer() { Stop(); }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  // Lines of the request log that mention `needle`.
  std::vector<std::string> Requests(const std::string& needle) const {
    std::vector<std::string> out;
    std::ifstream in(log_);
    for (std::string line; std::getline(in, line);) {
      if (line.find(needle) != std::string::npos) out.push_back(line);
    }
    return out;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_;
};

class HfHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kPython)) GTEST_SKIP() << "no " << kPython;
    base_ = ::testing::TempDir() + "/hf_hub_test_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(base_);
    root_ = base_ + "/hub_root";
    opts_.cache_dir = base_ + "/cache";
    opts_.max_attempts = 3;
  }

  // Publishes files as repo `org/name` at commit kSha under revision "main".
  void Publish(const std::string& repo, const std::map<std::string, std::string>& files) {
    std::string siblings;
    for (const auto& [name, bytes] : files) {
      const std::string dir = root_ + "/" + repo + "/resolve/" + kSha;
      fs::create_directories(dir);
      testing::WriteBytes(dir + "/" + name, bytes);
      const std::string size = std::to_string(bytes.size());
      const bool lfs = name.ends_with(".safetensors");
      siblings += std::string(siblings.empty() ? "" : ",") + "{\"rfilename\":\"" + name + "\"," +
                  (lfs ? "\"lfs\":{\"sha256\":\"" + BlobId(bytes) + "\",\"size\":" + size + "}"
                       : "\"blobId\":\"" + BlobId(bytes) + "\",\"size\":" + size) + "}";
      blob_of_[name] = BlobId(bytes);
    }
    const std::string api = root_ + "/api/models/" + repo + "/revision";
    fs::create_directories(api);
    testing::WriteBytes(api + "/main",
                        std::string("{\"sha\":\"") + kSha + "\",\"siblings\":[" + siblings + "]}");
  }

  // config.json, tokenizer.json, model.safetensors (about 19 KiB) of a tiny Llama.
  std::map<std::string, std::string> TinyFiles() {
    testing::TinyModel m;
    return {{"config.json", testing::TinyModelConfigJson(m)},
            {"tokenizer.json", "{\"model\":{\"type\":\"BPE\"}}"},
            {"README.md", "not downloaded"},
            {"model.safetensors",
             testing::SerializeSafetensors(testing::TinyModelTensors(m))}};
  }

  std::string RepoDir(const std::string& repo) {
    std::string flat = repo;
    flat.replace(flat.find('/'), 1, "--");
    return opts_.cache_dir + "/models--" + flat;
  }

  std::string base_, root_;
  HubOptions opts_;
  std::map<std::string, std::string> blob_of_;
};

TEST_F(HfHubTest, DownloadsIntoTheCacheLayoutThenResolvesWithoutNetwork) {
  std::map<std::string, std::string> files = TinyFiles();
  Publish("tiny-org/tiny-model", files);
  HubServer server;
  ASSERT_TRUE(server.Start(root_, {}).ok());
  opts_.endpoint = server.endpoint();
  absl::StatusOr<std::string> dir = ResolveModelPath("tiny-org/tiny-model", opts_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  const std::string repo_dir = RepoDir("tiny-org/tiny-model");
  EXPECT_EQ(*dir, repo_dir + "/snapshots/" + kSha);
  EXPECT_EQ(Slurp(repo_dir + "/refs/main"), kSha);
  for (const std::string name : {"config.json", "tokenizer.json", "model.safetensors"}) {
    const std::string link = *dir + "/" + name;
    ASSERT_TRUE(fs::is_symlink(link)) << link;
    EXPECT_EQ(fs::read_symlink(link).string(), "../../blobs/" + blob_of_[name]);
    EXPECT_EQ(Slurp(repo_dir + "/blobs/" + blob_of_[name]), files[name]) << name;
  }
  EXPECT_FALSE(fs::exists(*dir + "/README.md"));  // only what a model needs
  for (const auto& e : fs::directory_iterator(repo_dir + "/blobs")) {
    EXPECT_FALSE(e.path().string().ends_with(".incomplete")) << e.path();
  }
  EXPECT_EQ(server.Requests("/api/models/tiny-org/tiny-model/revision/main").size(), 1u);
  absl::StatusOr<LoadedModel> model = LoadModelFiles(*dir);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->weights.layers.size(), 2u);

  server.Stop();  // From here on any network access would fail.
  absl::StatusOr<std::string> again = ResolveModelPath("tiny-org/tiny-model", opts_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *dir);
  absl::StatusOr<std::string> by_sha =
      ResolveModelPath(std::string("tiny-org/tiny-model@") + kSha, opts_);
  ASSERT_TRUE(by_sha.ok()) << by_sha.status();
  EXPECT_EQ(*by_sha, *dir);
}

TEST_F(HfHubTest, ResumesACutTransferWithRange) {
  std::map<std::string, std::string> files = TinyFiles();
  Publish("tiny-org/tiny-model", files);
  HubServer server;
  ASSERT_TRUE(server.Start(root_, {"--cut-once", "model.safetensors"}).ok());
  opts_.endpoint = server.endpoint();
  absl::StatusOr<std::string> dir = ResolveModelPath("tiny-org/tiny-model", opts_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  std::vector<std::string> gets = server.Requests("model.safetensors");
  ASSERT_EQ(gets.size(), 2u);
  EXPECT_THAT(gets[0], HasSubstr("\"range\": null"));
  const std::string half = std::to_string(files["model.safetensors"].size() / 2);
  EXPECT_THAT(gets[1], HasSubstr("\"range\": \"bytes=" + half + "-\""));
  EXPECT_EQ(Slurp(*dir + "/model.safetensors"), files["model.safetensors"]);
}

TEST_F(HfHubTest, AFailedDownloadLeavesNoSnapshotAndTheNextCallResumes) {
  std::map<std::string, std::string> files = TinyFiles();
  Publish("tiny-org/tiny-model", files);
  HubServer server;
  ASSERT_TRUE(server.Start(root_, {"--cut-once", "model.safetensors"}).ok());
  opts_.endpoint = server.endpoint();
  opts_.max_attempts = 1;
  absl::StatusOr<std::string> first = ResolveModelPath("tiny-org/tiny-model", opts_);
  ASSERT_FALSE(first.ok());
  EXPECT_THAT(first.status().message(),
              HasSubstr(server.endpoint() + "/tiny-org/tiny-model/resolve/" + kSha +
                        "/model.safetensors"));
  const std::string repo_dir = RepoDir("tiny-org/tiny-model");
  const std::string partial = repo_dir + "/blobs/" + blob_of_["model.safetensors"] + ".incomplete";
  ASSERT_TRUE(fs::exists(partial));
  EXPECT_EQ(fs::file_size(partial), files["model.safetensors"].size() / 2);
  EXPECT_FALSE(fs::exists(repo_dir + "/snapshots"));
  EXPECT_FALSE(fs::exists(repo_dir + "/refs/main"));

  absl::StatusOr<std::string> second = ResolveModelPath("tiny-org/tiny-model", opts_);
  ASSERT_TRUE(second.ok()) << second.status();
  std::vector<std::string> gets = server.Requests("model.safetensors");
  ASSERT_EQ(gets.size(), 2u);
  EXPECT_THAT(gets[1], HasSubstr("\"range\": \"bytes=" +
                                 std::to_string(files["model.safetensors"].size() / 2) + "-\""));
  EXPECT_EQ(Slurp(*second + "/model.safetensors"), files["model.safetensors"]);
  EXPECT_FALSE(fs::exists(partial));
}

TEST_F(HfHubTest, ShardedModel) {
  const std::string staging = base_ + "/staging";
  fs::create_directories(staging);
  testing::TinyModel m;
  testing::WriteSharded(staging, testing::TinyModelTensors(m), 8);
  std::map<std::string, std::string> files = {{"config.json", testing::TinyModelConfigJson(m)}};
  for (const auto& e : fs::directory_iterator(staging)) {
    files[e.path().filename().string()] = Slurp(e.path().string());
  }
  ASSERT_EQ(files.size(), 5u);  // config, index, 3 shards
  Publish("org/sharded", files);
  HubServer server;
  ASSERT_TRUE(server.Start(root_, {}).ok());
  opts_.endpoint = server.endpoint();
  absl::StatusOr<std::string> dir = ResolveModelPath("org/sharded", opts_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_TRUE(fs::exists(*dir + "/model-00003-of-00003.safetensors"));
  absl::StatusOr<LoadedModel> model = LoadModelFiles(*dir);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->weights.mapped_files.size(), 3u);
}

TEST_F(HfHubTest, NotFoundNamesTheUrlAndStatus) {
  Publish("tiny-org/tiny-model", TinyFiles());
  HubServer server;
  ASSERT_TRUE(server.Start(root_, {}).ok());
  opts_.endpoint = server.endpoint();
  absl::StatusOr<std::string> dir = ResolveModelPath("tiny-org/absent", opts_);
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(dir.status().message(),
              HasSubstr(server.endpoint() + "/api/models/tiny-org/absent/revision/main"));
  EXPECT_THAT(dir.status().message(), HasSubstr("HTTP 404"));
  EXPECT_FALSE(fs::exists(RepoDir("tiny-org/absent") + "/snapshots"));
}

TEST_F(HfHubTest, TokenIsSentAsBearer) {
  Publish("tiny-org/tiny-model", TinyFiles());
  HubServer server;
  ASSERT_TRUE(server.Start(root_, {"--token", "s3cret"}).ok());
  opts_.endpoint = server.endpoint();
  absl::StatusOr<std::string> anonymous = ResolveModelPath("tiny-org/tiny-model", opts_);
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(anonymous.status().message(), HasSubstr("HTTP 401"));
  EXPECT_THAT(anonymous.status().message(), HasSubstr(server.endpoint() + "/api/models/"));
  opts_.token = "s3cret";
  absl::StatusOr<std::string> dir = ResolveModelPath("tiny-org/tiny-model", opts_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_THAT(server.Requests("model.safetensors").at(0), HasSubstr("\"authorized\": true"));
}

TEST_F(HfHubTest, ConnectionRefusedNamesTheUrl) {
  HubServer server;
  ASSERT_TRUE(server.Start(base_, {}).ok());
  const std::string endpoint = server.endpoint();
  server.Stop();
  opts_.endpoint = endpoint;
  absl::StatusOr<std::string> dir = ResolveModelPath("tiny-org/tiny-model", opts_);
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(dir.status().message(), HasSubstr(endpoint + "/api/models/tiny-org/tiny-model"));
  EXPECT_THAT(dir.status().message(), HasSubstr("onnect"));  // "Couldn't connect" / "refused"
}

TEST_F(HfHubTest, LocalFoldersBadIdsAndOfflineMode) {
  fs::create_directories(base_ + "/local");
  absl::StatusOr<std::string> local = ResolveModelPath(base_ + "/local", opts_);
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(*local, base_ + "/local");
  for (const std::string bad : {"/no/such/folder", "just-a-name", "a/b/c", "org/../x",
                                "org/name@../../etc"}) {
    absl::StatusOr<std::string> r = ResolveModelPath(bad, opts_);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("'" + bad + "'"));
    EXPECT_THAT(r.status().message(), HasSubstr("not a Hugging Face repo id"));
  }
  opts_.offline = true;
  absl::StatusOr<std::string> offline = ResolveModelPath("org/name", opts_);
  ASSERT_FALSE(offline.ok());
  EXPECT_THAT(offline.status().message(), HasSubstr("offline"));
}

}  // namespace
}  // namespace strata::engine
