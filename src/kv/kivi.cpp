#include "kv/kivi.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "common/fp16.h"
#include "kv/attn_kernels.h"
#include "kv/options.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace harmonia::kv {

namespace {

// Neighbouring fp16 values (bit patterns), towards -inf / +inf.
uint16_t f16_below(uint16_t h) { return h == 0x0000 ? 0x8001 : (h & 0x8000) ? h + 1 : h - 1; }
uint16_t f16_above(uint16_t h) { return h == 0x8000 ? 0x0001 : (h & 0x8000) ? h - 1 : h + 1; }

// x rounded to fp16 downwards / upwards (as floats).
float f16_down(float x) {
  uint16_t h = f32_to_f16(x);
  if (f16_to_f32(h) > x) h = f16_below(h);
  return f16_to_f32(h);
}
float f16_up(float x) {
  uint16_t h = f32_to_f16(x);
  if (f16_to_f32(h) < x) h = f16_above(h);
  return f16_to_f32(h);
}

void put_param(uint8_t* dst, float x, bool f16) {
  if (f16) {
    const uint16_t h = f32_to_f16(x);  // x is an fp16 value: exact
    std::memcpy(dst, &h, 2);
  } else {
    std::memcpy(dst, &x, 4);
  }
}

float get_param(const uint8_t* src, bool f16) {
  if (f16) {
    uint16_t h;
    std::memcpy(&h, src, 2);
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return f16_to_f32(h);
#endif
  }
  float x;
  std::memcpy(&x, src, 4);
  return x;
}

// Codes j of a packed run: bits per code, little-endian within each byte.
inline void pack(uint8_t* dst, int64_t j, int bits, int code) {
  dst[(j * bits) >> 3] |= static_cast<uint8_t>(code << ((j * bits) & 7));
}
inline int unpack(const uint8_t* src, int64_t j, int bits) {
  return (src[(j * bits) >> 3] >> ((j * bits) & 7)) & ((1 << bits) - 1);
}
// Codes 0..n-1 of a packed run (n a multiple of 8 / bits) as floats, byte by byte.
inline void unpack_run(const uint8_t* src, int64_t n, int bits, float* dst) {
  if (bits == 2) {
    for (int64_t b = 0; b < n / 4; ++b)
      for (int m = 0; m < 4; ++m) dst[4 * b + m] = static_cast<float>((src[b] >> (2 * m)) & 3);
  } else {
    for (int64_t b = 0; b < n / 2; ++b) {
      dst[2 * b] = static_cast<float>(src[b] & 15);
      dst[2 * b + 1] = static_cast<float>(src[b] >> 4);
    }
  }
}

// Asymmetric quantisation of the n values x[i * stride] with one (scale, zero):
// codes into dst (packed from code index j0), the params returned. Returns
// false if a parameter does not fit fp16.
bool quantise(const float* x, int64_t n, int64_t stride, int bits, bool f16, uint8_t* dst, int64_t j0, float* scale,
              float* zero) {
  float mn = x[0], mx = x[0];
  for (int64_t i = 1; i < n; ++i) {
    mn = std::min(mn, x[i * stride]);
    mx = std::max(mx, x[i * stride]);
  }
  const int qmax = (1 << bits) - 1;
  float z = mn, s = (mx - mn) / static_cast<float>(qmax);
  if (f16) {
    z = f16_down(mn);
    s = f16_up(static_cast<float>((static_cast<double>(mx) - z) / qmax));
    if (!std::isfinite(z) || !std::isfinite(s)) {
      *scale = *zero = 0.0f;
      return false;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const float r = s > 0 ? (x[i * stride] - z) / s : 0.0f;
    pack(dst, j0 + i, bits, std::clamp(static_cast<int>(std::nearbyint(r)), 0, qmax));
  }
  *scale = s;
  *zero = z;
  return true;
}

}  // namespace

KIVICache::KIVICache(const Shape& s, const KIVIOptions& o) : s_(s), o_(o), pending_(s.n_layers, 0) {
  check_shape("kivi", s);
  v_group_ = o.v_group > 0 ? o.v_group : std::min<int64_t>(o.group, s.head_dim);
  param_bytes_ = o.f16_params ? 2 : 4;
  if (o.bits != 2 && o.bits != 4)
    fail(ErrorKind::InvalidInput, "kv policy 'kivi': option bits={} must be 2 or 4", o.bits);
  if (o.group < 1 || (o.group * o.bits) % 8 != 0)
    fail(ErrorKind::InvalidInput, "kv policy 'kivi': option group={} must be a positive multiple of {} for bits={}",
         o.group, 8 / o.bits, o.bits);
  if (o.residual < o.group || o.residual % o.group != 0)
    fail(ErrorKind::InvalidInput, "kv policy 'kivi': option residual={} must be a positive multiple of group={}",
         o.residual, o.group);
  if (s.head_dim % v_group_ != 0)
    fail(ErrorKind::InvalidInput, "kv policy 'kivi': v_group={} must divide head_dim {}", v_group_, s.head_dim);
  if ((s.head_dim * o.bits) % 8 != 0)
    fail(ErrorKind::InvalidInput, "kv policy 'kivi': head_dim {} * bits {} must be a multiple of 8", s.head_dim,
         o.bits);
  layers_.resize(s.n_layers);
  for (auto& L : layers_) L.heads.resize(s.n_kv_heads);
}

void KIVICache::plan(int64_t prompt_tokens, int64_t) { clock_.plan(n_tokens_, prompt_tokens); }

void KIVICache::append(int layer, int64_t n, const float* k, const float* v) {
  if (layer < 0 || layer >= s_.n_layers) fail(ErrorKind::Internal, "kv append: layer {} out of range", layer);
  if (n_tokens_ + pending_[layer] + n > s_.max_tokens)
    fail(ErrorKind::InvalidInput, "context full: {} tokens seen + {} new exceeds the context size {}",
         n_tokens_ + pending_[layer], n, s_.max_tokens);
  Layer& L = layers_[layer];
  const int hd = s_.head_dim;
  for (int h = 0; h < s_.n_kv_heads; ++h) {
    Head& H = L.heads[h];
    for (int64_t t = 0; t < n; ++t) {
      H.kres.insert(H.kres.end(), k + (t * s_.n_kv_heads + h) * hd, k + (t * s_.n_kv_heads + h + 1) * hd);
      H.vres.insert(H.vres.end(), v + (t * s_.n_kv_heads + h) * hd, v + (t * s_.n_kv_heads + h + 1) * hd);
    }
  }
  L.rk += n;
  L.rv += n;
  pending_[layer] += n;
}

void KIVICache::attend(int layer, int64_t n, const float* q, float* out) {
  const Layer& L = layers_[layer];
  const int hd = s_.head_dim, group = s_.n_heads / s_.n_kv_heads, bits = o_.bits;
  const int64_t G = o_.group, Gv = v_group_, total = L.nq_k + L.rk;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const bool f16 = o_.f16_params;
  const size_t pb = param_bytes_;
  const size_t k_codes = static_cast<size_t>(hd) * G * bits / 8, k_params = 2 * hd * pb;
  const size_t v_codes = static_cast<size_t>(hd) * bits / 8, v_params = 2 * (hd / Gv) * pb;
  const int64_t jobs = static_cast<int64_t>(s_.n_kv_heads) * n;
#pragma omp parallel
  {
    std::vector<float> scores, ps(hd), pz(hd), qs(static_cast<size_t>(group) * hd), acc(group * G), bias(group),
        code(std::max<int64_t>(G, hd)), vrow(hd);
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < jobs; ++job) {
      const int kvh = static_cast<int>(job % s_.n_kv_heads);
      const int64_t i = job / s_.n_kv_heads;
      const int64_t n_see = total - n + i + 1;
      const Head& H = L.heads[kvh];
      const float* qg = q + (i * s_.n_heads + kvh * group) * hd;  // the group's queries [group][hd]
      scores.resize(static_cast<size_t>(group) * n_see);
      // Quantised keys, group by group: q.k = sum_c (q_c s_c) code_c + sum_c q_c z_c.
      for (int64_t gi = 0; gi < L.nq_k / G; ++gi) {
        const uint8_t* cb = H.kq.data() + gi * k_codes;
        const uint8_t* pp = H.kp.data() + gi * k_params;
        for (int c = 0; c < hd; ++c) {
          ps[c] = get_param(pp + c * pb, f16);
          pz[c] = get_param(pp + (hd + c) * pb, f16);
        }
        for (int g = 0; g < group; ++g) {
          float b = 0.0f;
          for (int c = 0; c < hd; ++c) {
            qs[g * hd + c] = qg[g * hd + c] * ps[c];
            b += qg[g * hd + c] * pz[c];
          }
          bias[g] = b;
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int c = 0; c < hd; ++c) {
          const uint8_t* cc = cb + c * G * bits / 8;
          unpack_run(cc, G, bits, code.data());
          for (int g = 0; g < group; ++g) {
            const float w = qs[g * hd + c];
            float* a = acc.data() + g * G;
#pragma omp simd
            for (int64_t j = 0; j < G; ++j) a[j] += w * code[j];
          }
        }
        for (int g = 0; g < group; ++g)
          for (int64_t j = 0; j < G; ++j) scores[g * n_see + gi * G + j] = (acc[g * G + j] + bias[g]) * scale;
      }
      // Full-precision keys.
      if (n_see > L.nq_k)
        attn::scores(qg, group, H.kres.data(), n_see - L.nq_k, hd, scale, scores.data() + L.nq_k, n_see);
      for (int g = 0; g < group; ++g) {
        attn::softmax(scores.data() + g * n_see, n_see);
        float* o = out + (i * s_.n_heads + kvh * group + g) * hd;
        std::fill(o, o + hd, 0.0f);
      }
      // Values: quantised tokens dequantised once for the group, then the residual.
      for (int64_t t = 0; t < n_see; ++t) {
        const float* vt;
        if (t < L.nq_v) {
          const uint8_t* pp = H.vp.data() + t * v_params;
          unpack_run(H.vq.data() + t * v_codes, hd, bits, vrow.data());
          for (int64_t gi = 0; gi < hd / Gv; ++gi) {
            const float s = get_param(pp + gi * pb, f16), z = get_param(pp + (hd / Gv + gi) * pb, f16);
            for (int64_t c = gi * Gv; c < (gi + 1) * Gv; ++c) vrow[c] = vrow[c] * s + z;
          }
          vt = vrow.data();
        } else {
          vt = H.vres.data() + (t - L.nq_v) * hd;
        }
        for (int g = 0; g < group; ++g) {
          float* o = out + (i * s_.n_heads + kvh * group + g) * hd;
          const float p = scores[g * n_see + t];
#pragma omp simd
          for (int c = 0; c < hd; ++c) o[c] += p * vt[c];
        }
      }
    }
  }
}

void KIVICache::flush(Layer& L) {
  const int hd = s_.head_dim, bits = o_.bits;
  const int64_t G = o_.group, Gv = v_group_, R = o_.residual;
  const bool f16 = o_.f16_params;
  const size_t pb = param_bytes_;
  const size_t k_codes = static_cast<size_t>(hd) * G * bits / 8, k_params = 2 * hd * pb;
  const size_t v_codes = static_cast<size_t>(hd) * bits / 8, v_params = 2 * (hd / Gv) * pb;
  const int64_t mk = L.rk / R * R;             // keys: whole residuals
  const int64_t mv = std::max<int64_t>(0, L.rv - R);  // values: all but the last R
  if (mk == 0 && mv == 0) return;
  std::atomic<bool> overflow{false};
#pragma omp parallel for schedule(dynamic, 1)
  for (int h = 0; h < s_.n_kv_heads; ++h) {
    Head& H = L.heads[h];
    float sc = 0.0f, zr = 0.0f;
    for (int64_t gi = 0; gi < mk / G; ++gi) {
      const size_t c0 = H.kq.size(), p0 = H.kp.size();
      H.kq.resize(c0 + k_codes, 0);
      H.kp.resize(p0 + k_params);
      const float* x = H.kres.data() + gi * G * hd;
      for (int c = 0; c < hd; ++c) {
        if (!quantise(x + c, G, hd, bits, f16, H.kq.data() + c0 + c * G * bits / 8, 0, &sc, &zr)) overflow = true;
        put_param(H.kp.data() + p0 + c * pb, sc, f16);
        put_param(H.kp.data() + p0 + (hd + c) * pb, zr, f16);
      }
    }
    H.kres.erase(H.kres.begin(), H.kres.begin() + mk * hd);
    for (int64_t t = 0; t < mv; ++t) {
      const size_t c0 = H.vq.size(), p0 = H.vp.size();
      H.vq.resize(c0 + v_codes, 0);
      H.vp.resize(p0 + v_params);
      for (int64_t gi = 0; gi < hd / Gv; ++gi) {
        if (!quantise(H.vres.data() + t * hd + gi * Gv, Gv, 1, bits, f16, H.vq.data() + c0, gi * Gv, &sc, &zr))
          overflow = true;
        put_param(H.vp.data() + p0 + gi * pb, sc, f16);
        put_param(H.vp.data() + p0 + (hd / Gv + gi) * pb, zr, f16);
      }
    }
    H.vres.erase(H.vres.begin(), H.vres.begin() + mv * hd);
  }
  L.nq_k += mk;
  L.rk -= mk;
  L.nq_v += mv;
  L.rv -= mv;
  if (overflow)
    fail(ErrorKind::InvalidInput,
         "kv policy 'kivi': a key or value is outside the fp16 range of its scale/zero-point (|x| > 65504); use "
         "scale_type=f32");
}

void KIVICache::commit(int64_t n) {
  for (int l = 0; l < s_.n_layers; ++l)
    if (pending_[l] != n)
      fail(ErrorKind::Internal, "kv ledger: layer {} got {} tokens in a step of {}", l, pending_[l], n);
  std::fill(pending_.begin(), pending_.end(), 0);
  n_tokens_ += n;
  if (!clock_.done(n_tokens_)) return;  // the prompt stays exact until complete
  for (auto& L : layers_) flush(L);
}

int64_t KIVICache::n_stored() const {
  const Layer& L = layers_[0];
  return std::min(L.rk, L.rv);
}

void KIVICache::truncate(int64_t n) {
  if (n < 0 || n > n_tokens_) fail(ErrorKind::Internal, "kv truncate to {} of {}", n, n_tokens_);
  const Layer& L0 = layers_[0];
  if (n < std::max(L0.nq_k, L0.nq_v))
    fail(ErrorKind::Unsupported,
         "kv policy 'kivi' cannot roll back to {} tokens: the first {} keys and {} values are quantised (it can "
         "roll back to lengths {}..{})",
         n, L0.nq_k, L0.nq_v, std::max(L0.nq_k, L0.nq_v), n_tokens_);
  const int hd = s_.head_dim;
  for (auto& L : layers_) {
    L.rk = n - L.nq_k;
    L.rv = n - L.nq_v;
    for (auto& H : L.heads) {
      H.kres.resize(L.rk * hd);
      H.vres.resize(L.rv * hd);
    }
  }
  std::fill(pending_.begin(), pending_.end(), 0);
  n_tokens_ = n;
}

void KIVICache::clear() {
  for (auto& L : layers_) {
    L = Layer{};
    L.heads.resize(s_.n_kv_heads);
  }
  clock_.reset();
  std::fill(pending_.begin(), pending_.end(), 0);
  n_tokens_ = 0;
}

ByteLedger KIVICache::ledger(int64_t nq_k, int64_t rk, int64_t nq_v, int64_t rv) const {
  const size_t heads = static_cast<size_t>(s_.n_kv_heads), hd = s_.head_dim, pb = param_bytes_;
  const size_t params = heads * (static_cast<size_t>(nq_k / o_.group) * hd + static_cast<size_t>(nq_v) * (hd / v_group_)) * pb;
  return {{"keys_quantized", heads * nq_k * hd * o_.bits / 8},
          {"values_quantized", heads * nq_v * hd * o_.bits / 8},
          {"scales", params},
          {"zero_points", params},
          {"keys_residual", heads * rk * hd * sizeof(float)},
          {"values_residual", heads * rv * hd * sizeof(float)}};
}

ByteLedger KIVICache::bytes() const {
  ByteLedger total;
  for (const auto& L : layers_)
    for (const auto& [k, v] : ledger(L.nq_k, L.rk, L.nq_v, L.rv)) total[k] += v;
  return total;
}

ByteLedger KIVICache::bytes_at(int64_t n_tokens) const {
  const int64_t nq_k = n_tokens / o_.residual * o_.residual, nq_v = std::max<int64_t>(0, n_tokens - o_.residual);
  ByteLedger b = ledger(nq_k, n_tokens - nq_k, nq_v, n_tokens - nq_v);
  for (auto& [k, v] : b) v *= s_.n_layers;
  return b;
}

std::vector<float> KIVICache::keys(int layer, int h) const {
  const Layer& L = layers_[layer];
  const Head& H = L.heads[h];
  const int hd = s_.head_dim, bits = o_.bits;
  const int64_t G = o_.group;
  const size_t pb = param_bytes_, k_codes = static_cast<size_t>(hd) * G * bits / 8, k_params = 2 * hd * pb;
  std::vector<float> out((L.nq_k + L.rk) * hd);
  for (int64_t gi = 0; gi < L.nq_k / G; ++gi)
    for (int c = 0; c < hd; ++c) {
      const float s = get_param(H.kp.data() + gi * k_params + c * pb, o_.f16_params);
      const float z = get_param(H.kp.data() + gi * k_params + (hd + c) * pb, o_.f16_params);
      for (int64_t j = 0; j < G; ++j)
        out[(gi * G + j) * hd + c] = unpack(H.kq.data() + gi * k_codes + c * G * bits / 8, j, bits) * s + z;
    }
  std::copy(H.kres.begin(), H.kres.begin() + L.rk * hd, out.begin() + L.nq_k * hd);
  return out;
}

std::vector<float> KIVICache::values(int layer, int h) const {
  const Layer& L = layers_[layer];
  const Head& H = L.heads[h];
  const int hd = s_.head_dim, bits = o_.bits;
  const int64_t Gv = v_group_;
  const size_t pb = param_bytes_, v_codes = static_cast<size_t>(hd) * bits / 8, v_params = 2 * (hd / Gv) * pb;
  std::vector<float> out((L.nq_v + L.rv) * hd);
  for (int64_t t = 0; t < L.nq_v; ++t)
    for (int64_t gi = 0; gi < hd / Gv; ++gi) {
      const float s = get_param(H.vp.data() + t * v_params + gi * pb, o_.f16_params);
      const float z = get_param(H.vp.data() + t * v_params + (hd / Gv + gi) * pb, o_.f16_params);
      for (int64_t c = gi * Gv; c < (gi + 1) * Gv; ++c) out[t * hd + c] = unpack(H.vq.data() + t * v_codes, c, bits) * s + z;
    }
  std::copy(H.vres.begin(), H.vres.begin() + L.rv * hd, out.begin() + L.nq_v * hd);
  return out;
}

std::unique_ptr<Policy> make_kivi(const Shape& s, const Options& opts) {
  check_shape("kivi", s);
  OptionReader r("kivi", opts);
  KIVIOptions o;
  o.bits = static_cast<int>(r.get_int("bits", o.bits, 2, 4));
  o.group = r.get_int("group", o.group, 1, 1 << 20);
  o.v_group = r.get_int("v_group", 0, 1, s.head_dim);
  o.residual = r.get_int("residual", o.residual, 1, s.max_tokens);
  o.f16_params = r.get_choice("scale_type", "f16", {"f16", "f32"}) == "f16";
  r.finish();
  return std::make_unique<KIVICache>(s, o);
}

}  // namespace harmonia::kv
