#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "common/error.h"

namespace harmonia {

const char* rope_scaling_name(RopeConfig::Scaling s) {
  // transformers' rope_type names, except "none" (its "default"; GGUF's "none").
  switch (s) {
    case RopeConfig::Scaling::None: return "none";
    case RopeConfig::Scaling::Linear: return "linear";
    case RopeConfig::Scaling::Llama3: return "llama3";
    case RopeConfig::Scaling::Yarn: return "yarn";
    case RopeConfig::Scaling::DynamicNTK: return "dynamic";
  }
  return "unknown";
}

namespace {

constexpr double kTwoPi = 2.0 * std::numbers::pi;

// RoFormer eq. 15: inv_freq[i] = base^(-2i/n_rot), i in [0, n_rot/2).
std::vector<double> default_inv_freq(int n_rot, double base) {
  std::vector<double> f(size_t(n_rot / 2));
  for (int i = 0; i < n_rot / 2; ++i) f[size_t(i)] = 1.0 / std::pow(base, double(2 * i) / n_rot);
  return f;
}

// transformers _compute_llama3_parameters: long wavelengths are interpolated
// (inv_freq / factor), short ones kept, the band between blended linearly in
// original_ctx / wavelen.
void llama3_scale(const RopeConfig& c, std::vector<double>& f) {
  const double ctx = double(c.original_ctx);
  const double low_freq_wavelen = ctx / c.low_freq_factor;
  const double high_freq_wavelen = ctx / c.high_freq_factor;
  for (double& inv : f) {
    const double wavelen = kTwoPi / inv;
    if (wavelen < high_freq_wavelen) continue;
    if (wavelen > low_freq_wavelen) {
      inv /= c.factor;
    } else {
      const double smooth =
          (ctx / wavelen - c.low_freq_factor) / (c.high_freq_factor - c.low_freq_factor);
      inv = (1.0 - smooth) * inv / c.factor + smooth * inv;
    }
  }
}

// transformers _compute_yarn_parameters (YaRN, arXiv 2309.00071 §3.2-3.4):
// dims that turn fewer than beta_slow times over original_ctx are interpolated,
// those turning more than beta_fast times extrapolated, a linear ramp between.
// Returns the attention factor (cos/sin multiplier).
double yarn_scale(const RopeConfig& c, std::vector<double>& f) {
  const int dim = c.n_rot;
  const double base = c.theta;
  const double ctx = double(c.original_ctx);
  // Dimension index whose wavelength turns num_rotations times over ctx.
  auto correction_dim = [&](double num_rotations) {
    return dim * std::log(ctx / (num_rotations * kTwoPi)) / (2.0 * std::log(base));
  };
  // NOTE: transformers' default truncate=true (floor/ceil); gpt-oss's
  // truncate=false is not supported.
  const double low = std::max(std::floor(correction_dim(c.yarn_beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(c.yarn_beta_slow)), double(dim - 1));
  if (low == high) high += 0.001;  // as transformers: avoid dividing by 0
  for (size_t i = 0; i < f.size(); ++i) {
    const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation = f[i];
    const double interpolation = f[i] / c.factor;
    // ramp 0 -> extrapolate (high frequency), 1 -> interpolate (low frequency).
    f[i] = interpolation * ramp + extrapolation * (1.0 - ramp);
  }
  if (c.yarn_attn_factor > 0.0) return c.yarn_attn_factor;
  return c.factor <= 1.0 ? 1.0 : 0.1 * std::log(c.factor) + 1.0;
}

}  // namespace

Rope::Rope(const RopeConfig& cfg) : cfg_(cfg) {
  using S = RopeConfig::Scaling;
  const char* name = rope_scaling_name(cfg.scaling);
  if (cfg.n_rot <= 0 || cfg.n_rot % 2 != 0)
    fail(ErrorKind::InvalidInput, "rope n_rot must be a positive even number, got {}", cfg.n_rot);
  if (!(cfg.theta > 0.0) || !std::isfinite(cfg.theta))
    fail(ErrorKind::InvalidInput, "rope theta must be positive, got {}", cfg.theta);
  if (cfg.scaling != S::None && (!(cfg.factor > 0.0) || !std::isfinite(cfg.factor)))
    fail(ErrorKind::InvalidInput, "rope scaling '{}' factor must be positive, got {}", name,
         cfg.factor);
  if ((cfg.scaling == S::Llama3 || cfg.scaling == S::Yarn || cfg.scaling == S::DynamicNTK) &&
      cfg.original_ctx <= 0)
    fail(ErrorKind::InvalidInput, "rope scaling '{}' needs original_ctx > 0, got {}", name,
         cfg.original_ctx);
  if (cfg.scaling == S::Llama3 &&
      !(cfg.low_freq_factor > 0.0 && cfg.high_freq_factor > cfg.low_freq_factor))
    fail(ErrorKind::InvalidInput,
         "rope scaling 'llama3' needs 0 < low_freq_factor < high_freq_factor, got {} and {}",
         cfg.low_freq_factor, cfg.high_freq_factor);
  if (cfg.scaling == S::Yarn &&
      !(cfg.yarn_beta_fast > 0.0 && cfg.yarn_beta_slow > 0.0 && cfg.yarn_attn_factor >= 0.0))
    fail(ErrorKind::InvalidInput,
         "rope scaling 'yarn' needs beta_fast > 0, beta_slow > 0, attn_factor >= 0, got {}, {}, {}",
         cfg.yarn_beta_fast, cfg.yarn_beta_slow, cfg.yarn_attn_factor);
  if (cfg.scaling == S::DynamicNTK && cfg.n_rot < 4)
    fail(ErrorKind::InvalidInput, "rope scaling 'dynamic' needs n_rot >= 4, got {}", cfg.n_rot);
  if (!cfg.freq_factors.empty() && cfg.freq_factors.size() != size_t(cfg.n_rot / 2))
    fail(ErrorKind::InvalidInput, "rope freq_factors has {} values, expected n_rot/2 = {}",
         cfg.freq_factors.size(), cfg.n_rot / 2);
  for (size_t i = 0; i < cfg.freq_factors.size(); ++i)
    if (!(cfg.freq_factors[i] > 0.0) || !std::isfinite(cfg.freq_factors[i]))
      fail(ErrorKind::InvalidInput, "rope freq_factors[{}] must be positive, got {}", i,
           cfg.freq_factors[i]);

  inv_freq_ = default_inv_freq(cfg.n_rot, cfg.theta);
  switch (cfg.scaling) {
    case S::None:
    case S::DynamicNTK: break;  // scaled per sequence length in inv_freq_at()
    case S::Linear:
      // transformers _compute_linear_scaling_rope_parameters: positions / factor.
      for (double& f : inv_freq_) f /= cfg.factor;
      break;
    case S::Llama3: llama3_scale(cfg, inv_freq_); break;
    case S::Yarn: mscale_ = yarn_scale(cfg, inv_freq_); break;
  }
  for (size_t i = 0; i < cfg.freq_factors.size(); ++i) inv_freq_[i] /= cfg.freq_factors[i];
}

std::vector<double> Rope::inv_freq_at(int64_t seq_len) const {
  if (cfg_.scaling != RopeConfig::Scaling::DynamicNTK || seq_len <= cfg_.original_ctx)
    return inv_freq_;
  // transformers _compute_dynamic_ntk_parameters (seq_len > original_ctx).
  const double n = cfg_.n_rot;
  const double base =
      cfg_.theta * std::pow(cfg_.factor * double(seq_len) / double(cfg_.original_ctx) -
                                (cfg_.factor - 1.0),
                            n / (n - 2.0));
  std::vector<double> f = default_inv_freq(cfg_.n_rot, base);
  for (size_t i = 0; i < cfg_.freq_factors.size(); ++i) f[i] /= cfg_.freq_factors[i];
  return f;
}

void Rope::cos_sin(int64_t pos, int64_t seq_len, float* cos, float* sin) const {
  if (pos < 0) fail(ErrorKind::InvalidInput, "rope position must be >= 0, got {}", pos);
  const bool dynamic = cfg_.scaling == RopeConfig::Scaling::DynamicNTK;
  std::vector<double> dyn;
  if (dynamic) dyn = inv_freq_at(std::max(seq_len, pos + 1));
  const std::vector<double>& f = dynamic ? dyn : inv_freq_;
  for (size_t i = 0; i < f.size(); ++i) {
    // In double: at pos 131072 a float angle would be off by up to ~0.008 rad.
    const double angle = double(pos) * f[i];
    cos[i] = float(std::cos(angle) * mscale_);
    sin[i] = float(std::sin(angle) * mscale_);
  }
}

void Rope::apply(float* x, int n_heads, int head_dim, int64_t pos, int64_t seq_len) const {
  const int half = cfg_.n_rot / 2;
  thread_local std::vector<float> table;  // [cos[half], sin[half]]
  table.resize(size_t(2 * half));
  cos_sin(pos, seq_len, table.data(), table.data() + half);
  rotate(x, n_heads, head_dim, table.data(), table.data() + half);
}

void Rope::rotate(float* x, int n_heads, int head_dim, const float* cs, const float* sn) const {
  if (head_dim < cfg_.n_rot)
    fail(ErrorKind::InvalidInput, "rope: head_dim {} is smaller than n_rot {}", head_dim,
         cfg_.n_rot);
  const int half = cfg_.n_rot / 2;
  // Interleaved pairs (2i, 2i+1); Half pairs (i, i + n_rot/2).
  const int stride = cfg_.style == RopeConfig::Style::Interleaved ? 2 : 1;
  const int offset = cfg_.style == RopeConfig::Style::Interleaved ? 1 : half;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + size_t(h) * size_t(head_dim);
    for (int i = 0; i < half; ++i) {
      float* a = v + i * stride;
      float* b = a + offset;
      const float x0 = *a, x1 = *b;
      *a = x0 * cs[i] - x1 * sn[i];
      *b = x1 * cs[i] + x0 * sn[i];
    }
  }
}

}  // namespace harmonia
