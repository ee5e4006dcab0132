#include "model/forward.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "tensor/ops.h"

namespace harmonia {

kv::Shape kv_shape(const ModelConfig& c, int64_t max_tokens) {
  kv::Shape s;
  s.n_layers = c.n_layers;
  s.n_heads = c.n_heads;
  s.n_kv_heads = c.n_kv_heads;
  s.head_dim = c.head_dim;
  s.max_tokens = max_tokens;
  s.rope_layout = c.rope.style == RopeConfig::Style::Interleaved ? kv::RopeLayout::Interleaved : kv::RopeLayout::Half;
  return s;
}

void set_threads(int n) {
  if (n < 0) fail(ErrorKind::InvalidInput, "--threads must be >= 0 (0 = all cores), got {}", n);
  if (n == 0) return;
  omp_set_num_threads(n);
  set_blas_single_threaded();  // BLAS calls run inside Harmonia's OpenMP threads
}

namespace {

// out[n] = x[n] / rms(x) * w[n]  (RMSNorm, Zhang & Sennrich 2019)
void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float r = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * r * w[i];
}

const float* f32(const Tensor& t) { return static_cast<const float*>(t.data); }

void check_token(const ModelConfig& c, int32_t t) {
  if (t < 0 || t >= c.vocab_size)
    fail(ErrorKind::InvalidInput, "token id {} is outside the vocabulary [0, {})", t, c.vocab_size);
}

}  // namespace

// ---- Reference ---------------------------------------------------------------------

ReferenceForward::ReferenceForward(const Model& m, int64_t max_tokens)
    : m_(m), rope_(m.config.rope), max_tokens_(max_tokens), k_(m.config.n_layers), v_(m.config.n_layers) {}

void ReferenceForward::step(int32_t token, float* logits) {
  const ModelConfig& c = m_.config;
  check_token(c, token);
  if (pos_ >= max_tokens_)
    fail(ErrorKind::InvalidInput, "context full: position {} is past the context size {}", pos_, max_tokens_);
  const int D = c.dim, hd = c.head_dim, QD = c.q_dim(), KVD = c.kv_dim(), F = c.ffn_dim;
  std::vector<float> x(D), xb(D), q(QD), k(KVD), v(KVD), att(QD), o(D), h1(F), h2(F), f(D);
  dequantize_row(m_.weights.tok_embd.type, m_.weights.tok_embd.row(token), x.data(), D);
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = m_.weights.layers[l];
    rmsnorm(xb.data(), x.data(), f32(w.attn_norm), D, c.norm_eps);
    matvec_ref(w.wq, xb.data(), q.data());
    matvec_ref(w.wk, xb.data(), k.data());
    matvec_ref(w.wv, xb.data(), v.data());
    if (!w.bq.empty()) {
      for (int i = 0; i < QD; ++i) q[i] += f32(w.bq)[i];
      for (int i = 0; i < KVD; ++i) k[i] += f32(w.bk)[i];
      for (int i = 0; i < KVD; ++i) v[i] += f32(w.bv)[i];
    }
    if (c.qk_norm) {
      for (int h = 0; h < c.n_heads; ++h) rmsnorm(&q[h * hd], &q[h * hd], f32(w.q_norm), hd, c.norm_eps);
      for (int h = 0; h < c.n_kv_heads; ++h) rmsnorm(&k[h * hd], &k[h * hd], f32(w.k_norm), hd, c.norm_eps);
    }
    rope_.apply(q.data(), c.n_heads, hd, pos_, pos_ + 1);
    rope_.apply(k.data(), c.n_kv_heads, hd, pos_, pos_ + 1);
    k_[l].insert(k_[l].end(), k.begin(), k.end());
    v_[l].insert(v_[l].end(), v.begin(), v.end());
    const int64_t T = pos_ + 1;
    const int group = c.n_heads / c.n_kv_heads;
    std::vector<float> sc(T);
    for (int h = 0; h < c.n_heads; ++h) {
      const int kvh = h / group;
      float mx = -INFINITY;
      for (int64_t t = 0; t < T; ++t) {
        float s = 0.0f;
        for (int j = 0; j < hd; ++j) s += q[h * hd + j] * k_[l][t * KVD + kvh * hd + j];
        sc[t] = s / std::sqrt(static_cast<float>(hd));
        mx = std::max(mx, sc[t]);
      }
      float sum = 0.0f;
      for (int64_t t = 0; t < T; ++t) sum += (sc[t] = std::exp(sc[t] - mx));
      for (int j = 0; j < hd; ++j) {
        float a = 0.0f;
        for (int64_t t = 0; t < T; ++t) a += sc[t] / sum * v_[l][t * KVD + kvh * hd + j];
        att[h * hd + j] = a;
      }
    }
    matvec_ref(w.wo, att.data(), o.data());
    for (int i = 0; i < D; ++i) x[i] += o[i];
    rmsnorm(xb.data(), x.data(), f32(w.ffn_norm), D, c.norm_eps);
    matvec_ref(w.w_gate, xb.data(), h1.data());
    matvec_ref(w.w_up, xb.data(), h2.data());
    swiglu_ref(h1.data(), h2.data(), F);
    matvec_ref(w.w_down, h1.data(), f.data());
    for (int i = 0; i < D; ++i) x[i] += f[i];
  }
  rmsnorm(xb.data(), x.data(), f32(m_.weights.output_norm), D, c.norm_eps);
  matvec_ref(m_.weights.output, xb.data(), logits);
  ++pos_;
}

// ---- Fast path ---------------------------------------------------------------------

Forward::Forward(const Model& m, int threads) : m_(m), rope_(m.config.rope) { set_threads(threads); }

void Forward::run(const int32_t* tokens, int64_t n, kv::Policy& kv, float* logits, bool all_logits) {
  run_batch({SeqStep{tokens, n, &kv, logits, all_logits}});
}

void Forward::run_batch(const std::vector<SeqStep>& batch) {
  const ModelConfig& c = m_.config;
  if (batch.empty()) fail(ErrorKind::InvalidInput, "forward: empty batch");
  int64_t n = 0;  // tokens in the step, all sequences
  std::vector<int64_t> off;  // first row of each sequence
  for (const SeqStep& s : batch) {
    if (s.n <= 0 || !s.kv || !s.logits) fail(ErrorKind::InvalidInput, "forward: a sequence has no tokens");
    for (int64_t i = 0; i < s.n; ++i) check_token(c, s.tokens[i]);
    off.push_back(n);
    n += s.n;
  }
  const int64_t D = c.dim, hd = c.head_dim, QD = c.q_dim(), KVD = c.kv_dim(), F = c.ffn_dim;
  auto grow = [](std::vector<float>& b, int64_t sz) {
    if (static_cast<int64_t>(b.size()) < sz) b.resize(static_cast<size_t>(sz));
  };
  grow(x_, n * D);
  grow(xb_, n * D);
  grow(q_, n * QD);
  grow(att_, n * QD);
  grow(k_, n * KVD);
  grow(v_, n * KVD);
  grow(h1_, n * F);
  grow(h2_, n * F);
  float *x = x_.data(), *xb = xb_.data(), *q = q_.data(), *k = k_.data(), *v = v_.data(), *att = att_.data(),
        *h1 = h1_.data(), *h2 = h2_.data();
  // Row r's sequence and RoPE position.
  std::vector<int64_t> pos(static_cast<size_t>(n)), seq_len(static_cast<size_t>(n));
  for (size_t b = 0; b < batch.size(); ++b)
    for (int64_t i = 0; i < batch[b].n; ++i) {
      pos[off[b] + i] = batch[b].kv->n_tokens() + i;
      seq_len[off[b] + i] = batch[b].kv->n_tokens() + batch[b].n;
    }
  const Tensor& emb = m_.weights.tok_embd;
  for (size_t b = 0; b < batch.size(); ++b)
    for (int64_t i = 0; i < batch[b].n; ++i)
      dequantize_row(emb.type, emb.row(batch[b].tokens[i]), x + (off[b] + i) * D, D);
  // Row i's RoPE table, the same in every layer: cos at cs + i * n_rot, sin half after.
  const int n_rot = c.rope.n_rot, half = n_rot / 2;
  grow(rope_cs_, n * n_rot);
  float* cs = rope_cs_.data();
  for (int64_t i = 0; i < n; ++i) rope_.cos_sin(pos[i], seq_len[i], cs + i * n_rot, cs + i * n_rot + half);

  const int n_layers = layer_limit_ > 0 ? std::min(layer_limit_, c.n_layers) : c.n_layers;
  for (int l = 0; l < n_layers; ++l) {
    const LayerWeights& w = m_.weights.layers[l];
    for (int64_t i = 0; i < n; ++i) rmsnorm(xb + i * D, x + i * D, f32(w.attn_norm), D, c.norm_eps);
    matmul_multi({{&w.wq, q}, {&w.wk, k}, {&w.wv, v}}, xb, n);
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t i = 0; i < n; ++i) {
      float* qi = q + i * QD;
      float* ki = k + i * KVD;
      if (!w.bq.empty()) {
        for (int64_t j = 0; j < QD; ++j) qi[j] += f32(w.bq)[j];
        for (int64_t j = 0; j < KVD; ++j) ki[j] += f32(w.bk)[j];
        for (int64_t j = 0; j < KVD; ++j) v[i * KVD + j] += f32(w.bv)[j];
      }
      if (c.qk_norm) {
        for (int h = 0; h < c.n_heads; ++h) rmsnorm(qi + h * hd, qi + h * hd, f32(w.q_norm), hd, c.norm_eps);
        for (int h = 0; h < c.n_kv_heads; ++h) rmsnorm(ki + h * hd, ki + h * hd, f32(w.k_norm), hd, c.norm_eps);
      }
      const float* ci = cs + i * n_rot;
      rope_.rotate(qi, c.n_heads, static_cast<int>(hd), ci, ci + half);
      rope_.rotate(ki, c.n_kv_heads, static_cast<int>(hd), ci, ci + half);
    }
    for (size_t b = 0; b < batch.size(); ++b) {
      const int64_t o = off[b];
      batch[b].kv->append(l, batch[b].n, k + o * KVD, v + o * KVD);
      batch[b].kv->attend(l, batch[b].n, q + o * QD, att + o * QD);
    }
    matmul(w.wo, att, n, xb);
    for (int64_t i = 0; i < n * D; ++i) x[i] += xb[i];
    for (int64_t i = 0; i < n; ++i) rmsnorm(xb + i * D, x + i * D, f32(w.ffn_norm), D, c.norm_eps);
    matmul_multi({{&w.w_gate, h1}, {&w.w_up, h2}}, xb, n);
#pragma omp parallel for schedule(static) if (n > 1)
    for (int64_t i = 0; i < n; ++i) swiglu(h1 + i * F, h2 + i * F, F);
    matmul(w.w_down, h1, n, xb);
    for (int64_t i = 0; i < n * D; ++i) x[i] += xb[i];
  }
  // Self-speculation with a layer limit leaves the deeper layers' caches behind;
  // the caller owns that (the drafter's cache is its own policy instance).
  for (const SeqStep& s : batch) s.kv->commit(s.n);
  // Final norm + output projection for the rows whose logits are wanted, packed.
  std::vector<int64_t> rows;
  for (size_t b = 0; b < batch.size(); ++b) {
    const int64_t first = batch[b].all_logits ? 0 : batch[b].n - 1;
    for (int64_t i = first; i < batch[b].n; ++i) rows.push_back(off[b] + i);
  }
  const int64_t nr = static_cast<int64_t>(rows.size());
  grow(h2_, nr * D);  // free scratch after the last layer
  float* xo = h2_.data();
  for (int64_t r = 0; r < nr; ++r) rmsnorm(xo + r * D, x + rows[r] * D, f32(m_.weights.output_norm), D, c.norm_eps);
  const int64_t V = c.vocab_size;
  if (batch.size() == 1) {
    matmul(m_.weights.output, xo, nr, batch[0].logits);
    return;
  }
  std::vector<float> all(static_cast<size_t>(nr * V));
  matmul(m_.weights.output, xo, nr, all.data());
  int64_t r = 0;
  for (const SeqStep& s : batch) {
    const int64_t cnt = s.all_logits ? s.n : 1;
    std::copy_n(all.data() + r * V, cnt * V, s.logits);
    r += cnt;
  }
}

}  // namespace harmonia
