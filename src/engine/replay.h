#pragma once
// Trace replay (`harmonia replay`): runs a workload file (sched/workload.h)
// through the real serving engine in real time — each request is submitted
// when the wall clock reaches its arrival_s — under one scheduling policy, and
// measures what the simulator predicts: latency (completion − arrival), TTFT,
// TPOT, throughput, acceptance, preemptions. Every request generates exactly
// its output_tokens (greedy, EOS ignored). The per-step accepted and drafted
// counts of each request are recorded into a workload the simulator reads
// (header first_step "prefill": the engine's first step of a request prefills
// and emits one token without drafting).
#include <cstdint>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "sched/simulator.h"
#include "sched/workload.h"

namespace harmonia::engine {

struct ReplayOptions {
  EngineOptions engine;        // max_seqs (B), budgets, threads, sched_context; `sched` is set per run
  spec::SpecOptions spec;      // drafter and n of every request ("none": plain decoding)
  kv::PolicySpec kv{"full", {}};
  // Pass the workload's acceptance traces to the scheduler as ground truth
  // (srpt-oracle needs them). They are used only when their draft_len is spec.n.
  bool pass_traces = true;
  // Keep the engine's step log (ReplayRun::step_log): what each step ran and its phase times.
  bool record_steps = false;
};

struct ReplayRun {
  std::string policy;                          // the policy spec as given
  std::vector<sched::RequestOutcome> requests;  // in completion order; times in s from the replay's start
  sched::SimMetrics metrics;                   // sched::summarize of `requests`
  sched::Workload recorded;                    // the workload with this run's traces
  int64_t steps = 0;                           // engine steps
  double wall_s = 0;                           // start to last completion
  double max_submit_lag_ms = 0;                // latest submission after its arrival time (at most one step)
  // Time inside Engine::step() calls that ran a step: wall clock, and this
  // thread's CPU time. busy_cpu_s / busy_wall_s well below 1 means other
  // processes took the CPU during the replay (the measurement is then not of
  // this engine alone).
  double busy_wall_s = 0, busy_cpu_s = 0;
  // Time in Engine::submit (request validation, KV reservation, drafter and
  // sampler set-up), on the replay thread between steps, so outside busy_wall_s.
  double submit_wall_s = 0;
  // Involuntary context switches of the replay thread over the run (getrusage
  // RUSAGE_THREAD): other processes took its CPU that many times. A quiet
  // machine gives a handful; hundreds mean the timings are of a shared CPU.
  int64_t involuntary_switches = 0;
  std::vector<StepRecord> step_log;            // every step, if ReplayOptions::record_steps
};

// Runs the whole workload through a fresh Engine with policy `sched_spec`.
// prompts[i] are the token ids of w.requests[i] (see make_prompt). Throws
// Error(InvalidInput) when a request cannot fit the context, or when a request
// ends with another token count than its output_tokens or with an error.
ReplayRun replay(const Model& target, const Model* draft, const sched::Workload& w,
                 const std::vector<std::vector<int32_t>>& prompts, const std::string& sched_spec,
                 const ReplayOptions& o);

// The cost model's view of a recorded engine step, for sched::step_cost_ms:
// a prefill chunk is a member with prefill_tokens = its chunk and no decode; a
// decode member carries its context, drafted count and whether it resumed
// after a pause. (The simulator charges a request's whole prompt in its first
// step; with prompts within one chunk, as in replay, the two agree.)
std::vector<sched::StepMember> step_members(const StepRecord& r);

// The prompt of a workload request: its `prompt` text tokenized when it has
// one; else exactly prompt_tokens tokens — BOS (when the tokenizer has one)
// then a window of `filler` (token ids, repeated as needed) starting at an
// offset derived from the request id, so requests differ.
std::vector<int32_t> make_prompt(const Model& m, const sched::WorkloadRequest& r, const std::vector<int32_t>& filler);

}  // namespace harmonia::engine
