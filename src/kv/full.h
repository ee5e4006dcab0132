#pragma once
// `full`: the exact KV cache. Storage per layer and KV head is contiguous over
// tokens ([n_kv_heads][max_tokens][head_dim]) so a decode step streams each
// head's keys once and shares them across the GQA group.
//
// K and V may each be stored in a smaller element type (llama.cpp's -ctk/-ctv):
// f16, bf16, or the GGUF block formats q8_0 / q4_0 (32 elements per block, so
// head_dim must be a multiple of 32). Attention dequantises each stored row once
// per block of queries and computes in fp32; with f32 K and V (the default) the
// cache is the plain fp32 path, bit for bit.
//
// Also here: what the policies that keep a subset of exact tokens share
// (streaming, snapkv, pyramidkv, h2o): RowStore, causal attention with a
// hole and attention-mass accumulation, and PromptClock.
#include <cstdint>
#include <memory>
#include <vector>

#include "common/huge_pages.h"
#include "kv/policy.h"
#include "tensor/dtype.h"

namespace harmonia::kv {

// Options of `full` (key=value): k_type, v_type in {f32, f16, bf16, q8_0, q4_0}, default f32.
struct FullOptions {
  DType k_type = DType::F32;
  DType v_type = DType::F32;
};

class FullCache : public Policy {
 public:
  // Throws Error(InvalidInput) for an invalid shape, an element type without
  // KV support, or a block type (q8_0/q4_0) with head_dim not a multiple of 32.
  explicit FullCache(const Shape& s, const FullOptions& o = {});
  std::string name() const override { return "full"; }
  const Shape& shape() const override { return s_; }
  void append(int layer, int64_t n, const float* k, const float* v) override;
  void attend(int layer, int64_t n, const float* q, float* out) override;
  void commit(int64_t n) override;
  int64_t n_tokens() const override { return n_tokens_; }
  int64_t n_stored() const override { return n_tokens_; }
  void truncate(int64_t n) override;
  void clear() override;
  // {"keys", "values"}: n_layers * n_kv_heads * n_tokens * row_bytes(type, head_dim)
  // each (block scales included in the rows of q8_0/q4_0).
  ByteLedger bytes() const override;
  ByteLedger bytes_at(int64_t n_tokens) const override;
  const FullOptions& options() const { return o_; }
  // Room for `tokens` tokens per layer (at most Shape::max_tokens) now, so that
  // appends up to that length never re-lay the cache. Without it the cache grows
  // geometrically as tokens arrive, and the step that crosses a capacity copies
  // every layer's K and V (bench: the first decode step after a 4096-token fill
  // copied 288 MiB, ~1.5 ms per token of a 64-token llama-110m test).
  void reserve(int64_t tokens);

 private:
  Shape s_;
  FullOptions o_;
  bool typed_ = false;                       // k_type or v_type is not f32
  size_t k_row_bytes_ = 0, v_row_bytes_ = 0; // bytes of one token's head_dim elements
  int64_t n_tokens_ = 0;
  std::vector<int64_t> layer_len_;           // [n_layers] tokens appended this step included
  std::vector<HugeVector<float>> k_, v_;      // f32/f32: [n_layers][n_kv_heads * cap * head_dim]
  std::vector<HugeVector<uint8_t>> kb_, vb_;  // typed: [n_layers][n_kv_heads * cap * row_bytes]
  int64_t cap_ = 0;                          // allocated tokens per head (grows to max_tokens)
};

// Parses `full`'s options (k_type, v_type); throws Error(InvalidInput) naming the
// option, the accepted types, or head_dim when a block type does not fit it.
std::unique_ptr<Policy> make_full(const Shape& s, const Options& opts);

// Plain attention over contiguous per-head K/V (shared by policies that keep
// exact segments). q: [n_q, n_heads, head_dim]; K/V of kv head h at
// k + h*head_stride, token t at + t*head_dim; query i sees keys [0, n_keys - n_q + i].
void causal_attention(const Shape& s, int64_t n_q, const float* q, const float* k, const float* v,
                      int64_t n_keys, int64_t head_stride, float* out);

// causal_attention over rows with one hole: logical key t of a head is
// physical row t for t < split and row t + skip beyond (skip = 0: no hole).
// score_sum: null, or [n_kv_heads][n_keys] to which each key's softmax
// probabilities are added, summed over the GQA group's query heads and the
// n_q queries (H2O's accumulated attention). With score_sum the work is split
// by kv head only, queries in order, so the sums do not depend on the thread
// count. Same arithmetic per query as causal_attention.
void causal_attention_ex(const Shape& s, int64_t n_q, const float* q, const float* k, const float* v,
                         int64_t n_keys, int64_t head_stride, int64_t split, int64_t skip, float* out,
                         float* score_sum);

// Validates a policy's shape (positive sizes, n_heads a multiple of n_kv_heads);
// throws Error(InvalidInput) naming the policy.
void check_shape(const std::string& policy, const Shape& s);

// Exact fp32 K/V rows of every layer for the policies that keep a subset of
// tokens. Per layer and kv head, rows are contiguous over the retained tokens
// in logical order ([n_kv_heads][cap][head_dim]); every head of a layer holds
// the same number of rows, at possibly different positions (SnapKV and H2O
// select per head). Because rows stay in logical order and a step's new tokens
// are the last rows, causal masking is by row index.
// One hole may follow the first `split` rows: StreamingLLM's rolling window
// drops rows behind the sinks lazily and squeezes the hole out only when it
// outgrows the data (amortised O(1) rows moved per evicted token).
// Bytes held are the rows (allocator slack, as in FullCache, is not counted).
class RowStore {
 public:
  explicit RowStore(const Shape& s);
  int64_t rows(int layer) const { return layers_[layer].rows; }
  // k, v: [n, n_kv_heads, head_dim]; appended as the last rows of every head.
  void append(int layer, int64_t n, const float* k, const float* v);
  // Removes rows [split, split + count) of every head (lazily: a hole).
  void drop_after(int layer, int64_t split, int64_t count);
  // Keeps rows keep[h] (ascending row indices, the same count for every head).
  void keep(int layer, const std::vector<std::vector<int64_t>>& keep);
  // Keeps the first `rows` rows of every head.
  void truncate(int layer, int64_t rows);
  void clear();
  // Causal attention of the step's n_q queries (the last n_q rows are their
  // tokens); score_sum as in causal_attention_ex ([n_kv_heads][rows]).
  void attend(int layer, int64_t n_q, const float* q, float* out, float* score_sum = nullptr) const;
  // The same with a sliding window per query: query i (row rows - n_q + i) sees
  // rows [0, head) and rows [first[i], its own row], head <= first[i] (first[i]
  // == head: every row up to its own, also when that row is < head). The
  // store's hole, if any, must start at `head` (StreamingLLM's sinks). Same
  // arithmetic per query as attend over those rows.
  void attend_window(int layer, int64_t n_q, const float* q, float* out, int64_t head, const int64_t* first) const;
  // Row r of kv head h: [head_dim].
  const float* key(int layer, int h, int64_t r) const;
  const float* value(int layer, int h, int64_t r) const;
  // Bytes of K+V rows held in `layer` (rows * n_kv_heads * head_dim * 4 * 2).
  size_t layer_bytes(int layer) const;

 private:
  struct Layer {
    HugeVector<float> k, v;  // [n_kv_heads * cap * head_dim]
    int64_t cap = 0, rows = 0, split = 0, skip = 0;
  };
  Shape s_;
  std::vector<Layer> layers_;
  int64_t phys(const Layer& L, int64_t r) const { return r < L.split ? r : r + L.skip; }
  void squeeze(Layer& L);                      // close the hole
  void realloc(Layer& L, int64_t cap);         // re-lay the (hole-free) rows at capacity cap
};

// When a request's prompt is complete. Policy::plan gives its length; the
// compressing policies keep the prompt exact until its last token is committed
// so chunked prefill attends exactly and the first generated token equals
// full's. Without plan(), every step of more than one token is a complete
// prompt and single-token steps are decode steps (the interface's rule).
class PromptClock {
 public:
  void plan(int64_t n_tokens_now, int64_t prompt_tokens) {
    planned_ = true;
    end_ = n_tokens_now + prompt_tokens;
  }
  void reset() { planned_ = false, end_ = 0; }
  // Whether the step of n tokens at logical positions [pos0, pos0 + n) is (part of) a prompt.
  bool in_prompt(int64_t pos0, int64_t n) const { return planned_ ? pos0 < end_ : n > 1; }
  // Whether committing that step completes a prompt.
  bool completes(int64_t pos0, int64_t n) const { return planned_ ? pos0 < end_ && pos0 + n >= end_ : n > 1; }
  // Whether, at logical length n_tokens, no prompt is pending (compression may run).
  bool done(int64_t n_tokens) const { return !planned_ || n_tokens >= end_; }
  bool planned() const { return planned_; }
  int64_t end() const { return end_; }

 private:
  bool planned_ = false;
  int64_t end_ = 0;
};

}  // namespace harmonia::kv
