#include "engine/hf_hub.h"

#include <curl/curl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include "common/file.h"
#include "common/json.h"
#include "common/logging.h"
#include "engine/hf_hub_http.h"

namespace strata::engine {
namespace {

namespace fs = std::filesystem;

constexpr char kWeightsFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

struct RepoId {
  std::string org, name, revision;
  std::string Display() const { return StrCat(org, "/", name, "@", revision); }
};

// One file of a snapshot, as the Hub's model info lists it.
struct RemoteFile {
  std::string name;     // rfilename
  std::string blob_id;  // LFS sha256, else git blob id
  int64_t size = -1;    // bytes, -1 when unknown
};

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

// A path component we create on disk from Hub data: no separators, no "." or "..".
bool IsSafeComponent(std::string_view s) {
  if (s.empty() || s.size() > 200 || s == "." || s == "..") return false;
  for (char c : s) {
    if (!IsNameChar(c)) return false;
  }
  return true;
}

bool IsCommitHash(std::string_view s) {
  if (s.size() != 40) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::optional<RepoId> ParseRepoId(const std::string& model) {
  RepoId id;
  std::string rest = model;
  id.revision = "main";
  if (size_t at = rest.find('@'); at != std::string::npos) {
    id.revision = rest.substr(at + 1);
    rest = rest.substr(0, at);
  }
  size_t slash = rest.find('/');
  if (slash == std::string::npos) return std::nullopt;
  id.org = rest.substr(0, slash);
  id.name = rest.substr(slash + 1);
  if (!IsSafeComponent(id.org) || !IsSafeComponent(id.name) || !IsSafeComponent(id.revision) ||
      id.org[0] == '.' || id.name[0] == '.') {
    return std::nullopt;
  }
  return id;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string Trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

std::string Escape(const std::string& s) {
  char* e = curl_easy_escape(nullptr, s.c_str(), static_cast<int>(s.size()));
  std::string out = e != nullptr ? e : s;
  curl_free(e);
  return out;
}

// Shard names listed by an index file's weight_map.
absl::StatusOr<std::vector<std::string>> ShardNames(const std::string& index_path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(index_path));
  ASSIGN_OR_RETURN(Json j, ParseJson(text, index_path));
  auto map = j.is_object() ? j.find("weight_map") : j.end();
  if (map == j.end() || !map->is_object()) {
    return absl::InvalidArgumentError(StrCat(index_path, ": missing object 'weight_map'"));
  }
  std::vector<std::string> shards;
  for (const Json& v : *map) {
    if (!v.is_string() || !IsSafeComponent(v.get<std::string>())) {
      return absl::InvalidArgumentError(StrCat(index_path, ": bad shard name in weight_map"));
    }
    if (std::find(shards.begin(), shards.end(), v.get<std::string>()) == shards.end()) {
      shards.push_back(v.get<std::string>());
    }
  }
  return shards;
}

// A snapshot is usable when config.json and every weights file are present (links resolve).
bool SnapshotComplete(const std::string& dir) {
  if (!FileExists(dir + "/config.json")) return false;
  if (FileExists(StrCat(dir, "/", kWeightsFile))) return true;
  const std::string index = StrCat(dir, "/", kIndexFile);
  if (!FileExists(index)) return false;
  absl::StatusOr<std::vector<std::string>> shards = ShardNames(index);
  if (!shards.ok()) return false;
  for (const std::string& s : *shards) {
    if (!FileExists(StrCat(dir, "/", s))) return false;
  }
  return true;
}

absl::Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(StrCat(dir, ": create directory: ", ec.message()));
  return absl::OkStatus();
}

// The model info document: the commit a revision points to and the files it has.
class Snapshot {
 public:
  static absl::StatusOr<Snapshot> Fetch(const RepoId& id, const HubOptions& opts,
                                        const HubHttpOptions& http);
  const std::string& sha() const { return sha_; }
  const RemoteFile* Find(std::string_view name) const {
    for (const RemoteFile& f : files_) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }

 private:
  absl::Status ParseFiles(const Json& siblings, const std::string& url);
  std::string sha_;
  std::vector<RemoteFile> files_;
};

absl::StatusOr<Snapshot> Snapshot::Fetch(const RepoId& id, const HubOptions& opts,
                                         const HubHttpOptions& http) {
  const std::string url = StrCat(opts.endpoint, "/api/models/", id.org, "/", id.name,
                                 "/revision/", Escape(id.revision), "?blobs=true");
  ASSIGN_OR_RETURN(std::string body, HubGet(url, http));
  ASSIGN_OR_RETURN(Json j, ParseJson(body, url));
  Snapshot snap;
  ASSIGN_OR_RETURN(snap.sha_, JsonString(j, "sha", url));
  if (!IsCommitHash(snap.sha_)) {
    return absl::InvalidArgumentError(StrCat(url, ": 'sha' is not a commit hash"));
  }
  auto siblings = j.find("siblings");
  if (siblings == j.end() || !siblings->is_array()) {
    return absl::InvalidArgumentError(StrCat(url, ": missing array 'siblings'"));
  }
  RETURN_IF_ERROR(snap.ParseFiles(*siblings, url));
  return snap;
}

absl::Status Snapshot::ParseFiles(const Json& siblings, const std::string& url) {
  for (const Json& s : siblings) {
    ASSIGN_OR_RETURN(std::string name, JsonString(s, "rfilename", url));
    if (!IsSafeComponent(name)) continue;  // Files in subfolders are never needed here.
    RemoteFile f;
    f.name = name;
    ASSIGN_OR_RETURN(f.blob_id, JsonOptionalString(s, "blobId", "", url));
    ASSIGN_OR_RETURN(f.size, JsonOptionalInt(s, "size", -1, url));
    auto lfs = s.find("lfs");
    if (lfs != s.end() && lfs->is_object()) {
      ASSIGN_OR_RETURN(f.blob_id, JsonOptionalString(*lfs, "sha256", f.blob_id, url));
      ASSIGN_OR_RETURN(f.size, JsonOptionalInt(*lfs, "size", f.size, url));
    }
    if (!IsSafeComponent(f.blob_id)) {
      // A server that names no blob: a stable name per (commit, file) keeps the layout.
      XXH128_hash_t h = XXH3_128bits(StrCat(sha_, "/", name).data(), sha_.size() + 1 +
                                     name.size());
      f.blob_id = absl::StrFormat("%016x%016x", h.high64, h.low64);
    }
    files_.push_back(std::move(f));
  }
  return absl::OkStatus();
}

class Downloader {
 public:
  Downloader(const RepoId& id, const HubOptions& opts, std::string repo_dir)
      : id_(id), opts_(opts), repo_dir_(std::move(repo_dir)) {
    http_.token = opts.token;
    http_.max_attempts = opts.max_attempts;
    http_.connect_timeout_s = opts.connect_timeout_s;
    http_.stall_timeout_s = opts.stall_timeout_s;
  }

  // Fetches every needed blob, then links the snapshot and writes the ref.
  absl::StatusOr<std::string> Run();

 private:
  absl::Status FetchBlob(const RemoteFile& f);
  std::string BlobPath(const RemoteFile& f) const { return StrCat(repo_dir_, "/blobs/", f.blob_id); }
  absl::Status Need(std::string_view name, bool required);
  absl::Status LinkSnapshot(const std::string& snapshot_dir);

  const RepoId& id_;
  const HubOptions& opts_;
  std::string repo_dir_;
  HubHttpOptions http_;
  std::optional<Snapshot> snap_;
  std::vector<const RemoteFile*> fetched_;
};

absl::Status Downloader::FetchBlob(const RemoteFile& f) {
  const std::string blob = BlobPath(f);
  if (FileExists(blob)) return absl::OkStatus();  // Shared with another snapshot.
  const std::string partial = blob + ".incomplete";
  const std::string url = StrCat(opts_.endpoint, "/", id_.org, "/", id_.name, "/resolve/",
                                 snap_->sha(), "/", Escape(f.name));
  RETURN_IF_ERROR(HubDownload(url, partial, f.size, StrCat(id_.org, "/", id_.name, " ", f.name),
                              http_));
  if (std::rename(partial.c_str(), blob.c_str()) != 0) {
    return absl::InternalError(StrCat(blob, ": rename: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status Downloader::Need(std::string_view name, bool required) {
  const RemoteFile* f = snap_->Find(name);
  if (f == nullptr) {
    if (!required) return absl::OkStatus();
    return absl::NotFoundError(StrCat(id_.Display(), " (commit ", snap_->sha(), ") has no ", name,
                                      " on ", opts_.endpoint));
  }
  RETURN_IF_ERROR(FetchBlob(*f));
  fetched_.push_back(f);
  return absl::OkStatus();
}

absl::Status Downloader::LinkSnapshot(const std::string& snapshot_dir) {
  RETURN_IF_ERROR(MakeDirs(snapshot_dir));
  for (const RemoteFile* f : fetched_) {
    const std::string link = StrCat(snapshot_dir, "/", f->name);
    const std::string target = StrCat("../../blobs/", f->blob_id);
    std::remove(link.c_str());
    if (::symlink(target.c_str(), link.c_str()) != 0) {
      return absl::InternalError(StrCat(link, ": symlink: ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Downloader::Run() {
  ASSIGN_OR_RETURN(Snapshot snap, Snapshot::Fetch(id_, opts_, http_));
  snap_ = std::move(snap);
  LOG_INFO("fetching {} (commit {}) from {} into {}", id_.Display(), snap_->sha(), opts_.endpoint,
           repo_dir_);
  RETURN_IF_ERROR(MakeDirs(repo_dir_ + "/blobs"));
  RETURN_IF_ERROR(Need("config.json", true));
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    RETURN_IF_ERROR(Need(name, false));
  }
  if (snap_->Find(kWeightsFile) != nullptr) {
    RETURN_IF_ERROR(Need(kWeightsFile, true));
  } else if (const RemoteFile* index = snap_->Find(kIndexFile); index != nullptr) {
    RETURN_IF_ERROR(Need(kIndexFile, true));
    ASSIGN_OR_RETURN(std::vector<std::string> shards, ShardNames(BlobPath(*index)));
    for (const std::string& shard : shards) RETURN_IF_ERROR(Need(shard, true));
  } else {
    return absl::NotFoundError(StrCat(id_.Display(), " (commit ", snap_->sha(), ") has neither ",
                                      kWeightsFile, " nor ", kIndexFile,
                                      ": only safetensors weights are supported"));
  }
  const std::string snapshot_dir = StrCat(repo_dir_, "/snapshots/", snap_->sha());
  RETURN_IF_ERROR(LinkSnapshot(snapshot_dir));
  if (id_.revision != snap_->sha()) {
    RETURN_IF_ERROR(MakeDirs(repo_dir_ + "/refs"));
    RETURN_IF_ERROR(WriteFile(StrCat(repo_dir_, "/refs/", id_.revision), snap_->sha()));
  }
  return snapshot_dir;
}

}  // namespace

absl::Status HubOptions::Validate() const {
  if (endpoint.rfind("http://", 0) != 0 && endpoint.rfind("https://", 0) != 0) {
    return absl::InvalidArgumentError(StrCat("hub endpoint '", endpoint,
                                             "' must start with http:// or https://"));
  }
  if (max_attempts < 1) return absl::InvalidArgumentError("hub max_attempts must be >= 1");
  if (connect_timeout_s <= 0 || stall_timeout_s <= 0) {
    return absl::InvalidArgumentError("hub timeouts must be positive");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolveModelPath(const std::string& model, const HubOptions& opts) {
  if (IsDirectory(model)) return model;
  std::optional<RepoId> id = ParseRepoId(model);
  if (!id) {
    return absl::NotFoundError(StrCat("model '", model, "': no such folder, and not a Hugging "
                                      "Face repo id (org/name or org/name@revision)"));
  }
  RETURN_IF_ERROR(opts.Validate());
  if (opts.cache_dir.empty()) {
    return absl::InvalidArgumentError(StrCat("model '", model, "': no hub cache directory set"));
  }
  const std::string repo_dir = StrCat(opts.cache_dir, "/models--", id->org, "--", id->name);
  std::string sha = id->revision;
  if (!IsCommitHash(sha)) {
    absl::StatusOr<std::string> ref = ReadFile(StrCat(repo_dir, "/refs/", id->revision));
    sha = ref.ok() ? Trim(*ref) : "";
  }
  if (IsSafeComponent(sha)) {
    const std::string snapshot_dir = StrCat(repo_dir, "/snapshots/", sha);
    if (SnapshotComplete(snapshot_dir)) return snapshot_dir;
  }
  if (opts.offline) {
    return absl::NotFoundError(StrCat("model '", model, "': not in the hub cache ", repo_dir,
                                      " and offline mode is on"));
  }
  Downloader downloader(*id, opts, repo_dir);
  absl::StatusOr<std::string> dir = downloader.Run();
  if (!dir.ok()) {
    return absl::Status(dir.status().code(),
                        StrCat("model '", model, "': download failed: ", dir.status().message()));
  }
  return dir;
}

}  // namespace strata::engine
