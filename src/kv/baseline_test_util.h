#pragma once
// Test-only helpers for the baseline policies' tests (kv/*_test.cpp): random
// sequences, a driver that runs a policy step by step as the forward pass does,
// and a plain double-precision attention to compare against.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "common/error.h"
#include "kv/policy.h"

namespace harmonia::kv::testing {

inline Shape shape(int layers, int heads, int kv_heads, int head_dim, int64_t max_tokens = 512) {
  Shape s;
  s.n_layers = layers;
  s.n_heads = heads;
  s.n_kv_heads = kv_heads;
  s.head_dim = head_dim;
  s.max_tokens = max_tokens;
  return s;
}

// Per-layer K, V, Q of n tokens: k/v [n_layers][n][n_kv_heads][hd], q [n_layers][n][n_heads][hd].
struct Seq {
  Shape s;
  int64_t n = 0;
  std::vector<float> k, v, q;
  size_t kv_dim() const { return static_cast<size_t>(s.n_kv_heads) * s.head_dim; }
  size_t q_dim() const { return static_cast<size_t>(s.n_heads) * s.head_dim; }
  const float* K(int l, int64_t t) const { return k.data() + (l * n + t) * kv_dim(); }
  const float* V(int l, int64_t t) const { return v.data() + (l * n + t) * kv_dim(); }
  const float* Q(int l, int64_t t) const { return q.data() + (l * n + t) * q_dim(); }
  float* K(int l, int64_t t) { return k.data() + (l * n + t) * kv_dim(); }
  float* V(int l, int64_t t) { return v.data() + (l * n + t) * kv_dim(); }
  float* Q(int l, int64_t t) { return q.data() + (l * n + t) * q_dim(); }
  // Row of token t, kv head h.
  const float* K(int l, int64_t t, int h) const { return K(l, t) + h * s.head_dim; }
  const float* V(int l, int64_t t, int h) const { return V(l, t) + h * s.head_dim; }
};

// N(0, 1) entries; `q_scale` sharpens the attention.
inline Seq random_seq(const Shape& s, int64_t n, uint32_t seed, float q_scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Seq x;
  x.s = s;
  x.n = n;
  x.k.resize(s.n_layers * n * x.kv_dim());
  x.v.resize(x.k.size());
  x.q.resize(s.n_layers * n * x.q_dim());
  for (auto& f : x.k) f = nd(rng);
  for (auto& f : x.v) f = nd(rng);
  for (auto& f : x.q) f = q_scale * nd(rng);
  return x;
}

// Attention outputs of every token and layer: [n_layers][n][n_heads][hd].
using Outputs = std::vector<float>;

// Runs x through p as the forward pass does: the first `prompt` tokens in steps
// of `chunk` (after plan(prompt, n - prompt) when `plan`), then one token per
// step. `after_commit(tokens)` runs after every commit.
inline Outputs run(Policy& p, const Seq& x, int64_t prompt, int64_t chunk, bool plan = true,
                   const std::function<void(int64_t)>& after_commit = {}) {
  const Shape& s = x.s;
  Outputs out(s.n_layers * x.n * x.q_dim());
  std::vector<float> k, v, q;
  if (plan) p.plan(prompt, x.n - prompt);
  int64_t t0 = p.n_tokens();
  while (t0 < x.n) {
    const int64_t n = t0 < prompt ? std::min(chunk, prompt - t0) : 1;
    for (int l = 0; l < s.n_layers; ++l) {
      p.append(l, n, x.K(l, t0), x.V(l, t0));
      p.attend(l, n, x.Q(l, t0), out.data() + (l * x.n + t0) * x.q_dim());
    }
    p.commit(n);
    t0 += n;
    if (after_commit) after_commit(t0);
  }
  return out;
}

// Plain attention of one query token in double: q [n_heads][hd]; keys/values of
// kv head h are rows[h] (pointers to [hd]); out [n_heads][hd].
inline std::vector<double> naive_attention(const Shape& s, const float* q,
                                           const std::vector<std::vector<const float*>>& krows,
                                           const std::vector<std::vector<const float*>>& vrows) {
  const int hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
  std::vector<double> out(static_cast<size_t>(s.n_heads) * hd, 0.0);
  for (int hq = 0; hq < s.n_heads; ++hq) {
    const int h = hq / group;
    const size_t n = krows[h].size();
    std::vector<double> sc(n);
    double mx = -INFINITY;
    for (size_t t = 0; t < n; ++t) {
      double d = 0;
      for (int j = 0; j < hd; ++j) d += double(q[hq * hd + j]) * krows[h][t][j];
      sc[t] = d / std::sqrt(double(hd));
      mx = std::max(mx, sc[t]);
    }
    double sum = 0;
    for (auto& e : sc) sum += (e = std::exp(e - mx));
    for (size_t t = 0; t < n; ++t)
      for (int j = 0; j < hd; ++j) out[hq * hd + j] += sc[t] / sum * vrows[h][t][j];
  }
  return out;
}

// max_i |a_i - b_i| / max(max_i |b_i|, 1e-30): error relative to the output's scale.
template <class A, class B>
double rel_err(const A* a, const B* b, size_t n) {
  double err = 0, mag = 1e-30;
  for (size_t i = 0; i < n; ++i) {
    err = std::max(err, std::fabs(double(a[i]) - double(b[i])));
    mag = std::max(mag, std::fabs(double(b[i])));
  }
  return err / mag;
}

// Position of `row` among the keys of kv head h in layer l (bitwise match), or -1.
inline int64_t find_key(const Seq& x, int l, int h, const float* row) {
  for (int64_t t = 0; t < x.n; ++t)
    if (std::memcmp(x.K(l, t, h), row, x.s.head_dim * sizeof(float)) == 0) return t;
  return -1;
}

inline ErrorKind error_kind(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no harmonia::Error thrown";
  return ErrorKind::Internal;
}

inline std::string error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace harmonia::kv::testing
