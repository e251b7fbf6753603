// Parses the Prometheus text exposition (version 0.0.4, as prometheus-cpp's TextSerializer writes
// it) into canonical series keys, and reduces the difference of two scrapes to MetricsDelta.
#include "bench/harness/prom_text.h"

#include <charconv>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace strata::bench {
namespace {

using Labels = std::map<std::string, std::string>;

// A series as written on a sample line: `name` or `name{label="value",...}`.
struct Series {
  std::string name;
  Labels labels;
};

// A cursor over one line; every Parse* below advances it past what it consumed.
struct Cursor {
  std::string_view s;
  size_t i = 0;

  bool Done() const { return i >= s.size(); }
  char Peek() const { return Done() ? '\0' : s[i]; }
  void SkipBlanks() {
    while (!Done() && (s[i] == ' ' || s[i] == '\t')) ++i;
  }
  bool Eat(char c) {
    if (Peek() != c) return false;
    ++i;
    return true;
  }
  std::string_view Token() {  // up to the next blank or the end
    size_t start = i;
    while (!Done() && s[i] != ' ' && s[i] != '\t') ++i;
    return s.substr(start, i - start);
  }
};

bool IsNameChar(char c, bool first, bool allow_colon) {
  bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (alpha || (allow_colon && c == ':')) return true;
  return !first && c >= '0' && c <= '9';
}

absl::StatusOr<std::string> ParseName(Cursor& c, bool allow_colon, std::string_view what) {
  size_t start = c.i;
  while (!c.Done() && IsNameChar(c.Peek(), c.i == start, allow_colon)) ++c.i;
  if (c.i == start) return absl::InvalidArgumentError(StrCat("expected a ", what, " name"));
  return std::string(c.s.substr(start, c.i - start));
}

// A quoted label value with the exposition's three escapes: \\, \" and \n.
absl::StatusOr<std::string> ParseLabelValue(Cursor& c) {
  if (!c.Eat('"')) return absl::InvalidArgumentError("expected '\"' before a label value");
  std::string value;
  while (!c.Done() && c.Peek() != '"') {
    char ch = c.s[c.i++];
    if (ch == '\\') {
      char esc = c.Done() ? '\0' : c.s[c.i++];
      if (esc == 'n') {
        ch = '\n';
      } else if (esc == '\\' || esc == '"') {
        ch = esc;
      } else {
        return absl::InvalidArgumentError("bad escape in a label value (only \\\\ \\\" \\n)");
      }
    }
    value.push_back(ch);
  }
  if (!c.Eat('"')) return absl::InvalidArgumentError("unterminated label value");
  return value;
}

// `{a="1", b="2",}`: blanks around the separators and one trailing comma are allowed.
absl::Status ParseLabels(Cursor& c, Labels& labels) {
  c.SkipBlanks();
  while (!c.Eat('}')) {
    ASSIGN_OR_RETURN(std::string name, ParseName(c, /*allow_colon=*/false, "label"));
    c.SkipBlanks();
    if (!c.Eat('=')) return absl::InvalidArgumentError(StrCat("expected '=' after label ", name));
    c.SkipBlanks();
    ASSIGN_OR_RETURN(std::string value, ParseLabelValue(c));
    if (!labels.emplace(name, std::move(value)).second) {
      return absl::InvalidArgumentError(StrCat("label ", name, " given twice"));
    }
    c.SkipBlanks();
    if (c.Eat(',')) {
      c.SkipBlanks();
    } else if (c.Peek() != '}') {
      return absl::InvalidArgumentError("expected ',' or '}' after a label");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Series> ParseSeries(Cursor& c) {
  Series series;
  ASSIGN_OR_RETURN(series.name, ParseName(c, /*allow_colon=*/true, "metric"));
  if (c.Eat('{')) RETURN_IF_ERROR(ParseLabels(c, series.labels));
  return series;
}

// A Go-style float: decimal or exponent notation, +Inf, -Inf, NaN.
absl::StatusOr<double> ParseValue(std::string_view token) {
  if (token == "+Inf" || token == "Inf") return std::numeric_limits<double>::infinity();
  if (token == "-Inf") return -std::numeric_limits<double>::infinity();
  if (token == "NaN") return std::numeric_limits<double>::quiet_NaN();
  std::string_view digits = token;
  if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);
  double v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  // from_chars also takes "inf"/"nan" spellings; the exposition only writes the ones above.
  bool alpha_only = !digits.empty() &&
                    (digits[0] == 'i' || digits[0] == 'I' || digits[0] == 'n' || digits[0] == 'N');
  if (ec != std::errc() || end != digits.data() + digits.size() || alpha_only) {
    return absl::InvalidArgumentError(StrCat("bad sample value '", token, "'"));
  }
  return v;
}

absl::Status ParseTimestamp(std::string_view token) {
  int64_t ms = 0;
  auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), ms);
  if (ec != std::errc() || end != token.data() + token.size()) {
    return absl::InvalidArgumentError(StrCat("bad timestamp '", token, "'"));
  }
  return absl::OkStatus();
}

// The label value as the exposition writes it, so that a key reads back through ParseSeries.
std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char ch : v) {
    if (ch == '\\' || ch == '"') out.push_back('\\');
    out += ch == '\n' ? std::string("\\n") : std::string(1, ch);
  }
  return out;
}

std::string Key(const Series& series) {
  if (series.labels.empty()) return series.name;
  std::string key = series.name + "{";
  for (const auto& [name, value] : series.labels) {
    if (key.back() != '{') key += ",";
    key += StrCat(name, "=\"", EscapeLabelValue(value), "\"");
  }
  return key + "}";
}

// `series value [timestamp]` -> (key, value).
absl::StatusOr<std::pair<std::string, double>> ParseSampleLine(std::string_view line) {
  Cursor c{line};
  ASSIGN_OR_RETURN(Series series, ParseSeries(c));
  if (c.Peek() != ' ' && c.Peek() != '\t') {
    return absl::InvalidArgumentError("expected a blank before the value");
  }
  c.SkipBlanks();
  ASSIGN_OR_RETURN(double value, ParseValue(c.Token()));
  c.SkipBlanks();
  if (!c.Done()) RETURN_IF_ERROR(ParseTimestamp(c.Token()));
  c.SkipBlanks();
  if (!c.Done()) return absl::InvalidArgumentError("unexpected text after the timestamp");
  return std::pair{Key(series), value};
}

std::string_view TrimLine(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
    line.remove_suffix(1);
  }
  while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
  return line;
}

// Calls fn(labels, value) for every sample of metric `name`.
template <typename Fn>
void ForEachSample(const PromSamples& s, std::string_view name, Fn fn) {
  for (auto it = s.lower_bound(std::string(name)); it != s.end(); ++it) {
    std::string_view key = it->first;
    if (key.substr(0, name.size()) != name) break;
    if (key.size() > name.size() && key[name.size()] != '{') continue;  // a longer metric name
    Cursor c{key};
    absl::StatusOr<Series> series = ParseSeries(c);
    CHECK(series.ok());  // keys are written by Key(), which ParseSeries reads back
    fn(series->labels, it->second);
  }
}

bool Matches(const Labels& labels, const Labels& match) {
  for (const auto& [name, value] : match) {
    auto it = labels.find(name);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

// after - before of metric `name` summed per combination of `by` labels (all other labels, e.g.
// model, summed over); the map key joins the label values with `sep`.
std::map<std::string, double> DiffBy(const PromSamples& before, const PromSamples& after,
                                     std::string_view name, const std::vector<std::string>& by,
                                     std::string_view sep) {
  std::map<std::string, double> out;
  auto add = [&](const PromSamples& s, double sign) {
    ForEachSample(s, name, [&](const Labels& labels, double v) {
      std::string group;
      for (size_t i = 0; i < by.size(); ++i) {
        auto it = labels.find(by[i]);
        group += StrCat(i == 0 ? "" : sep, it == labels.end() ? "" : it->second);
      }
      out[group] += sign * v;
    });
  };
  add(after, 1);
  add(before, -1);
  return out;
}

double Diff(const PromSamples& before, const PromSamples& after, std::string_view name) {
  return SumSamples(after, name) - SumSamples(before, name);
}

}  // namespace

absl::StatusOr<PromSamples> ParsePromText(std::string_view text) {
  PromSamples samples;
  int line_no = 0;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view raw = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    ++line_no;
    std::string_view line = TrimLine(raw);
    if (line.empty() || line.front() == '#') continue;
    absl::StatusOr<std::pair<std::string, double>> sample = ParseSampleLine(line);
    if (sample.ok() && !samples.emplace(*sample).second) {
      sample = absl::InvalidArgumentError(StrCat("series ", sample->first, " given twice"));
    }
    if (!sample.ok()) {
      return absl::InvalidArgumentError(
          StrCat("metrics line ", line_no, " '", raw, "': ", sample.status().message()));
    }
  }
  return samples;
}

double SumSamples(const PromSamples& s, std::string_view name,
                  const std::map<std::string, std::string>& match) {
  double sum = 0;
  ForEachSample(s, name, [&](const Labels& labels, double v) {
    if (Matches(labels, match)) sum += v;
  });
  return sum;
}

double MetricsDelta::HitRate(const std::string& tier) const {
  auto it = prefix_hit_tokens.find(tier);
  if (prefix_query_tokens <= 0 || it == prefix_hit_tokens.end()) return 0;
  return it->second / prefix_query_tokens;
}

MetricsDelta DiffMetrics(const PromSamples& before, const PromSamples& after) {
  MetricsDelta d;
  d.prefix_query_tokens = Diff(before, after, "strata_prefix_cache_queries_tokens_total");
  d.prefix_hit_tokens =
      DiffBy(before, after, "strata_prefix_cache_hits_tokens_total", {"tier"}, "");
  d.transfer_bytes = DiffBy(before, after, "strata_kv_transfer_bytes_total", {"src", "dst"}, "->");
  d.tier_errors = DiffBy(before, after, "strata_kv_tier_errors_total", {"tier", "kind"}, "/");
  d.preemptions = Diff(before, after, "strata_preemptions_total");
  d.queue_time_sum_s = Diff(before, after, "strata_request_queue_time_seconds_sum");
  d.queue_time_count = Diff(before, after, "strata_request_queue_time_seconds_count");
  d.slo_requests = DiffBy(before, after, "strata_slo_requests_total", {"class", "outcome"}, "/");
  d.prompt_tokens = Diff(before, after, "strata_prompt_tokens_total");
  d.generation_tokens = Diff(before, after, "strata_generation_tokens_total");
  return d;
}

}  // namespace strata::bench
