#pragma once
// The KV cache of one sequence, behind one interface for every compression
// policy (full, fourier, streaming, snapkv, pyramidkv, h2o, kivi).
//
// The forward pass calls, for each layer of each step: append() with the step's
// new keys/values, then attend() for the step's queries. After all layers it
// calls commit(). Keys arrive post-RoPE. A policy owns its attention because
// compressed policies attend over a representation that is not plain K/V
// (FourierAttention's spectral coefficients).
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace harmonia::kv {

// RoPE pair layout of the keys the cache receives (model::RopeConfig::Style).
enum class RopeLayout {
  Half,         // pairs (i, i + head_dim/2): HF checkpoints, GGUF qwen2/qwen3; the dims files' order
  Interleaved,  // pairs (2i, 2i + 1): GGUF llama/mistral, llama2.c
};

struct Shape {
  int n_layers = 0;
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // GQA: n_heads / n_kv_heads query heads share one K/V head
  int head_dim = 0;
  int64_t max_tokens = 0;  // context size: logical positions [0, max_tokens)
  RopeLayout rope_layout = RopeLayout::Half;  // which K dims form RoPE pairs (FourierAttention dims files)
};

// Bytes held, by segment (names are policy specific: "keys", "values",
// "sinks", "local", "middle_exact", "coefficients", "statistics", "indices").
using ByteLedger = std::map<std::string, size_t>;

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string name() const = 0;
  virtual const Shape& shape() const = 0;

  // Called by the engine before the first append of a request: the prompt
  // length and the most new tokens it may generate. Compressing policies plan
  // with it (FourierAttention's period T = prompt + max_new - sink - window;
  // SnapKV's observation window is the prompt's last tokens) and keep the
  // prompt exact until it is complete, so chunked prefill attends exactly and
  // the first generated token equals the full cache's. Without this call, each
  // commit() of more than one token counts as a complete prompt.
  virtual void plan(int64_t prompt_tokens, int64_t max_new_tokens) {
    (void)prompt_tokens;
    (void)max_new_tokens;
  }

  // Store n new tokens of `layer`. k, v: [n, n_kv_heads, head_dim] fp32, keys
  // post-RoPE, for logical positions n_tokens() .. n_tokens()+n-1.
  // Throws Error(InvalidInput) if that would pass Shape::max_tokens.
  virtual void append(int layer, int64_t n, const float* k, const float* v) = 0;

  // Causal attention for the n tokens just appended to `layer`: query i sees every
  // retained key of positions <= its own. q: [n, n_heads, head_dim] post-RoPE;
  // out: [n, n_heads, head_dim]; softmax(q·k / sqrt(head_dim)) · v per head.
  virtual void attend(int layer, int64_t n, const float* q, float* out) = 0;

  // End of a forward step of n tokens (all layers done): the logical length
  // advances by n; policies may compress or evict here.
  virtual void commit(int64_t n) = 0;

  // Speculative decoding: after each commit() the engine may truncate() back by
  // up to `tokens` tokens (rejected drafts). Called before the first append.
  // A policy that evicts or compresses keeps what such a rollback needs (counted
  // by bytes() and bytes_at()) while attending exactly as without it; returns
  // false where it cannot promise that, and the engine then verifies drafts one
  // token at a time, feeding a draft only once it is accepted, so it never
  // truncates this policy.
  // Default: true, for policies whose truncate() works back to any length after
  // the prompt (full, snapkv, pyramidkv; fourier through its own undo log,
  // option `rollback`).
  virtual bool reserve_rollback(int64_t tokens) {
    (void)tokens;
    return true;
  }

  // Whether a decode step of several tokens (a speculative verification: the
  // last token and the drafts in one pass) attends, appends and commits exactly
  // as the same tokens fed one step at a time would. False for policies that
  // evict, compress or quantise at every commit (h2o, kivi, fourier once it has
  // compressed): the engine then verifies one token at a time (reserve_rollback).
  virtual bool exact_multi_token_decode() const { return true; }
  // Logical length: tokens the sequence has seen (= next RoPE position).
  virtual int64_t n_tokens() const = 0;
  // Tokens whose K/V are retained exactly (<= n_tokens()).
  virtual int64_t n_stored() const = 0;
  // Roll back to the first n tokens (speculative decoding). Policies that
  // cannot (after compression) throw Error(Unsupported).
  virtual void truncate(int64_t n) = 0;
  virtual void clear() = 0;

  // Exact bytes held now, by segment; total_bytes() sums them.
  virtual ByteLedger bytes() const = 0;
  // Bytes this policy would hold after a prompt of n_tokens (as planned with
  // plan(n_tokens, max_new)), without running anything: `harmonia info --kv`
  // and the serving engine's admission control use it. Must equal bytes()
  // after actually prefilling n_tokens.
  virtual ByteLedger bytes_at(int64_t n_tokens) const = 0;
  // The same per layer ([n_layers] ledgers summing to bytes_at). The default
  // splits evenly, which is exact for policies that treat all layers alike;
  // policies with per-layer budgets or dims (pyramidkv, fourier) override it.
  virtual std::vector<ByteLedger> layer_bytes_at(int64_t n_tokens) const;
  size_t total_bytes() const;
};

// Policy options as `key=value` strings (CLI --kv-opt, server `kv` field).
using Options = std::map<std::string, std::string>;

// Creates a policy by name ("full", ...). Throws Error(InvalidInput) naming the
// policy or option that is unknown or out of range.
std::unique_ptr<Policy> make_policy(const std::string& name, const Shape& shape, const Options& opts = {});
std::vector<std::string> policy_names();

// Sum of a ledger's entries.
size_t ledger_total(const ByteLedger& l);

}  // namespace harmonia::kv
