#pragma once
// `snapkv` and `pyramidkv`: prompt compression at the end of prefill.
//
// SnapKV (Li et al., "SnapKV: LLM Knows What You are Looking for Before
// Generation", arXiv 2404.14469, §4 and SnapKVCluster.update_kv): the last
// `window` prompt tokens (the observation window) vote on which earlier prompt
// positions each kv head keeps:
//   1. for each window query j and each query head of the GQA group,
//      p = softmax(q_j · K^T / sqrt(head_dim)) over the keys it sees (causal);
//   2. per kv head, s[t] = sum over window queries and group heads of p[t], for
//      the prefix positions t (those before the window);
//   3. s is pooled along t (max or avg pooling, kernel `kernel`, stride 1,
//      padding kernel/2; avg divides by the kernel, as torch's avg_pool1d);
//   4. the `budget` positions with the largest pooled score are kept, with the
//      whole observation window; everything else in the prompt is dropped.
// A prompt with at most budget + window tokens is left whole. Decode tokens
// are appended uncompressed. Each kv head keeps its own positions.
//
// PyramidKV (Cai et al., "PyramidKV: Dynamic KV Cache Compression based on
// Pyramidal Information Funneling", arXiv 2406.02069, §3.3 and
// PyramidKVCluster): the same selection with per-layer budgets that shrink
// linearly with depth and keep the same total; see pyramid_budgets().
//
// The selection runs when the prompt's last token is committed (plan()), so
// chunked prefill attends exactly and the first generated token equals full's.
// The window's queries are buffered meanwhile (ledger segment "queries", freed
// at the selection). Without plan(), every step of more than one token is a
// whole prompt and is compressed when committed.
//
// Budget mapping: SnapKV's max_capacity_prompt = budget + window; the
// FourierAttention comparison (spec §9.5) used 2052 = 2020 + 32, the default.
// NOTE: their scores go through fp16 after the softmax; ours stay fp32, and
// ties in the top-k keep the earlier position (torch leaves them unspecified).
#include <memory>
#include <vector>

#include "kv/full.h"
#include "kv/policy.h"

namespace harmonia::kv {

struct SnapKVOptions {
  int64_t budget = 2020;  // prefix positions kept per kv head (per layer: the mean, for pyramidkv)
  double ratio = 0.0;     // > 0: keep floor(ratio * prompt) prompt tokens, budget = that - window (>= 0)
  int64_t window = 32;    // observation window (last prompt tokens), always kept
  int64_t kernel = 7;     // pooling kernel (odd)
  bool max_pool = true;   // pool=max (SnapKV's ablation config c4096_w32_k7_maxpool) or avg
  bool pyramid = false;   // pyramidkv: per-layer budgets
  int64_t beta = 20;      // pyramidkv: the top layer keeps budget / beta
};

// PyramidKV per-layer prefix budgets for n_layers layers, mean budget B, window
// W, prompt P tokens (arXiv 2406.02069 §3.3; PyramidKVCluster.update_kv):
//   P < B + W (left whole) or P < 2B (their `q_len < (max_capacity_prompt - window) * 2`): B in every layer;
//   else min = floor(B / beta), max = 2B - min; if max >= P - W then
//   max = P - W, min = 2B - max; layer l's budget is the arithmetic sequence
//   b_l = max - (max - min) * l / (L - 1), rounded so that sum_l b_l = L * B
//   exactly: floors, plus one for the layers with the largest fractional parts
//   (the shallower one first on ties). The result is non-increasing in l.
// NOTE: the reference rounds the step instead, b_l = max - l * floor((max - min) / (L - 1)),
// whose total exceeds L * B by up to (L - 1) * L / 2 tokens; we keep the paper's
// constraint that the total equals the uniform budget's.
std::vector<int64_t> pyramid_budgets(int n_layers, int64_t budget, int64_t window, int64_t prompt, int64_t beta);

class SnapKVCache : public Policy {
 public:
  // Throws Error(InvalidInput) for an invalid shape, window < 1 or an even kernel.
  SnapKVCache(const Shape& s, const SnapKVOptions& o);
  std::string name() const override { return o_.pyramid ? "pyramidkv" : "snapkv"; }
  const Shape& shape() const override { return s_; }
  void plan(int64_t prompt_tokens, int64_t max_new_tokens) override;
  void append(int layer, int64_t n, const float* k, const float* v) override;
  void attend(int layer, int64_t n, const float* q, float* out) override;
  void commit(int64_t n) override;
  int64_t n_tokens() const override { return n_tokens_; }
  // Rows per kv head, averaged over layers (rounded down; pyramidkv's layers differ).
  int64_t n_stored() const override;
  // Supported back to the length at which the prompt was compressed; below it
  // throws Error(Unsupported).
  void truncate(int64_t n) override;
  void clear() override;
  // {"keys", "values"}: fp32 rows held, sum over layers of rows * n_kv_heads *
  // head_dim * 4 each; "queries" while a prompt's observation window is buffered.
  ByteLedger bytes() const override;
  ByteLedger bytes_at(int64_t n_tokens) const override;
  // Exact per layer (pyramidkv's layers keep different counts).
  std::vector<ByteLedger> layer_bytes_at(int64_t n_tokens) const override;

  // Prefix budget of each layer for a prompt of n tokens.
  std::vector<int64_t> layer_budgets(int64_t prompt_tokens) const;
  const RowStore& store() const { return store_; }  // tests: the retained rows
  const SnapKVOptions& options() const { return o_; }

 private:
  Shape s_;
  SnapKVOptions o_;
  RowStore store_;
  PromptClock clock_;
  int64_t planned_prompt_ = 0;
  int64_t n_tokens_ = 0;
  int64_t compressed_at_ = 0;     // logical length after the last selection that dropped tokens
  std::vector<int64_t> pending_;  // [n_layers] tokens appended in this step
  // Observation window queries per layer: slot pos % window holds position pos's
  // queries [n_heads * head_dim] for pos in [q_lo_, q_hi_).
  std::vector<std::vector<float>> qbuf_;
  std::vector<int64_t> q_lo_, q_hi_;
  bool select(int layer, int64_t budget);  // true if tokens were dropped
};

// Options: budget (default 2020) or ratio (0..1], window (default 32), kernel
// (default 7, odd), pool (max|avg, default max); pyramidkv also beta (default 20).
std::unique_ptr<Policy> make_snapkv(const Shape& s, const Options& opts);
std::unique_ptr<Policy> make_pyramidkv(const Shape& s, const Options& opts);

}  // namespace harmonia::kv
