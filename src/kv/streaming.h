#pragma once
// `streaming`: StreamingLLM (Xiao et al., "Efficient Streaming Language Models
// with Attention Sinks", arXiv 2309.17453). The cache keeps the first `sink`
// tokens (attention sinks) and the most recent `window` tokens; every token in
// between is dropped for good.
//
// Timing follows the reference evaluation loop (eval_long_ppl.py with
// StartRecentKVCache): a step attends over everything retained plus its own
// tokens, then the cache is cut back to sink + window at commit. A decode step
// of several tokens (speculative verification) attends as that many one-token
// steps would: its query at position p sees the sinks and positions
// [max(sink, p - window), p], older retained rows masked. The prompt is
// kept exact until it is complete (Policy::plan), so prefill attention and the
// first generated token equal full's; it is cut back when its last token is
// committed.
//
// NOTE: positions. The paper assigns positions by place in the cache (sinks
// 0..S-1, window S..S+W-1, re-rotating keys each step, with pre-RoPE keys
// cached). Harmonia caches keys post-RoPE (kv::Policy), so we keep every
// token's ORIGINAL position: the recent window has exactly the relative
// distances it would have under full attention, and only the sinks differ -
// they sit at their true distance instead of just before the window. This
// matters only once a sequence outgrows the model's trained context (where
// the sinks' true distance leaves the trained range, the paper's motivation
// for re-indexing); within the trained context it keeps the policy a strict
// subset of full attention, so with sink + window >= length it IS full
// attention, bit for bit. Re-indexing would need the model's RoPE inside the
// cache and a rotation of every cached key per step.
#include <memory>
#include <vector>

#include "kv/full.h"
#include "kv/policy.h"

namespace harmonia::kv {

struct StreamingOptions {
  int64_t sink = 4;       // attention-sink tokens kept from the start
  int64_t window = 1024;  // most recent tokens kept (FourierAttention spec §9.5: 4 + 1024)
};

class StreamingCache : public Policy {
 public:
  // Throws Error(InvalidInput) for an invalid shape or sink + window < 1.
  StreamingCache(const Shape& s, const StreamingOptions& o);
  std::string name() const override { return "streaming"; }
  const Shape& shape() const override { return s_; }
  void plan(int64_t prompt_tokens, int64_t max_new_tokens) override;
  void append(int layer, int64_t n, const float* k, const float* v) override;
  void attend(int layer, int64_t n, const float* q, float* out) override;
  void commit(int64_t n) override;
  // Keeps `tokens` rows beyond the window (masked out of attention) so that a
  // rollback of that many tokens finds the window it had. Always true.
  bool reserve_rollback(int64_t tokens) override;
  int64_t n_tokens() const override { return n_tokens_; }
  int64_t n_stored() const override { return store_.rows(0); }
  // Supported back to any length n whose window [max(sink, n - window), n) is
  // still retained (with reserve_rollback(r): n >= the length at the last
  // eviction - r); below it throws Error(Unsupported) (the dropped tokens are gone).
  void truncate(int64_t n) override;
  void clear() override;
  // {"sinks", "local"}: K+V fp32 of the sink tokens and of the rest retained,
  // n_layers * n_kv_heads * tokens * head_dim * 4 * 2 each.
  ByteLedger bytes() const override;
  ByteLedger bytes_at(int64_t n_tokens) const override;

  const RowStore& store() const { return store_; }  // tests: the retained rows
  const StreamingOptions& options() const { return o_; }

 private:
  Shape s_;
  StreamingOptions o_;
  RowStore store_;
  PromptClock clock_;
  int64_t n_tokens_ = 0;
  int64_t evicted_at_ = 0;        // logical length after the last eviction (0: none)
  int64_t oldest_ = 0;            // position of the oldest retained non-sink token (valid once evicted)
  int64_t margin_ = 0;            // reserve_rollback: rows kept beyond the window
  std::vector<int64_t> pending_;  // [n_layers] tokens appended in this step
  ByteLedger ledger(int64_t stored) const;
};

// Options: sink (default 4, >= 0), window (default 1024, >= 0), sink + window >= 1.
std::unique_ptr<Policy> make_streaming(const Shape& s, const Options& opts);

}  // namespace harmonia::kv
