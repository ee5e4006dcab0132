#pragma once
// Request scheduling policies behind one interface (fcfs, sjf, srpt-oracle,
// las, mlfq, laps-sd), chosen by name. The serving engine and the discrete-event
// simulator (sched/simulator.h) drive the same classes, step by step:
//
//   on_arrival(request, now)           a request enters the waiting set
//   select(now, capacity) -> Selection which requests run in the next step
//                                      (and which running ones are preempted)
//   ... the engine runs the step: prefill chunk, or draft n tokens + verify ...
//   on_step_done(outcomes, step_s, now) per-request results of that step;
//                                      finished requests leave the scheduler
//   remove(id)                         a request leaves without finishing
//
// Preemption happens only at step boundaries: a request that ran in the last
// step and is not selected again is preempted (its KV may stay resident; that
// is the engine's business). The scheduler knows nothing about models: no
// includes from model/, engine/ or spec/.
//
// Times are seconds on the caller's clock (`*_s`). Terms follow LAPS-SD
// (arXiv 2505.17074; our reconstruction in shared/specs/laps-sd.md): attained
// service X, acceptance rate A (fraction of drafted tokens accepted), draft
// length n, perceptible / non-perceptible.
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "sched/options.h"

namespace harmonia::sched {

using RequestId = int64_t;

// A request as the scheduler first sees it.
struct Request {
  RequestId id = 0;
  double arrival_s = 0;
  int64_t prompt_tokens = 0;
  int64_t max_new_tokens = 0;  // cap on generated tokens; 0 = none known
  // Ground truth, known only to the simulator or a trace replay; used by the
  // oracle predictors, srpt-oracle and laps-sd's perceptible_at_arrival mode.
  int64_t true_output_tokens = -1;    // -1 = unknown
  std::vector<int32_t> true_accepted;  // [steps] accepted draft tokens of each step; empty = unknown
};

// What one request did in one step (the engine reports it after the step).
struct StepOutcome {
  RequestId id = 0;
  int32_t drafted = 0;         // draft tokens proposed (n); 0 for a step without speculation
  int32_t accepted = 0;        // of those, accepted by the target (0..drafted)
  int64_t emitted = 0;         // tokens committed to the output (accepted + 1, cut at EOS / cap)
  int64_t prefill_tokens = 0;  // prompt tokens processed in this step (chunked prefill)
  bool finished = false;       // the request completed; it leaves the scheduler
};

struct Capacity {
  int max_seqs = 1;           // B: requests per step (>= 1)
  int64_t max_kv_tokens = 0;  // KV budget over the selected requests, in tokens; 0 = unlimited
};

struct Selection {
  std::vector<RequestId> run;        // to run in the next step, highest priority first (<= max_seqs)
  std::vector<RequestId> preempted;  // ran in the previous step, unfinished, not selected now
};

// Unit of attained service X (LAPS-SD spec §2.2, ambiguity A1).
enum class ServiceUnit {
  Seconds,     // wall time of every step the request took part in (default)
  Iterations,  // steps
  Tokens,      // tokens emitted (not time under speculative decoding)
};
const char* service_unit_name(ServiceUnit u);

// Acceptance statistics of one request (spec §1.3): sums over its speculative
// steps and the cumulative rate Â after each of the last few steps.
struct AcceptanceStats {
  int64_t steps = 0;     // steps with drafted > 0
  int64_t drafted = 0;   // Σ n_t
  int64_t accepted = 0;  // Σ a_t
  double last_rate = 0;  // a_t / n_t of the latest speculative step
  std::deque<double> history;  // Â after each recent step, oldest first

  // Â = Σa / Σn: the mean fraction of drafted tokens accepted; 0 before any step.
  double rate() const { return drafted ? static_cast<double>(accepted) / drafted : 0.0; }
  // Records a step; keeps the latest `keep` values of Â.
  void record(int32_t drafted, int32_t accepted, size_t keep);
  // max |Â(s) − Â(t)| over the last w values (t = latest); +inf with fewer than w values.
  double drift(size_t w) const;
};

// Everything the scheduler tracks about one request. Progress fields are kept
// by the Policy base class for every policy; the policy-view fields are set by
// the policies that use them (and logged / tested).
struct RequestState {
  Request req;
  // progress
  int64_t generated = 0;  // g: output tokens committed
  int64_t prefilled = 0;  // prompt tokens processed
  int64_t steps = 0;      // steps taken part in
  AcceptanceStats acc;
  double service_s = 0;        // wall time of the steps taken part in
  double attained = 0;         // X, in the policy's service unit
  double first_run_s = -1;     // start of its first step; -1 = never ran
  double last_run_end_s = 0;   // end of its latest step (arrival time before the first)
  int64_t preemptions = 0;
  bool running = false;        // in the latest selection
  // policy view
  int queue = 0;                  // 0-based queue index (mlfq, laps-sd); 0 = highest priority
  double enqueue_s = 0;           // when it entered that queue (FCFS order inside a queue)
  double queue_service = 0;       // service used in the current queue (mlfq)
  bool pinned = false;            // aging moved it to queue 0 until it next runs
  bool perceptible = false;       // laps-sd: acceptance stable, estimates in use
  double perceptible_at_s = -1;   // when it became perceptible
  double accept_hat = 0;          // Â used in the estimate
  double length_hat = 0;          // L̂: predicted total output tokens (sjf, laps-sd)
  double remaining_hat_s = 0;     // R̂: estimated remaining execution time (laps-sd)
  double estimate_at_switch_s = 0;  // R̂ at the switch to perceptible (estimation error, spec §5.2)
};

// What policies may know about the deployment.
struct PolicyContext {
  int draft_len = 4;    // n: draft tokens per step
  double step_s = 1.0;  // τ: time of one step (n drafts + one verify) at the reference batch size
  // Prefill time of a prompt (mlfq's skip-join, srpt-oracle's remaining time); null = 0.
  std::function<double(int64_t prompt_tokens)> prefill_s;
  // Empirical output lengths for the cond-mean length predictor (may be empty).
  std::vector<int64_t> length_samples;
};

class Policy {
 public:
  explicit Policy(PolicyContext ctx) : ctx_(std::move(ctx)) {}
  virtual ~Policy() = default;
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;

  // The policy's name ("laps-sd"); label() adds non-default options as given
  // by the spec ("laps-sd(predictor=noisy-oracle)"), for logs and reports.
  virtual std::string name() const = 0;
  const std::string& label() const { return label_; }
  void set_label(std::string l) { label_ = std::move(l); }

  // A request enters the waiting set at now_s (normally r.arrival_s).
  // Throws Error(InvalidInput) for a duplicate id, or when the policy needs
  // ground truth the request lacks (srpt-oracle, oracle predictors).
  void on_arrival(const Request& r, double now_s);

  // Requests for the next step, highest priority first: the first max_seqs of
  // the policy's order whose KV need (prompt + generated + n + 1 tokens) fits
  // the remaining budget; a request that does not fit is skipped, not waited
  // for. Requests that ran in the previous step and are not chosen are
  // reported as preempted. May apply aging (mlfq, laps-sd) before ordering.
  Selection select(double now_s, const Capacity& cap);

  // After the step that ran the latest selection: one outcome per request
  // that ran, step_s its wall time (seconds), now_s the clock at its end.
  // Updates progress and attained service, then the policy's state (demotion,
  // switch to perceptible, estimates). Finished requests are removed.
  // Throws Error(InvalidInput) for an unknown id or inconsistent counts.
  void on_step_done(std::span<const StepOutcome> outcomes, double step_s, double now_s);

  // Drops a request that leaves without finishing (cancelled); unknown ids are ignored.
  void remove(RequestId id);

  const RequestState* find(RequestId id) const;
  size_t size() const { return reqs_.size(); }
  // All held requests in the policy's current order (no aging applied); for logs and tests.
  std::vector<RequestId> order(double now_s) const;

  const PolicyContext& context() const { return ctx_; }

 protected:
  // Lexicographic priority; lower runs first. Ties: arrival time, then id (A14).
  struct Key {
    double k0 = 0, k1 = 0, k2 = 0;
  };
  virtual Key key(const RequestState& r, double now_s) const = 0;
  // Hooks: after the base class registered an arrival; after it updated the
  // progress of a request that ran and did not finish; before ordering in select().
  virtual void admit(RequestState& r, double now_s) {}
  virtual void update(RequestState& r, const StepOutcome& o, double step_s, double now_s) {}
  virtual void prepare(double now_s) {}

  // Service X gained in one step, in `unit`.
  static double service_increment(ServiceUnit unit, const StepOutcome& o, double step_s);
  ServiceUnit unit_ = ServiceUnit::Seconds;
  double prefill_s(int64_t prompt_tokens) const { return ctx_.prefill_s ? ctx_.prefill_s(prompt_tokens) : 0.0; }
  // How many recent Â values each request keeps (laps-sd sets its window W).
  size_t history_keep_ = 1;
  // Every held request (unordered).
  const std::vector<std::unique_ptr<RequestState>>& requests() const { return reqs_; }

 private:
  PolicyContext ctx_;
  std::string label_;
  std::vector<std::unique_ptr<RequestState>> reqs_;
  std::unordered_map<RequestId, size_t> index_;
  void erase(RequestId id);
  void sorted(double now_s, std::vector<RequestState*>& out, size_t top) const;
};

// Creates a policy from its spec (name and options; see sched/policies.h for
// each policy's options and defaults). Throws Error(InvalidInput) naming the
// unknown policy or option.
std::unique_ptr<Policy> make_policy(const PolicySpec& spec, const PolicyContext& ctx);
// Same, from "name[:k=v...]".
std::unique_ptr<Policy> make_policy(const std::string& spec, const PolicyContext& ctx);
std::vector<std::string> policy_names();

}  // namespace harmonia::sched
