#pragma once
// Workloads for the simulator and (later) trace replay in the engine: a
// JSON-lines file format, its parser, and synthetic generators with
// acceptance processes (LAPS-SD spec §5.2): stationary, drifting, bimodal.
//
// File format (docs/scheduling.md, "Workload files"): one JSON object per line.
// An optional first line is a header:
//   {"format": "harmonia.workload", "version": 1, "draft_len": 4, "note": "..."}
// then one request per line:
//   {"id": 7, "arrival_s": 0.25, "prompt_tokens": 120, "output_tokens": 300,
//    "accepted": [3, 4, 0, 2, ...], "class": "code"}
// - arrival_s (required): seconds from the start, >= 0; lines need not be sorted.
// - prompt_tokens and/or prompt (text): at least one. Without prompt_tokens the
//   simulator estimates ceil(bytes / 4); the engine's replay tokenizes the text.
// - output_tokens (required): the true output length L >= 1.
// - accepted (optional): accepted draft tokens of each step, 0..draft_len (the
//   header's draft_len is then required); the steps must yield at least
//   output_tokens tokens (each step gives accepted + 1).
// - drafted (optional, with accepted): draft tokens proposed in each step,
//   accepted[i] <= drafted[i] <= draft_len (a recorded replay writes it: prompt
//   lookup may propose fewer than n, the last step drafts only what is left).
//   Without it every step drafts draft_len.
// Header key first_step (optional): "speculative" (default; the simulator's
// first step of a request prefills and also drafts) or "prefill" (as the
// engine runs it: the first step prefills and emits one token without
// drafting; accepted[0] must then be 0). `harmonia replay --record` writes "prefill".
// - id (optional, unique; default: the line's position), class (optional label).
// Blank lines are skipped; unknown keys are errors (typos must not pass silently).
#include <cstdint>
#include <string>
#include <vector>

#include "sched/options.h"
#include "sched/policy.h"

namespace harmonia::sched {

struct WorkloadRequest {
  int64_t id = 0;
  double arrival_s = 0;
  int64_t prompt_tokens = 0;
  std::string prompt;             // optional text
  int64_t output_tokens = 0;      // true output length L
  std::vector<int32_t> accepted;  // [steps] accepted draft tokens per step; empty = none recorded
  std::vector<int32_t> drafted;   // [steps] drafted tokens per step; empty = draft_len every step
  std::string cls;                // optional class label
};

struct Workload {
  std::vector<WorkloadRequest> requests;  // sorted by (arrival_s, id)
  int draft_len = 0;                      // n of the acceptance traces (0 = no traces)
  bool first_step_prefill = false;        // header first_step "prefill": step 0 prefills + emits 1, no drafts
  std::string source;                     // file name or synthetic spec
  std::string note;
};

// Parses JSONL text; `source` names it in errors ("FILE:LINE: ..."). Throws Error(InvalidInput).
Workload parse_workload(const std::string& text, const std::string& source);
// Reads a file (Error(Io) if unreadable).
Workload load_workload(const std::string& path);
std::string workload_to_jsonl(const Workload& w);
void save_workload(const std::string& path, const Workload& w);

// The scheduler's view of a workload request (ground truth included).
Request to_request(const WorkloadRequest& w);

// Per-request acceptance process (spec §5.2-3). α is the per-token acceptance
// probability; a step's accepted count is truncated-geometric:
// P(a = k) = α^k (1 − α) for k < n, P(a = n) = α^n. So A = E[a]/n is below α (§1.3).
struct AcceptanceModel {
  enum class Kind { Stationary, Drifting, Bimodal } kind = Kind::Stationary;
  double alpha_mean = 0.7;   // α_i ~ Beta(mean, alpha_conc): stationary α; drifting α∞; bimodal α_hi
  double alpha_conc = 10;    // Beta concentration (a + b): spread of α across requests
  double alpha0_mean = 0.4;  // drifting: α_i^0 ~ Beta(alpha0_mean, alpha_conc)
  double kappa = 20;         // drifting: α(t) = α∞ + (α0 − α∞)·exp(−t/κ) + N(0, noise²)
  double noise = 0.05;
  double low_gap = 0.4;      // bimodal: α_lo = max(0.02, α_hi − low_gap)
  double p_switch = 0.05;    // bimodal: probability per step of switching regime
};
const char* acceptance_kind_name(AcceptanceModel::Kind k);
// "stationary[:alpha_mean=0.7:alpha_conc=10]", "drifting[:...]", "bimodal[:...]".
AcceptanceModel parse_acceptance(const std::string& spec);

// One request's trace: accepted counts of as many steps as it takes to emit
// output_tokens. draft_len = 0 gives all-zero steps (no speculation).
class Rng;
std::vector<int32_t> draw_trace(const AcceptanceModel& m, Rng& rng, int64_t output_tokens, int draft_len);

// A class of requests in a synthetic mix: log-normal prompt and output lengths
// (median, σ of the log, clamped to [min, max]) and an acceptance process.
struct RequestClass {
  std::string name;
  double weight = 1;
  double prompt_median = 100, prompt_sigma = 0.5;
  int64_t prompt_min = 1, prompt_max = 8192;
  double output_median = 200, output_sigma = 0.8;
  int64_t output_min = 1, output_max = 4096;
  AcceptanceModel accept;
};

struct SyntheticSpec {
  std::string name = "reference";
  int64_t requests = 1000;
  uint64_t seed = 1;
  double rate = 1.0;  // Poisson arrivals, requests per second
  int draft_len = 4;  // n
  std::vector<RequestClass> classes;
  std::string text;   // the spec as given
};

// "reference[:requests=1000:seed=1:rate=1:draft_len=4:accept=mixed|stationary|drifting|bimodal]"
// — the documented reference mix (chat / code / reasoning classes, see
// docs/scheduling.md); or "single[:prompt=100:prompt_sigma=0.5:prompt_max=8192:output=200:output_min=1:
// output_sigma=0.8:output_max=4096:alpha=0.7:alpha_conc=10:accept=stationary|drifting|bimodal
// :requests=..:seed=..:rate=..:draft_len=..]". Throws Error(InvalidInput).
SyntheticSpec parse_synthetic(const std::string& spec);
// Request i's content depends only on (seed, i): more requests extend the
// same sequence. Arrivals are a Poisson process of the spec's rate.
Workload generate_workload(const SyntheticSpec& s);

// Arrivals replaced by a Poisson process of `rate` (requests/s), same request order.
void set_poisson_arrivals(Workload& w, double rate, uint64_t seed);
// Arrival times scaled so the mean rate is `rate` (keeps the burst pattern of a recorded trace).
void scale_arrivals(Workload& w, double rate);
// Draws traces (with `draft_len`) for requests that have none (after a leading
// 0 for the prefill step when w.first_step_prefill).
void fill_missing_traces(Workload& w, const AcceptanceModel& m, int draft_len, uint64_t seed);

}  // namespace harmonia::sched
