#pragma once
// Rotary position embeddings (RoFormer, arXiv 2104.09864) with the scaling
// variants used by LLaMA-family checkpoints.
#include <cstdint>
#include <string>
#include <vector>

namespace harmonia {

struct RopeConfig {
  enum class Style {
    Interleaved,  // rotate adjacent pairs (2i, 2i+1): llama2.c, GGUF llama/mistral (llama.cpp's permuted Q/K)
    Half,         // rotate (i, i + n_rot/2) "rotate_half": HF checkpoints, GGUF qwen2/qwen3 (NEOX)
  };
  enum class Scaling { None, Linear, Llama3, Yarn, DynamicNTK };

  Style style = Style::Interleaved;
  int n_rot = 0;               // rotated dims per head (== head_dim for all supported models)
  double theta = 10000.0;      // rope_theta / base
  Scaling scaling = Scaling::None;
  double factor = 1.0;         // scaling factor (linear, llama3, yarn, dynamic)
  int64_t original_ctx = 0;    // original_max_position_embeddings (llama3, yarn, dynamic)
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  double yarn_beta_fast = 32.0;   // yarn
  double yarn_beta_slow = 1.0;    // yarn
  double yarn_attn_factor = 0.0;  // yarn mscale; 0 = default 0.1*ln(factor)+1
  // Per-pair divisors of inv_freq [n_rot/2], applied after scaling (GGUF
  // `rope_freqs.weight`, how llama.cpp stores Llama 3.1 scaling). Empty = none.
  std::vector<double> freq_factors;
};

const char* rope_scaling_name(RopeConfig::Scaling s);

// Precomputed inverse frequencies for one config.
class Rope {
 public:
  explicit Rope(const RopeConfig& cfg);
  const RopeConfig& config() const { return cfg_; }
  // inv_freq[n_rot/2]: angle per position of pair i, after scaling (for
  // DynamicNTK: the unscaled base; see apply()).
  const std::vector<double>& inv_freq() const { return inv_freq_; }
  // Multiplier of cos/sin (YaRN's attention temperature; 1 otherwise).
  double mscale() const { return mscale_; }

  // Rotate x in place. x: [n_heads, head_dim] floats (one token), position pos.
  // seq_len: current sequence length, used only by DynamicNTK (HF semantics:
  // base' = theta * ((factor*seq_len/original_ctx) - (factor-1))^(n_rot/(n_rot-2))
  // when seq_len > original_ctx).
  // The first n_rot dims of each head are rotated, the rest left as they are:
  // for pair i = (a, b) ((2i, 2i+1) Interleaved, (i, i + n_rot/2) Half) and
  // angle = pos * inv_freq[i] (computed in double, then cast),
  //   x[a]' = x[a]*cos*mscale - x[b]*sin*mscale,  x[b]' = x[b]*cos*mscale + x[a]*sin*mscale.
  // seq_len below pos + 1 (e.g. the default 0) counts as pos + 1. HF takes seq_len as the
  // largest position in the batch + 1, so pass the same seq_len to every token
  // of a prefill chunk. Throws Error(InvalidInput) when head_dim < n_rot or
  // pos < 0.
  void apply(float* x, int n_heads, int head_dim, int64_t pos, int64_t seq_len = 0) const;

  // inv_freq[n_rot/2] in effect at sequence length seq_len: inv_freq() except
  // for DynamicNTK, whose base grows with seq_len (same seq_len rule as apply()).
  std::vector<double> inv_freq_at(int64_t seq_len) const;
  // Rotation table for one position, as apply() uses it (for fast paths and
  // kernels that take a cos/sin table): cos[n_rot/2], sin[n_rot/2], already
  // multiplied by mscale().
  void cos_sin(int64_t pos, int64_t seq_len, float* cos, float* sin) const;
  // Rotate x [n_heads, head_dim] in place with a table from cos_sin(): exactly
  // apply() for that table's position (apply() is cos_sin() + rotate()). Lets a
  // forward pass build each token's table once per step instead of once per
  // layer and per q/k. Throws Error(InvalidInput) when head_dim < n_rot.
  void rotate(float* x, int n_heads, int head_dim, const float* cos, const float* sin) const;

 private:
  RopeConfig cfg_;
  std::vector<double> inv_freq_;
  double mscale_ = 1.0;
};

}  // namespace harmonia
