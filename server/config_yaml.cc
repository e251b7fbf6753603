// YAML -> Config. One MapReader per YAML map reads typed fields by key, remembers which keys it
// was asked for, and at Finish() rejects the others with a did-you-mean; the first error anywhere
// is kept (later ones are usually its consequences). Value ranges and cross-field rules live in
// the structs' Validate() (config.cc), so configs built in code get the same checks.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>

#include "absl/strings/str_join.h"
#include "common/file.h"
#include "server/config.h"
#include "server/config_internal.h"
#include "yaml-cpp/yaml.h"

namespace strata::server {
namespace {

using config_internal::ConfigError;
using config_internal::ConfigErrorAt;

// State shared by every reader of one document.
struct ParseContext {
  absl::Status first_error;
  std::map<std::string, int> lines;  // key path -> 1-based line where it was written

  void Fail(absl::Status s) {
    if (first_error.ok()) first_error = std::move(s);
  }
};

int LineOf(const YAML::Node& node) { return node.Mark().is_null() ? 0 : node.Mark().line + 1; }

// How a value reads in an error: plain scalars quoted, quoted scalars called strings.
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return node.Tag() == "?" ? StrCat("'", node.Scalar(), "'")
                               : StrCat("the string \"", node.Scalar(), "\"");
    default:
      return "null";
  }
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

class MapReader {
 public:
  // `node` is a map, or null/absent for a section left out (every read then keeps its default).
  MapReader(ParseContext* ctx, std::string path, const YAML::Node& node)
      : ctx_(ctx), path_(std::move(path)) {
    if (!node.IsMap()) return;
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) {
        // A list or map used as a key has no name to put in a path; a path private to this
        // error still lets the loaders point at its line.
        const std::string where = KeyPath(StrCat("#", LineOf(kv.first)));
        ctx_->lines[where] = LineOf(kv.first);
        ctx_->Fail(ConfigErrorAt(
            where, StrCat("config: ", path_.empty() ? "(top level)" : path_,
                          ": keys must be plain names (got ", Describe(kv.first), ")")));
        continue;
      }
      const std::string& key = kv.first.Scalar();
      ctx_->lines[KeyPath(key)] = LineOf(kv.first);
      for (const Entry& e : entries_) {
        if (e.key == key) {
          ctx_->Fail(ConfigErrorAt(KeyPath(key), StrCat("config: duplicate key '", KeyPath(key),
                                                        "' (first at line ", e.line, ")")));
        }
      }
      entries_.push_back({key, kv.second, LineOf(kv.first)});
    }
  }

  void Int(std::string_view key, int64_t* out) {
    const YAML::Node* n = Scalar(key, "an integer");
    if (!n) return;
    const std::string& s = n->Scalar();
    int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (n->Tag() != "?" || ec == std::errc::invalid_argument || end != s.data() + s.size()) {
      return Fail(key, StrCat("must be an integer (got ", Describe(*n), ")"));
    }
    if (ec == std::errc::result_out_of_range) {
      return Fail(key, StrCat("out of range (got ", s, ")"));
    }
    *out = v;
  }

  void Int(std::string_view key, int* out) {
    int64_t v = *out;
    Int(key, &v);
    if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
      return Fail(key, StrCat("out of range (got ", v, ")"));
    }
    *out = static_cast<int>(v);
  }

  void Double(std::string_view key, double* out) {
    const YAML::Node* n = Scalar(key, "a number");
    if (!n) return;
    const std::string& s = n->Scalar();
    double v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (n->Tag() != "?" || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) {
      return Fail(key, StrCat("must be a finite number (got ", Describe(*n), ")"));
    }
    *out = v;
  }

  // YAML 1.2 booleans only: `yes`/`on` are rejected rather than guessed at.
  void Bool(std::string_view key, bool* out) {
    const YAML::Node* n = Scalar(key, "true or false");
    if (!n) return;
    const std::string& s = n->Scalar();
    bool is_true = s == "true" || s == "True" || s == "TRUE";
    bool is_false = s == "false" || s == "False" || s == "FALSE";
    if (n->Tag() != "?" || (!is_true && !is_false)) {
      return Fail(key, StrCat("must be true or false (got ", Describe(*n), ")"));
    }
    *out = is_true;
  }

  void String(std::string_view key, std::string* out) {
    if (const YAML::Node* n = Scalar(key, "a string")) *out = n->Scalar();
  }

  // An integer number of bytes or a string with a unit ("512MiB").
  void Size(std::string_view key, int64_t* out) {
    const YAML::Node* n = Scalar(key, "a size");
    if (!n) return;
    absl::StatusOr<int64_t> v = ParseByteSize(n->Scalar());
    if (!v.ok()) return Fail(key, std::string(v.status().message()));
    *out = *v;
  }

  void StringList(std::string_view key, std::vector<std::string>* out) {
    const YAML::Node* n = Find(key);
    if (!n) return;
    if (!n->IsSequence()) {
      return Fail(key, StrCat("must be a list of strings (got ", Describe(*n), ")"));
    }
    std::vector<std::string> values;
    for (size_t i = 0; i < n->size(); ++i) {
      const YAML::Node element = (*n)[i];
      const std::string element_path = StrCat(KeyPath(key), "[", i, "]");
      ctx_->lines[element_path] = LineOf(element);
      if (!element.IsScalar()) {
        return ctx_->Fail(
            ConfigError(element_path, StrCat("must be a string (got ", Describe(element), ")")));
      }
      values.push_back(element.Scalar());
    }
    *out = std::move(values);
  }

  // The map under `key`; a reader of nothing when it is absent or null.
  MapReader Child(std::string_view key) {
    const YAML::Node* n = Find(key);
    if (n && !n->IsMap()) {
      Fail(key, StrCat("must be a map (got ", Describe(*n), ")"));
      n = nullptr;
    }
    return MapReader(ctx_, KeyPath(key), n ? *n : YAML::Node());
  }

  // Every key, for maps whose keys are names (policies, slo_classes); read them with Child().
  std::vector<std::string> Keys() const {
    std::vector<std::string> keys;
    for (const Entry& e : entries_) keys.push_back(e.key);
    return keys;
  }

  // Rejects every key nobody asked for. `hint` replaces the list of expected keys when no known
  // key is close enough to suggest.
  void Finish(std::string_view hint = {}) {
    for (const Entry& e : entries_) {
      if (e.used) continue;
      std::string_view best;
      size_t best_distance = std::max<size_t>(2, e.key.size() / 3) + 1;
      for (std::string_view known : known_) {
        size_t d = EditDistance(e.key, known);
        if (d < best_distance) best = known, best_distance = d;
      }
      std::string why = !best.empty()   ? StrCat("did you mean '", best, "'?")
                        : !hint.empty() ? std::string(hint)
                                        : StrCat("expected one of ", absl::StrJoin(known_, ", "));
      ctx_->Fail(ConfigErrorAt(KeyPath(e.key),
                               StrCat("config: unknown key '", KeyPath(e.key), "' (", why, ")")));
    }
  }

 private:
  struct Entry {
    std::string key;
    YAML::Node value;
    int line = 0;
    bool used = false;
  };

  std::string KeyPath(std::string_view key) const {
    return path_.empty() ? std::string(key) : StrCat(path_, ".", key);
  }

  void Fail(std::string_view key, std::string_view problem) {
    ctx_->Fail(ConfigError(KeyPath(key), problem));
  }

  // The value of `key`, or nullptr when absent or null (null keeps the default). Either way
  // `key` becomes a known key.
  const YAML::Node* Find(std::string_view key) {
    known_.emplace_back(key);
    for (Entry& e : entries_) {
      if (e.key != key) continue;
      e.used = true;
      return e.value.IsNull() || !e.value.IsDefined() ? nullptr : &e.value;
    }
    return nullptr;
  }

  const YAML::Node* Scalar(std::string_view key, std::string_view expected) {
    const YAML::Node* n = Find(key);
    if (n && !n->IsScalar()) {
      Fail(key, StrCat("must be ", expected, " (got ", Describe(*n), ")"));
      return nullptr;
    }
    return n;
  }

  ParseContext* ctx_;
  std::string path_;
  std::vector<Entry> entries_;
  std::vector<std::string> known_;
};

void ReadLimits(MapReader r, LimitsConfig* c) {
  r.Size("max_body_bytes", &c->max_body_bytes);
  r.Size("max_header_bytes", &c->max_header_bytes);
  r.Int("max_prompt_tokens", &c->max_prompt_tokens);
  r.Int("max_tokens", &c->max_tokens);
  r.Int("max_n", &c->max_n);
  r.Int("max_stop_strings", &c->max_stop_strings);
  r.Size("max_stop_string_bytes", &c->max_stop_string_bytes);
  r.Int("max_logprobs", &c->max_logprobs);
  r.Int("max_concurrent_streams", &c->max_concurrent_streams);
  r.Double("request_timeout_seconds", &c->request_timeout_seconds);
  r.Double("idle_timeout_seconds", &c->idle_timeout_seconds);
  r.Double("write_timeout_seconds", &c->write_timeout_seconds);
  r.Finish();
}

void ReadServer(MapReader r, ServerConfig* c) {
  r.String("host", &c->host);
  r.Int("http_port", &c->http_port);
  r.Int("grpc_port", &c->grpc_port);
  r.Int("io_threads", &c->io_threads);
  r.StringList("api_keys", &c->api_keys);
  r.String("api_key_file", &c->api_key_file);
  r.Bool("metrics_require_api_key", &c->metrics_require_api_key);
  r.Double("shutdown_grace_seconds", &c->shutdown_grace_seconds);
  ReadLimits(r.Child("limits"), &c->limits);
  r.Finish();
}

void ReadModel(MapReader r, ModelConfigSection* c) {
  r.String("path", &c->path);
  r.String("served_name", &c->served_name);
  r.Int("max_model_len", &c->max_model_len);
  r.String("chat_template", &c->chat_template);
  r.Finish();
}

void ReadEngine(MapReader r, EngineSection* c) {
  r.String("backend", &c->backend);
  r.Int("threads", &c->threads);
  r.Int("max_num_seqs", &c->max_num_seqs);
  r.Int("max_batch_tokens", &c->max_batch_tokens);
  r.Bool("cuda_graphs", &c->cuda_graphs);
  r.Finish();
}

enum class TierKind { kDevice, kHost, kDisk };

void ReadTier(MapReader r, TierConfig* c, TierKind kind) {
  r.Size("capacity", &c->capacity_bytes);
  if (kind == TierKind::kHost) r.Bool("write_through", &c->write_through);
  if (kind == TierKind::kDisk) {
    r.String("path", &c->path);
    r.Bool("persist", &c->persist);
    r.Int("min_hits", &c->min_hits);
  }
  r.Finish();
}

void ReadKvCache(MapReader r, KvCacheSection* c) {
  r.Int("block_size", &c->block_size);
  r.Bool("prefix_caching", &c->prefix_caching);
  r.String("default_policy", &c->default_policy);
  MapReader tiers = r.Child("tiers");
  ReadTier(tiers.Child("device"), &c->tiers.device, TierKind::kDevice);
  ReadTier(tiers.Child("host"), &c->tiers.host, TierKind::kHost);
  ReadTier(tiers.Child("disk"), &c->tiers.disk, TierKind::kDisk);
  tiers.Finish();
  r.Finish();
}

// Reads only the fields of the sparsity type, so a field of another type is an unknown key. An
// unknown type reads every field and leaves the type error to Validate().
void ReadSparsity(MapReader r, SparsityConfig* c) {
  r.String("type", &c->type);
  const std::vector<std::string_view>* own = config_internal::SparsityFieldsOf(c->type);
  const std::vector<std::string_view>& fields = own ? *own : config_internal::AllSparsityFields();
  for (std::string_view field : fields) r.Int(field, &(c->*config_internal::SparsityMember(field)));
  if (!own) return r.Finish();
  std::vector<std::string> names(fields.begin(), fields.end());
  r.Finish(names.empty()
               ? StrCat("sparsity type ", c->type, " takes no fields")
               : StrCat("sparsity type ", c->type, " takes ", absl::StrJoin(names, ", ")));
}

void ReadPolicy(MapReader r, KvPolicy* c) {
  r.String("codec", &c->codec);
  r.Int("residual_tokens", &c->residual_tokens);
  ReadSparsity(r.Child("sparsity"), &c->sparsity);
  r.StringList("tiers", &c->tiers);
  r.Bool("prefix_cache", &c->prefix_cache);
  r.Int("retention_priority", &c->retention_priority);
  r.Finish();
}

void ReadSloClass(MapReader r, SloClass* c) {
  r.Double("ttft_ms", &c->ttft_ms);
  r.Double("tpot_ms", &c->tpot_ms);
  r.Int("priority", &c->priority);
  r.String("on_overload", &c->on_overload);
  r.Finish();
}

// A named map (policies, slo_classes): absent, null or empty keeps the defaults; otherwise its
// entries replace them.
template <typename T, typename ReadFn>
void ReadNamed(MapReader r, std::map<std::string, T>* out, ReadFn read) {
  std::vector<std::string> names = r.Keys();
  if (names.empty()) return;
  out->clear();
  for (const std::string& name : names) {
    T entry;
    entry.name = name;
    read(r.Child(name), &entry);
    (*out)[name] = std::move(entry);
  }
}

void ReadConfig(MapReader root, Config* c) {
  ReadServer(root.Child("server"), &c->server);
  ReadModel(root.Child("model"), &c->model);
  ReadEngine(root.Child("engine"), &c->engine);
  ReadKvCache(root.Child("kvcache"), &c->kvcache);
  ReadNamed(root.Child("policies"), &c->policies, ReadPolicy);
  ReadNamed(root.Child("slo_classes"), &c->slo_classes, ReadSloClass);
  MapReader scheduler = root.Child("scheduler");
  scheduler.String("policy", &c->scheduler.policy);
  scheduler.String("default_slo_class", &c->scheduler.default_slo_class);
  scheduler.Int("prefill_chunk_tokens", &c->scheduler.prefill_chunk_tokens);
  scheduler.Bool("layer_offload", &c->scheduler.layer_offload);
  scheduler.Finish();
  MapReader metrics = root.Child("metrics");
  metrics.Bool("enabled", &c->metrics.enabled);
  metrics.Finish();
  MapReader logging = root.Child("logging");
  logging.String("level", &c->logging.level);
  logging.String("format", &c->logging.format);
  logging.Finish();
  root.Finish();
}

// Appends " (WHAT:LINE)" for the innermost written key on the error's path.
absl::Status WithLocation(const absl::Status& status, const ParseContext& ctx,
                          std::string_view what) {
  std::optional<std::string> path = config_internal::ErrorPath(status);
  if (!path) return status;
  for (std::string p = *path;;) {
    auto it = ctx.lines.find(p);
    if (it != ctx.lines.end() && it->second > 0) {
      return absl::Status(status.code(),
                          StrCat(status.message(), " (", what, ":", it->second, ")"));
    }
    size_t cut = p.find_last_of(".[");
    if (p.empty()) return status;
    p = cut == std::string::npos ? "" : p.substr(0, cut);
  }
}

absl::Status AppendKeyFile(ServerConfig* server) {
  if (server->api_key_file.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> text = ReadFile(server->api_key_file);
  if (!text.ok()) {
    return ConfigError("server.api_key_file", StrCat("cannot read ", text.status().message()));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> keys, ParseApiKeys(*text, server->api_key_file));
  server->api_keys.insert(server->api_keys.end(), keys.begin(), keys.end());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Config> ParseConfig(std::string_view yaml, std::string_view what) {
  ParseContext ctx;
  Config config;
  try {
    std::vector<YAML::Node> documents = YAML::LoadAll(std::string(yaml));
    if (documents.size() > 1) {
      const int line = LineOf(documents[1]);
      return absl::InvalidArgumentError(
          StrCat("config: ", what, line > 0 ? StrCat(":", line) : "", ": holds ", documents.size(),
                 " YAML documents (separated by '---'); a config is one"));
    }
    YAML::Node root = documents.empty() ? YAML::Node() : documents[0];
    if (!root.IsNull() && !root.IsMap()) {
      return absl::InvalidArgumentError(StrCat("config: ", what, ":", LineOf(root),
                                               ": the top level must be a map (got ",
                                               Describe(root), ")"));
    }
    ReadConfig(MapReader(&ctx, "", root), &config);
  } catch (const YAML::Exception& e) {
    std::string where = e.mark.is_null()
                            ? std::string(what)
                            : StrCat(what, ":", e.mark.line + 1, ":", e.mark.column + 1);
    return absl::InvalidArgumentError(StrCat("config: ", where, ": malformed YAML: ", e.msg));
  }
  if (!ctx.first_error.ok()) return WithLocation(ctx.first_error, ctx, what);
  if (absl::Status s = AppendKeyFile(&config.server); !s.ok()) return WithLocation(s, ctx, what);
  if (absl::Status s = config.Validate(); !s.ok()) return WithLocation(s, ctx, what);
  return config;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(StrCat("config: cannot read ", path, ": it is a directory"));
  }
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        StrCat("config: cannot read ", text.status().message()));
  }
  return ParseConfig(*text, path);
}

}  // namespace strata::server
