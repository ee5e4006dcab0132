#pragma once
// The decoder forward pass, in two versions:
//  - ReferenceForward: llama2.c-style, one token per call, plain fp32 loops and
//    an exact cache of its own. The oracle for everything else.
//  - Forward: the fast path. Batched prefill (matrix-matrix via BLAS), decode
//    with SIMD matrix-vector kernels over quantised blocks, multi-threaded,
//    attention delegated to a kv::Policy.
#include <cstdint>
#include <vector>

#include "kv/policy.h"
#include "model/model.h"

namespace harmonia {

// Shape of the KV cache this model needs for a context of max_tokens.
kv::Shape kv_shape(const ModelConfig& c, int64_t max_tokens);

class ReferenceForward {
 public:
  ReferenceForward(const Model& m, int64_t max_tokens);
  // logits[vocab] for `token` at the next position (0, 1, 2, ... per call).
  void step(int32_t token, float* logits);
  int64_t pos() const { return pos_; }

 private:
  const Model& m_;
  Rope rope_;
  int64_t max_tokens_, pos_ = 0;
  std::vector<std::vector<float>> k_, v_;  // [layer][pos * kv_dim]
};

// One sequence's share of a batched forward step.
struct SeqStep {
  const int32_t* tokens = nullptr;  // [n] token ids at positions kv->n_tokens() ...
  int64_t n = 0;
  kv::Policy* kv = nullptr;         // this sequence's cache (appended and committed)
  float* logits = nullptr;          // [n, vocab] if all_logits else [vocab] (last token)
  bool all_logits = false;
};

class Forward {
 public:
  // threads <= 0: keep the current OpenMP setting.
  Forward(const Model& m, int threads = 0);
  // Runs tokens[n] through the model at positions kv.n_tokens() ... +n-1 and
  // commits them to kv. logits: [n, vocab] when all_logits, else [vocab] for
  // the last token. Throws Error(InvalidInput) for a token id outside the
  // vocabulary or when the context would overflow.
  void run(const int32_t* tokens, int64_t n, kv::Policy& kv, float* logits, bool all_logits = false);
  // Continuous batching: one step over several sequences. Their tokens are
  // concatenated for the matrix products (weights are read once per step for
  // all of them); attention runs per sequence over its own kv::Policy. Each
  // sequence's logits are those run() would give it alone, up to summation order
  // (the matrix kernels may block differently for a different row count).
  void run_batch(const std::vector<SeqStep>& batch);
  // Layer limit for self-speculative drafting (0 = all layers): with k > 0,
  // only the first k layers run before the final norm and output projection.
  void set_layer_limit(int k) { layer_limit_ = k; }
  const Model& model() const { return m_; }

 private:
  const Model& m_;
  Rope rope_;
  // Scratch, sized for the largest n seen: x/xb [n, dim], q/att [n, q_dim],
  // k/v [n, kv_dim], h1/h2 [n, ffn_dim].
  std::vector<float> x_, xb_, q_, k_, v_, att_, h1_, h2_;
  // RoPE tables of the step's rows, built once per step: [n, cos[n_rot/2], sin[n_rot/2]].
  std::vector<float> rope_cs_;
  int layer_limit_ = 0;
};

// Sets OpenMP and OpenBLAS thread counts (n <= 0: leave as is).
void set_threads(int n);

}  // namespace harmonia
