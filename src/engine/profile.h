#pragma once
// Measures the cost profile of speculative decoding on this machine
// (`harmonia bench --profile`): draft time per token and target verify time
// per pass by batch size, draft length and context bucket, and prefill time by
// prompt length, on the real Forward and drafters the serving engine uses. The
// result is a sched::CostProfile (format: sched/profile.h, docs/scheduling.md)
// that LAPS-SD's estimates (τ) and the simulator read.
//
// What each cell times, mirroring one engine step (engine.cpp):
//  - verify_ms[b][n][ctx]: one Forward::run_batch over b sequences of n + 1
//    tokens each at context ctx (all logits when n > 0, as a verify pass), plus
//    the greedy verification / argmax of each sequence; the rejected rows are
//    then rolled back (kv truncate, not timed).
//  - draft_ms_per_token[b][ctx]: b drafters (one per sequence, run one after
//    the other as the engine does) each proposing n_ref tokens after one new
//    context token (the steady-state catch-up), divided by n_ref. 0 without a drafter.
//  - prefill.ms[P]: a fresh KV cache and the target's prefill of P tokens in
//    chunks of prefill_chunk, plus the drafter's catch-up over the same P
//    tokens (the engine pays it in the request's first speculative step; both
//    are paid once per request, so the profile charges them together).
//  - step_overhead_ms and preempt_ms (engine_overhead): the rest of a real
//    Engine step, and the cost of switching requests (see ProfileOptions).
// Every cell is the median of `reps` timed runs after one warm-up run.
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "sched/profile.h"
#include "spec/drafter.h"

namespace harmonia::engine {

struct ProfileOptions {
  std::vector<int> batch = {1, 2, 4, 8};         // sequences per step
  std::vector<int> draft_len = {0, 1, 2, 4, 8};  // n
  std::vector<int64_t> context;                  // context buckets (tokens); empty = auto from ctx
  std::vector<int64_t> prefill_tokens;           // prompt lengths; empty = auto from ctx
  spec::SpecOptions spec;                        // drafter and its options (spec.n is not used)
  int64_t ctx = 0;                               // context size per sequence (0 = the model's)
  int64_t prefill_chunk = 256;                   // as EngineOptions::prefill_chunk
  int reps = 7;                                  // timed runs per cell (median)
  int draft_ref = 4;                             // n_ref: tokens per timed proposal
  std::vector<int32_t> text;                     // tokens to fill contexts with (empty: random ids)
  uint64_t seed = 1;                             // random ids when `text` is empty
  // Also run real Engine steps and measure what the tables above leave out:
  //  - step_overhead_ms[b]: the median of (engine step time − the tables'
  //    prediction) over decode steps of b requests: scheduler, planning,
  //    sampling, callbacks and bookkeeping, per step;
  //  - preempt_ms: the switch cost — two requests at B = 1 served round-robin
  //    (every step resumes the other one) against the same two served one
  //    after the other, median step time difference (cold caches: the other
  //    request's KV, the drafter's state).
  bool engine_overhead = true;
};

// Context buckets used when ProfileOptions::context is empty: 64, 256, 1024,
// ... below ctx − max(n) − 2, then that limit itself.
std::vector<int64_t> default_contexts(int64_t ctx, int max_draft_len);
// Prompt lengths used when ProfileOptions::prefill_tokens is empty: 1, 8, 16,
// 32, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096 below ctx.
std::vector<int64_t> default_prefill_tokens(int64_t ctx);

// Runs the measurements. draft: the draft model when o.spec.drafter is "draft"
// (vocabulary checked). Throws Error(InvalidInput) for axes that do not fit
// the context or are not increasing.
sched::CostProfile measure_profile(const Model& target, const Model* draft, const ProfileOptions& o);

// "CPU <model name>, N threads" for the profile's device field.
std::string cpu_device_name();

}  // namespace harmonia::engine
