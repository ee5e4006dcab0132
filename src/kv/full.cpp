#include "kv/full.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace harmonia::kv {

void causal_attention(const Shape& s, int64_t n_q, const float* q, const float* k, const float* v,
                      int64_t n_keys, int64_t head_stride, float* out) {
  const int hd = s.head_dim;
  const int group = s.n_heads / s.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t jobs = static_cast<int64_t>(s.n_kv_heads) * n_q;
#pragma omp parallel
  {
    std::vector<float> scores;  // [group][n_keys]
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = 0; job < jobs; ++job) {
      const int kvh = static_cast<int>(job % s.n_kv_heads);
      const int64_t i = job / s.n_kv_heads;
      const int64_t n_see = n_keys - n_q + i + 1;  // keys 0..n_see-1 are visible
      const float* kh = k + kvh * head_stride;
      const float* vh = v + kvh * head_stride;
      scores.resize(static_cast<size_t>(group) * n_see);
      // Scores for the whole GQA group while each key row is hot.
      for (int64_t t = 0; t < n_see; ++t) {
        const float* kt = kh + t * hd;
        for (int g = 0; g < group; ++g) {
          const float* qh = q + (i * s.n_heads + kvh * group + g) * hd;
          float d = 0.0f;
#pragma omp simd reduction(+ : d)
          for (int j = 0; j < hd; ++j) d += qh[j] * kt[j];
          scores[g * n_see + t] = d * scale;
        }
      }
      for (int g = 0; g < group; ++g) {
        float* sc = scores.data() + g * n_see;
        float mx = -INFINITY;
        for (int64_t t = 0; t < n_see; ++t) mx = std::max(mx, sc[t]);
        float sum = 0.0f;
        for (int64_t t = 0; t < n_see; ++t) {
          sc[t] = std::exp(sc[t] - mx);
          sum += sc[t];
        }
        const float inv = 1.0f / sum;
        for (int64_t t = 0; t < n_see; ++t) sc[t] *= inv;
      }
      for (int g = 0; g < group; ++g) {
        float* o = out + (i * s.n_heads + kvh * group + g) * hd;
        std::fill(o, o + hd, 0.0f);
      }
      for (int64_t t = 0; t < n_see; ++t) {
        const float* vt = vh + t * hd;
        for (int g = 0; g < group; ++g) {
          float* o = out + (i * s.n_heads + kvh * group + g) * hd;
          const float p = scores[g * n_see + t];
#pragma omp simd
          for (int j = 0; j < hd; ++j) o[j] += p * vt[j];
        }
      }
    }
  }
}

FullCache::FullCache(const Shape& s) : s_(s), layer_len_(s.n_layers, 0), k_(s.n_layers), v_(s.n_layers) {
  if (s.n_layers <= 0 || s.n_heads <= 0 || s.n_kv_heads <= 0 || s.head_dim <= 0 || s.max_tokens <= 0 ||
      s.n_heads % s.n_kv_heads != 0)
    fail(ErrorKind::InvalidInput, "kv cache: invalid shape (layers {}, heads {}, kv heads {}, head_dim {}, max {})",
         s.n_layers, s.n_heads, s.n_kv_heads, s.head_dim, s.max_tokens);
}

void FullCache::reserve(int64_t tokens) {
  if (tokens <= cap_) return;
  // Grow geometrically (at least 256 tokens) up to max_tokens; re-lay each head.
  int64_t nc = std::max<int64_t>({tokens, cap_ * 2, 256});
  nc = std::min(nc, s_.max_tokens);
  const size_t hd = static_cast<size_t>(s_.head_dim);
  for (int l = 0; l < s_.n_layers; ++l) {
    for (auto* buf : {&k_[l], &v_[l]}) {
      std::vector<float> nb(static_cast<size_t>(s_.n_kv_heads) * nc * hd);
      const int64_t used = layer_len_[l];
      for (int h = 0; h < s_.n_kv_heads && used > 0; ++h)
        std::copy_n(buf->data() + h * cap_ * hd, used * hd, nb.data() + h * nc * hd);
      buf->swap(nb);
    }
  }
  cap_ = nc;
}

void FullCache::append(int layer, int64_t n, const float* k, const float* v) {
  if (layer < 0 || layer >= s_.n_layers) fail(ErrorKind::Internal, "kv append: layer {} out of range", layer);
  const int64_t len = layer_len_[layer];
  if (len + n > s_.max_tokens)
    fail(ErrorKind::InvalidInput, "context full: {} tokens cached + {} new exceeds the context size {}", len, n,
         s_.max_tokens);
  reserve(len + n);
  const int hd = s_.head_dim;
  for (int64_t t = 0; t < n; ++t)
    for (int h = 0; h < s_.n_kv_heads; ++h) {
      const size_t dst = (static_cast<size_t>(h) * cap_ + len + t) * hd;
      std::copy_n(k + (t * s_.n_kv_heads + h) * hd, hd, k_[layer].data() + dst);
      std::copy_n(v + (t * s_.n_kv_heads + h) * hd, hd, v_[layer].data() + dst);
    }
  layer_len_[layer] = len + n;
}

void FullCache::attend(int layer, int64_t n, const float* q, float* out) {
  causal_attention(s_, n, q, k_[layer].data(), v_[layer].data(), layer_len_[layer], cap_ * s_.head_dim, out);
}

void FullCache::commit(int64_t n) {
  n_tokens_ += n;
  for (int l = 0; l < s_.n_layers; ++l)
    if (layer_len_[l] != n_tokens_)
      fail(ErrorKind::Internal, "kv ledger: layer {} holds {} tokens, logical length is {}", l, layer_len_[l],
           n_tokens_);
}

void FullCache::truncate(int64_t n) {
  if (n < 0 || n > n_tokens_) fail(ErrorKind::Internal, "kv truncate to {} of {}", n, n_tokens_);
  n_tokens_ = n;
  std::fill(layer_len_.begin(), layer_len_.end(), n);
}

void FullCache::clear() { truncate(0); }

ByteLedger FullCache::bytes() const { return bytes_at(n_tokens_); }

ByteLedger FullCache::bytes_at(int64_t n_tokens) const {
  const size_t per = static_cast<size_t>(s_.n_layers) * s_.n_kv_heads * s_.head_dim * 4 * n_tokens;
  return {{"keys", per}, {"values", per}};
}

}  // namespace harmonia::kv
