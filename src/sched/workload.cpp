#include "sched/workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/mapped_file.h"
#include "sched/random.h"

namespace harmonia::sched {

using nlohmann::json;

namespace {

constexpr const char* kFormat = "harmonia.workload";

int64_t get_int(const json& v, const std::string& where, int64_t min) {
  if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
    fail(ErrorKind::InvalidInput, "{} must be an integer, got {}", where, v.dump());
  const double d = v.get<double>();
  if (d < static_cast<double>(min) || d > 9e15)
    fail(ErrorKind::InvalidInput, "{} = {} must be >= {}", where, v.dump(), min);
  return static_cast<int64_t>(d);
}

double clamp_alpha(double a) { return std::clamp(a, 0.0, 0.999); }

void sort_requests(Workload& w) {
  std::stable_sort(w.requests.begin(), w.requests.end(), [](const WorkloadRequest& a, const WorkloadRequest& b) {
    return a.arrival_s != b.arrival_s ? a.arrival_s < b.arrival_s : a.id < b.id;
  });
}

void check_trace(const WorkloadRequest& r, int draft_len, const std::string& where) {
  int64_t tokens = 0;
  for (size_t i = 0; i < r.accepted.size(); ++i) {
    const int32_t a = r.accepted[i];
    if (a < 0 || a > draft_len)
      fail(ErrorKind::InvalidInput, "{}: accepted[{}] = {} is outside 0..draft_len ({})", where, i, a, draft_len);
    tokens += a + 1;
    if (!r.drafted.empty() && (r.drafted[i] < a || r.drafted[i] > draft_len))
      fail(ErrorKind::InvalidInput, "{}: drafted[{}] = {} must be in accepted[{}] ({})..draft_len ({})", where, i,
           r.drafted[i], i, a, draft_len);
  }
  if (tokens < r.output_tokens)
    fail(ErrorKind::InvalidInput,
         "{}: the acceptance trace gives {} tokens in {} steps but output_tokens is {} (record every step)", where,
         tokens, r.accepted.size(), r.output_tokens);
}

}  // namespace

Workload parse_workload(const std::string& text, const std::string& source) {
  Workload w;
  w.source = source;
  std::istringstream in(text);
  std::string line;
  int64_t lineno = 0, position = 0;
  bool seen_request = false, has_header = false;
  std::set<int64_t> ids;
  static const std::set<std::string> known = {"id", "arrival_s", "prompt_tokens", "prompt", "output_tokens",
                                              "accepted", "drafted", "class"};
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", source, lineno);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      fail(ErrorKind::InvalidInput, "{}: not valid JSON ({})", where, e.what());
    }
    if (!j.is_object()) fail(ErrorKind::InvalidInput, "{}: each line must be a JSON object", where);
    if (j.contains("format")) {
      if (seen_request || has_header)
        fail(ErrorKind::InvalidInput, "{}: the header line must come first, before any request", where);
      if (j["format"] != kFormat)
        fail(ErrorKind::InvalidInput, "{}: format is {}, expected \"{}\"", where, j["format"].dump(), kFormat);
      if (j.contains("version") && j["version"] != 1)
        fail(ErrorKind::InvalidInput, "{}: workload version {} is not supported (expected 1)", where, j["version"].dump());
      for (const auto& [k, v] : j.items())
        if (k != "format" && k != "version" && k != "draft_len" && k != "note" && k != "first_step")
          fail(ErrorKind::InvalidInput, "{}: unknown header key '{}' (known: format, version, draft_len, note, first_step)",
               where, k);
      if (j.contains("first_step")) {
        if (j["first_step"] != "prefill" && j["first_step"] != "speculative")
          fail(ErrorKind::InvalidInput, "{}: first_step is {}, expected \"prefill\" or \"speculative\"", where,
               j["first_step"].dump());
        w.first_step_prefill = j["first_step"] == "prefill";
      }
      if (j.contains("draft_len")) w.draft_len = static_cast<int>(get_int(j["draft_len"], where + ": draft_len", 0));
      if (w.draft_len > 64) fail(ErrorKind::InvalidInput, "{}: draft_len {} is above 64", where, w.draft_len);
      if (j.contains("note") && j["note"].is_string()) w.note = j["note"].get<std::string>();
      has_header = true;
      continue;
    }
    for (const auto& [k, v] : j.items())
      if (!known.count(k))
        fail(ErrorKind::InvalidInput,
             "{}: unknown key '{}' (known: id, arrival_s, prompt_tokens, prompt, output_tokens, accepted, drafted, class)",
             where, k);
    WorkloadRequest r;
    r.id = j.contains("id") ? get_int(j["id"], where + ": id", 0) : position;
    if (!ids.insert(r.id).second) fail(ErrorKind::InvalidInput, "{}: request id {} appears twice", where, r.id);
    if (!j.contains("arrival_s")) fail(ErrorKind::InvalidInput, "{}: missing arrival_s (seconds from the start)", where);
    if (!j["arrival_s"].is_number())
      fail(ErrorKind::InvalidInput, "{}: arrival_s must be a number, got {}", where, j["arrival_s"].dump());
    r.arrival_s = j["arrival_s"].get<double>();
    if (!std::isfinite(r.arrival_s) || r.arrival_s < 0)
      fail(ErrorKind::InvalidInput, "{}: arrival_s = {} must be finite and >= 0", where, r.arrival_s);
    if (j.contains("prompt")) {
      if (!j["prompt"].is_string()) fail(ErrorKind::InvalidInput, "{}: prompt must be a string", where);
      r.prompt = j["prompt"].get<std::string>();
    }
    if (j.contains("prompt_tokens")) r.prompt_tokens = get_int(j["prompt_tokens"], where + ": prompt_tokens", 1);
    else if (j.contains("prompt")) r.prompt_tokens = std::max<int64_t>(1, (static_cast<int64_t>(r.prompt.size()) + 3) / 4);
    else fail(ErrorKind::InvalidInput, "{}: give prompt_tokens or prompt", where);
    if (!j.contains("output_tokens")) fail(ErrorKind::InvalidInput, "{}: missing output_tokens (true output length)", where);
    r.output_tokens = get_int(j["output_tokens"], where + ": output_tokens", 1);
    if (j.contains("class")) {
      if (!j["class"].is_string()) fail(ErrorKind::InvalidInput, "{}: class must be a string", where);
      r.cls = j["class"].get<std::string>();
    }
    if (j.contains("accepted")) {
      const json& a = j["accepted"];
      if (!a.is_array()) fail(ErrorKind::InvalidInput, "{}: accepted must be an array of integers", where);
      if (w.draft_len <= 0)
        fail(ErrorKind::InvalidInput, "{}: accepted traces need the header's draft_len (first line: "
             "{{\"format\": \"{}\", \"version\": 1, \"draft_len\": N}})", where, kFormat);
      for (size_t i = 0; i < a.size(); ++i)
        r.accepted.push_back(static_cast<int32_t>(get_int(a[i], fmt::format("{}: accepted[{}]", where, i), 0)));
      if (j.contains("drafted")) {
        const json& d = j["drafted"];
        if (!d.is_array() || d.size() != a.size())
          fail(ErrorKind::InvalidInput, "{}: drafted must be an array of {} integers (one per step, as accepted)", where,
               a.size());
        for (size_t i = 0; i < d.size(); ++i)
          r.drafted.push_back(static_cast<int32_t>(get_int(d[i], fmt::format("{}: drafted[{}]", where, i), 0)));
      }
      check_trace(r, w.draft_len, where);
      if (w.first_step_prefill && !r.accepted.empty() && r.accepted[0] != 0)
        fail(ErrorKind::InvalidInput, "{}: first_step is \"prefill\" (the first step drafts nothing) but accepted[0] = {}",
             where, r.accepted[0]);
    } else if (j.contains("drafted")) {
      fail(ErrorKind::InvalidInput, "{}: drafted needs accepted (one entry per step in both)", where);
    }
    w.requests.push_back(std::move(r));
    seen_request = true;
    ++position;
  }
  if (w.requests.empty()) fail(ErrorKind::InvalidInput, "{}: no requests", source);
  sort_requests(w);
  return w;
}

Workload load_workload(const std::string& path) { return parse_workload(read_file(path), path); }

std::string workload_to_jsonl(const Workload& w) {
  std::string out;
  json h{{"format", kFormat}, {"version", 1}, {"draft_len", w.draft_len}};
  if (w.first_step_prefill) h["first_step"] = "prefill";
  if (!w.note.empty()) h["note"] = w.note;
  out += h.dump() + "\n";
  for (const auto& r : w.requests) {
    json j;
    j["id"] = r.id;
    j["arrival_s"] = r.arrival_s;
    j["prompt_tokens"] = r.prompt_tokens;
    if (!r.prompt.empty()) j["prompt"] = r.prompt;
    j["output_tokens"] = r.output_tokens;
    if (!r.cls.empty()) j["class"] = r.cls;
    if (!r.accepted.empty()) j["accepted"] = r.accepted;
    if (!r.drafted.empty()) j["drafted"] = r.drafted;
    out += j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  }
  return out;
}

void save_workload(const std::string& path, const Workload& w) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail(ErrorKind::Io, "{}: cannot open for writing", path);
  f << workload_to_jsonl(w);
  if (!f) fail(ErrorKind::Io, "{}: write failed", path);
}

Request to_request(const WorkloadRequest& w) {
  Request r;
  r.id = w.id;
  r.arrival_s = w.arrival_s;
  r.prompt_tokens = w.prompt_tokens;
  r.true_output_tokens = w.output_tokens;
  r.true_accepted = w.accepted;
  return r;
}

// ---- acceptance processes ---------------------------------------------------------------

const char* acceptance_kind_name(AcceptanceModel::Kind k) {
  switch (k) {
    case AcceptanceModel::Kind::Stationary: return "stationary";
    case AcceptanceModel::Kind::Drifting: return "drifting";
    case AcceptanceModel::Kind::Bimodal: return "bimodal";
  }
  return "?";
}

namespace {

AcceptanceModel::Kind parse_kind(const std::string& s, const std::string& what) {
  if (s == "stationary") return AcceptanceModel::Kind::Stationary;
  if (s == "drifting") return AcceptanceModel::Kind::Drifting;
  if (s == "bimodal") return AcceptanceModel::Kind::Bimodal;
  fail(ErrorKind::InvalidInput, "{}: unknown acceptance process '{}' (stationary, drifting, bimodal)", what, s);
}

void read_accept_options(OptionReader& rd, AcceptanceModel& m) {
  m.alpha_mean = rd.get_double("alpha_mean", m.alpha_mean, 0.001, 0.999);
  m.alpha_conc = rd.get_double("alpha_conc", m.alpha_conc, 0.01, 1e6);
  m.alpha0_mean = rd.get_double("alpha0_mean", m.alpha0_mean, 0.001, 0.999);
  m.kappa = rd.get_double("kappa", m.kappa, 1e-6, 1e9);
  m.noise = rd.get_double("noise", m.noise, 0, 1);
  m.low_gap = rd.get_double("low_gap", m.low_gap, 0, 1);
  m.p_switch = rd.get_double("p_switch", m.p_switch, 0, 1);
}

}  // namespace

AcceptanceModel parse_acceptance(const std::string& spec) {
  const PolicySpec s = parse_policy_spec(spec);
  AcceptanceModel m;
  m.kind = parse_kind(s.name, "acceptance '" + spec + "'");
  OptionReader rd("acceptance process '" + s.name + "'", s.options);
  read_accept_options(rd, m);
  rd.finish();
  return m;
}

std::vector<int32_t> draw_trace(const AcceptanceModel& m, Rng& rng, int64_t output_tokens, int draft_len) {
  const double conc = m.alpha_conc;
  const double a_inf = rng.beta_mean(m.alpha_mean, conc);
  const double a_0 = m.kind == AcceptanceModel::Kind::Drifting ? rng.beta_mean(m.alpha0_mean, conc) : a_inf;
  const double a_lo = std::max(0.02, a_inf - m.low_gap);
  bool high = m.kind != AcceptanceModel::Kind::Bimodal || rng.uniform() < 0.5;
  std::vector<int32_t> trace;
  int64_t left = output_tokens;
  for (int64_t t = 0; left > 0; ++t) {
    double alpha = a_inf;
    if (m.kind == AcceptanceModel::Kind::Drifting) {
      alpha = clamp_alpha(a_inf + (a_0 - a_inf) * std::exp(-static_cast<double>(t) / m.kappa) + m.noise * rng.normal());
    } else if (m.kind == AcceptanceModel::Kind::Bimodal) {
      if (t > 0 && rng.uniform() < m.p_switch) high = !high;
      alpha = high ? a_inf : a_lo;
    }
    int32_t a = 0;
    while (a < draft_len && rng.uniform() < alpha) ++a;
    trace.push_back(a);
    left -= a + 1;
  }
  return trace;
}

// ---- synthetic workloads ----------------------------------------------------------------

namespace {

// The reference mix (docs/scheduling.md): shaped after the paper's three
// datasets — chat instructions, MBPP-style code, MiniThinky-style reasoning.
// All numbers are ours [R]; none come from the paper.
std::vector<RequestClass> reference_classes() {
  RequestClass chat;
  chat.name = "chat";
  chat.weight = 0.4;
  chat.prompt_median = 80, chat.prompt_sigma = 0.8, chat.prompt_min = 4, chat.prompt_max = 2048;
  chat.output_median = 160, chat.output_sigma = 0.9, chat.output_min = 8, chat.output_max = 2048;
  chat.accept.kind = AcceptanceModel::Kind::Stationary;
  chat.accept.alpha_mean = 0.55, chat.accept.alpha_conc = 6;

  RequestClass code;
  code.name = "code";
  code.weight = 0.3;
  code.prompt_median = 120, code.prompt_sigma = 0.5, code.prompt_min = 16, code.prompt_max = 2048;
  code.output_median = 120, code.output_sigma = 0.7, code.output_min = 16, code.output_max = 1024;
  code.accept.kind = AcceptanceModel::Kind::Bimodal;  // boilerplate vs. logic
  code.accept.alpha_mean = 0.85, code.accept.alpha_conc = 12, code.accept.low_gap = 0.45, code.accept.p_switch = 0.08;

  RequestClass reason;
  reason.name = "reasoning";
  reason.weight = 0.3;
  reason.prompt_median = 60, reason.prompt_sigma = 0.6, reason.prompt_min = 8, reason.prompt_max = 1024;
  reason.output_median = 500, reason.output_sigma = 0.7, reason.output_min = 64, reason.output_max = 4096;
  reason.accept.kind = AcceptanceModel::Kind::Drifting;  // fluctuates, then settles (the paper's motivation)
  reason.accept.alpha_mean = 0.7, reason.accept.alpha0_mean = 0.35, reason.accept.alpha_conc = 6;
  reason.accept.kappa = 15, reason.accept.noise = 0.08;
  return {chat, code, reason};
}

int64_t draw_len(Rng& rng, double median, double sigma, int64_t lo, int64_t hi) {
  const double x = std::round(rng.lognormal(median, sigma));
  return std::clamp(static_cast<int64_t>(x), lo, hi);
}

}  // namespace

SyntheticSpec parse_synthetic(const std::string& text) {
  const PolicySpec ps = parse_policy_spec(text);
  SyntheticSpec s;
  s.name = ps.name;
  s.text = text;
  OptionReader rd("synthetic workload '" + ps.name + "'", ps.options);
  s.requests = rd.get_int("requests", s.requests, 1, 10'000'000);
  s.seed = static_cast<uint64_t>(rd.get_int("seed", 1, 0, INT64_MAX));
  s.rate = rd.get_double("rate", s.rate, 1e-9, 1e9);
  s.draft_len = static_cast<int>(rd.get_int("draft_len", s.draft_len, 0, 64));
  if (ps.name == "reference") {
    s.classes = reference_classes();
    const std::string acc = rd.get_choice("accept", "mixed", {"mixed", "stationary", "drifting", "bimodal"});
    if (acc != "mixed")
      for (auto& c : s.classes) c.accept.kind = parse_kind(acc, "reference accept");
  } else if (ps.name == "single") {
    RequestClass c;
    c.name = "single";
    c.prompt_median = rd.get_double("prompt", c.prompt_median, 1, 1e7);
    c.prompt_sigma = rd.get_double("prompt_sigma", c.prompt_sigma, 0, 5);
    c.output_median = rd.get_double("output", c.output_median, 1, 1e7);
    c.output_sigma = rd.get_double("output_sigma", c.output_sigma, 0, 5);
    c.prompt_max = rd.get_int("prompt_max", c.prompt_max, 1, 10'000'000);
    c.output_min = rd.get_int("output_min", c.output_min, 1, 10'000'000);
    c.output_max = rd.get_int("output_max", c.output_max, 1, 10'000'000);
    if (c.output_min > c.output_max)
      fail(ErrorKind::InvalidInput, "synthetic workload 'single': output_min {} is above output_max {}", c.output_min,
           c.output_max);
    c.accept.kind = parse_kind(rd.get_choice("accept", "stationary", {"stationary", "drifting", "bimodal"}), "single");
    c.accept.alpha_mean = rd.get_double("alpha", c.accept.alpha_mean, 0.001, 0.999);
    read_accept_options(rd, c.accept);
    s.classes = {c};
  } else {
    fail(ErrorKind::InvalidInput, "unknown synthetic workload '{}' (known: reference, single)", ps.name);
  }
  rd.finish();
  return s;
}

Workload generate_workload(const SyntheticSpec& s) {
  Workload w;
  w.source = "synthetic " + (s.text.empty() ? s.name : s.text);
  w.draft_len = s.draft_len;
  double total_weight = 0;
  for (const auto& c : s.classes) total_weight += c.weight;
  if (s.classes.empty() || !(total_weight > 0))
    fail(ErrorKind::InvalidInput, "synthetic workload '{}' has no request classes", s.name);
  for (int64_t i = 0; i < s.requests; ++i) {
    Rng rng(derive_seed(s.seed, static_cast<uint64_t>(i)));
    double u = rng.uniform() * total_weight;
    size_t ci = 0;
    while (ci + 1 < s.classes.size() && u >= s.classes[ci].weight) u -= s.classes[ci++].weight;
    const RequestClass& c = s.classes[ci];
    WorkloadRequest r;
    r.id = i;
    r.cls = c.name;
    r.prompt_tokens = draw_len(rng, c.prompt_median, c.prompt_sigma, c.prompt_min, c.prompt_max);
    r.output_tokens = draw_len(rng, c.output_median, c.output_sigma, c.output_min, c.output_max);
    r.accepted = draw_trace(c.accept, rng, r.output_tokens, s.draft_len);
    w.requests.push_back(std::move(r));
  }
  set_poisson_arrivals(w, s.rate, s.seed);
  return w;
}

void set_poisson_arrivals(Workload& w, double rate, uint64_t seed) {
  if (!(rate > 0) || !std::isfinite(rate)) fail(ErrorKind::InvalidInput, "arrival rate {} must be > 0", rate);
  std::sort(w.requests.begin(), w.requests.end(),
            [](const WorkloadRequest& a, const WorkloadRequest& b) { return a.id < b.id; });
  Rng rng(derive_seed(seed, 0xA5A5A5A5ull));
  double t = 0;
  for (auto& r : w.requests) {
    t += rng.exponential(rate);
    r.arrival_s = t;
  }
  sort_requests(w);
}

void scale_arrivals(Workload& w, double rate) {
  if (!(rate > 0) || !std::isfinite(rate)) fail(ErrorKind::InvalidInput, "arrival rate {} must be > 0", rate);
  if (w.requests.size() < 2) return;
  const double t0 = w.requests.front().arrival_s, span = w.requests.back().arrival_s - t0;
  if (!(span > 0))
    fail(ErrorKind::InvalidInput, "{}: all requests arrive at once; a rate cannot be set by scaling", w.source);
  const double current = static_cast<double>(w.requests.size() - 1) / span;
  for (auto& r : w.requests) r.arrival_s = t0 + (r.arrival_s - t0) * current / rate;
}

void fill_missing_traces(Workload& w, const AcceptanceModel& m, int draft_len, uint64_t seed) {
  bool any_missing = false;
  for (const auto& r : w.requests) any_missing |= r.accepted.empty();
  if (!any_missing) return;
  if (w.draft_len > 0 && w.draft_len != draft_len)
    fail(ErrorKind::InvalidInput, "{}: its traces use draft_len {} but {} was asked for", w.source, w.draft_len,
         draft_len);
  w.draft_len = draft_len;
  for (auto& r : w.requests)
    if (r.accepted.empty()) {
      Rng rng(derive_seed(seed ^ 0x5EEDull, static_cast<uint64_t>(r.id)));
      if (w.first_step_prefill) {  // the prefill step emits one token without drafting
        r.accepted = {0};
        r.drafted.clear();
        if (r.output_tokens > 1) {
          const auto rest = draw_trace(m, rng, r.output_tokens - 1, draft_len);
          r.accepted.insert(r.accepted.end(), rest.begin(), rest.end());
        }
      } else {
        r.accepted = draw_trace(m, rng, r.output_tokens, draft_len);
      }
    }
}

}  // namespace harmonia::sched
