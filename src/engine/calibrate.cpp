#include "engine/calibrate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.h"
#include "kv/full.h"
#include "kv/spectral.h"
#include "model/forward.h"

namespace harmonia {

namespace {

// A full cache that also keeps a copy of every appended K/V row per layer.
class Recorder : public kv::FullCache {
 public:
  explicit Recorder(const kv::Shape& s) : FullCache(s), k_(s.n_layers), v_(s.n_layers) {}
  void append(int layer, int64_t n, const float* k, const float* v) override {
    FullCache::append(layer, n, k, v);
    const int64_t w = static_cast<int64_t>(shape().n_kv_heads) * shape().head_dim;
    k_[layer].insert(k_[layer].end(), k, k + n * w);
    v_[layer].insert(v_[layer].end(), v, v + n * w);
  }
  std::vector<std::vector<float>> k_, v_;  // [layer][token * kv_dim + g]
};

// MSE of the normalised N-frequency reconstruction of x[0..K) (stride) with period T = K.
double reconstruction_mse(const float* x, int64_t K, int64_t stride, int N, kv::spectral::FftBuffer& buf,
                          std::vector<float>& c, std::vector<float>& s, std::vector<float>& r) {
  namespace sp = kv::spectral;
  const int64_t T = K;
  c.resize(N);
  s.resize(N);
  r.resize(static_cast<size_t>(K));
  sp::coefficients_fft(x, K, stride, T, N, c.data(), s.data(), 1, buf);
  sp::reconstruct_fft(c.data(), s.data(), 1, N, T, sp::proper_inverse(T), K, r.data(), buf);
  const sp::MeanDev mu = sp::mean_dev(x, K, stride), mi = sp::mean_dev(r.data(), K);
  const sp::Affine a = sp::affine_match(mu, mi);
  double e = 0;
  for (int64_t l = 0; l < K; ++l) {
    const double y = (r[l] - a.i_bar) * a.scale + a.u_bar;
    const double d = y - x[l * stride];
    e += d * d;
  }
  return e / K;
}

}  // namespace

std::pair<double, double> calibration_ratio(const std::string& schema, double ratio, int layer, int n_layers) {
  if (schema == "uniform") return {ratio, ratio};
  if (schema != "inverted-pyramid")
    fail(ErrorKind::InvalidInput, "calibrate: --schema must be inverted-pyramid or uniform, got '{}'", schema);
  const int first = (n_layers + 7) / 8, last = (n_layers + 3) / 4;
  if (layer < first) return {0.90, 0.95};
  if (layer >= n_layers - last) return {0.50, 0.70};
  return {0.80, 0.80};
}

void validate(const CalibrateOptions& o, int n_layers) {
  if (o.rope != "post" && o.rope != "pre")
    fail(ErrorKind::InvalidInput, "calibrate: --rope must be pre or post, got '{}'", o.rope);
  if (!(o.ratio > 0 && o.ratio < 1)) fail(ErrorKind::InvalidInput, "calibrate: --ratio must be in (0, 1), got {}", o.ratio);
  (void)calibration_ratio(o.schema, o.ratio, 0, n_layers);
  if (o.sink < 0 || o.window < 0)
    fail(ErrorKind::InvalidInput, "calibrate: --sink and --window must be >= 0, got {} and {}", o.sink, o.window);
  if (o.coeffs < 2 || o.coeffs % 2)
    fail(ErrorKind::InvalidInput, "calibrate: --coeffs (M = 2N) must be even and >= 2, got {}", o.coeffs);
  if (o.max_prompts < 1) fail(ErrorKind::InvalidInput, "calibrate: --prompts must be >= 1, got {}", o.max_prompts);
  if (o.ctx < 0) fail(ErrorKind::InvalidInput, "calibrate: --ctx must be positive (or 0 for the model's), got {}", o.ctx);
}

CalibrateResult calibrate_dims(const Model& m, const std::vector<int32_t>& tokens, const CalibrateOptions& o,
                               const std::function<void(int, int)>& progress) {
  const ModelConfig& c = m.config;
  validate(o, c.n_layers);
  const int64_t ctx = o.ctx > 0 ? o.ctx : c.ctx_len;
  const int64_t n_prompts = std::min<int64_t>(o.max_prompts, static_cast<int64_t>(tokens.size()) / ctx);
  if (n_prompts < 1)
    fail(ErrorKind::InvalidInput, "calibrate: the text has {} tokens, fewer than one prompt of --ctx {}",
         tokens.size(), ctx);
  // Segments of each prompt: [sink | middle | window], the window shrunk for short contexts.
  const int64_t sink = std::min<int64_t>(o.sink, ctx / 4);
  const int64_t window = std::min<int64_t>(o.window, ctx / 4);
  const int64_t K = ctx - sink - window;
  const int N = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(o.coeffs / 2, K / 2)));
  const int64_t W = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
  set_threads(o.threads);

  CalibrateResult res;
  res.prompts = static_cast<int>(n_prompts);
  res.middle_tokens = K;
  res.period = K;
  res.frequencies = N;
  res.k_mse.assign(c.n_layers, std::vector<double>(W, 0.0));
  res.v_mse.assign(c.n_layers, std::vector<double>(W, 0.0));
  Rope rope(c.rope);
  Forward fw(m);
  std::vector<float> logits(c.vocab_size);
  for (int64_t p = 0; p < n_prompts; ++p) {
    Recorder rec(kv_shape(c, ctx));
    const int32_t* t = tokens.data() + p * ctx;
    for (int64_t i = 0; i < ctx; i += 256) fw.run(t + i, std::min<int64_t>(256, ctx - i), rec, logits.data());
    for (int l = 0; l < c.n_layers; ++l) {
      std::vector<float>& kl = rec.k_[l];
      if (o.rope == "pre") {  // undo the rotation: R(-pos)
        std::vector<float> cs(c.rope.n_rot / 2), sn(c.rope.n_rot / 2);
        const int hd = c.head_dim, half = c.rope.n_rot / 2;
        for (int64_t pos = 0; pos < ctx; ++pos) {
          rope.cos_sin(pos, ctx, cs.data(), sn.data());
          for (int h = 0; h < c.n_kv_heads; ++h) {
            float* x = kl.data() + pos * W + h * hd;
            for (int i = 0; i < half; ++i) {
              const int a = c.rope.style == RopeConfig::Style::Interleaved ? 2 * i : i;
              const int b = c.rope.style == RopeConfig::Style::Interleaved ? 2 * i + 1 : i + half;
              const float m2 = cs[i] * cs[i] + sn[i] * sn[i];  // mscale^2 (1 without YaRN)
              const float x0 = x[a], x1 = x[b];
              x[a] = (x0 * cs[i] + x1 * sn[i]) / m2;
              x[b] = (-x0 * sn[i] + x1 * cs[i]) / m2;
            }
          }
        }
      }
#pragma omp parallel
      {
        kv::spectral::FftBuffer buf;
        std::vector<float> cc, ss, rr;
#pragma omp for schedule(dynamic, 8)
        for (int64_t g = 0; g < 2 * W; ++g) {
          const bool is_k = g < W;
          const int64_t d = is_k ? g : g - W;
          const float* base = (is_k ? kl.data() : rec.v_[l].data()) + sink * W + d;
          const double e = reconstruction_mse(base, K, W, N, buf, cc, ss, rr);
          (is_k ? res.k_mse : res.v_mse)[l][d] += e / n_prompts;
        }
      }
    }
    if (progress) progress(static_cast<int>(p + 1), static_cast<int>(n_prompts));
  }

  res.dims.n_layers = c.n_layers;
  res.dims.kv_dim = static_cast<int>(W);
  res.dims.source = "harmonia calibrate";
  res.dims.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    const auto [pk, pv] = calibration_ratio(o.schema, o.ratio, l, c.n_layers);
    auto pick = [&](const std::vector<double>& mse, double frac, std::vector<int>& comp, std::vector<int>& rank) {
      std::vector<int> idx(W);
      std::iota(idx.begin(), idx.end(), 0);
      std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return mse[a] < mse[b]; });
      rank = idx;
      const auto count = static_cast<size_t>(std::floor(frac * static_cast<double>(W)));
      comp.assign(idx.begin(), idx.begin() + count);
      std::sort(comp.begin(), comp.end());
    };
    pick(res.k_mse[l], pk, res.dims.layers[l].k_compressed, res.dims.layers[l].k_rank);
    pick(res.v_mse[l], pv, res.dims.layers[l].v_compressed, res.dims.layers[l].v_rank);
    // Ranks are stored in the file's (rotate_half) order by the writer; keep engine order here.
    res.dims.layers[l].k_rank.clear();
    res.dims.layers[l].v_rank.clear();
  }
  return res;
}

}  // namespace harmonia
