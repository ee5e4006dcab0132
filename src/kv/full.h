#pragma once
// `full`: the exact KV cache. Storage per layer and KV head is contiguous over
// tokens ([n_kv_heads][max_tokens][head_dim]) so a decode step streams each
// head's keys once and shares them across the GQA group.
#include <vector>

#include "kv/policy.h"

namespace harmonia::kv {

class FullCache : public Policy {
 public:
  explicit FullCache(const Shape& s);
  std::string name() const override { return "full"; }
  void append(int layer, int64_t n, const float* k, const float* v) override;
  void attend(int layer, int64_t n, const float* q, float* out) override;
  void commit(int64_t n) override;
  int64_t n_tokens() const override { return n_tokens_; }
  int64_t n_stored() const override { return n_tokens_; }
  void truncate(int64_t n) override;
  void clear() override;
  ByteLedger bytes() const override;
  ByteLedger bytes_at(int64_t n_tokens) const override;

 private:
  Shape s_;
  int64_t n_tokens_ = 0;
  std::vector<int64_t> layer_len_;           // [n_layers] tokens appended this step included
  std::vector<std::vector<float>> k_, v_;    // [n_layers][n_kv_heads * cap * head_dim]
  int64_t cap_ = 0;                          // allocated tokens per head (grows to max_tokens)
  void reserve(int64_t tokens);
};

// Plain attention over contiguous per-head K/V (shared by policies that keep
// exact segments). q: [n_q, n_heads, head_dim]; K/V of kv head h at
// k + h*head_stride, token t at + t*head_dim; query i sees keys [0, n_keys - n_q + i].
void causal_attention(const Shape& s, int64_t n_q, const float* q, const float* k, const float* v,
                      int64_t n_keys, int64_t head_stride, float* out);

}  // namespace harmonia::kv
