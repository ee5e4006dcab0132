#pragma once
// Cost profile of speculative decoding on one machine: draft time per token
// and verify time per pass by batch size, draft length and context bucket, and
// prefill time by prompt length. `harmonia bench --profile` writes it;
// LAPS-SD's estimates (τ) and the simulator read it. File format: JSON,
// documented in docs/scheduling.md ("Cost profile"):
//
//   {"format": "harmonia.sd_profile", "version": 1,
//    "target": "...", "draft": "...", "device": "...", "note": "...",
//    "batch": [1, 2, 4, ...],            // batch sizes (sequences per step), increasing
//    "draft_len": [0, 1, 2, 4, ...],     // draft tokens per step n, increasing
//    "context": [256, 1024, ...],        // context buckets (tokens), increasing
//    "draft_ms_per_token": [[...]],      // [batch][context] ms for one draft token of the whole batch
//    "verify_ms": [[[...]]],             // [batch][draft_len][context] ms for one target pass over n+1 tokens per sequence
//    "prefill": {"tokens": [...], "ms": [...]},  // prompt tokens -> ms (one sequence), increasing tokens
//    "preempt_ms": 0,                    // cost of resuming a preempted request (cache misses, swap/recompute)
//    "step_overhead_ms": [...],          // optional, [batch]: fixed engine cost of one step of b sequences
//                                        // (scheduler, planning, sampling, callbacks); absent = 0
//    "draft_prefill_ms": [...]}          // optional, [prefill.tokens]: the drafter's catch-up over the prompt,
//                                        // paid in a request's first decode step; absent = 0 (then
//                                        // prefill.ms includes it)
//
// Between grid points: piecewise-linear in each axis. Below the first point:
// the first value. Beyond the last: linear extrapolation of the last segment,
// never below the last value (costs do not fall with more work).
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sched/policy.h"

namespace harmonia::sched {

class CostProfile {
 public:
  // Reads and validates a profile file; throws Error(Io) if unreadable and
  // Error(InvalidInput) naming the file and the field that is wrong.
  static CostProfile load(const std::string& path);
  // `source` names the origin in error messages.
  static CostProfile from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
  void save(const std::string& path) const;

  // The built-in profile: synthetic numbers shaped like an 8B fp16 target with
  // a 1B draft on one H200-class GPU (formulas in profile.cpp and
  // docs/scheduling.md). Not a measurement.
  static CostProfile synthetic_default();
  // Flat costs independent of batch and context (tests; B = 1 analyses).
  static CostProfile constant(double draft_ms_per_token, double verify_ms, double prefill_ms_per_token = 0,
                              double preempt_ms = 0);

  // ms for one draft token of a batch of `batch` sequences whose mean context is ctx_tokens.
  double draft_ms(int batch, double ctx_tokens) const;
  // ms for one verification pass (n = draft_len drafts + 1 per sequence; a
  // fractional draft_len is the mean over a batch whose members drafted different counts).
  double verify_ms(int batch, double draft_len, double ctx_tokens) const;
  // τ: one speculative step = draft_len · draft_ms + verify_ms.
  double step_ms(int batch, double draft_len, double ctx_tokens) const;
  // Prefill of one prompt.
  double prefill_ms(int64_t prompt_tokens) const;
  double preempt_ms() const { return preempt_ms_; }
  // Fixed cost of one engine step running `batch` sequences (any mix of prefill
  // chunks and decodes), on top of the prefill, draft and verify cells: the
  // scheduler, planning, sampling, callbacks and bookkeeping. 0 when the profile has none.
  double step_overhead_ms(int batch) const;
  bool has_step_overhead() const { return !step_overhead_ms_.empty(); }
  // The drafter's catch-up over a prompt of `prompt_tokens`, which the engine
  // pays in the request's first decode step (not in its prefill step). 0 when
  // the profile has none (prefill_ms then includes it).
  double draft_prefill_ms(int64_t prompt_tokens) const;

  // Every time multiplied by k > 0: the same shape on a machine k times slower
  // (replay --compare calibrates a profile to the speed the machine had during a run).
  CostProfile scaled(double k) const;

  // A PolicyContext whose τ is this profile's step time at (batch, n, ctx).
  PolicyContext policy_context(int draft_len, int batch = 1, double ctx_tokens = 512) const;

  std::string target, draft, device, note;

 private:
  std::vector<double> batch_, draft_len_, context_;
  std::vector<std::vector<double>> draft_;                // [batch][context]
  std::vector<std::vector<std::vector<double>>> verify_;  // [batch][draft_len][context]
  std::vector<double> prefill_tokens_, prefill_ms_;
  double preempt_ms_ = 0;
  std::vector<double> step_overhead_ms_;                  // [batch] or empty
  std::vector<double> draft_prefill_ms_;                  // [prefill tokens] or empty
  void validate(const std::string& source) const;
};

// Piecewise-linear interpolation on increasing xs with the edge rules above.
double interp1(const std::vector<double>& xs, const std::vector<double>& ys, double x);

}  // namespace harmonia::sched
