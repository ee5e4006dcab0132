#pragma once
// The speculative-decoding cost profile on the GPU (`harmonia bench --profile --device cuda`):
// the cells of engine/profile.h for one sequence per step (B = 1, the paper's server model;
// cuda::GpuForward runs one sequence), timed on a target and a draft GpuForward:
//  - verify_ms[n][ctx]: one target pass over n + 1 tokens at context ctx with every token's
//    greedy id copied back (GpuForward::run_verify: what a greedy verify needs), then the cache
//    rolled back to ctx (reset, not timed);
//  - draft_ms[ctx]: the draft model proposing draft_ref tokens at context ctx, i.e. draft_ref
//    one-token decode steps each copying its greedy id back, divided by draft_ref;
//  - prefill_ms[P]: the target's prefill of P tokens from an empty cache (one forward call);
//  - draft_prefill_ms[P]: the draft model's catch-up over the same P tokens (the engine pays it
//    in a request's first decode step).
// Every cell is the median of `reps` wall-clock runs (host-synchronous steps, steady_clock)
// after one warm-up run. Context contents are noise (fill_kv_random: time does not depend on
// the values); token ids are deterministic random ids.
#include <cstdint>
#include <vector>

#include "cuda/forward_gpu.h"

namespace harmonia::cuda {

struct GpuProfileOptions {
  std::vector<int> draft_len = {0, 1, 2, 4, 8};                        // n, increasing
  std::vector<int64_t> context = {128, 512, 1024, 2048, 4096, 8192};  // tokens, increasing
  std::vector<int64_t> prefill_tokens = {1, 16, 64, 128, 256, 512, 1024, 2048, 4096};  // increasing
  int reps = 7;        // timed runs per cell (median)
  int draft_ref = 4;   // tokens per timed proposal
  uint64_t seed = 1;   // token ids and KV noise
};

struct GpuProfile {
  std::vector<double> draft_ms_per_token;          // [context]; empty without a draft model
  std::vector<std::vector<double>> verify_ms;      // [draft_len][context]
  std::vector<double> prefill_ms;                  // [prefill_tokens]
  std::vector<double> draft_prefill_ms;            // [prefill_tokens]; empty without a draft model
};

// Needs target (and draft, when given) with capacity() >= the largest context + max(n, draft_ref) + 1
// and >= the largest prefill length. Throws Error(InvalidInput) for axes that are empty, not
// increasing, < 1 (draft_len: < 0) or beyond the capacity, reps < 1 or draft_ref outside [1, 16];
// the forward's errors otherwise. Leaves both caches empty (reset(0)).
GpuProfile measure_profile_gpu(GpuForward& target, GpuForward* draft, const GpuProfileOptions& o);

}  // namespace harmonia::cuda
