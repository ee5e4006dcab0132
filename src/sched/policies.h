#pragma once
// The scheduling policies and their options. make_policy() (sched/policy.h)
// maps a spec's key=value options onto these structs; the option names are
// the field names below (the CLI, the engine and reports use the same ones).
//
//   fcfs         arrival order; never preempts (Orca/vLLM's default).
//   sjf          shortest predicted output length first (S³/SSJF/LTR/TRAIL
//                family); non-preemptive, or length-only SRPT with preemptive=true.
//                Ignores the acceptance rate.
//   srpt-oracle  shortest true remaining execution time first, from the
//                request's true length and acceptance trace: a lower bound
//                for experiments (spec §3.5), not a deployable policy.
//   las          least attained service first (round-robin among equals).
//   mlfq         FastServe's skip-join multi-level feedback queue (spec §3.2).
//   laps-sd      Least-Attained/Perceived-Service for speculative decoding
//                (arXiv 2505.17074; reconstruction in shared/specs/laps-sd.md §2).
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "sched/policy.h"
#include "sched/predictor.h"

namespace harmonia::sched {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Predictor options as policy options: predictor=oracle|noisy-oracle|cond-mean,
// sigma=0.3, predictor_seed=1. cond-mean uses PolicyContext::length_samples.
struct SjfOptions {
  PredictorOptions predictor;
  bool preemptive = false;  // false: SJF on L̂; true: SRPT on L̂ − g at step boundaries
  double rho = 0.25;        // under-prediction guard: L̂ <= g -> g + max(1, ceil(ρ·g)) (spec A17)
};

struct LasOptions {
  ServiceUnit service_unit = ServiceUnit::Seconds;  // service_unit=seconds|iterations|tokens
};

struct MlfqOptions {
  int queues = 5;              // K
  double quantum1 = 8;         // quantum of the top queue, in steps of τ (seconds unit), steps, or tokens
  double ratio = 2;            // quantum_j = quantum1 · ratio^j (FastServe doubles)
  bool skip_join = true;       // join the first queue whose quantum covers the first iteration (prefill + one step)
  double starve_limit_s = kInf;  // aging: waiting longer than this (seconds) promotes to queue 0; inf = off
  ServiceUnit service_unit = ServiceUnit::Seconds;
};

// LAPS-SD, every parameter of spec §2.2's table (defaults there, all [R]).
struct LapsOptions {
  int queues = 5;                    // K
  double theta1 = 8;                 // θ_1 in steps of τ (seconds unit), steps, or tokens
  double ratio = 2;                  // θ_j = θ_1 · ratio^(j−1)
  std::vector<double> thresholds;    // explicit θ_1..θ_{K−1} (same unit as theta1); overrides theta1/ratio/queues
  ServiceUnit service_unit = ServiceUnit::Seconds;
  int window = 5;                    // W: stability window (steps)
  double eps = 0.05;                 // stability: max drift of the cumulative Â over the window
  int t_min = 5;                     // stability: at least this many speculative steps
  bool perceptible_enabled = true;   // false: never perceptible (= MLFQ, all arrivals in queue 0)
  bool perceptible_at_arrival = false;  // test mode: perceptible on arrival with the true A and L̂
  enum class Perceptible { Requeue, IntraQueue, Freeze } perceptible_policy = Perceptible::Requeue;  // P1 | P2 | P3
  enum class KeyKind { Remaining, Total } key = KeyKind::Remaining;  // R̂ (remaining) or T̂ (total, the printed formula)
  double ewma_beta = 0;              // 0: Â frozen at the switch; > 0: EWMA update of Â each step after it
  bool use_acceptance = true;        // false: ablation with Â ≡ 0 (length-only estimate)
  PredictorOptions predictor;
  double rho = 0.25;                 // under-prediction guard (A17)
  double starve_limit_s = kInf;      // aging (A13): waiting longer pins to queue 0 until it runs; inf = off
};

std::unique_ptr<Policy> make_fcfs(const PolicyContext& ctx);
std::unique_ptr<Policy> make_sjf(const SjfOptions& o, const PolicyContext& ctx);
std::unique_ptr<Policy> make_srpt_oracle(const PolicyContext& ctx);
std::unique_ptr<Policy> make_las(const LasOptions& o, const PolicyContext& ctx);
std::unique_ptr<Policy> make_mlfq(const MlfqOptions& o, const PolicyContext& ctx);
std::unique_ptr<Policy> make_laps_sd(const LapsOptions& o, const PolicyContext& ctx);

// Steps of true remaining work of a request with a known acceptance trace:
// the trace replayed from step `done_steps` with `remaining_tokens` left.
// Without a trace, remaining / (n·Â + 1) rounded up, Â from `fallback_rate`.
int64_t remaining_steps(const Request& r, int64_t done_steps, int64_t remaining_tokens, int draft_len,
                        double fallback_rate);

}  // namespace harmonia::sched
