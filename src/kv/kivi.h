#pragma once
// `kivi`: KIVI (Liu et al., "KIVI: A Tuning-Free Asymmetric 2bit Quantization
// for KV Cache", arXiv 2402.02750, Algorithm 1 and the authors' LlamaAttention_KIVI).
//
// Asymmetric `bits`-bit quantisation (x ~ q * scale + zero_point, q in
// [0, 2^bits - 1], zero_point = group minimum, scale = (max - min) / (2^bits - 1)):
//  - keys per channel: each channel's values over `group` consecutive tokens
//    share one (scale, zero_point);
//  - values per token: each token's channels in groups of `v_group` share one;
//  - the most recent tokens stay in full precision (fp32, Harmonia's exact type):
//      keys:   a residual of up to residual - 1 tokens; when it reaches `residual`
//              (a multiple of `group`) it is quantised, residual/group groups at once;
//      values: exactly the last `residual` tokens; older ones are quantised one per step.
//    This is the reference's schedule: after a prompt of P tokens the first
//    floor(P / residual) * residual keys and the first P - residual values are quantised.
// Quantisation happens at commit, after the step's attention (as in the
// reference), and not before the prompt is complete (plan()): prefill
// attention is exact and the first generated token equals full's.
// Attention reads the quantised keys without dequantising them:
// q . k = sum_c (q_c scale_c) code_c + sum_c q_c zero_c per channel group.
//
// Scales and zero-points are stored as fp16 (scale_type=f16, default: what
// the reference keeps, in the model's fp16) or fp32. With fp16 they are
// rounded outwards (zero_point down, scale up) so the group's range stays
// covered: every reconstructed value is within scale / 2 of the input, with
// scale <= fl16_up((max - fl16_down(min)) / (2^bits - 1)) ~ (max - min) / (2^bits - 1).
// Ledger segments: keys_quantized, values_quantized (packed codes, bits/8 bytes
// per element), scales, zero_points (K and V), keys_residual, values_residual.
#include <memory>
#include <vector>

#include "kv/full.h"
#include "kv/policy.h"

namespace harmonia::kv {

struct KIVIOptions {
  int bits = 2;            // 2 or 4 (KIVI-2 is the paper's headline; FourierAttention compared 4)
  int64_t group = 32;      // keys: tokens per quantisation group (per channel)
  int64_t v_group = 0;     // values: channels per group; 0: min(group, head_dim)
  int64_t residual = 128;  // full-precision recent tokens (a multiple of group)
  bool f16_params = true;  // scale_type f16 (default) or f32
};

class KIVICache : public Policy {
 public:
  // Throws Error(InvalidInput) naming the option for bits not 2/4, residual not a
  // positive multiple of group, v_group not dividing head_dim, or packing that
  // does not fill bytes (group * bits and head_dim * bits must be multiples of 8).
  KIVICache(const Shape& s, const KIVIOptions& o);
  std::string name() const override { return "kivi"; }
  const Shape& shape() const override { return s_; }
  void plan(int64_t prompt_tokens, int64_t max_new_tokens) override;
  void append(int layer, int64_t n, const float* k, const float* v) override;
  void attend(int layer, int64_t n, const float* q, float* out) override;
  void commit(int64_t n) override;
  int64_t n_tokens() const override { return n_tokens_; }
  // Tokens whose key and value are both full precision.
  int64_t n_stored() const override;
  // Supported while the tokens to drop are all full precision; else Error(Unsupported).
  void truncate(int64_t n) override;
  // False: tokens are quantised group by group as they leave the residual, and a
  // rollback past a quantised group cannot be undone (see truncate).
  bool reserve_rollback(int64_t) override { return false; }
  // False: a commit that fills a group quantises it, which the later queries of a
  // multi-token step would see in full precision.
  bool exact_multi_token_decode() const override { return false; }
  void clear() override;
  ByteLedger bytes() const override;
  ByteLedger bytes_at(int64_t n_tokens) const override;

  const KIVIOptions& options() const { return o_; }
  // Tests: counts of quantised keys / values, and all of kv head h's keys or
  // values as attention sees them (dequantised, then the residual): [n, head_dim].
  int64_t quantized_keys(int layer) const { return layers_[layer].nq_k; }
  int64_t quantized_values(int layer) const { return layers_[layer].nq_v; }
  std::vector<float> keys(int layer, int h) const;
  std::vector<float> values(int layer, int h) const;

 private:
  struct Head {
    std::vector<uint8_t> kq, kp;  // key groups: codes [hd][group] packed; params [scales hd][zeros hd]
    std::vector<float> kres;      // [rk][hd]
    std::vector<uint8_t> vq, vp;  // value tokens: codes [hd] packed; params [scales hd/v_group][zeros]
    std::vector<float> vres;      // [rv][hd]
  };
  struct Layer {
    std::vector<Head> heads;
    int64_t nq_k = 0, rk = 0, nq_v = 0, rv = 0;
  };
  Shape s_;
  KIVIOptions o_;
  int64_t v_group_ = 0;
  size_t param_bytes_ = 2;  // fp16 or fp32
  PromptClock clock_;
  int64_t n_tokens_ = 0;
  std::vector<int64_t> pending_;
  std::vector<Layer> layers_;
  void flush(Layer& L);
  ByteLedger ledger(int64_t nq_k, int64_t rk, int64_t nq_v, int64_t rv) const;
};

// Options: bits (2|4, default 2), group (default 32), v_group (default min(group, head_dim)),
// residual (default 128), scale_type (f16|f32, default f16).
std::unique_ptr<Policy> make_kivi(const Shape& s, const Options& opts);

}  // namespace harmonia::kv
