#include "bench/harness/bench_options.h"

#include <limits>
#include <set>
#include <sstream>

#include "server/cli_flags.h"

namespace strata::bench {

const char kBenchUsage[] =
    "usage: strata bench --workload W1|W2|W3|W4|W5|trace\n"
    "         (--server http://127.0.0.1:PORT | --config FILE [--compare FILE2[,FILE3..]]) [--model M]\n"
    "         [--rates R1,R2,..] [--arrivals poisson|gamma|none] [--cv C] [--concurrency N]\n"
    "         [--requests N] [--max-requests N] [--time-limit S] [--seed S] [--slo C=TTFT:TPOT,..]\n"
    "         [--out DIR] [--name STEM] [--no-limits] [--no-plots] [--disk-dir DIR] [--api-key K]\n"
    "  W1: --users --rounds --system-tokens --turn-tokens --answer-tokens\n"
    "  W2: --documents --doc-tokens --question-tokens --qa-answer-tokens --order interleave|random|tile\n"
    "  W3/W5: --input-median --input-sigma --output-median --output-sigma --max-input-tokens\n"
    "         --max-output-tokens --classes NAME:WEIGHT,.. (W5: --cancel-fraction --cancel-after)\n"
    "  W4: --input-tokens --output-tokens      trace: --trace FILE --trace-block-tokens N\n"
    "  all: --token-range LO:HI (prompt token ids)\n";

namespace {

using server::CliFlags;

std::vector<std::string> Split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, sep);) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

absl::StatusOr<double> ToDouble(const std::string& s, const std::string& flag) {
  try {
    size_t used = 0;
    const double v = std::stod(s, &used);
    if (used == s.size()) return v;
  } catch (...) {
  }
  return absl::InvalidArgumentError(StrCat("--", flag, ": expected a number, got '", s, "'"));
}

const std::vector<std::string>& KnownFlags() {
  static const std::vector<std::string> k = {
      "workload", "server", "config", "compare", "model", "rates", "arrivals", "cv",
      "concurrency", "requests", "max-requests", "time-limit", "seed", "slo", "out", "name",
      "no-limits", "no-plots", "disk-dir", "api-key", "users", "rounds", "system-tokens",
      "turn-tokens", "answer-tokens", "documents", "doc-tokens", "question-tokens",
      "qa-answer-tokens", "order", "input-median", "input-sigma", "output-median",
      "output-sigma", "max-input-tokens", "max-output-tokens", "classes", "cancel-fraction",
      "cancel-after", "input-tokens", "output-tokens", "trace", "trace-block-tokens",
      "token-range"};
  return k;
}

absl::Status ReadInts(const CliFlags& f, WorkloadOptions& w) {
  for (auto [flag, field] :
       std::initializer_list<std::pair<const char*, int32_t*>>{
           {"users", &w.users}, {"rounds", &w.rounds}, {"system-tokens", &w.system_tokens},
           {"turn-tokens", &w.turn_tokens}, {"answer-tokens", &w.answer_tokens},
           {"documents", &w.documents}, {"doc-tokens", &w.doc_tokens},
           {"question-tokens", &w.question_tokens}, {"qa-answer-tokens", &w.qa_answer_tokens},
           {"max-input-tokens", &w.max_input_tokens}, {"max-output-tokens", &w.max_output_tokens},
           {"cancel-after", &w.cancel_after_tokens}, {"input-tokens", &w.input_tokens},
           {"output-tokens", &w.output_tokens}, {"trace-block-tokens", &w.trace_block_tokens}}) {
    ASSIGN_OR_RETURN(int64_t v, f.GetInt(flag, *field));
    *field = static_cast<int32_t>(v);
  }
  ASSIGN_OR_RETURN(w.requests, f.GetInt("requests", w.requests));
  ASSIGN_OR_RETURN(int64_t seed, f.GetInt("seed", static_cast<int64_t>(w.seed)));
  w.seed = static_cast<uint64_t>(seed);
  return absl::OkStatus();
}

absl::Status ReadDoubles(const CliFlags& f, WorkloadOptions& w) {
  for (auto [flag, field] : std::initializer_list<std::pair<const char*, double*>>{
           {"input-median", &w.input_median}, {"input-sigma", &w.input_sigma},
           {"output-median", &w.output_median}, {"output-sigma", &w.output_sigma},
           {"cancel-fraction", &w.cancel_fraction}}) {
    ASSIGN_OR_RETURN(*field, f.GetDouble(flag, *field));
  }
  return absl::OkStatus();
}

absl::Status ReadWorkload(const CliFlags& f, WorkloadOptions& w) {
  w.name = f.GetOr("workload", "");
  static const std::set<std::string> kNames = {"W1", "W2", "W3", "W4", "W5", "trace"};
  if (!kNames.contains(w.name)) {
    return absl::InvalidArgumentError("--workload: expected W1, W2, W3, W4, W5 or trace, got '" +
                                      w.name + "'");
  }
  RETURN_IF_ERROR(ReadInts(f, w));
  RETURN_IF_ERROR(ReadDoubles(f, w));
  w.order = f.GetOr("order", w.order);
  w.trace_path = f.GetOr("trace", "");
  if (w.name == "trace" && w.trace_path.empty()) {
    return absl::InvalidArgumentError("--trace FILE is required by --workload trace");
  }
  if (auto range = f.Get("token-range")) {
    std::vector<std::string> lh = Split(*range, ':');
    if (lh.size() != 2) return absl::InvalidArgumentError("--token-range: expected LO:HI");
    ASSIGN_OR_RETURN(double lo, ToDouble(lh[0], "token-range"));
    ASSIGN_OR_RETURN(double hi, ToDouble(lh[1], "token-range"));
    w.token_lo = static_cast<int32_t>(lo);
    w.token_hi = static_cast<int32_t>(hi);
  }
  for (const std::string& c : Split(f.GetOr("classes", ""), ',')) {
    std::vector<std::string> nw = Split(c, ':');
    double weight = 1;
    if (nw.size() == 2) {
      ASSIGN_OR_RETURN(weight, ToDouble(nw[1], "classes"));
    }
    if (nw.empty() || nw.size() > 2 || weight <= 0) {
      return absl::InvalidArgumentError("--classes: expected NAME:WEIGHT,... got '" + c + "'");
    }
    w.classes.emplace_back(nw[0], weight);
  }
  return absl::OkStatus();
}

// http://127.0.0.1:PORT (or localhost / [::1]): the harness never leaves the machine.
absl::StatusOr<int> LoopbackPort(const std::string& url) {
  for (const char* host : {"http://127.0.0.1:", "http://localhost:"}) {
    const std::string prefix = host;
    if (url.rfind(prefix, 0) == 0) {
      std::string port = url.substr(prefix.size());
      if (!port.empty() && port.back() == '/') port.pop_back();
      ASSIGN_OR_RETURN(double p, ToDouble(port, "server"));
      if (p >= 1 && p <= 65535 && p == static_cast<int>(p)) return static_cast<int>(p);
    }
  }
  return absl::InvalidArgumentError("--server: expected http://127.0.0.1:PORT (loopback only), got '" +
                                    url + "'");
}

absl::Status ReadLoad(const CliFlags& f, BenchOptions& o) {
  ASSIGN_OR_RETURN(int64_t concurrency, f.GetInt("concurrency", 0));
  o.load.concurrency = static_cast<int>(concurrency);
  ASSIGN_OR_RETURN(o.load.max_requests, f.GetInt("max-requests", 0));
  ASSIGN_OR_RETURN(o.load.time_limit_s, f.GetDouble("time-limit", o.load.time_limit_s));
  o.load.api_key = f.GetOr("api-key", "");
  o.arrivals = f.GetOr("arrivals", o.arrivals);
  ASSIGN_OR_RETURN(o.cv, f.GetDouble("cv", o.cv));
  for (const std::string& r : Split(f.GetOr("rates", ""), ',')) {
    ASSIGN_OR_RETURN(double rate, ToDouble(r, "rates"));
    if (rate <= 0) return absl::InvalidArgumentError("--rates: every rate must be > 0");
    o.rates.push_back(rate);
  }
  if (o.workload.name == "trace" && !o.rates.empty()) {
    return absl::InvalidArgumentError("--rates: a trace brings its own arrival times");
  }
  if (o.rates.empty() && o.load.concurrency == 0 && o.workload.name != "trace") {
    o.arrivals = "none";  // everything at once (W4's offline mode)
  }
  if (!o.rates.empty() && o.load.concurrency > 0) {
    return absl::InvalidArgumentError("--rates and --concurrency exclude each other");
  }
  return absl::OkStatus();
}

absl::Status ReadTargets(const CliFlags& f, BenchOptions& o) {
  if (auto slo = f.Get("slo")) {
    ASSIGN_OR_RETURN(o.slo, ParseSloTargets(*slo));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SloTargets> ParseSloTargets(const std::string& text) {
  SloTargets out;
  for (const std::string& item : Split(text, ',')) {
    const size_t eq = item.find('='), colon = item.find(':', eq == std::string::npos ? 0 : eq);
    if (eq == std::string::npos || colon == std::string::npos) {
      return absl::InvalidArgumentError("--slo: expected CLASS=TTFT_MS:TPOT_MS, got '" + item + "'");
    }
    ASSIGN_OR_RETURN(double ttft, ToDouble(item.substr(eq + 1, colon - eq - 1), "slo"));
    ASSIGN_OR_RETURN(double tpot, ToDouble(item.substr(colon + 1), "slo"));
    const double inf = std::numeric_limits<double>::infinity();
    out[item.substr(0, eq)] = {ttft > 0 ? ttft / 1e3 : inf, tpot > 0 ? tpot / 1e3 : inf};
  }
  return out;
}

absl::StatusOr<BenchOptions> ParseBenchOptions(const std::vector<std::string>& args) {
  std::vector<std::string> expanded;
  for (const std::string& a : args) {  // boolean flags take no value
    expanded.push_back(a);
    if (a == "--no-limits" || a == "--no-plots") expanded.push_back("1");
  }
  ASSIGN_OR_RETURN(CliFlags f, CliFlags::Parse(expanded, KnownFlags()));
  BenchOptions o;
  for (const std::string& a : args) o.command += (o.command.empty() ? "strata bench " : " ") + a;
  RETURN_IF_ERROR(ReadWorkload(f, o.workload));
  RETURN_IF_ERROR(ReadLoad(f, o));
  RETURN_IF_ERROR(ReadTargets(f, o));
  o.server = f.GetOr("server", "");
  if (auto c = f.Get("config")) o.configs.push_back(*c);
  if (auto c = f.Get("compare")) {
    if (o.configs.empty()) return absl::InvalidArgumentError("--compare needs --config");
    for (const std::string& file : Split(*c, ',')) {
      if (!file.empty()) o.configs.push_back(file);
    }
  }
  if (o.server.empty() == o.configs.empty()) {
    return absl::InvalidArgumentError("give either --server URL or --config FILE");
  }
  if (!o.server.empty()) {
    ASSIGN_OR_RETURN(o.load.port, LoopbackPort(o.server));
  }
  o.model = f.GetOr("model", "");
  o.out_dir = f.GetOr("out", o.out_dir);
  o.name = f.GetOr("name", "");
  o.limits = !f.Get("no-limits");
  o.plots = !f.Get("no-plots");
  o.disk_dir = f.GetOr("disk-dir", "");
  return o;
}

}  // namespace strata::bench
