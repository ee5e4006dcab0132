#pragma once
// Discrete-event simulation of speculative-decoding serving (LAPS-SD spec
// §5.2), driving the same Policy classes the engine uses. Time advances one
// step at a time: at each step boundary arrivals are admitted, the policy
// selects up to B requests, the step costs step_cost_ms (below) from the cost
// profile, and every member
// emits min(a + 1, tokens left) tokens, a taken from its acceptance trace.
// When nothing is runnable the clock jumps to the next arrival.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sched/policy.h"
#include "sched/profile.h"
#include "sched/workload.h"

namespace harmonia::sched {

// One member of a step as the cost model sees it. The simulator and
// `replay --compare` (for the engine's recorded steps) cost steps with the same
// function, so a step-by-step comparison checks exactly the simulator's model.
struct StepMember {
  int64_t prefill_tokens = 0;  // prompt tokens charged prefill_ms(P) this step (a request's first step); 0 = none
  bool decodes = true;         // takes part in the draft + verify pass
  double ctx_tokens = 0;       // tokens in its KV cache before the step
  double drafted = 0;          // draft tokens proposed (the verify pass feeds 1 + drafted)
  bool resumed = false;        // switched back to after a pause: charged c_p
  int64_t catchup_tokens = 0;  // prompt tokens its drafter catches up over this step (its first decode step)
};

// ms of one step of members m (b = |m|, d of the decoding members):
//   Σ prefill_ms(P_i) + Σ draft_prefill_ms(catch-up_i) + d̄·draft_ms(d, c̄) + verify_ms(d, d̄, c̄)
//   + step_overhead_ms(b) + c_p·(resumed members)
// with d̄ and c̄ the decoding members' mean drafted count and context. c_p = preempt_ms.
double step_cost_ms(const CostProfile& profile, std::span<const StepMember> m, double preempt_ms);

struct SimOptions {
  int max_seqs = 1;            // B
  int64_t max_kv_tokens = 0;   // KV budget in tokens (0 = unlimited)
  int draft_len = 4;           // n; must match the workload's traces
  bool charge_prefill = true;  // add prefill(prompt) to a request's first step (spec A10)
  double preempt_ms = -1;      // c_p per resumed request; < 0: the profile's preempt_ms
  bool record_events = false;  // keep the per-step event log
};

// One step of the event log.
struct SimEvent {
  double start_s = 0, end_s = 0;
  std::vector<RequestId> ran;        // in selection order
  std::vector<RequestId> preempted;  // left out although they ran in the previous step
  std::vector<RequestId> finished;
};

struct RequestOutcome {
  RequestId id = 0;
  std::string cls;
  double arrival_s = 0, first_token_s = 0, finish_s = 0;
  int64_t prompt_tokens = 0, output_tokens = 0;
  int64_t steps = 0, drafted = 0, accepted = 0, preemptions = 0;
  double service_s = 0;  // wall time of the steps it took part in
  // Estimation error (laps-sd): R̂ at the switch to perceptible, and the service
  // time it actually took from then on. est_valid = false if it never switched.
  bool est_valid = false;
  double est_remaining_s = 0, actual_remaining_s = 0;
  double latency_s() const { return finish_s - arrival_s; }
  double ttft_s() const { return first_token_s - arrival_s; }
};

struct SimMetrics {
  int64_t requests = 0;
  double mean_latency_s = 0, p50_latency_s = 0, p90_latency_s = 0, p99_latency_s = 0;
  double mean_ttft_s = 0, p99_ttft_s = 0;
  double mean_tpot_s = 0;           // (finish − first token)/(L − 1), over requests with L > 1
  double mean_norm_latency_s = 0;   // latency / L
  double throughput_tok_s = 0;      // output tokens / (last finish − first arrival)
  double mean_acceptance = 0;       // Σ accepted / Σ drafted (A)
  int64_t preemptions = 0;
  double makespan_s = 0;            // last finish − first arrival
  double est_error_mean = -1;       // mean |R̂ − actual| / actual over switched requests; −1 if none
  int64_t est_count = 0;
};

struct SimResult {
  std::string policy;  // the policy's label
  std::vector<RequestOutcome> requests;  // in completion order
  std::vector<SimEvent> events;          // if SimOptions::record_events
  SimMetrics metrics;
};

// Runs `policy` (fresh, holding no requests) over the whole workload. The
// workload's traces must exist and use draft_len o.draft_len (fill them with
// fill_missing_traces). Throws Error(InvalidInput) on mismatches, or when a
// request can never fit the KV budget.
SimResult simulate(const Workload& w, Policy& policy, const CostProfile& profile, const SimOptions& o);

SimMetrics summarize(std::span<const RequestOutcome> outcomes);
// Linear-interpolation percentile (q in [0, 100]) of unsorted values.
double percentile(std::vector<double> v, double q);
// Mean service time of a request served alone (B = 1): prefill + its trace's
// steps at batch 1, in seconds. Load ρ = rate × this.
double mean_service_s(const Workload& w, const CostProfile& profile, int draft_len, bool charge_prefill = true);
// The PolicyContext that `simulate` and `replay` give the policies: τ from the
// profile at (batch, draft_len, the workload's mean context prompt + L/2), the
// profile's prefill time, and the workload's output lengths as the cond-mean
// predictor's samples.
PolicyContext workload_policy_context(const Workload& w, const CostProfile& profile, int draft_len, int batch);
// The event log as text, one step per line ("t0 t1 ran=[..] pre=[..] fin=[..]"), for diffs and determinism checks.
std::string format_events(std::span<const SimEvent> events);

}  // namespace harmonia::sched
